//! Singleton roles on PostgreSQL session advisory locks: each role a lock keyed by its name,
//! held on a connection of its own (not the pool's) for as long as the role is; dropping the
//! leadership closes that connection, which releases the lock.

use std::time::Duration;

use async_trait::async_trait;

use super::pool::{Conn, Pool};
use crate::store::{Leadership, StoreError};

/// How long `still_held` waits for its answer before it counts the role lost.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Takes `role` if no other session holds it.
pub(super) async fn lead(
    pool: &Pool,
    role: &str,
) -> Result<Option<Box<dyn Leadership>>, StoreError> {
    // Asked every half second by every controller: when another session holds the role, a
    // pooled connection says so, without opening one of its own.
    if held_elsewhere(pool, role).await? {
        return Ok(None);
    }
    let conn = Conn::connect(pool.config(), pool.transport(), pool.drivers()).await?;
    // The server notices a vanished holder within about 20 s, rather than after the system's
    // TCP keepalive default of two hours, and frees the role.
    conn.batch(
        "SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 2",
    )
    .await?;
    let row = conn
        .query_one(
            "SELECT pg_try_advisory_lock(hashtext('ferry:' || $1::text))",
            &[&role],
        )
        .await?;
    let taken: bool = super::pool::col(&row, 0)?;
    if !taken {
        return Ok(None);
    }
    Ok(Some(Box::new(Held { conn })))
}

/// Whether a session holds the role's lock, as `pg_locks` shows it (a bigint advisory key
/// is its high and low halves in `classid` and `objid`, with `objsubid` 1).
async fn held_elsewhere(pool: &Pool, role: &str) -> Result<bool, StoreError> {
    let conn = pool.get().await?;
    let row = conn
        .query_one(
            "SELECT EXISTS (
                 SELECT 1 FROM pg_locks l,
                      (SELECT hashtext('ferry:' || $1::text)::bigint AS key) k
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
                   AND l.classid = ((k.key >> 32) & 4294967295)::oid
                   AND l.objid = (k.key & 4294967295)::oid)",
            &[&role],
        )
        .await?;
    super::pool::col(&row, 0)
}

/// A role held on its own connection.
struct Held {
    conn: Conn,
}

#[async_trait]
impl Leadership for Held {
    async fn still_held(&mut self) -> bool {
        if self.conn.is_closed() {
            return false;
        }
        matches!(
            tokio::time::timeout(CHECK_TIMEOUT, self.conn.client().simple_query("SELECT 1")).await,
            Ok(Ok(_))
        )
    }
}
