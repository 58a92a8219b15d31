//! Assignments the controller hands out, by a poll's answer or by a completion's: each started
//! here when it can run now, the rest handed straight back to the controller.

use std::sync::Arc;

use ferry_proto::v1::{Assignment, AttemptRef};
use tracing::{info, warn};

use crate::{clock::boot_now, Agent, Session};

/// Starts what can run here now; hands the rest straight back to the controller.
pub(crate) async fn accept(agent: &Arc<Agent>, session: &Session, assignments: Vec<Assignment>) {
    let mut give_back: Vec<AttemptRef> = Vec::new();
    for assignment in assignments {
        let Some(attempt) = assignment.attempt.clone() else {
            warn!("assignment without an attempt; ignored");
            continue;
        };
        let full = agent.running.busy() >= agent.config.max_tasks as usize;
        let lease_out = agent.lease.expired(boot_now()).is_some();
        if agent.drain.is_cancelled() || full || lease_out {
            info!(
                job = %attempt.job_id, task = %attempt.task_id, attempt = attempt.attempt,
                draining = agent.drain.is_cancelled(), full, lease_out,
                "cannot run this assignment now; releasing it"
            );
            give_back.push(attempt);
            continue;
        }
        match agent.running.insert(attempt.clone()) {
            Some((guard, kill)) => super::start(agent, session, assignment, attempt, guard, kill),
            None => warn!(
                job = %attempt.job_id, task = %attempt.task_id, attempt = attempt.attempt,
                "assignment for an attempt already running here; ignored"
            ),
        }
    }
    if !give_back.is_empty() {
        if let Err(e) = agent.client.release(give_back).await {
            warn!(error = %e, "could not release assignments; the controller will reclaim them");
        }
    }
}
