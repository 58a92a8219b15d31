//! High watermarks in PostgreSQL, per (job name, task id): read at claims, moved by
//! successes (`extracts::record`), listed, set and reset by hand.

use super::from_json;
use super::pool::{col, Conn};
use crate::model::{Millis, TaskSpec, Watermark};
use crate::store::StoreError;

fn row(r: &tokio_postgres::Row) -> Result<Watermark, StoreError> {
    Ok(Watermark {
        job_name: col(r, 0)?,
        task_id: col(r, 1)?,
        column: col(r, 2)?,
        value: col(r, 3)?,
        updated_at: col(r, 4)?,
        job_id: col(r, 5)?,
        attempt: col::<i64>(r, 6)? as u32,
    })
}

/// The stored watermark's value, if any.
pub(super) async fn value(
    c: &Conn,
    job_name: &str,
    task_id: &str,
) -> Result<Option<String>, StoreError> {
    let row = c
        .query_opt(
            "SELECT value FROM watermarks WHERE job_name = $1 AND task_id = $2",
            &[&job_name, &task_id],
        )
        .await?;
    row.map(|r| col(&r, 0)).transpose()
}

/// Writes a watermark; `by` is the job and attempt whose success set it.
pub(super) async fn put(
    c: &Conn,
    job_name: &str,
    task_id: &str,
    column: &str,
    value: &str,
    now: Millis,
    by: Option<(&str, u32)>,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO watermarks (job_name, task_id, column_name, value, updated_at, job_id, attempt)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (job_name, task_id) DO UPDATE SET column_name = excluded.column_name,
             value = excluded.value, updated_at = excluded.updated_at, job_id = excluded.job_id,
             attempt = excluded.attempt",
        &[
            &job_name,
            &task_id,
            &column,
            &value,
            &now,
            &by.map(|b| b.0),
            &by.map_or(0, |b| i64::from(b.1)),
        ],
    )
    .await?;
    Ok(())
}

/// The most recent job of that name, `NotFound` naming it when there is none.
async fn latest_job(c: &Conn, job_name: &str) -> Result<String, StoreError> {
    let row = c
        .query_opt(
            "SELECT id FROM jobs WHERE name = $1 ORDER BY created_at DESC, id DESC LIMIT 1",
            &[&job_name],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job named {job_name:?}")))?;
    col(&row, 0)
}

/// The incremental column of a task of the latest job named `job_name`: `NotFound` naming
/// the job (and its incremental sql tasks) when it has no such task, `Invalid` when the task
/// is not incremental.
async fn incremental_column(c: &Conn, job_name: &str, task_id: &str) -> Result<String, StoreError> {
    let job_id = latest_job(c, job_name).await?;
    let rows = c
        .query(
            "SELECT task_id, spec FROM tasks WHERE job_id = $1 ORDER BY seq",
            &[&job_id],
        )
        .await?;
    let mut incremental = Vec::new();
    let mut found = None;
    for r in &rows {
        let id: &str = col(r, 0)?;
        let spec: TaskSpec = from_json(col(r, 1)?)?;
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

/// Watermarks of every job name, or of one (the caller's snapshot).
pub(super) async fn list(c: &Conn, job_name: Option<&str>) -> Result<Vec<Watermark>, StoreError> {
    let rows = c
        .query(
            "SELECT job_name, task_id, column_name, value, updated_at, job_id, attempt FROM watermarks
             WHERE $1::text IS NULL OR job_name = $1 ORDER BY job_name, task_id",
            &[&job_name],
        )
        .await?;
    let marks = rows.iter().map(row).collect::<Result<Vec<_>, _>>()?;
    if let (Some(name), true) = (job_name, marks.is_empty()) {
        latest_job(c, name).await?;
    }
    Ok(marks)
}

/// Sets a watermark by hand, for a task of the latest job of that name.
pub(super) async fn set(
    c: &Conn,
    job_name: &str,
    task_id: &str,
    value: &str,
    now: Millis,
) -> Result<Watermark, StoreError> {
    let column = incremental_column(c, job_name, task_id).await?;
    put(c, job_name, task_id, &column, value, now, None).await?;
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
pub(super) async fn reset(c: &Conn, job_name: &str, task_id: &str) -> Result<bool, StoreError> {
    let deleted = c
        .execute(
            "DELETE FROM watermarks WHERE job_name = $1 AND task_id = $2",
            &[&job_name, &task_id],
        )
        .await?;
    if deleted > 0 {
        return Ok(true);
    }
    incremental_column(c, job_name, task_id).await?;
    Ok(false)
}
