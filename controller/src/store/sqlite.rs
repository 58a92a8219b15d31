//! The embedded SQLite store: one file under the data directory, WAL journal. All writes go
//! through one writer thread with group commit, which syncs the WAL itself (`writer`); reads
//! use read-only connections, which WAL lets run beside the writer: a small pool on the
//! blocking threads, and one on the caller's thread for point reads of a few rows.

mod agents;
mod dispatch;
mod extracts;
mod jobs;
mod logs;
mod migrate;
mod open;
mod outputs;
mod pipelines;
mod readers;
mod settings;
mod transitions;
mod triggers;
mod unstarted;
mod watermarks;
mod writer;

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::Connection;
use tokio_util::sync::CancellationToken;

use super::{
    AgentRegistration, AgentSeen, Cancelled, ClaimRequest, Claimed, Completion, Effects,
    Leadership, LogPage, Store, StoreError, Written,
};
use crate::model::{
    AgentRecord, AgentState, Assignment, AttemptKey, JobRecord, JobState, JobSummary, LogChunk,
    Millis, NewJob, Outcome, QueueStats, ResultFile, StopOrder, Submitted, TaskExtract, Watermark,
};
use crate::notify::{InProcess, Notifier, WakeSink};

pub(crate) use readers::ReadTx;
use readers::{ReaderPool, READ_NOW_MAX_ATTEMPTS, READ_NOW_MAX_TASKS};

pub struct SqliteStore {
    writer: writer::Writer,
    readers: Arc<ReaderPool>,
    /// The connection of point reads made on the caller's thread (see [`SqliteStore::read_now`]);
    /// `None` until first used.
    now: Mutex<Option<Connection>>,
}

/// Prepared statements each connection keeps. rusqlite's default (16) is fewer than the
/// writer's distinct statements, so the cache thrashed: every claim and completion parsed its
/// SQL again (`docs/decisions/0006-sqlite-group-commit.md`).
const STATEMENT_CACHE: usize = 256;

/// A database failure, kept as the error's source. SQLite busy or locked (another connection
/// held the lock past `busy_timeout`) is worth retrying; the rest is not.
pub(crate) fn backend(e: rusqlite::Error) -> StoreError {
    let retryable = matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    );
    StoreError::Backend {
        message: e.to_string(),
        retryable,
        source: Some(Box::new(e)),
    }
}

/// Executes one statement through the connection's statement cache.
pub(crate) fn exec(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<usize, StoreError> {
    conn.prepare_cached(sql)
        .and_then(|mut stmt| stmt.execute(params))
        .map_err(backend)
}

/// JSON of a value, as the TEXT columns keep it.
fn to_json<T: serde::Serialize>(value: &T) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::backend(e.to_string()))
}

/// A value read back from a TEXT column's JSON; unreadable JSON is a corrupt record.
fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::backend(format!("corrupt record: {e}")))
}

#[async_trait]
impl Store for SqliteStore {
    async fn submit_job(&self, job: NewJob, now: Millis) -> Result<Submitted, StoreError> {
        self.writer
            .write(move |conn| jobs::submit(conn, &job, now))
            .await
    }

    async fn submit_and_claim(
        &self,
        job: NewJob,
        claims: Vec<ClaimRequest>,
        now: Millis,
    ) -> Result<Written<Vec<Claimed>, Submitted>, StoreError> {
        self.writer
            .write_early(move |conn| {
                let submitted = jobs::submit(conn, &job, now)?;
                let claimed = claims
                    .iter()
                    .map(|claim| dispatch::claim(conn, claim, now))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((submitted, claimed))
            })
            .await
    }

    async fn get_job(&self, job_id: &str) -> Result<JobRecord, StoreError> {
        if let Some(read) =
            self.read_now(|conn| jobs::get_bounded(conn, job_id, READ_NOW_MAX_TASKS))
        {
            return read;
        }
        let job_id = job_id.to_string();
        self.read(move |conn| jobs::get(conn, &job_id)).await
    }

