//! Settings in PostgreSQL: values the controllers of one store agree on, each bound once.

use super::pool::{col, Conn};
use crate::store::StoreError;

/// Stores `value` under `key` unless a value is there already; returns the stored value. A
/// concurrent first binding makes this one wait for it, then read the value it stored.
pub(super) async fn bind(c: &Conn, key: &str, value: &str) -> Result<String, StoreError> {
    c.execute(
        "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        &[&key, &value],
    )
    .await?;
    let row = c
        .query_one("SELECT value FROM settings WHERE key = $1", &[&key])
        .await?;
    col(&row, 0)
}
