//! State transitions of tasks and jobs in SQLite, each within the caller's transaction:
//! fencing, the end of an attempt, retries, DAG release, skipping downstream, job completion.

use rusqlite::{params, Connection, OptionalExtension};

use super::backend;
use crate::model::{AttemptFinish, AttemptKey, AttemptState, Millis, Outcome, RetryPolicy};
use crate::rules::retry::{self, Decision, Failure};
use crate::store::{Effects, StoreError};

/// Fails with `Fenced` unless `attempt` is its task's current, running attempt on `agent`
/// (DESIGN.md invariant 1).
pub(super) fn fence(
    conn: &Connection,
    agent: &str,
    attempt: &AttemptKey,
) -> Result<(), StoreError> {
    let row: Option<(String, String, u32)> = conn
        .prepare_cached(
            "SELECT a.state, a.agent, t.attempts FROM attempts a
             JOIN tasks t ON t.job_id = a.job_id AND t.task_id = a.task_id
             WHERE a.job_id = ?1 AND a.task_id = ?2 AND a.number = ?3",
        )
        .map_err(backend)?
        .query_row(
            params![attempt.job_id, attempt.task_id, attempt.attempt],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()
        .map_err(backend)?;
    let reason = match row {
        None => "unknown attempt".to_string(),
        Some((_, owner, _)) if owner != agent => format!("attempt belongs to agent {owner}"),
        Some((_, _, current)) if current != attempt.attempt => {
            format!("superseded by attempt {current}")
        }
        Some((state, _, _)) if state != AttemptState::Running.as_str() => state,
        Some(_) => return Ok(()),
    };
    Err(StoreError::Fenced {
        attempt: attempt.clone(),
        reason,
    })
}

/// Records how a (fenced) attempt ended and moves its task and job on.
pub(super) fn finish(
    conn: &Connection,
    finish: &AttemptFinish,
    now: Millis,
) -> Result<Effects, StoreError> {
    let key = &finish.attempt;
    conn.prepare_cached(
        "UPDATE attempts SET state = ?4, exit_code = ?5, error = ?6, finished_at = ?7
         WHERE job_id = ?1 AND task_id = ?2 AND number = ?3",
    )
    .map_err(backend)?
    .execute(params![
        key.job_id,
        key.task_id,
        key.attempt,
        finish.outcome.attempt_state().as_str(),
        finish.exit_code,
        finish.error,
        now
    ])
    .map_err(backend)?;
    let mut effects = Effects::default();
    match finish.outcome {
        Outcome::Succeeded => task_succeeded(conn, key, now, &mut effects)?,
        Outcome::Failed | Outcome::TimedOut => {
            task_attempt_failed(conn, key, Failure::Task, now, &mut effects)?
        }
        // An agent reports `cancelled` only when told to stop; the task gets no other try, nor
        // after a failure no retry can fix.
        Outcome::Cancelled | Outcome::FailedFinal => give_up(conn, key, now, &mut effects)?,
    }
    effects.jobs.push(key.job_id.clone());
    Ok(effects)
}

/// Ends a running attempt without success, as `lost` (its agent died or never got it: retried
/// at once) or `timed_out` on the controller's own clock (retried after a backoff).
pub(super) fn end_and_retry(
    conn: &Connection,
    key: &AttemptKey,
    state: AttemptState,
    why: &str,
    now: Millis,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let failure = if state == AttemptState::Lost {
        Failure::Lost
    } else {
        Failure::Task
    };
    end_attempt(conn, key, state, why, now)?;
    task_attempt_failed(conn, key, failure, now, effects)?;
    effects.jobs.push(key.job_id.clone());
    Ok(())
}

/// Hands an attempt back: it ends as `lost`, its task is queued at once, nothing is counted.
pub(super) fn hand_back(
    conn: &Connection,
    key: &AttemptKey,
    why: &str,
    now: Millis,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    end_attempt(conn, key, AttemptState::Lost, why, now)?;
    conn.prepare_cached(
        "UPDATE tasks SET state = 'queued', ready_at = ?3 WHERE job_id = ?1 AND task_id = ?2",
    )
    .map_err(backend)?
    .execute(params![key.job_id, key.task_id, now])
    .map_err(backend)?;
    effects.queued = true;
    effects.jobs.push(key.job_id.clone());
    Ok(())
}

fn end_attempt(
    conn: &Connection,
    key: &AttemptKey,
    state: AttemptState,
    why: &str,
    now: Millis,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "UPDATE attempts SET state = ?4, error = ?5, finished_at = ?6
         WHERE job_id = ?1 AND task_id = ?2 AND number = ?3 AND state = 'running'",
    )
    .map_err(backend)?
    .execute(params![
        key.job_id,
        key.task_id,
        key.attempt,
        state.as_str(),
        why,
        now
    ])
    .map_err(backend)?;
    Ok(())
}

