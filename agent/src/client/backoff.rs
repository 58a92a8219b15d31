//! Retrying loops: exponential backoff with jitter, and a log that says an outage once.

use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// Exponential backoff with jitter, 100 ms doubling to a 5 s cap.
pub struct Backoff {
    next: Duration,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The next delay: uniformly in [d/2, d], where d doubles each time up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_CAP);
        let half = d / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }

    /// Sleeps the next delay; false when cancelled first.
    pub async fn sleep(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = cancel.cancelled() => false,
        }
    }
}

/// Logs a failing loop's error at warn once, then at debug while it repeats, and once more at
/// info when the loop recovers: an outage is one line, not a storm.
pub struct FailureLog {
    what: &'static str,
    last: Option<String>,
    count: u64,
    /// When a refusal was last said at warn.
    last_warned: Option<std::time::Instant>,
}

/// How often a repeated refusal is said again at warn.
pub const REFUSAL_REPEAT: Duration = Duration::from_secs(60);

impl FailureLog {
    pub fn new(what: &'static str) -> Self {
        FailureLog {
            what,
            last: None,
            count: 0,
            last_warned: None,
        }
    }

    pub fn failed(&mut self, error: &impl std::fmt::Display) {
        let text = error.to_string();
        self.count += 1;
        if self.last.as_deref() == Some(text.as_str()) {
            debug!(call = self.what, error = %text, failures = self.count, "call failed again");
        } else {
            warn!(call = self.what, error = %text, "call failed; retrying with backoff");
            self.last = Some(text);
        }
    }

    /// A refusal that retrying will not fix by itself (a taken name, a missing token): said
    /// at warn the first time and again at most once per `REFUSAL_REPEAT`, so that it is seen
    /// in any recent stretch of the log and never floods it.
    pub fn refused(&mut self, error: &impl std::fmt::Display) {
        let text = error.to_string();
        self.count += 1;
        let due = self
            .last_warned
            .is_none_or(|at| at.elapsed() >= REFUSAL_REPEAT);
        if due || self.last.as_deref() != Some(text.as_str()) {
            warn!(call = self.what, error = %text, refusals = self.count, "refused by the controller; retrying with backoff");
            self.last = Some(text);
            self.last_warned = Some(std::time::Instant::now());
        } else {
            debug!(call = self.what, error = %text, refusals = self.count, "refused again");
        }
    }

    pub fn recovered(&mut self) {
        if self.last.take().is_some() {
            info!(
                call = self.what,
                failures = self.count,
                "call succeeded again"
            );
        }
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_to_cap() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= BACKOFF_CAP);
        }
        let d = b.next_delay();
        assert!(d >= BACKOFF_CAP / 2, "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }
}
