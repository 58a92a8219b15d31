//! Attempt logs in PostgreSQL: a bounded tail per attempt (the oldest chunks dropped past the
//! limit, in one statement), read in pages by sequence number.

use super::pool::{col, Conn};
use crate::model::{AttemptKey, LogChunk};
use crate::store::{LogPage, StoreError};

/// Largest page `read` returns.
const PAGE: i64 = 256;

/// Appends chunks to a (fenced) attempt's log, keeping at most `limit` bytes: its tail.
pub(super) async fn append(
    c: &Conn,
    key: &AttemptKey,
    chunks: &[LogChunk],
    dropped_bytes: u64,
    limit: u64,
) -> Result<(), StoreError> {
    if chunks.is_empty() && dropped_bytes == 0 {
        return Ok(());
    }
    let number = i64::from(key.attempt);
    let r = c
        .query_one(
            "SELECT log_seq, log_bytes FROM attempts WHERE job_id = $1 AND task_id = $2 AND number = $3",
            &[&key.job_id, &key.task_id, &number],
        )
        .await?;
    let (mut seq, mut bytes): (i64, i64) = (col(&r, 0)?, col(&r, 1)?);
    let limit = limit as i64;
    let mut truncated = dropped_bytes > 0;
    let (mut seqs, mut stderr, mut data) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in chunks.iter().filter(|c| !c.data.is_empty()) {
        // A chunk larger than the whole limit keeps only its tail.
        let kept = if chunk.data.len() as i64 > limit {
            truncated = true;
            &chunk.data[chunk.data.len() - limit as usize..]
        } else {
            &chunk.data[..]
        };
        seq += 1;
        bytes += kept.len() as i64;
        seqs.push(seq);
        stderr.push(chunk.stderr);
        data.push(kept);
    }
    if !seqs.is_empty() {
        c.execute(
            "INSERT INTO logs (job_id, task_id, attempt, seq, stderr, data)
             SELECT $1, $2, $3, l.seq, l.stderr, l.data
             FROM unnest($4::int8[], $5::bool[], $6::bytea[]) AS l(seq, stderr, data)",
            &[&key.job_id, &key.task_id, &number, &seqs, &stderr, &data],
        )
        .await?;
    }
    if bytes > limit {
        truncated = true;
        // Drops the oldest chunks until the rest fit: those whose bytes, with every later
        // chunk's, exceed the limit.
        let dropped = c
            .query_one(
                "WITH gone AS (
                     DELETE FROM logs WHERE job_id = $1 AND task_id = $2 AND attempt = $3 AND seq IN (
                         SELECT seq FROM (
                             SELECT seq, SUM(length(data)) OVER (ORDER BY seq DESC) AS tail
                             FROM logs WHERE job_id = $1 AND task_id = $2 AND attempt = $3) s
                         WHERE tail > $4)
                     RETURNING length(data) AS size)
                 SELECT COALESCE(SUM(size), 0)::int8 FROM gone",
                &[&key.job_id, &key.task_id, &number, &limit],
            )
            .await?;
        bytes -= col::<i64>(&dropped, 0)?;
    }
    c.execute(
        "UPDATE attempts SET log_seq = $4, log_bytes = $5, log_truncated = log_truncated OR $6
         WHERE job_id = $1 AND task_id = $2 AND number = $3",
        &[&key.job_id, &key.task_id, &number, &seq, &bytes, &truncated],
    )
    .await?;
    Ok(())
}

pub(super) async fn resolve(
    c: &Conn,
    job_id: &str,
    task_id: &str,
    attempt: u32,
) -> Result<AttemptKey, StoreError> {
    let latest = c
        .query_opt(
            "SELECT attempts FROM tasks WHERE job_id = $1 AND task_id = $2",
            &[&job_id, &task_id],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("task {task_id} of job {job_id}")))?;
    let latest = col::<i64>(&latest, 0)? as u32;
    let number = if attempt == 0 { latest } else { attempt };
    if number == 0 || number > latest {
        return Err(StoreError::NotFound(if latest == 0 {
            format!("an attempt of task {task_id} (it has not started yet)")
        } else {
            format!("attempt {number} of task {task_id} (it has {latest})")
        }));
    }
    Ok(AttemptKey {
        job_id: job_id.to_string(),
        task_id: task_id.to_string(),
        attempt: number,
    })
}

/// A page of the attempt's log after `after_seq` (the caller's snapshot).
pub(super) async fn read(
    c: &Conn,
    key: &AttemptKey,
    after_seq: i64,
) -> Result<LogPage, StoreError> {
    let number = i64::from(key.attempt);
    let head = c
        .query_opt(
            "SELECT state, log_truncated FROM attempts WHERE job_id = $1 AND task_id = $2 AND number = $3",
            &[&key.job_id, &key.task_id, &number],
        )
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("attempt {key}")))?;
    let (state, truncated): (String, bool) = (col(&head, 0)?, col(&head, 1)?);
    let rows = c
        .query(
            "SELECT seq, stderr, data FROM logs WHERE job_id = $1 AND task_id = $2 AND attempt = $3 AND seq > $4
             ORDER BY seq LIMIT 256",
            &[&key.job_id, &key.task_id, &number, &after_seq],
        )
        .await?;
    let chunks = rows
        .iter()
        .map(|r| {
            Ok((
                col(r, 0)?,
                LogChunk {
                    stderr: col(r, 1)?,
                    data: col(r, 2)?,
                },
            ))
        })
        .collect::<Result<Vec<(i64, LogChunk)>, StoreError>>()?;
    let finished = state != "running" && (chunks.len() as i64) < PAGE;
    Ok(LogPage {
        chunks,
        truncated,
        finished,
    })
}
