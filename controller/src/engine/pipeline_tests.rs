//! The engine's pipelines over a real SQLite store: what the scheduler and triggers will call
//! (`start_run` with a scheduled time or key, automatic) is counted once per tick and refused
//! while the pipeline is paused, when a run by hand still starts; apply refuses what a
//! template cannot hold.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::v1 as pb;
use tokio_util::sync::CancellationToken;

use super::RunOrigin;
use crate::artifacts::Artifacts;
use crate::engine::{Engine, EngineConfig, EngineError};
use crate::model::NewJob;
use crate::store::pipelines::ParamSpec;
use crate::store::{Store, StoreError};

async fn engine(dir: &std::path::Path) -> Arc<Engine> {
    let store: Arc<dyn Store> = Arc::new(
        crate::store::sqlite::SqliteStore::open(&dir.join("ferry.db"))
            .await
            .unwrap(),
    );
    let artifacts = Arc::new(Artifacts::open(&dir.join("artifacts"), 1 << 30).unwrap());
    let config = EngineConfig {
        agent_timeout: Duration::from_secs(15),
        log_limit: 1 << 20,
        timeout_grace: Duration::from_secs(10),
        max_poll_wait: Duration::from_millis(200),
    };
    let clock = crate::clock::Clock::system();
    Arc::new(
        Engine::new(config, clock, store, artifacts, CancellationToken::new())
            .await
            .unwrap(),
    )
}

/// The job a file named `name` with one shell task makes.
fn job(name: &str) -> NewJob {
    let spec = pb::JobSpec {
        name: name.into(),
        params: HashMap::from([("region".to_string(), "eu".to_string())]),
        tasks: vec![pb::TaskSpec {
            id: "t".into(),
            kind: Some(pb::task_spec::Kind::Shell(pb::ShellTask {
                command: "true".into(),
            })),
            ..pb::TaskSpec::default()
        }],
    };
    crate::service::convert::new_job(Some(spec), String::new(), HashMap::new()).unwrap()
}

fn day() -> Vec<ParamSpec> {
    vec![ParamSpec {
        name: "day".into(),
        ty: "date".into(),
        default: Some("2026-11-24".into()),
        required: false,
    }]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ticks_run_once_each_and_not_while_paused_but_a_run_by_hand_does() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let applied = engine.apply_pipeline(job("nightly"), day()).await.unwrap();
    assert_eq!((applied.version, applied.changed), (1, true));

    let tick = RunOrigin {
        scheduled_time: Some(1_800_000_000_000),
        key: None,
        automatic: true,
    };
    let fired = engine
        .start_run("nightly", BTreeMap::new(), tick.clone())
        .await
        .unwrap();
    let again = engine
        .start_run("nightly", BTreeMap::new(), tick.clone())
        .await
        .unwrap();
    assert_eq!(
        (again.job_id.as_str(), again.existing),
        (fired.job_id.as_str(), true)
    );
    let record = engine.job(&fired.job_id).await.unwrap();
    assert_eq!(record.params["day"], "2026-11-24", "the typed default");
    assert_eq!(record.params["region"], "eu", "the plain default");

    assert!(engine.pause_pipeline("nightly", true).await.unwrap());
    let next = RunOrigin {
        scheduled_time: Some(1_800_000_060_000),
        ..tick
    };
    match engine
        .start_run("nightly", BTreeMap::new(), next.clone())
        .await
    {
        Err(EngineError::Store(StoreError::Invalid(message))) => {
            assert!(
                message.contains("pipeline \"nightly\" is paused"),
                "{message}"
            )
        }
        other => panic!("a paused pipeline's tick started: {other:?}"),
    }
    let by_hand = engine
        .run_pipeline("nightly", BTreeMap::new(), None)
        .await
        .unwrap();
    assert!(!by_hand.existing);
    assert!(engine.pause_pipeline("nightly", false).await.unwrap());
    assert!(
        !engine
            .start_run("nightly", BTreeMap::new(), next)
            .await
            .unwrap()
            .existing
    );
    let runs = engine.pipeline_history("nightly", 10).await.unwrap();
    assert_eq!(runs.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_refuses_what_a_template_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let mut keyed = job("etl");
    keyed.idempotency_key = Some("k".into());
    let problems = match engine.apply_pipeline(keyed, vec![]).await {
        Err(EngineError::InvalidJob(problems)) => problems,
        other => panic!("{other:?}"),
    };
    assert_eq!(
        problems,
        ["idempotency key \"k\": a pipeline has none (give one to each run)"]
    );
    match engine.apply_pipeline(job("no way"), vec![]).await {
        Err(EngineError::InvalidArgument(message)) => assert_eq!(
            message,
            "pipeline name \"no way\" is not a pipeline name: use letters, digits, '_', '.' and '-'"
        ),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        engine.run_pipeline("etl", BTreeMap::new(), None).await,
        Err(EngineError::Store(StoreError::NotFound(_)))
    ));
}
