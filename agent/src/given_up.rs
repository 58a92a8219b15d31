//! The attempts this agent stopped by itself (its lease ran out while no controller answered),
//! kept with the reason until a heartbeat tells the controller, which records that reason —
//! the true one — rather than guessing why the attempt is gone.

use std::sync::Mutex;

use ferry_proto::v1::{AttemptRef, GivenUp};

/// At most this many are kept (the oldest dropped): a heartbeat carries no more.
const MAX_KEPT: usize = 1024;

#[derive(Default)]
pub struct GivenUpLog {
    pending: Mutex<Vec<GivenUp>>,
}

impl GivenUpLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<GivenUp>> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Keeps `attempts`, stopped for `reason`.
    pub fn record(&self, attempts: &[AttemptRef], reason: String) {
        let mut pending = self.lock();
        pending.extend(attempts.iter().map(|a| GivenUp {
            attempt: Some(a.clone()),
            reason: reason.clone(),
        }));
        let excess = pending.len().saturating_sub(MAX_KEPT);
        pending.drain(..excess);
    }

    /// Everything kept, for a heartbeat.
    pub fn take(&self) -> Vec<GivenUp> {
        std::mem::take(&mut *self.lock())
    }

    /// What a heartbeat that did not get through carried, kept for the next.
    pub fn put_back(&self, given_up: Vec<GivenUp>) {
        if given_up.is_empty() {
            return;
        }
        let mut pending = self.lock();
        let newer = std::mem::replace(&mut *pending, given_up);
        pending.extend(newer);
        let excess = pending.len().saturating_sub(MAX_KEPT);
        pending.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt(n: u32) -> AttemptRef {
        AttemptRef {
            job_id: "j".into(),
            task_id: "t".into(),
            attempt: n,
        }
    }

    #[test]
    fn kept_until_sent_and_put_back_when_not() {
        let log = GivenUpLog::default();
        log.record(&[attempt(1)], "why".into());
        let sent = log.take();
        assert_eq!(sent.len(), 1);
        assert!(log.take().is_empty(), "taken once");
        log.record(&[attempt(2)], "later".into());
        log.put_back(sent);
        let again = log.take();
        let numbers: Vec<u32> = again
            .iter()
            .map(|g| g.attempt.as_ref().unwrap().attempt)
            .collect();
        assert_eq!(numbers, [1, 2], "oldest first");
    }
}
