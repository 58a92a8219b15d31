//! The engine: what the controller does, free of gRPC and SQL. It validates and accepts jobs,
//! hands work to long-polling agents, keeps agents' liveness, fences and records completions,
//! and publishes every change to the pollers, agents and watchers it concerns. All durable
//! state lives behind the `Store` trait.

mod complete;
pub mod liveness;
mod long_poll;
mod outputs;
mod parked;
pub mod reaper;
pub mod retry;
pub mod validate;
pub mod watchers;
mod watermarks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::artifacts::{ArtifactError, Artifacts, ObjectArtifacts};
use crate::model::{
    now_ms, AgentRecord, AgentState, Assignment, AttemptKey, HostMetrics, JobRecord, JobState,
    JobSummary, LogChunk, Millis, NewJob, QueueStats, StopOrder, Submitted,
};
use crate::store::{AgentRegistration, Cancelled, Effects, LogPage, Store, StoreError};
use liveness::{Liveness, UnknownSession};
use parked::ParkedPolls;
use watchers::Watchers;

/// Settings the engine runs by.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Silent longer than this, an agent is dead.
    pub agent_timeout: Duration,
    /// Bytes of output kept per attempt (the tail).
    pub log_limit: u64,
    /// How long past its deadline an unreported attempt runs before the controller times it out.
    pub timeout_grace: Duration,
    /// Longest a poll may park.
    pub max_poll_wait: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("invalid job: {}", .0.join("; "))]
    InvalidJob(Vec<String>),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error(transparent)]
    UnknownSession(#[from] UnknownSession),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Artifact(#[from] ArtifactError),
}

/// An agent's identity on every call after `Register`.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub session: String,
}

/// What a poll or heartbeat answers.
#[derive(Debug, Default)]
pub struct AgentOrders {
    pub assignments: Vec<Assignment>,
    pub stop: Vec<StopOrder>,
    pub drain: bool,
}

/// An agent as `agents list` shows it.
#[derive(Debug, Clone)]
pub struct AgentView {
    pub record: AgentRecord,
    pub last_heartbeat_ms: Millis,
    pub metrics: Option<HostMetrics>,
}

/// A queue as `queues list` shows it.
#[derive(Debug, Clone)]
pub struct QueueView {
    pub stats: QueueStats,
    pub agents: u32,
}

pub struct Engine {
    pub(crate) config: EngineConfig,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) liveness: Liveness,
    pub(crate) artifacts: Arc<Artifacts>,
    /// The S3-compatible store, when artifacts live there rather than in `artifacts`.
    pub(crate) objects: Option<Arc<ObjectArtifacts>>,
    watchers: Watchers,
    /// Woken whenever tasks become queued.
    work: Notify,
    /// Polls parked for work, which a submit serves in its own transaction.
    parked: ParkedPolls,
    shutdown: CancellationToken,
}

impl Engine {
    /// Builds the engine over an open store, restoring the agents it knew.
    pub async fn new(
        config: EngineConfig,
        store: Arc<dyn Store>,
        artifacts: Arc<Artifacts>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let agents = store.list_agents().await?;
        Ok(Self {
            config,
            liveness: Liveness::from_records(&agents),
            store,
            artifacts,
            objects: None,
            watchers: Watchers::default(),
            work: Notify::new(),
            parked: ParkedPolls::default(),
            shutdown,
        })
    }

    /// Keeps artifacts in an S3-compatible store instead of the data directory.
    pub fn with_objects(mut self, objects: Arc<ObjectArtifacts>) -> Self {
        self.objects = Some(objects);
        self
    }

    /// Wakes whoever a transition concerns.
    pub(crate) fn publish(&self, effects: Effects) {
        if effects.queued {
            self.work.notify_waiters();
        }
        let mut jobs = effects.jobs;
        jobs.sort_unstable();
        jobs.dedup();
        for job in &jobs {
            self.watchers.changed(job);
        }
        for placed in &effects.stop {
            self.liveness.wake(&placed.agent);
        }
    }

