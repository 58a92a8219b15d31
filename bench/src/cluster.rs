//! Controllers sharing one store: a fresh PostgreSQL database per run (`ferry_b_<pid>_<n>`,
//! created through the admin URL and dropped at the end), N controllers on it or one on
//! SQLite, and the CPU time PostgreSQL's own processes spend, read from `/proc`.

use std::{
    collections::{HashMap, HashSet},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

use anyhow::{Context, Result};
use ferry_tests::{databases, Controller, ControllerOpts, TestDir};
use tokio_postgres::NoTls;

use crate::common::{self, CpuTimes};

/// Settings for the fresh databases of profiling runs.
const SETTINGS_VAR: &str = "FERRY_BENCH_PG_SETTINGS";

/// Which store the controllers of a run share.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Store {
    /// The default SQLite file in the (single) controller's data dir.
    Sqlite,
    /// A PostgreSQL database, by URL.
    Postgres(String),
}

/// A PostgreSQL database that exists for one run; [`FreshDb::remove`] drops it.
pub struct FreshDb {
    admin: String,
    name: String,
    url: String,
}

impl FreshDb {
    /// Creates `ferry_b_<pid>_<n>` through the admin URL (`FERRY_TEST_POSTGRES_URL`, else the
    /// local test database), first dropping those an earlier, dead bench process left behind.
    /// `FERRY_BENCH_PG_SETTINGS` (`name=value,…`, e.g. `synchronous_commit=off` or
    /// `log_statement=all`) is set on the database, for profiling runs.
    pub async fn create() -> Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let admin = databases::postgres_url();
        let name = format!(
            "ferry_b_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let client = connect(&admin).await?;
        drop_orphans(&client).await;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating database {name}"))?;
        for setting in std::env::var(SETTINGS_VAR).unwrap_or_default().split(',') {
            let Some((key, value)) = setting.split_once('=') else {
                continue;
            };
            let sql = format!(
                "ALTER DATABASE {name} SET {} = '{}'",
                key.trim(),
                value.trim()
            );
            client
                .batch_execute(&sql)
                .await
                .with_context(|| format!("{SETTINGS_VAR}: {sql}"))?;
            eprintln!("[bench] {name}: {} = {}", key.trim(), value.trim());
        }
        let url = with_database(&admin, &name);
        Ok(Self { admin, name, url })
    }

    /// The store URL of the database, for `--store`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// What PostgreSQL counted for the database since it was made (`pg_stat_database`): read
    /// it once the controllers are gone, as a backend reports its counts when it exits.
    pub async fn activity(&self) -> Result<Activity> {
        let client = connect(&self.admin).await?;
        let row = client
            .query_one(
                "SELECT xact_commit, xact_rollback, tup_returned + tup_fetched, tup_inserted, \
                 tup_updated, tup_deleted FROM pg_stat_database WHERE datname = $1",
                &[&self.name],
            )
            .await
            .context("reading pg_stat_database")?;
        Ok(Activity {
            commits: row.get(0),
            rollbacks: row.get(1),
            rows_read: row.get(2),
            inserted: row.get(3),
            updated: row.get(4),
            deleted: row.get(5),
        })
    }

    /// Opens a transaction on the database that holds its snapshot until the client is
    /// dropped: as a report or a forgotten `psql` session would, it keeps every row version
    /// dead since it began from being removed (or marked dead in an index).
    pub async fn hold_snapshot(&self) -> Result<tokio_postgres::Client> {
        let client = connect(&self.url).await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT 1")
            .await
            .context("opening the long transaction")?;
        Ok(client)
    }

    /// The relations (tables and indexes) that PostgreSQL read the most rows of, most first:
    /// where a plan scans more than it keeps. Needs the database's own connection, as the
    /// per-relation views only show the current database.
    pub async fn hottest_reads(&self, top: usize) -> Result<Vec<(String, i64)>> {
        let client = connect(&self.url).await?;
        let rows = client
            .query(
                "SELECT relname || ' (seq)', seq_tup_read FROM pg_stat_user_tables
                 UNION ALL
                 SELECT indexrelname || ' (index)', idx_tup_read FROM pg_stat_user_indexes
                 ORDER BY 2 DESC LIMIT $1",
                &[&(top as i64)],
            )
            .await
            .context("reading pg_stat_user_tables")?;
        Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Drops the database (its connections too): call it once the controllers are gone.
    pub async fn remove(self) {
        let dropped = async {
            connect(&self.admin)
                .await?
                .batch_execute(&format!(
                    "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                    self.name
                ))
                .await
                .context("DROP DATABASE")
        };
        if let Err(e) = dropped.await {
            eprintln!("[bench] could not drop database {}: {e:#}", self.name);
        }
    }
}

/// A database's counters from `pg_stat_database`.
#[derive(Clone, Copy, Debug)]
pub struct Activity {
    pub commits: i64,
    pub rollbacks: i64,
    pub rows_read: i64,
    pub inserted: i64,
    pub updated: i64,
    pub deleted: i64,
}

impl Activity {
    /// The counts per `n` (tasks, say), for a person.
    pub fn per(&self, n: usize) -> String {
        let per = |v: i64| v as f64 / n.max(1) as f64;
        format!(
            "{:.2} commits, {:.3} rollbacks; rows read {:.1}, inserted {:.1}, updated {:.1}, \
             deleted {:.1}",
            per(self.commits),
            per(self.rollbacks),
            per(self.rows_read),
            per(self.inserted),
            per(self.updated),
            per(self.deleted)
        )
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .with_context(|| format!("connecting to postgresql at {}", redact(url)))?;
    tokio::spawn(connection);
    Ok(client)
}

/// Drops the `ferry_b_<pid>_<n>` databases whose bench process no longer runs.
async fn drop_orphans(client: &tokio_postgres::Client) {
    let Ok(rows) = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE 'ferry\\_b\\_%'",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        if pid.is_some_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()) {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if client.batch_execute(&sql).await.is_ok() {
                eprintln!("[bench] dropped {name}, left by an earlier run");
            }
        }
    }
}

