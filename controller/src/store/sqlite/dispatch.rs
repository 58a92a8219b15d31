//! Dispatch in SQLite: claiming queued tasks for an agent (queue, labels, free slots), naming
//! attempts an agent must stop, reconciling what it runs, hand-back and controller timeouts.

use std::collections::{BTreeMap, HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension};

use super::{backend, from_json, transitions};
use crate::model::{Assignment, AttemptKey, AttemptState, Millis, QueueStats, StopOrder, TaskSpec};
use crate::store::{ClaimRequest, Claimed, Effects, StoreError};

/// Candidates read per queue and round (the `LIMIT 256` of the claim queries, a literal: a
/// bound `LIMIT ?` makes SQLite re-prepare the statement at every run); label filtering
/// happens in Rust.
const SCAN: i64 = 256;

pub(super) fn claim(
    conn: &Connection,
    req: &ClaimRequest,
    now: Millis,
) -> Result<Claimed, StoreError> {
    let mut claimed = Claimed::default();
    let live: Option<String> = conn
        .prepare_cached("SELECT state FROM agents WHERE name = ?1 AND session = ?2")
        .map_err(backend)?
        .query_row(params![req.agent, req.session], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if live.as_deref() != Some("ready") {
        // A poll that outlived its session (declared dead meanwhile) or a draining agent.
        return Ok(claimed);
    }
    let mut picked: Vec<(String, String, TaskSpec)> = Vec::new();
    'queues: for queue in &req.queues {
        let mut after: Option<(i64, String, i64)> = None;
        loop {
            // Two statements rather than one with `?3 IS NULL OR …`: a bound value that can
            // change the plan makes SQLite re-prepare the statement on every new binding.
            let (mut stmt, mut rows);
            match &after {
                None => {
                    stmt = conn
                        .prepare_cached(
                            "SELECT job_id, task_id, labels, spec, ready_at, seq FROM tasks
                             WHERE state = 'queued' AND queue = ?1 AND ready_at <= ?2
                             ORDER BY ready_at, job_id, seq LIMIT 256",
                        )
                        .map_err(backend)?;
                    rows = stmt.query(params![queue, now]).map_err(backend)?;
                }
                Some((a_ready, a_job, a_seq)) => {
                    stmt = conn
                        .prepare_cached(
                            "SELECT job_id, task_id, labels, spec, ready_at, seq FROM tasks
                             WHERE state = 'queued' AND queue = ?1 AND ready_at <= ?2
                               AND (ready_at, job_id, seq) > (?3, ?4, ?5)
                             ORDER BY ready_at, job_id, seq LIMIT 256",
                        )
                        .map_err(backend)?;
                    rows = stmt
                        .query(params![queue, now, a_ready, a_job, a_seq])
                        .map_err(backend)?;
                }
            }
            let mut seen = 0;
            while let Some(r) = rows.next().map_err(backend)? {
                seen += 1;
                let job_id: String = r.get(0).map_err(backend)?;
                let task_id: String = r.get(1).map_err(backend)?;
                let labels: String = r.get(2).map_err(backend)?;
                after = Some((
                    r.get(4).map_err(backend)?,
                    job_id.clone(),
                    r.get(5).map_err(backend)?,
                ));
                if labels != "{}" {
                    let required: BTreeMap<String, String> = from_json(&labels)?;
                    if !crate::rules::labels_match(&required, &req.labels) {
                        continue;
                    }
                }
                let spec: TaskSpec = from_json(&r.get::<_, String>(3).map_err(backend)?)?;
                picked.push((job_id, task_id, spec));
                if picked.len() >= req.max as usize {
                    break 'queues;
                }
            }
            if seen < SCAN {
                break;
            }
        }
    }
    let mut jobs: HashMap<String, (String, BTreeMap<String, String>)> = HashMap::new();
    for (job_id, task_id, spec) in picked {
        // Not `UPDATE … RETURNING`: SQLite re-prepares such a statement on every run.
        super::exec(
            conn,
            "UPDATE tasks SET state = 'running', attempts = attempts + 1
             WHERE job_id = ?1 AND task_id = ?2",
            params![job_id, task_id],
        )?;
        let number: u32 = conn
            .prepare_cached("SELECT attempts FROM tasks WHERE job_id = ?1 AND task_id = ?2")
            .map_err(backend)?
            .query_row(params![job_id, task_id], |r| r.get(0))
            .map_err(backend)?;
        let deadline = (spec.timeout_ms > 0).then(|| now + spec.timeout_ms as i64);
        conn.prepare_cached(
            "INSERT INTO attempts (job_id, task_id, number, agent, state, started_at, deadline_at)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6)",
        )
        .map_err(backend)?
        .execute(params![job_id, task_id, number, req.agent, now, deadline])
        .map_err(backend)?;
        if !jobs.contains_key(&job_id) {
            let (name, params_json): (String, String) = conn
                .prepare_cached(
                    "UPDATE jobs SET state = 'running' WHERE id = ?1 AND state = 'pending'",
                )
                .map_err(backend)?
                .execute([&job_id])
                .map_err(backend)
                .and_then(|_| {
                    conn.prepare_cached("SELECT name, params FROM jobs WHERE id = ?1")
                        .map_err(backend)?
                        .query_row([&job_id], |r| Ok((r.get(0)?, r.get(1)?)))
                        .map_err(backend)
                })?;
            jobs.insert(job_id.clone(), (name, from_json(&params_json)?));
        }
        let (job_name, job_params) = &jobs[&job_id];
        let inputs = if spec.depends_on.is_empty() {
            Vec::new()
        } else {
            super::outputs::inputs(conn, &job_id, &spec)?
        };
        // Only incremental sql tasks look up a range (two primary-key reads).
        let extract_range = match spec.kind.incremental_column() {
            Some(_) => Some(super::extracts::range(conn, &job_id, job_name, &task_id)?),
            None => None,
        };
        claimed.assignments.push(Assignment {
            attempt: AttemptKey {
                job_id,
                task_id,
                attempt: number,
            },
            job_name: job_name.clone(),
            task: spec,
            params: job_params.clone(),
            inputs,
            extract_range,
        });
    }
    if claimed.assignments.is_empty() {
        for queue in &req.queues {
            let next: Option<i64> = conn
                .prepare_cached("SELECT MIN(ready_at) FROM tasks WHERE state = 'queued' AND queue = ?1 AND ready_at > ?2")
                .map_err(backend)?
                .query_row(params![queue, now], |r| r.get(0))
                .optional()
                .map_err(backend)?
                .flatten();
            if let Some(next) = next {
                claimed.next_ready_at =
                    Some(claimed.next_ready_at.map_or(next, |n: i64| n.min(next)));
            }
        }
    }
    Ok(claimed)
}

