//! Two controllers racing on one database (two handles of one `TestBackend`): claims of one
//! queue never hand an attempt out twice, a completion racing its agent's death ends one way
//! only, and one death declared by both requeues once. Each race starts at a barrier and is
//! run for many rounds, each on a queue of its own.

use std::collections::HashSet;

use tokio::sync::Barrier;

use super::*;
use crate::model::JobSummary;
use crate::store::AgentRegistration;

/// Rounds of each race.
const ROUNDS: usize = 30;

/// Agent `name` on `queue`, under `session`, claiming up to `max` at once.
fn racer(name: &str, queue: &str, session: &str, max: u32) -> (AgentRegistration, ClaimRequest) {
    let mut reg = registration(name);
    reg.queues = vec![queue.into()];
    reg.session = session.into();
    let mut claim = claim_req(name, max);
    claim.queues = reg.queues.clone();
    claim.session = session.into();
    (reg, claim)
}

async fn summary(store: &Arc<dyn Store>, job_id: &str) -> JobSummary {
    store
        .list_jobs(None, u32::MAX)
        .await
        .unwrap()
        .into_iter()
        .find(|j| j.id == job_id)
        .expect("the job is listed")
}

/// A one-task job on `queue` whose task may run twice (a lost attempt counts as one).
async fn one_task_job(store: &Arc<dyn Store>, name: &str, queue: &str) -> String {
    let mut spec = on_queue(task("t", &[]), queue);
    spec.retry = RetryPolicy {
        max_attempts: 2,
        initial_delay_ms: 0,
        max_delay_ms: 0,
    };
    store
        .submit_job(job(name, vec![spec]), T0)
        .await
        .unwrap()
        .job_id
}

/// After one lost attempt of `one_task_job`: exactly one new attempt (number 2) can be
/// claimed, and its failure is final, so the loss was counted once.
async fn requeued_once(store: &Arc<dyn Store>, id: &str, queue: &str, round: usize) {
    let (reg, claim) = racer("race-next", queue, &format!("race-next-{round}"), 4);
    store.register_agent(reg, T0 + 2).await.unwrap();
    let next = store
        .claim(claim.clone(), T0 + 2)
        .await
        .unwrap()
        .assignments;
    assert_eq!(next.len(), 1, "one new attempt");
    assert_eq!(next[0].attempt.attempt, 2);
    let more = store.claim(claim, T0 + 2).await.unwrap().assignments;
    assert!(more.is_empty(), "not two: {more:?}");
    end(
        store,
        "race-next",
        &next[0].attempt,
        Outcome::Failed,
        T0 + 3,
    )
    .await
    .unwrap();
    let record = store.get_job(id).await.unwrap();
    assert_eq!(
        (record.state, record.tasks[0].state),
        (JobState::Failed, TaskState::Failed),
        "the loss counted once against two attempts"
    );
}

pub(crate) async fn two_controllers_never_hand_out_an_attempt_twice(backend: &dyn TestBackend) {
    const LOOPS_PER_HANDLE: usize = 2;
    const TASKS: usize = 24;
    let queue = "race-claim";
    let handles = [backend.open().await, backend.open().await];
    let mut loops = Vec::new();
    for (h, store) in handles.iter().enumerate() {
        for l in 0..LOOPS_PER_HANDLE {
            let name = format!("race-claim-{h}-{l}");
            let (reg, claim) = racer(&name, queue, &format!("{name}-1"), 2);
            store.register_agent(reg, T0).await.unwrap();
            loops.push((store.clone(), claim));
        }
    }
    for round in 0..ROUNDS {
        let tasks = (0..TASKS)
            .map(|i| on_queue(task(&format!("t{i}"), &[]), queue))
            .collect();
        let id = handles[round % 2]
            .submit_job(job(&format!("race-claim-{round}"), tasks), T0)
            .await
            .unwrap()
            .job_id;
        let barrier = Arc::new(Barrier::new(loops.len()));
        let running: Vec<_> = loops
            .iter()
            .cloned()
            .map(|(store, claim)| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    claim_and_complete(&store, claim).await
                })
            })
            .collect();
        let mut handed = Vec::new();
        for one in running {
            handed.extend(one.await.unwrap());
        }
        let mut tasks = HashSet::new();
        for key in &handed {
            assert_eq!(
                (key.job_id.as_str(), key.attempt),
                (id.as_str(), 1),
                "{key}"
            );
            assert!(tasks.insert(&key.task_id), "{key} handed out twice");
        }
        assert_eq!(tasks.len(), TASKS, "every task handed out");
        let record = handles[1 - round % 2].get_job(&id).await.unwrap();
        assert_eq!(record.state, JobState::Succeeded);
        for t in &record.tasks {
            let states: Vec<_> = t.attempts.iter().map(|a| a.state).collect();
            assert_eq!(states, [AttemptState::Succeeded], "task {}", t.spec.id);
        }
        let summary = summary(&handles[0], &id).await;
        assert_eq!(
            (summary.tasks_done, summary.tasks_total),
            (TASKS as u32, TASKS as u32)
        );
    }
}

