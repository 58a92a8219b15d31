//! Published outputs in SQLite: their rows (written with a success), the inputs a claim hands
//! out, listings for readers, and what retention needs (job ends, running attempts).

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use super::{backend, from_json};
use crate::model::{AttemptKey, Millis, OutputFile, ResultFile, TaskSpec};
use crate::store::StoreError;

/// Records a succeeded attempt's outputs, replacing whatever rows its task had.
pub(super) fn publish(
    conn: &Connection,
    key: &AttemptKey,
    outputs: &[OutputFile],
    now: Millis,
) -> Result<(), StoreError> {
    if outputs.is_empty() {
        // Most tasks publish nothing; a task succeeds once, so there is nothing to replace.
        return Ok(());
    }
    super::exec(
        conn,
        "DELETE FROM outputs WHERE job_id = ?1 AND task_id = ?2",
        params![key.job_id, key.task_id],
    )?;
    let mut insert = conn
        .prepare_cached(
            "INSERT OR REPLACE INTO outputs (job_id, task_id, attempt, name, size, sha256, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(backend)?;
    for file in outputs {
        insert
            .execute(params![
                key.job_id,
                key.task_id,
                key.attempt,
                file.name,
                file.size as i64,
                file.sha256,
                now
            ])
            .map_err(backend)?;
    }
    Ok(())
}

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ResultFile> {
    Ok(ResultFile {
        task_id: r.get(0)?,
        attempt: r.get(1)?,
        name: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        sha256: r.get(4)?,
        created_at: r.get(5)?,
    })
}

/// Published outputs of one task, by name.
pub(super) fn of_task(
    conn: &Connection,
    job_id: &str,
    task_id: &str,
) -> Result<Vec<ResultFile>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT task_id, attempt, name, size, sha256, created_at FROM outputs
             WHERE job_id = ?1 AND task_id = ?2 ORDER BY name",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![job_id, task_id], row)
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

/// The inputs of a task: the published outputs of its dependencies, in their order.
pub(super) fn inputs(
    conn: &Connection,
    job_id: &str,
    spec: &TaskSpec,
) -> Result<Vec<crate::model::ResultFile>, StoreError> {
    let mut inputs = Vec::new();
    for dep in &spec.depends_on {
        inputs.extend(of_task(conn, job_id, dep)?);
    }
    Ok(inputs)
}

pub(super) fn list(
    conn: &Connection,
    job_id: &str,
    task_id: Option<&str>,
) -> Result<Vec<ResultFile>, StoreError> {
    let tx = super::ReadTx::begin(conn)?;
    let known: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")
        .map_err(backend)?
        .query_row([job_id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if known.is_none() {
        return Err(StoreError::NotFound(format!("job {job_id}")));
    }
    if let Some(task_id) = task_id {
        dependencies(&tx, job_id, task_id)?;
        return of_task(&tx, job_id, task_id);
    }
    let mut stmt = tx
        .prepare_cached(
            "SELECT task_id, attempt, name, size, sha256, created_at FROM outputs
             WHERE job_id = ?1 ORDER BY task_id, name",
        )
        .map_err(backend)?;
    let rows = stmt.query_map([job_id], row).map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub(super) fn dependencies(
    conn: &Connection,
    job_id: &str,
    task_id: &str,
) -> Result<Vec<String>, StoreError> {
    let spec: Option<String> = conn
        .prepare_cached("SELECT spec FROM tasks WHERE job_id = ?1 AND task_id = ?2")
        .map_err(backend)?
        .query_row(params![job_id, task_id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let spec =
        spec.ok_or_else(|| StoreError::NotFound(format!("task {task_id} of job {job_id}")))?;
    Ok(from_json::<TaskSpec>(&spec)?.depends_on)
}

pub(super) fn job_ends(
    conn: &Connection,
    job_ids: &[String],
) -> Result<HashMap<String, Option<Millis>>, StoreError> {
    let mut stmt = conn
        .prepare_cached("SELECT finished_at FROM jobs WHERE id = ?1")
        .map_err(backend)?;
    let mut ends = HashMap::new();
    for id in job_ids {
        let end: Option<Option<Millis>> = stmt
            .query_row([id], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if let Some(end) = end {
            ends.insert(id.clone(), end);
        }
    }
    Ok(ends)
}

pub(super) fn delete(conn: &Connection, job_id: &str) -> Result<u64, StoreError> {
    Ok(super::exec(conn, "DELETE FROM outputs WHERE job_id = ?1", [job_id])? as u64)
}

pub(super) fn running(
    conn: &Connection,
    attempts: Vec<AttemptKey>,
) -> Result<Vec<AttemptKey>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT state FROM attempts WHERE job_id = ?1 AND task_id = ?2 AND number = ?3",
        )
        .map_err(backend)?;
    let mut running = Vec::new();
    for key in attempts {
        let state: Option<String> = stmt
            .query_row(params![key.job_id, key.task_id, key.attempt], |r| r.get(0))
            .optional()
            .map_err(backend)?;
        if state.as_deref() == Some("running") {
            running.push(key);
        }
    }
    Ok(running)
}
