//! The conformance suite every `Store` backend must pass: the transitions of DESIGN.md
//! (claim, fencing, DAG release, retries, lost attempts, cancel, hand-back, timeouts, logs),
//! written once against the trait. Each backend's tests call `run_all` on a fresh store.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{ClaimRequest, Completion, Store, StoreError};
use crate::model::{
    AttemptFinish, AttemptKey, AttemptState, Backfill, ExtractColumn, ExtractInfo, ExtractRange,
    JobState, LogChunk, NewJob, Outcome, OutputFile, RetryPolicy, TaskKind, TaskSpec, TaskState,
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

/// Runs every scenario on `store`, which must be empty.
pub async fn run_all(store: Arc<dyn Store>) {
    for agent in ["w", "w2", "other", "plain", "dc1-agent"] {
        store.register_agent(registration(agent), T0).await.unwrap();
    }
    claims_need_a_live_session(&store).await;
    submit_serves_parked_claims(&store).await;
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
}

fn outputs_agent(name: &str) -> (super::AgentRegistration, ClaimRequest) {
    let mut reg = registration(name);
    reg.queues = vec!["outputs".into()];
    let mut claim = claim_req(name, 4);
    claim.queues = vec!["outputs".into()];
    (reg, claim)
}

fn on_queue(mut spec: TaskSpec, queue: &str) -> TaskSpec {
    spec.queue = queue.into();
    spec
}

fn file(name: &str, size: u64) -> OutputFile {
    OutputFile {
        name: name.into(),
        size,
        sha256: format!("{:064x}", size),
    }
}

fn completion(
    agent: &str,
    key: &AttemptKey,
    outcome: Outcome,
    outputs: Vec<OutputFile>,
) -> Completion {
    Completion {
        finish: finish(agent, key, outcome),
        outputs,
        extract: None,
        logs: vec![],
        dropped_bytes: 0,
        log_limit: 1024,
    }
}

async fn outputs_publish_with_the_success_and_become_inputs(store: &Arc<dyn Store>) {
    let (reg, claim) = outputs_agent("out-a");
    store.register_agent(reg, T0).await.unwrap();
    let id = store
        .submit_job(
            job(
                "outputs",
                vec![
                    on_queue(task("extract", &[]), "outputs"),
                    on_queue(task("other", &[]), "outputs"),
                    on_queue(task("load", &["extract"]), "outputs"),
                ],
            ),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let claimed = store.claim(claim.clone(), T0).await.unwrap().assignments;
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed.iter().all(|a| a.inputs.is_empty()),
        "roots have no inputs"
    );
    let extract = claimed.iter().find(|a| a.task.id == "extract").unwrap();
    let other = claimed.iter().find(|a| a.task.id == "other").unwrap();
    store
        .check_attempt("out-a", &extract.attempt)
        .await
        .unwrap();
    assert!(matches!(
        store.check_attempt("w", &extract.attempt).await,
        Err(StoreError::Fenced { .. })
    ));
    let files = vec![
        file("rows.csv", 10),
        file("empty", 0),
        file("sub/meta.json", 3),
    ];
    store
        .complete(
            completion("out-a", &extract.attempt, Outcome::Succeeded, files.clone()),
            None,
            T0 + 5,
        )
        .await
        .unwrap();
    let listed = store.list_outputs(&id, Some("extract")).await.unwrap();
    let names: Vec<_> = listed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["empty", "rows.csv", "sub/meta.json"]);
    assert!(listed.iter().all(|f| f.attempt == extract.attempt.attempt
        && f.task_id == "extract"
        && f.created_at == T0 + 5));
    let rows = listed.iter().find(|f| f.name == "rows.csv").unwrap();
    assert_eq!(
        (rows.size, rows.sha256.clone()),
        (10, files[0].sha256.clone())
    );
    assert_eq!(store.list_outputs(&id, None).await.unwrap().len(), 3);
    assert!(store
        .list_outputs(&id, Some("other"))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.list_outputs(&id, Some("nope")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.list_outputs("no-such-job", None).await,
        Err(StoreError::NotFound(_))
    ));
    // The dependent's claim carries the published outputs of its dependency.
    let (effects, next) = store
        .complete(
            completion("out-a", &other.attempt, Outcome::Succeeded, vec![]),
            Some(claim.clone()),
            T0 + 6,
        )
        .await
        .unwrap();
    assert!(effects.jobs.contains(&id));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].task.id, "load");
    assert_eq!(next[0].inputs, listed);
    assert_eq!(
        store.task_dependencies(&id, "load").await.unwrap(),
        vec!["extract".to_string()]
    );
    assert!(store
        .task_dependencies(&id, "extract")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.task_dependencies(&id, "nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .running_attempts(vec![extract.attempt.clone(), next[0].attempt.clone()])
            .await
            .unwrap(),
        vec![next[0].attempt.clone()]
    );
    store
        .finish_attempt(
            finish("out-a", &next[0].attempt, Outcome::Succeeded),
            vec![],
            0,
            1024,
            T0 + 7,
        )
        .await
        .unwrap();
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Succeeded);
}

