//! Dispatch in PostgreSQL: claiming queued tasks for an agent (`FOR UPDATE SKIP LOCKED`, so
//! concurrent claims never wait on each other nor take a task twice), naming attempts an
//! agent must stop, reconciling what it runs, hand-back and controller-side timeouts.

use std::collections::{BTreeMap, HashMap};

use super::cursors::{Cursors, Key};
use super::from_json;
use super::pool::{col, Conn};
use crate::model::{Assignment, AttemptKey, Millis, QueueStats, TaskSpec};
use crate::store::{ClaimRequest, Claimed, StoreError};

mod running;

pub(super) use running::{expire, lose_all, orphans, reconcile, release, stale};

/// Locks the agent's row against a concurrent death, registration or state change (`FOR KEY
/// SHARE`: claims and heartbeats do not wait on it) and reads its state if `session` is still
/// the agent's.
const LOCK_SESSION: &str =
    "SELECT state FROM agents WHERE name = $1 AND session = $2 FOR KEY SHARE";

/// A queued task picked for the claim.
struct Picked {
    job_id: String,
    task_id: String,
    spec: TaskSpec,
}

/// Locks up to `want` eligible tasks of `queue` that no other transaction holds and whose
/// required labels are among `labels`, in claim order, from the claim cursor of `cursors`
/// (`cursors.rs`) if any, looking behind it first when a sweep is due.
async fn pick(
    c: &Conn,
    labels: &BTreeMap<String, String>,
    queue: &str,
    want: usize,
    now: Millis,
    picked: &mut Vec<Picked>,
    cursors: Option<&Cursors>,
) -> Result<(), StoreError> {
    let start = cursors.and_then(|k| k.start(queue, labels));
    if let (Some(cursors), Some(start)) = (cursors, &start) {
        // What lies behind is older: when it is looked at, it goes first.
        if cursors.sweep_due(queue, labels) {
            scan(c, labels, queue, want, now, picked, None, Some(start)).await?;
        }
    }
    if picked.len() >= want {
        return Ok(());
    }
    let seen = scan(c, labels, queue, want, now, picked, start, None).await?;
    if let (Some(cursors), Some(seen)) = (cursors, seen) {
        cursors.advance(queue, labels, seen);
    }
    Ok(())
}

/// Reads queued tasks of `queue` in claim order after `after` and up to `upto` (each if given),
/// locking those whose labels match until `want` are picked; returns the key of the last row
/// read. Rows whose labels do not match are read past.
#[allow(clippy::too_many_arguments)]
async fn scan(
    c: &Conn,
    labels: &BTreeMap<String, String>,
    queue: &str,
    want: usize,
    now: Millis,
    picked: &mut Vec<Picked>,
    mut after: Option<Key>,
    upto: Option<&Key>,
) -> Result<Option<Key>, StoreError> {
    /// The claim's read, with `$cond` between its filter and its order.
    macro_rules! sql {
        ($cond:literal) => {
            concat!(
                "SELECT job_id, task_id, labels, spec, ready_at, seq FROM tasks
                 WHERE state = 'queued' AND queue = $1 AND ready_at <= $2",
                $cond,
                " ORDER BY ready_at, job_id, seq LIMIT $3 FOR UPDATE SKIP LOCKED"
            )
        };
    }
    let mut last = None;
    loop {
        let limit = (want - picked.len()) as i64;
        let rows = match (&after, upto) {
            (None, None) => c.query(sql!(""), &[&queue, &now, &limit]).await?,
            (Some((ready, job, seq)), None) => {
                c.query(
                    sql!(" AND (ready_at, job_id, seq) > ($4, $5, $6)"),
                    &[&queue, &now, &limit, ready, job, seq],
                )
                .await?
            }
            (None, Some((ready, job, seq))) => {
                c.query(
                    sql!(" AND (ready_at, job_id, seq) <= ($4, $5, $6)"),
                    &[&queue, &now, &limit, ready, job, seq],
                )
                .await?
            }
            (Some((ready, job, seq)), Some((to_ready, to_job, to_seq))) => {
                c.query(
                    sql!(
                        " AND (ready_at, job_id, seq) > ($4, $5, $6)
                          AND (ready_at, job_id, seq) <= ($7, $8, $9)"
                    ),
                    &[
                        &queue, &now, &limit, ready, job, seq, to_ready, to_job, to_seq,
                    ],
                )
                .await?
            }
        };
        let read = rows.len() as i64;
        for r in &rows {
            let job_id: String = col(r, 0)?;
            let key: Key = (col(r, 4)?, job_id.clone(), col(r, 5)?);
            after = Some(key.clone());
            last = Some(key);
            let required: &str = col(r, 2)?;
            if required != "{}" {
                let required: BTreeMap<String, String> = from_json(required)?;
                if !crate::rules::labels_match(&required, labels) {
                    continue;
                }
            }
            picked.push(Picked {
                job_id,
                task_id: col(r, 1)?,
                spec: from_json(col(r, 3)?)?,
            });
        }
        if picked.len() >= want || read < limit {
            return Ok(last);
        }
    }
}

