//! Tests of the SQLite store: the shared conformance suite, durability across reopening, and
//! the two read paths.

use std::sync::Arc;

use crate::store::conformance::TestBackend;
use crate::store::Store;

/// A fresh database in a temporary directory; each `open` is another `SqliteStore` on that
/// file (two controllers on one database meet in SQLite's locks, within `busy_timeout`).
struct Fresh(tempfile::TempDir);

#[async_trait::async_trait]
impl TestBackend for Fresh {
    async fn open(&self) -> Arc<dyn Store> {
        let store = super::SqliteStore::open(&self.0.path().join("ferry.db"))
            .await
            .unwrap();
        Arc::new(store)
    }
}

async fn fresh() -> Box<dyn TestBackend> {
    Box::new(Fresh(tempfile::tempdir().unwrap()))
}

mod conformance {
    crate::store::conformance::store_conformance_suite!(super::fresh());
}

/// `run_all`, kept until every backend uses the macro, still passes on one store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_all_passes_on_one_store() {
    let backend = fresh().await;
    crate::store::conformance::run_all(backend.open().await).await;
}

#[tokio::test]
async fn a_database_of_a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    drop(super::SqliteStore::open(&path).await.unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "INSERT INTO ferry_schema_migrations (version, name, applied_at) VALUES (999, 'x', 0)",
            [],
        )
        .unwrap();
    match super::SqliteStore::open(&path).await {
        Err(crate::store::StoreError::SchemaTooNew { found: 999, .. }) => {}
        Err(e) => panic!("{e}"),
        Ok(_) => panic!("opened a database of schema 999"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_jobs_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    let job = job_of(1);
    let id = {
        let store = super::SqliteStore::open(&path).await.unwrap();
        store.submit_job(job, 1).await.unwrap().job_id
    };
    let store = super::SqliteStore::open(&path).await.unwrap();
    let job = store.get_job(&id).await.unwrap();
    assert_eq!(job.tasks[0].state, crate::model::TaskState::Queued);
}

fn job_of(tasks: usize) -> crate::model::NewJob {
    let task = |i: usize| crate::model::TaskSpec {
        id: format!("t{i}"),
        queue: "q".into(),
        labels: Default::default(),
        depends_on: vec![],
        kind: crate::model::TaskKind::Shell {
            command: "true".into(),
        },
        outputs: vec![],
        timeout_ms: 0,
        schedule_to_start_timeout_ms: 0,
        retry: Default::default(),
    };
    crate::model::NewJob {
        name: format!("job-of-{tasks}"),
        params: Default::default(),
        tasks: (0..tasks).map(task).collect(),
        idempotency_key: None,
        backfill: Default::default(),
    }
}

/// Small jobs are read on the caller's thread, larger ones on the pool; both whole, and an
/// unknown job is `NotFound` either way, also while another caller holds the inline
/// connection.
#[tokio::test]
// Holds the inline connection across reads on purpose, as a concurrent caller would.
#[allow(clippy::await_holding_lock)]
async fn jobs_are_read_whole_on_either_path() {
    use crate::store::StoreError;
    let dir = tempfile::tempdir().unwrap();
    let store = super::SqliteStore::open(&dir.path().join("ferry.db"))
        .await
        .unwrap();
    let max = super::READ_NOW_MAX_TASKS as usize;
    for tasks in [1, max, max + 1, 3 * max] {
        let id = store.submit_job(job_of(tasks), 1).await.unwrap().job_id;
        let inline = super::jobs::get_bounded;
        let read_now = store.read_now(|conn| inline(conn, &id, super::READ_NOW_MAX_TASKS));
        assert_eq!(read_now.is_some(), tasks <= max, "{tasks} tasks");
        let job = store.get_job(&id).await.unwrap();
        assert_eq!(job.tasks.len(), tasks);
        assert_eq!(job.tasks[tasks - 1].spec.id, format!("t{}", tasks - 1));
        let held = store.now.lock().unwrap();
        assert_eq!(store.get_job(&id).await.unwrap().tasks.len(), tasks);
        drop(held);
    }
    let err = store.get_job("nope").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    let _held = store.now.lock().unwrap();
    let err = store.get_job("nope").await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound(_)), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_file_beside_a_full_log_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.db");
    std::fs::write(&path, b"").unwrap();
    std::fs::write(dir.path().join("ferry.db-wal"), b"not empty").unwrap();
    let e = match super::SqliteStore::open(&path).await {
        Ok(_) => panic!("a truncated store opened"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("truncated") && e.contains("ferry.db-wal"), "{e}");
}
