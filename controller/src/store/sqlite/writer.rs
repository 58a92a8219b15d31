//! The single writer thread of the SQLite store and its group commit: operations queued while
//! a commit is on its way to disk are run together in the next transaction, each inside its own
//! savepoint, and all are answered once that transaction's commit (and fsync) returns.
//!
//! The connection runs with `synchronous = NORMAL`: `COMMIT` appends the transaction to the WAL
//! without syncing it, and the writer then syncs the WAL itself (`fdatasync` on its own handle
//! of the `-wal` file) when the batch holds a durable operation. Between the two, an operation
//! may hand part of its result out early ([`Writer::write_early`]): a submit gives the tasks it
//! claimed for parked polls to their agents while the sync is under way. What is written to the
//! WAL survives a crash of the controller process (`kill -9`), so only a power loss in that
//! window can forget such a job — never one whose submit was answered — and then its attempts'
//! reports are refused as unknown.
//!
//! Durability is per operation. A `Durable` one is answered after the sync. A `Relaxed` one (a
//! claim) reaches the disk with the next sync; a power loss before it can forget it, and then
//! the task runs again under a new attempt while the forgotten attempt's reports are fenced as
//! unknown. A failed sync leaves the disk's state unknown: the writer then refuses every later
//! operation until the controller restarts and recovers from what the disk holds.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::{StoreError, Written};

/// Why a transaction did not become durable, told to every operation it held.
#[derive(Debug, Clone)]
struct Failure {
    message: String,
    /// SQLite was busy (another connection to the file held the write lock too long).
    retryable: bool,
}

impl Failure {
    fn new(doing: &str, e: &StoreError) -> Self {
        let why = match e {
            StoreError::Backend { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Self {
            message: format!("{doing}: {why}"),
            retryable: e.is_retryable(),
        }
    }
}

/// Answers one operation once the fate of its transaction is known.
type Reply = Box<dyn FnOnce(Result<(), Failure>) + Send>;
/// Hands out an operation's early part once its transaction is written.
type Early = Box<dyn FnOnce() + Send>;
/// How an operation that ran is answered.
struct Answers {
    written: Option<Early>,
    done: Reply,
}
/// One operation: runs against the open transaction and returns how to answer it. Given no
/// connection (the transaction could not begin), it does not run: its reply then carries why.
type Op = Box<dyn FnOnce(Option<&Connection>) -> Answers + Send>;

/// Whether an operation's answer waits for an fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Durable,
    Relaxed,
}

/// Most operations one transaction takes; bounds the latency of the first in a burst.
const MAX_BATCH: usize = 512;

/// Handle to the writer thread; dropping the last handle ends the thread.
pub struct Writer {
    ops: mpsc::Sender<(Durability, Op)>,
}

impl Writer {
    /// Starts the writer thread on an open connection (WAL, `synchronous = NORMAL`) to the
    /// database at `path`.
    pub fn start(
        conn: Connection,
        path: &Path,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let wal = Wal::new(path);
        let (tx, rx) = mpsc::channel::<(Durability, Op)>();
        let handle = std::thread::Builder::new()
            .name("ferry-store-writer".into())
            .spawn(move || serve(conn, wal, rx))?;
        Ok((Self { ops: tx }, handle))
    }

    /// Runs `op` in the next transaction; resolves once that transaction is durable.
    /// An `Err` from `op` rolls back only its own changes.
    pub async fn write<R, F>(&self, op: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        self.write_with(Durability::Durable, op).await
    }

    /// Like `write`, with the durability the operation needs.
    pub async fn write_with<R, F>(&self, durability: Durability, op: F) -> Result<R, StoreError>
    where
        R: Send + 'static,
        F: FnOnce(&Connection) -> Result<R, StoreError> + Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |conn| Answers {
            written: None,
            done: answer(
                tx,
                conn.map_or(Err(StoreError::Closed), |c| in_savepoint(c, op)),
            ),
        });
        self.ops
            .send((durability, op))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }

    /// Like `write` for an operation whose result has an early part `E`: resolves with it once
    /// the transaction is written to the WAL, before the sync that makes it durable (see the
    /// module's doc); `Written::durable` answers `R` after the sync. When the operation or its
    /// commit fails, resolves with that error and hands nothing out.
    pub async fn write_early<R, E, F>(&self, op: F) -> Result<Written<E, R>, StoreError>
    where
        R: Send + 'static,
        E: Send + 'static,
        F: FnOnce(&Connection) -> Result<(R, E), StoreError> + Send + 'static,
    {
        let (early_tx, early_rx) = oneshot::channel();
        let (tx, rx) = oneshot::channel();
        let op: Op = Box::new(move |conn| {
            match conn.map_or(Err(StoreError::Closed), |c| in_savepoint(c, op)) {
                Ok((result, part)) => Answers {
                    written: Some(Box::new(move || {
                        let _ = early_tx.send(part);
                    })),
                    done: answer(tx, Ok(result)),
                },
                Err(e) => Answers {
                    written: None,
                    done: answer(tx, Err(e)),
                },
            }
        });
        self.ops
            .send((Durability::Durable, op))
            .map_err(|_| StoreError::Closed)?;
        let durable = async move { rx.await.map_err(|_| StoreError::Closed)? };
        match early_rx.await {
            Ok(early) => Ok(Written {
                early,
                durable: Box::pin(durable),
            }),
            // Not written: the operation or its transaction failed, and its answer says why.
            Err(_) => Err(match durable.await {
                Err(e) => e,
                Ok(_) => StoreError::backend("a write ended without its written part"),
            }),
        }
    }
}

