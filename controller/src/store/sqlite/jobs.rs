//! Jobs in SQLite: submit (with idempotency), read one or many, cancel.

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension};

use super::{backend, from_json, to_json};
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
pub(super) fn counts_at(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<TaskCounts> {
    Ok(TaskCounts {
        succeeded: r.get(at)?,
        failed: r.get(at + 1)?,
        cancelled: r.get(at + 2)?,
        skipped: r.get(at + 3)?,
    })
}

/// A stable 64-bit FNV-1a digest of the job's canonical JSON, to tell an idempotent retry of
/// the same submit from a different job reusing the key.
fn spec_hash(job: &NewJob) -> Result<String, StoreError> {
    // A backfill is part of the spec; without one the digest is what it always was.
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

pub(super) fn submit(
    conn: &Connection,
    job: &NewJob,
    now: Millis,
) -> Result<Submitted, StoreError> {
    let hash = spec_hash(job)?;
    if let Some(key) = &job.idempotency_key {
        let existing: Option<(String, String)> = conn
            .prepare_cached("SELECT id, spec_hash FROM jobs WHERE idempotency_key = ?1")
            .map_err(backend)?
            .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(backend)?;
        if let Some((id, existing_hash)) = existing {
            if existing_hash != hash {
                return Err(StoreError::Conflict(format!(
                    "idempotency key {key:?} was already used by job {id}, with a different job spec"
                )));
            }
            return Ok(Submitted {
                job_id: id,
                existing: true,
            });
        }
    }
    let id = uuid::Uuid::now_v7().simple().to_string();
    super::exec(
        conn,
        "INSERT INTO jobs (id, name, state, params, idempotency_key, spec_hash, created_at, tasks_total)
         VALUES (?1, ?2, 'pending', ?3, ?4, ?5, ?6, ?7)",
        params![id, job.name, to_json(&job.params)?, job.idempotency_key, hash, now, job.tasks.len() as i64],
    )?;
    let mut insert_task = conn
        .prepare_cached(
            "INSERT INTO tasks (job_id, task_id, seq, queue, labels, spec, state, deps_remaining,
                                ready_at, max_attempts, initial_delay_ms, max_delay_ms,
                                start_timeout_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .map_err(backend)?;
    let mut insert_dep = conn
        .prepare_cached(
            "INSERT OR IGNORE INTO task_deps (job_id, depends_on, task_id) VALUES (?1, ?2, ?3)",
        )
        .map_err(backend)?;
    for (seq, task) in job.tasks.iter().enumerate() {
        let state = if task.depends_on.is_empty() {
            TaskState::Queued
        } else {
            TaskState::Blocked
        };
        insert_task
            .execute(params![
                id,
                task.id,
                seq as i64,
                task.queue,
                // What the claim matches: the labels and an sql task's datasource.
                to_json(&crate::rules::placement::requirements(task))?,
                to_json(task)?,
                state.as_str(),
                task.depends_on.len() as i64,
                now,
                task.retry.max_attempts.max(1),
                task.retry.initial_delay_ms as i64,
                task.retry.max_delay_ms as i64,
                task.schedule_to_start_timeout_ms as i64,
            ])
            .map_err(backend)?;
        for dep in &task.depends_on {
            insert_dep
                .execute(params![id, dep, task.id])
                .map_err(backend)?;
        }
    }
    super::extracts::save_backfills(conn, &id, &job.backfill)?;
    Ok(Submitted {
        job_id: id,
        existing: false,
    })
}

fn job_state(text: &str) -> Result<JobState, StoreError> {
    JobState::parse(text).ok_or_else(|| StoreError::backend(format!("unknown job state {text:?}")))
}

pub(super) fn get(conn: &Connection, job_id: &str) -> Result<JobRecord, StoreError> {
    get_bounded(conn, job_id, u32::MAX)?
        .ok_or_else(|| StoreError::backend(format!("job {job_id} has more than u32::MAX tasks")))
}

/// The job, read in one snapshot, unless it has more than `max_tasks` tasks (`None`, found
/// from its head row before any task is read).
pub(super) fn get_bounded(
    conn: &Connection,
    job_id: &str,
    max_tasks: u32,
) -> Result<Option<JobRecord>, StoreError> {
    let tx = super::ReadTx::begin(conn)?;
    let head = tx
        .prepare_cached("SELECT name, state, params, idempotency_key, created_at, finished_at, tasks_total FROM jobs WHERE id = ?1")
        .map_err(backend)?
        .query_row(
            [job_id],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, u32>(6)?,
                ))
            },
        )
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
    if head.6 > max_tasks {
        return Ok(None);
    }
    let mut attempts: HashMap<String, Vec<AttemptRecord>> = HashMap::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT task_id, number, agent, state, exit_code, error, started_at, finished_at, log_truncated
                 FROM attempts WHERE job_id = ?1 ORDER BY task_id, number",
            )
            .map_err(backend)?;
        let mut rows = stmt.query([job_id]).map_err(backend)?;
        while let Some(r) = rows.next().map_err(backend)? {
            let state: String = r.get(3).map_err(backend)?;
            attempts
                .entry(r.get(0).map_err(backend)?)
                .or_default()
                .push(AttemptRecord {
                    number: r.get(1).map_err(backend)?,
                    agent: r.get(2).map_err(backend)?,
                    state: AttemptState::parse(&state).ok_or_else(|| {
                        StoreError::backend(format!("unknown attempt state {state:?}"))
                    })?,
                    exit_code: r.get(4).map_err(backend)?,
                    error: r.get(5).map_err(backend)?,
                    started_at: r.get(6).map_err(backend)?,
                    finished_at: r.get(7).map_err(backend)?,
                    logs_truncated: r.get(8).map_err(backend)?,
                });
        }
    }
    let mut extracts = super::extracts::by_task(&tx, job_id)?;
    let mut tasks = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT task_id, spec, state, ready_at, reason FROM tasks WHERE job_id = ?1
                 ORDER BY seq",
            )
            .map_err(backend)?;
        let mut rows = stmt.query([job_id]).map_err(backend)?;
        while let Some(r) = rows.next().map_err(backend)? {
            let task_id: String = r.get(0).map_err(backend)?;
            let spec: TaskSpec = from_json(&r.get::<_, String>(1).map_err(backend)?)?;
            let state: String = r.get(2).map_err(backend)?;
            tasks.push(TaskRecord {
                spec,
                state: TaskState::parse(&state)
                    .ok_or_else(|| StoreError::backend(format!("unknown task state {state:?}")))?,
                ready_at: r.get(3).map_err(backend)?,
                attempts: attempts.remove(&task_id).unwrap_or_default(),
                extract: extracts.remove(&task_id),
                reason: r.get(4).map_err(backend)?,
            });
        }
    }
    let params: BTreeMap<String, String> = from_json(&head.2)?;
    Ok(Some(JobRecord {
        id: job_id.to_string(),
        name: head.0,
        state: job_state(&head.1)?,
        params,
        idempotency_key: head.3,
        created_at: head.4,
        finished_at: head.5,
        tasks,
    }))
}