async fn fenced_or_failed_completions_publish_nothing(store: &Arc<dyn Store>) {
    let (reg, claim) = outputs_agent("out-b");
    store.register_agent(reg.clone(), T0).await.unwrap();
    let mut spec = on_queue(task("t", &[]), "outputs");
    spec.retry.max_attempts = 3;
    spec.retry.initial_delay_ms = 0;
    spec.retry.max_delay_ms = 0;
    let id = store
        .submit_job(job("unpublished", vec![spec]), T0)
        .await
        .unwrap()
        .job_id;
    let first = store.claim(claim.clone(), T0).await.unwrap().assignments;
    assert_eq!(first.len(), 1);
    // The agent comes back under a new session: its attempt is lost, its success fenced.
    let mut again = reg.clone();
    again.session = "out-b-2".into();
    store.register_agent(again, T0 + 1).await.unwrap();
    let err = store
        .complete(
            completion(
                "out-b",
                &first[0].attempt,
                Outcome::Succeeded,
                vec![file("x", 1)],
            ),
            None,
            T0 + 2,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(store.list_outputs(&id, None).await.unwrap().is_empty());
    // A failed attempt records no outputs even when it names some.
    let mut claim = claim;
    claim.session = "out-b-2".into();
    let second = store.claim(claim, T0 + 3).await.unwrap().assignments;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt.attempt, 2);
    store
        .complete(
            completion(
                "out-b",
                &second[0].attempt,
                Outcome::Failed,
                vec![file("x", 1)],
            ),
            None,
            T0 + 4,
        )
        .await
        .unwrap();
    assert!(store.list_outputs(&id, None).await.unwrap().is_empty());
}

