//! The conformance suite every `Store` backend must pass: the transitions of DESIGN.md
//! (claim, fencing, DAG release, retries, lost attempts, cancel, hand-back, timeouts, logs),
//! written once against the trait. Each backend's tests call `run_all` on a fresh store.
//! `early.rs` holds the claims handed out before their transaction is durable, `recovery.rs`
//! work taken back (lost, cancelled, handed back, timed out), `outputs.rs` and `watermarks.rs`
//! the scenarios of published outputs and of extracts.

mod early;
mod outputs;
mod recovery;
mod watermarks;

use early::*;
use outputs::*;
use recovery::*;
use watermarks::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ClaimRequest, Completion, Effects, Store, StoreError};
use crate::model::{
    AttemptFinish, AttemptKey, AttemptReport, AttemptState, Backfill, ExtractColumn, ExtractInfo,
    ExtractRange, JobState, LogChunk, NewJob, Outcome, OutputFile, RetryPolicy, TaskKind, TaskSpec,
    TaskState,
};

const T0: i64 = 1_800_000_000_000;

fn task(id: &str, deps: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        queue: "q".into(),
        labels: BTreeMap::new(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        kind: TaskKind::Shell {
            command: format!("echo {id}"),
        },
        outputs: vec![],
        timeout_ms: 0,
        retry: RetryPolicy {
            max_attempts: 1,
            initial_delay_ms: 1_000,
            max_delay_ms: 1_000,
        },
    }
}

fn job(name: &str, tasks: Vec<TaskSpec>) -> NewJob {
    NewJob {
        name: name.into(),
        params: [("day".to_string(), "1".to_string())].into(),
        tasks,
        idempotency_key: None,
        backfill: BTreeMap::new(),
    }
}

fn claim_req(agent: &str, max: u32) -> ClaimRequest {
    ClaimRequest {
        agent: agent.into(),
        session: format!("{agent}-1"),
        queues: vec!["q".into()],
        labels: BTreeMap::new(),
        max,
    }
}

fn registration(name: &str) -> super::AgentRegistration {
    super::AgentRegistration {
        name: name.into(),
        session: format!("{name}-1"),
        queues: vec!["q".into()],
        labels: BTreeMap::new(),
        max_tasks: 1,
        hostname: "h".into(),
        version: "v".into(),
    }
}

fn finish(agent: &str, attempt: &AttemptKey, outcome: Outcome) -> AttemptFinish {
    AttemptFinish {
        agent: agent.into(),
        attempt: attempt.clone(),
        outcome,
        exit_code: Some(0),
        error: String::new(),
    }
}

async fn task_state(store: &Arc<dyn Store>, job: &str, task: &str) -> TaskState {
    let job = store.get_job(job).await.unwrap();
    job.tasks.iter().find(|t| t.spec.id == task).unwrap().state
}

fn on_queue(mut spec: TaskSpec, queue: &str) -> TaskSpec {
    spec.queue = queue.into();
    spec
}

fn completion(
    agent: &str,
    key: &AttemptKey,
    outcome: Outcome,
    outputs: Vec<OutputFile>,
) -> Completion {
    Completion {
        report: AttemptReport {
            finish: finish(agent, key, outcome),
            outputs,
            extract: None,
            logs: vec![],
            dropped_bytes: 0,
        },
        log_limit: 1024,
    }
}

/// Ends the attempt with `outcome`, no outputs and no logs, claiming nothing.
async fn end(
    store: &Arc<dyn Store>,
    agent: &str,
    key: &AttemptKey,
    outcome: Outcome,
    now: i64,
) -> Result<Effects, StoreError> {
    let (effects, _) = store
        .complete(completion(agent, key, outcome, vec![]), None, now)
        .await?;
    Ok(effects)
}

/// Runs every scenario on `store`, which must be empty.
pub async fn run_all(store: Arc<dyn Store>) {
    for agent in ["w", "w2", "other", "plain", "dc1-agent"] {
        store.register_agent(registration(agent), T0).await.unwrap();
    }
    claims_need_a_live_session(&store).await;
    submit_serves_parked_claims(&store).await;
    completion_hands_its_claims_early(&store).await;
    dag_runs_in_order(&store).await;
    failure_skips_downstream_and_fails_job(&store).await;
    retries_after_backoff(&store).await;
    lost_attempts_are_fenced_and_requeued(&store).await;
    labels_route_tasks(&store).await;
    cancel_stops_running_attempts(&store).await;
    release_requeues_without_counting(&store).await;
    controller_times_out_unreported_attempts(&store).await;
    idempotency_key_returns_the_same_job(&store).await;
    logs_keep_a_bounded_tail(&store).await;
    outputs_publish_with_the_success_and_become_inputs(&store).await;
    fenced_or_failed_completions_publish_nothing(&store).await;
    retention_reads_job_ends_and_forgets_outputs(&store).await;
    watermarks_move_only_with_a_current_success(&store).await;
    backfills_extract_a_range_and_leave_the_watermark(&store).await;
    watermarks_are_set_and_reset_by_hand(&store).await;
    queue_stats_count_queued_and_running(&store).await;
}