/// Claims work for one agent: nothing unless its session is still live and ready. The
/// session's lock is sent with the picks (one round trip, the lock first); if the session is
/// not ready, what was picked is left as it was and its row locks end with the transaction.
pub(super) async fn claim(
    c: &Conn,
    req: &ClaimRequest,
    now: Millis,
    cursors: Option<&Cursors>,
) -> Result<Claimed, StoreError> {
    let session = c.statement(LOCK_SESSION).await?;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&req.agent, &req.session];
    let reqs = [req];
    let (state, picks) = tokio::join!(
        c.query_prepared(&session, &params),
        pick_for(c, &reqs, now, cursors)
    );
    // The first failure in the order sent: what follows it only says the transaction aborted.
    let (state, picks) = (state?, picks?);
    let state: Option<&str> = state.first().map(|r| col(r, 0)).transpose()?;
    if state != Some("ready") {
        // A poll that outlived its session (declared dead meanwhile) or a draining agent.
        return Ok(Claimed::default());
    }
    Ok(start_picked(c, &reqs, picks, now)
        .await?
        .pop()
        .unwrap_or_default())
}

/// What `pick_for` locked, and for whom.
pub(super) struct Picks {
    /// (request, task) in the order they are handed out.
    picked: Vec<(usize, Picked)>,
    /// Per request: when its next queued task becomes eligible, if it got nothing.
    next_ready_at: Vec<Option<Millis>>,
}

/// The claim's reads, for agents whose rows the caller has locked and found live and ready:
/// locks the tasks `reqs` get and asks when the next queued task becomes eligible, for those
/// that get nothing. Requests asking for the same queues with the same labels share one pick,
/// handed out in request order (`start_picked` starts their attempts).
pub(super) async fn pick_for(
    c: &Conn,
    reqs: &[&ClaimRequest],
    now: Millis,
    cursors: Option<&Cursors>,
) -> Result<Picks, StoreError> {
    let mut next_ready_at = vec![None; reqs.len()];
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, req) in reqs.iter().enumerate() {
        let same = |g: &&mut Vec<usize>| {
            let first = reqs[g[0]];
            first.queues == req.queues && first.labels == req.labels
        };
        match groups.iter_mut().find(same) {
            Some(group) => group.push(i),
            None => groups.push(vec![i]),
        }
    }
    let mut picked: Vec<(usize, Picked)> = Vec::new();
    for group in &groups {
        let first = reqs[group[0]];
        let want: usize = group.iter().map(|&i| reqs[i].max as usize).sum();
        let mut got: Vec<Picked> = Vec::new();
        let picks = async {
            for queue in &first.queues {
                if got.len() >= want {
                    break;
                }
                pick(c, &first.labels, queue, want, now, &mut got, cursors).await?;
            }
            Ok::<(), StoreError>(())
        };
        // When the next queued task becomes eligible, for agents that get nothing: asked with
        // the picks (one round trip), read only if needed.
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&first.queues, &now];
        let next = c.query_one(
            "SELECT MIN(ready_at) FROM tasks WHERE state = 'queued' AND queue = ANY($1) AND ready_at > $2",
            &params,
        );
        let (picked_all, next) = tokio::join!(picks, next);
        picked_all?;
        let next: Option<Millis> = col(&next?, 0)?;
        let short = got.len() < want;
        let mut got = got.into_iter();
        for &i in group {
            let before = picked.len();
            picked.extend(got.by_ref().take(reqs[i].max as usize).map(|p| (i, p)));
            if short && picked.len() == before {
                next_ready_at[i] = next;
            }
        }
    }
    Ok(Picks {
        picked,
        next_ready_at,
    })
}

