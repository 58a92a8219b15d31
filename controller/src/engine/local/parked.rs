//! Polls parked waiting for work. A submit takes them and claims for them inside its own
//! transaction, so that a new job's first tasks reach a waiting agent without a second trip
//! through the store (the latency of a job on an idle agent).
//!
//! A taken poll always gets an answer on its channel, possibly empty. If the poll went away in
//! the meantime (its agent hung up), the submitter hands what it claimed back to the queue.

use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::model::Assignment;
use crate::store::ClaimRequest;

#[derive(Default)]
pub(crate) struct ParkedPolls {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    next_id: u64,
    polls: Vec<Parked>,
}

struct Parked {
    id: u64,
    offer: Offer,
}

/// A parked poll as a submitter takes it: what to claim, and where the claim goes.
pub(crate) struct Offer {
    pub claim: ClaimRequest,
    reply: oneshot::Sender<Vec<Assignment>>,
}

impl Offer {
    /// Gives the poll what was claimed for it; hands the assignments back when it is gone.
    pub fn answer(self, assignments: Vec<Assignment>) -> Result<(), Vec<Assignment>> {
        self.reply.send(assignments)
    }
}

/// A poll's place among the parked ones.
pub(crate) struct Ticket {
    id: u64,
    pub answer: oneshot::Receiver<Vec<Assignment>>,
}

impl ParkedPolls {
    pub fn park(&self, claim: ClaimRequest) -> Ticket {
        let (reply, answer) = oneshot::channel();
        let mut inner = self.inner.lock().expect("parked polls poisoned");
        inner.next_id += 1;
        let id = inner.next_id;
        inner.polls.push(Parked {
            id,
            offer: Offer { claim, reply },
        });
        Ticket { id, answer }
    }

    /// Takes every parked poll; each must then be answered.
    pub fn take_all(&self) -> Vec<Offer> {
        let mut inner = self.inner.lock().expect("parked polls poisoned");
        inner.polls.drain(..).map(|p| p.offer).collect()
    }

    /// Leaves the parked polls. False when a submitter took the ticket first: its answer is
    /// then on the way and must be awaited.
    pub fn leave(&self, ticket: &Ticket) -> bool {
        let mut inner = self.inner.lock().expect("parked polls poisoned");
        match inner.polls.iter().position(|p| p.id == ticket.id) {
            Some(i) => {
                inner.polls.swap_remove(i);
                true
            }
            None => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.inner
            .lock()
            .expect("parked polls poisoned")
            .polls
            .is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(agent: &str) -> ClaimRequest {
        ClaimRequest {
            agent: agent.into(),
            session: "s".into(),
            queues: vec!["q".into()],
            labels: Default::default(),
            max: 1,
        }
    }

    #[test]
    fn a_ticket_left_before_any_submit_is_gone() {
        let parked = ParkedPolls::default();
        let t = parked.park(claim("a"));
        assert!(!parked.is_empty());
        assert!(parked.leave(&t));
        assert!(parked.is_empty());
        assert!(parked.take_all().is_empty());
    }

    #[tokio::test]
    async fn a_taken_ticket_gets_its_answer_even_after_leaving() {
        let parked = ParkedPolls::default();
        let t = parked.park(claim("a"));
        let offers = parked.take_all();
        assert_eq!(offers.len(), 1);
        assert_eq!(offers[0].claim.agent, "a");
        assert!(!parked.leave(&t), "a taken ticket must wait for its answer");
        for offer in offers {
            assert!(offer.answer(Vec::new()).is_ok());
        }
        assert_eq!(t.answer.await.unwrap().len(), 0);
    }

    #[test]
    fn an_answer_to_a_vanished_poll_comes_back() {
        let parked = ParkedPolls::default();
        let t = parked.park(claim("a"));
        let offer = parked.take_all().pop().unwrap();
        drop(t);
        assert!(offer.answer(Vec::new()).is_err());
    }
}
