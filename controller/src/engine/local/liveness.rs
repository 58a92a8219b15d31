//! The sessions this controller has seen lately: a cache of the store's agent registrations
//! (session, state, queues, labels), the signs of life not yet written to the store, and a
//! wake-up for each agent's parked long-poll. Nothing here is needed for correctness: a
//! session the cache does not hold is looked up in the store (`Engine::session`), and an
//! agent's death is decided from the store by the reaper, whichever controller it runs on.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::model::{AgentRecord, AgentState, HostMetrics};
use crate::store::AgentSeen;

#[derive(Debug)]
struct LiveAgent {
    session: String,
    state: AgentState,
    queues: Vec<String>,
    labels: BTreeMap<String, String>,
    max_tasks: u32,
    /// Seen since the last batch written to the store.
    seen: bool,
    /// Metrics of a heartbeat not yet written.
    metrics: Option<HostMetrics>,
    /// The store may know better (an order or a death was announced): read it again before
    /// answering this session.
    verify: bool,
    /// When this controller last compared the agent's running attempts with the store's.
    reconciled: Option<Instant>,
    wake: Arc<Notify>,
}

/// A snapshot of what a poll needs.
#[derive(Debug, Clone)]
pub struct PollView {
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The tasks the agent registered to run at once: a poll claims no more.
    pub max_tasks: u32,
    pub draining: bool,
    pub wake: Arc<Notify>,
}

#[derive(Debug, thiserror::Error)]
#[error("agent {name} has no session {session:?} (it was declared dead, replaced or never registered); register again")]
pub struct UnknownSession {
    pub name: String,
    pub session: String,
}

#[derive(Default)]
pub struct Liveness {
    agents: Mutex<HashMap<String, LiveAgent>>,
}

impl Liveness {
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
        max_tasks: u32,
    ) {
        let live = LiveAgent {
            session: session.to_string(),
            state: AgentState::Ready,
            queues,
            labels,
            max_tasks,
            seen: false,
            metrics: None,
            verify: false,
            reconciled: None,
            wake: Arc::new(Notify::new()),
        };
        if let Some(old) = self.lock().insert(name.to_string(), live) {
            old.wake.notify_waiters();
        }
    }

    /// Records a sign of life of a cached, live session. `None` when the cache cannot answer
    /// (unknown here, another session, or to be verified): ask the store, then `adopt`.
    pub fn touch(&self, name: &str, session: &str) -> Option<PollView> {
        let mut agents = self.lock();
        let live = agents.get_mut(name)?;
        if live.session != session || live.verify || live.state == AgentState::Dead {
            return None;
        }
        live.seen = true;
        Some(view(live))
    }

    /// Takes the store's registration of `name` as the truth for `session`: cached and
    /// answered when it is that live session, else refused (and forgotten here).
    pub fn adopt(
        &self,
        record: Option<&AgentRecord>,
        name: &str,
        session: &str,
    ) -> Result<PollView, UnknownSession> {
        let mut agents = self.lock();
        match record {
            Some(r) if r.session == session && r.state != AgentState::Dead => {
                let wake = match agents.get(name) {
                    Some(old) if old.session == session => old.wake.clone(),
                    Some(old) => {
                        old.wake.notify_waiters();
                        Arc::new(Notify::new())
                    }
                    None => Arc::new(Notify::new()),
                };
                let live = LiveAgent {
                    session: session.to_string(),
                    state: r.state,
                    queues: r.queues.clone(),
                    labels: r.labels.clone(),
                    max_tasks: r.max_tasks,
                    seen: true,
                    metrics: None,
                    verify: false,
                    reconciled: agents.get(name).and_then(|l| l.reconciled),
                    wake,
                };
                let answer = view(&live);
                agents.insert(name.to_string(), live);
                Ok(answer)
            }
            _ => {
                if agents.get(name).is_some_and(|l| l.session == session) {
                    if let Some(old) = agents.remove(name) {
                        old.wake.notify_waiters();
                    }
                }
                Err(UnknownSession {
                    name: name.to_string(),
                    session: session.to_string(),
                })
            }
        }
    }

    /// Keeps a heartbeat's metrics for the next batch.
    pub fn heartbeat(&self, name: &str, metrics: Option<HostMetrics>) {
        if let Some(live) = self.lock().get_mut(name) {
            live.seen = true;
            if metrics.is_some() {
                live.metrics = metrics;
            }
        }
    }

    /// Whether the agent's running attempts are due to be compared with the store's: at most
    /// once per `every` for each agent (the first heartbeat waits one period too), `now` on
    /// the engine's monotonic clock.
    pub fn reconcile_due(&self, name: &str, every: Duration, now: Instant) -> bool {
        let mut agents = self.lock();
        let Some(live) = agents.get_mut(name) else {
            return false;
        };
        match live.reconciled {
            Some(at) if now.duration_since(at) < every => false,
            None => {
                live.reconciled = Some(now);
                false
            }
            Some(_) => {
                live.reconciled = Some(now);
                true
            }
        }
    }

    /// The store has news for this agent (a stop or drain order, its death): read it again
    /// before answering the agent, and wake its parked poll so that it does so now.
    pub fn recheck(&self, name: &str) {
        if let Some(live) = self.lock().get_mut(name) {
            live.verify = true;
            live.wake.notify_waiters();
        }
    }

    /// The signs of life seen since the last call, to be written to the store in one batch.
    pub fn take_seen(&self) -> Vec<AgentSeen> {
        let mut agents = self.lock();
        agents
            .iter_mut()
            .filter(|(_, l)| l.seen)
            .map(|(name, live)| {
                live.seen = false;
                AgentSeen {
                    name: name.clone(),
                    session: live.session.clone(),
                    metrics: live.metrics.take(),
                }
            })
            .collect()
    }

    /// Puts back signs of life whose batch could not be written.
    pub fn unwritten(&self, batch: Vec<AgentSeen>) {
        let mut agents = self.lock();
        for seen in batch {
            if let Some(live) = agents.get_mut(&seen.name) {
                if live.session == seen.session {
                    live.seen = true;
                    live.metrics = live.metrics.or(seen.metrics);
                }
            }
        }
    }

    /// Brings the cache in line with the store's registrations: sessions replaced, declared
    /// dead or forgotten are dropped (their polls woken to end), state changes taken.
    pub fn reconcile(&self, records: &[AgentRecord]) {
        let by_name: HashMap<&str, &AgentRecord> =
            records.iter().map(|r| (r.name.as_str(), r)).collect();
        let mut agents = self.lock();
        agents.retain(|name, live| match by_name.get(name.as_str()) {
            Some(r) if r.session == live.session && r.state != AgentState::Dead => {
                if r.state != live.state {
                    live.state = r.state;
                    live.wake.notify_waiters();
                }
                true
            }
            _ => {
                live.wake.notify_waiters();
                false
            }
        });
    }

    /// Forgets the agent only if `session` is still its session (it may have re-registered).
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
}

