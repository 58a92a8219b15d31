//! The `Store` boundary: every durable state transition of jobs, tasks, attempts, agents and
//! logs, in the domain's words. Backends are chosen by URL scheme; only `store/` holds SQL.
//! Each method is one transaction, acknowledged only once it is on disk.

pub(crate) mod agent_rules;
#[cfg(test)]
pub(crate) mod conformance;
pub mod pipelines;
pub mod postgres;
pub mod sqlite;
pub mod triggers;

use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;

use crate::notify::{Notifier, WakeSink};

use std::collections::HashMap;

use crate::model::{
    AgentRecord, AgentState, Assignment, AttemptKey, AttemptReport, JobRecord, JobState,
    JobSummary, LogChunk, Millis, NewJob, PlacedAttempt, QueueStats, ResultFile, StopOrder,
    Submitted, TaskExtract, Watermark,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    /// The attempt is not the task's current, running attempt (DESIGN.md invariant 1).
    #[error("attempt {attempt} is no longer current: {reason}")]
    Fenced { attempt: AttemptKey, reason: String },
    #[error("{0}")]
    Conflict(String),
    /// The thing named is not in a state that allows the call (forgetting a live agent).
    #[error("{0}")]
    Precondition(String),
    /// The request names something of the wrong kind (a watermark for a task that is not an
    /// incremental sql task).
    #[error("{0}")]
    Invalid(String),
    #[error("unsupported store url {0:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    /// The database failed. `retryable` when the same call may succeed if made again (a
    /// PostgreSQL serialization failure or deadlock, a lost connection): its outcome is then
    /// the same as if it had succeeded the first time.
    #[error("store backend: {message}")]
    Backend {
        message: String,
        retryable: bool,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },
    /// The database holds a schema newer than this controller knows.
    #[error("the store's schema is at version {found}, newer than the {known} this controller knows: upgrade the controller (or use a database of this version)")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("store is closed")]
    Closed,
}

impl StoreError {
    /// A backend failure that is not worth retrying, described by `message`.
    pub fn backend(message: impl Into<String>) -> Self {
        StoreError::Backend {
            message: message.into(),
            retryable: false,
            source: None,
        }
    }

    /// Whether the same call may succeed if made again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::Backend {
                retryable: true,
                ..
            }
        )
    }
}

/// What a write hands out as soon as its transaction is written (`early`), before the store
/// has made it durable; `durable` resolves to the rest of the answer once it is. With a
/// backend that commits durably in one step, `durable` is ready at once.
pub struct Written<E, R> {
    pub early: E,
    pub durable: Pin<Box<dyn Future<Output = Result<R, StoreError>> + Send>>,
}

impl<E, R: Send + 'static> Written<E, R> {
    /// An answer whose durable part is already known.
    pub fn ready(early: E, result: R) -> Self {
        Written {
            early,
            durable: Box::pin(std::future::ready(Ok(result))),
        }
    }
}

/// A sign of life of an agent session, as a controller saw it (heartbeats, polls, reports);
/// controllers write them in batches (`Store::touch_agents`).
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSeen {
    pub name: String,
    pub session: String,
    /// The host metrics of its latest heartbeat, if one came since the last batch.
    pub metrics: Option<crate::model::HostMetrics>,
}

/// A singleton role (the reaper, retention) held by at most one controller at a time.
#[async_trait]
pub trait Leadership: Send + Sync {
    /// True while this controller still holds the role. False once it is lost (the
    /// connection holding it broke): the holder must stop acting in the role.
    async fn still_held(&mut self) -> bool;
}

/// What a claim hands out, and when the next delayed task becomes eligible.
#[derive(Debug, Default)]
pub struct Claimed {
    pub assignments: Vec<Assignment>,
    /// Earliest `ready_at` of a queued task on the agent's queues that is not yet eligible.
    pub next_ready_at: Option<Millis>,
}

/// What an agent asks for when it claims work.
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub agent: String,
    /// The agent's session: nothing is claimed unless it is still the agent's live session.
    pub session: String,
    pub queues: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub max: u32,
}

/// A registration as the agent sends it.
#[derive(Debug, Clone)]
pub struct AgentRegistration {
    pub name: String,
    pub session: String,
    pub queues: Vec<String>,
    pub labels: std::collections::BTreeMap<String, String>,
    pub max_tasks: u32,
    pub hostname: String,
    pub version: String,
    /// The agent's own id, stable across its restarts (empty: an agent too old to send one).
    pub instance: String,
    /// A holder of the name last seen at or after this is alive: another agent (a different
    /// `instance`, or none) is refused (`Conflict`) and changes nothing.
    pub live_after: Millis,
}

