//! Jobs in PostgreSQL: submit (with idempotency, a job's tasks and edges in one statement
//! each), read one or many, cancel (the job's tasks locked first).

use std::collections::{BTreeMap, HashMap};

use super::pool::{col, Conn};
use super::{from_json, to_json};
use crate::model::{
    AttemptKey, AttemptRecord, AttemptState, JobRecord, JobState, JobSummary, Millis, NewJob,
    PlacedAttempt, Submitted, TaskCounts, TaskRecord, TaskSpec, TaskState,
};
use crate::store::{Cancelled, StoreError};

/// The ended tasks of the job aliased `j`, four columns: succeeded, failed, cancelled, skipped
/// (read back with `counts_at`).
macro_rules! task_counts {
    () => {
        "(SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'succeeded'),
         (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'failed'),
         (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'cancelled'),
         (SELECT COUNT(*) FROM tasks t WHERE t.job_id = j.id AND t.state = 'skipped')"
    };
}
pub(super) use task_counts;

/// The four columns of `task_counts!` starting at `at`.
pub(super) fn counts_at(r: &tokio_postgres::Row, at: usize) -> Result<TaskCounts, StoreError> {
    Ok(TaskCounts {
        succeeded: col::<i64>(r, at)? as u32,
        failed: col::<i64>(r, at + 1)? as u32,
        cancelled: col::<i64>(r, at + 2)? as u32,
        skipped: col::<i64>(r, at + 3)? as u32,
    })
}

/// A stable 64-bit FNV-1a digest of the job's canonical JSON, to tell an idempotent retry of
/// the same submit from a different job reusing the key (the SQLite store's digest).
fn spec_hash(job: &NewJob) -> Result<String, StoreError> {
    let text = if job.backfill.is_empty() {
        to_json(&(&job.name, &job.params, &job.tasks))?
    } else {
        to_json(&(&job.name, &job.params, &job.tasks, &job.backfill))?
    };
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    Ok(format!("{hash:016x}"))
}

/// The job already submitted under `key`, if any: its id, or `Conflict` if its spec differs.
async fn existing(c: &Conn, key: &str, hash: &str) -> Result<Option<Submitted>, StoreError> {
    let Some(row) = c
        .query_opt(
            "SELECT id, spec_hash FROM jobs WHERE idempotency_key = $1",
            &[&key],
        )
        .await?
    else {
        return Ok(None);
    };
    let (id, existing_hash): (String, String) = (col(&row, 0)?, col(&row, 1)?);
    if existing_hash != hash {
        return Err(StoreError::Conflict(format!(
            "idempotency key {key:?} was already used by job {id}, with a different job spec"
        )));
    }
    Ok(Some(Submitted {
        job_id: id,
        existing: true,
    }))
}

const INSERT_JOB: &str =
    "INSERT INTO jobs (id, name, state, params, idempotency_key, spec_hash, created_at, tasks_total)
     VALUES ($1, $2, 'pending', $3, $4, $5, $6, $7)
     ON CONFLICT (idempotency_key) DO NOTHING";
const INSERT_TASKS: &str =
    "INSERT INTO tasks (job_id, task_id, seq, queue, labels, spec, state, deps_remaining,
                        ready_at, max_attempts, initial_delay_ms, max_delay_ms, start_timeout_ms)
     SELECT $1, t.task_id, t.seq, t.queue, t.labels, t.spec, t.state, t.deps, $2, t.max_attempts,
            t.initial, t.max_delay, t.start_timeout
     FROM unnest($3::text[], $4::int8[], $5::text[], $6::text[], $7::text[], $8::text[],
                 $9::int8[], $10::int8[], $11::int8[], $12::int8[], $13::int8[])
          AS t(task_id, seq, queue, labels, spec, state, deps, max_attempts, initial, max_delay,
               start_timeout)
     WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1)";
const INSERT_EDGES: &str = "INSERT INTO task_deps (job_id, depends_on, task_id)
     SELECT $1, d.depends_on, d.task_id FROM unnest($2::text[], $3::text[]) AS d(depends_on, task_id)
     WHERE EXISTS (SELECT 1 FROM jobs WHERE id = $1)
     ON CONFLICT DO NOTHING";

