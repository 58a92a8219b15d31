//! High watermarks in SQLite, per (job name, task id): read at claims, moved by successes
//! (`extracts::record`), listed, set and reset by hand.

use rusqlite::{params, Connection, OptionalExtension};

use super::{backend, from_json};
use crate::model::{Millis, TaskSpec, Watermark};
use crate::store::StoreError;

const COLUMNS: &str = "job_name, task_id, column_name, value, updated_at, job_id, attempt";

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Watermark> {
    Ok(Watermark {
        job_name: r.get(0)?,
        task_id: r.get(1)?,
        column: r.get(2)?,
        value: r.get(3)?,
        updated_at: r.get(4)?,
        job_id: r.get(5)?,
        attempt: r.get(6)?,
    })
}

/// The stored watermark's value, if any.
pub(super) fn value(
    conn: &Connection,
    job_name: &str,
    task_id: &str,
) -> Result<Option<String>, StoreError> {
    conn.prepare_cached("SELECT value FROM watermarks WHERE job_name = ?1 AND task_id = ?2")
        .map_err(backend)?
        .query_row(params![job_name, task_id], |r| r.get(0))
        .optional()
        .map_err(backend)
}

/// Writes a watermark; `by` is the job and attempt whose success set it.
pub(super) fn put(
    conn: &Connection,
    job_name: &str,
    task_id: &str,
    column: &str,
    value: &str,
    now: Millis,
    by: Option<(&str, u32)>,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "INSERT OR REPLACE INTO watermarks (job_name, task_id, column_name, value, updated_at, job_id, attempt)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            job_name,
            task_id,
            column,
            value,
            now,
            by.map(|b| b.0),
            by.map_or(0, |b| b.1)
        ],
    )?;
    Ok(())
}

/// The most recent job of that name, `NotFound` naming it when there is none.
fn latest_job(conn: &Connection, job_name: &str) -> Result<String, StoreError> {
    conn.prepare_cached(
        "SELECT id FROM jobs WHERE name = ?1 ORDER BY created_at DESC, id DESC LIMIT 1",
    )
    .map_err(backend)?
    .query_row([job_name], |r| r.get(0))
    .optional()
    .map_err(backend)?
    .ok_or_else(|| StoreError::NotFound(format!("job named {job_name:?}")))
}

/// The incremental column of a task of the latest job named `job_name`: `NotFound` naming
/// the job (and its incremental sql tasks) when it has no such task, `Invalid` when the task
/// is not incremental.
fn incremental_column(
    conn: &Connection,
    job_name: &str,
    task_id: &str,
) -> Result<String, StoreError> {
    let job_id = latest_job(conn, job_name)?;
    let mut stmt = conn
        .prepare_cached("SELECT task_id, spec FROM tasks WHERE job_id = ?1 ORDER BY seq")
        .map_err(backend)?;
    let rows = stmt
        .query_map([&job_id], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(backend)?;
    let mut incremental = Vec::new();
    let mut found = None;
    for row in rows {
        let (id, spec) = row.map_err(backend)?;
        let spec: TaskSpec = from_json(&spec)?;
        let column = spec.kind.incremental_column().map(str::to_string);
        if id == task_id {
            found = Some(column.clone());
        }
        if column.is_some() {
            incremental.push(id);
        }
    }
    let tasks = if incremental.is_empty() {
        "it has no incremental sql task".to_string()
    } else {
        format!("its incremental sql tasks: {}", incremental.join(", "))
    };
    match found {
        Some(Some(column)) => Ok(column),
        Some(None) => Err(StoreError::Invalid(format!(
            "task {task_id:?} of job {job_name:?} is not an incremental sql task ({tasks})"
        ))),
        None => Err(StoreError::NotFound(format!(
            "task {task_id:?} of job {job_name:?} ({tasks})"
        ))),
    }
}

pub(super) fn list(
    conn: &Connection,
    job_name: Option<&str>,
) -> Result<Vec<Watermark>, StoreError> {
    let tx = super::ReadTx::begin(conn)?;
    let Some(name) = job_name else {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM watermarks ORDER BY job_name, task_id"
            ))
            .map_err(backend)?;
        let rows = stmt.query_map([], row).map_err(backend)?;
        return rows.collect::<Result<_, _>>().map_err(backend);
    };
    let marks: Vec<Watermark> = {
        let mut stmt = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM watermarks WHERE job_name = ?1 ORDER BY task_id"
            ))
            .map_err(backend)?;
        let rows = stmt.query_map([name], row).map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    if marks.is_empty() {
        latest_job(&tx, name)?;
    }
    Ok(marks)
}

/// Sets a watermark by hand, for a task of the latest job of that name.
pub(super) fn set(
    conn: &Connection,
    job_name: &str,
    task_id: &str,
    value: &str,
    now: Millis,
) -> Result<Watermark, StoreError> {
    let column = incremental_column(conn, job_name, task_id)?;
    put(conn, job_name, task_id, &column, value, now, None)?;
    Ok(Watermark {
        job_name: job_name.to_string(),
        task_id: task_id.to_string(),
        column,
        value: value.to_string(),
        updated_at: now,
        job_id: None,
        attempt: 0,
    })
}

/// Forgets a watermark; false when there was none (for a known job and task).
pub(super) fn reset(conn: &Connection, job_name: &str, task_id: &str) -> Result<bool, StoreError> {
    let deleted = super::exec(
        conn,
        "DELETE FROM watermarks WHERE job_name = ?1 AND task_id = ?2",
        params![job_name, task_id],
    )?;
    if deleted > 0 {
        return Ok(true);
    }
    incremental_column(conn, job_name, task_id)?;
    Ok(false)
}