/// The result of a cancel.
#[derive(Debug, Default)]
pub struct Cancelled {
    /// False when the job had already ended.
    pub cancelled: bool,
    pub state: Option<JobState>,
    /// Attempts that were running and must be killed on their agents.
    pub running: Vec<PlacedAttempt>,
}

/// A page of one attempt's logs.
#[derive(Debug, Default)]
pub struct LogPage {
    /// `(seq, chunk)` in order.
    pub chunks: Vec<(i64, LogChunk)>,
    pub truncated: bool,
    /// The attempt has ended: no more logs will come.
    pub finished: bool,
}

/// Effects of a transition that the engine must publish (wake pollers, watchers, agents).
#[derive(Debug, Default)]
pub struct Effects {
    /// Tasks became queued: wake the pollers.
    pub queued: bool,
    /// Jobs whose state or tasks changed: wake their watchers.
    pub jobs: Vec<String>,
    /// Attempts that must be stopped on their agents.
    pub stop: Vec<PlacedAttempt>,
}

/// The end of an attempt as its agent reports it, with what the transaction records beside it.
#[derive(Debug, Clone)]
pub struct Completion {
    /// With `Outcome::Succeeded`, its outputs are already verified and moved to the published
    /// area, and their rows are written in the finishing transaction (invariant 2); an sql
    /// task's extract is recorded there too, and its watermark (incremental, not a backfill)
    /// becomes the stored one. Neither is recorded with another outcome.
    pub report: AttemptReport,
    /// The bound of the attempt's stored log tail.
    pub log_limit: u64,
}

