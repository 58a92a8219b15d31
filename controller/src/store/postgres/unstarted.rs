//! Schedule-to-start timeouts in PostgreSQL: the queued tasks past theirs, and one of them
//! ended as failed — finally, its downstream skipped — with why it never started.

use super::from_json;
use super::pool::{col, Conn};
use super::transitions;
use crate::model::{AttemptKey, Millis, TaskSpec};
use crate::store::{Effects, StoreError};

/// Queued tasks whose schedule-to-start timeout has passed at `now` (at most 256, oldest
/// first), with their job's id: read through the partial index of such tasks only.
pub(super) async fn overdue(c: &Conn, now: Millis) -> Result<Vec<(String, TaskSpec)>, StoreError> {
    let rows = c
        .query(
            "SELECT job_id, spec FROM tasks
             WHERE state = 'queued' AND start_timeout_ms > 0 AND ready_at + start_timeout_ms <= $1
             ORDER BY ready_at LIMIT 256",
            &[&now],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((col(r, 0)?, from_json(col(r, 1)?)?)))
        .collect()
}

/// Fails task `task_id` of `job_id` if it is still queued, with `reason`; nothing otherwise (a
/// claim took it meanwhile: the row lock waits for that claim to commit).
pub(super) async fn fail(
    c: &Conn,
    job_id: &str,
    task_id: &str,
    reason: &str,
    now: Millis,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    let changed = c
        .execute(
            "UPDATE tasks SET reason = $3 WHERE job_id = $1 AND task_id = $2 AND state = 'queued'",
            &[&job_id, &task_id, &reason],
        )
        .await?;
    if changed == 0 {
        return Ok(effects);
    }
    let key = AttemptKey {
        job_id: job_id.to_string(),
        task_id: task_id.to_string(),
        attempt: 0,
    };
    transitions::give_up(c, &key, now).await?;
    effects.jobs.push(job_id.to_string());
    Ok(effects)
}