pub(super) fn stale(
    conn: &Connection,
    agent: &str,
    running: &[AttemptKey],
) -> Result<Vec<StopOrder>, StoreError> {
    let mut stop = Vec::new();
    for key in running {
        if let Err(StoreError::Fenced { reason, .. }) = transitions::fence(conn, agent, key) {
            stop.push(StopOrder {
                attempt: key.clone(),
                reason,
            });
        }
    }
    Ok(stop)
}

fn running_on(
    conn: &Connection,
    agent: &str,
    started_before: Millis,
) -> Result<Vec<AttemptKey>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT job_id, task_id, number FROM attempts
             WHERE agent = ?1 AND state = 'running' AND started_at < ?2",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![agent, started_before], |r| {
            Ok(AttemptKey {
                job_id: r.get(0)?,
                task_id: r.get(1)?,
                attempt: r.get(2)?,
            })
        })
        .map_err(backend)?;
    rows.collect::<Result<_, _>>().map_err(backend)
}

pub(super) fn reconcile(
    conn: &Connection,
    agent: &str,
    running: &[AttemptKey],
    started_before: Millis,
    now: Millis,
) -> Result<Effects, StoreError> {
    let reported: HashSet<&AttemptKey> = running.iter().collect();
    let mut effects = Effects::default();
    for key in running_on(conn, agent, started_before)? {
        if !reported.contains(&key) {
            let why =
                format!("agent {agent} does not run this attempt and never reported its end: its assignment never arrived (or the agent dropped an outcome the controller refused)");
            transitions::end_and_retry(conn, &key, AttemptState::Lost, &why, now, &mut effects)?;
        }
    }
    Ok(effects)
}

