//! Webhook triggers in PostgreSQL: create (of a live pipeline, under its row's share lock so
//! a delete racing it waits), list, get, delete.

use async_trait::async_trait;
use tokio_postgres::Row;

use super::pool::{col, Conn};
use super::tx::{backoff, begin, end, Mode, MAX_TRIES};
use super::PostgresStore;
use crate::store::triggers::{exists, not_found, TriggerRecord, TriggerStore};
use crate::store::StoreError;

const LIST: &str = "SELECT name, pipeline, secret, created_at FROM triggers ORDER BY name";
const GET: &str = "SELECT name, pipeline, secret, created_at FROM triggers WHERE name = $1";

fn record(r: &Row) -> Result<TriggerRecord, StoreError> {
    Ok(TriggerRecord {
        name: col(r, 0)?,
        pipeline: col(r, 1)?,
        secret: col(r, 2)?,
        created_at: col(r, 3)?,
    })
}

async fn create(c: &Conn, t: &TriggerRecord) -> Result<(), StoreError> {
    let live = c
        .query_opt(
            "SELECT 1 FROM pipelines WHERE name = $1 AND deleted_at IS NULL FOR SHARE",
            &[&t.pipeline],
        )
        .await?;
    if live.is_none() {
        return Err(crate::store::pipelines::not_found(&t.pipeline));
    }
    let written = c
        .execute(
            "INSERT INTO triggers (name, pipeline, secret, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO NOTHING",
            &[&t.name, &t.pipeline, &t.secret, &t.created_at],
        )
        .await?;
    if written == 0 {
        return Err(exists(&t.name));
    }
    Ok(())
}

#[async_trait]
impl TriggerStore for PostgresStore {
    async fn create_trigger(&self, t: TriggerRecord) -> Result<(), StoreError> {
        transaction!(self, Mode::Write, |c| create(c, &t))
    }

    async fn list_triggers(&self) -> Result<Vec<TriggerRecord>, StoreError> {
        transaction!(self, Mode::Single, |c| async {
            let rows = c.query(LIST, &[]).await?;
            rows.iter().map(record).collect()
        })
    }

    async fn get_trigger(&self, name: &str) -> Result<Option<TriggerRecord>, StoreError> {
        transaction!(self, Mode::Single, |c| async {
            let row = c.query_opt(GET, &[&name]).await?;
            row.as_ref().map(record).transpose()
        })
    }

    async fn delete_trigger(&self, name: &str) -> Result<(), StoreError> {
        transaction!(self, Mode::Write, |c| async {
            match c
                .execute("DELETE FROM triggers WHERE name = $1", &[&name])
                .await?
            {
                0 => Err(not_found(name)),
                _ => Ok(()),
            }
        })
    }
}
