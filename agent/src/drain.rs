//! Shutdown and drain: signals become a drain (second signal: stop at once); a drain stops new
//! work, lets running attempts finish up to `drain_timeout`, releases the rest, deregisters.

use std::{io, time::Duration};

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{Agent, Session};

/// Time allowed to `Release` and `Deregister` when leaving.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(5);

/// The outside world's requests to stop: `drain` first, `force` for "now".
#[derive(Clone, Default)]
pub struct Shutdown {
    pub drain: CancellationToken,
    pub force: CancellationToken,
}

impl Shutdown {
    /// Turns SIGTERM/SIGINT into a drain, and a second one into `force`. Returns only if the
    /// handlers cannot be installed.
    pub async fn on_signals(&self) -> io::Error {
        let (mut term, mut int) = match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => (term, int),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if !self.drain.is_cancelled() {
                info!(
                    signal = name,
                    "draining: finishing running tasks (signal again to stop at once)"
                );
                self.drain.cancel();
            } else {
                warn!(
                    signal = name,
                    "second signal: killing running tasks and exiting"
                );
                self.force.cancel();
            }
        }
    }
}

/// Runs a drain to its end: afterwards nothing runs and the session is closed.
pub(crate) async fn drain(agent: &Agent, session: &Session, force: &CancellationToken) {
    let timeout = agent.config.drain_timeout;
    info!(
        running = agent.running.len(),
        drain_timeout_s = timeout.as_secs_f64(),
        "draining: taking no new work"
    );
    // Said at once, so that `agents list` shows `draining` (later heartbeats say it too).
    let said = agent.client.heartbeat(
        ferry_proto::v1::HeartbeatRequest {
            agent: None,
            running: agent.running.snapshot(),
            metrics: None,
            draining: true,
            given_up: Vec::new(),
        },
        GOODBYE_TIMEOUT,
    );
    tokio::select! {
        result = said => if let Err(e) = result {
            tracing::debug!(error = %e, "could not tell the controller this agent drains");
        },
        () = force.cancelled() => {}
    }
    let finished = tokio::select! {
        done = agent.running.wait_empty(timeout) => done,
        () = force.cancelled() => false,
        () = session.lost.cancelled() => false,
    };
    if !finished {
        let now = force.is_cancelled();
        let leftover = agent.running.abort_all(now);
        warn!(
            killed = leftover.len(),
            "drain cut short; killing running tasks and handing them back"
        );
        let limit = if now {
            Duration::from_secs(2)
        } else {
            agent.config.kill_grace + Duration::from_secs(2)
        };
        tokio::select! {
            _ = agent.running.wait_empty(limit) => {}
            () = force.cancelled() => {
                agent.running.abort_all(true);
                agent.running.wait_empty(Duration::from_secs(2)).await;
            }
        }
        if !leftover.is_empty() && !session.lost.is_cancelled() {
            match tokio::time::timeout(GOODBYE_TIMEOUT, agent.client.release(leftover)).await {
                Ok(Ok(())) => info!("released unfinished tasks"),
                Ok(Err(e)) => {
                    warn!(error = %e, "could not release unfinished tasks; the controller will reclaim them")
                }
                Err(_) => {
                    warn!("releasing unfinished tasks timed out; the controller will reclaim them")
                }
            }
        }
    }
    session.stop.cancel();
    if !session.lost.is_cancelled() {
        match tokio::time::timeout(GOODBYE_TIMEOUT, agent.client.deregister()).await {
            Ok(Ok(())) => info!("deregistered"),
            Ok(Err(e)) => warn!(error = %e, "could not deregister"),
            Err(_) => warn!("deregistering timed out"),
        }
    }
    info!("drained");
}
