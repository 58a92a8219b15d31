//! Long-poll loop: asks for work for the free slots, starts assignments, applies stop and
//! drain orders. It polls even with no free slot, as the prompt channel for stop orders.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::debug;

use crate::{
    client::{Backoff, ClientError, FailureLog},
    clock::boot_now,
    runner, Agent, Session,
};

/// How long the controller may hold a poll open.
pub const POLL_WAIT: Duration = Duration::from_millis(20_000);
/// Polls answered empty faster than this, `MAX_FAST_EMPTY` times in a row, are followed by a
/// pause, so that a controller that does not hold polls open cannot make the loop spin.
const MIN_EMPTY_POLL: Duration = Duration::from_millis(100);
const MAX_FAST_EMPTY: u32 = 3;
const EMPTY_POLL_PAUSE: Duration = Duration::from_secs(1);

/// Polls until the session stops or a drain starts.
pub(crate) async fn run(agent: Arc<Agent>, session: Session) {
    let mut backoff = Backoff::default();
    let mut failures = FailureLog::new("poll");
    let mut fast_empty = 0;
    loop {
        let slot_freed = agent.running.slot_freed();
        tokio::pin!(slot_freed);
        slot_freed.as_mut().enable();
        let free = agent
            .config
            .max_tasks
            .saturating_sub(agent.running.busy() as u32);
        let started = Instant::now();
        let sent = boot_now();
        let result = tokio::select! {
            r = agent.client.poll(free, POLL_WAIT, agent.running.snapshot()) => r,
            // A poll for no slot cannot have claimed anything: dropping it loses nothing.
            () = &mut slot_freed, if free == 0 => continue,
            () = session.stop.cancelled() => return,
            () = agent.drain.cancelled() => return,
        };
        match result {
            Ok(resp) => {
                // An answered poll is contact like an acknowledged heartbeat: the controller
                // recorded the session as alive when the poll reached it, after `sent`. Without
                // this, work handed out right after an outage starts under the stale lease
                // and its guardian kills it at once.
                agent.lease.ack(sent);
                failures.recovered();
                backoff.reset();
                let empty = resp.assignments.is_empty() && resp.stop.is_empty() && !resp.drain;
                agent.apply_orders(&resp.stop, resp.drain);
                let started_some = !resp.assignments.is_empty();
                runner::accept(&agent, &session, resp.assignments).await;
                if started_some {
                    // Let the attempts just started reach their process spawn before the next
                    // poll goes out: a task's start then waits on no RPC of ours
                    // (docs/decisions/0011-latency-on-small-hosts.md).
                    tokio::task::yield_now().await;
                }
                fast_empty = if empty && started.elapsed() < MIN_EMPTY_POLL {
                    fast_empty + 1
                } else {
                    0
                };
                if fast_empty >= MAX_FAST_EMPTY {
                    fast_empty = 0;
                    debug!("polls answered at once with nothing; pausing");
                    tokio::select! {
                        () = tokio::time::sleep(EMPTY_POLL_PAUSE) => {}
                        () = session.stop.cancelled() => return,
                        () = agent.drain.cancelled() => return,
                    }
                }
            }
            Err(e @ ClientError::SessionLost(_)) => {
                session.lose(&e);
                return;
            }
            Err(e) => {
                failures.failed(&e);
                tokio::select! {
                    _ = backoff.sleep(&session.stop) => {}
                    () = agent.drain.cancelled() => return,
                }
            }
        }
    }
}