/// The reply that sends an operation's result once its transaction's fate is known.
fn answer<R: Send + 'static>(
    tx: oneshot::Sender<Result<R, StoreError>>,
    result: Result<R, StoreError>,
) -> Reply {
    Box::new(move |commit: Result<(), Failure>| {
        let answer = match commit {
            Ok(()) => result,
            Err(Failure { message, retryable }) => Err(StoreError::Backend {
                message,
                retryable,
                source: None,
            }),
        };
        let _ = tx.send(answer);
    })
}

/// The writer's own handle on the database's WAL file, to sync it after a commit. Opened on
/// first use (SQLite creates the file with the first write) and again whenever the path
/// names another file than the one held.
struct Wal {
    path: PathBuf,
    file: Option<File>,
}

impl Wal {
    fn new(db: &Path) -> Self {
        let mut path = db.as_os_str().to_owned();
        path.push("-wal");
        Self {
            path: PathBuf::from(path),
            file: None,
        }
    }

    /// Makes everything written to the WAL so far durable.
    fn sync(&mut self) -> std::io::Result<()> {
        let current = std::fs::metadata(&self.path)?;
        let held = match &self.file {
            Some(file) => file
                .metadata()
                .is_ok_and(|m| m.ino() == current.ino() && m.dev() == current.dev()),
            None => false,
        };
        if !held {
            self.file = Some(File::open(&self.path)?);
        }
        match &self.file {
            Some(file) => file.sync_data(),
            None => Ok(()),
        }
    }
}

fn in_savepoint<R>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    run(conn, "SAVEPOINT op")?;
    let result = op(conn);
    if result.is_err() {
        run(conn, "ROLLBACK TO op")?;
    }
    run(conn, "RELEASE op")?;
    result
}

/// Runs a statement without parameters through the statement cache (no parsing per call).
fn run(conn: &Connection, sql: &str) -> Result<(), StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute([]))
        .map(drop)
        .map_err(super::backend)
}

