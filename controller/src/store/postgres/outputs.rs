//! Published outputs in PostgreSQL: their rows (written with a success), the inputs a claim
//! hands out, listings for readers, and what retention needs (job ends, running attempts).

use std::collections::HashMap;

use super::from_json;
use super::pool::{col, Conn};
use crate::model::{AttemptKey, Millis, OutputFile, ResultFile, TaskSpec};
use crate::store::StoreError;

/// Records a succeeded attempt's outputs, replacing whatever rows its task had.
pub(super) async fn publish(
    c: &Conn,
    key: &AttemptKey,
    outputs: &[OutputFile],
    now: Millis,
) -> Result<(), StoreError> {
    if outputs.is_empty() {
        // Most tasks publish nothing; a task succeeds once, so there is nothing to replace.
        return Ok(());
    }
    c.execute(
        "DELETE FROM outputs WHERE job_id = $1 AND task_id = $2",
        &[&key.job_id, &key.task_id],
    )
    .await?;
    // One row per name, the last declared winning (as a replacing insert would).
    let mut files: Vec<&OutputFile> = Vec::with_capacity(outputs.len());
    for file in outputs.iter().rev() {
        if !files.iter().any(|f| f.name == file.name) {
            files.push(file);
        }
    }
    let names: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let sizes: Vec<i64> = files.iter().map(|f| f.size as i64).collect();
    let hashes: Vec<&str> = files.iter().map(|f| f.sha256.as_str()).collect();
    c.execute(
        "INSERT INTO outputs (job_id, task_id, attempt, name, size, sha256, created_at)
         SELECT $1, $2, $3, o.name, o.size, o.sha256, $4
         FROM unnest($5::text[], $6::int8[], $7::text[]) AS o(name, size, sha256)",
        &[
            &key.job_id,
            &key.task_id,
            &i64::from(key.attempt),
            &now,
            &names,
            &sizes,
            &hashes,
        ],
    )
    .await?;
    Ok(())
}

fn row(r: &tokio_postgres::Row) -> Result<ResultFile, StoreError> {
    Ok(ResultFile {
        task_id: col(r, 0)?,
        attempt: col::<i64>(r, 1)? as u32,
        name: col(r, 2)?,
        size: col::<i64>(r, 3)? as u64,
        sha256: col(r, 4)?,
        created_at: col(r, 5)?,
    })
}

/// Published outputs of one task, by name.
async fn of_task(c: &Conn, job_id: &str, task_id: &str) -> Result<Vec<ResultFile>, StoreError> {
    c.query(
        "SELECT task_id, attempt, name, size, sha256, created_at FROM outputs
         WHERE job_id = $1 AND task_id = $2 ORDER BY name",
        &[&job_id, &task_id],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

/// The inputs of a task: the published outputs of its dependencies, in their order, each
/// dependency's by name (one statement).
pub(super) async fn inputs(
    c: &Conn,
    job_id: &str,
    spec: &TaskSpec,
) -> Result<Vec<ResultFile>, StoreError> {
    let mut by_task: HashMap<String, Vec<ResultFile>> = HashMap::new();
    for r in c
        .query(
            "SELECT task_id, attempt, name, size, sha256, created_at FROM outputs
             WHERE job_id = $1 AND task_id = ANY($2) ORDER BY task_id, name",
            &[&job_id, &spec.depends_on],
        )
        .await?
        .iter()
    {
        let file = row(r)?;
        by_task.entry(file.task_id.clone()).or_default().push(file);
    }
    let mut inputs = Vec::new();
    for dep in &spec.depends_on {
        inputs.extend(by_task.remove(dep).unwrap_or_default());
    }
    Ok(inputs)
}

/// `NotFound` unless the job exists.
pub(super) async fn known_job(c: &Conn, job_id: &str) -> Result<(), StoreError> {
    c.query_opt("SELECT 1 FROM jobs WHERE id = $1", &[&job_id])
        .await?
        .map(|_| ())
        .ok_or_else(|| StoreError::NotFound(format!("job {job_id}")))
}

/// Outputs of a job or of one of its tasks (the caller's snapshot).
pub(super) async fn list(
    c: &Conn,
    job_id: &str,
    task_id: Option<&str>,
) -> Result<Vec<ResultFile>, StoreError> {
    known_job(c, job_id).await?;
    if let Some(task_id) = task_id {
        dependencies(c, job_id, task_id).await?;
        return of_task(c, job_id, task_id).await;
    }
    c.query(
        "SELECT task_id, attempt, name, size, sha256, created_at FROM outputs
         WHERE job_id = $1 ORDER BY task_id, name",
        &[&job_id],
    )
    .await?
    .iter()
    .map(row)
    .collect()
}

pub(super) async fn dependencies(
    c: &Conn,
    job_id: &str,
    task_id: &str,
) -> Result<Vec<String>, StoreError> {
    let spec = c
        .query_opt(
            "SELECT spec FROM tasks WHERE job_id = $1 AND task_id = $2",
            &[&job_id, &task_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("task {task_id} of job {job_id}")))?;
    Ok(from_json::<TaskSpec>(col(&spec, 0)?)?.depends_on)
}

pub(super) async fn job_ends(
    c: &Conn,
    job_ids: &[String],
) -> Result<HashMap<String, Option<Millis>>, StoreError> {
    c.query(
        "SELECT id, finished_at FROM jobs WHERE id = ANY($1)",
        &[&job_ids],
    )
    .await?
    .iter()
    .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
    .collect()
}

pub(super) async fn delete(c: &Conn, job_id: &str) -> Result<u64, StoreError> {
    c.execute("DELETE FROM outputs WHERE job_id = $1", &[&job_id])
        .await
}

/// Of these attempts, those still running, in the order given.
pub(super) async fn running(
    c: &Conn,
    attempts: &[AttemptKey],
) -> Result<Vec<AttemptKey>, StoreError> {
    let job_ids: Vec<&str> = attempts.iter().map(|a| a.job_id.as_str()).collect();
    let task_ids: Vec<&str> = attempts.iter().map(|a| a.task_id.as_str()).collect();
    let numbers: Vec<i64> = attempts.iter().map(|a| i64::from(a.attempt)).collect();
    let rows = c
        .query(
            "SELECT k.i FROM unnest($1::text[], $2::text[], $3::int8[]) WITH ORDINALITY AS k(job_id, task_id, number, i)
             JOIN attempts a ON a.job_id = k.job_id AND a.task_id = k.task_id AND a.number = k.number
             WHERE a.state = 'running' ORDER BY k.i",
            &[&job_ids, &task_ids, &numbers],
        )
        .await?;
    rows.iter()
        .map(|r| Ok(attempts[(col::<i64>(r, 0)? - 1) as usize].clone()))
        .collect()
}
