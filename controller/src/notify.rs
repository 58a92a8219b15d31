//! Wake-ups between controllers: when a transition queues work, changes a job or orders an
//! agent to stop, every controller sharing the store must wake the polls, watchers and agents
//! it serves. One trait carries them; the store provides the implementation (in-process for
//! SQLite, `LISTEN`/`NOTIFY` for PostgreSQL). Wake-ups only make waiting shorter: whoever is
//! woken reads the store again, so a lost one delays work by at most `FALLBACK_PERIOD`.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// How often a notifier that can lose messages wakes everything anyway.
pub const FALLBACK_PERIOD: Duration = Duration::from_secs(1);

/// What changed, as far as waiting parties care.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Wakes {
    /// Tasks became queued: parked polls should claim again.
    pub work: bool,
    /// Jobs whose state, tasks or logs changed: their watchers should read them again.
    pub jobs: Vec<String>,
    /// Agents with a new order (stop, drain): their parked polls should answer.
    pub agents: Vec<String>,
}

impl Wakes {
    pub fn is_empty(&self) -> bool {
        !self.work && self.jobs.is_empty() && self.agents.is_empty()
    }

    /// Adds `other`'s wake-ups to these, without duplicates.
    pub fn merge(&mut self, other: Wakes) {
        self.work |= other.work;
        for job in other.jobs {
            if !self.jobs.contains(&job) {
                self.jobs.push(job);
            }
        }
        for agent in other.agents {
            if !self.agents.contains(&agent) {
                self.agents.push(agent);
            }
        }
    }
}

/// A controller's own waiting parties, woken by the notifier.
pub trait WakeSink: Send + Sync + 'static {
    fn deliver(&self, wakes: &Wakes);
    /// Wakes every poll and watcher once, for a notifier that may have lost messages.
    fn wake_all(&self);
    /// Wakes every watcher once (polls stay parked): a lost message may have changed a job,
    /// while no work is waiting.
    fn wake_watchers(&self) {
        self.wake_all();
    }
}

/// Carries wake-ups to every controller sharing the store, this one included.
#[async_trait]
pub trait Notifier: Send + Sync + 'static {
    /// Sends `wakes`; never blocks and never fails the caller (a lost wake-up only delays).
    fn publish(&self, wakes: Wakes);
    /// Stops the notifier's background work and waits for it.
    async fn close(&self);
}

/// The notifier of a store that one controller owns: wake-ups are delivered at once, in
/// process, and none is ever lost.
pub struct InProcess {
    sink: Arc<dyn WakeSink>,
}

impl InProcess {
    pub fn new(sink: Arc<dyn WakeSink>) -> Self {
        Self { sink }
    }
}

#[async_trait]
impl Notifier for InProcess {
    fn publish(&self, wakes: Wakes) {
        if !wakes.is_empty() {
            self.sink.deliver(&wakes);
        }
    }

    async fn close(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder(Mutex<Vec<Wakes>>);

    impl WakeSink for Recorder {
        fn deliver(&self, wakes: &Wakes) {
            self.0.lock().unwrap().push(wakes.clone());
        }
        fn wake_all(&self) {}
    }

    #[test]
    fn merging_keeps_each_wake_once() {
        let mut a = Wakes {
            work: false,
            jobs: vec!["j1".into()],
            agents: vec![],
        };
        a.merge(Wakes {
            work: true,
            jobs: vec!["j1".into(), "j2".into()],
            agents: vec!["a".into()],
        });
        assert!(a.work);
        assert_eq!(a.jobs, ["j1", "j2"]);
        assert_eq!(a.agents, ["a"]);
    }

    #[test]
    fn in_process_delivers_at_once_and_skips_empty_wakes() {
        let sink = Arc::new(Recorder::default());
        let notifier = InProcess::new(sink.clone());
        notifier.publish(Wakes::default());
        notifier.publish(Wakes {
            work: true,
            ..Wakes::default()
        });
        assert_eq!(sink.0.lock().unwrap().len(), 1);
    }
}