fn serve(conn: Connection, mut wal: Wal, ops: mpsc::Receiver<(Durability, Op)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Set once a sync fails: what the disk holds is unknown from then on.
    let mut failed: Option<String> = None;
    while let Ok((first, op)) = ops.recv() {
        let mut durable = first == Durability::Durable;
        batch.push(op);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok((durability, op)) => {
                    durable |= durability == Durability::Durable;
                    batch.push(op);
                }
                Err(_) => break,
            }
        }
        if let Some(why) = &failed {
            // Dropping an operation unrun drops its reply: its caller sees the store closed.
            batch.clear();
            tracing::error!(error = %why, "store write refused: restart the controller");
            continue;
        }
        let answers: Vec<Answers>;
        let mut commit = match run(&conn, "BEGIN IMMEDIATE") {
            Ok(()) => {
                answers = batch.drain(..).map(|op| op(Some(&conn))).collect();
                run(&conn, "COMMIT").map_err(|e| {
                    let _ = run(&conn, "ROLLBACK");
                    Failure::new("commit failed", &e)
                })
            }
            Err(e) => {
                // Another connection to the file may hold the write lock past the busy
                // timeout: the operations are answered with why, unrun.
                answers = batch.drain(..).map(|op| op(None)).collect();
                Err(Failure::new("cannot begin a transaction", &e))
            }
        };
        let mut replies = Vec::with_capacity(answers.len());
        for Answers { written, done } in answers {
            if let (Ok(()), Some(early)) = (&commit, written) {
                early();
            }
            replies.push(done);
        }
        if commit.is_ok() && durable {
            if let Err(e) = wal.sync() {
                let why = format!("syncing {} failed: {e}", wal.path.display());
                tracing::error!(error = %why, "store is no longer durable; refusing writes");
                failed = Some(why.clone());
                commit = Err(Failure {
                    message: why,
                    retryable: false,
                });
            }
        }
        if let (Err(e), None) = (&commit, &failed) {
            tracing::error!(error = %e.message, "store commit failed; operations rolled back");
        }
        for reply in replies {
            reply(commit.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &Path) -> (Writer, PathBuf) {
        let path = dir.join("w.db");
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA busy_timeout = 100;
             CREATE TABLE t (k INTEGER PRIMARY KEY, v TEXT NOT NULL);",
        )
        .unwrap();
        let (writer, _thread) = Writer::start(conn, &path).unwrap();
        (writer, path)
    }

    fn insert(conn: &Connection, k: i64) -> Result<(), StoreError> {
        conn.execute("INSERT INTO t (k, v) VALUES (?1, 'x')", [k])
            .map(drop)
            .map_err(super::super::backend)
    }

    #[tokio::test]
    async fn the_early_part_comes_before_the_durable_answer() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = open(dir.path());
        let written = writer
            .write_early(|conn| {
                insert(conn, 1)?;
                Ok(("durable", "written"))
            })
            .await
            .unwrap();
        assert_eq!(written.early, "written");
        assert_eq!(written.durable.await.unwrap(), "durable");
        let reader = Connection::open(&path).unwrap();
        let n: i64 = reader
            .query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1, "the row is committed");
        assert!(Path::new(&format!("{}-wal", path.display())).exists());
    }

    #[tokio::test]
    async fn a_failed_operation_hands_nothing_out_and_undoes_only_its_changes() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = open(dir.path());
        writer.write(|conn| insert(conn, 1)).await.unwrap();
        let failed = writer
            .write_early(|conn| {
                insert(conn, 2)?;
                // The primary key is taken: this operation fails after its first insert.
                insert(conn, 1)?;
                Ok(((), "never"))
            })
            .await;
        assert!(
            matches!(failed, Err(StoreError::Backend { .. })),
            "no early part of a failed operation"
        );
        writer.write(|conn| insert(conn, 3)).await.unwrap();
        let reader = Connection::open(&path).unwrap();
        let keys: Vec<i64> = reader
            .prepare("SELECT k FROM t ORDER BY k")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            keys,
            [1, 3],
            "the failed operation's own insert is rolled back"
        );
    }

    /// Another connection holding the write lock past the busy timeout: the batch is answered
    /// with a retryable error, not dropped, and the writer goes on once the lock is free.
    #[tokio::test]
    async fn a_busy_database_answers_retryable_errors() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = open(dir.path());
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        let busy = writer.write(|conn| insert(conn, 1)).await.unwrap_err();
        assert!(busy.is_retryable(), "{busy}");
        let busy = writer
            .write_early(|conn| insert(conn, 1).map(|()| ((), ())))
            .await
            .err()
            .expect("not written");
        assert!(busy.is_retryable(), "{busy}");
        other.execute_batch("COMMIT").unwrap();
        writer.write(|conn| insert(conn, 1)).await.unwrap();
    }

    #[tokio::test]
    async fn after_a_failed_sync_every_write_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (writer, path) = open(dir.path());
        writer.write(|conn| insert(conn, 1)).await.unwrap();
        // The WAL vanishes under the store: its sync fails, and nothing said about the disk
        // can be trusted any more.
        std::fs::remove_file(format!("{}-wal", path.display())).unwrap();
        let failed = writer.write(|conn| insert(conn, 2)).await.unwrap_err();
        assert!(failed.to_string().contains("syncing"), "{failed}");
        let refused = writer.write(|conn| insert(conn, 3)).await.unwrap_err();
        assert!(matches!(refused, StoreError::Closed), "{refused}");
    }

    #[test]
    fn the_wal_handle_follows_a_replaced_file() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let mut wal = Wal::new(&db);
        assert!(wal.sync().is_err(), "no WAL file yet");
        std::fs::write(&wal.path, b"one").unwrap();
        wal.sync().unwrap();
        let first = wal.file.as_ref().unwrap().metadata().unwrap().ino();
        let other = dir.path().join("other");
        std::fs::write(&other, b"two").unwrap();
        std::fs::rename(&other, &wal.path).unwrap();
        wal.sync().unwrap();
        let second = wal.file.as_ref().unwrap().metadata().unwrap().ino();
        assert_ne!(first, second, "the new file is the one synced");
    }
}
