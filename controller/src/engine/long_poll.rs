//! Long-polls of agents: a poll claims work at once or parks (see `parked.rs`) until work,
//! a stop order, a drain order or its deadline; and the answer a submit gives parked polls.

use std::time::Duration;

use super::local::parked;
use super::{AgentOrders, Engine, EngineError, Identity};
use crate::model::{Assignment, AttemptKey};
use crate::store::ClaimRequest;

impl Engine {
    /// Long-poll: returns at once with work, stop orders or a drain order, else parks until
    /// one of them appears, a slot of the agent frees up, or `wait` passes.
    pub async fn poll(
        &self,
        who: &Identity,
        free_slots: u32,
        running: &[AttemptKey],
        wait: Duration,
    ) -> Result<AgentOrders, EngineError> {
        let mut view = self.session(who).await?;
        // More free slots than the agent registered to run are cut to that number: a poll
        // never claims past what the agent said it can hold.
        let free_slots = free_slots.min(view.max_tasks);
        let deadline = self.clock.instant() + wait.min(self.config.max_poll_wait);
        let mut last_round = false;
        let mut first_round = true;
        loop {
            let work = self.local.work.notified();
            let wake = view.wake.clone();
            let woken = wake.notified();
            tokio::pin!(work, woken);
            work.as_mut().enable();
            woken.as_mut().enable();

            // The session may have been declared dead or drained while this poll was parked.
            if !first_round {
                view = self.session(who).await?;
            }
            let draining = view.draining;
            // Stop orders are looked for when the poll starts and when the agent is woken for
            // one, not on every new task.
            let stop = if running.is_empty() || !(first_round || last_round) {
                Vec::new()
            } else {
                self.store.stale_attempts(&who.name, running).await?
            };
            first_round = false;
            let mut next_ready = None;
            let mut assignments = Vec::new();
            if free_slots > 0 && !draining {
                let claim = ClaimRequest {
                    agent: who.name.clone(),
                    session: who.session.clone(),
                    queues: view.queues.clone(),
                    labels: view.labels.clone(),
                    max: free_slots,
                };
                let claimed = self.store.claim(claim, self.clock.now_ms()).await?;
                next_ready = claimed.next_ready_at;
                assignments = claimed.assignments;
            }
            self.assigned(&who.name, &assignments);
            if draining || !stop.is_empty() || !assignments.is_empty() || last_round {
                return Ok(AgentOrders {
                    assignments,
                    stop,
                    drain: draining,
                });
            }
            if self.clock.instant() >= deadline {
                return Ok(AgentOrders::default());
            }
            let mut until = deadline;
            if let Some(ready_at) = next_ready {
                // A task waiting out its backoff: the poll claims it when it becomes ready.
                until = until.min(self.clock.instant_at(ready_at));
            }
            // Parked with what it would claim, so that a submit can claim for it directly.
            let mut ticket = (free_slots > 0 && !draining).then(|| {
                self.local.parked.park(ClaimRequest {
                    agent: who.name.clone(),
                    session: who.session.clone(),
                    queues: view.queues.clone(),
                    labels: view.labels.clone(),
                    max: free_slots,
                })
            });
            let served = async {
                match ticket.as_mut() {
                    Some(t) => (&mut t.answer).await.unwrap_or_default(),
                    None => std::future::pending().await,
                }
            };
            let (mut shutdown, mut answered) = (false, false);
            let mut assignments = tokio::select! {
                served = served => { answered = true; served }
                _ = &mut work, if free_slots > 0 => Vec::new(),
                _ = &mut woken => { last_round = true; Vec::new() }
                _ = self.clock.sleep_until(until) => Vec::new(),
                _ = self.shutdown.cancelled() => { shutdown = true; Vec::new() }
            };
            if let Some(ticket) = ticket {
                // A submit that took this poll is claiming for it: its answer must be heard.
                if !self.local.parked.leave(&ticket) && !answered {
                    assignments = ticket.answer.await.unwrap_or_default();
                }
            }
            if !assignments.is_empty() {
                self.assigned(&who.name, &assignments);
                return Ok(AgentOrders {
                    assignments,
                    ..AgentOrders::default()
                });
            }
            if shutdown {
                return Ok(AgentOrders::default());
            }
        }
    }

    /// Tells the watchers of the jobs whose attempts were just handed out.
    fn assigned(&self, agent: &str, assignments: &[Assignment]) {
        if assignments.is_empty() {
            return;
        }
        for a in assignments {
            tracing::debug!(agent = %agent, attempt = %a.attempt, "attempt assigned");
        }
        self.jobs_changed(
            assignments
                .iter()
                .map(|a| a.attempt.job_id.clone())
                .collect(),
        );
    }

    /// Hands a parked poll what a submit claimed for it; if the poll is gone (its agent hung
    /// up meanwhile), the attempts go back to the queue at once.
    pub(super) async fn answer_parked(&self, offer: parked::Offer, assignments: Vec<Assignment>) {
        let agent = offer.claim.agent.clone();
        let Err(unsent) = offer.answer(assignments) else {
            return;
        };
        if unsent.is_empty() {
            return;
        }
        let keys: Vec<AttemptKey> = unsent.into_iter().map(|a| a.attempt).collect();
        match self
            .store
            .release_attempts(&agent, &keys, self.clock.now_ms())
            .await
        {
            Ok(effects) => self.publish(effects),
            Err(e) => {
                // The agent never learns of them; the reaper or reconciliation takes them back.
                tracing::warn!(agent = %agent, error = %e, "handing back unsent assignments failed");
            }
        }
    }
}