async fn retention_reads_job_ends_and_forgets_outputs(store: &Arc<dyn Store>) {
    let jobs = store.list_jobs(None, 1000).await.unwrap();
    let outputs = jobs.iter().find(|j| j.name == "outputs").unwrap();
    let pending = store
        .submit_job(
            job("pending", vec![on_queue(task("p", &[]), "nobody-serves")]),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let ends = store
        .job_ends(vec![outputs.id.clone(), pending.clone(), "unknown".into()])
        .await
        .unwrap();
    assert_eq!(ends.len(), 2);
    assert_eq!(ends[&outputs.id], Some(T0 + 7));
    assert_eq!(ends[&pending], None);
    assert_eq!(store.delete_outputs(&outputs.id).await.unwrap(), 3);
    assert!(store
        .list_outputs(&outputs.id, None)
        .await
        .unwrap()
        .is_empty());
    assert_eq!(store.delete_outputs(&outputs.id).await.unwrap(), 0);
    store.cancel_job(&pending, T0).await.unwrap();
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
    store
        .finish_attempt(
            finish("w", &a.attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0,
        )
        .await
        .unwrap();
}

async fn submit_serves_parked_claims(store: &Arc<dyn Store>) {
    let mut elsewhere = claim_req("other", 1);
    elsewhere.queues = vec!["elsewhere".into()];
    let (submitted, claimed) = store
        .submit_and_claim(
            job("parked", vec![task("a", &[]), task("b", &[])]),
            vec![elsewhere, claim_req("w", 1), claim_req("w2", 4)],
            T0,
        )
        .await
        .unwrap();
    assert!(!submitted.existing);
    assert_eq!(claimed.len(), 3, "one answer per claim, in order");
    assert!(
        claimed[0].assignments.is_empty(),
        "another queue gets nothing"
    );
    assert_eq!(claimed[1].assignments.len(), 1, "at most `max`");
    assert_eq!(claimed[2].assignments.len(), 1, "what is left");
    let mut tasks: Vec<_> = claimed[1..]
        .iter()
        .map(|c| c.assignments[0].attempt.clone())
        .collect();
    tasks.sort_by(|x, y| x.task_id.cmp(&y.task_id));
    assert_eq!(tasks[0].job_id, submitted.job_id);
    assert_eq!(
        (tasks[0].task_id.as_str(), tasks[1].task_id.as_str()),
        ("a", "b")
    );
    for (agent, key) in [("w", &claimed[1]), ("w2", &claimed[2])] {
        let key = &key.assignments[0].attempt;
        assert_eq!(
            task_state(store, &submitted.job_id, &key.task_id).await,
            TaskState::Running
        );
        store
            .finish_attempt(
                finish(agent, key, Outcome::Succeeded),
                vec![],
                0,
                1 << 20,
                T0,
            )
            .await
            .unwrap();
    }
    assert_eq!(
        store.get_job(&submitted.job_id).await.unwrap().state,
        JobState::Succeeded
    );
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
    store
        .finish_attempt(
            finish("w", &first[0].attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0 + 1,
        )
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
    store
        .finish_attempt(
            finish("w", &second[0].attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0 + 3,
        )
        .await
        .unwrap();
    let third = store
        .claim(claim_req("w", 8), T0 + 4)
        .await
        .unwrap()
        .assignments;
    assert_eq!(third[0].attempt.task_id, "c");
    store
        .finish_attempt(
            finish("w", &third[0].attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0 + 5,
        )
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
        store
            .finish_attempt(finish("w", &a.attempt, outcome), vec![], 0, 1 << 20, T0 + 1)
            .await
            .unwrap();
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
    store
        .finish_attempt(
            finish("w", &a1.attempt, Outcome::Failed),
            vec![],
            0,
            1 << 20,
            T0,
        )
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
    store
        .finish_attempt(
            finish("w", &a2.attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0 + 1_001,
        )
        .await
        .unwrap();
    let done = store.get_job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let states: Vec<_> = done.tasks[0].attempts.iter().map(|a| a.state).collect();
    assert_eq!(states, vec![AttemptState::Failed, AttemptState::Succeeded]);
}

async fn lost_attempts_are_fenced_and_requeued(store: &Arc<dyn Store>) {
    let mut t = task("l", &[]);
    t.retry.max_attempts = 2;
    let id = store
        .submit_job(job("lost", vec![t]), T0)
        .await
        .unwrap()
        .job_id;
    store
        .register_agent(registration("dying"), T0)
        .await
        .unwrap();
    let a1 = store
        .claim(claim_req("dying", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    let effects = store.agent_dead("dying", "dying-1", T0 + 10).await.unwrap();
    assert!(effects.queued);
    let stale = store
        .stale_attempts("dying", std::slice::from_ref(&a1.attempt))
        .await
        .unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].reason, "lost");
    let late = store
        .finish_attempt(
            finish("dying", &a1.attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0 + 11,
        )
        .await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    let a2 = store
        .claim(claim_req("other", 1), T0 + 12)
        .await
        .unwrap()
        .assignments
        .remove(0);
    assert_eq!(
        a2.attempt.attempt, 2,
        "requeued at once, with a higher number"
    );
    let stale_log = store
        .append_logs(
            "dying",
            &a1.attempt,
            vec![LogChunk {
                stderr: false,
                data: b"x".to_vec(),
            }],
            0,
            1 << 20,
        )
        .await;
    assert!(matches!(stale_log, Err(StoreError::Fenced { .. })));
    store
        .finish_attempt(
            finish("other", &a2.attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0 + 13,
        )
        .await
        .unwrap();
    let done = store.get_job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.tasks[0].attempts[0].state, AttemptState::Lost);
    assert_eq!(done.tasks[0].attempts[0].agent, "dying");
    let agents = store.list_agents().await.unwrap();
    assert_eq!(
        agents.iter().find(|a| a.name == "dying").unwrap().state,
        crate::model::AgentState::Dead
    );
}

async fn labels_route_tasks(store: &Arc<dyn Store>) {
    let mut t = task("local", &[]);
    t.labels.insert("site".into(), "dc1".into());
    store.submit_job(job("labels", vec![t]), T0).await.unwrap();
    assert!(store
        .claim(claim_req("plain", 4), T0)
        .await
        .unwrap()
        .assignments
        .is_empty());
    let mut req = claim_req("dc1-agent", 4);
    req.labels.insert("site".into(), "dc1".into());
    let got = store.claim(req, T0).await.unwrap().assignments;
    assert_eq!(got.len(), 1);
    store
        .finish_attempt(
            finish("dc1-agent", &got[0].attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0,
        )
        .await
        .unwrap();
}

async fn cancel_stops_running_attempts(store: &Arc<dyn Store>) {
    let id = store
        .submit_job(job("cancel", vec![task("a", &[]), task("b", &["a"])]), T0)
        .await
        .unwrap()
        .job_id;
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    let cancelled = store.cancel_job(&id, T0 + 1).await.unwrap();
    assert!(cancelled.cancelled);
    assert_eq!(cancelled.running.len(), 1);
    assert_eq!(cancelled.running[0].attempt, a.attempt);
    assert_eq!(task_state(store, &id, "b").await, TaskState::Cancelled);
    let stale = store
        .stale_attempts("w", std::slice::from_ref(&a.attempt))
        .await
        .unwrap();
    assert_eq!(stale[0].reason, "cancelled");
    assert!(
        !store.cancel_job(&id, T0 + 2).await.unwrap().cancelled,
        "a second cancel changes nothing"
    );
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Cancelled);
}

async fn release_requeues_without_counting(store: &Arc<dyn Store>) {
    let id = store
        .submit_job(job("release", vec![task("a", &[])]), T0)
        .await
        .unwrap()
        .job_id;
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    store
        .release_attempts("w", std::slice::from_ref(&a.attempt), T0 + 1)
        .await
        .unwrap();
    let again = store
        .claim(claim_req("w2", 1), T0 + 1)
        .await
        .unwrap()
        .assignments
        .remove(0);
    assert_eq!(
        again.attempt.attempt, 2,
        "max_attempts = 1, yet the hand-back did not count"
    );
    store
        .finish_attempt(
            finish("w2", &again.attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0 + 2,
        )
        .await
        .unwrap();
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Succeeded);
}

async fn controller_times_out_unreported_attempts(store: &Arc<dyn Store>) {
    let mut t = task("slow", &[]);
    t.timeout_ms = 1_000;
    let id = store
        .submit_job(job("timeout", vec![t]), T0)
        .await
        .unwrap()
        .job_id;
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    assert!(
        store
            .expire_attempts(T0 + 1_500, 1_000)
            .await
            .unwrap()
            .stop
            .is_empty(),
        "within grace"
    );
    let effects = store.expire_attempts(T0 + 2_001, 1_000).await.unwrap();
    assert_eq!(effects.stop.len(), 1);
    assert_eq!(effects.stop[0].attempt, a.attempt);
    let done = store.get_job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Failed);
    assert_eq!(done.tasks[0].attempts[0].state, AttemptState::TimedOut);
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
    store
        .finish_attempt(
            finish("w", &a.attempt, Outcome::Succeeded),
            vec![],
            0,
            1 << 20,
            T0 + 4,
        )
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
    store
        .finish_attempt(
            finish("w", &a.attempt, Outcome::Succeeded),
            vec![LogChunk {
                stderr: false,
                data: b"end".to_vec(),
            }],
            0,
            4_096,
            T0 + 1,
        )
        .await
        .unwrap();
    let page = store.read_logs(&a.attempt, 0).await.unwrap();
    assert!(page.finished);
    assert_eq!(page.chunks.last().unwrap().1.data, b"end");
}

fn incremental(id: &str) -> TaskSpec {
    let mut spec = on_queue(task(id, &[]), "wm");
    spec.kind = TaskKind::Sql {
        datasource: "orders".into(),
        query: "select * from orders".into(),
        format: "csv".into(),
        incremental_column: "updated_at".into(),
        compression: "gzip".into(),
        max_rows_per_file: 1000,
    };
    spec.retry = RetryPolicy {
        max_attempts: 5,
        initial_delay_ms: 0,
        max_delay_ms: 0,
    };
    spec
}

fn wm_agent(session: &str) -> (super::AgentRegistration, ClaimRequest) {
    let mut reg = registration("wm");
    reg.queues = vec!["wm".into()];
    reg.session = session.into();
    let mut claim = claim_req("wm", 4);
    claim.queues = vec!["wm".into()];
    claim.session = session.into();
    (reg, claim)
}

fn extracted(rows: u64, watermark: Option<&str>, backfill: bool) -> ExtractInfo {
    ExtractInfo {
        rows,
        bytes: rows * 10,
        files: vec!["extract.csv.gz".into()],
        columns: vec![ExtractColumn {
            name: "updated_at".into(),
            source_type: "timestamptz".into(),
            file_type: "string".into(),
            nullable: false,
        }],
        watermark: watermark.map(str::to_string),
        incremental_column: "updated_at".into(),
        backfill,
    }
}

fn with_extract(mut c: Completion, extract: ExtractInfo) -> Completion {
    c.extract = Some(extract);
    c
}

async fn stored_mark(store: &Arc<dyn Store>, job: &str, task: &str) -> Option<String> {
    store
        .list_watermarks(Some(job))
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.task_id == task)
        .map(|w| w.value)
}

async fn watermarks_move_only_with_a_current_success(store: &Arc<dyn Store>) {
    let (reg, claim) = wm_agent("wm-1");
    store.register_agent(reg, T0).await.unwrap();
    let mut load = on_queue(task("load", &["extract"]), "wm");
    load.retry.max_attempts = 1;
    let id = store
        .submit_job(job("wm-job", vec![incremental("extract"), load]), T0)
        .await
        .unwrap()
        .job_id;
    assert!(store
        .list_watermarks(Some("wm-job"))
        .await
        .unwrap()
        .is_empty());
    let first = store.claim(claim.clone(), T0).await.unwrap().assignments;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].extract_range,
        Some(ExtractRange::default()),
        "no watermark yet: from the start, the agent fixes the upper bound"
    );
    match &first[0].task.kind {
        TaskKind::Sql {
            compression,
            max_rows_per_file,
            ..
        } => assert_eq!((compression.as_str(), *max_rows_per_file), ("gzip", 1000)),
        other => panic!("{other:?}"),
    }
    // A failure that reports an extract moves nothing and records nothing.
    store
        .complete(
            with_extract(
                completion("wm", &first[0].attempt, Outcome::Failed, vec![]),
                extracted(3, Some("10"), false),
            ),
            None,
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(stored_mark(store, "wm-job", "extract").await, None);
    // A lost attempt's late success is fenced: nothing moves.
    let second = store
        .claim(claim.clone(), T0 + 2)
        .await
        .unwrap()
        .assignments;
    assert_eq!(second[0].attempt.attempt, 2);
    store.agent_dead("wm", "wm-1", T0 + 3).await.unwrap();
    let late = store
        .complete(
            with_extract(
                completion("wm", &second[0].attempt, Outcome::Succeeded, vec![]),
                extracted(3, Some("10"), false),
            ),
            None,
            T0 + 4,
        )
        .await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    assert_eq!(stored_mark(store, "wm-job", "extract").await, None);
    assert!(store.list_extracts(&id, None).await.unwrap().is_empty());
    // The current attempt's success sets it, in the same transaction as the success.
    let (reg, claim) = wm_agent("wm-2");
    store.register_agent(reg, T0 + 5).await.unwrap();
    let third = store
        .claim(claim.clone(), T0 + 5)
        .await
        .unwrap()
        .assignments;
    assert_eq!(third[0].attempt.attempt, 3);
    assert_eq!(third[0].extract_range, Some(ExtractRange::default()));
    let (_, next) = store
        .complete(
            with_extract(
                completion("wm", &third[0].attempt, Outcome::Succeeded, vec![]),
                extracted(3, Some("10"), false),
            ),
            Some(claim.clone()),
            T0 + 6,
        )
        .await
        .unwrap();
    let marks = store.list_watermarks(Some("wm-job")).await.unwrap();
    assert_eq!(marks.len(), 1);
    let mark = &marks[0];
    assert_eq!(
        (
            mark.column.as_str(),
            mark.value.as_str(),
            mark.job_id.as_deref(),
            mark.attempt,
            mark.updated_at
        ),
        ("updated_at", "10", Some(id.as_str()), 3, T0 + 6)
    );
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].task.id, "load");
    assert_eq!(next[0].extract_range, None, "shell tasks get no range");
    let record = store.get_job(&id).await.unwrap();
    let extract_task = record
        .tasks
        .iter()
        .find(|t| t.spec.id == "extract")
        .unwrap();
    assert_eq!(extract_task.extract, Some(extracted(3, Some("10"), false)));
    assert_eq!(
        record
            .tasks
            .iter()
            .find(|t| t.spec.id == "load")
            .unwrap()
            .extract,
        None
    );
    let listed = store.list_extracts(&id, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].task_id.as_str(), listed[0].attempt),
        ("extract", 3)
    );
    assert!(store
        .list_extracts(&id, Some("load"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.list_extracts(&id, Some("extract")).await.unwrap(),
        listed
    );
    assert!(matches!(
        store.list_extracts(&id, Some("nope")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.list_extracts("no-such-job", None).await,
        Err(StoreError::NotFound(_))
    ));
    store
        .finish_attempt(
            finish("wm", &next[0].attempt, Outcome::Succeeded),
            vec![],
            0,
            1024,
            T0 + 7,
        )
        .await
        .unwrap();

    // The next run of the same job name starts past it; a success with no rows (no
    // watermark) leaves it, a lost attempt leaves it and its retry gets the same range.
    let run2 = store
        .submit_job(job("wm-job", vec![incremental("extract")]), T0 + 8)
        .await
        .unwrap()
        .job_id;
    let a = store
        .claim(claim.clone(), T0 + 8)
        .await
        .unwrap()
        .assignments;
    let after_10 = Some(ExtractRange {
        after: Some("10".into()),
        until: None,
        backfill: false,
    });
    assert_eq!(a[0].extract_range, after_10);
    store.agent_dead("wm", "wm-2", T0 + 9).await.unwrap();
    assert_eq!(
        stored_mark(store, "wm-job", "extract").await.as_deref(),
        Some("10")
    );
    let (reg, claim) = wm_agent("wm-3");
    store.register_agent(reg, T0 + 10).await.unwrap();
    let retry = store
        .claim(claim.clone(), T0 + 10)
        .await
        .unwrap()
        .assignments;
    assert_eq!(retry[0].attempt.attempt, 2);
    assert_eq!(
        retry[0].extract_range, after_10,
        "the retry extracts the same range"
    );
    store
        .complete(
            with_extract(
                completion("wm", &retry[0].attempt, Outcome::Succeeded, vec![]),
                extracted(0, None, false),
            ),
            None,
            T0 + 11,
        )
        .await
        .unwrap();
    assert_eq!(
        stored_mark(store, "wm-job", "extract").await.as_deref(),
        Some("10")
    );
    assert_eq!(
        store.get_job(&run2).await.unwrap().state,
        JobState::Succeeded
    );
    assert!(matches!(
        store.list_watermarks(Some("no-job-of-that-name")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store
        .list_watermarks(None)
        .await
        .unwrap()
        .iter()
        .any(|w| w.job_name == "wm-job" && w.value == "10"));
}

async fn backfills_extract_a_range_and_leave_the_watermark(store: &Arc<dyn Store>) {
    let (_, claim) = wm_agent("wm-3");
    let mut backfilled = job("wm-job", vec![incremental("extract")]);
    backfilled.backfill.insert(
        "extract".into(),
        Backfill {
            from: Some("3".into()),
            until: "7".into(),
        },
    );
    backfilled.idempotency_key = Some("wm-backfill".into());
    let id = store
        .submit_job(backfilled.clone(), T0 + 20)
        .await
        .unwrap()
        .job_id;
    let again = store.submit_job(backfilled.clone(), T0 + 21).await.unwrap();
    assert!(again.existing);
    assert_eq!(again.job_id, id);
    let mut other = backfilled.clone();
    other.backfill.get_mut("extract").unwrap().until = "8".into();
    assert!(
        matches!(
            store.submit_job(other, T0 + 22).await,
            Err(StoreError::Conflict(_))
        ),
        "a different backfill is a different spec"
    );
    let a = store
        .claim(claim.clone(), T0 + 23)
        .await
        .unwrap()
        .assignments;
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].extract_range,
        Some(ExtractRange {
            after: Some("3".into()),
            until: Some("7".into()),
            backfill: true,
        })
    );
    // Even when the agent forgets to say it is a backfill, the job's record decides.
    store
        .complete(
            with_extract(
                completion("wm", &a[0].attempt, Outcome::Succeeded, vec![]),
                extracted(4, Some("7"), false),
            ),
            None,
            T0 + 24,
        )
        .await
        .unwrap();
    assert_eq!(
        stored_mark(store, "wm-job", "extract").await.as_deref(),
        Some("10")
    );
    assert_eq!(
        store.get_job(&id).await.unwrap().tasks[0]
            .extract
            .as_ref()
            .map(|e| e.rows),
        Some(4),
        "a backfill's extract is still recorded"
    );
}

async fn watermarks_are_set_and_reset_by_hand(store: &Arc<dyn Store>) {
    let (_, claim) = wm_agent("wm-3");
    let set = store
        .set_watermark("wm-job", "extract", "15", T0 + 30)
        .await
        .unwrap();
    assert_eq!(
        (
            set.column.as_str(),
            set.value.as_str(),
            set.job_id.clone(),
            set.attempt,
            set.updated_at
        ),
        ("updated_at", "15", None, 0, T0 + 30)
    );
    assert_eq!(
        store.list_watermarks(Some("wm-job")).await.unwrap(),
        vec![set]
    );
    store
        .submit_job(
            job(
                "wm-mixed",
                vec![
                    on_queue(incremental("extract"), "nobody-serves"),
                    task("sh", &[]),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    match store.set_watermark("wm-mixed", "sh", "1", T0).await {
        Err(StoreError::Invalid(why)) => {
            assert!(why.contains("\"sh\"") && why.contains("extract"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    match store.set_watermark("wm-mixed", "zz", "1", T0).await {
        Err(StoreError::NotFound(what)) => assert!(
            what.contains("\"zz\"") && what.contains("wm-mixed"),
            "{what}"
        ),
        other => panic!("{other:?}"),
    }
    match store
        .set_watermark("no-such-name", "extract", "1", T0)
        .await
    {
        Err(StoreError::NotFound(what)) => assert!(what.contains("no-such-name"), "{what}"),
        other => panic!("{other:?}"),
    }
    let next = store
        .submit_job(job("wm-job", vec![incremental("extract")]), T0 + 31)
        .await
        .unwrap()
        .job_id;
    assert!(store.reset_watermark("wm-job", "extract").await.unwrap());
    assert!(!store.reset_watermark("wm-job", "extract").await.unwrap());
    assert!(matches!(
        store.reset_watermark("no-such-name", "extract").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.reset_watermark("wm-job", "zz").await,
        Err(StoreError::NotFound(_))
    ));
    let a = store.claim(claim, T0 + 32).await.unwrap().assignments;
    assert_eq!(a[0].attempt.job_id, next);
    assert_eq!(
        a[0].extract_range,
        Some(ExtractRange::default()),
        "after a reset the next run extracts from the start"
    );
}
