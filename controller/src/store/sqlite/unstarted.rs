//! Schedule-to-start timeouts in SQLite: the queued tasks past theirs, and one of them ended as
//! failed — finally, its downstream skipped — with why it never started.

use rusqlite::{params, Connection};

use super::{backend, from_json, transitions};
use crate::model::{AttemptKey, Millis, TaskSpec};
use crate::store::{Effects, StoreError};

/// Queued tasks whose schedule-to-start timeout has passed at `now` (at most 256, oldest
/// first), with their job's id: read through the partial index of such tasks only.
pub(super) fn overdue(
    conn: &Connection,
    now: Millis,
) -> Result<Vec<(String, TaskSpec)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT job_id, spec FROM tasks
             WHERE state = 'queued' AND start_timeout_ms > 0 AND ready_at + start_timeout_ms <= ?1
             ORDER BY ready_at LIMIT 256",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([now], |r| {
            Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
        })
        .map_err(backend)?;
    let mut overdue = Vec::new();
    for row in rows {
        let (job_id, spec) = row.map_err(backend)?;
        overdue.push((job_id, from_json(&spec)?));
    }
    Ok(overdue)
}

/// Fails task `task_id` of `job_id` if it is still queued, with `reason`; nothing otherwise (a
/// claim took it meanwhile).
pub(super) fn fail(
    conn: &Connection,
    job_id: &str,
    task_id: &str,
    reason: &str,
    now: Millis,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    let changed = conn
        .prepare_cached(
            "UPDATE tasks SET reason = ?3 WHERE job_id = ?1 AND task_id = ?2 AND state = 'queued'",
        )
        .map_err(backend)?
        .execute(params![job_id, task_id, reason])
        .map_err(backend)?;
    if changed == 0 {
        return Ok(effects);
    }
    let key = AttemptKey {
        job_id: job_id.to_string(),
        task_id: task_id.to_string(),
        attempt: 0,
    };
    transitions::give_up(conn, &key, now, &mut effects)?;
    effects.jobs.push(job_id.to_string());
    Ok(effects)
}
