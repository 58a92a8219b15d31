//! Heartbeat loop and the lease watchdog that kills running tasks when the controller has been
//! out of reach for `agent_timeout` (DESIGN invariant 4), counted on the boot clock.

use std::{
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use ferry_proto::v1::HeartbeatRequest;
use tokio::time::MissedTickBehavior;
use tracing::{error, warn};

use crate::{
    client::{ClientError, FailureLog},
    metrics::Metrics,
    Agent, Session,
};

/// How often the watchdog looks at the lease; short, so that it fires right after a pause.
const WATCHDOG_TICK: Duration = Duration::from_millis(250);

/// Time since boot, suspended time included, so that a paused or suspended agent sees the
/// time it was away (unlike `Instant`, which stops with the machine on Linux).
pub fn boot_now() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let clock = nix::time::ClockId::CLOCK_BOOTTIME;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let clock = nix::time::ClockId::CLOCK_MONOTONIC;
    nix::time::clock_gettime(clock)
        .map(Duration::from)
        .unwrap_or_default()
}

/// The agent's view of its lease: when the last acknowledged heartbeat was sent, whichever
/// controller acknowledged it (they share one store, so a move to another controller neither
/// renews nor resets the lease: only an acknowledged heartbeat does).
#[derive(Default)]
pub struct Lease {
    timeout_ns: AtomicU64,
    last_ack_ns: AtomicU64,
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Lease {
    /// A fresh session: registration counts as contact at `now`.
    pub fn reset(&self, timeout: Duration, now: Duration) {
        self.timeout_ns.store(nanos(timeout), Ordering::Relaxed);
        self.last_ack_ns.store(nanos(now), Ordering::Relaxed);
    }

    /// A heartbeat sent at `sent` was acknowledged.
    pub fn ack(&self, sent: Duration) {
        self.last_ack_ns.fetch_max(nanos(sent), Ordering::Relaxed);
    }

    /// `Some(silence)` once `now - last_ack >= agent_timeout`.
    pub fn expired(&self, now: Duration) -> Option<Duration> {
        let timeout = self.timeout_ns.load(Ordering::Relaxed);
        let silence = nanos(now).saturating_sub(self.last_ack_ns.load(Ordering::Relaxed));
        (timeout > 0 && silence >= timeout).then(|| Duration::from_nanos(silence))
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
        };
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
            Err(e) => failures.failed(&e),
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

    #[test]
    fn lease_counts_from_send_time_of_last_ack() {
        let lease = Lease::default();
        lease.reset(15 * S, 100 * S);
        assert_eq!(lease.expired(114 * S), None);
        assert_eq!(lease.expired(115 * S), Some(15 * S));
        // Sent at 110, acknowledged later: the clock restarts from the sending.
        lease.ack(110 * S);
        assert_eq!(lease.expired(124 * S), None);
        assert_eq!(lease.expired(125 * S), Some(15 * S));
        // A late answer to an older heartbeat never moves the lease back.
        lease.ack(105 * S);
        assert_eq!(lease.expired(124 * S), None);
    }

    #[test]
    fn boot_clock_moves_forward() {
        let a = boot_now();
        let b = boot_now();
        assert!(a > Duration::ZERO && b >= a);
    }
}
