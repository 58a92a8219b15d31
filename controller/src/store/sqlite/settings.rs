//! Settings in SQLite: values the controllers of one store agree on, each bound once.

use rusqlite::{params, Connection};

use super::backend;
use crate::store::StoreError;

/// Stores `value` under `key` unless a value is there already; returns the stored value.
pub(super) fn bind(conn: &Connection, key: &str, value: &str) -> Result<String, StoreError> {
    super::exec(
        conn,
        "INSERT INTO settings (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO NOTHING",
        params![key, value],
    )?;
    conn.prepare_cached("SELECT value FROM settings WHERE key = ?1")
        .and_then(|mut stmt| stmt.query_row([key], |r| r.get(0)))
        .map_err(backend)
}
