//! The engine's fenced uploads, publication and results, against a real SQLite store and data
//! directory.

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;

use super::*;
use crate::artifacts::{ArtifactError, Artifacts};
use crate::engine::EngineConfig;
use crate::model::{
    now_ms, Assignment, AttemptFinish, AttemptReport, NewJob, Outcome, OutputFile, RetryPolicy,
    TaskKind, TaskSpec,
};
use crate::store::{Store, StoreError};

/// `complete_early`, answered with the next attempts once the outcome is durable.
async fn complete(
    engine: &Engine,
    who: &Identity,
    finish: AttemptFinish,
    outputs: Vec<OutputFile>,
    want: u32,
) -> Result<Vec<Assignment>, EngineError> {
    let (next, claimed) = tokio::sync::oneshot::channel();
    engine
        .complete_early(
            who,
            AttemptReport {
                finish,
                outputs,
                extract: None,
                logs: vec![],
                dropped_bytes: 0,
            },
            want,
            next,
        )
        .await?;
    Ok(claimed.await.unwrap_or_default())
}

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
        max_poll_wait: Duration::from_secs(1),
    };
    Arc::new(
        Engine::new(
            config,
            crate::clock::Clock::system(),
            store,
            artifacts,
            CancellationToken::new(),
        )
        .await
        .unwrap(),
    )
}

async fn agent(engine: &Engine) -> Identity {
    let session = engine
        .register(
            "a".into(),
            vec!["q".into()],
            Default::default(),
            4,
            "h".into(),
            "v".into(),
            "i".into(),
        )
        .await
        .unwrap();
    Identity {
        name: "a".into(),
        session,
    }
}

fn task(id: &str, deps: &[&str], outputs: &[&str]) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        queue: "q".into(),
        labels: Default::default(),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        kind: TaskKind::Shell {
            command: "true".into(),
        },
        outputs: outputs.iter().map(|o| o.to_string()).collect(),
        timeout_ms: 0,
        schedule_to_start_timeout_ms: 0,
        retry: RetryPolicy {
            max_attempts: 1,
            initial_delay_ms: 0,
            max_delay_ms: 0,
        },
    }
}

async fn submit(engine: &Engine, tasks: Vec<TaskSpec>) -> String {
    engine
        .submit(NewJob {
            name: "outputs".into(),
            params: Default::default(),
            tasks,
            idempotency_key: None,
            backfill: Default::default(),
        })
        .await
        .unwrap()
        .job_id
}

async fn upload(
    engine: &Engine,
    who: &Identity,
    key: &AttemptKey,
    name: &str,
    data: &[u8],
) -> OutputFile {
    let output = OutputFile {
        name: name.into(),
        size: data.len() as u64,
        sha256: Sha256::digest(data)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    };
    let header = UploadHeader {
        name: name.into(),
        size: output.size,
        sha256: output.sha256.clone(),
    };
    let mut up = engine.begin_upload(who, key, header).await.unwrap();
    for (i, chunk) in data.chunks(1000).enumerate() {
        up.write((i * 1000) as u64, chunk.to_vec(), crc32c::crc32c(chunk))
            .await
            .unwrap();
    }
    assert_eq!(up.finish().await.unwrap(), output.size);
    output
}

fn finish(who: &Identity, key: &AttemptKey, outcome: Outcome) -> AttemptFinish {
    AttemptFinish {
        agent: who.name.clone(),
        attempt: key.clone(),
        outcome,
        exit_code: Some(0),
        error: String::new(),
    }
}

