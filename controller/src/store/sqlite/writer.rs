//! The single writer thread of the SQLite store and its group commit: operations queued while
//! a commit is on its way to disk are run together in the next transaction, each inside its own
//! savepoint, and all are answered once that transaction's commit (and fsync) returns.
//!
//! Durability is per operation. A `Durable` one is fsync'd before its answer (`synchronous =
//! FULL`). A `Relaxed` one (a claim) is written to the WAL, which survives a crash of the
//! controller process (`kill -9`), and reaches the disk with the next fsync; only a power loss in
//! between can forget it, and then the task runs again under a new attempt while the forgotten
//! attempt's reports are fenced as unknown. A batch holding any durable operation is fsync'd.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Answers one operation once the fate of its transaction is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One operation: runs against the open transaction and returns how to answer it.
type Op = Box<dyn FnOnce(&Connection) -> Reply + Send>;

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
    /// Starts the writer thread on an open connection (WAL, synchronous=FULL).
    pub fn start(conn: Connection) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<(Durability, Op)>();
        let handle = std::thread::Builder::new()
            .name("ferry-store-writer".into())
            .spawn(move || serve(conn, rx))?;
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
        let op: Op = Box::new(move |conn| {
            let result = in_savepoint(conn, op);
            Box::new(move |commit: Result<(), String>| {
                let answer = match commit {
                    Ok(()) => result,
                    Err(e) => Err(StoreError::Backend(e)),
                };
                let _ = tx.send(answer);
            })
        });
        self.ops
            .send((durability, op))
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
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

fn serve(conn: Connection, ops: mpsc::Receiver<(Durability, Op)>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut synced = true;
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
        if durable != synced {
            let pragma = if durable {
                "PRAGMA synchronous = FULL"
            } else {
                "PRAGMA synchronous = NORMAL"
            };
            if let Err(e) = run(&conn, pragma) {
                tracing::error!(error = %e, "cannot set the store's durability");
            } else {
                synced = durable;
            }
        }
        let replies: Vec<Reply>;
        let commit = match run(&conn, "BEGIN IMMEDIATE") {
            Ok(()) => {
                replies = batch.drain(..).map(|op| op(&conn)).collect();
                run(&conn, "COMMIT").map_err(|e| {
                    let _ = run(&conn, "ROLLBACK");
                    format!("commit failed: {e}")
                })
            }
            Err(e) => {
                replies = Vec::new();
                let message = format!("cannot begin a transaction: {e}");
                tracing::error!(error = %message, "store write failed");
                for op in batch.drain(..) {
                    // Answer without running: the op's reply is only reachable by running it,
                    // so run it against a savepoint-less failure by dropping it; its caller
                    // then sees the store as closed for this call.
                    drop(op);
                }
                Err(message)
            }
        };
        if let Err(e) = &commit {
            tracing::error!(error = %e, "store commit failed; operations rolled back");
        }
        for reply in replies {
            reply(commit.clone());
        }
    }
}