#[async_trait]
pub trait Store: pipelines::PipelineStore + triggers::TriggerStore + Send + Sync + 'static {
    /// Accepts a validated job; with an idempotency key already used, returns that job.
    async fn submit_job(&self, job: NewJob, now: Millis) -> Result<Submitted, StoreError>;
    /// Accepts a job like `submit_job` and, in the same transaction, claims work for each of
    /// `claims` in turn (polls parked waiting for work). The claims, one `Claimed` per claim,
    /// go to `claimed` as soon as the transaction is written, which may be before it is
    /// durable against a power loss (never before a crash of the process could lose it); the
    /// job's acceptance is answered once it is durable (`Written::durable`).
    async fn submit_and_claim(
        &self,
        job: NewJob,
        claims: Vec<ClaimRequest>,
        now: Millis,
    ) -> Result<Written<Vec<Claimed>, Submitted>, StoreError>;
    async fn get_job(&self, job_id: &str) -> Result<JobRecord, StoreError>;
    async fn list_jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
    ) -> Result<Vec<JobSummary>, StoreError>;
    async fn cancel_job(&self, job_id: &str, now: Millis) -> Result<Cancelled, StoreError>;

    /// Records an agent's (re)registration. Attempts of its earlier sessions are lost.
    /// `Conflict`, changing nothing, when another agent holds the name and is alive (see
    /// `AgentRegistration::live_after`); the same `instance` takes over (a restart).
    async fn register_agent(
        &self,
        reg: AgentRegistration,
        now: Millis,
    ) -> Result<Effects, StoreError>;
    async fn list_agents(&self) -> Result<Vec<AgentRecord>, StoreError>;
    /// One agent's registration (`None` when the name never registered). Any controller
    /// answers a session it never saw from this.
    async fn get_agent(&self, name: &str) -> Result<Option<AgentRecord>, StoreError>;
    /// Extends the leases of these sessions: their last sign of life becomes `now` (and their
    /// metrics, when given). A session that is no longer its agent's, or is dead, is left alone.
    async fn touch_agents(&self, seen: Vec<AgentSeen>, now: Millis) -> Result<(), StoreError>;
    /// Agents not dead whose last sign of life is before `before`, with that session.
    async fn silent_agents(&self, before: Millis) -> Result<Vec<(String, String)>, StoreError>;
    async fn set_agent_state(&self, name: &str, state: AgentState) -> Result<(), StoreError>;
    /// Declares an agent dead: its running attempts become `lost` and their tasks are queued
    /// again (counted against the retry policy).
    /// Does nothing when `session` is no longer the agent's (it registered again meanwhile).
    async fn agent_dead(
        &self,
        name: &str,
        session: &str,
        now: Millis,
    ) -> Result<Effects, StoreError>;

    /// A clean exit (Deregister): the agent is `drained`; attempts still running on it are
    /// lost. Does nothing when `session` is no longer the agent's, or it is already gone.
    async fn agent_left(
        &self,
        name: &str,
        session: &str,
        now: Millis,
    ) -> Result<Effects, StoreError>;
    /// Attempts the agent stopped by itself (its lease ran out), each with the agent's reason:
    /// those still current on it become `lost` (counted, as any loss), the reason recorded.
    async fn attempts_given_up(
        &self,
        agent: &str,
        given_up: Vec<(AttemptKey, String)>,
        now: Millis,
    ) -> Result<Effects, StoreError>;
    /// Removes a departed (drained or dead) agent's record. `NotFound` for an unknown name,
    /// `Precondition` for an agent that is ready or draining.
    async fn forget_agent(&self, name: &str) -> Result<(), StoreError>;

    /// Atomically starts new attempts of eligible queued tasks for this agent.
    async fn claim(&self, req: ClaimRequest, now: Millis) -> Result<Claimed, StoreError>;
    /// Of the attempts an agent says it runs, those it must stop, and why.
    async fn stale_attempts(
        &self,
        agent: &str,
        running: &[AttemptKey],
    ) -> Result<Vec<StopOrder>, StoreError>;
    /// Attempts the store has running on `agent`, started before `started_before`, that the
    /// agent does not list: their assignment never reached it. They become `lost`.
    async fn reconcile_agent(
        &self,
        agent: &str,
        running: &[AttemptKey],
        started_before: Millis,
        now: Millis,
    ) -> Result<Effects, StoreError>;
    /// Appends output to the current attempt, keeping at most `limit` bytes (the tail).
    async fn append_logs(
        &self,
        agent: &str,
        attempt: &AttemptKey,
        chunks: Vec<LogChunk>,
        dropped_bytes: u64,
        limit: u64,
    ) -> Result<(), StoreError>;
    /// Fences the attempt, records its end and logs, publishes its outputs (a succeeded
    /// attempt's rows replace any earlier rows of the task) and its extract (moving the
    /// watermark), advances the DAG and, with `claim`, claims the agent's next attempts: one
    /// transaction (invariant 2).
    async fn complete(
        &self,
        completion: Completion,
        claim: Option<ClaimRequest>,
        now: Millis,
    ) -> Result<(Effects, Vec<Assignment>), StoreError>;
    /// `complete`, with the attempts it claims handed out as soon as the transaction is
    /// written, before it is durable (as a submit hands its claims to parked polls), and their
    /// jobs among the effects, which `Written::durable` answers once durable.
    async fn complete_early(
        &self,
        completion: Completion,
        claim: Option<ClaimRequest>,
        now: Millis,
    ) -> Result<Written<Vec<Assignment>, Effects>, StoreError>;
    /// Fails with `Fenced` unless `attempt` is its task's current, running attempt on `agent`
    /// (a read: uploads and input fetches check it without writing).
    async fn check_attempt(&self, agent: &str, attempt: &AttemptKey) -> Result<(), StoreError>;
    /// Of these attempts, those still running.
    async fn running_attempts(
        &self,
        attempts: Vec<AttemptKey>,
    ) -> Result<Vec<AttemptKey>, StoreError>;
    /// A task's dependencies (`NotFound` for an unknown task).
    async fn task_dependencies(
        &self,
        job_id: &str,
        task_id: &str,
    ) -> Result<Vec<String>, StoreError>;
    /// Published outputs of a job, or of one of its tasks, by task then name. `NotFound` for
    /// an unknown job or task.
    async fn list_outputs(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<ResultFile>, StoreError>;
    /// Extract metadata of a job's sql tasks (or of one task) that succeeded, by task id.
    /// `NotFound` for an unknown job or task.
    async fn list_extracts(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<TaskExtract>, StoreError>;
    /// Watermarks of every job name, or of one (`NotFound` when no job has that name).
    async fn list_watermarks(&self, job_name: Option<&str>) -> Result<Vec<Watermark>, StoreError>;
    /// Sets a watermark by hand. The task must be an incremental sql task of the latest job of
    /// that name (`NotFound` / `Invalid` otherwise).
    async fn set_watermark(
        &self,
        job_name: &str,
        task_id: &str,
        value: &str,
        now: Millis,
    ) -> Result<Watermark, StoreError>;
    /// Forgets a watermark; false when there was none.
    async fn reset_watermark(&self, job_name: &str, task_id: &str) -> Result<bool, StoreError>;
    /// When each known job of `job_ids` ended (`None`: still going); unknown jobs are absent.
    async fn job_ends(
        &self,
        job_ids: Vec<String>,
    ) -> Result<HashMap<String, Option<Millis>>, StoreError>;
    /// Forgets a job's published outputs (retention); returns how many rows went.
    async fn delete_outputs(&self, job_id: &str) -> Result<u64, StoreError>;
    /// Hands attempts back from a draining agent: queued again at once, not a failure.
    async fn release_attempts(
        &self,
        agent: &str,
        attempts: &[AttemptKey],
        now: Millis,
    ) -> Result<Effects, StoreError>;
    /// Times out running attempts whose deadline passed by `grace_ms`.
    async fn expire_attempts(&self, now: Millis, grace_ms: i64) -> Result<Effects, StoreError>;
    /// Queued tasks whose schedule-to-start timeout has passed at `now`, with their job's id
    /// (at most 256, the longest waiting first).
    async fn overdue_unstarted(
        &self,
        now: Millis,
    ) -> Result<Vec<(String, crate::model::TaskSpec)>, StoreError>;
    /// Fails a task that is still queued, finally (its downstream skipped), with `reason`: why
    /// it never started. Nothing if it is no longer queued.
    async fn fail_unstarted(
        &self,
        job_id: &str,
        task_id: &str,
        reason: &str,
        now: Millis,
    ) -> Result<Effects, StoreError>;

    /// Resolves `attempt` (0 = the latest) of a task.
    async fn resolve_attempt(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
    ) -> Result<AttemptKey, StoreError>;
    async fn read_logs(&self, attempt: &AttemptKey, after_seq: i64) -> Result<LogPage, StoreError>;
    async fn queue_stats(&self) -> Result<Vec<QueueStats>, StoreError>;

    /// Stores `value` under the setting `key` unless one is there already, and returns the
    /// stored value: the first controller binds it, later ones learn it.
    async fn bind_setting(&self, key: &str, value: &str) -> Result<String, StoreError>;

    /// Takes the singleton `role` if no other controller holds it (`None` otherwise). The role
    /// is held until the returned value is dropped or its connection breaks.
    async fn lead(&self, role: &str) -> Result<Option<Box<dyn Leadership>>, StoreError>;
    /// The notifier that carries wake-ups between the controllers sharing this store,
    /// delivering to `sink` (this controller's wake-ups) until `shutdown`.
    async fn notifier(
        &self,
        sink: std::sync::Arc<dyn WakeSink>,
        shutdown: CancellationToken,
    ) -> Result<std::sync::Arc<dyn Notifier>, StoreError>;
}

/// Opens the store a URL names: `sqlite://PATH` (relative to the working directory), or
/// `postgres://` / `postgresql://` with `password` (from `--store-password-file` or
/// `PGPASSWORD`) overriding any in the URL.
pub async fn open(
    url: &str,
    password: Option<String>,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if let Some(path) = url.strip_prefix("sqlite://") {
        let store = sqlite::SqliteStore::open(std::path::Path::new(path)).await?;
        return Ok(std::sync::Arc::new(store));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let store = postgres::PostgresStore::open(url, password).await?;
        return Ok(std::sync::Arc::new(store));
    }
    Err(StoreError::UnsupportedUrl(redact_url(url)))
}

/// A store URL fit for logs and messages: without its password, whether in the user part
/// (`postgres://user:secret@host/db`) or a parameter (`?password=secret`).
pub fn redact_url(url: &str) -> String {
    let mut out = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}://{user}{}", &url[..scheme], &url[at..])
        }
        _ => url.to_string(),
    };
    if let Some(q) = out.find('?') {
        let (base, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                _ => pair.to_string(),
            })
            .collect();
        out = format!("{base}{}", query.join("&"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacted_urls_keep_the_user_and_drop_the_password() {
        assert_eq!(
            super::redact_url("postgres://ferry:s3cret@db:5432/ferry"),
            "postgres://ferry@db:5432/ferry"
        );
        assert_eq!(
            super::redact_url("postgres://ferry@db/ferry"),
            "postgres://ferry@db/ferry"
        );
        assert_eq!(super::redact_url("sqlite://x.db"), "sqlite://x.db");
    }
}