/// Every running attempt of `agent` becomes `lost`.
pub(super) fn lose_all(
    conn: &Connection,
    agent: &str,
    why: &str,
    now: Millis,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    for key in running_on(conn, agent, i64::MAX)? {
        transitions::end_and_retry(conn, &key, AttemptState::Lost, why, now, &mut effects)?;
    }
    Ok(effects)
}

pub(super) fn release(
    conn: &Connection,
    agent: &str,
    attempts: &[AttemptKey],
    now: Millis,
) -> Result<Effects, StoreError> {
    let mut effects = Effects::default();
    for key in attempts {
        if transitions::fence(conn, agent, key).is_ok() {
            let why = format!("handed back by draining agent {agent}");
            transitions::hand_back(conn, key, &why, now, &mut effects)?;
        }
    }
    Ok(effects)
}

pub(super) fn expire(conn: &Connection, now: Millis, grace_ms: i64) -> Result<Effects, StoreError> {
    let expired: Vec<(String, AttemptKey, i64, i64)> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT agent, job_id, task_id, number, started_at, deadline_at FROM attempts
                 WHERE state = 'running' AND deadline_at IS NOT NULL AND deadline_at < ?1",
            )
            .map_err(backend)?;
        let rows = stmt
            .query_map([now - grace_ms], |r| {
                Ok((
                    r.get(0)?,
                    AttemptKey {
                        job_id: r.get(1)?,
                        task_id: r.get(2)?,
                        attempt: r.get(3)?,
                    },
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .map_err(backend)?;
        rows.collect::<Result<_, _>>().map_err(backend)?
    };
    let mut effects = Effects::default();
    for (agent, key, started, deadline) in expired {
        let why = format!(
            "timed out after {} (the agent did not report it; stopped by the controller)",
            humantime::format_duration(std::time::Duration::from_millis(
                (deadline - started) as u64
            ))
        );
        transitions::end_and_retry(conn, &key, AttemptState::TimedOut, &why, now, &mut effects)?;
        effects.stop.push(crate::model::PlacedAttempt {
            agent,
            attempt: key,
        });
    }
    Ok(effects)
}

/// Tasks queued and running per queue. Grouped in the order of `tasks_by_state` (state, then
/// queue), so SQLite counts along the index without sorting the tasks.
pub(super) fn queue_stats(conn: &Connection) -> Result<Vec<QueueStats>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT state, queue, COUNT(*) FROM tasks
             WHERE state IN ('queued', 'running') GROUP BY state, queue",
        )
        .map_err(backend)?;
    let mut rows = stmt.query([]).map_err(backend)?;
    let mut stats: BTreeMap<String, QueueStats> = BTreeMap::new();
    while let Some(row) = rows.next().map_err(backend)? {
        let state: String = row.get(0).map_err(backend)?;
        let queue: String = row.get(1).map_err(backend)?;
        let count: u32 = row.get(2).map_err(backend)?;
        let entry = stats.entry(queue.clone()).or_insert_with(|| QueueStats {
            name: queue,
            queued: 0,
            running: 0,
        });
        if state == "queued" {
            entry.queued = count;
        } else {
            entry.running = count;
        }
    }
    Ok(stats.into_values().collect())
}
