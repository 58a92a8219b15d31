//! State transitions of tasks and jobs in PostgreSQL, each within the caller's transaction:
//! fencing (the task's row locked before its attempt is checked, so that a completion racing
//! a death, a timeout or a cancel ends in one outcome), the end of an attempt, retries, DAG
//! release, skipping downstream, job completion (the job's row, locked last).

use super::pool::{col, Conn};
use crate::model::{AttemptFinish, AttemptKey, AttemptState, Millis, Outcome, RetryPolicy};
use crate::rules::retry::{self, Decision, Failure};
use crate::store::{Effects, StoreError};

mod job_counts;

use job_counts::task_done;
pub(super) use job_counts::{deferring_job_counts, end_jobs_and_commit, JobEnds};

/// Why `attempt` is not its task's current, running attempt on `agent`, if it is not.
pub(super) fn refusal(
    agent: &str,
    attempt: &AttemptKey,
    current: Option<i64>,
    found: Option<(String, String)>,
) -> Result<(), StoreError> {
    let reason = match (current, found) {
        (_, None) | (None, _) => "unknown attempt".to_string(),
        (_, Some((_, owner))) if owner != agent => format!("attempt belongs to agent {owner}"),
        (Some(current), _) if current != i64::from(attempt.attempt) => {
            format!("superseded by attempt {current}")
        }
        (_, Some((state, _))) if state != AttemptState::Running.as_str() => state,
        _ => return Ok(()),
    };
    Err(StoreError::Fenced {
        attempt: attempt.clone(),
        reason,
    })
}

/// Fails with `Fenced` unless `attempt` is its task's current, running attempt on `agent`
/// (DESIGN.md invariant 1): a read, taking no lock.
pub(super) async fn fence(c: &Conn, agent: &str, attempt: &AttemptKey) -> Result<(), StoreError> {
    let row = c
        .query_opt(
            "SELECT a.state, a.agent, t.attempts FROM attempts a
             JOIN tasks t ON t.job_id = a.job_id AND t.task_id = a.task_id
             WHERE a.job_id = $1 AND a.task_id = $2 AND a.number = $3",
            &[
                &attempt.job_id,
                &attempt.task_id,
                &i64::from(attempt.attempt),
            ],
        )
        .await?;
    match row {
        None => refusal(agent, attempt, None, None),
        Some(r) => refusal(
            agent,
            attempt,
            Some(col(&r, 2)?),
            Some((col(&r, 0)?, col(&r, 1)?)),
        ),
    }
}

/// `fence`, holding the task's row lock until the transaction ends. The attempt is read by a
/// second statement, once the lock is held, so that it sees the end of the attempt by whoever
/// held the lock before (in one statement, the attempt's row would be the one of its start).
pub(super) async fn fence_locked(
    c: &Conn,
    agent: &str,
    attempt: &AttemptKey,
) -> Result<(), StoreError> {
    let current = c
        .query_opt(
            "SELECT attempts FROM tasks WHERE job_id = $1 AND task_id = $2 FOR UPDATE",
            &[&attempt.job_id, &attempt.task_id],
        )
        .await?;
    let Some(current) = current else {
        return refusal(agent, attempt, None, None);
    };
    let found = c
        .query_opt(
            "SELECT state, agent FROM attempts WHERE job_id = $1 AND task_id = $2 AND number = $3",
            &[
                &attempt.job_id,
                &attempt.task_id,
                &i64::from(attempt.attempt),
            ],
        )
        .await?;
    let found = match found {
        Some(r) => Some((col(&r, 0)?, col(&r, 1)?)),
        None => None,
    };
    refusal(agent, attempt, Some(col(&current, 0)?), found)
}

/// Records how a (fenced) attempt ended and moves its task and job on.
pub(super) async fn finish(
    c: &Conn,
    finish: &AttemptFinish,
    now: Millis,
) -> Result<Effects, StoreError> {
    let key = &finish.attempt;
    c.execute(
        "UPDATE attempts SET state = $4, exit_code = $5, error = $6, finished_at = $7
         WHERE job_id = $1 AND task_id = $2 AND number = $3",
        &[
            &key.job_id,
            &key.task_id,
            &i64::from(key.attempt),
            &finish.outcome.attempt_state().as_str(),
            &finish.exit_code,
            &finish.error,
            &now,
        ],
    )
    .await?;
    let mut effects = Effects::default();
    match finish.outcome {
        Outcome::Succeeded => task_succeeded(c, key, now, &mut effects).await?,
        Outcome::Failed | Outcome::TimedOut => {
            task_attempt_failed(c, key, Failure::Task, now, &mut effects).await?
        }
        // An agent reports `cancelled` only when told to stop; the task gets no other try, nor
        // after a failure no retry can fix.
        Outcome::Cancelled | Outcome::FailedFinal => give_up(c, key, now).await?,
    }
    effects.jobs.push(key.job_id.clone());
    Ok(effects)
}