/// Starts the next attempt of each picked task (one statement), marks their jobs running and
/// reads their names and parameters (sent with it: one round trip); the assignments per request.
pub(super) async fn start_picked(
    c: &Conn,
    reqs: &[&ClaimRequest],
    picks: Picks,
    now: Millis,
) -> Result<Vec<Claimed>, StoreError> {
    let Picks {
        picked,
        next_ready_at,
    } = picks;
    let mut claimed: Vec<Claimed> = next_ready_at
        .into_iter()
        .map(|next_ready_at| Claimed {
            next_ready_at,
            ..Claimed::default()
        })
        .collect();
    if picked.is_empty() {
        return Ok(claimed);
    }
    let job_ids: Vec<&str> = picked.iter().map(|(_, p)| p.job_id.as_str()).collect();
    let task_ids: Vec<&str> = picked.iter().map(|(_, p)| p.task_id.as_str()).collect();
    let agents: Vec<&str> = picked
        .iter()
        .map(|(i, _)| reqs[*i].agent.as_str())
        .collect();
    let timeouts: Vec<Option<i64>> = picked
        .iter()
        .map(|(_, p)| (p.spec.timeout_ms > 0).then_some(p.spec.timeout_ms as i64))
        .collect();
    let mut distinct: Vec<&str> = job_ids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    type P<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    let started: [P; 5] = [&job_ids, &task_ids, &now, &timeouts, &agents];
    let jobs: [P; 1] = [&distinct];
    // Prepared first, then sent together in this order (one round trip).
    let (start, running, read) = tokio::join!(
        c.statement(START_ATTEMPTS),
        c.statement(JOBS_RUNNING),
        c.statement(JOBS_READ)
    );
    let (start, running, read) = (start?, running?, read?);
    let (numbered, running, job_rows) = tokio::join!(
        c.query_prepared(&start, &started),
        c.execute_prepared(&running, &jobs),
        c.query_prepared(&read, &jobs),
    );
    // The first failure in the order sent: what follows it only says the transaction aborted.
    let (numbered, _, job_rows) = (numbered?, running?, job_rows?);
    let mut numbers: HashMap<(String, String), i64> = HashMap::new();
    for r in &numbered {
        numbers.insert((col(r, 0)?, col(r, 1)?), col(r, 2)?);
    }
    let mut jobs: HashMap<String, (String, BTreeMap<String, String>)> = HashMap::new();
    for r in &job_rows {
        jobs.insert(col(r, 0)?, (col(r, 1)?, from_json(col(r, 2)?)?));
    }
    for (i, p) in picked {
        let number = numbers
            .get(&(p.job_id.clone(), p.task_id.clone()))
            .copied()
            .ok_or_else(|| {
                StoreError::backend(format!(
                    "task {} of job {} vanished while claimed",
                    p.task_id, p.job_id
                ))
            })?;
        let (job_name, job_params) = jobs.get(&p.job_id).ok_or_else(|| {
            StoreError::backend(format!("job {} vanished while claimed", p.job_id))
        })?;
        let inputs = if p.spec.depends_on.is_empty() {
            Vec::new()
        } else {
            super::outputs::inputs(c, &p.job_id, &p.spec).await?
        };
        // Only incremental sql tasks look up a range (two primary-key reads).
        let extract_range = match p.spec.kind.incremental_column() {
            Some(_) => Some(super::extracts::range(c, &p.job_id, job_name, &p.task_id).await?),
            None => None,
        };
        claimed[i].assignments.push(Assignment {
            attempt: AttemptKey {
                job_id: p.job_id,
                task_id: p.task_id,
                attempt: number as u32,
            },
            job_name: job_name.clone(),
            task: p.spec,
            params: job_params.clone(),
            inputs,
            extract_range,
        });
    }
    Ok(claimed)
}

/// The picked tasks' next attempts: the task counts it (`attempts`) and the attempt's row is
/// made with that number, its deadline `timeout` after `now` if the task has one.
const START_ATTEMPTS: &str = "WITH started AS (
         UPDATE tasks t SET state = 'running', attempts = t.attempts + 1
         FROM unnest($1::text[], $2::text[]) AS p(job_id, task_id)
         WHERE t.job_id = p.job_id AND t.task_id = p.task_id
         RETURNING t.job_id, t.task_id, t.attempts)
     INSERT INTO attempts (job_id, task_id, number, agent, state, started_at, deadline_at)
     SELECT s.job_id, s.task_id, s.attempts, a.agent, 'running', $3, $3 + a.timeout
     FROM started s
     JOIN unnest($1::text[], $2::text[], $4::int8[], $5::text[]) AS a(job_id, task_id, timeout, agent)
       ON a.job_id = s.job_id AND a.task_id = s.task_id
     RETURNING job_id, task_id, number";
const JOBS_RUNNING: &str =
    "UPDATE jobs SET state = 'running' WHERE id = ANY($1) AND state = 'pending'";
const JOBS_READ: &str = "SELECT id, name, params FROM jobs WHERE id = ANY($1)";

/// Tasks queued and running per queue, by queue name.
pub(super) async fn queue_stats(c: &Conn) -> Result<Vec<QueueStats>, StoreError> {
    let rows = c
        .query(
            "SELECT queue, COUNT(*) FILTER (WHERE state = 'queued'), COUNT(*) FILTER (WHERE state = 'running')
             FROM tasks WHERE state IN ('queued', 'running') GROUP BY queue ORDER BY queue",
            &[],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(QueueStats {
                name: col(r, 0)?,
                queued: col::<i64>(r, 1)? as u32,
                running: col::<i64>(r, 2)? as u32,
            })
        })
        .collect()
}
