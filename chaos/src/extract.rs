//! The incremental SQL extracts: a source table in the PostgreSQL test database that grows
//! during the run (rows committed one batch at a time, ids in order), and jobs of one
//! incremental `sql` task over it run one after the other (a watermark belongs to a job name,
//! and two runs at once may overlap), through every fault. At the end every source row must be
//! in exactly one succeeded run's published extract.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ferry_tests::{databases, Cli, TERMINAL_JOB_STATES};

use crate::submit;

pub struct Source {
    client: tokio_postgres::Client,
    pub table: String,
    /// The highest id inserted.
    pub last_id: i64,
}

impl Source {
    pub async fn create() -> Result<Self> {
        let client = databases::postgres().await?;
        let table = databases::unique_table("chaos_src");
        client
            .batch_execute(&format!(
                "DROP TABLE IF EXISTS {table};
                 CREATE TABLE {table} (id bigint PRIMARY KEY, note text NOT NULL);"
            ))
            .await
            .context("creating the source table")?;
        Ok(Self {
            client,
            table,
            last_id: 0,
        })
    }

    /// Inserts `n` rows, in one transaction.
    pub async fn insert(&mut self, n: i64) -> Result<()> {
        let first = self.last_id + 1;
        let last = self.last_id + n;
        self.client
            .execute(
                &format!(
                    "INSERT INTO {} (id, note) SELECT g, 'row ' || g FROM generate_series($1::bigint, $2::bigint) g",
                    self.table
                ),
                &[&first, &last],
            )
            .await
            .context("inserting source rows")?;
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

    pub async fn drop_table(&self) -> Result<()> {
        self.client
            .batch_execute(&format!("DROP TABLE IF EXISTS {}", self.table))
            .await
            .context("dropping the source table")
    }

    /// The job file of one run.
    pub fn job(&self, run: &str) -> String {
        format!(
            r#"name = "chaos-extract-{run}"
[[tasks]]
id = "extract"
queue = "sql"
timeout = "2m"
retry = {{ max_attempts = 25, initial_delay = "200ms", max_delay = "2s" }}
sql = {{ datasource = "src", query = 'select id, note from {}', format = "csv", incremental = {{ column = "id" }} }}
"#,
            self.table
        )
    }
}

/// Runs extract jobs one after the other until `stop`; their ids.
pub async fn runs(cli: &Cli, toml: &str, run: &str, stop: &AtomicBool) -> Result<Vec<String>> {
    let path = cli.write_job(toml)?;
    let mut ids = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let key = format!("chaos-extract-{run}-{}", ids.len());
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
