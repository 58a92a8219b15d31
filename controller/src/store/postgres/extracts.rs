//! Sql extracts in PostgreSQL: a job's backfill ranges (written at submit), the range a claim
//! hands an incremental attempt, and the extract metadata recorded with an attempt's success,
//! which also moves the task's watermark (DESIGN.md invariant 2).

use std::collections::{BTreeMap, HashMap};

use super::pool::{col, Conn};
use super::{from_json, to_json, watermarks};
use crate::model::{
    AttemptKey, Backfill, ExtractInfo, ExtractRange, Millis, TaskExtract, TaskSpec,
};
use crate::store::StoreError;

/// Writes a new job's backfill ranges, within its submit.
pub(super) async fn save_backfills(
    c: &Conn,
    job_id: &str,
    backfill: &BTreeMap<String, Backfill>,
) -> Result<(), StoreError> {
    for (task_id, range) in backfill {
        c.execute(
            "INSERT INTO backfills (job_id, task_id, from_value, until_value) VALUES ($1, $2, $3, $4)",
            &[&job_id, task_id, &range.from, &range.until],
        )
        .await?;
    }
    Ok(())
}

async fn backfill_of(
    c: &Conn,
    job_id: &str,
    task_id: &str,
) -> Result<Option<Backfill>, StoreError> {
    let row = c
        .query_opt(
            "SELECT from_value, until_value FROM backfills WHERE job_id = $1 AND task_id = $2",
            &[&job_id, &task_id],
        )
        .await?;
    row.map(|r| {
        Ok(Backfill {
            from: col(&r, 0)?,
            until: col(&r, 1)?,
        })
    })
    .transpose()
}

/// What a new attempt of an incremental sql task extracts: the job's backfill of the task,
/// else everything past the stored watermark of (job name, task id) as of this claim.
pub(super) async fn range(
    c: &Conn,
    job_id: &str,
    job_name: &str,
    task_id: &str,
) -> Result<ExtractRange, StoreError> {
    if let Some(backfill) = backfill_of(c, job_id, task_id).await? {
        return Ok(ExtractRange {
            after: backfill.from,
            until: Some(backfill.until),
            backfill: true,
        });
    }
    Ok(ExtractRange {
        after: watermarks::value(c, job_name, task_id).await?,
        until: None,
        backfill: false,
    })
}

/// Records what a (fenced) successful attempt extracted and, for an incremental task that is
/// not a backfill, makes its reported upper bound the stored watermark: in the transaction
/// that records the success.
pub(super) async fn record(
    c: &Conn,
    key: &AttemptKey,
    info: &ExtractInfo,
    now: Millis,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO extracts (job_id, task_id, attempt, info) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job_id, task_id) DO UPDATE SET attempt = excluded.attempt, info = excluded.info",
        &[&key.job_id, &key.task_id, &i64::from(key.attempt), &to_json(info)?],
    )
    .await?;
    let Some(value) = &info.watermark else {
        return Ok(());
    };
    let r = c
        .query_one(
            "SELECT j.name, t.spec FROM tasks t JOIN jobs j ON j.id = t.job_id
             WHERE t.job_id = $1 AND t.task_id = $2",
            &[&key.job_id, &key.task_id],
        )
        .await?;
    let job_name: String = col(&r, 0)?;
    let spec: TaskSpec = from_json(col(&r, 1)?)?;
    let Some(column) = spec.kind.incremental_column() else {
        return Ok(());
    };
    // The job's own record decides what is a backfill, whatever the agent says.
    if info.backfill || backfill_of(c, &key.job_id, &key.task_id).await?.is_some() {
        return Ok(());
    }
    watermarks::put(
        c,
        &job_name,
        &key.task_id,
        column,
        value,
        now,
        Some((&key.job_id, key.attempt)),
    )
    .await
}

/// The extracts of a job's tasks (of one task with `task_id`), by task id.
async fn of_job(
    c: &Conn,
    job_id: &str,
    task_id: Option<&str>,
) -> Result<Vec<TaskExtract>, StoreError> {
    let rows = c
        .query(
            "SELECT task_id, attempt, info FROM extracts
             WHERE job_id = $1 AND ($2::text IS NULL OR task_id = $2) ORDER BY task_id",
            &[&job_id, &task_id],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(TaskExtract {
                task_id: col(r, 0)?,
                attempt: col::<i64>(r, 1)? as u32,
                extract: from_json(col(r, 2)?)?,
            })
        })
        .collect()
}

/// `of_job` for readers: `NotFound` for an unknown job or task (the caller's snapshot).
pub(super) async fn list(
    c: &Conn,
    job_id: &str,
    task_id: Option<&str>,
) -> Result<Vec<TaskExtract>, StoreError> {
    super::outputs::known_job(c, job_id).await?;
    if let Some(task_id) = task_id {
        super::outputs::dependencies(c, job_id, task_id).await?;
    }
    of_job(c, job_id, task_id).await
}

/// The extracts of a job's tasks, by task id, for `get_job`.
pub(super) async fn by_task(
    c: &Conn,
    job_id: &str,
) -> Result<HashMap<String, ExtractInfo>, StoreError> {
    Ok(of_job(c, job_id, None)
        .await?
        .into_iter()
        .map(|e| (e.task_id, e.extract))
        .collect())
}
