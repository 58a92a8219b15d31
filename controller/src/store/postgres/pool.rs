//! The PostgreSQL store's connections: a small bounded pool (a semaphore and a stack of idle
//! connections, each with its own prepared statements), and how a failed call is told
//! (retryable or not, in words that never hold the password), and the clock check at open.
//! Connection drivers run on the pool's `TaskTracker` and end on its token at `close`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{Semaphore, SemaphorePermit};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{FromSql, ToSql};
use tokio_postgres::{Client, Config, Row, Statement};

use super::tls::Transport;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::StoreError;

/// Connections the pool opens at most.
pub(super) const MAX_CONNECTIONS: usize = 16;
/// How long opening a connection may take.
pub(super) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call waits for a free connection before it fails (retryably).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Statement parameters, as tokio-postgres takes them.
pub(super) type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A failed call to PostgreSQL, kept as the error's source. Serialization failures, deadlocks
/// and lost connections are retryable: the whole transaction may be made again.
pub(super) fn pg(e: tokio_postgres::Error) -> StoreError {
    let retryable = is_retryable(&e);
    StoreError::Backend {
        message: describe(&e),
        retryable,
        source: Some(Box::new(e)),
    }
}

/// What went wrong, in words: the server's message and SQLSTATE, or the client's error with
/// its causes (tokio-postgres' own `Display` says only "db error").
pub(super) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut out = format!("{} (sqlstate {})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            out.push_str(": ");
            out.push_str(detail);
        }
        return out;
    }
    let mut out = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        out.push_str(": ");
        out.push_str(&cause.to_string());
        source = cause.source();
    }
    out
}

fn is_retryable(e: &tokio_postgres::Error) -> bool {
    if let Some(code) = e.code() {
        return [
            SqlState::T_R_SERIALIZATION_FAILURE,
            SqlState::T_R_DEADLOCK_DETECTED,
            // The server is shutting down or restarting: another connection may succeed.
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ]
        .contains(code);
    }
    e.is_closed()
        || std::error::Error::source(e)
            .is_some_and(|s| s.downcast_ref::<std::io::Error>().is_some())
}

/// Where a configuration connects, for messages: hosts, ports and database, never a password.
pub(super) fn target(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let host = match host {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            };
            let port = config
                .get_ports()
                .get(i)
                .or(config.get_ports().first())
                .copied()
                .unwrap_or(5432);
            format!("{host}:{port}")
        })
        .collect();
    format!(
        "{}/{}",
        hosts.join(","),
        config.get_dbname().or(config.get_user()).unwrap_or("")
    )
}

/// One connection and the statements prepared on it.
pub(super) struct Conn {
    client: Client,
    statements: Mutex<HashMap<&'static str, Statement>>,
}

impl Conn {
    /// Opens a connection; its driver runs on `drivers` until the client is dropped or the
    /// drivers are stopped.
    pub(super) async fn connect(
        config: &Config,
        transport: &Transport,
        drivers: &Drivers,
    ) -> Result<Conn, StoreError> {
        let connect = super::tls::connect(config, transport);
        let (client, mut messages) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| StoreError::Backend {
                message: format!(
                    "connecting to postgresql at {}: timed out after {CONNECT_TIMEOUT:?}",
                    target(config)
                ),
                retryable: true,
                source: None,
            })?
            .map_err(|e| {
                let retryable = is_retryable(&e) || e.code().is_none();
                StoreError::Backend {
                    message: format!(
                        "connecting to postgresql at {}: {}",
                        target(config),
                        describe(&e)
                    ),
                    retryable,
                    source: Some(Box::new(e)),
                }
            })?;
        let stop = drivers.stop.clone();
        drivers.tracker.spawn(async move {
            let driven = async {
                while let Some(message) = messages.next().await {
                    if let Err(e) = message {
                        tracing::debug!(error = %describe(&e), "postgresql connection ended");
                        break;
                    }
                }
            };
            tokio::select! {
                _ = driven => {}
                // Dropped mid-call: the call fails as a lost connection.
                _ = stop.cancelled() => {}
            }
        });
        Ok(Conn {
            client,
            statements: Mutex::new(HashMap::new()),
        })
    }

    pub(super) fn client(&self) -> &Client {
        &self.client
    }

    pub(super) fn is_closed(&self) -> bool {
        self.client.is_closed()
    }

    /// The statement for `sql`, prepared once per connection.
    pub(super) async fn statement(&self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(stmt) = self.statements.lock().unwrap().get(sql) {
            return Ok(stmt.clone());
        }
        let stmt = self.client.prepare(sql).await.map_err(pg)?;
        self.statements.lock().unwrap().insert(sql, stmt.clone());
        Ok(stmt)
    }

    pub(super) async fn query(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        let stmt = self.statement(sql).await?;
        self.client.query(&stmt, params).await.map_err(pg)
    }

    /// `query` of a statement prepared already (`statement`): sent when first polled, so that
    /// statements joined in one future go out in the order they are polled.
    pub(super) async fn query_prepared(
        &self,
        stmt: &Statement,
        params: Params<'_>,
    ) -> Result<Vec<Row>, StoreError> {
        self.client.query(stmt, params).await.map_err(pg)
    }

    /// `execute` of a statement prepared already (`statement`): sent when first polled.
    pub(super) async fn execute_prepared(
        &self,
        stmt: &Statement,
        params: Params<'_>,
    ) -> Result<u64, StoreError> {
        self.client.execute(stmt, params).await.map_err(pg)
    }

    pub(super) async fn query_opt(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let stmt = self.statement(sql).await?;
        self.client.query_opt(&stmt, params).await.map_err(pg)
    }

    pub(super) async fn query_one(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Row, StoreError> {
        let stmt = self.statement(sql).await?;
        self.client.query_one(&stmt, params).await.map_err(pg)
    }

    pub(super) async fn execute(
        &self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<u64, StoreError> {
        let stmt = self.statement(sql).await?;
        self.client.execute(&stmt, params).await.map_err(pg)
    }

    /// Runs statements without parameters, by the simple query protocol.
    pub(super) async fn batch(&self, sql: &str) -> Result<(), StoreError> {
        self.client.batch_execute(sql).await.map_err(pg)
    }
}

/// Column `i` of a row, as `T`.
pub(super) fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i).map_err(pg)
}