/// `url` naming database `name` instead of its own (query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let root = match base[scheme_end..].find('/') {
        Some(i) => &base[..scheme_end + i],
        None => base,
    };
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

/// `url` without a password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if url[s + 3..at].contains(':') => {
            let user_end = s + 3 + url[s + 3..at].find(':').unwrap_or(0);
            format!("{}:***{}", &url[..user_end], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// Controllers sharing one store.
pub struct Controllers {
    pub list: Vec<Controller>,
    // Dropped after the controllers: the data dir they share.
    _data: Option<TestDir>,
}

/// Starts `count` controllers on `store` (SQLite: exactly one, on its own file whatever
/// `FERRY_TEST_STORE` says; PostgreSQL: sharing one data dir, as the controllers of one store
/// must), one after the other so that the first applies the migrations alone.
pub async fn controllers(
    store: &Store,
    count: usize,
    agent_timeout: Duration,
) -> Result<Controllers> {
    let base = ControllerOpts::default().agent_timeout(agent_timeout);
    let (opts, count, data) = match store {
        Store::Sqlite => (base.sqlite(), 1, None),
        Store::Postgres(url) => {
            let data = TestDir::new("bench-cluster-data")?;
            let opts = base.store(url.clone()).data_dir(data.path());
            (opts, count.max(1), Some(data))
        }
    };
    let mut list = Vec::with_capacity(count);
    for i in 0..count {
        let controller = Controller::start(common::secured(opts.clone()))
            .await
            .with_context(|| format!("starting controller {i}"))?;
        list.push(controller);
    }
    Ok(Controllers { list, _data: data })
}

/// Own CPU seconds of the controllers together.
pub fn controllers_cpu(controllers: &[Controller]) -> Result<f64> {
    let mut total = 0.0;
    for (i, c) in controllers.iter().enumerate() {
        total += common::cpu_of(c.pid(), &format!("controller {i}"))?.own_s;
    }
    Ok(total)
}

/// CPU seconds of `pid`'s threads, summed by thread name (`tokio-rt-worker`, the store's
/// writer…): where a process's time goes.
pub fn threads_cpu(pid: u32) -> HashMap<String, f64> {
    let mut by_name = HashMap::new();
    let Ok(entries) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for entry in entries.flatten() {
        let name = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
        let tid = entry.file_name().to_string_lossy().into_owned();
        if let Ok(cpu) = common::cpu_times(format!("{pid}/task/{tid}")) {
            *by_name.entry(name.trim().to_owned()).or_insert(0.0) += cpu.own_s;
        }
    }
    by_name
}

/// The busiest threads between two [`threads_cpu`] snapshots, as `name 1.23 s` items.
pub fn busiest_threads(before: &HashMap<String, f64>, after: &HashMap<String, f64>) -> String {
    let mut spent: Vec<(&String, f64)> = after
        .iter()
        .map(|(name, s)| (name, s - before.get(name).copied().unwrap_or(0.0)))
        .filter(|(_, s)| *s >= 0.01)
        .collect();
    spent.sort_by(|a, b| b.1.total_cmp(&a.1));
    spent
        .iter()
        .take(4)
        .map(|(name, s)| format!("{name} {s:.2} s"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A snapshot of the CPU time of PostgreSQL's processes that work for `db`: its backends and
/// the server's own processes (WAL writer, checkpointer…, which serve every database). Backends
/// of other databases (someone else's tests on the same server) are left out, and so are
/// backends that exit between two snapshots (the postmaster's children times would count every
/// database's): [`PgCpu::exited`] says how many of `db`'s did.
#[derive(Clone, Debug, Default)]
pub struct PgCpu {
    by_pid: HashMap<u32, f64>,
    backends: HashSet<u32>,
}

impl PgCpu {
    pub fn read(db: &str) -> Self {
        let mut snapshot = Self::default();
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return snapshot;
        };
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u32>().ok())
            else {
                continue;
            };
            let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
                continue;
            };
            if comm.trim() != "postgres" {
                continue;
            }
            let title = std::fs::read(entry.path().join("cmdline"))
                .map(|b| String::from_utf8_lossy(&b).replace('\0', " "))
                .unwrap_or_default();
            let Ok(cpu) = common::cpu_times(pid) else {
                continue;
            };
            // A client backend's title: `postgres: CLUSTER: USER DB HOST(PORT) STATE`.
            let backend = title.contains("127.0.0.1(") || title.contains("[local]");
            if backend {
                if !title.split_whitespace().any(|w| w == db) {
                    continue;
                }
                snapshot.backends.insert(pid);
            }
            snapshot.by_pid.insert(pid, cpu.own_s);
        }
        snapshot
    }

    /// CPU seconds spent between `earlier` and this snapshot by the processes alive now.
    pub fn since(&self, earlier: &PgCpu) -> f64 {
        self.by_pid
            .iter()
            .map(|(pid, now)| now - earlier.by_pid.get(pid).copied().unwrap_or(0.0))
            .sum()
    }

    /// Backends of the database in `earlier` that are gone now (their CPU is not counted).
    pub fn exited(&self, earlier: &PgCpu) -> usize {
        earlier.backends.difference(&self.backends).count()
    }
}

/// CPU of this bench process (the simulated agents), since `earlier`.
pub fn own_cpu_since(earlier: CpuTimes) -> Result<f64> {
    Ok((common::cpu_times("self")? - earlier).own_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_replaced_in_urls() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h:1", "x"), "postgres://h:1/x");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
    }
}
