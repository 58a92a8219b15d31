//! Tests of the combiner's batches on a fresh PostgreSQL database: a batch answers each call
//! as it would have been answered alone (claims shared out in order, a refused completion
//! alone refused, a dependent released by two completions of one batch), and a batch whose
//! statements fail is made again call by call, so that one bad completion fails no other.

use tokio::sync::oneshot;

use super::batch::{self, Item};
use super::combiner;
use super::test_db::{new_job, register, shell_task, TestDb};
use super::PostgresStore;
use crate::model::{AttemptFinish, AttemptKey, AttemptReport, JobState, Outcome, TaskSpec};
use crate::store::{ClaimRequest, Completion, Store, StoreError};

fn task(id: &str, deps: &[&str]) -> TaskSpec {
    shell_task(id, "q", deps)
}

/// A store with agents `a1` and `a2` (sessions `a1-s`, `a2-s`) and one job of `tasks`.
async fn setup(db: &TestDb, tasks: Vec<TaskSpec>) -> (PostgresStore, String) {
    let store = db.open().await;
    for agent in ["a1", "a2"] {
        register(&store, agent, &format!("{agent}-s"), "q", 8).await;
    }
    let job_id = store
        .submit_job(new_job("batch", tasks), 1)
        .await
        .unwrap()
        .job_id;
    (store, job_id)
}

fn claim(agent: &str, max: u32) -> ClaimRequest {
    ClaimRequest {
        agent: agent.into(),
        session: format!("{agent}-s"),
        queues: vec!["q".into()],
        labels: Default::default(),
        max,
    }
}

fn completion(agent: &str, attempt: &AttemptKey, outcome: Outcome) -> Completion {
    Completion {
        report: AttemptReport {
            finish: AttemptFinish {
                agent: agent.into(),
                attempt: attempt.clone(),
                outcome,
                exit_code: Some(if outcome == Outcome::Succeeded { 0 } else { 1 }),
                error: String::new(),
            },
            outputs: vec![],
            extract: None,
            logs: vec![],
            dropped_bytes: 0,
        },
        log_limit: 1024,
    }
}

/// `items` as one batch, in one transaction of `store`, as the combiner makes it.
async fn run(
    store: &PostgresStore,
    items: &[Item],
    now: i64,
) -> Result<Vec<Result<batch::Done, StoreError>>, StoreError> {
    combiner::transact(&store.pool, &store.cursors, items, now)
        .await
        .map_err(combiner::Failed::into_error)
}

/// The attempt of `task` in `assignments`.
fn attempt_of(claimed: &batch::Done, task: &str) -> AttemptKey {
    claimed
        .claimed
        .assignments
        .iter()
        .find(|a| a.attempt.task_id == task)
        .unwrap_or_else(|| panic!("{task} not claimed: {:?}", claimed.claimed.assignments))
        .attempt
        .clone()
}

