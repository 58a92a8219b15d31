//! The jobs' counters of finished tasks, in PostgreSQL: counted now, or held back until the end
//! of a completion's transaction and counted for several jobs at once, the job rows locked
//! last; the jobs that end are ended with the `COMMIT`.

use super::super::pool::{col, Conn, Pooled};
use super::super::tx;
use crate::model::Millis;
use crate::store::StoreError;

tokio::task_local! {
    /// Job counts held back until the end of a completion's transaction (`deferring_job_counts`).
    static DEFERRED: std::cell::RefCell<Vec<(String, i64, i64)>>;
}

/// Runs `body` with the job counters' updates held back, then applies them: the job row is
/// the last lock the transaction takes, held from its update to COMMIT only. Completions of one
/// job's tasks serialise on that row; taken before the claim of the agent's next attempts, it
/// made them wait for each other's claims (tens of milliseconds under load). The jobs that end
/// are returned, for `end_jobs_and_commit`.
pub(in crate::store::postgres) async fn deferring_job_counts<R>(
    c: &Conn,
    body: impl std::future::Future<Output = Result<R, StoreError>>,
) -> Result<(R, JobEnds), StoreError> {
    let (result, deferred) = DEFERRED
        .scope(std::cell::RefCell::new(Vec::new()), async {
            let result = body.await;
            (result, DEFERRED.with(|d| d.take()))
        })
        .await;
    let result = result?;
    let ends = count_done_many(c, deferred).await?;
    Ok((result, ends))
}

/// Jobs whose last task a transaction counted, and how each ends (`rules::job_end`).
#[derive(Debug, Default)]
pub(in crate::store::postgres) struct JobEnds {
    ids: Vec<String>,
    states: Vec<&'static str>,
}

impl JobEnds {
    pub(in crate::store::postgres) fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// Ends `ends`' jobs and commits, the two sent together (one round trip). If ending them
/// fails, the `COMMIT` rolls back the aborted transaction and that failure is returned.
pub(in crate::store::postgres) async fn end_jobs_and_commit(
    conn: &mut Pooled<'_>,
    ends: &JobEnds,
    now: Millis,
) -> Result<(), StoreError> {
    let stmt = match ends.is_empty() {
        true => None,
        false => Some(conn.statement(END_JOBS).await?),
    };
    let c: &Conn = conn;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] = [&ends.ids, &ends.states, &now];
    let (ended, committed) = tokio::join!(
        async {
            match &stmt {
                Some(stmt) => c.execute_prepared(stmt, &params).await.map(Some),
                None => Ok(None),
            }
        },
        tx::commit(c),
    );
    if committed.is_ok() {
        conn.in_transaction = false;
    }
    ended?;
    committed
}

const END_JOBS: &str = "UPDATE jobs j SET state = u.state, finished_at = $3
     FROM unnest($1::text[], $2::text[]) AS u(id, state) WHERE j.id = u.id";

/// `count_done` for several jobs at once, the counts of one job summed, the job rows locked
/// in id order (two transactions counting on the same jobs take them in the same order): the
/// jobs that end, left to end at COMMIT.
async fn count_done_many(c: &Conn, counts: Vec<(String, i64, i64)>) -> Result<JobEnds, StoreError> {
    let mut summed: std::collections::BTreeMap<String, (i64, i64)> = Default::default();
    for (job_id, done, failed) in counts {
        let sum = summed.entry(job_id).or_default();
        sum.0 += done;
        sum.1 += failed;
    }
    let mut ends = JobEnds::default();
    if summed.is_empty() {
        return Ok(ends);
    }
    let ids: Vec<&str> = summed.keys().map(String::as_str).collect();
    let done: Vec<i64> = summed.values().map(|v| v.0).collect();
    let failed: Vec<i64> = summed.values().map(|v| v.1).collect();
    if ids.len() > 1 {
        c.execute(
            "SELECT 1 FROM jobs WHERE id = ANY($1) AND state IN ('pending', 'running')
             ORDER BY id FOR NO KEY UPDATE",
            &[&ids],
        )
        .await?;
    }
    let rows = c
        .query(
            "UPDATE jobs j SET tasks_done = j.tasks_done + u.done, tasks_failed = j.tasks_failed + u.failed
             FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(id, done, failed)
             WHERE j.id = u.id AND j.state IN ('pending', 'running')
             RETURNING j.id, j.tasks_total, j.tasks_done, j.tasks_failed",
            &[&ids, &done, &failed],
        )
        .await?;
    for row in &rows {
        let (total, done, failed): (i64, i64, i64) = (col(row, 1)?, col(row, 2)?, col(row, 3)?);
        if let Some(end) = crate::rules::job_end(total, done, failed) {
            ends.ids.push(col(row, 0)?);
            ends.states.push(end.as_str());
        }
    }
    Ok(ends)
}

/// Counts finished tasks on the job, now or, inside `deferring_job_counts`, at its end.
pub(in crate::store::postgres) async fn task_done(
    c: &Conn,
    job_id: &str,
    done: i64,
    failed: i64,
    now: Millis,
) -> Result<(), StoreError> {
    let held = DEFERRED.try_with(|d| d.borrow_mut().push((job_id.to_string(), done, failed)));
    if held.is_ok() {
        return Ok(());
    }
    count_done(c, job_id, done, failed, now).await
}

/// Counts finished tasks on the job and ends it when none is left (`rules::job_end` decides).
/// The job's row is the last lock a transition takes: completions of a job's tasks serialise
/// here.
async fn count_done(
    c: &Conn,
    job_id: &str,
    done: i64,
    failed: i64,
    now: Millis,
) -> Result<(), StoreError> {
    let Some(row) = c
        .query_opt(
            "UPDATE jobs SET tasks_done = tasks_done + $2, tasks_failed = tasks_failed + $3
             WHERE id = $1 AND state IN ('pending', 'running')
             RETURNING tasks_total, tasks_done, tasks_failed",
            &[&job_id, &done, &failed],
        )
        .await?
    else {
        return Ok(());
    };
    let (total, done, failed): (i64, i64, i64) = (col(&row, 0)?, col(&row, 1)?, col(&row, 2)?);
    if let Some(end) = crate::rules::job_end(total, done, failed) {
        c.execute(
            "UPDATE jobs SET state = $2, finished_at = $3 WHERE id = $1",
            &[&job_id, &end.as_str(), &now],
        )
        .await?;
    }
    Ok(())
}