pub(super) fn list(
    conn: &Connection,
    state: Option<JobState>,
    limit: u32,
) -> Result<Vec<JobSummary>, StoreError> {
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT j.id, j.name, j.state, j.created_at, j.finished_at, j.tasks_total, j.tasks_done, ",
            task_counts!(),
            " FROM jobs j WHERE (?1 IS NULL OR j.state = ?1)
             ORDER BY j.created_at DESC, j.id DESC LIMIT ?2"
        ))
        .map_err(backend)?;
    let rows = stmt
        .query_map(params![state.map(|s| s.as_str()), limit], |r| {
            Ok((
                JobSummary {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    state: JobState::Pending,
                    created_at: r.get(3)?,
                    finished_at: r.get(4)?,
                    tasks_total: r.get(5)?,
                    tasks_done: r.get(6)?,
                    ended: counts_at(r, 7)?,
                },
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(backend)?;
    let mut jobs = Vec::new();
    for row in rows {
        let (mut job, state) = row.map_err(backend)?;
        job.state = job_state(&state)?;
        jobs.push(job);
    }
    Ok(jobs)
}

pub(super) fn cancel(
    conn: &Connection,
    job_id: &str,
    now: Millis,
) -> Result<Cancelled, StoreError> {
    let state: String = conn
        .prepare_cached("SELECT state FROM jobs WHERE id = ?1")
        .map_err(backend)?
        .query_row([job_id], |r| r.get(0))
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))?;
    let state = job_state(&state)?;
    if state.is_terminal() {
        return Ok(Cancelled {
            cancelled: false,
            state: Some(state),
            running: Vec::new(),
        });
    }
    let mut running = Vec::new();
    {
        let mut stmt = conn
            .prepare_cached("SELECT agent, task_id, number FROM attempts WHERE job_id = ?1 AND state = 'running'")
            .map_err(backend)?;
        let rows = stmt
            .query_map([job_id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                ))
            })
            .map_err(backend)?;
        for row in rows {
            let (agent, task_id, attempt) = row.map_err(backend)?;
            running.push(PlacedAttempt {
                agent,
                attempt: AttemptKey {
                    job_id: job_id.to_string(),
                    task_id,
                    attempt,
                },
            });
        }
    }
    super::exec(
        conn,
        "UPDATE attempts SET state = 'cancelled', finished_at = ?2, error = 'job cancelled'
         WHERE job_id = ?1 AND state = 'running'",
        params![job_id, now],
    )?;
    super::exec(
        conn,
        "UPDATE tasks SET state = 'cancelled' WHERE job_id = ?1 AND state IN ('blocked', 'queued', 'running')",
        [job_id],
    )?;
    super::exec(
        conn,
        "UPDATE jobs SET state = 'cancelled', finished_at = ?2, tasks_done = tasks_total WHERE id = ?1",
        params![job_id, now],
    )?;
    Ok(Cancelled {
        cancelled: true,
        state: Some(JobState::Cancelled),
        running,
    })
}