    async fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
    ) -> Result<Vec<JobSummary>, StoreError> {
        self.read(move |conn| jobs::list(conn, state, limit)).await
    }

    async fn cancel_job(&self, job_id: &str, now: Millis) -> Result<Cancelled, StoreError> {
        let job_id = job_id.to_string();
        self.writer
            .write(move |conn| jobs::cancel(conn, &job_id, now))
            .await
    }

    async fn register_agent(
        &self,
        reg: AgentRegistration,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        self.writer
            .write(move |conn| agents::register(conn, &reg, now))
            .await
    }

    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError> {
        self.read(agents::list).await
    }

    async fn get_agent(&self, name: &str) -> Result<Option<AgentRecord>, StoreError> {
        let name = name.to_string();
        self.read(move |conn| agents::get(conn, &name)).await
    }

    async fn touch_agents(&self, seen: Vec<AgentSeen>, now: Millis) -> Result<(), StoreError> {
        if seen.is_empty() {
            return Ok(());
        }
        // Liveness, relaxed like a claim: a power loss may forget the last batch, and then
        // those agents look a second less alive than they were, which is harmless.
        self.writer
            .write_with(writer::Durability::Relaxed, move |conn| {
                agents::touch(conn, &seen, now)
            })
            .await
    }

    async fn silent_agents(&self, before: Millis) -> Result<Vec<(String, String)>, StoreError> {
        self.read(move |conn| agents::silent(conn, before)).await
    }

    async fn set_agent_state(&self, name: &str, state: AgentState) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |conn| agents::set_state(conn, &name, state))
            .await
    }

    async fn agent_dead(
        &self,
        name: &str,
        session: &str,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let (name, session) = (name.to_string(), session.to_string());
        self.writer
            .write(move |conn| agents::dead(conn, &name, &session, now))
            .await
    }

    async fn agent_left(
        &self,
        name: &str,
        session: &str,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let (name, session) = (name.to_string(), session.to_string());
        self.writer
            .write(move |conn| agents::end(conn, &name, &session, AgentState::Drained, now))
            .await
    }

    async fn attempts_given_up(
        &self,
        agent: &str,
        given_up: Vec<(AttemptKey, String)>,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let agent = agent.to_string();
        self.writer
            .write(move |conn| agents::given_up(conn, &agent, &given_up, now))
            .await
    }

    async fn forget_agent(&self, name: &str) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |conn| agents::forget(conn, &name))
            .await
    }

    async fn claim(&self, req: ClaimRequest, now: Millis) -> Result<Claimed, StoreError> {
        self.writer
            .write_with(writer::Durability::Relaxed, move |conn| {
                dispatch::claim(conn, &req, now)
            })
            .await
    }

    async fn stale_attempts(
        &self,
        agent: &str,
        running: &[AttemptKey],
    ) -> Result<Vec<StopOrder>, StoreError> {
        if running.len() <= READ_NOW_MAX_ATTEMPTS {
            if let Some(read) =
                self.read_now(|conn| dispatch::stale(conn, agent, running).map(Some))
            {
                return read;
            }
        }
        let agent = agent.to_string();
        let running = running.to_vec();
        self.read(move |conn| dispatch::stale(conn, &agent, &running))
            .await
    }

    async fn reconcile_agent(
        &self,
        agent: &str,
        running: &[AttemptKey],
        started_before: Millis,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let agent = agent.to_string();
        let running = running.to_vec();
        self.writer
            .write(move |conn| dispatch::reconcile(conn, &agent, &running, started_before, now))
            .await
    }

    async fn append_logs(
        &self,
        agent: &str,
        attempt: &AttemptKey,
        chunks: Vec<LogChunk>,
        dropped_bytes: u64,
        limit: u64,
    ) -> Result<(), StoreError> {
        let agent = agent.to_string();
        let attempt = attempt.clone();
        self.writer
            .write(move |conn| {
                transitions::fence(conn, &agent, &attempt)?;
                logs::append(conn, &attempt, &chunks, dropped_bytes, limit)
            })
            .await
    }

    async fn complete(
        &self,
        c: Completion,
        claim: Option<ClaimRequest>,
        now: Millis,
    ) -> Result<(Effects, Vec<Assignment>), StoreError> {
        self.writer
            .write(move |conn| complete(conn, &c, claim.as_ref(), now))
            .await
    }

    async fn complete_early(
        &self,
        c: Completion,
        claim: Option<ClaimRequest>,
        now: Millis,
    ) -> Result<Written<Vec<Assignment>, Effects>, StoreError> {
        self.writer
            .write_early(move |conn| {
                let (mut effects, assignments) = complete(conn, &c, claim.as_ref(), now)?;
                effects
                    .jobs
                    .extend(assignments.iter().map(|a| a.attempt.job_id.clone()));
                Ok((effects, assignments))
            })
            .await
    }

    async fn check_attempt(&self, agent: &str, attempt: &AttemptKey) -> Result<(), StoreError> {
        if let Some(read) = self.read_now(|conn| transitions::fence(conn, agent, attempt).map(Some))
        {
            return read;
        }
        let agent = agent.to_string();
        let attempt = attempt.clone();
        self.read(move |conn| transitions::fence(conn, &agent, &attempt))
            .await
    }

    async fn running_attempts(
        &self,
        attempts: Vec<AttemptKey>,
    ) -> Result<Vec<AttemptKey>, StoreError> {
        self.read(move |conn| outputs::running(conn, attempts))
            .await
    }

    async fn task_dependencies(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        self.read(move |conn| outputs::dependencies(conn, &job_id, &task_id))
            .await
    }

    async fn list_outputs(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<ResultFile>, StoreError> {
        let job_id = job_id.to_string();
        let task_id = task_id.map(str::to_string);
        self.read(move |conn| outputs::list(conn, &job_id, task_id.as_deref()))
            .await
    }

    async fn list_extracts(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<TaskExtract>, StoreError> {
        let job_id = job_id.to_string();
        let task_id = task_id.map(str::to_string);
        self.read(move |conn| extracts::list(conn, &job_id, task_id.as_deref()))
            .await
    }

    async fn list_watermarks(&self, job_name: Option<&str>) -> Result<Vec<Watermark>, StoreError> {
        let job_name = job_name.map(str::to_string);
        self.read(move |conn| watermarks::list(conn, job_name.as_deref()))
            .await
    }

    async fn set_watermark(
        &self,
        job_name: &str,
        task_id: &str,
        value: &str,
        now: Millis,
    ) -> Result<Watermark, StoreError> {
        let (job_name, task_id, value) =
            (job_name.to_string(), task_id.to_string(), value.to_string());
        self.writer
            .write(move |conn| watermarks::set(conn, &job_name, &task_id, &value, now))
            .await
    }

    async fn reset_watermark(&self, job_name: &str, task_id: &str) -> Result<bool, StoreError> {
        let (job_name, task_id) = (job_name.to_string(), task_id.to_string());
        self.writer
            .write(move |conn| watermarks::reset(conn, &job_name, &task_id))
            .await
    }

    async fn job_ends(
        &self,
        job_ids: Vec<String>,
    ) -> Result<std::collections::HashMap<String, Option<Millis>>, StoreError> {
        self.read(move |conn| outputs::job_ends(conn, &job_ids))
            .await
    }

    async fn delete_outputs(&self, job_id: &str) -> Result<u64, StoreError> {
        let job_id = job_id.to_string();
        self.writer
            .write(move |conn| outputs::delete(conn, &job_id))
            .await
    }

    async fn release_attempts(
        &self,
        agent: &str,
        attempts: &[AttemptKey],
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let agent = agent.to_string();
        let attempts = attempts.to_vec();
        self.writer
            .write(move |conn| dispatch::release(conn, &agent, &attempts, now))
            .await
    }

    async fn expire_attempts(&self, now: Millis, grace_ms: i64) -> Result<Effects, StoreError> {
        self.writer
            .write(move |conn| dispatch::expire(conn, now, grace_ms))
            .await
    }

    async fn overdue_unstarted(
        &self,
        now: Millis,
    ) -> Result<Vec<(String, crate::model::TaskSpec)>, StoreError> {
        self.read(move |conn| unstarted::overdue(conn, now)).await
    }

    async fn fail_unstarted(
        &self,
        job_id: &str,
        task_id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Effects, StoreError> {
        let (job_id, task_id, reason) =
            (job_id.to_string(), task_id.to_string(), reason.to_string());
        self.writer
            .write(move |conn| unstarted::fail(conn, &job_id, &task_id, &reason, now))
            .await
    }

    async fn resolve_attempt(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
    ) -> Result<AttemptKey, StoreError> {
        let (job_id, task_id) = (job_id.to_string(), task_id.to_string());
        self.read(move |conn| logs::resolve(conn, &job_id, &task_id, attempt))
            .await
    }

    async fn read_logs(&self, attempt: &AttemptKey, after_seq: i64) -> Result<LogPage, StoreError> {
        let attempt = attempt.clone();
        self.read(move |conn| logs::read(conn, &attempt, after_seq))
            .await
    }

    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError> {
        self.read(dispatch::queue_stats).await
    }

    /// A SQLite store is owned by one controller: every role is its own, for good.
    async fn bind_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        let (key, value) = (key.to_string(), value.to_string());
        self.writer
            .write(move |conn| settings::bind(conn, &key, &value))
            .await
    }

    async fn lead(&self, _role: &str) -> Result<Option<Box<dyn Leadership>>, StoreError> {
        Ok(Some(Box::new(Owned)))
    }

    async fn notifier(
        &self,
        sink: Arc<dyn WakeSink>,
        _shutdown: CancellationToken,
    ) -> Result<Arc<dyn Notifier>, StoreError> {
        Ok(Arc::new(InProcess::new(sink)))
    }
}

/// A role of the one controller that owns the database: never lost.
struct Owned;

#[async_trait]
impl Leadership for Owned {
    async fn still_held(&mut self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;

/// One completion in the open transaction: fences the attempt, records its end and logs,
/// publishes its outputs and extract, advances the DAG and claims the agent's next attempts.
fn complete(
    conn: &Connection,
    c: &Completion,
    claim: Option<&ClaimRequest>,
    now: Millis,
) -> Result<(Effects, Vec<Assignment>), StoreError> {
    let r = &c.report;
    let key = &r.finish.attempt;
    transitions::fence(conn, &r.finish.agent, key)?;
    logs::append(conn, key, &r.logs, r.dropped_bytes, c.log_limit)?;
    if r.finish.outcome == Outcome::Succeeded {
        outputs::publish(conn, key, &r.outputs, now)?;
        if let Some(extract) = &r.extract {
            extracts::record(conn, key, extract, now)?;
        }
    }
    let effects = transitions::finish(conn, &r.finish, now)?;
    let assignments = match claim {
        Some(claim) => dispatch::claim(conn, claim, now)?.assignments,
        None => Vec::new(),
    };
    Ok((effects, assignments))
}