fn task_succeeded(
    conn: &Connection,
    key: &AttemptKey,
    now: Millis,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE tasks SET state = 'succeeded' WHERE job_id = ?1 AND task_id = ?2")
        .map_err(backend)?
        .execute(params![key.job_id, key.task_id])
        .map_err(backend)?;
    let released = conn
        .prepare_cached(
            "UPDATE tasks SET deps_remaining = deps_remaining - 1,
                              state = CASE WHEN deps_remaining = 1 THEN 'queued' ELSE state END,
                              ready_at = ?3
             WHERE job_id = ?1 AND state = 'blocked' AND task_id IN
                   (SELECT task_id FROM task_deps WHERE job_id = ?1 AND depends_on = ?2)",
        )
        .map_err(backend)?
        .execute(params![key.job_id, key.task_id, now])
        .map_err(backend)?;
    if released > 0 {
        effects.queued = true;
    }
    task_done(conn, &key.job_id, 1, 0, now)
}

fn task_attempt_failed(
    conn: &Connection,
    key: &AttemptKey,
    kind: Failure,
    now: Millis,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let (failures, policy): (u32, RetryPolicy) = conn
        .prepare_cached(
            "SELECT failures, max_attempts, initial_delay_ms, max_delay_ms FROM tasks
             WHERE job_id = ?1 AND task_id = ?2",
        )
        .map_err(backend)?
        .query_row(params![key.job_id, key.task_id], |r| {
            Ok((
                r.get(0)?,
                RetryPolicy {
                    max_attempts: r.get(1)?,
                    initial_delay_ms: r.get(2)?,
                    max_delay_ms: r.get(3)?,
                },
            ))
        })
        .map_err(backend)?;
    let failures = failures + 1;
    match retry::decide(&policy, failures, kind, fastrand::f64()) {
        Decision::Retry { delay_ms } => {
            conn.prepare_cached(
                "UPDATE tasks SET state = 'queued', failures = ?3, ready_at = ?4 WHERE job_id = ?1 AND task_id = ?2",
            )
            .map_err(backend)?
            .execute(params![key.job_id, key.task_id, failures, now + delay_ms as i64])
            .map_err(backend)?;
            effects.queued = true;
            Ok(())
        }
        Decision::GiveUp => {
            conn.prepare_cached(
                "UPDATE tasks SET failures = ?3 WHERE job_id = ?1 AND task_id = ?2",
            )
            .map_err(backend)?
            .execute(params![key.job_id, key.task_id, failures])
            .map_err(backend)?;
            give_up(conn, key, now, effects)
        }
    }
}

/// The task fails for good: everything downstream of it is skipped.
pub(super) fn give_up(
    conn: &Connection,
    key: &AttemptKey,
    now: Millis,
    _effects: &mut Effects,
) -> Result<(), StoreError> {
    conn.prepare_cached("UPDATE tasks SET state = 'failed' WHERE job_id = ?1 AND task_id = ?2")
        .map_err(backend)?
        .execute(params![key.job_id, key.task_id])
        .map_err(backend)?;
    let skipped = conn
        .prepare_cached(
            "WITH RECURSIVE down(task_id) AS (
                 SELECT task_id FROM task_deps WHERE job_id = ?1 AND depends_on = ?2
                 UNION
                 SELECT d.task_id FROM task_deps d JOIN down ON d.depends_on = down.task_id
                 WHERE d.job_id = ?1)
             UPDATE tasks SET state = 'skipped'
             WHERE job_id = ?1 AND state = 'blocked' AND task_id IN (SELECT task_id FROM down)",
        )
        .map_err(backend)?
        .execute(params![key.job_id, key.task_id])
        .map_err(backend)?;
    task_done(conn, &key.job_id, 1 + skipped as i64, 1, now)
}

/// Counts finished tasks on the job and ends it when none is left (`rules::job_end` decides).
fn task_done(
    conn: &Connection,
    job_id: &str,
    done: i64,
    failed: i64,
    now: Millis,
) -> Result<(), StoreError> {
    // Not `UPDATE … RETURNING`: SQLite re-prepares such a statement on every run.
    let changed = super::exec(
        conn,
        "UPDATE jobs SET tasks_done = tasks_done + ?2, tasks_failed = tasks_failed + ?3
         WHERE id = ?1 AND state IN ('pending', 'running')",
        params![job_id, done, failed],
    )?;
    if changed == 0 {
        return Ok(());
    }
    let (total, done, failed): (i64, i64, i64) = conn
        .prepare_cached("SELECT tasks_total, tasks_done, tasks_failed FROM jobs WHERE id = ?1")
        .map_err(backend)?
        .query_row([job_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .map_err(backend)?;
    if let Some(end) = crate::rules::job_end(total, done, failed) {
        super::exec(
            conn,
            "UPDATE jobs SET state = ?2, finished_at = ?3 WHERE id = ?1",
            params![job_id, end.as_str(), now],
        )?;
    }
    Ok(())
}