pub(super) async fn submit(c: &Conn, job: &NewJob, now: Millis) -> Result<Submitted, StoreError> {
    let hash = spec_hash(job)?;
    if let Some(key) = &job.idempotency_key {
        if let Some(found) = existing(c, key, &hash).await? {
            return Ok(found);
        }
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    let n = job.tasks.len();
    let (mut task_ids, mut seqs, mut queues, mut labels, mut specs, mut states, mut deps) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut max_attempts, mut initial, mut max_delay, mut start_timeouts) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut edge_from, mut edge_to) = (Vec::new(), Vec::new());
    for (seq, task) in job.tasks.iter().enumerate() {
        let state = if task.depends_on.is_empty() {
            TaskState::Queued
        } else {
            TaskState::Blocked
        };
        task_ids.push(task.id.as_str());
        seqs.push(seq as i64);
        queues.push(task.queue.as_str());
        // What the claim matches: the labels and an sql task's datasource.
        labels.push(to_json(&crate::rules::placement::requirements(task))?);
        specs.push(to_json(task)?);
        states.push(state.as_str());
        deps.push(task.depends_on.len() as i64);
        max_attempts.push(i64::from(task.retry.max_attempts.max(1)));
        initial.push(task.retry.initial_delay_ms as i64);
        max_delay.push(task.retry.max_delay_ms as i64);
        start_timeouts.push(task.schedule_to_start_timeout_ms as i64);
        for dep in &task.depends_on {
            edge_from.push(dep.as_str());
            edge_to.push(task.id.as_str());
        }
    }
    let params = to_json(&job.params)?;
    let tasks_total = n as i64;
    type P<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
    let head: [P; 7] = [
        &id,
        &job.name,
        &params,
        &job.idempotency_key,
        &hash,
        &now,
        &tasks_total,
    ];
    let rows: [P; 13] = [
        &id,
        &now,
        &task_ids,
        &seqs,
        &queues,
        &labels,
        &specs,
        &states,
        &deps,
        &max_attempts,
        &initial,
        &max_delay,
        &start_timeouts,
    ];
    let edges: [P; 3] = [&id, &edge_from, &edge_to];
    // Prepared first, then sent together in this order (one round trip): the tasks and their
    // edges are inserted only if the job was, which a concurrent submit with the same key
    // prevents (this one waits for it, then inserts nothing).
    let (job_stmt, tasks_stmt, edges_stmt) = tokio::join!(
        c.statement(INSERT_JOB),
        c.statement(INSERT_TASKS),
        c.statement(INSERT_EDGES)
    );
    let (job_stmt, tasks_stmt, edges_stmt) = (job_stmt?, tasks_stmt?, edges_stmt?);
    let (inserted, tasks, edges) = tokio::join!(
        c.execute_prepared(&job_stmt, &head),
        c.execute_prepared(&tasks_stmt, &rows),
        async {
            match edge_to.is_empty() {
                true => Ok(0),
                false => c.execute_prepared(&edges_stmt, &edges).await,
            }
        },
    );
    // The first failure in the order sent: what follows it only says the transaction aborted.
    let (inserted, _, _) = (inserted?, tasks?, edges?);
    if inserted == 0 {
        let key = job.idempotency_key.as_deref().unwrap_or_default();
        return existing(c, key, &hash).await?.ok_or_else(|| {
            StoreError::backend(format!("idempotency key {key:?} conflicted with no job"))
        });
    }
    super::extracts::save_backfills(c, &id, &job.backfill).await?;
    Ok(Submitted {
        job_id: id,
        existing: false,
    })
}

pub(super) fn job_state(text: &str) -> Result<JobState, StoreError> {
    JobState::parse(text).ok_or_else(|| StoreError::backend(format!("unknown job state {text:?}")))
}

/// The job, read whole (the caller's snapshot).
pub(super) async fn get(c: &Conn, job_id: &str) -> Result<JobRecord, StoreError> {
    let job: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&job_id];
    // The four reads are independent: sent together, they take one round trip.
    let (head, attempt_rows, extracts, task_rows) = tokio::join!(
        c.query_opt(
            "SELECT name, state, params, idempotency_key, created_at, finished_at FROM jobs WHERE id = $1",
            &job,
        ),
        c.query(
            "SELECT task_id, number, agent, state, exit_code, error, started_at, finished_at, log_truncated
             FROM attempts WHERE job_id = $1 ORDER BY task_id, number",
            &job,
        ),
        super::extracts::by_task(c, job_id),
        c.query(
            "SELECT task_id, spec, state, ready_at, reason FROM tasks WHERE job_id = $1 ORDER BY seq",
            &job,
        ),
    );
    // The first failure in the order sent: what follows it only says the transaction aborted.
    let (head, attempt_rows, extracts, task_rows) = (head?, attempt_rows?, extracts?, task_rows?);
    let head = head.ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
    let mut attempts: HashMap<String, Vec<AttemptRecord>> = HashMap::new();
    for r in attempt_rows {
        let state: String = col(&r, 3)?;
        attempts
            .entry(col(&r, 0)?)
            .or_default()
            .push(AttemptRecord {
                number: col::<i64>(&r, 1)? as u32,
                agent: col(&r, 2)?,
                state: AttemptState::parse(&state).ok_or_else(|| {
                    StoreError::backend(format!("unknown attempt state {state:?}"))
                })?,
                exit_code: col(&r, 4)?,
                error: col(&r, 5)?,
                started_at: col(&r, 6)?,
                finished_at: col(&r, 7)?,
                logs_truncated: col(&r, 8)?,
            });
    }
    let mut extracts = extracts;
    let mut tasks = Vec::new();
    for r in task_rows {
        let task_id: String = col(&r, 0)?;
        let spec: TaskSpec = from_json(col(&r, 1)?)?;
        let state: &str = col(&r, 2)?;
        tasks.push(TaskRecord {
            spec,
            state: TaskState::parse(state)
                .ok_or_else(|| StoreError::backend(format!("unknown task state {state:?}")))?,
            ready_at: col(&r, 3)?,
            attempts: attempts.remove(&task_id).unwrap_or_default(),
            extract: extracts.remove(&task_id),
            reason: col(&r, 4)?,
        });
    }
    let params: BTreeMap<String, String> = from_json(col(&head, 2)?)?;
    Ok(JobRecord {
        id: job_id.to_string(),
        name: col(&head, 0)?,
        state: job_state(col(&head, 1)?)?,
        params,
        idempotency_key: col(&head, 3)?,
        created_at: col(&head, 4)?,
        finished_at: col(&head, 5)?,
        tasks,
    })
}

