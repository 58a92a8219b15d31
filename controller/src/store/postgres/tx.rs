//! Transactions of the PostgreSQL store: how one begins (READ COMMITTED to write, a
//! REPEATABLE READ snapshot to read several statements), ends (commit or roll back, a lost
//! `COMMIT` told apart), and the pause before one is made again.

use std::time::Duration;

use super::pool::{self, Conn, Pooled};
use crate::store::StoreError;

/// How many times a transaction is made before its retryable failure is returned.
pub(super) const MAX_TRIES: u32 = 5;

/// How a call uses its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// A READ COMMITTED transaction that writes, taking row locks.
    Write,
    /// `Write` for statements that take arrays of keys, planned as `BEGIN_BATCH` says: the
    /// combiner's batches and submits.
    WriteKeyed,
    /// A read of several statements in one snapshot.
    Snapshot,
    /// One statement, in its own implicit transaction.
    Single,
}

/// Begins the transaction `mode` asks for, if any.
pub(super) async fn begin(conn: &mut Pooled<'_>, mode: Mode) -> Result<(), StoreError> {
    let sql = match mode {
        Mode::Write => "BEGIN ISOLATION LEVEL READ COMMITTED",
        Mode::WriteKeyed => BEGIN_BATCH,
        Mode::Snapshot => BEGIN_SNAPSHOT,
        Mode::Single => return Ok(()),
    };
    // Marked first: a call cancelled while it is in a transaction drops the connection.
    conn.in_transaction = true;
    conn.batch(sql).await
}

/// The `BEGIN` of a read in one snapshot, sent with its first statements (`begin_with`): if
/// it failed, they would read outside the snapshot, but write nothing. Reads by key: each
/// statement's plan made once (see `BEGIN_BATCH`).
pub(super) const BEGIN_SNAPSHOT: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
     SET LOCAL plan_cache_mode = force_generic_plan";

/// The `BEGIN` of the combiner's batches, whose statements join arrays of keys (a few to a
/// hundred) to tables that grow by thousands of rows a second. Each statement reaches rows by
/// its indexes (every statement of a batch has one): left to its costs, the planner scanned the
/// whole attempts table for each batch until autovacuum had analysed it. And each runs the plan
/// made once for it: with arrays for parameters a plan made for the values always looks
/// cheaper, so PostgreSQL planned every statement again at each execution, which cost more
/// than running it (`docs/decisions/0008-postgres-combiner-and-claim-cursors.md`). Sent with
/// the batch's first statements (`begin_with`); submits begin with it too (`Mode::WriteKeyed`).
pub(super) const BEGIN_BATCH: &str = "BEGIN ISOLATION LEVEL READ COMMITTED; \
     SET LOCAL enable_seqscan = off; SET LOCAL plan_cache_mode = force_generic_plan";

/// Runs `body` in a write transaction begun by `begin` (simple-query statements), sent with
/// its first statements rather than a round trip before them. `BEGIN` fails only with the
/// connection, and then so does everything after it. The caller marks the connection as in a
/// transaction first.
pub(super) async fn begin_with<T>(
    conn: &Conn,
    begin: &'static str,
    body: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let (begun, outcome) = tokio::join!(conn.batch(begin), body);
    begun?;
    outcome
}

/// Commits after a success, rolls back after a failure. A write whose `COMMIT` lost its
/// connection may or may not be committed: that failure is not retryable.
pub(super) async fn end<T>(
    conn: &mut Pooled<'_>,
    mode: Mode,
    outcome: Result<T, StoreError>,
) -> Result<T, StoreError> {
    if mode == Mode::Single {
        return outcome;
    }
    match outcome {
        Ok(value) => {
            let committed = match mode {
                Mode::Snapshot => conn.batch("COMMIT").await,
                _ => commit(conn).await,
            };
            committed?;
            conn.in_transaction = false;
            Ok(value)
        }
        Err(e) => {
            if conn.batch("ROLLBACK").await.is_ok() {
                conn.in_transaction = false;
            }
            Err(e)
        }
    }
}

/// Commits a write: a `COMMIT` that lost its connection may or may not have committed, which
/// is said, and is not retryable. (The caller marks the connection out of its transaction.)
pub(super) async fn commit(conn: &Conn) -> Result<(), StoreError> {
    match conn.client().batch_execute("COMMIT").await {
        Ok(()) => Ok(()),
        Err(e) if e.code().is_none() => Err(StoreError::Backend {
            message: format!(
                "the connection to postgresql was lost while committing, so whether the change was made is unknown: {}",
                pool::describe(&e)
            ),
            retryable: false,
            source: Some(Box::new(e)),
        }),
        Err(e) => Err(pool::pg(e)),
    }
}

/// Ends a transaction that wrote nothing (its row locks aside) by rolling it back, which
/// PostgreSQL does without waiting for its log to reach the disk, as a `COMMIT` would.
pub(super) async fn end_unwritten<T>(conn: &mut Pooled<'_>, value: T) -> Result<T, StoreError> {
    conn.batch("ROLLBACK").await?;
    conn.in_transaction = false;
    Ok(value)
}

/// A pause before try `tries + 1`: 5–20 ms, doubled at each try.
pub(super) async fn backoff(tries: u32) {
    let ms = fastrand::u64(5..=20) << tries.min(6);
    tokio::time::sleep(Duration::from_millis(ms)).await;
}