async fn claims_need_a_live_session(store: &Arc<dyn Store>) {
    store
        .submit_job(job("session", vec![task("a", &[])]), T0)
        .await
        .unwrap();
    let mut stale = claim_req("w", 1);
    stale.session = "w-0".into();
    assert!(
        store.claim(stale, T0).await.unwrap().assignments.is_empty(),
        "an old session claims nothing"
    );
    assert!(store
        .claim(claim_req("nobody", 1), T0)
        .await
        .unwrap()
        .assignments
        .is_empty());
    store
        .set_agent_state("w", crate::model::AgentState::Draining)
        .await
        .unwrap();
    assert!(
        store
            .claim(claim_req("w", 1), T0)
            .await
            .unwrap()
            .assignments
            .is_empty(),
        "a draining agent claims nothing"
    );
    store.register_agent(registration("w"), T0).await.unwrap();
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    end(store, "w", &a.attempt, Outcome::Succeeded, T0)
        .await
        .unwrap();
}

async fn dag_runs_in_order(store: &Arc<dyn Store>) {
    let id = store
        .submit_job(
            job(
                "dag",
                vec![task("a", &[]), task("b", &["a"]), task("c", &["a", "b"])],
            ),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let first = store
        .claim(claim_req("w", 8), T0)
        .await
        .unwrap()
        .assignments;
    assert_eq!(first.len(), 1, "only the root is eligible");
    assert_eq!(first[0].attempt.task_id, "a");
    assert_eq!(first[0].params["day"], "1");
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Running);
    end(store, "w", &first[0].attempt, Outcome::Succeeded, T0 + 1)
        .await
        .unwrap();
    let second = store
        .claim(claim_req("w", 8), T0 + 2)
        .await
        .unwrap()
        .assignments;
    assert_eq!(
        second
            .iter()
            .map(|a| a.attempt.task_id.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    end(store, "w", &second[0].attempt, Outcome::Succeeded, T0 + 3)
        .await
        .unwrap();
    let third = store
        .claim(claim_req("w", 8), T0 + 4)
        .await
        .unwrap()
        .assignments;
    assert_eq!(third[0].attempt.task_id, "c");
    end(store, "w", &third[0].attempt, Outcome::Succeeded, T0 + 5)
        .await
        .unwrap();
    let done = store.get_job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.finished_at, Some(T0 + 5));
}

async fn failure_skips_downstream_and_fails_job(store: &Arc<dyn Store>) {
    let id = store
        .submit_job(
            job(
                "fail",
                vec![
                    task("a", &[]),
                    task("b", &["a"]),
                    task("c", &["b"]),
                    task("d", &[]),
                ],
            ),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let claimed = store
        .claim(claim_req("w", 8), T0)
        .await
        .unwrap()
        .assignments;
    assert_eq!(claimed.len(), 2);
    for a in &claimed {
        let outcome = if a.attempt.task_id == "a" {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        };
        end(store, "w", &a.attempt, outcome, T0 + 1).await.unwrap();
    }
    assert_eq!(task_state(store, &id, "a").await, TaskState::Failed);
    assert_eq!(task_state(store, &id, "b").await, TaskState::Skipped);
    assert_eq!(task_state(store, &id, "c").await, TaskState::Skipped);
    assert_eq!(task_state(store, &id, "d").await, TaskState::Succeeded);
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Failed);
}

async fn retries_after_backoff(store: &Arc<dyn Store>) {
    let mut t = task("r", &[]);
    t.retry = RetryPolicy {
        max_attempts: 2,
        initial_delay_ms: 1_000,
        max_delay_ms: 1_000,
    };
    let id = store
        .submit_job(job("retry", vec![t]), T0)
        .await
        .unwrap()
        .job_id;
    let a1 = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    end(store, "w", &a1.attempt, Outcome::Failed, T0)
        .await
        .unwrap();
    let early = store.claim(claim_req("w", 1), T0 + 100).await.unwrap();
    assert!(early.assignments.is_empty(), "backoff holds the retry");
    let ready = early.next_ready_at.expect("the retry's time is known");
    assert!((T0 + 500..=T0 + 1_000).contains(&ready), "{ready}");
    let a2 = store
        .claim(claim_req("w", 1), T0 + 1_000)
        .await
        .unwrap()
        .assignments
        .remove(0);
    assert_eq!(a2.attempt.attempt, 2);
    end(store, "w", &a2.attempt, Outcome::Succeeded, T0 + 1_001)
        .await
        .unwrap();
    let done = store.get_job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let states: Vec<_> = done.tasks[0].attempts.iter().map(|a| a.state).collect();
    assert_eq!(states, vec![AttemptState::Failed, AttemptState::Succeeded]);
}

async fn idempotency_key_returns_the_same_job(store: &Arc<dyn Store>) {
    let mut j = job("idem", vec![task("a", &[])]);
    j.idempotency_key = Some("k1".into());
    let first = store.submit_job(j.clone(), T0).await.unwrap();
    let second = store.submit_job(j.clone(), T0 + 1).await.unwrap();
    assert_eq!(first.job_id, second.job_id);
    assert!(second.existing);
    j.tasks[0].id = "other".into();
    let conflict = store.submit_job(j, T0 + 2).await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict(_))),
        "{conflict:?}"
    );
    let a = store
        .claim(claim_req("w", 1), T0 + 3)
        .await
        .unwrap()
        .assignments
        .remove(0);
    end(store, "w", &a.attempt, Outcome::Succeeded, T0 + 4)
        .await
        .unwrap();
}

