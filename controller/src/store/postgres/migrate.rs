//! Versioned schema migrations of the PostgreSQL store: `migrations/NNNN_name.sql`, applied at
//! open in order, each recorded in `ferry_schema_migrations`, all in one transaction that holds
//! a transaction-level advisory lock, so that controllers starting at once apply them once.

use super::pool::{col, Conn};
use crate::model::Millis;
use crate::store::StoreError;

/// One schema change, known to this binary.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in version order. Never edit one that was released: add the next.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "initial",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        version: 2,
        name: "agent_instance",
        sql: include_str!("migrations/0002_agent_instance.sql"),
    },
    Migration {
        version: 3,
        name: "pipelines",
        sql: include_str!("migrations/0003_pipelines.sql"),
    },
    Migration {
        version: 4,
        name: "start_timeout",
        sql: include_str!("migrations/0004_start_timeout.sql"),
    },
    Migration {
        version: 5,
        name: "triggers",
        sql: include_str!("migrations/0005_triggers.sql"),
    },
];

/// The advisory lock key migrations hold (`ferry` in ASCII, then `mig`).
const LOCK_KEY: i64 = 0x6665_7272_796d_6967;

/// The highest schema version this binary knows.
pub(super) fn known() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database's schema up to [`known`]: applies, in order, every migration not yet
/// recorded, and records it at `now`. Refuses a database whose schema is newer than this
/// binary (`SchemaTooNew`), changing nothing.
pub(super) async fn apply(c: &Conn, now: Millis) -> Result<(), StoreError> {
    c.batch("BEGIN").await?;
    let applied = migrate(c, now).await;
    let end = if applied.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    let ended = c.batch(end).await;
    applied?;
    ended
}

async fn migrate(c: &Conn, now: Millis) -> Result<(), StoreError> {
    c.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_KEY])
        .await?;
    c.batch(
        "CREATE TABLE IF NOT EXISTS ferry_schema_migrations (
             version    BIGINT PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at BIGINT NOT NULL
         )",
    )
    .await?;
    let applied: Vec<i64> = c
        .query(
            "SELECT version FROM ferry_schema_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|r| col(r, 0))
        .collect::<Result<_, _>>()?;
    let found = applied.last().copied().unwrap_or(0);
    if found > known() {
        return Err(StoreError::SchemaTooNew {
            found,
            known: known(),
        });
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        c.batch(m.sql).await.map_err(|e| match e {
            StoreError::Backend {
                message,
                retryable,
                source,
            } => StoreError::Backend {
                message: format!("migration {:04}_{}: {message}", m.version, m.name),
                retryable,
                source,
            },
            other => other,
        })?;
        c.execute(
            "INSERT INTO ferry_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &now],
        )
        .await?;
        tracing::info!(version = m.version, name = m.name, "store schema migrated");
    }
    Ok(())
}
