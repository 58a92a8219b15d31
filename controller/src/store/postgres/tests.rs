//! Tests of the PostgreSQL store, each on a fresh database (`TestDb`) of the server named by
//! `FERRY_TEST_POSTGRES_URL`: the shared conformance suite (one test per scenario),
//! migrations, concurrent opens, lost connections, leadership, agent liveness, and
//! concurrent transitions (wake-ups between handles: `notify.rs`).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::test_db::{with_database, TestDb};
use super::PostgresStore;
use crate::model::{HostMetrics, Outcome};
use crate::store::{AgentSeen, Store, StoreError};

/// A fresh database; each `open` is another `PostgresStore` on it (another controller).
struct Fresh(TestDb);

#[async_trait::async_trait]
impl crate::store::conformance::TestBackend for Fresh {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(self.0.open().await)
    }
}

async fn fresh() -> Box<dyn crate::store::conformance::TestBackend> {
    Box::new(Fresh(TestDb::new().await))
}

mod conformance {
    crate::store::conformance::store_conformance_suite!(super::fresh());
}

async fn migrations(db: &TestDb) -> Vec<(i64, String, i64)> {
    db.client()
        .await
        .query(
            "SELECT version, name, applied_at FROM ferry_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect()
}

#[tokio::test]
async fn migrations_applied_twice_change_nothing() {
    let db = TestDb::new().await;
    db.open().await.close().await;
    let first = migrations(&db).await;
    assert_eq!(
        first
            .iter()
            .map(|m| (m.0, m.1.as_str()))
            .collect::<Vec<_>>(),
        [
            (1, "initial"),
            (2, "agent_instance"),
            (3, "pipelines"),
            (4, "start_timeout"),
            (5, "triggers")
        ]
    );
    db.open().await.close().await;
    assert_eq!(migrations(&db).await, first, "nothing applied again");
}

#[tokio::test]
async fn a_newer_schema_is_refused_naming_both_versions() {
    let db = TestDb::new().await;
    db.open().await.close().await;
    db.client()
        .await
        .batch_execute(
            "INSERT INTO ferry_schema_migrations (version, name, applied_at) VALUES (999, 'future', 2)",
        )
        .await
        .unwrap();
    let err = PostgresStore::open(&db.url, None).await.err().unwrap();
    assert!(
        matches!(
            err,
            StoreError::SchemaTooNew { found: 999, known } if known == super::migrate::known()
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("999") && message.contains(&format!(" {} ", super::migrate::known())),
        "{message}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_fresh_database_both_succeed() {
    let db = TestDb::new().await;
    let (a, b) = tokio::join!(
        PostgresStore::open(&db.url, None),
        PostgresStore::open(&db.url, None)
    );
    a.unwrap().close().await;
    b.unwrap().close().await;
    let applied = migrations(&db).await;
    assert_eq!(
        applied.len() as i64,
        super::migrate::known(),
        "each applied once"
    );
}

#[tokio::test]
async fn an_unreachable_server_is_named_without_its_password() {
    let err = PostgresStore::open("postgres://ferry:s3cret@127.0.0.1:1/ferrydb", None)
        .await
        .err()
        .unwrap();
    let message = err.to_string();
    assert!(message.contains("127.0.0.1:1/ferrydb"), "{message}");
    assert!(!message.contains("s3cret"), "{message}");
    let err = PostgresStore::open(
        "postgres://ferry@127.0.0.1:1/ferrydb",
        Some("hunter22".into()),
    )
    .await
    .err()
    .unwrap();
    assert!(!err.to_string().contains("hunter22"), "{err}");
}

#[test]
fn urls_are_redacted() {
    assert_eq!(
        crate::store::redact_url(
            "postgresql://ferry:s3cret@db:5432/ferry?sslmode=disable&password=x1"
        ),
        "postgresql://ferry@db:5432/ferry?sslmode=disable&password=***"
    );
    assert_eq!(
        crate::store::redact_url("postgres://db/ferry"),
        "postgres://db/ferry"
    );
    assert_eq!(
        with_database("postgres://u@h:5432/test?sslmode=disable", "x"),
        "postgres://u@h:5432/x?sslmode=disable"
    );
    assert_eq!(with_database("postgres://u@h", "x"), "postgres://u@h/x");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retryable_failures_are_told_apart() {
    let db = TestDb::new().await;
    let store = db.open().await;
    let conn = store.pool.get().await.unwrap();
    for (code, retryable) in [("40001", true), ("40P01", true), ("23505", false)] {
        let sql = format!("DO $$ BEGIN RAISE EXCEPTION 'boom' USING ERRCODE = '{code}'; END $$");
        let err = conn.batch(&sql).await.unwrap_err();
        assert_eq!(err.is_retryable(), retryable, "{code}: {err}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "{code}: the source is kept"
        );
    }
}

/// Every connection of the store is cut (a server restart, a failover): the next calls are
/// made again on new connections and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_survive_lost_connections() {
    let db = TestDb::new().await;
    let store = db.open().await;
    store.list_jobs(None, 1).await.unwrap();
    let killed = db
        .client()
        .await
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE datname = current_database() AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap();
    assert!(!killed.is_empty(), "the store's connection was there");
    let job = crate::model::NewJob {
        name: "after".into(),
        params: Default::default(),
        tasks: vec![],
        idempotency_key: None,
        backfill: Default::default(),
    };
    let id = store.submit_job(job, 1).await.unwrap().job_id;
    assert_eq!(store.get_job(&id).await.unwrap().name, "after");
}

/// A transaction whose connection is cut midway is made again whole, on a new connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_cut_midway_is_made_again() {
    use super::tx::{backoff, begin, end, Mode, MAX_TRIES};
    use super::Conn;
    let db = TestDb::new().await;
    let store = db.open().await;
    let tries = AtomicU32::new(0);
    let store = &store;
    let written: Result<u64, StoreError> = transaction!(store, Mode::Write, |c| async {
        c.batch("CREATE TABLE IF NOT EXISTS cut (n INT)").await?;
        c.batch("INSERT INTO cut VALUES (1)").await?;
        if tries.fetch_add(1, Ordering::Relaxed) == 0 {
            c.batch("SELECT pg_terminate_backend(pg_backend_pid())")
                .await?;
        }
        c.execute("SELECT 1 FROM cut", &[]).await
    });
    assert_eq!(written.unwrap(), 1, "one row: the first try left nothing");
    assert_eq!(tries.load(Ordering::Relaxed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_frees_roles_and_refuses_calls() {
    let db = TestDb::new().await;
    let (a, b) = (db.open().await, db.open().await);
    let _held = a.lead("reaper").await.unwrap().expect("taken");
    tokio::time::timeout(Duration::from_secs(5), a.close())
        .await
        .expect("close does not wait for the leadership to be dropped");
    assert!(matches!(
        a.list_jobs(None, 1).await,
        Err(StoreError::Closed)
    ));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while b.lead("reaper").await.unwrap().is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the role stayed taken"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_exclusive_and_moves_when_dropped() {
    let db = TestDb::new().await;
    let (a, b) = (db.open().await, db.open().await);
    let mut held = a
        .lead("reaper")
        .await
        .unwrap()
        .expect("a free role is taken");
    assert!(b.lead("reaper").await.unwrap().is_none(), "held elsewhere");
    assert!(
        a.lead("reaper").await.unwrap().is_none(),
        "one holder, even in one process"
    );
    assert!(held.still_held().await);
    let other = b.lead("retention").await.unwrap();
    assert!(other.is_some(), "roles are independent");
    drop(held);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let mut moved = loop {
        if let Some(moved) = b.lead("reaper").await.unwrap() {
            break moved;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the role never moved"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(moved.still_held().await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn touches_extend_live_sessions_and_silence_is_listed() {
    let db = TestDb::new().await;
    let store = db.open().await;
    for name in ["x", "y", "z"] {
        let mut reg = crate::store::AgentRegistration {
            name: name.into(),
            session: format!("{name}-1"),
            queues: vec!["q".into()],
            labels: Default::default(),
            max_tasks: 1,
            hostname: "h".into(),
            version: "v".into(),
            instance: "i".into(),
            live_after: 0,
        };
        store.register_agent(reg.clone(), 1_000).await.unwrap();
        reg.session = format!("{name}-2");
        if name == "z" {
            store.register_agent(reg, 1_000).await.unwrap();
        }
    }
    let metrics = HostMetrics {
        cpu_percent: 12.5,
        memory_used_bytes: 1 << 30,
        ..HostMetrics::default()
    };
    let seen = |name: &str, session: &str, metrics: Option<HostMetrics>| AgentSeen {
        name: name.into(),
        session: session.into(),
        metrics,
    };
    store
        .touch_agents(
            vec![
                seen("x", "x-1", Some(metrics)),
                seen("x", "x-1", None),
                seen("z", "z-1", None),
            ],
            2_000,
        )
        .await
        .unwrap();
    let x = store.get_agent("x").await.unwrap().unwrap();
    assert_eq!((x.seen_at, x.metrics), (2_000, Some(metrics)));
    assert_eq!(
        store.get_agent("z").await.unwrap().unwrap().seen_at,
        1_000,
        "an old session extends nothing"
    );
    assert_eq!(store.get_agent("nobody").await.unwrap(), None);
    store
        .touch_agents(vec![seen("x", "x-1", None)], 1_500)
        .await
        .unwrap();
    let x = store.get_agent("x").await.unwrap().unwrap();
    assert_eq!((x.seen_at, x.metrics), (2_000, Some(metrics)), "never back");
    assert_eq!(
        store.silent_agents(1_500).await.unwrap(),
        [
            ("y".to_string(), "y-1".to_string()),
            ("z".into(), "z-2".into())
        ]
    );
    store.agent_dead("y", "y-1", 3_000).await.unwrap();
    store
        .touch_agents(vec![seen("y", "y-1", None)], 3_000)
        .await
        .unwrap();
    assert_eq!(
        store.silent_agents(2_500).await.unwrap(),
        [
            ("x".to_string(), "x-1".to_string()),
            ("z".into(), "z-2".into())
        ],
        "the dead are neither touched nor listed"
    );
}

/// Many agents finishing tasks of one job at once: one dependent released once, counters
/// exact, no claim of one task twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_and_completions_of_one_job_serialise() {
    use crate::model::TaskSpec;
    let db = TestDb::new().await;
    let store: Arc<dyn Store> = Arc::new(db.open().await);
    const ROOTS: usize = 24;
    let task = |id: String, deps: Vec<String>| {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        super::test_db::shell_task(&id, "q", &deps)
    };
    let roots: Vec<String> = (0..ROOTS).map(|i| format!("r{i:02}")).collect();
    let mut tasks: Vec<TaskSpec> = roots.iter().map(|r| task(r.clone(), vec![])).collect();
    tasks.push(task("last".into(), roots.clone()));
    let job = store
        .submit_job(super::test_db::new_job("wide", tasks), 1)
        .await
        .unwrap()
        .job_id;
    let agents: Vec<String> = (0..8).map(|i| format!("a{i}")).collect();
    for agent in &agents {
        super::test_db::register(&*store, agent, &format!("{agent}-1"), "q", 4).await;
    }
    let workers = agents.iter().map(|agent| {
        let (store, agent) = (store.clone(), agent.clone());
        tokio::spawn(async move {
            let req = crate::store::ClaimRequest {
                agent: agent.clone(),
                session: format!("{agent}-1"),
                queues: vec!["q".into()],
                labels: Default::default(),
                max: 2,
            };
            let mut done = Vec::new();
            let mut next = store.claim(req.clone(), 2).await.unwrap().assignments;
            while let Some(a) = next.pop() {
                let completion = crate::store::Completion {
                    report: crate::model::AttemptReport {
                        finish: crate::model::AttemptFinish {
                            agent: agent.clone(),
                            attempt: a.attempt.clone(),
                            outcome: Outcome::Succeeded,
                            exit_code: Some(0),
                            error: String::new(),
                        },
                        outputs: vec![],
                        extract: None,
                        logs: vec![],
                        dropped_bytes: 0,
                    },
                    log_limit: 1024,
                };
                let (_, more) = store
                    .complete(completion, Some(req.clone()), 3)
                    .await
                    .unwrap();
                next.extend(more);
                done.push(a.attempt.task_id);
            }
            done
        })
    });
    let mut done: Vec<String> = Vec::new();
    for worker in workers.collect::<Vec<_>>() {
        done.extend(worker.await.unwrap());
    }
    done.sort();
    let mut expected = roots.clone();
    expected.push("last".into());
    expected.sort();
    assert_eq!(done, expected, "every task ran once");
    let record = store.get_job(&job).await.unwrap();
    assert_eq!(record.state, crate::model::JobState::Succeeded);
    assert!(record.tasks.iter().all(|t| t.attempts.len() == 1));
}
