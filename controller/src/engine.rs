//! The engine: what the controller does, free of gRPC and SQL. It validates and accepts jobs,
//! hands work to long-polling agents, keeps agents' liveness, fences and records completions,
//! and publishes every change to the pollers, agents and watchers it concerns. All durable
//! state lives behind the `Store` trait.

mod agents;
mod backfill;
mod complete;
mod job_watch;
pub mod lease_writer;
pub mod local;
mod long_poll;
mod outputs;
pub mod pipelines;
pub mod placement;
pub mod reaper;
pub mod scheduler;
pub mod singleton;
pub mod triggers;
pub mod validate;
mod watermarks;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::artifacts::{ArtifactError, ArtifactStore, Artifacts};
use crate::clock::Clock;
use crate::model::{
    AgentRecord, AgentState, Assignment, AttemptKey, HostMetrics, JobRecord, JobState, JobSummary,
    LogChunk, Millis, NewJob, QueueStats, StopOrder, Submitted,
};
use crate::notify::{Notifier, Wakes};
use crate::store::{AgentRegistration, Cancelled, Effects, LogPage, Store, StoreError};
pub use job_watch::{JobWatch, WatchBatch};
use local::liveness::{PollView, UnknownSession};
use local::Local;

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
    #[error(transparent)]
    TooManyWatches(#[from] local::feeds::TooManyWatches),
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
    /// What time it is: for what is stored and compared in the store, and for waits.
    pub(crate) clock: Clock,
    pub(crate) store: Arc<dyn Store>,
    /// Where outputs live: the data directory, or an S3-compatible store (`with_artifacts`).
    pub(crate) outputs: Arc<dyn ArtifactStore>,
    /// The data directory's store, which the tests inspect.
    #[cfg(test)]
    pub(crate) artifacts: Arc<Artifacts>,
    /// What this controller keeps in memory (sessions seen, parked polls, watchers).
    pub(crate) local: Arc<Local>,
    /// Carries wake-ups to every controller sharing the store.
    notifier: Arc<dyn Notifier>,
    shutdown: CancellationToken,
    /// The schedule-to-start timeout of tasks that set none, in ms (0: none).
    default_start_timeout_ms: u64,
    /// The agents a submit's warnings were last computed from.
    agents_seen: placement::AgentsSeen,
}

impl Engine {
    /// Builds the engine over an open store. It remembers no agent: sessions are read from
    /// the store when first heard from.
    pub async fn new(
        config: EngineConfig,
        clock: Clock,
        store: Arc<dyn Store>,
        artifacts: Arc<Artifacts>,
        shutdown: CancellationToken,
    ) -> Result<Self, StoreError> {
        let local = Arc::new(Local::default());
        let notifier = store.notifier(local.clone(), shutdown.clone()).await?;
        Ok(Self {
            config,
            clock,
            store,
            outputs: artifacts.clone(),
            #[cfg(test)]
            artifacts,
            local,
            notifier,
            shutdown,
            default_start_timeout_ms: 0,
            agents_seen: placement::AgentsSeen::default(),
        })
    }