async fn logs_keep_a_bounded_tail(store: &Arc<dyn Store>) {
    store
        .submit_job(job("logs", vec![task("a", &[])]), T0)
        .await
        .unwrap();
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    for i in 0..10u8 {
        let chunk = LogChunk {
            stderr: i % 2 == 1,
            data: vec![b'0' + i; 1_000],
        };
        store
            .append_logs("w", &a.attempt, vec![chunk], 0, 4_096)
            .await
            .unwrap();
    }
    let page = store.read_logs(&a.attempt, 0).await.unwrap();
    assert!(page.truncated);
    assert!(!page.finished);
    let kept: Vec<u8> = page
        .chunks
        .iter()
        .flat_map(|(_, c)| c.data.clone())
        .collect();
    assert!(kept.len() <= 4_096, "{}", kept.len());
    assert_eq!(*kept.last().unwrap(), b'9', "the tail is kept");
    let mut last = completion("w", &a.attempt, Outcome::Succeeded, vec![]);
    last.report.logs = vec![LogChunk {
        stderr: false,
        data: b"end".to_vec(),
    }];
    last.log_limit = 4_096;
    store.complete(last, None, T0 + 1).await.unwrap();
    let page = store.read_logs(&a.attempt, 0).await.unwrap();
    assert!(page.finished);
    assert_eq!(page.chunks.last().unwrap().1.data, b"end");
}

async fn queue_stats_count_queued_and_running(store: &Arc<dyn Store>) {
    let counts = |stats: Vec<crate::model::QueueStats>| -> Vec<(String, u32, u32)> {
        stats
            .into_iter()
            .filter(|q| q.name.starts_with("stats-"))
            .map(|q| (q.name, q.queued, q.running))
            .collect()
    };
    store
        .submit_job(
            job(
                "stats",
                vec![
                    on_queue(task("a", &[]), "stats-b"),
                    on_queue(task("b", &[]), "stats-b"),
                    on_queue(task("c", &[]), "stats-a"),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    let mut req = claim_req("w", 1);
    req.queues = vec!["stats-b".into()];
    let claimed = store.claim(req, T0).await.unwrap();
    assert_eq!(claimed.assignments.len(), 1);
    let expected = |b_running| {
        vec![
            ("stats-a".to_string(), 1, 0),
            ("stats-b".to_string(), 1, b_running),
        ]
    };
    assert_eq!(
        counts(store.queue_stats().await.unwrap()),
        expected(1),
        "per queue, in name order"
    );
    end(
        store,
        "w",
        &claimed.assignments[0].attempt,
        Outcome::Succeeded,
        T0,
    )
    .await
    .unwrap();
    assert_eq!(
        counts(store.queue_stats().await.unwrap()),
        expected(0),
        "a finished task counts no more"
    );
}