/// Claims on one queue until it is empty, completing each attempt claimed, most of them with
/// the next claim in the same call; returns every attempt handed out.
async fn claim_and_complete(store: &Arc<dyn Store>, claim: ClaimRequest) -> Vec<AttemptKey> {
    let mut handed = Vec::new();
    let mut pending: Vec<AttemptKey> = Vec::new();
    loop {
        let next = match pending.pop() {
            Some(key) => {
                let done = completion(&claim.agent, &key, Outcome::Succeeded, vec![]);
                let (_, next) = store
                    .complete(done, Some(claim.clone()), T0 + 1)
                    .await
                    .unwrap();
                next
            }
            None => {
                let claimed = store.claim(claim.clone(), T0).await.unwrap().assignments;
                if claimed.is_empty() {
                    return handed;
                }
                claimed
            }
        };
        for a in next {
            handed.push(a.attempt.clone());
            pending.push(a.attempt);
        }
    }
}

pub(crate) async fn a_completion_racing_agent_death_ends_one_way(backend: &dyn TestBackend) {
    let (a, b) = (backend.open().await, backend.open().await);
    for round in 0..ROUNDS {
        let queue = format!("race-dead-{round}");
        let session = format!("race-dead-{round}");
        let (reg, claim) = racer("race-dead", &queue, &session, 1);
        a.register_agent(reg, T0).await.unwrap();
        let id = one_task_job(&a, "race-dead", &queue).await;
        let key = a
            .claim(claim, T0)
            .await
            .unwrap()
            .assignments
            .remove(0)
            .attempt;
        let done = completion("race-dead", &key, Outcome::Succeeded, vec![]);
        let barrier = Barrier::new(2);
        let (completed, died) = tokio::join!(
            async {
                barrier.wait().await;
                if round % 2 == 0 {
                    a.complete(done, None, T0 + 1)
                        .await
                        .map(|(effects, _)| effects)
                } else {
                    match a.complete_early(done, None, T0 + 1).await {
                        Ok(written) => written.durable.await,
                        Err(e) => Err(e),
                    }
                }
            },
            async {
                barrier.wait().await;
                b.agent_dead("race-dead", &session, T0 + 1).await
            },
        );
        let died = died.unwrap();
        let record = b.get_job(&id).await.unwrap();
        let states: Vec<_> = record.tasks[0].attempts.iter().map(|a| a.state).collect();
        let summary = summary(&b, &id).await;
        match completed {
            Ok(_) => {
                assert!(!died.queued, "the death found nothing running");
                assert_eq!(states, [AttemptState::Succeeded]);
                assert_eq!(record.tasks[0].state, TaskState::Succeeded);
                assert_eq!(
                    (record.state, record.finished_at, summary.tasks_done),
                    (JobState::Succeeded, Some(T0 + 1), 1)
                );
            }
            Err(StoreError::Fenced { .. }) => {
                assert!(died.queued, "the death requeued the task");
                assert_eq!(states, [AttemptState::Lost]);
                assert_eq!(record.tasks[0].state, TaskState::Queued);
                assert!(!record.state.is_terminal(), "{:?}", record.state);
                assert_eq!((record.finished_at, summary.tasks_done), (None, 0));
                requeued_once(&b, &id, &queue, round).await;
            }
            Err(e) => panic!("round {round}: {e}"),
        }
    }
}

pub(crate) async fn two_controllers_declaring_one_death_requeue_once(backend: &dyn TestBackend) {
    let (a, b) = (backend.open().await, backend.open().await);
    for round in 0..ROUNDS {
        let queue = format!("race-twice-{round}");
        let session = format!("race-twice-{round}");
        let (reg, claim) = racer("race-twice", &queue, &session, 1);
        a.register_agent(reg, T0).await.unwrap();
        let id = one_task_job(&b, "race-twice", &queue).await;
        let key = a
            .claim(claim, T0)
            .await
            .unwrap()
            .assignments
            .remove(0)
            .attempt;
        assert_eq!(key.attempt, 1);
        let barrier = Barrier::new(2);
        let (x, y) = tokio::join!(
            async {
                barrier.wait().await;
                a.agent_dead("race-twice", &session, T0 + 1).await
            },
            async {
                barrier.wait().await;
                b.agent_dead("race-twice", &session, T0 + 1).await
            },
        );
        let requeued = [x.unwrap().queued, y.unwrap().queued];
        assert_eq!(
            requeued.iter().filter(|q| **q).count(),
            1,
            "round {round}: one of them requeued it: {requeued:?}"
        );
        let record = a.get_job(&id).await.unwrap();
        let states: Vec<_> = record.tasks[0].attempts.iter().map(|a| a.state).collect();
        assert_eq!(states, [AttemptState::Lost]);
        assert_eq!(record.tasks[0].state, TaskState::Queued);
        requeued_once(&a, &id, &queue, round).await;
    }
}