async fn read_all(mut reader: Reader) -> Vec<u8> {
    let mut data = Vec::new();
    while let Some(chunk) = reader.next().await {
        data.extend(chunk.unwrap().1);
    }
    data
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_or_unverified_completion_publishes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let who = agent(&engine).await;
    let job = submit(&engine, vec![task("t", &[], &["out"])]).await;
    let orders = engine.poll(&who, 1, &[], Duration::ZERO).await.unwrap();
    let key = orders.assignments[0].attempt.clone();
    let mut out = upload(&engine, &who, &key, "out", &[5; 2500]).await;
    let published = engine
        .artifacts
        .published_path(&job, "t", 1, "out")
        .unwrap();

    let good_sha = std::mem::replace(&mut out.sha256, "00".repeat(32));
    let err = complete(
        &engine,
        &who,
        finish(&who, &key, Outcome::Succeeded),
        vec![out.clone()],
        0,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EngineError::Artifact(ArtifactError::Disagrees { .. })),
        "{err}"
    );
    assert!(!published.exists());
    out.sha256 = good_sha;

    // The store declares the attempt lost (its agent's session ended) meanwhile.
    engine
        .store
        .agent_dead("a", &who.session, now_ms())
        .await
        .unwrap();
    let err = complete(
        &engine,
        &who,
        finish(&who, &key, Outcome::Succeeded),
        vec![out],
        0,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, EngineError::Store(StoreError::Fenced { .. })),
        "{err}"
    );
    assert!(!published.exists(), "the moved files were taken back");
    assert!(engine.results(&job, None).await.unwrap().is_empty());
    let err = engine.upload_status(&who, &key, "out").await.unwrap_err();
    assert!(
        matches!(err, EngineError::Store(StoreError::Fenced { .. })),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_publish_with_the_success_and_reach_the_dependents() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let who = agent(&engine).await;
    let job = submit(
        &engine,
        vec![
            task("extract", &[], &["rows.csv", "empty"]),
            task("load", &["extract"], &[]),
        ],
    )
    .await;
    let orders = engine.poll(&who, 1, &[], Duration::ZERO).await.unwrap();
    let key = orders.assignments[0].attempt.clone();
    let data: Vec<u8> = (0..2_500_000u32).map(|i| (i % 253) as u8).collect();
    let outputs = vec![
        upload(&engine, &who, &key, "rows.csv", &data).await,
        upload(&engine, &who, &key, "empty", &[]).await,
    ];
    let next = complete(
        &engine,
        &who,
        finish(&who, &key, Outcome::Succeeded),
        outputs.clone(),
        1,
    )
    .await
    .unwrap();
    assert_eq!(next.len(), 1);
    let load = next[0].attempt.clone();
    let mut inputs: Vec<_> = next[0]
        .inputs
        .iter()
        .map(|f| (f.name.clone(), f.size, f.sha256.clone()))
        .collect();
    inputs.sort();
    assert_eq!(
        inputs,
        vec![
            ("empty".to_string(), 0, outputs[1].sha256.clone()),
            (
                "rows.csv".to_string(),
                data.len() as u64,
                outputs[0].sha256.clone()
            ),
        ]
    );

    let (_, reader) = engine
        .fetch_input(&who, &load, "extract", "rows.csv", 7)
        .await
        .unwrap();
    assert_eq!(read_all(reader).await, data[7..]);
    let (_, reader) = engine
        .fetch_input(&who, &load, "extract", "empty", 0)
        .await
        .unwrap();
    assert!(read_all(reader).await.is_empty());
    let err = engine
        .fetch_input(&who, &load, "load", "x", 0)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::PermissionDenied(_)), "{err}");
    let err = engine
        .fetch_input(&who, &load, "extract", "nope", 0)
        .await
        .err()
        .unwrap();
    assert!(matches!(err, EngineError::NotFound(_)), "{err}");
    let err = engine
        .fetch_input(&who, &key, "extract", "rows.csv", 0)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, EngineError::Store(StoreError::Fenced { .. })),
        "{err}"
    );

    assert_eq!(engine.results(&job, None).await.unwrap().len(), 2);
    let (file, reader) = engine.result(&job, "extract", "rows.csv", 0).await.unwrap();
    assert_eq!(file.attempt, 1);
    assert_eq!(read_all(reader).await, data);

    // Retention, once the job has ended long enough ago.
    complete(
        &engine,
        &who,
        finish(&who, &load, Outcome::Succeeded),
        vec![],
        0,
    )
    .await
    .unwrap();
    let week = Duration::from_secs(7 * 86_400);
    let kept = crate::artifacts::retention::round(
        engine.store.as_ref(),
        &engine.artifacts,
        week,
        now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(kept.jobs, 0);
    assert_eq!(engine.results(&job, None).await.unwrap().len(), 2);
    let gone = crate::artifacts::retention::round(
        engine.store.as_ref(),
        &engine.artifacts,
        week,
        now_ms() + 8 * 86_400_000,
    )
    .await
    .unwrap();
    assert_eq!((gone.jobs, gone.rows), (1, 2));
    assert!(engine.results(&job, None).await.unwrap().is_empty());
    assert!(!engine
        .artifacts
        .published_path(&job, "extract", 1, "rows.csv")
        .unwrap()
        .exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_the_staging_of_attempts_no_longer_running() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    let who = agent(&engine).await;
    submit(&engine, vec![task("t", &[], &["out"])]).await;
    let orders = engine.poll(&who, 1, &[], Duration::ZERO).await.unwrap();
    let key = orders.assignments[0].attempt.clone();
    upload(&engine, &who, &key, "out", b"partial").await;
    let week = Duration::from_secs(7 * 86_400);
    let round = crate::artifacts::retention::round(
        engine.store.as_ref(),
        &engine.artifacts,
        week,
        now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(round.attempts, 0, "a running attempt keeps its staging");
    engine
        .store
        .agent_dead("a", &who.session, now_ms())
        .await
        .unwrap();
    let round = crate::artifacts::retention::round(
        engine.store.as_ref(),
        &engine.artifacts,
        week,
        now_ms(),
    )
    .await
    .unwrap();
    assert_eq!(round.attempts, 1);
    assert_eq!(engine.artifacts.received(&key, "out").await.unwrap(), 0);
}
