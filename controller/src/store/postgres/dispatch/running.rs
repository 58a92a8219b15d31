//! What an agent runs, in PostgreSQL: the attempts it must stop, the orphans reconciled, all
//! of them lost at its death or handed back, and the controller-side timeouts.

use std::collections::HashSet;

use super::super::pool::{col, Conn};
use super::super::transitions;
use crate::model::{AttemptKey, AttemptState, Millis, StopOrder};
use crate::store::{Effects, StoreError};

pub(in crate::store::postgres) async fn stale(
    c: &Conn,
    agent: &str,
    running: &[AttemptKey],
) -> Result<Vec<StopOrder>, StoreError> {
    let mut stop = Vec::new();
    for key in running {
        if let Err(StoreError::Fenced { reason, .. }) = transitions::fence(c, agent, key).await {
            stop.push(StopOrder {
                attempt: key.clone(),
                reason,
            });
        }
    }
    Ok(stop)
}

/// Attempts running on `agent` started before `started_before`, their tasks locked (in job
/// and task order, so that two such transactions take their locks in the same order).
async fn lock_running_on(
    c: &Conn,
    agent: &str,
    started_before: Millis,
) -> Result<Vec<AttemptKey>, StoreError> {
    let rows = c
        .query(
            "SELECT a.job_id, a.task_id, a.number FROM attempts a
             JOIN tasks t ON t.job_id = a.job_id AND t.task_id = a.task_id
             WHERE a.agent = $1 AND a.state = 'running' AND a.started_at < $2
             ORDER BY a.job_id, a.task_id FOR UPDATE OF t",
            &[&agent, &started_before],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(AttemptKey {
                job_id: col(r, 0)?,
                task_id: col(r, 1)?,
                attempt: col::<i64>(r, 2)? as u32,
            })
        })
        .collect()
}

/// The attempts `reconcile` would end, read without locking anything.
pub(in crate::store::postgres) async fn orphans(
    c: &Conn,
    agent: &str,
    running: &[AttemptKey],
    started_before: Millis,
) -> Result<Vec<AttemptKey>, StoreError> {
    let reported: HashSet<&AttemptKey> = running.iter().collect();
    let rows = c
        .query(
            "SELECT job_id, task_id, number FROM attempts
             WHERE agent = $1 AND state = 'running' AND started_at < $2",
            &[&agent, &started_before],
        )
        .await?;
    let mut orphans = Vec::new();
    for r in &rows {
        let key = AttemptKey {
            job_id: col(r, 0)?,
            task_id: col(r, 1)?,
            attempt: col::<i64>(r, 2)? as u32,
        };
        if !reported.contains(&key) {
            orphans.push(key);
        }
    }
    Ok(orphans)
}

pub(in crate::store::postgres) async fn reconcile(
    c: &Conn,
    agent: &str,
    running: &[AttemptKey],
    started_before: Millis,
    now: Millis,
) -> Result<Effects, StoreError> {
    let reported: HashSet<&AttemptKey> = running.iter().collect();
    let mut effects = Effects::default();
    for key in lock_running_on(c, agent, started_before).await? {
        if !reported.contains(&key) {
            let why =
                format!("agent {agent} does not run this attempt and never reported its end: its assignment never arrived (or the agent dropped an outcome the controller refused)");
            transitions::end_and_retry(c, &key, AttemptState::Lost, &why, now, &mut effects)
                .await?;
        }
    }
    Ok(effects)
}

/// Every running attempt of `agent` becomes `lost`.
pub(in crate::store::postgres) async fn lose_all(
    c: &Conn,
    agent: &str,
    why: &str,
    now: Millis,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    for key in lock_running_on(c, agent, i64::MAX).await? {
        transitions::end_and_retry(c, &key, AttemptState::Lost, why, now, &mut effects).await?;
    }
    Ok(effects)
}

/// Hands back the attempts of `agent` that are still its current ones, `why` recorded: each
/// ends as `lost`, its task queued again at once, nothing counted against its retries.
pub(in crate::store::postgres) async fn release(
    c: &Conn,
    agent: &str,
    attempts: &[AttemptKey],
    why: &str,
    now: Millis,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    let mut attempts: Vec<&AttemptKey> = attempts.iter().collect();
    attempts.sort_by(|a, b| (&a.job_id, &a.task_id).cmp(&(&b.job_id, &b.task_id)));
    for key in attempts {
        if transitions::fence_locked(c, agent, key).await.is_ok() {
            transitions::hand_back(c, key, why, now, &mut effects).await?;
        }
    }
    Ok(effects)
}

pub(in crate::store::postgres) async fn expire(
    c: &Conn,
    now: Millis,
    grace_ms: i64,
) -> Result<Effects, StoreError> {
    let rows = c
        .query(
            "SELECT a.agent, a.job_id, a.task_id, a.number, a.started_at, a.deadline_at FROM attempts a
             JOIN tasks t ON t.job_id = a.job_id AND t.task_id = a.task_id
             WHERE a.state = 'running' AND a.deadline_at IS NOT NULL AND a.deadline_at < $1
             ORDER BY a.job_id, a.task_id FOR UPDATE OF t",
            &[&(now - grace_ms)],
        )
        .await?;
    let mut effects = Effects::default();
    for r in &rows {
        let agent: String = col(r, 0)?;
        let key = AttemptKey {
            job_id: col(r, 1)?,
            task_id: col(r, 2)?,
            attempt: col::<i64>(r, 3)? as u32,
        };
        let (started, deadline): (i64, i64) = (col(r, 4)?, col(r, 5)?);
        let why = format!(
            "timed out after {} (the agent did not report it; stopped by the controller)",
            humantime::format_duration(std::time::Duration::from_millis(
                (deadline - started) as u64
            ))
        );
        if transitions::end_and_retry(c, &key, AttemptState::TimedOut, &why, now, &mut effects)
            .await?
        {
            effects.stop.push(crate::model::PlacedAttempt {
                agent,
                attempt: key,
            });
        }
    }
    Ok(effects)
}