    // ---- jobs ------------------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(job = %job.name))]
    pub async fn submit(&self, job: NewJob) -> Result<Submitted, EngineError> {
        let problems = validate::problems(&job);
        if !problems.is_empty() {
            return Err(EngineError::InvalidJob(problems));
        }
        let tasks = job.tasks.len();
        let offers = if self.parked.is_empty() {
            Vec::new()
        } else {
            self.parked.take_all()
        };
        let submitted = if offers.is_empty() {
            self.store.submit_job(job, now_ms()).await?
        } else {
            let claims = offers.iter().map(|o| o.claim.clone()).collect();
            let (written, claimed) = tokio::sync::oneshot::channel();
            let submit = self.store.submit_and_claim(job, claims, now_ms(), written);
            // The claims reach their agents as soon as the transaction is written, while the
            // store makes it durable (see `Store::submit_and_claim`).
            let deliver = async {
                match claimed.await {
                    Ok(claimed) => {
                        for (offer, claimed) in offers.into_iter().zip(claimed) {
                            self.answer_parked(offer, claimed.assignments).await;
                        }
                    }
                    // Nothing was claimed: the polls go back to waiting.
                    Err(_) => {
                        for offer in offers {
                            let _ = offer.answer(Vec::new());
                        }
                    }
                }
            };
            let (submitted, ()) = tokio::join!(submit, deliver);
            submitted?
        };
        if !submitted.existing {
            tracing::info!(job_id = %submitted.job_id, tasks, "job accepted");
            self.work.notify_waiters();
        }
        Ok(submitted)
    }

    pub async fn job(&self, job_id: &str) -> Result<JobRecord, EngineError> {
        Ok(self.store.get_job(job_id).await?)
    }

    pub async fn jobs(
        &self,
        state: Option<JobState>,
        limit: u32,
    ) -> Result<Vec<JobSummary>, EngineError> {
        Ok(self.store.list_jobs(state, limit).await?)
    }

    #[tracing::instrument(skip(self))]
    pub async fn cancel(&self, job_id: &str) -> Result<Cancelled, EngineError> {
        let cancelled = self.store.cancel_job(job_id, now_ms()).await?;
        if cancelled.cancelled {
            tracing::info!(running = cancelled.running.len(), "job cancelled");
            self.publish(Effects {
                queued: false,
                jobs: vec![job_id.to_string()],
                stop: cancelled.running.clone(),
            });
        }
        Ok(cancelled)
    }

    /// A receiver that changes whenever the job does.
    pub fn watch(&self, job_id: &str) -> watch::Receiver<u64> {
        self.watchers.subscribe(job_id)
    }

    pub async fn resolve_attempt(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
    ) -> Result<AttemptKey, EngineError> {
        Ok(self.store.resolve_attempt(job_id, task_id, attempt).await?)
    }

    pub async fn read_logs(
        &self,
        attempt: &AttemptKey,
        after_seq: i64,
    ) -> Result<LogPage, EngineError> {
        Ok(self.store.read_logs(attempt, after_seq).await?)
    }

