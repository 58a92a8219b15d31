//! The conformance suite every `Store` backend must pass: the transitions of DESIGN.md
//! (claim, fencing, DAG release, retries, lost attempts, cancel, hand-back, timeouts, logs),
//! written once against the trait, and instantiated per backend with
//! [`store_conformance_suite!`]: one test per scenario, each on a fresh database.
//! `basics.rs` holds the core transitions, `early.rs` the claims handed out before their
//! transaction is durable, `recovery.rs` work taken back (lost, cancelled, handed back, timed
//! out), `outputs.rs` and `watermarks.rs` published outputs and extracts, `agents.rs` agents'
//! liveness, `placement.rs` datasources and failures no retry can fix, `pipelines.rs`
//! pipelines' versions and runs, `triggers.rs` webhook triggers, `races.rs` two controllers
//! racing on one database.

mod agents;
mod basics;
mod departures;
mod early;
mod outputs;
mod pipelines;
mod placement;
mod races;
mod recovery;
mod triggers;
mod watermarks;

pub(crate) use agents::*;
pub(crate) use basics::*;
pub(crate) use departures::*;
pub(crate) use early::*;
pub(crate) use outputs::*;
pub(crate) use pipelines::*;
pub(crate) use placement::*;
pub(crate) use races::*;
pub(crate) use recovery::*;
pub(crate) use triggers::*;
pub(crate) use watermarks::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;

use super::{ClaimRequest, Completion, Effects, Store, StoreError};
use crate::model::{
    AgentState, AttemptFinish, AttemptKey, AttemptReport, AttemptState, Backfill, ExtractColumn,
    ExtractInfo, ExtractRange, JobState, LogChunk, NewJob, Outcome, OutputFile, RetryPolicy,
    TaskKind, TaskSpec, TaskState,
};

/// A backend under test: each value is one fresh, empty database, which `open` opens as many
/// times as asked, each a handle of its own, as separate controllers sharing that database
/// would (two `open`s are two controllers).
#[async_trait]
pub(crate) trait TestBackend: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
}

/// One `#[tokio::test]` per conformance scenario, each on a fresh database: `$backend` is an
/// async expression of a `Box<dyn TestBackend>`, evaluated once per test. Invoke it inside a
/// module of the backend's tests:
///
/// ```ignore
/// mod conformance {
///     crate::store::conformance::store_conformance_suite!(super::fresh_backend());
/// }
/// ```
macro_rules! store_conformance_suite {
    ($backend:expr) => {
        $crate::store::conformance::store_conformance_suite!(@store $backend;
            claims_need_a_live_session,
            submit_serves_parked_claims,
            completion_hands_its_claims_early,
            dag_runs_in_order,
            failure_skips_downstream_and_fails_job,
            retries_after_backoff,
            lost_attempts_are_fenced_and_requeued,
            labels_route_tasks,
            sql_tasks_go_only_to_agents_with_their_datasource,
            a_failure_no_retry_can_fix_ends_its_task_at_once,
            unstarted_tasks_past_their_timeout_fail_finally,
            cancel_stops_running_attempts,
            job_summaries_count_tasks_by_how_they_ended,
            release_requeues_without_counting,
            controller_times_out_unreported_attempts,
            idempotency_key_returns_the_same_job,
            logs_keep_a_bounded_tail,
            outputs_publish_with_the_success_and_become_inputs,
            fenced_or_failed_completions_publish_nothing,
            retention_reads_job_ends_and_forgets_outputs,
            watermarks_move_only_with_a_current_success,
            backfills_extract_a_range_and_leave_the_watermark,
            watermarks_are_set_and_reset_by_hand,
            queue_stats_count_queued_and_running,
            agents_are_touched_and_found_silent,
            a_live_name_is_refused_to_another_agent_and_kept_by_its_own,
            departed_agents_are_drained_or_dead_and_forgotten,
            attempts_an_agent_gave_up_are_lost_with_its_reason,
            pipelines_apply_once_per_content_and_versions_only_grow,
            pipeline_runs_are_recorded_with_their_job_once_per_time_or_key,
            triggers_name_a_live_pipeline_once_and_keep_their_secret);
        $crate::store::conformance::store_conformance_suite!(@backend $backend;
            two_controllers_never_hand_out_an_attempt_twice,
            a_completion_racing_agent_death_ends_one_way,
            two_controllers_declaring_one_death_requeue_once,
            two_controllers_applying_or_firing_one_pipeline_make_one);
    };
    (@store $backend:expr; $($scenario:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let backend: Box<dyn $crate::store::conformance::TestBackend> = $backend.await;
                let store = backend.open().await;
                $crate::store::conformance::$scenario(&store).await;
            }
        )+
    };
    (@backend $backend:expr; $($scenario:ident),+) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $scenario() {
                let backend: Box<dyn $crate::store::conformance::TestBackend> = $backend.await;
                $crate::store::conformance::$scenario(backend.as_ref()).await;
            }
        )+
    };
}
pub(crate) use store_conformance_suite;

/// Every scenario in turn on one store, which must be empty; the two-controller scenarios get
/// that one handle twice. Kept until every backend instantiates [`store_conformance_suite!`];
/// lists the same scenarios.
pub async fn run_all(store: Arc<dyn Store>) {
    claims_need_a_live_session(&store).await;
    submit_serves_parked_claims(&store).await;
    completion_hands_its_claims_early(&store).await;
    dag_runs_in_order(&store).await;
    failure_skips_downstream_and_fails_job(&store).await;
    retries_after_backoff(&store).await;
    lost_attempts_are_fenced_and_requeued(&store).await;
    labels_route_tasks(&store).await;
    sql_tasks_go_only_to_agents_with_their_datasource(&store).await;
    a_failure_no_retry_can_fix_ends_its_task_at_once(&store).await;
    unstarted_tasks_past_their_timeout_fail_finally(&store).await;
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
    agents_are_touched_and_found_silent(&store).await;
    a_live_name_is_refused_to_another_agent_and_kept_by_its_own(&store).await;
    departed_agents_are_drained_or_dead_and_forgotten(&store).await;
    attempts_an_agent_gave_up_are_lost_with_its_reason(&store).await;
    pipelines_apply_once_per_content_and_versions_only_grow(&store).await;
    pipeline_runs_are_recorded_with_their_job_once_per_time_or_key(&store).await;
    triggers_name_a_live_pipeline_once_and_keep_their_secret(&store).await;
    let shared = Shared(store);
    two_controllers_never_hand_out_an_attempt_twice(&shared).await;
    a_completion_racing_agent_death_ends_one_way(&shared).await;
    two_controllers_declaring_one_death_requeue_once(&shared).await;
    two_controllers_applying_or_firing_one_pipeline_make_one(&shared).await;
}

/// A backend of one store handle, opened again as itself.
struct Shared(Arc<dyn Store>);

#[async_trait]
impl TestBackend for Shared {
    async fn open(&self) -> Arc<dyn Store> {
        self.0.clone()
    }
}

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
        schedule_to_start_timeout_ms: 0,
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
        instance: "i".into(),
        live_after: 0,
    }
}

/// Registers these agents (session `NAME-1`, queue `q`), unless one already is, ready, under
/// that session.
async fn agents(store: &Arc<dyn Store>, names: &[&str]) {
    for name in names {
        let reg = registration(name);
        match store.get_agent(name).await.unwrap() {
            Some(a) if a.session == reg.session && a.state == AgentState::Ready => {}
            _ => {
                store.register_agent(reg, T0).await.unwrap();
            }
        }
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
