//! What the controller knows of live agents in memory: session, queues and labels, the last
//! sign of life on the controller's own monotonic clock, host metrics, and a wake-up for the
//! agent's parked long-poll. Rebuilt from the store at start, with every agent given a full
//! `agent_timeout` to reach the new process (DESIGN.md invariant 3).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::model::{now_ms, AgentRecord, AgentState, HostMetrics, Millis};

#[derive(Debug)]
pub struct LiveAgent {
    pub session: String,
    pub state: AgentState,
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub last_seen: Instant,
    pub last_heartbeat_ms: Millis,
    pub metrics: Option<HostMetrics>,
    pub wake: Arc<Notify>,
}

/// A snapshot of what a poll needs.
#[derive(Debug, Clone)]
pub struct PollView {
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub draining: bool,
    pub wake: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
#[error("agent {name} has no session {session:?} here (it was declared dead, replaced or never registered); register again")]
pub struct UnknownSession {
    pub name: String,
    pub session: String,
}

#[derive(Default)]
pub struct Liveness {
    agents: Mutex<HashMap<String, LiveAgent>>,
}

impl Liveness {
    /// Rebuilds the table from stored registrations; every live agent counts as just seen.
    pub fn from_records(records: &[AgentRecord]) -> Self {
        let now = Instant::now();
        let agents = records
            .iter()
            .filter(|r| r.state != AgentState::Dead)
            .map(|r| {
                (
                    r.name.clone(),
                    LiveAgent {
                        session: r.session.clone(),
                        state: r.state,
                        queues: r.queues.clone(),
                        labels: r.labels.clone(),
                        last_seen: now,
                        last_heartbeat_ms: 0,
                        metrics: None,
                        wake: Arc::new(Notify::new()),
                    },
                )
            })
            .collect();
        Self {
            agents: Mutex::new(agents),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LiveAgent>> {
        self.agents.lock().expect("liveness table poisoned")
    }

    /// A new session replaces whatever the name had; a replaced poll is woken to end.
    pub fn register(
        &self,
        name: &str,
        session: &str,
        queues: Vec<String>,
        labels: BTreeMap<String, String>,
    ) {
        let live = LiveAgent {
            session: session.to_string(),
            state: AgentState::Ready,
            queues,
            labels,
            last_seen: Instant::now(),
            last_heartbeat_ms: now_ms(),
            metrics: None,
            wake: Arc::new(Notify::new()),
        };
        if let Some(old) = self.lock().insert(name.to_string(), live) {
            old.wake.notify_waiters();
        }
    }

    /// Checks the session and records a sign of life.
    pub fn touch(&self, name: &str, session: &str) -> Result<PollView, UnknownSession> {
        let mut agents = self.lock();
        match agents.get_mut(name) {
            Some(live) if live.session == session && live.state != AgentState::Dead => {
                live.last_seen = Instant::now();
                Ok(PollView {
                    queues: live.queues.clone(),
                    labels: live.labels.clone(),
                    draining: live.state == AgentState::Draining,
                    wake: live.wake.clone(),
                })
            }
            _ => Err(UnknownSession {
                name: name.to_string(),
                session: session.to_string(),
            }),
        }
    }

    pub fn heartbeat(&self, name: &str, metrics: Option<HostMetrics>) {
        if let Some(live) = self.lock().get_mut(name) {
            live.last_heartbeat_ms = now_ms();
            if metrics.is_some() {
                live.metrics = metrics;
            }
        }
    }

    pub fn is_draining(&self, name: &str) -> bool {
        self.lock()
            .get(name)
            .is_some_and(|l| l.state == AgentState::Draining)
    }

    pub fn set_state(&self, name: &str, state: AgentState) {
        if let Some(live) = self.lock().get_mut(name) {
            live.state = state;
            live.wake.notify_waiters();
        }
    }

    pub fn remove(&self, name: &str) {
        if let Some(old) = self.lock().remove(name) {
            old.wake.notify_waiters();
        }
    }

    /// Wakes the agent's parked poll so that it learns of a stop order or a freed slot.
    pub fn wake(&self, name: &str) {
        if let Some(live) = self.lock().get(name) {
            live.wake.notify_waiters();
        }
    }

    /// Agents silent for at least `timeout`, with the session that went silent.
    pub fn silent(&self, timeout: Duration) -> Vec<(String, String)> {
        let now = Instant::now();
        self.lock()
            .iter()
            .filter(|(_, l)| {
                l.state != AgentState::Dead && now.duration_since(l.last_seen) >= timeout
            })
            .map(|(n, l)| (n.clone(), l.session.clone()))
            .collect()
    }

    /// Counts every agent as just seen: after the controller itself stalled (paused, starved),
    /// silence is its own fault, not the agents' — like a restart, not a mass death.
    pub fn forgive_all(&self) {
        let now = Instant::now();
        for live in self.lock().values_mut() {
            live.last_seen = now;
        }
    }

    /// Removes the agent only if `session` is still its session (it may have re-registered).
    pub fn remove_session(&self, name: &str, session: &str) -> bool {
        let mut agents = self.lock();
        if agents.get(name).is_some_and(|l| l.session == session) {
            if let Some(old) = agents.remove(name) {
                old.wake.notify_waiters();
            }
            return true;
        }
        false
    }

    /// Last heartbeat and metrics of a live agent, for listings.
    pub fn report(&self, name: &str) -> Option<(Millis, Option<HostMetrics>)> {
        self.lock()
            .get(name)
            .map(|l| (l.last_heartbeat_ms, l.metrics))
    }

    /// How many live agents serve each queue.
    pub fn agents_per_queue(&self) -> HashMap<String, u32> {
        let mut counts = HashMap::new();
        for live in self.lock().values().filter(|l| l.state != AgentState::Dead) {
            for queue in &live.queues {
                *counts.entry(queue.clone()).or_default() += 1;
            }
        }
        counts
    }
}
