//! Webhook triggers in SQLite: create (of a live pipeline), list, get, delete.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{backend, exec, SqliteStore};
use crate::store::triggers::{exists, not_found, TriggerRecord, TriggerStore};
use crate::store::StoreError;

const COLUMNS: &str = "SELECT name, pipeline, secret, created_at FROM triggers";

fn record(r: &Row<'_>) -> rusqlite::Result<TriggerRecord> {
    Ok(TriggerRecord {
        name: r.get(0)?,
        pipeline: r.get(1)?,
        secret: r.get(2)?,
        created_at: r.get(3)?,
    })
}

fn create(conn: &Connection, t: &TriggerRecord) -> Result<(), StoreError> {
    let live: Option<i64> = conn
        .prepare_cached("SELECT 1 FROM pipelines WHERE name = ?1 AND deleted_at IS NULL")
        .map_err(backend)?
        .query_row([&t.pipeline], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if live.is_none() {
        return Err(crate::store::pipelines::not_found(&t.pipeline));
    }
    let written = exec(
        conn,
        "INSERT INTO triggers (name, pipeline, secret, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (name) DO NOTHING",
        params![t.name, t.pipeline, t.secret, t.created_at],
    )?;
    if written == 0 {
        return Err(exists(&t.name));
    }
    Ok(())
}

#[async_trait]
impl TriggerStore for SqliteStore {
    async fn create_trigger(&self, t: TriggerRecord) -> Result<(), StoreError> {
        self.writer.write(move |conn| create(conn, &t)).await
    }

    async fn list_triggers(&self) -> Result<Vec<TriggerRecord>, StoreError> {
        self.read(|conn| {
            conn.prepare_cached(&format!("{COLUMNS} ORDER BY name"))
                .map_err(backend)?
                .query_map([], record)
                .and_then(|rows| rows.collect())
                .map_err(backend)
        })
        .await
    }

    async fn get_trigger(&self, name: &str) -> Result<Option<TriggerRecord>, StoreError> {
        let name = name.to_string();
        self.read(move |conn| {
            conn.prepare_cached(&format!("{COLUMNS} WHERE name = ?1"))
                .map_err(backend)?
                .query_row([&name], record)
                .optional()
                .map_err(backend)
        })
        .await
    }

    async fn delete_trigger(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .write(
                move |conn| match exec(conn, "DELETE FROM triggers WHERE name = ?1", [&name])? {
                    0 => Err(not_found(&name)),
                    _ => Ok(()),
                },
            )
            .await
    }
}