/// Ends a running attempt without success, as `lost` (its agent died or never got it: retried
/// at once) or `timed_out` on the controller's own clock (retried after a backoff). The
/// caller holds the task's lock; false (nothing done) when the attempt had already ended.
pub(super) async fn end_and_retry(
    c: &Conn,
    key: &AttemptKey,
    state: AttemptState,
    why: &str,
    now: Millis,
    effects: &mut Effects,
) -> Result<bool, StoreError> {
    let failure = if state == AttemptState::Lost {
        Failure::Lost
    } else {
        Failure::Task
    };
    if !end_attempt(c, key, state, why, now).await? {
        return Ok(false);
    }
    task_attempt_failed(c, key, failure, now, effects).await?;
    effects.jobs.push(key.job_id.clone());
    Ok(true)
}

/// Hands an attempt back: it ends as `lost`, its task is queued at once, nothing is counted.
pub(super) async fn hand_back(
    c: &Conn,
    key: &AttemptKey,
    why: &str,
    now: Millis,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    if !end_attempt(c, key, AttemptState::Lost, why, now).await? {
        return Ok(());
    }
    c.execute(
        "UPDATE tasks SET state = 'queued', ready_at = $3 WHERE job_id = $1 AND task_id = $2",
        &[&key.job_id, &key.task_id, &now],
    )
    .await?;
    effects.queued = true;
    effects.jobs.push(key.job_id.clone());
    Ok(())
}

/// Ends the attempt if it is running; false if it was not.
async fn end_attempt(
    c: &Conn,
    key: &AttemptKey,
    state: AttemptState,
    why: &str,
    now: Millis,
) -> Result<bool, StoreError> {
    let ended = c
        .execute(
            "UPDATE attempts SET state = $4, error = $5, finished_at = $6
             WHERE job_id = $1 AND task_id = $2 AND number = $3 AND state = 'running'",
            &[
                &key.job_id,
                &key.task_id,
                &i64::from(key.attempt),
                &state.as_str(),
                &why,
                &now,
            ],
        )
        .await?;
    Ok(ended > 0)
}

/// The statements of `succeed_many`, prepared before it is sent with others (so that
/// PostgreSQL runs them first).
pub(super) struct SuccessStatements {
    ended: tokio_postgres::Statement,
    succeeded: tokio_postgres::Statement,
    released: tokio_postgres::Statement,
}

pub(super) async fn prepare_success(c: &Conn) -> Result<SuccessStatements, StoreError> {
    let (ended, succeeded, released) = tokio::join!(
        c.statement(END_ATTEMPTS),
        c.statement(TASKS_SUCCEEDED),
        c.statement(RELEASE_DEPENDENTS),
    );
    Ok(SuccessStatements {
        ended: ended?,
        succeeded: succeeded?,
        released: released?,
    })
}

const END_ATTEMPTS: &str =
    "UPDATE attempts a SET state = 'succeeded', exit_code = u.code, error = u.error, finished_at = $6
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::int4[], $5::text[])
          AS u(job_id, task_id, number, code, error)
     WHERE a.job_id = u.job_id AND a.task_id = u.task_id AND a.number = u.number";
const TASKS_SUCCEEDED: &str = "UPDATE tasks t SET state = 'succeeded'
     FROM unnest($1::text[], $2::text[]) AS u(job_id, task_id)
     WHERE t.job_id = u.job_id AND t.task_id = u.task_id";
/// As in `task_succeeded`; a dependent of several of these counts them all down at once.
const RELEASE_DEPENDENTS: &str = "UPDATE tasks t SET deps_remaining = t.deps_remaining - d.n,
                        state = CASE WHEN t.deps_remaining = d.n THEN 'queued' ELSE t.state END,
                        ready_at = $3
     FROM (SELECT td.job_id, td.task_id, COUNT(*) AS n
           FROM task_deps td
           JOIN unnest($1::text[], $2::text[]) AS u(job_id, task_id)
             ON td.job_id = u.job_id AND td.depends_on = u.task_id
           GROUP BY td.job_id, td.task_id) AS d
     WHERE t.job_id = d.job_id AND t.task_id = d.task_id AND t.state = 'blocked'";