fn view(live: &LiveAgent) -> PollView {
    PollView {
        queues: live.queues.clone(),
        labels: live.labels.clone(),
        max_tasks: live.max_tasks,
        draining: live.state == AgentState::Draining,
        wake: live.wake.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str, session: &str, state: AgentState) -> AgentRecord {
        AgentRecord {
            name: name.into(),
            session: session.into(),
            state,
            queues: vec!["q".into()],
            labels: BTreeMap::new(),
            max_tasks: 1,
            hostname: "h".into(),
            version: "v".into(),
            registered_at: 0,
            seen_at: 0,
            metrics: None,
            running: 0,
        }
    }

    #[test]
    fn an_unknown_session_is_adopted_from_the_store() {
        let live = Liveness::default();
        assert!(live.touch("a", "s1").is_none());
        let r = record("a", "s1", AgentState::Ready);
        assert!(live.adopt(Some(&r), "a", "s1").is_ok());
        assert!(live.touch("a", "s1").is_some());
        assert!(live.adopt(Some(&r), "a", "s0").is_err());
        let dead = record("a", "s1", AgentState::Dead);
        assert!(live.adopt(Some(&dead), "a", "s1").is_err());
        assert!(
            live.touch("a", "s1").is_none(),
            "a refused session is forgotten"
        );
    }

    #[test]
    fn seen_sessions_are_batched_once() {
        let live = Liveness::default();
        live.register("a", "s1", vec!["q".into()], BTreeMap::new(), 1);
        live.register("b", "s2", vec!["q".into()], BTreeMap::new(), 1);
        assert!(live.touch("a", "s1").is_some());
        live.heartbeat("a", Some(HostMetrics::default()));
        let batch = live.take_seen();
        assert_eq!(batch.len(), 1);
        assert_eq!(batch[0].name, "a");
        assert!(batch[0].metrics.is_some());
        assert!(live.take_seen().is_empty());
        live.unwritten(batch);
        assert_eq!(live.take_seen().len(), 1);
    }

    #[test]
    fn a_recheck_sends_the_next_call_to_the_store() {
        let live = Liveness::default();
        live.register("a", "s1", vec!["q".into()], BTreeMap::new(), 1);
        live.recheck("a");
        assert!(live.touch("a", "s1").is_none());
        let r = record("a", "s1", AgentState::Draining);
        assert!(live.adopt(Some(&r), "a", "s1").unwrap().draining);
    }

    #[test]
    fn running_attempts_are_reconciled_once_per_period() {
        let live = Liveness::default();
        live.register("a", "s1", vec!["q".into()], BTreeMap::new(), 1);
        let every = Duration::from_secs(10);
        let t0 = Instant::now();
        assert!(
            !live.reconcile_due("a", every, t0),
            "the first heartbeat waits"
        );
        assert!(!live.reconcile_due("a", every, t0 + every - Duration::from_millis(1)));
        assert!(live.reconcile_due("a", every, t0 + every));
        assert!(!live.reconcile_due("a", every, t0 + every));
        assert!(
            !live.reconcile_due("b", every, t0 + every * 2),
            "unknown here"
        );
    }

    #[test]
    fn reconcile_drops_replaced_and_dead_sessions() {
        let live = Liveness::default();
        live.register("a", "s1", vec!["q".into()], BTreeMap::new(), 1);
        live.register("b", "s2", vec!["q".into()], BTreeMap::new(), 1);
        live.register("c", "s3", vec!["q".into()], BTreeMap::new(), 1);
        live.reconcile(&[
            record("a", "s1", AgentState::Draining),
            record("b", "other", AgentState::Ready),
            record("c", "s3", AgentState::Dead),
        ]);
        assert!(live.touch("a", "s1").unwrap().draining);
        assert!(live.touch("b", "s2").is_none());
        assert!(live.touch("c", "s3").is_none());
    }
}
