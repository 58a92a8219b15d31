//! The incremental SQL extracts: source tables that grow during the run (rows committed one
//! batch at a time, ids in order), one in the PostgreSQL test database and one in the MariaDB
//! one, and for each, jobs of one incremental `sql` task over it run one after the other (a
//! watermark belongs to a job name, and two runs at once may overlap), through every fault. At
//! the end every source row must be in exactly one succeeded run's published extract.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ferry_tests::{databases, Cli, TERMINAL_JOB_STATES};
use mysql_async::prelude::Queryable;

use crate::{
    checks::{self, Check},
    record, submit,
};

/// The agents' datasource of each source database.
pub const POSTGRES_DATASOURCE: &str = "src";
pub const MARIADB_DATASOURCE: &str = "maria";

enum Db {
    Postgres(tokio_postgres::Client),
    MariaDb(mysql_async::Conn),
}

pub struct Source {
    db: Db,
    pub table: String,
    /// The highest id inserted.
    pub last_id: i64,
}

impl Source {
    /// A fresh table in the PostgreSQL test database.
    pub async fn postgres() -> Result<Self> {
        let client = databases::postgres().await?;
        let table = databases::unique_table("chaos_src");
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (id bigint PRIMARY KEY, note text NOT NULL);"
            ))
            .await
            .context("creating the PostgreSQL source table")?;
        Ok(Self {
            db: Db::Postgres(client),
            table,
            last_id: 0,
        })
    }

    /// A fresh table in the MariaDB test database.
    pub async fn mariadb() -> Result<Self> {
        let mut conn = databases::mysql().await?;
        let table = databases::unique_table("chaos_maria");
        conn.query_drop(format!(
            "CREATE TABLE {table} (id BIGINT PRIMARY KEY, note VARCHAR(64) NOT NULL)"
        ))
        .await
        .context("creating the MariaDB source table")?;
        Ok(Self {
            db: Db::MariaDb(conn),
            table,
            last_id: 0,
        })
    }

    /// Which database, as the report names it.
    pub fn database(&self) -> &'static str {
        match self.db {
            Db::Postgres(_) => "PostgreSQL",
            Db::MariaDb(_) => "MariaDB",
        }
    }

    fn datasource(&self) -> &'static str {
        match self.db {
            Db::Postgres(_) => POSTGRES_DATASOURCE,
            Db::MariaDb(_) => MARIADB_DATASOURCE,
        }
    }

    /// Inserts `n` rows, in one transaction (one autocommitted statement).
    pub async fn insert(&mut self, n: i64) -> Result<()> {
        let first = self.last_id + 1;
        let last = self.last_id + n;
        match &mut self.db {
            Db::Postgres(client) => {
                client
                    .execute(
                        &format!(
                            "INSERT INTO {} (id, note) SELECT g, 'row ' || g FROM generate_series($1::bigint, $2::bigint) g",
                            self.table
                        ),
                        &[&first, &last],
                    )
                    .await
                    .context("inserting PostgreSQL source rows")?;
            }
            Db::MariaDb(conn) => {
                let rows: Vec<String> = (first..=last)
                    .map(|i| format!("({i}, 'row {i}')"))
                    .collect();
                conn.query_drop(format!(
                    "INSERT INTO {} (id, note) VALUES {}",
                    self.table,
                    rows.join(", ")
                ))
                .await
                .context("inserting MariaDB source rows")?;
            }
        }
        self.last_id = last;
        Ok(())
    }

    /// Inserts a few rows every 200 ms until `stop`.
    pub async fn grow(&mut self, stop: &AtomicBool) -> Result<()> {
        while !stop.load(Ordering::Relaxed) {
            self.insert(5).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    pub async fn drop_table(&mut self) -> Result<()> {
        let sql = format!("DROP TABLE IF EXISTS {}", self.table);
        match &mut self.db {
            Db::Postgres(client) => client.batch_execute(&sql).await?,
            Db::MariaDb(conn) => conn.query_drop(sql).await?,
        }
        Ok(())
    }

    /// The job's name: the extracts of one source share it (and so its watermark).
    pub fn job_name(&self, run: &str) -> String {
        match self.db {
            Db::Postgres(_) => format!("chaos-extract-{run}"),
            Db::MariaDb(_) => format!("chaos-extract-maria-{run}"),
        }
    }

    /// The job file of one run.
    pub fn job(&self, run: &str) -> String {
        format!(
            r#"name = "{}"
[[tasks]]
id = "extract"
queue = "sql"
timeout = "2m"
retry = {{ max_attempts = 25, initial_delay = "200ms", max_delay = "2s" }}
sql = {{ datasource = "{}", query = 'select id, note from {}', format = "csv", incremental = {{ column = "id" }} }}
"#,
            self.job_name(run),
            self.datasource(),
            self.table
        )
    }
}

/// Runs extract jobs (`toml`, named `name`: `Source::job`, `Source::job_name`) one after
/// the other until `stop`; their ids.
pub async fn runs(cli: &Cli, toml: &str, name: &str, stop: &AtomicBool) -> Result<Vec<String>> {
    let path = cli.write_job(toml)?;
    let mut ids = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let key = format!("{name}-{}", ids.len());
        let id = submit::submit(cli, &path, &key).await?;
        wait_final(cli, &id, Duration::from_secs(600)).await?;
        ids.push(id);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(ids)
}

/// Polls `jobs show` every half second until the job is final; its state.
pub async fn wait_final(cli: &Cli, id: &str, timeout: Duration) -> Result<String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Ok(doc) = cli.show(id).await {
            let state = doc["state"].as_str().unwrap_or_default();
            if TERMINAL_JOB_STATES.contains(&state) {
                return Ok(state.to_owned());
            }
        }
        if std::time::Instant::now() >= deadline {
            bail!("extract job {id} not final after {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The ids (first column) of each published extract file of a job, read with `results get`.
pub async fn extracted(cli: &Cli, job: &str, dir: &Path) -> Result<Vec<i64>> {
    let out_dir = dir.join(job);
    std::fs::create_dir_all(&out_dir)?;
    let out = cli
        .run([
            "results",
            "get",
            job,
            "extract",
            "-o",
            &out_dir.display().to_string(),
        ])
        .await?;
    if out.code != 0 {
        bail!("results get {job} extract: {out}");
    }
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(&out_dir)? {
        let path = entry?.path();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let mut lines = text.lines();
        if lines.next() != Some("id,note") {
            bail!("{}: no header id,note", path.display());
        }
        for line in lines {
            let id = line.split(',').next().unwrap_or_default();
            ids.push(
                id.parse()
                    .with_context(|| format!("{}: {line:?}", path.display()))?,
            );
        }
    }
    Ok(ids)
}

/// One more extract of `source`, with no fault: it must take every row left. Its id.
pub async fn last_run(cli: &Cli, source: &Source, run: &str) -> Result<String> {
    let path = cli.write_job(&source.job(run))?;
    let key = format!("{}-final", source.job_name(run));
    let id = submit::submit(cli, &path, &key).await?;
    wait_final(cli, &id, Duration::from_secs(300)).await?;
    Ok(id)
}

/// Each source row in exactly one succeeded run's extract; failed runs publish nothing; the
/// last run (no faults) succeeded.
pub async fn check(cli: &Arc<Cli>, ids: &[String], source: &Source, root: &Path) -> Result<Check> {
    let jobs = record::jobs(cli, ids).await?;
    let dir = root.join("extracts");
    let mut taken = Vec::new();
    let mut violations = Vec::new();
    for job in &jobs {
        if job.state == "succeeded" {
            taken.extend(extracted(cli, &job.id, &dir).await?);
        } else if !record::outputs(cli, &job.id).await?.is_empty() {
            violations.push(format!(
                "extract job {} is {} but published",
                job.id, job.state
            ));
        }
    }
    if jobs.last().is_none_or(|j| j.state != "succeeded") {
        violations.push("the last extract, run with no fault, did not succeed".to_owned());
    }
    violations.extend(taken_once(&taken, source.last_id));
    let name = match source.db {
        Db::Postgres(_) => "watermarks (PostgreSQL): each source row extracted once",
        Db::MariaDb(_) => "watermarks (MariaDB): each source row extracted once",
    };
    Ok(checks::found(name, source.last_id as usize, violations))
}

/// The check: rows taken more than once, and rows of `1..=last_id` never taken.
pub fn taken_once(taken: &[i64], last_id: i64) -> Vec<String> {
    let mut counts: BTreeMap<i64, usize> = BTreeMap::new();
    for &id in taken {
        *counts.entry(id).or_default() += 1;
    }
    let mut problems: Vec<String> = counts
        .iter()
        .filter(|&(_, &n)| n > 1)
        .map(|(id, n)| format!("source row {id} extracted {n} times"))
        .collect();
    let missing: Vec<i64> = (1..=last_id)
        .filter(|id| !counts.contains_key(id))
        .collect();
    if !missing.is_empty() {
        problems.push(format!(
            "{} source rows never extracted (first {:?})",
            missing.len(),
            &missing[..missing.len().min(10)]
        ));
    }
    if let Some((&id, _)) = counts.iter().find(|&(&id, _)| id < 1 || id > last_id) {
        problems.push(format!("row {id} extracted but never inserted"));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_row_must_be_taken_once() {
        assert!(taken_once(&[1, 2, 3], 3).is_empty());
        assert_eq!(
            taken_once(&[1, 2, 2, 3], 3),
            ["source row 2 extracted 2 times"]
        );
        assert_eq!(taken_once(&[1, 3], 3).len(), 1);
        assert_eq!(
            taken_once(&[1, 2, 3, 4], 3),
            ["row 4 extracted but never inserted"]
        );
    }
}
