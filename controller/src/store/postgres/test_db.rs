//! `TestDb`: a fresh PostgreSQL database for one test, created on the server that
//! `FERRY_TEST_POSTGRES_URL` names (the local default outside CI) and dropped with the value.

use std::sync::atomic::{AtomicU32, Ordering};

use tokio_postgres::NoTls;

use super::PostgresStore;

/// The variable naming the PostgreSQL server tests use.
pub(crate) const URL_VAR: &str = "FERRY_TEST_POSTGRES_URL";

/// The server's URL: `FERRY_TEST_POSTGRES_URL`, else (outside CI) the local default.
pub(crate) fn server_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.is_empty() => url,
        _ if std::env::var_os("CI").is_some() => {
            panic!("{URL_VAR} must name a PostgreSQL server for the tests (CI is set)")
        }
        _ => "postgres://postgres@127.0.0.1:5432/test".to_string(),
    }
}

/// `url` naming database `db` instead of its own.
pub(crate) fn with_database(url: &str, db: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let path = rest.find(['/', '?']).map_or(url.len(), |i| start + i);
    let query = url[path..].find('?').map_or("", |i| &url[path + i..]);
    format!("{}/{db}{query}", &url[..path])
}

/// A database of its own for one test, created from the server's URL and dropped (with its
/// connections) when the value is.
pub(crate) struct TestDb {
    pub(crate) url: String,
    server: String,
    name: String,
}

static NEXT_DB: AtomicU32 = AtomicU32::new(0);

async fn admin(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "connecting to {}: {}",
                crate::store::redact_url(url),
                super::pool::describe(&e)
            )
        });
    tokio::spawn(connection);
    client
}

impl TestDb {
    pub(crate) async fn new() -> TestDb {
        let server = server_url();
        let name = format!(
            "ferry_t_{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let client = admin(&server).await;
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            client.batch_execute(&sql).await.unwrap_or_else(|e| {
                panic!("creating database {name}: {}", super::pool::describe(&e))
            });
        }
        TestDb {
            url: with_database(&server, &name),
            server,
            name,
        }
    }

    pub(crate) async fn open(&self) -> PostgresStore {
        PostgresStore::open(&self.url, None).await.unwrap()
    }

    /// A connection to this database, outside any store.
    pub(crate) async fn client(&self) -> tokio_postgres::Client {
        admin(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        // Its own thread and runtime: a test's runtime may be ending.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let (client, connection) = tokio_postgres::connect(&server, NoTls).await?;
                let driver = tokio::spawn(connection);
                let dropped = client
                    .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .await;
                drop(client);
                let _ = driver.await;
                dropped
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!(
                "could not drop test database {}: {}",
                self.name,
                super::pool::describe(&e)
            );
        }
    }
}

/// A shell task of queue `queue` (`true`, the default retry policy) depending on `deps`.
pub(crate) fn shell_task(id: &str, queue: &str, deps: &[&str]) -> crate::model::TaskSpec {
    crate::model::TaskSpec {
        id: id.into(),
        queue: queue.into(),
        labels: Default::default(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        kind: crate::model::TaskKind::Shell {
            command: "true".into(),
        },
        outputs: vec![],
        timeout_ms: 0,
        schedule_to_start_timeout_ms: 0,
        retry: Default::default(),
    }
}

/// A job named `name` of `tasks`, without parameters, key or backfill.
pub(crate) fn new_job(name: &str, tasks: Vec<crate::model::TaskSpec>) -> crate::model::NewJob {
    crate::model::NewJob {
        name: name.into(),
        params: Default::default(),
        tasks,
        idempotency_key: None,
        backfill: Default::default(),
    }
}

/// Registers agent `name` with session `session`, serving `queue` with `max_tasks` slots.
pub(crate) async fn register(
    store: &dyn crate::store::Store,
    name: &str,
    session: &str,
    queue: &str,
    max_tasks: u32,
) {
    let reg = crate::store::AgentRegistration {
        name: name.into(),
        session: session.into(),
        queues: vec![queue.into()],
        labels: Default::default(),
        max_tasks,
        hostname: "h".into(),
        version: "v".into(),
        instance: "i".into(),
        live_after: 0,
    };
    store.register_agent(reg, 1).await.unwrap();
}