    // ---- agents ----------------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(agent = %name))]
    pub async fn register(
        &self,
        name: String,
        queues: Vec<String>,
        labels: BTreeMap<String, String>,
        max_tasks: u32,
        hostname: String,
        version: String,
    ) -> Result<String, EngineError> {
        if name.is_empty() {
            return Err(EngineError::InvalidArgument("agent name is empty".into()));
        }
        if queues.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "agent {name} serves no queue"
            )));
        }
        let session = uuid::Uuid::now_v7().simple().to_string();
        let reg = AgentRegistration {
            name: name.clone(),
            session: session.clone(),
            queues: queues.clone(),
            labels: labels.clone(),
            max_tasks,
            hostname,
            version,
        };
        let effects = self.store.register_agent(reg, now_ms()).await?;
        self.liveness.register(&name, &session, queues, labels);
        tracing::info!(lost = effects.jobs.len(), "agent registered");
        self.publish(effects);
        Ok(session)
    }

    pub async fn heartbeat(
        &self,
        who: &Identity,
        running: &[AttemptKey],
        metrics: Option<HostMetrics>,
    ) -> Result<AgentOrders, EngineError> {
        self.liveness.touch(&who.name, &who.session)?;
        self.liveness.heartbeat(&who.name, metrics);
        let stop = if running.is_empty() {
            Vec::new()
        } else {
            self.store.stale_attempts(&who.name, running).await?
        };
        let started_before = now_ms() - self.config.agent_timeout.as_millis() as i64;
        let effects = self
            .store
            .reconcile_agent(&who.name, running, started_before, now_ms())
            .await?;
        if !effects.jobs.is_empty() {
            tracing::warn!(agent = %who.name, lost = effects.jobs.len(), "attempts the agent never received are lost");
        }
        self.publish(effects);
        Ok(AgentOrders {
            assignments: Vec::new(),
            stop,
            drain: self.liveness.is_draining(&who.name),
        })
    }

    pub async fn append_logs(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        chunks: Vec<LogChunk>,
        dropped_bytes: u64,
    ) -> Result<(), EngineError> {
        self.touch_for(who, attempt)?;
        self.store
            .append_logs(
                &who.name,
                attempt,
                chunks,
                dropped_bytes,
                self.config.log_limit,
            )
            .await?;
        self.watchers.changed(&attempt.job_id);
        Ok(())
    }

    /// Like `touch`, for a call about one attempt: a session that is gone (its agent declared
    /// dead or replaced) can hold no current attempt, so the call is fenced, not merely
    /// refused, and the agent stops that process.
    pub(crate) fn touch_for(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
    ) -> Result<(), EngineError> {
        self.liveness
            .touch(&who.name, &who.session)
            .map(drop)
            .map_err(|e| {
                EngineError::Store(StoreError::Fenced {
                    attempt: attempt.clone(),
                    reason: e.to_string(),
                })
            })
    }

    pub async fn release(
        &self,
        who: &Identity,
        attempts: &[AttemptKey],
    ) -> Result<(), EngineError> {
        self.liveness.touch(&who.name, &who.session)?;
        let effects = self
            .store
            .release_attempts(&who.name, attempts, now_ms())
            .await?;
        tracing::info!(agent = %who.name, released = attempts.len(), "attempts handed back");
        self.publish(effects);
        Ok(())
    }

    pub async fn deregister(&self, who: &Identity) -> Result<(), EngineError> {
        self.liveness.touch(&who.name, &who.session)?;
        let effects = self
            .store
            .agent_dead(&who.name, &who.session, now_ms())
            .await?;
        self.liveness.remove_session(&who.name, &who.session);
        tracing::info!(agent = %who.name, "agent left");
        self.publish(effects);
        Ok(())
    }

    pub async fn drain(&self, name: &str) -> Result<(), EngineError> {
        self.store
            .set_agent_state(name, AgentState::Draining)
            .await?;
        self.liveness.set_state(name, AgentState::Draining);
        tracing::info!(agent = %name, "agent asked to drain");
        Ok(())
    }

    pub async fn agents(&self) -> Result<Vec<AgentView>, EngineError> {
        let records = self.store.list_agents().await?;
        Ok(records
            .into_iter()
            .map(|record| {
                let (last_heartbeat_ms, metrics) =
                    self.liveness.report(&record.name).unwrap_or((0, None));
                AgentView {
                    record,
                    last_heartbeat_ms,
                    metrics,
                }
            })
            .collect())
    }

    pub async fn queues(&self) -> Result<Vec<QueueView>, EngineError> {
        let mut per_queue = self.liveness.agents_per_queue();
        let mut views: Vec<QueueView> = self
            .store
            .queue_stats()
            .await?
            .into_iter()
            .map(|stats| QueueView {
                agents: per_queue.remove(&stats.name).unwrap_or(0),
                stats,
            })
            .collect();
        for (name, agents) in per_queue {
            views.push(QueueView {
                stats: QueueStats {
                    name,
                    queued: 0,
                    running: 0,
                },
                agents,
            });
        }
        views.sort_by(|a, b| a.stats.name.cmp(&b.stats.name));
        Ok(views)
    }
}
