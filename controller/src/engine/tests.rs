//! The engine with two controllers on one store (two engines on one SQLite file): any
//! controller answers any agent's session, orders reach the agent wherever it polls, and
//! assignments that never reached an agent are taken back.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::*;
use crate::artifacts::Artifacts;
use crate::model::{AttemptState, NewJob, RetryPolicy, TaskKind, TaskSpec};
use crate::store::Store;

async fn engine(dir: &std::path::Path, agent_timeout: Duration) -> Arc<Engine> {
    engine_on(dir, agent_timeout, crate::clock::Clock::system()).await
}

async fn engine_on(
    dir: &std::path::Path,
    agent_timeout: Duration,
    clock: crate::clock::Clock,
) -> Arc<Engine> {
    let store: Arc<dyn Store> = Arc::new(
        crate::store::sqlite::SqliteStore::open(&dir.join("ferry.db"))
            .await
            .unwrap(),
    );
    let artifacts = Arc::new(Artifacts::open(&dir.join("artifacts"), 1 << 30).unwrap());
    let config = EngineConfig {
        agent_timeout,
        log_limit: 1 << 20,
        timeout_grace: Duration::from_secs(10),
        max_poll_wait: Duration::from_millis(200),
    };
    Arc::new(
        Engine::new(config, clock, store, artifacts, CancellationToken::new())
            .await
            .unwrap(),
    )
}

async fn register(engine: &Engine, name: &str) -> Identity {
    let session = engine
        .register(
            name.into(),
            vec!["q".into()],
            BTreeMap::new(),
            4,
            "h".into(),
            "v".into(),
            "i".into(),
        )
        .await
        .unwrap();
    Identity {
        name: name.into(),
        session,
    }
}

fn one_task_job() -> NewJob {
    NewJob {
        name: "j".into(),
        params: BTreeMap::new(),
        tasks: vec![TaskSpec {
            id: "t".into(),
            queue: "q".into(),
            labels: BTreeMap::new(),
            depends_on: vec![],
            kind: TaskKind::Shell {
                command: "true".into(),
            },
            outputs: vec![],
            timeout_ms: 0,
            schedule_to_start_timeout_ms: 0,
            retry: RetryPolicy {
                max_attempts: 3,
                initial_delay_ms: 1,
                max_delay_ms: 1,
            },
        }],
        idempotency_key: None,
        backfill: BTreeMap::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_registered_on_one_controller_is_served_by_another() {
    let dir = tempfile::tempdir().unwrap();
    let a = engine(dir.path(), Duration::from_secs(15)).await;
    let b = engine(dir.path(), Duration::from_secs(15)).await;
    let who = register(&a, "agent").await;
    b.heartbeat(&who, &[], None).await.unwrap();
    let job = a.submit(one_task_job()).await.unwrap();
    let orders = b.poll(&who, 1, &[], Duration::from_secs(2)).await.unwrap();
    assert_eq!(orders.assignments.len(), 1);
    assert_eq!(orders.assignments[0].attempt.job_id, job.job_id);
    // A session the store does not hold is refused on either.
    let stranger = Identity {
        name: "agent".into(),
        session: "made-up".into(),
    };
    assert!(matches!(
        b.heartbeat(&stranger, &[], None).await,
        Err(EngineError::UnknownSession(_))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_ordered_through_one_controller_reaches_the_agent_on_another() {
    let dir = tempfile::tempdir().unwrap();
    let a = engine(dir.path(), Duration::from_secs(15)).await;
    let b = engine(dir.path(), Duration::from_secs(15)).await;
    let who = register(&b, "agent").await;
    assert!(!b.heartbeat(&who, &[], None).await.unwrap().drain);
    a.drain("agent").await.unwrap();
    // SQLite's notifier is in-process, so b learns it from the store when its cache is
    // brought in line (lease_writer) or an order wakes it; here: the cache is reconciled.
    b.local
        .liveness
        .reconcile(&b.store.list_agents().await.unwrap());
    assert!(b.heartbeat(&who, &[], None).await.unwrap().drain);
}

#[tokio::test(start_paused = true)]
async fn an_assignment_the_agent_never_lists_is_lost_after_the_agent_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let timeout = Duration::from_millis(300);
    let e = engine_on(
        dir.path(),
        timeout,
        crate::clock::Clock::starting_at(1_700_000_000_000),
    )
    .await;
    let who = register(&e, "agent").await;
    let job = e.submit(one_task_job()).await.unwrap();
    let orders = e.poll(&who, 1, &[], Duration::from_secs(2)).await.unwrap();
    assert_eq!(orders.assignments.len(), 1);
    // The agent never got it: its heartbeats list nothing.
    e.heartbeat(&who, &[], None).await.unwrap();
    tokio::time::advance(timeout * 2).await;
    e.heartbeat(&who, &[], None).await.unwrap();
    let record = e.job(&job.job_id).await.unwrap();
    let attempts = &record.tasks[0].attempts;
    assert_eq!(attempts[0].state, AttemptState::Lost, "{attempts:?}");
}
