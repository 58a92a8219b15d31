//! Attempt logs in SQLite: a bounded tail per attempt (oldest chunks dropped past the limit),
//! read in pages by sequence number.

use rusqlite::{params, Connection, OptionalExtension};

use super::backend;
use crate::model::{AttemptKey, LogChunk};
use crate::store::{LogPage, StoreError};

/// Largest page `read` returns (the literal `LIMIT 256` of its query).
const PAGE: i64 = 256;

pub(super) fn append(
    conn: &Connection,
    key: &AttemptKey,
    chunks: &[LogChunk],
    dropped_bytes: u64,
    limit: u64,
) -> Result<(), StoreError> {
    if chunks.is_empty() && dropped_bytes == 0 {
        return Ok(());
    }
    let (mut seq, mut bytes): (i64, i64) = conn
        .prepare_cached("SELECT log_seq, log_bytes FROM attempts WHERE job_id = ?1 AND task_id = ?2 AND number = ?3")
        .map_err(backend)?
        .query_row(params![key.job_id, key.task_id, key.attempt], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(backend)?;
    let limit = limit as i64;
    let mut truncated = dropped_bytes > 0;
    {
        let mut insert = conn
            .prepare_cached(
                "INSERT INTO logs (job_id, task_id, attempt, seq, stderr, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )
            .map_err(backend)?;
        for chunk in chunks.iter().filter(|c| !c.data.is_empty()) {
            // A chunk larger than the whole limit keeps only its tail.
            let data = if chunk.data.len() as i64 > limit {
                truncated = true;
                &chunk.data[chunk.data.len() - limit as usize..]
            } else {
                &chunk.data[..]
            };
            seq += 1;
            bytes += data.len() as i64;
            insert
                .execute(params![
                    key.job_id,
                    key.task_id,
                    key.attempt,
                    seq,
                    chunk.stderr,
                    data
                ])
                .map_err(backend)?;
        }
    }
    if bytes > limit {
        truncated = true;
        let mut oldest = conn
            .prepare_cached(
                "SELECT seq, length(data) FROM logs WHERE job_id = ?1 AND task_id = ?2 AND attempt = ?3 ORDER BY seq",
            )
            .map_err(backend)?;
        let mut rows = oldest
            .query(params![key.job_id, key.task_id, key.attempt])
            .map_err(backend)?;
        let mut cut_through = 0i64;
        while bytes > limit {
            let Some(r) = rows.next().map_err(backend)? else {
                break;
            };
            cut_through = r.get(0).map_err(backend)?;
            bytes -= r.get::<_, i64>(1).map_err(backend)?;
        }
        drop(rows);
        conn.prepare_cached(
            "DELETE FROM logs WHERE job_id = ?1 AND task_id = ?2 AND attempt = ?3 AND seq <= ?4",
        )
        .map_err(backend)?
        .execute(params![key.job_id, key.task_id, key.attempt, cut_through])
        .map_err(backend)?;
    }
    conn.prepare_cached(
        "UPDATE attempts SET log_seq = ?4, log_bytes = ?5, log_truncated = log_truncated OR ?6
         WHERE job_id = ?1 AND task_id = ?2 AND number = ?3",
    )
    .map_err(backend)?
    .execute(params![
        key.job_id,
        key.task_id,
        key.attempt,
        seq,
        bytes,
        truncated
    ])
    .map_err(backend)?;
    Ok(())
}

pub(super) fn resolve(
    conn: &Connection,
    job_id: &str,
    task_id: &str,
    attempt: u32,
) -> Result<AttemptKey, StoreError> {
    let latest: Option<u32> = conn
        .prepare_cached("SELECT attempts FROM tasks WHERE job_id = ?1 AND task_id = ?2")
        .map_err(backend)?
        .query_row(params![job_id, task_id], |r| r.get(0))
        .optional()
        .map_err(backend)?;
    let latest =
        latest.ok_or_else(|| StoreError::NotFound(format!("task {task_id} of job {job_id}")))?;
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

pub(super) fn read(
    conn: &Connection,
    key: &AttemptKey,
    after_seq: i64,
) -> Result<LogPage, StoreError> {
    let tx = super::ReadTx::begin(conn)?;
    let (state, truncated): (String, bool) = tx
        .prepare_cached("SELECT state, log_truncated FROM attempts WHERE job_id = ?1 AND task_id = ?2 AND number = ?3")
        .map_err(backend)?
        .query_row(
            params![key.job_id, key.task_id, key.attempt],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(backend)?
        .ok_or_else(|| StoreError::NotFound(format!("attempt {key}")))?;
    let mut stmt = tx
        .prepare_cached(
            "SELECT seq, stderr, data FROM logs WHERE job_id = ?1 AND task_id = ?2 AND attempt = ?3 AND seq > ?4
             ORDER BY seq LIMIT 256",
        )
        .map_err(backend)?;
    let rows = stmt
        .query_map(
            params![key.job_id, key.task_id, key.attempt, after_seq],
            |r| {
                Ok((
                    r.get(0)?,
                    LogChunk {
                        stderr: r.get(1)?,
                        data: r.get(2)?,
                    },
                ))
            },
        )
        .map_err(backend)?;
    let chunks: Vec<(i64, LogChunk)> = rows.collect::<Result<_, _>>().map_err(backend)?;
    let finished = state != "running" && (chunks.len() as i64) < PAGE;
    Ok(LogPage {
        chunks,
        truncated,
        finished,
    })
}
