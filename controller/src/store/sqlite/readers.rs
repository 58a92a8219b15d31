//! The store's read side: read-only connections, which WAL lets run beside the writer — a
//! small pool used on the blocking threads, and one connection for point reads made on the
//! caller's thread — and read transactions on them (`ReadTx`).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rusqlite::{Connection, OpenFlags};

use super::{backend, exec, SqliteStore, StoreError, STATEMENT_CACHE};

/// Idle read-only connections, reused by reads on the blocking threads.
pub(super) struct ReaderPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReaderPool {
    pub(super) fn new(path: PathBuf) -> Self {
        Self {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }
}

/// Tasks of a job read on the caller's thread, at most; larger jobs are read on the pool.
pub(super) const READ_NOW_MAX_TASKS: u32 = 64;
/// Running attempts checked for stop orders on the caller's thread, at most.
pub(super) const READ_NOW_MAX_ATTEMPTS: usize = 64;

fn open_reader(path: &Path, busy_timeout_ms: u32) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(backend)?;
    conn.execute_batch(&format!(
        "PRAGMA busy_timeout = {busy_timeout_ms}; PRAGMA cache_size = -16384;"
    ))
    .map_err(backend)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// A read transaction on a reader connection: one consistent snapshot for several queries,
/// with `BEGIN` and `COMMIT` from the statement cache. Ends when dropped.
pub(crate) struct ReadTx<'c>(&'c Connection);

impl<'c> ReadTx<'c> {
    pub(crate) fn begin(conn: &'c Connection) -> Result<Self, StoreError> {
        exec(conn, "BEGIN", [])?;
        Ok(Self(conn))
    }
}

impl std::ops::Deref for ReadTx<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0
    }
}

impl Drop for ReadTx<'_> {
    fn drop(&mut self) {
        let _ = exec(self.0, "COMMIT", []);
    }
}

impl SqliteStore {
    /// Runs a read of a few rows on the caller's thread. Such a read costs tens of
    /// microseconds, less than the two thread hand-offs of the blocking pool (on a VM each
    /// one may wake an idle vCPU; `docs/decisions/0011-latency-on-small-hosts.md`). `None`
    /// (the caller then reads on the pool) when `f` finds the read larger than a point read (it
    /// answers `Ok(None)`), when another thread holds this connection, and when SQLite is busy
    /// or fails: this connection never waits (`busy_timeout = 0`), so a runtime thread never
    /// sleeps here.
    pub(super) fn read_now<R>(
        &self,
        f: impl FnOnce(&Connection) -> Result<Option<R>, StoreError>,
    ) -> Option<Result<R, StoreError>> {
        let mut slot = self.now.try_lock().ok()?;
        if slot.is_none() {
            *slot = Some(open_reader(&self.readers.path, 0).ok()?);
        }
        match f(slot.as_ref()?) {
            Ok(Some(value)) => Some(Ok(value)),
            Ok(None) | Err(StoreError::Backend { .. }) => None,
            Err(e) => Some(Err(e)),
        }
    }

    pub(super) async fn read<R, F>(&self, f: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.idle.lock().expect("reader pool poisoned").pop() {
                Some(conn) => conn,
                None => open_reader(&pool.path, 10_000)?,
            };
            let result = f(&conn);
            let mut idle = pool.idle.lock().expect("reader pool poisoned");
            if idle.len() < 8 {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|e| StoreError::backend(e.to_string()))?
    }
}
