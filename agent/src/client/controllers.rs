//! Which of its controllers the agent talks to now, and the move to the next one when that one
//! cannot be reached. A move is not a session loss: the controllers share one database, so the
//! agent keeps its session and its running attempts and carries on where it is.
//!
//! The agent starts at a random controller of its list (so that agents spread over the
//! controllers without configuration, and losing one controller moves only its share of them),
//! then follows the list's order, cycling, with the callers' usual backoff between tries.

use std::sync::atomic::{AtomicUsize, Ordering};

use tonic::{Code, Status};
use tracing::{debug, info};

use crate::config::redacted;

/// The controllers' URLs and which one is current. Shared by every clone of a `Client`.
#[derive(Debug)]
pub struct Controllers {
    urls: Vec<String>,
    /// The current controller's index, shifted left once; the low bit says whether it has
    /// answered since the agent moved to it (one word, so both change together).
    state: AtomicUsize,
}

/// Whether a failed call says its controller could not be reached (nothing answered, or the
/// connection broke), rather than that the controller answered and refused. Only the former
/// moves the agent on; "session unknown" (`NOT_FOUND`) is an answer, as is `ABORTED`.
pub fn is_unreachable(status: &Status) -> bool {
    matches!(
        status.code(),
        Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
    )
}

impl Controllers {
    /// `urls` (at least one), starting at `start` (taken modulo the list's length).
    pub fn new(urls: Vec<String>, start: usize) -> Self {
        assert!(!urls.is_empty(), "at least one controller");
        let start = start % urls.len();
        Controllers {
            urls,
            state: AtomicUsize::new(start << 1),
        }
    }

    /// `urls`, starting at a random one of them.
    pub fn random_start(urls: Vec<String>) -> Self {
        let start = fastrand::usize(..urls.len().max(1));
        Controllers::new(urls, start)
    }

    /// The index of the controller calls go to now.
    pub fn current(&self) -> usize {
        self.state.load(Ordering::Acquire) >> 1
    }

    /// The URL of controller `at`, for calls.
    pub fn url(&self, at: usize) -> &str {
        &self.urls[at]
    }

    /// The current controller's URL as logs show it (without credentials).
    pub fn current_url(&self) -> String {
        redacted(self.url(self.current())).into_owned()
    }

    pub fn len(&self) -> usize {
        self.urls.len()
    }

    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Controller `at` answered a call.
    pub fn answered(&self, at: usize) {
        let _ = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s >> 1 == at && s & 1 == 0).then_some(s | 1)
            });
    }

    /// A call to controller `at` failed with `status`: moves on when the status says `at`
    /// could not be reached. True when this call moved the agent.
    pub fn failed(&self, at: usize, status: &Status) -> bool {
        is_unreachable(status) && self.advance(at)
    }

    /// Moves from controller `from` to the next one, unless another call has moved already
    /// (every loop that was talking to `from` fails at about the same time: one move for them
    /// all). True when this call moved the agent.
    pub fn advance(&self, from: usize) -> bool {
        if self.urls.len() < 2 {
            return false;
        }
        let to = (from + 1) % self.urls.len();
        let Ok(was) = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |s| {
                (s >> 1 == from).then_some(to << 1)
            })
        else {
            return false;
        };
        let (old, new) = (redacted(&self.urls[from]), redacted(&self.urls[to]));
        if was & 1 == 1 {
            info!(from = %old, to = %new, "moved to another controller");
        } else {
            // Cycling through controllers none of which answers: the callers' own failure
            // logs say it once; a line per try would be a storm.
            debug!(from = %old, to = %new, "moved to another controller");
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Controllers {
        Controllers::new(
            vec![
                "http://a:1".into(),
                "http://b:1".into(),
                "http://c:1".into(),
            ],
            0,
        )
    }

    #[test]
    fn a_transport_failure_moves_on_and_cycles() {
        let c = three();
        assert_eq!(c.current(), 0);
        assert!(c.failed(0, &Status::unavailable("tcp connect error")));
        assert_eq!(c.current(), 1);
        assert!(c.failed(1, &Status::deadline_exceeded("timeout")));
        assert!(c.failed(2, &Status::unknown("transport error")));
        assert_eq!(c.current(), 0, "cycles back to the first");
        assert_eq!(c.url(c.current()), "http://a:1");
    }

    #[test]
    fn an_answer_does_not_move() {
        let c = three();
        for status in [
            Status::not_found("session unknown"),
            Status::aborted("attempt fenced"),
            Status::invalid_argument("bad"),
            Status::failed_precondition("output missing"),
            Status::resource_exhausted("over the limit"),
            Status::permission_denied("bad token"),
        ] {
            assert!(!c.failed(0, &status), "{status:?}");
            assert_eq!(c.current(), 0, "{status:?}");
        }
    }

    #[test]
    fn loops_failing_together_move_once() {
        let c = three();
        c.answered(0);
        assert!(c.advance(0));
        // The heartbeat's call to `a` failed too, after the poller's moved the agent.
        assert!(!c.failed(0, &Status::unavailable("connection refused")));
        assert_eq!(c.current(), 1);
    }

    #[test]
    fn one_controller_never_moves() {
        let c = Controllers::new(vec!["http://lb:7070".into()], 5);
        assert_eq!(c.current(), 0);
        assert!(!c.failed(0, &Status::unavailable("down")));
        assert_eq!(c.current(), 0);
    }

    #[test]
    fn answered_marks_only_the_current_controller() {
        let c = three();
        c.answered(2);
        assert_eq!(c.state.load(Ordering::Relaxed) & 1, 0);
        c.answered(0);
        assert_eq!(c.state.load(Ordering::Relaxed) & 1, 1);
        assert!(c.advance(0));
        assert_eq!(
            c.state.load(Ordering::Relaxed) & 1,
            0,
            "not yet heard from b"
        );
        let start = Controllers::random_start(vec!["http://a:1".into(), "http://b:1".into()]);
        assert!(start.current() < 2);
    }
}
