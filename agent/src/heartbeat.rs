//! Heartbeat loop and the lease watchdog that kills running tasks when the controller has been
//! out of reach for `agent_timeout` (DESIGN invariant 4), counted on the boot clock; each
//! acknowledged heartbeat renews the lease the attempts' guardians hold (invariant 7).

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use ferry_proto::v1::HeartbeatRequest;
use tokio::{sync::watch, time::MissedTickBehavior};
use tracing::{error, warn};

use crate::{
    client::{ClientError, FailureLog},
    clock::boot_now,
    guard::deadline::Window,
    metrics::Metrics,
    Agent, Session,
};

/// How often the watchdog looks at the lease; short, so that it fires right after a pause.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);

/// The agent's view of its lease: when the last acknowledged heartbeat was sent, whichever
/// controller acknowledged it (they share one store, so a move to another controller neither
/// renews nor resets the lease: only an acknowledged heartbeat does). Its end (that sending +
/// `agent_timeout`) is published to the attempts' guardians, which stop their tasks within the
/// same kill window as the watchdog ([`Window`]) even if this process cannot.
pub struct Lease {
    timeout_ns: AtomicU64,
    last_ack_ns: AtomicU64,
    kill_grace: Duration,
    end: watch::Sender<Duration>,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Lease {
    pub fn new(kill_grace: Duration) -> Self {
        Lease {
            timeout_ns: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
            kill_grace,
            end: watch::Sender::new(Duration::ZERO),
        }
    }

    /// A fresh session: registration counts as contact at `now`.
    pub fn reset(&self, timeout: Duration, now: Duration) {
        self.timeout_ns.store(nanos(timeout), Ordering::Relaxed);
        self.last_ack_ns.store(nanos(now), Ordering::Relaxed);
        self.end.send_replace(now + timeout);
    }

    /// A heartbeat sent at `sent` was acknowledged.
    pub fn ack(&self, sent: Duration) {
        let before = self.last_ack_ns.fetch_max(nanos(sent), Ordering::Relaxed);
        if nanos(sent) > before {
            let end = sent + self.timeout();
            self.end.send_if_modified(|current| {
                let later = end > *current;
                if later {
                    *current = end;
                }
                later
            });
        }
    }

    /// The controller's `agent_timeout`, once registered.
    pub fn timeout(&self) -> Duration {
        Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed))
    }

    /// The lease's end, renewed with each acknowledged heartbeat, on the boot clock.
    pub fn end(&self) -> watch::Receiver<Duration> {
        self.end.subscribe()
    }

    /// `Some(silence)` once the lease's kill window has opened (shortly before
    /// `now - last_ack` reaches `agent_timeout`): running tasks must stop.
    pub fn expired(&self, now: Duration) -> Option<Duration> {
        let timeout = self.timeout();
        let last_ack = Duration::from_nanos(self.last_ack_ns.load(Ordering::Relaxed));
        let window = Window::of_lease(last_ack + timeout, timeout, self.kill_grace);
        (!timeout.is_zero() && now >= window.term_at).then(|| now.saturating_sub(last_ack))
    }
}

/// Sends a heartbeat every `heartbeat_interval` (plus a little jitter) until the session stops.
pub(crate) async fn run(agent: Arc<Agent>, session: Session) {
    let period = agent.config.heartbeat_interval;
    let mut interval = tokio::time::interval(period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let jitter_max = (period / 20).min(Duration::from_millis(500));
    let rpc_timeout = period.max(Duration::from_secs(1));
    let mut metrics = Metrics::default();
    let mut failures = FailureLog::new("heartbeat");
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            () = session.stop.cancelled() => return,
        }
        let jitter = jitter_max.mul_f64(fastrand::f64());
        tokio::select! {
            () = tokio::time::sleep(jitter) => {}
            () = session.stop.cancelled() => return,
        }
        let req = HeartbeatRequest {
            agent: None,
            running: agent.running.snapshot(),
            metrics: Some(metrics.sample()),
            draining: agent.drain.is_cancelled(),
            given_up: agent.given_up.take(),
        };
        let given_up = req.given_up.clone();
        let sent = boot_now();
        let result = tokio::select! {
            r = agent.client.heartbeat(req, rpc_timeout) => r,
            () = session.stop.cancelled() => return,
        };
        match result {
            Ok(resp) => {
                agent.lease.ack(sent);
                failures.recovered();
                agent.apply_orders(&resp.stop, resp.drain);
            }
            Err(e @ ClientError::SessionLost(_)) => {
                session.lose(&e);
                return;
            }
            Err(e) => {
                // Said with the next heartbeat that gets through.
                agent.given_up.put_back(given_up);
                failures.failed(&e);
            }
        }
    }
}

/// Kills every running attempt once the lease has run out; they report nothing, since the
/// controller has (or soon will have) given their tasks to someone else.
pub(crate) async fn watchdog(agent: Arc<Agent>, session: Session) {
    let mut tick = tokio::time::interval(WATCHDOG_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = session.stop.cancelled() => return,
        }
        if agent.running.is_empty() {
            continue;
        }
        let Some(silence) = agent.lease.expired(boot_now()) else {
            continue;
        };
        let killed = agent.running.abort_all(false);
        agent.given_up.record(
            &killed,
            format!(
            "it lost contact with the controller for {}s, past the agent timeout (the controller \
             was unreachable or restarting), and stopped the attempt",
            silence.as_secs()
        ),
        );
        if !killed.is_empty() {
            error!(
                silent_s = silence.as_secs(),
                killed = killed.len(),
                "lost contact with controller for {}s; killed {} running tasks",
                silence.as_secs(),
                killed.len()
            );
        }
    }
}

/// Warns when the controller's timeout leaves too little room for heartbeats.
pub(crate) fn check_timeout(agent_timeout: Duration, heartbeat_interval: Duration) {
    if heartbeat_interval * 2 > agent_timeout {
        warn!(
            agent_timeout_ms = agent_timeout.as_millis() as u64,
            heartbeat_interval_ms = heartbeat_interval.as_millis() as u64,
            "heartbeat interval is more than half the controller's agent timeout; tasks may be killed for a single late heartbeat"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn lease_counts_from_send_time_of_last_ack() {
        // 15 s timeout, 100 ms kill grace: the window opens 1.1 s before the lease's end.
        let lease = Lease::new(100 * MS);
        let end = lease.end();
        lease.reset(15 * S, 100 * S);
        assert_eq!(*end.borrow(), 115 * S);
        assert_eq!(lease.expired(113 * S), None);
        assert_eq!(lease.expired(113_900 * MS), Some(13_900 * MS));
        // Sent at 110, acknowledged later: the clock restarts from the sending.
        lease.ack(110 * S);
        assert_eq!(*end.borrow(), 125 * S);
        assert_eq!(lease.expired(123 * S), None);
        assert_eq!(lease.expired(124 * S), Some(14 * S));
        // A late answer to an older heartbeat never moves the lease back.
        lease.ack(105 * S);
        assert_eq!(*end.borrow(), 125 * S);
        assert_eq!(lease.expired(123 * S), None);
    }

    #[test]
    fn the_watchdog_and_the_guardians_share_one_window() {
        let lease = Lease::new(5 * S);
        lease.reset(2 * S, 10 * S);
        let window = Window::of_lease(*lease.end().borrow(), 2 * S, 5 * S);
        assert_eq!(lease.expired(window.term_at - MS), None);
        assert!(lease.expired(window.term_at).is_some());
        assert!(window.kill_at < 12 * S, "killed before the lease ends");
    }
}
