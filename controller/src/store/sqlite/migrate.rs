//! Versioned schema migrations of the SQLite store: `migrations/NNNN_name.sql`, applied at
//! open in order, each recorded in `ferry_schema_migrations`, all in one `BEGIN IMMEDIATE`
//! transaction (the write lock: two controllers opening one file apply them once).

use rusqlite::{params, Connection, TransactionBehavior};

use super::backend;
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
        name: "agent_liveness",
        sql: include_str!("migrations/0002_agent_liveness.sql"),
    },
    Migration {
        version: 3,
        name: "settings",
        sql: include_str!("migrations/0003_settings.sql"),
    },
    Migration {
        version: 4,
        name: "agent_instance",
        sql: include_str!("migrations/0004_agent_instance.sql"),
    },
    Migration {
        version: 5,
        name: "pipelines",
        sql: include_str!("migrations/0005_pipelines.sql"),
    },
    Migration {
        version: 6,
        name: "start_timeout",
        sql: include_str!("migrations/0006_start_timeout.sql"),
    },
    Migration {
        version: 7,
        name: "triggers",
        sql: include_str!("migrations/0007_triggers.sql"),
    },
];

/// The highest schema version this binary knows.
pub(super) fn known() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Brings the database's schema up to [`known`]: applies, in order, every migration not yet
/// recorded, and records it at `now`. Refuses a database whose schema is newer than this
/// binary (`SchemaTooNew`), changing nothing. A database created before versioning has its
/// tables but no record: `0001` is idempotent, so it takes it harmlessly.
pub(super) fn apply(conn: &mut Connection, now: Millis) -> Result<(), StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(backend)?;
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS ferry_schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )
    .map_err(backend)?;
    let applied: Vec<i64> = tx
        .prepare("SELECT version FROM ferry_schema_migrations ORDER BY version")
        .and_then(|mut stmt| stmt.query_map([], |r| r.get(0))?.collect())
        .map_err(backend)?;
    let found = applied.last().copied().unwrap_or(0);
    if found > known() {
        return Err(StoreError::SchemaTooNew {
            found,
            known: known(),
        });
    }
    for m in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        tx.execute_batch(m.sql).map_err(|e| {
            let version = m.version;
            match backend(e) {
                StoreError::Backend {
                    message,
                    retryable,
                    source,
                } => StoreError::Backend {
                    message: format!("migration {version:04}_{}: {message}", m.name),
                    retryable,
                    source,
                },
                other => other,
            }
        })?;
        tx.execute(
            "INSERT INTO ferry_schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![m.version, m.name, now],
        )
        .map_err(backend)?;
        tracing::info!(version = m.version, name = m.name, "store schema migrated");
    }
    tx.commit().map_err(backend)
}

/// Milliseconds since the Unix epoch, for the record of when a migration was applied.
pub(super) fn wall_clock() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(conn: &Connection) -> Vec<(i64, String, i64)> {
        conn.prepare(
            "SELECT version, name, applied_at FROM ferry_schema_migrations ORDER BY version",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn columns(conn: &Connection, table: &str) -> Vec<String> {
        conn.prepare(&format!("SELECT name FROM pragma_table_info('{table}')"))
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn applying_twice_changes_nothing() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, 5).unwrap();
        let first = versions(&conn);
        let every: Vec<_> = MIGRATIONS
            .iter()
            .map(|m| (m.version, m.name.to_string(), 5))
            .collect();
        assert_eq!(first, every);
        apply(&mut conn, 9).unwrap();
        assert_eq!(versions(&conn), first, "nothing applied again");
        assert!(columns(&conn, "agents").contains(&"seen_at".to_string()));
    }

    /// A database created by a controller from before versioning: today's `0001`, with no
    /// record of it, holding an agent.
    #[test]
    fn a_database_from_before_versioning_is_upgraded() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(MIGRATIONS[0].sql).unwrap();
        conn.execute(
            "INSERT INTO agents (name, session, state, queues, labels, max_tasks, hostname, version, registered_at)
             VALUES ('a', 's', 'ready', '[]', '{}', 1, 'h', 'v', 7)",
            [],
        )
        .unwrap();
        apply(&mut conn, 11).unwrap();
        assert_eq!(
            versions(&conn).iter().map(|v| v.0).collect::<Vec<_>>(),
            (1..=known()).collect::<Vec<_>>()
        );
        let (seen_at, metrics): (i64, Option<String>) = conn
            .query_row(
                "SELECT seen_at, metrics FROM agents WHERE name = 'a'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!((seen_at, metrics), (0, None), "the agent is kept");
    }

    #[test]
    fn a_newer_schema_is_refused_naming_both_versions() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, 1).unwrap();
        conn.execute(
            "INSERT INTO ferry_schema_migrations (version, name, applied_at) VALUES (999, 'future', 2)",
            [],
        )
        .unwrap();
        let err = apply(&mut conn, 3).unwrap_err();
        assert!(
            matches!(err, StoreError::SchemaTooNew { found: 999, known: k } if k == known()),
            "{err:?}"
        );
        let message = err.to_string();
        assert!(
            message.contains("999") && message.contains(&format!(" {} ", known())),
            "{message}"
        );
    }
}
