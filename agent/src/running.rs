//! Registry of the attempts this agent runs now, and the kill switches that stop them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use ferry_proto::v1::AttemptRef;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

type Key = (String, String, u32);

fn key(attempt: &AttemptRef) -> Key {
    (
        attempt.job_id.clone(),
        attempt.task_id.clone(),
        attempt.attempt,
    )
}

struct Entry {
    attempt: AttemptRef,
    kill: KillSwitch,
    /// Its process has ended; only the report is left. It no longer takes a slot.
    reporting: bool,
}

/// How a runner is told to stop its attempt. Once `abort` fires the attempt reports nothing
/// more (stop order, fencing, lost lease, drain); `force` skips the SIGTERM grace.
#[derive(Clone, Default)]
pub struct KillSwitch {
    pub abort: CancellationToken,
    pub force: CancellationToken,
}

/// Shared registry; entries leave when their [`AttemptGuard`] is dropped.
pub struct Running {
    entries: Mutex<HashMap<Key, Entry>>,
    count: watch::Sender<usize>,
    /// Woken whenever an attempt gives its slot up.
    slot_freed: Notify,
}

impl Default for Running {
    fn default() -> Self {
        Running {
            entries: Mutex::new(HashMap::new()),
            count: watch::Sender::new(0),
            slot_freed: Notify::new(),
        }
    }
}

impl Running {
    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an attempt; `None` when it is already here.
    pub fn insert(self: &Arc<Self>, attempt: AttemptRef) -> Option<(AttemptGuard, KillSwitch)> {
        let k = key(&attempt);
        let mut entries = self.lock();
        if entries.contains_key(&k) {
            return None;
        }
        let kill = KillSwitch::default();
        entries.insert(
            k.clone(),
            Entry {
                attempt,
                kill: kill.clone(),
                reporting: false,
            },
        );
        self.count.send_replace(entries.len());
        Some((
            AttemptGuard {
                running: Arc::clone(self),
                key: k,
            },
            kill,
        ))
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Attempts whose process still runs: each takes a slot.
    pub fn busy(&self) -> usize {
        self.lock().values().filter(|e| !e.reporting).count()
    }

    /// A future that completes when a slot frees up; create it before reading `busy`.
    pub fn slot_freed(&self) -> tokio::sync::futures::Notified<'_> {
        self.slot_freed.notified()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The attempts to name in polls and heartbeats.
    pub fn snapshot(&self) -> Vec<AttemptRef> {
        self.lock().values().map(|e| e.attempt.clone()).collect()
    }

    /// Stops one attempt without a report; false when it is not running here.
    pub fn abort(&self, attempt: &AttemptRef) -> bool {
        match self.lock().get(&key(attempt)) {
            Some(entry) => {
                entry.kill.abort.cancel();
                true
            }
            None => false,
        }
    }

    /// Stops every attempt without a report and returns those not already stopping.
    pub fn abort_all(&self, force: bool) -> Vec<AttemptRef> {
        let entries = self.lock();
        let mut newly = Vec::new();
        for entry in entries.values() {
            if !entry.kill.abort.is_cancelled() {
                newly.push(entry.attempt.clone());
            }
            entry.kill.abort.cancel();
            if force {
                entry.kill.force.cancel();
            }
        }
        newly
    }

    /// Waits until nothing runs, or `limit` passes; true when empty.
    pub async fn wait_empty(&self, limit: Duration) -> bool {
        let mut rx = self.count.subscribe();
        let empty = tokio::time::timeout(limit, rx.wait_for(|n| *n == 0))
            .await
            .is_ok();
        empty
    }
}

/// Held by the runner for the attempt's whole life (process and report).
pub struct AttemptGuard {
    running: Arc<Running>,
    key: Key,
}

impl AttemptGuard {
    /// Gives the attempt's slot up; true when it still held it.
    fn give_up_slot(&self) -> bool {
        match self.running.lock().get_mut(&self.key) {
            Some(entry) if !entry.reporting => {
                entry.reporting = true;
                true
            }
            _ => false,
        }
    }

    /// The attempt's process has ended and its slot is free: the poller may fill it.
    pub fn process_ended(&self) {
        if self.give_up_slot() {
            self.running.slot_freed.notify_waiters();
        }
    }

    /// The slot passes straight to an attempt the completion brought: the poller is not told.
    pub fn hand_slot_over(&self) {
        self.give_up_slot();
    }
}

impl Drop for AttemptGuard {
    fn drop(&mut self) {
        let mut entries = self.running.lock();
        let held_slot = entries.remove(&self.key).is_some_and(|e| !e.reporting);
        self.running.count.send_replace(entries.len());
        drop(entries);
        if held_slot {
            self.running.slot_freed.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(task: &str, n: u32) -> AttemptRef {
        AttemptRef {
            job_id: "j".into(),
            task_id: task.into(),
            attempt: n,
        }
    }

    #[tokio::test]
    async fn insert_abort_and_drop() {
        let running = Arc::new(Running::default());
        let (g1, k1) = running.insert(attempt("a", 1)).unwrap();
        assert!(running.insert(attempt("a", 1)).is_none());
        let (g2, k2) = running.insert(attempt("a", 2)).unwrap();
        assert_eq!(running.len(), 2);
        assert!(running.abort(&attempt("a", 1)));
        assert!(k1.abort.is_cancelled() && !k2.abort.is_cancelled());
        assert!(!running.abort(&attempt("b", 1)));
        assert_eq!(running.abort_all(true), vec![attempt("a", 2)]);
        assert!(k2.force.is_cancelled());
        assert!(!running.wait_empty(Duration::from_millis(10)).await);
        drop(g1);
        drop(g2);
        assert!(running.wait_empty(Duration::from_millis(10)).await);
    }
}