pub(super) async fn list(
    c: &Conn,
    state: Option<JobState>,
    limit: u32,
) -> Result<Vec<JobSummary>, StoreError> {
    let rows = c
        .query(
            concat!(
                "SELECT j.id, j.name, j.state, j.created_at, j.finished_at, j.tasks_total,
                        j.tasks_done, ",
                task_counts!(),
                " FROM jobs j WHERE ($1::text IS NULL OR j.state = $1)
                 ORDER BY j.created_at DESC, j.id DESC LIMIT $2"
            ),
            &[&state.map(|s| s.as_str()), &i64::from(limit)],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(JobSummary {
                id: col(r, 0)?,
                name: col(r, 1)?,
                state: job_state(col(r, 2)?)?,
                created_at: col(r, 3)?,
                finished_at: col(r, 4)?,
                tasks_total: col::<i64>(r, 5)? as u32,
                tasks_done: col::<i64>(r, 6)? as u32,
                ended: counts_at(r, 7)?,
            })
        })
        .collect()
}

async fn state_of(c: &Conn, job_id: &str) -> Result<JobState, StoreError> {
    let row = c
        .query_opt("SELECT state FROM jobs WHERE id = $1", &[&job_id])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
    job_state(col(&row, 0)?)
}

/// Cancels a job that has not ended. Its tasks are locked first (in task order), so no
/// completion, claim or timeout of them runs meanwhile; the job row is updated last.
pub(super) async fn cancel(c: &Conn, job_id: &str, now: Millis) -> Result<Cancelled, StoreError> {
    let state = state_of(c, job_id).await?;
    if !state.is_terminal() {
        c.execute(
            "SELECT 1 FROM tasks WHERE job_id = $1 ORDER BY task_id FOR UPDATE",
            &[&job_id],
        )
        .await?;
    }
    // Read again once the tasks are locked: a completion may have ended the job meanwhile.
    let state = state_of(c, job_id).await?;
    if state.is_terminal() {
        return Ok(Cancelled {
            cancelled: false,
            state: Some(state),
            running: Vec::new(),
        });
    }
    let mut running = Vec::new();
    for r in c
        .query(
            "UPDATE attempts SET state = 'cancelled', finished_at = $2, error = 'job cancelled'
             WHERE job_id = $1 AND state = 'running' RETURNING agent, task_id, number",
            &[&job_id, &now],
        )
        .await?
    {
        running.push(PlacedAttempt {
            agent: col(&r, 0)?,
            attempt: AttemptKey {
                job_id: job_id.to_string(),
                task_id: col(&r, 1)?,
                attempt: col::<i64>(&r, 2)? as u32,
            },
        });
    }
    running.sort_by(|a, b| {
        (&a.attempt.task_id, a.attempt.attempt).cmp(&(&b.attempt.task_id, b.attempt.attempt))
    });
    c.execute(
        "UPDATE tasks SET state = 'cancelled' WHERE job_id = $1 AND state IN ('blocked', 'queued', 'running')",
        &[&job_id],
    )
    .await?;
    c.execute(
        "UPDATE jobs SET state = 'cancelled', finished_at = $2, tasks_done = tasks_total WHERE id = $1",
        &[&job_id, &now],
    )
    .await?;
    Ok(Cancelled {
        cancelled: true,
        state: Some(JobState::Cancelled),
        running,
    })
}
