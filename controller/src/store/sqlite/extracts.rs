//! Sql extracts in SQLite: a job's backfill ranges (written at submit), the range a claim hands
//! an incremental attempt, and the extract metadata recorded with an attempt's success, which
//! also moves the task's watermark (DESIGN.md invariant 2).

use std::collections::{BTreeMap, HashMap};

use rusqlite::{params, Connection, OptionalExtension};

use super::{backend, from_json, to_json, watermarks};
use crate::model::{
    AttemptKey, Backfill, ExtractInfo, ExtractRange, Millis, TaskExtract, TaskSpec,
};
use crate::store::StoreError;

/// Writes a new job's backfill ranges, within its submit.
pub(super) fn save_backfills(
    conn: &Connection,
    job_id: &str,
    backfill: &BTreeMap<String, Backfill>,
) -> Result<(), StoreError> {
    for (task_id, range) in backfill {
        super::exec(
            conn,
            "INSERT INTO backfills (job_id, task_id, from_value, until_value) VALUES (?1, ?2, ?3, ?4)",
            params![job_id, task_id, range.from, range.until],
        )?;
    }
    Ok(())
}

fn backfill_of(
    conn: &Connection,
    job_id: &str,
    task_id: &str,
) -> Result<Option<Backfill>, StoreError> {
    conn.prepare_cached(
        "SELECT from_value, until_value FROM backfills WHERE job_id = ?1 AND task_id = ?2",
    )
    .map_err(backend)?
    .query_row(params![job_id, task_id], |r| {
        Ok(Backfill {
            from: r.get(0)?,
            until: r.get(1)?,
        })
    })
    .optional()
    .map_err(backend)
}

/// What a new attempt of an incremental sql task extracts: the job's backfill of the task,
/// else everything past the stored watermark of (job name, task id) as of this claim.
pub(super) fn range(
    conn: &Connection,
    job_id: &str,
    job_name: &str,
    task_id: &str,
) -> Result<ExtractRange, StoreError> {
    if let Some(backfill) = backfill_of(conn, job_id, task_id)? {
        return Ok(ExtractRange {
            after: backfill.from,
            until: Some(backfill.until),
            backfill: true,
        });
    }
    Ok(ExtractRange {
        after: watermarks::value(conn, job_name, task_id)?,
        until: None,
        backfill: false,
    })
}

/// Records what a (fenced) successful attempt extracted and, for an incremental task that is
/// not a backfill, makes its reported upper bound the stored watermark: in the transaction
/// that records the success.
pub(super) fn record(
    conn: &Connection,
    key: &AttemptKey,
    info: &ExtractInfo,
    now: Millis,
) -> Result<(), StoreError> {
    super::exec(
        conn,
        "INSERT OR REPLACE INTO extracts (job_id, task_id, attempt, info) VALUES (?1, ?2, ?3, ?4)",
        params![key.job_id, key.task_id, key.attempt, to_json(info)?],
    )?;
    let Some(value) = &info.watermark else {
        return Ok(());
    };
    let (job_name, spec): (String, String) = conn
        .prepare_cached(
            "SELECT j.name, t.spec FROM tasks t JOIN jobs j ON j.id = t.job_id
             WHERE t.job_id = ?1 AND t.task_id = ?2",
        )
        .map_err(backend)?
        .query_row(params![key.job_id, key.task_id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(backend)?;
    let spec: TaskSpec = from_json(&spec)?;
    let Some(column) = spec.kind.incremental_column() else {
        return Ok(());
    };
    // The job's own record decides what is a backfill, whatever the agent says.
    if info.backfill || backfill_of(conn, &key.job_id, &key.task_id)?.is_some() {
        return Ok(());
    }
    watermarks::put(
        conn,
        &job_name,
        &key.task_id,
        column,
        value,
        now,
        Some((&key.job_id, key.attempt)),
    )
}

/// The extracts of a job's tasks (of one task with `task_id`), by task id.
pub(super) fn of_job(
    conn: &Connection,
    job_id: &str,
    task_id: Option<&str>,
) -> Result<Vec<TaskExtract>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT task_id, attempt, info FROM extracts WHERE job_id = ?1 ORDER BY task_id",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map([job_id], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
            ))
        })
        .map_err(backend)?;
    let mut extracts = Vec::new();
    for row in rows {
        let (id, attempt, info) = row.map_err(backend)?;
        if task_id.is_some_and(|t| t != id) {
            continue;
        }
        extracts.push(TaskExtract {
            task_id: id,
            attempt,
            extract: from_json(&info)?,
        });
    }
    Ok(extracts)
}

/// `of_job` for readers: `NotFound` for an unknown job or task, one snapshot.
pub(super) fn list(
    conn: &Connection,
    job_id: &str,
    task_id: Option<&str>,
) -> Result<Vec<TaskExtract>, StoreError> {
    let tx = super::ReadTx::begin(conn)?;
    let known: Option<i64> = tx
        .prepare_cached("SELECT 1 FROM jobs WHERE id = ?1")
        .map_err(backend)?
        .query_row([job_id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    if known.is_none() {
        return Err(StoreError::NotFound(format!("job {job_id}")));
    }
    if let Some(task_id) = task_id {
        super::outputs::dependencies(&tx, job_id, task_id)?;
    }
    of_job(&tx, job_id, task_id)
}

/// The extracts of a job's tasks, by task id, for `get_job`.
pub(super) fn by_task(
    conn: &Connection,
    job_id: &str,
) -> Result<HashMap<String, ExtractInfo>, StoreError> {
    Ok(of_job(conn, job_id, None)?
        .into_iter()
        .map(|e| (e.task_id, e.extract))
        .collect())
}