/// Records the success of several fenced attempts of distinct tasks, the tasks' own ends
/// and the release of their dependents in one statement each; counts them on their jobs
/// (held back, as `task_done`).
pub(super) async fn succeed_many(
    c: &Conn,
    stmts: &SuccessStatements,
    finishes: &[&AttemptFinish],
    now: Millis,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    if finishes.is_empty() {
        return Ok(());
    }
    let job_ids: Vec<&str> = finishes.iter().map(|f| f.attempt.job_id.as_str()).collect();
    let task_ids: Vec<&str> = finishes
        .iter()
        .map(|f| f.attempt.task_id.as_str())
        .collect();
    let numbers: Vec<i64> = finishes
        .iter()
        .map(|f| i64::from(f.attempt.attempt))
        .collect();
    let codes: Vec<Option<i32>> = finishes.iter().map(|f| f.exit_code).collect();
    let errors: Vec<&str> = finishes.iter().map(|f| f.error.as_str()).collect();
    type P<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    let ended: [P; 6] = [&job_ids, &task_ids, &numbers, &codes, &errors, &now];
    let tasks: [P; 2] = [&job_ids, &task_ids];
    let released: [P; 3] = [&job_ids, &task_ids, &now];
    // Sent together when first polled, in this order (one round trip).
    let (ended, succeeded, released) = tokio::join!(
        c.execute_prepared(&stmts.ended, &ended),
        c.execute_prepared(&stmts.succeeded, &tasks),
        c.execute_prepared(&stmts.released, &released),
    );
    // The first failure in the order sent: what follows it only says the transaction aborted.
    let (_, _, released) = (ended?, succeeded?, released?);
    if released > 0 {
        effects.queued = true;
    }
    for f in finishes {
        task_done(c, &f.attempt.job_id, 1, 0, now).await?;
    }
    Ok(())
}

async fn task_succeeded(
    c: &Conn,
    key: &AttemptKey,
    now: Millis,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    c.execute(
        "UPDATE tasks SET state = 'succeeded' WHERE job_id = $1 AND task_id = $2",
        &[&key.job_id, &key.task_id],
    )
    .await?;
    // Two tasks finishing at once that release one dependent: the second waits for the
    // first's lock on it, then counts down from the row the first left.
    let released = c
        .execute(
            "UPDATE tasks SET deps_remaining = deps_remaining - 1,
                              state = CASE WHEN deps_remaining = 1 THEN 'queued' ELSE state END,
                              ready_at = $3
             WHERE job_id = $1 AND state = 'blocked' AND task_id IN
                   (SELECT task_id FROM task_deps WHERE job_id = $1 AND depends_on = $2)",
            &[&key.job_id, &key.task_id, &now],
        )
        .await?;
    if released > 0 {
        effects.queued = true;
    }
    task_done(c, &key.job_id, 1, 0, now).await
}

async fn task_attempt_failed(
    c: &Conn,
    key: &AttemptKey,
    kind: Failure,
    now: Millis,
    effects: &mut Effects,
) -> Result<(), StoreError> {
    let r = c
        .query_one(
            "SELECT failures, max_attempts, initial_delay_ms, max_delay_ms FROM tasks
             WHERE job_id = $1 AND task_id = $2",
            &[&key.job_id, &key.task_id],
        )
        .await?;
    let failures = col::<i64>(&r, 0)? as u32 + 1;
    let policy = RetryPolicy {
        max_attempts: col::<i64>(&r, 1)? as u32,
        initial_delay_ms: col::<i64>(&r, 2)? as u64,
        max_delay_ms: col::<i64>(&r, 3)? as u64,
    };
    match retry::decide(&policy, failures, kind, fastrand::f64()) {
        Decision::Retry { delay_ms } => {
            c.execute(
                "UPDATE tasks SET state = 'queued', failures = $3, ready_at = $4 WHERE job_id = $1 AND task_id = $2",
                &[&key.job_id, &key.task_id, &i64::from(failures), &(now + delay_ms as i64)],
            )
            .await?;
            effects.queued = true;
            Ok(())
        }
        Decision::GiveUp => {
            c.execute(
                "UPDATE tasks SET failures = $3 WHERE job_id = $1 AND task_id = $2",
                &[&key.job_id, &key.task_id, &i64::from(failures)],
            )
            .await?;
            give_up(c, key, now).await
        }
    }
}

/// The task fails for good: everything downstream of it is skipped.
pub(super) async fn give_up(c: &Conn, key: &AttemptKey, now: Millis) -> Result<(), StoreError> {
    c.execute(
        "UPDATE tasks SET state = 'failed' WHERE job_id = $1 AND task_id = $2",
        &[&key.job_id, &key.task_id],
    )
    .await?;
    let skipped = c
        .execute(
            "WITH RECURSIVE down(task_id) AS (
                 SELECT task_id FROM task_deps WHERE job_id = $1 AND depends_on = $2
                 UNION
                 SELECT d.task_id FROM task_deps d JOIN down ON d.depends_on = down.task_id
                 WHERE d.job_id = $1)
             UPDATE tasks SET state = 'skipped'
             WHERE job_id = $1 AND state = 'blocked' AND task_id IN (SELECT task_id FROM down)",
            &[&key.job_id, &key.task_id],
        )
        .await?;
    task_done(c, &key.job_id, 1 + skipped as i64, 1, now).await
}
