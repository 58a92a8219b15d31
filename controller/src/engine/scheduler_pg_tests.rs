//! Two controllers' schedulers on one PostgreSQL database (two stores, two engines) firing the
//! same ticks at once: one run per tick, by the store's unique key (decision 0018).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Scheduler;
use crate::artifacts::Artifacts;
use crate::clock::Clock;
use crate::engine::{Engine, EngineConfig};
use crate::model::Millis;
use crate::store::pipelines::ScheduleFields;
use crate::store::postgres::test_db::TestDb;
use crate::store::Store;

const T0: Millis = 1_700_000_000_000;

async fn controller(db: &TestDb, dir: &std::path::Path, at: Millis) -> Engine {
    let store: Arc<dyn Store> = Arc::new(db.open().await);
    let artifacts = Arc::new(Artifacts::open(dir, 1 << 30).unwrap());
    let config = EngineConfig {
        agent_timeout: Duration::from_secs(15),
        log_limit: 1 << 20,
        timeout_grace: Duration::from_secs(10),
        max_poll_wait: Duration::from_millis(200),
    };
    Engine::new(
        config,
        Clock::starting_at(at),
        store,
        artifacts,
        CancellationToken::new(),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_controllers_on_postgres_fire_each_tick_once() {
    let db = TestDb::new().await;
    let dir = tempfile::tempdir().unwrap();
    // Applied at T0 by a first controller.
    let first = controller(&db, &dir.path().join("a"), T0).await;
    let spec = ferry_proto::v1::JobSpec {
        name: "etl".into(),
        params: Default::default(),
        tasks: vec![ferry_proto::v1::TaskSpec {
            id: "t".into(),
            kind: Some(ferry_proto::v1::task_spec::Kind::Shell(
                ferry_proto::v1::ShellTask {
                    command: "true".into(),
                },
            )),
            ..Default::default()
        }],
    };
    let job =
        crate::service::convert::new_job(Some(spec), String::new(), Default::default()).unwrap();
    let fields = ScheduleFields {
        every_ms: 10_000,
        overlap: "allow".into(),
        catchup: "all".into(),
        ..ScheduleFields::default()
    };
    first
        .apply_scheduled(job, vec![], Some(fields))
        .await
        .unwrap();
    // Two controllers (after a takeover, say) at T0 + 35 s, each sure 10, 20 and 30 s are due.
    let a = controller(&db, &dir.path().join("b"), T0 + 35_000).await;
    let b = controller(&db, &dir.path().join("c"), T0 + 35_000).await;
    for _ in 0..3 {
        let (mut sa, mut sb) = (Scheduler::default(), Scheduler::default());
        let (ra, rb) = tokio::join!(sa.round(&a), sb.round(&b));
        ra.unwrap();
        rb.unwrap();
    }
    let mut ticks: Vec<Millis> = a
        .store
        .pipeline_runs("etl", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.scheduled_time.unwrap() - T0) / 1_000)
        .collect();
    ticks.sort_unstable();
    assert_eq!(ticks, [10, 20, 30]);
}