    /// Gives tasks that set no schedule-to-start timeout this one (`--schedule-to-start-timeout`).
    pub fn with_default_start_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.default_start_timeout_ms = timeout.map_or(0, |t| t.as_millis() as u64);
        self
    }

    /// Stops the notifier's background work (after the server stopped serving).
    pub async fn close(&self) {
        self.notifier.close().await;
    }

    /// Keeps outputs in `store` (an S3-compatible one, or the data directory given to `new`).
    pub fn with_artifacts(mut self, store: Arc<dyn ArtifactStore>) -> Self {
        self.outputs = store;
        self
    }

    /// Wakes whoever a transition concerns.
    pub(crate) fn publish(&self, effects: Effects) {
        let mut jobs = effects.jobs;
        jobs.sort_unstable();
        jobs.dedup();
        let mut agents: Vec<String> = effects.stop.into_iter().map(|p| p.agent).collect();
        agents.sort_unstable();
        agents.dedup();
        self.notifier.publish(Wakes {
            work: effects.queued,
            jobs,
            agents,
        });
    }

    /// Sends wake-ups to every controller sharing the store.
    pub(crate) fn notify(&self, wakes: Wakes) {
        self.notifier.publish(wakes);
    }

    /// Tells watchers of these jobs, on every controller, that they changed.
    pub(crate) fn jobs_changed(&self, mut jobs: Vec<String>) {
        jobs.sort_unstable();
        jobs.dedup();
        self.notifier.publish(Wakes {
            jobs,
            ..Wakes::default()
        });
    }

    /// Checks an agent's session and records a sign of life. A session this controller has
    /// not seen (the agent registered on another, or this one restarted) is looked up in the
    /// store: any controller answers any agent.
    pub(crate) async fn session(&self, who: &Identity) -> Result<PollView, EngineError> {
        if let Some(view) = self.local.liveness.touch(&who.name, &who.session) {
            return Ok(view);
        }
        let record = self.store.get_agent(&who.name).await?;
        Ok(self
            .local
            .liveness
            .adopt(record.as_ref(), &who.name, &who.session)?)
    }

    // ---- jobs ------------------------------------------------------------------------------

    #[tracing::instrument(skip_all, fields(job = %job.name))]
    pub async fn submit(&self, mut job: NewJob) -> Result<Submitted, EngineError> {
        for task in &mut job.tasks {
            if task.schedule_to_start_timeout_ms == 0 {
                task.schedule_to_start_timeout_ms = self.default_start_timeout_ms;
            }
        }
        let problems = validate::problems(&job);
        if !problems.is_empty() {
            return Err(EngineError::InvalidJob(problems));
        }
        let tasks = job.tasks.len();
        let offers = if self.local.parked.is_empty() {
            Vec::new()
        } else {
            self.local.parked.take_all()
        };
        let submitted = if offers.is_empty() {
            self.store.submit_job(job, self.clock.now_ms()).await?
        } else {
            let claims = offers.iter().map(|o| o.claim.clone()).collect();
            match self
                .store
                .submit_and_claim(job, claims, self.clock.now_ms())
                .await
            {
                // The claims reach their agents as soon as the transaction is written, while
                // the store makes it durable (see `Store::submit_and_claim`).
                Ok(written) => {
                    let deliver = async {
                        for (offer, claimed) in offers.into_iter().zip(written.early) {
                            self.answer_parked(offer, claimed.assignments).await;
                        }
                    };
                    let (submitted, ()) = tokio::join!(written.durable, deliver);
                    submitted?
                }
                Err(e) => {
                    // Nothing was claimed: the polls go back to waiting.
                    for offer in offers {
                        let _ = offer.answer(Vec::new());
                    }
                    return Err(e.into());
                }
            }
        };
        if !submitted.existing {
            tracing::info!(job_id = %submitted.job_id, tasks, "job accepted");
            self.notifier.publish(Wakes {
                work: true,
                ..Wakes::default()
            });
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
        let cancelled = self.store.cancel_job(job_id, self.clock.now_ms()).await?;
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
        self.local.watchers.subscribe(job_id)
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
    // The registration's fields as the agent sends them, each checked here.
    #[allow(clippy::too_many_arguments)]
    pub async fn register(
        &self,
        name: String,
        queues: Vec<String>,
        labels: BTreeMap<String, String>,
        max_tasks: u32,
        hostname: String,
        version: String,
        instance: String,
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
            live_after: self.clock.now_ms() - self.config.agent_timeout.as_millis() as i64,
            instance,
        };
        let effects =
            self.refused_name(self.store.register_agent(reg, self.clock.now_ms()).await)?;
        self.local
            .liveness
            .register(&name, &session, queues, labels, max_tasks);
        self.agents_seen.clear();
        tracing::info!(lost = effects.jobs.len(), "agent registered");
        self.publish(effects);
        // Another controller caching the name's earlier session drops it (this one reads the
        // new session back once).
        self.notify(Wakes {
            agents: vec![name],
            ..Wakes::default()
        });
        Ok(session)
    }

    pub async fn heartbeat(
        &self,
        who: &Identity,
        running: &[AttemptKey],
        metrics: Option<HostMetrics>,
    ) -> Result<AgentOrders, EngineError> {
        let view = self.session(who).await?;
        self.local.liveness.heartbeat(&who.name, metrics);
        let stop = if running.is_empty() {
            Vec::new()
        } else {
            self.store.stale_attempts(&who.name, running).await?
        };
        // Assignments that never reached the agent are looked for once per agent timeout
        // (only those older than it count), not on every heartbeat: a store call per
        // heartbeat would cost thousands a second with thousands of agents.
        if self.local.liveness.reconcile_due(
            &who.name,
            self.config.agent_timeout,
            self.clock.instant(),
        ) {
            let now = self.clock.now_ms();
            let started_before = now - self.config.agent_timeout.as_millis() as i64;
            let effects = self
                .store
                .reconcile_agent(&who.name, running, started_before, now)
                .await?;
            if !effects.jobs.is_empty() {
                tracing::warn!(agent = %who.name, lost = effects.jobs.len(), "attempts the agent never received are lost");
            }
            self.publish(effects);
        }
        Ok(AgentOrders {
            assignments: Vec::new(),
            stop,
            drain: view.draining,
        })
    }

    pub async fn append_logs(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        chunks: Vec<LogChunk>,
        dropped_bytes: u64,
    ) -> Result<(), EngineError> {
        self.touch_for(who, attempt).await?;
        self.store
            .append_logs(
                &who.name,
                attempt,
                chunks,
                dropped_bytes,
                self.config.log_limit,
            )
            .await?;
        self.jobs_changed(vec![attempt.job_id.clone()]);
        Ok(())
    }

    /// Like `touch`, for a call about one attempt: a session that is gone (its agent declared
    /// dead or replaced) can hold no current attempt, so the call is fenced, not merely
    /// refused, and the agent stops that process.
    pub(crate) async fn touch_for(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
    ) -> Result<PollView, EngineError> {
        self.session(who).await.map_err(|e| match e {
            EngineError::UnknownSession(e) => EngineError::Store(StoreError::Fenced {
                attempt: attempt.clone(),
                reason: e.to_string(),
            }),
            e => e,
        })
    }

    pub async fn release(
        &self,
        who: &Identity,
        attempts: &[AttemptKey],
    ) -> Result<(), EngineError> {
        self.session(who).await?;
        let effects = self
            .store
            .release_attempts(&who.name, attempts, self.clock.now_ms())
            .await?;
        tracing::info!(agent = %who.name, released = attempts.len(), "attempts handed back");
        self.publish(effects);
        Ok(())
    }

    pub async fn deregister(&self, who: &Identity) -> Result<(), EngineError> {
        self.session(who).await?;
        let effects = self
            .store
            .agent_left(&who.name, &who.session, self.clock.now_ms())
            .await?;
        self.local.liveness.remove_session(&who.name, &who.session);
        tracing::info!(agent = %who.name, "agent left (drained)");
        self.publish(effects);
        Ok(())
    }

    pub async fn drain(&self, name: &str) -> Result<(), EngineError> {
        self.store
            .set_agent_state(name, AgentState::Draining)
            .await?;
        // Whichever controller serves the agent reads its new state and wakes its poll.
        self.notifier.publish(Wakes {
            agents: vec![name.to_string()],
            ..Wakes::default()
        });
        tracing::info!(agent = %name, "agent asked to drain");
        Ok(())
    }

    pub async fn queues(&self) -> Result<Vec<QueueView>, EngineError> {
        let mut per_queue: std::collections::HashMap<String, u32> = Default::default();
        for agent in self.store.list_agents().await? {
            if !agent.state.is_gone() {
                for queue in agent.queues {
                    *per_queue.entry(queue).or_default() += 1;
                }
            }
        }
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod timing_tests;
