//! The single writer thread of the SQLite store and its group commit: operations queued while
//! a commit is on its way to disk are run together in the next transaction, each inside its own
//! savepoint, and all are answered once that transaction's commit (and fsync) returns.

use std::sync::mpsc;

use rusqlite::Connection;
use tokio::sync::oneshot;

use crate::store::StoreError;

/// Answers one operation once the fate of its transaction is known.
type Reply = Box<dyn FnOnce(Result<(), String>) + Send>;
/// One operation: runs against the open transaction and returns how to answer it.
type Op = Box<dyn FnOnce(&Connection) -> Reply + Send>;

/// Most operations one transaction takes; bounds the latency of the first in a burst.
const MAX_BATCH: usize = 512;

/// Handle to the writer thread; dropping the last handle ends the thread.
pub struct Writer {
    ops: mpsc::Sender<Op>,
}

impl Writer {
    /// Starts the writer thread on an open connection (WAL, synchronous=FULL).
    pub fn start(conn: Connection) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel::<Op>();
        let handle = std::thread::Builder::new()
            .name("ferry-store-writer".into())
            .spawn(move || run(conn, rx))?;
        Ok((Self { ops: tx }, handle))
    }

    /// Runs `op` in the next transaction; resolves once that transaction is durable.
    /// An `Err` from `op` rolls back only its own changes.
    pub async fn write<R, F>(&self, op: F) -> Result<R, StoreError>
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
        self.ops.send(op).map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

fn in_savepoint<R>(
    conn: &Connection,
    op: impl FnOnce(&Connection) -> Result<R, StoreError>,
) -> Result<R, StoreError> {
    conn.execute_batch("SAVEPOINT op").map_err(super::backend)?;
    let result = op(conn);
    let end = if result.is_ok() {
        "RELEASE op"
    } else {
        "ROLLBACK TO op; RELEASE op"
    };
    conn.execute_batch(end).map_err(super::backend)?;
    result
}

fn run(conn: Connection, ops: mpsc::Receiver<Op>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Ok(first) = ops.recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match ops.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let replies: Vec<Reply>;
        let commit = match conn.execute_batch("BEGIN IMMEDIATE") {
            Ok(()) => {
                replies = batch.drain(..).map(|op| op(&conn)).collect();
                conn.execute_batch("COMMIT").map_err(|e| {
                    let _ = conn.execute_batch("ROLLBACK");
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
