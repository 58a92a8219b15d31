//! Why a job's tasks may wait, from the agents the store lists: the warnings of a submit (no
//! agent seen lately may run a task), the reason `jobs show` gives for each queued task ("no
//! agent on queue onperm", "2 agents on queue onprem, none with site=dc2", "all 3 busy"), and
//! the end of a task queued past its schedule-to-start timeout ("not started within 10m: no
//! agent on queue onperm"), which the reaper's rounds look for. A submit is accepted whatever
//! it finds.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{Engine, EngineError};
use crate::model::{AgentRecord, AgentState, JobRecord, Millis, TaskSpec, TaskState};
use crate::rules::placement::{requirements, why_waiting, Candidate, Waiting};
use crate::store::StoreError;

/// How long after its last sign of life an agent still counts, at submit, as serving its
/// queues: one restarted or briefly cut off within the hour is expected back.
pub const RECENT_MS: Millis = 3_600_000;

/// At most this many warnings are sent for one submit; the rest are counted in a last one.
const WARNINGS_MAX: usize = 20;

/// How long the agents read for a submit's warnings serve the next submits: a burst of submits
/// reads the store's agent list once a second, not once each (the warnings are advice, and
/// an agent registering on this controller clears them at once).
const AGENTS_FRESH: Duration = Duration::from_secs(1);

/// The agents last read for a submit's warnings, and when.
#[derive(Default)]
pub(crate) struct AgentsSeen(Mutex<Option<(Instant, Arc<Vec<AgentRecord>>)>>);

impl AgentsSeen {
    fn fresh(&self, now: Instant) -> Option<Arc<Vec<AgentRecord>>> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        kept.as_ref()
            .filter(|(at, _)| now.saturating_duration_since(*at) < AGENTS_FRESH)
            .map(|(_, agents)| agents.clone())
    }

    fn keep(&self, at: Instant, agents: Arc<Vec<AgentRecord>>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((at, agents));
    }

    /// Forgets what was read (an agent registered here).
    pub(crate) fn clear(&self) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// What placement needs of a task: its id, queue and requirements.
pub struct Placed {
    pub id: String,
    pub queue: String,
    pub required: BTreeMap<String, String>,
}

impl Placed {
    pub fn of(spec: &TaskSpec) -> Self {
        Placed {
            id: spec.id.clone(),
            queue: spec.queue.clone(),
            required: requirements(spec),
        }
    }
}

fn candidate(a: &AgentRecord) -> Candidate<'_> {
    Candidate {
        queues: &a.queues,
        offer: &a.labels,
        running: a.running,
        max_tasks: a.max_tasks,
    }
}

/// Warnings for the tasks that no agent alive, or seen within `RECENT_MS` of `now`, may run
/// (its queue, labels or datasource), one per task ("task extract: no agent on queue onperm").
pub fn unplaceable(tasks: &[Placed], agents: &[AgentRecord], now: Millis) -> Vec<String> {
    let recent: Vec<Candidate> = agents
        .iter()
        .filter(|a| {
            matches!(a.state, AgentState::Ready | AgentState::Draining)
                || now - a.seen_at <= RECENT_MS
        })
        .map(candidate)
        .collect();
    let mut warnings = Vec::new();
    let mut more = 0;
    for task in tasks {
        match why_waiting(&task.queue, &task.required, &recent) {
            Some(why) if why.unplaceable() => {
                if warnings.len() < WARNINGS_MAX {
                    warnings.push(format!(
                        "task {}: {why}: it waits until such an agent registers",
                        task.id
                    ));
                } else {
                    more += 1;
                }
            }
            _ => {}
        }
    }
    if more > 0 {
        warnings.push(format!("and {more} more tasks no agent may run"));
    }
    warnings
}

/// Why each queued, eligible task of `job` waits (by task id), given the agents that may take
/// work now (live and ready); a task one of them has a free slot for is not named.
pub fn waiting(job: &JobRecord, agents: &[AgentRecord], now: Millis) -> HashMap<String, String> {
    let ready: Vec<Candidate> = agents
        .iter()
        .filter(|a| a.state == AgentState::Ready)
        .map(candidate)
        .collect();
    job.tasks
        .iter()
        .filter(|t| t.state == TaskState::Queued && t.ready_at <= now)
        .filter_map(|t| {
            let why: Waiting = why_waiting(&t.spec.queue, &requirements(&t.spec), &ready)?;
            Some((t.spec.id.clone(), why.to_string()))
        })
        .collect()
}

impl Engine {
    /// The warnings of a submit of `tasks` (`unplaceable`); none if the agents cannot be read
    /// (the job is accepted already: this is advice).
    pub async fn submit_warnings(&self, tasks: &[Placed]) -> Vec<String> {
        let now = self.clock.instant();
        let agents = match self.agents_seen.fresh(now) {
            Some(agents) => agents,
            None => match self.store.list_agents().await {
                Ok(agents) => {
                    let agents = Arc::new(agents);
                    self.agents_seen.keep(now, agents.clone());
                    agents
                }
                Err(e) => {
                    tracing::warn!(error = %e, "agents not read for the submit's warnings");
                    return Vec::new();
                }
            },
        };
        unplaceable(tasks, &agents, self.clock.now_ms())
    }

    /// Why each queued task of `job` waits (`waiting`).
    pub async fn waiting(&self, job: &JobRecord) -> Result<HashMap<String, String>, EngineError> {
        if !job.tasks.iter().any(|t| t.state == TaskState::Queued) {
            return Ok(HashMap::new());
        }
        let agents = self.store.list_agents().await?;
        Ok(waiting(job, &agents, self.clock.now_ms()))
    }

    /// Fails the queued tasks past their schedule-to-start timeout, finally, each with why no
    /// agent took it (a reaper's round).
    pub async fn fail_unstarted(&self) -> Result<(), StoreError> {
        let overdue = self.store.overdue_unstarted(self.clock.now_ms()).await?;
        if overdue.is_empty() {
            return Ok(());
        }
        let agents = self.store.list_agents().await?;
        let ready: Vec<Candidate> = agents
            .iter()
            .filter(|a| a.state == AgentState::Ready)
            .map(candidate)
            .collect();
        for (job_id, spec) in overdue {
            let limit = humantime::format_duration(std::time::Duration::from_millis(
                spec.schedule_to_start_timeout_ms,
            ));
            let why = match why_waiting(&spec.queue, &requirements(&spec), &ready) {
                Some(why) => why.to_string(),
                None => "no agent took it in time".to_string(),
            };
            let reason = format!("not started within {limit}: {why}");
            let effects = self
                .store
                .fail_unstarted(&job_id, &spec.id, &reason, self.clock.now_ms())
                .await?;
            if !effects.jobs.is_empty() {
                tracing::warn!(job = %job_id, task = %spec.id, %reason, "task failed without starting");
            }
            self.publish(effects);
        }
        Ok(())
    }
}