#[tokio::test]
async fn a_batch_answers_each_call_as_it_would_alone() {
    let db = TestDb::new().await;
    let (store, job_id) = setup(
        &db,
        vec![
            task("a", &[]),
            task("b", &[]),
            task("c", &[]),
            task("d", &["a", "b"]),
        ],
    )
    .await;
    // Two claims of the same queues share one pick, handed out in call order.
    let claims = [
        Item {
            completion: None,
            claim: Some(claim("a1", 2)),
        },
        Item {
            completion: None,
            claim: Some(claim("a2", 2)),
        },
    ];
    let claimed = run(&store, &claims, 2).await.unwrap();
    let claimed: Vec<batch::Done> = claimed.into_iter().map(Result::unwrap).collect();
    let tasks = |d: &batch::Done| -> Vec<String> {
        let mut t: Vec<String> = d
            .claimed
            .assignments
            .iter()
            .map(|a| a.attempt.task_id.clone())
            .collect();
        t.sort();
        t
    };
    assert_eq!(tasks(&claimed[0]), ["a", "b"]);
    assert_eq!(tasks(&claimed[1]), ["c"]);
    assert_eq!(claimed[1].claimed.next_ready_at, None);
    let (a, b, c) = (
        attempt_of(&claimed[0], "a"),
        attempt_of(&claimed[0], "b"),
        attempt_of(&claimed[1], "c"),
    );

    let items = [
        // a and b release d, which the first call's claim then takes.
        Item {
            completion: Some(completion("a1", &a, Outcome::Succeeded)),
            claim: Some(claim("a1", 1)),
        },
        Item {
            completion: Some(completion("a1", &b, Outcome::Succeeded)),
            claim: None,
        },
        // c is a2's: a1's report of it is refused, alone.
        Item {
            completion: Some(completion("a1", &c, Outcome::Failed)),
            claim: Some(claim("a1", 1)),
        },
    ];
    let results = run(&store, &items, 3).await.unwrap();
    let mut results = results.into_iter();
    let first = results.next().unwrap().unwrap();
    assert_eq!(tasks(&first), ["d"], "released in the batch, claimed in it");
    assert!(first.effects.queued);
    assert_eq!(first.effects.jobs, std::slice::from_ref(&job_id));
    assert!(results.next().unwrap().is_ok());
    match results.next().unwrap() {
        Err(StoreError::Fenced { reason, .. }) => {
            assert_eq!(reason, "attempt belongs to agent a2")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // c fails on a2 (retried later), d succeeds; the same completion twice in a batch is
    // refused whole.
    let d = attempt_of(&first, "d");
    let twice = [
        Item {
            completion: Some(completion("a1", &d, Outcome::Succeeded)),
            claim: None,
        },
        Item {
            completion: Some(completion("a1", &d, Outcome::Succeeded)),
            claim: None,
        },
    ];
    assert!(run(&store, &twice, 4).await.is_err());
    let items = [
        Item {
            completion: Some(completion("a2", &c, Outcome::Failed)),
            claim: Some(claim("a2", 1)),
        },
        Item {
            completion: Some(completion("a1", &d, Outcome::Succeeded)),
            claim: None,
        },
    ];
    let results = run(&store, &items, 4).await.unwrap();
    let retried = results.into_iter().next().unwrap().unwrap();
    assert!(retried.effects.queued, "c is queued again");
    assert!(
        retried.claimed.assignments.is_empty(),
        "not before its retry delay"
    );
    let next = retried.claimed.next_ready_at.expect("the retry's time");
    assert!(next > 4, "{next}");

    let job = store.get_job(&job_id).await.unwrap();
    assert_eq!(job.state, JobState::Running);
    let state = |id: &str| {
        job.tasks
            .iter()
            .find(|t| t.spec.id == id)
            .map(|t| t.state.as_str().to_string())
            .unwrap()
    };
    assert_eq!(
        ["a", "b", "c", "d"].map(state),
        ["succeeded", "succeeded", "queued", "succeeded"]
    );
    store.close().await;
}

#[tokio::test]
async fn a_failed_batch_is_made_again_call_by_call() {
    let db = TestDb::new().await;
    let (store, _) = setup(&db, vec![task("a", &[]), task("b", &[])]).await;
    let claimed = store.claim(claim("a1", 2), 2).await.unwrap().assignments;
    assert_eq!(claimed.len(), 2);
    let good = completion("a1", &claimed[0].attempt, Outcome::Succeeded);
    // PostgreSQL's text holds no NUL: the statement fails, and with it the batch's.
    let mut bad = completion("a1", &claimed[1].attempt, Outcome::Succeeded);
    bad.report.finish.error = "nul \0 byte".into();
    let mut answers = Vec::new();
    let mut calls = Vec::new();
    for c in [good, bad] {
        let (reply, answer) = oneshot::channel();
        answers.push(answer);
        calls.push(combiner::Call {
            item: Item {
                completion: Some(c),
                claim: None,
            },
            now: 3,
            reply,
        });
    }
    combiner::run(&store.pool, &store.cursors, calls).await;
    let good = answers.remove(0).await.unwrap();
    let bad = answers.remove(0).await.unwrap();
    assert!(good.is_ok(), "{good:?}");
    let bad = bad.unwrap_err().to_string();
    assert!(bad.contains("0x00"), "{bad}");
    let job = store.get_job(&claimed[0].attempt.job_id).await.unwrap();
    let states: Vec<&str> = job.tasks.iter().map(|t| t.state.as_str()).collect();
    assert_eq!(states, ["succeeded", "running"]);
    store.close().await;
}

#[tokio::test]
async fn a_task_left_behind_the_claim_cursor_is_claimed_within_a_sweep() {
    let db = TestDb::new().await;
    let (store, job_id) = setup(&db, vec![task("a", &[]), task("b", &[]), task("c", &[])]).await;
    let first = store.claim(claim("a1", 2), 2).await.unwrap().assignments;
    assert_eq!(first.len(), 2);
    // As if a's claim had rolled back: queued again, behind where this controller's claims of
    // the queue now start.
    db.client()
        .await
        .execute(
            "UPDATE tasks SET state = 'queued' WHERE job_id = $1 AND task_id = 'a'",
            &[&job_id],
        )
        .await
        .unwrap();
    let next = store.claim(claim("a2", 2), 3).await.unwrap().assignments;
    let ids: Vec<&str> = next.iter().map(|a| a.attempt.task_id.as_str()).collect();
    assert_eq!(ids, ["c"], "read from the cursor on");
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let later = store.claim(claim("a2", 2), 4).await.unwrap().assignments;
    let ids: Vec<&str> = later.iter().map(|a| a.attempt.task_id.as_str()).collect();
    assert_eq!(ids, ["a"], "found behind the cursor within a second");
    store.close().await;
}

#[tokio::test]
async fn work_claimed_for_a_call_that_ended_is_handed_back() {
    let db = TestDb::new().await;
    let (store, job_id) = setup(&db, vec![task("a", &[])]).await;
    let claimed = store.claim(claim("a1", 1), 2).await.unwrap().assignments;
    let key = claimed[0].attempt.clone();
    combiner::hand_back(&store.pool, vec![("a1".into(), key.clone())], 3).await;
    let job = store.get_job(&job_id).await.unwrap();
    let task = &job.tasks[0];
    assert_eq!(task.state.as_str(), "queued");
    assert_eq!(task.attempts[0].state.as_str(), "lost");
    assert!(
        task.attempts[0]
            .error
            .contains("ended before its claim was answered"),
        "{:?}",
        task.attempts[0].error
    );
    // Queued at once, and not counted as a failure: the next claim takes it.
    let again = store.claim(claim("a2", 1), 4).await.unwrap().assignments;
    assert_eq!(again[0].attempt.attempt, 2);
    store.close().await;
}