/// Who runs the drivers of connections: a tracker to wait for them, a token that ends them.
#[derive(Default)]
pub(super) struct Drivers {
    tracker: TaskTracker,
    stop: CancellationToken,
}

/// A bounded set of connections to one database.
pub(super) struct Pool {
    config: Config,
    transport: Transport,
    permits: Semaphore,
    idle: Mutex<Vec<Conn>>,
    drivers: Drivers,
    closed: AtomicBool,
}

impl Pool {
    pub(super) fn new(config: Config, transport: Transport, size: usize) -> Pool {
        Pool {
            config,
            transport,
            permits: Semaphore::new(size),
            idle: Mutex::new(Vec::new()),
            drivers: Drivers::default(),
            closed: AtomicBool::new(false),
        }
    }

    pub(super) fn config(&self) -> &Config {
        &self.config
    }

    pub(super) fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The drivers of this pool's connections (and of the store's own dedicated ones).
    pub(super) fn drivers(&self) -> &Drivers {
        &self.drivers
    }

    /// A connection of the pool: an idle one still open, else a new one.
    pub(super) async fn get(&self) -> Result<Pooled<'_>, StoreError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| StoreError::Backend {
                message: format!(
                    "no free postgresql connection after {ACQUIRE_TIMEOUT:?} (all {MAX_CONNECTIONS} busy)"
                ),
                retryable: true,
                source: None,
            })?
            .map_err(|_| StoreError::Closed)?;
        let idle = loop {
            let Some(conn) = self.idle.lock().unwrap().pop() else {
                break None;
            };
            if !conn.is_closed() {
                break Some(conn);
            }
        };
        let conn = match idle {
            Some(conn) => conn,
            None => Conn::connect(&self.config, &self.transport, &self.drivers).await?,
        };
        Ok(Pooled {
            pool: self,
            conn: Some(conn),
            in_transaction: false,
            _permit: permit,
        })
    }

    /// Refuses new calls and closes every connection, those in use and the dedicated ones
    /// (leaderships) too; waits for their drivers to end.
    pub(super) async fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.permits.close();
        self.idle.lock().unwrap().clear();
        self.drivers.stop.cancel();
        self.drivers.tracker.close();
        self.drivers.tracker.wait().await;
    }
}

/// A connection taken from the pool; it goes back when dropped, unless it is closed, the pool
/// is, or it is left inside a transaction (a call cancelled midway): then it is dropped.
pub(super) struct Pooled<'p> {
    pool: &'p Pool,
    conn: Option<Conn>,
    pub(super) in_transaction: bool,
    _permit: SemaphorePermit<'p>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        self.conn
            .as_ref()
            .expect("a pooled connection until dropped")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if !self.in_transaction && !conn.is_closed() && !self.pool.closed.load(Ordering::Acquire) {
            self.pool.idle.lock().unwrap().push(conn);
        }
    }
}

/// An error message with the URL and password taken out.
pub(super) fn sanitize(message: &str, url: &str, password: Option<&str>) -> String {
    let mut out = message.replace(url, &crate::store::redact_url(url));
    for secret in [password, url_password(url)].into_iter().flatten() {
        if secret.len() >= 3 {
            out = out.replace(secret, "***");
        }
    }
    out
}

fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let userinfo = &rest[..rest.rfind('@')?];
    userinfo.split_once(':').map(|(_, p)| p)
}

/// Controllers write agents' signs of life with their own wall clocks and the reaper compares
/// them with its own: clocks that disagree shorten or lengthen the agent timeout by as much.
/// Says so when this controller's clock and the database's disagree by more than a second.
pub(super) async fn warn_of_clock_skew(conn: &Conn, wall_clock: fn() -> crate::model::Millis) {
    let asked = wall_clock();
    let Ok(row) = conn
        .query_one(
            "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
            &[],
        )
        .await
    else {
        return;
    };
    let answered = wall_clock();
    let Ok(db) = col::<i64>(&row, 0) else {
        return;
    };
    let skew = db - (asked + answered) / 2;
    if skew.abs() > 1_000 {
        tracing::warn!(
            skew_ms = skew,
            "this controller's clock and the database's disagree: agents' timeouts are counted across controllers with their wall clocks, so keep every controller's clock synchronised (NTP)"
        );
    }
}
