//! The scheduler's rounds on a test clock over a real SQLite store, driven by the test (no
//! background loop: see timing_tests.rs on paused time and the store's thread): each overlap
//! policy while the previous run is still queued, catch-up after three missed ticks, and two
//! schedulers (two controllers, or a restart racing a tick) firing the same ticks once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ferry_proto::v1 as pb;
use tokio_util::sync::CancellationToken;

use super::Scheduler;
use crate::artifacts::Artifacts;
use crate::clock::Clock;
use crate::engine::{Engine, EngineConfig};
use crate::model::{JobState, Millis};
use crate::store::pipelines::ScheduleFields;
use crate::store::Store;

/// A multiple of 100 s, so that the ticks fall on T0 + n × 10 s (or 100 s).
const T0: Millis = 1_700_000_000_000;

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
    let clock = Clock::starting_at(T0);
    Arc::new(
        Engine::new(config, clock, store, artifacts, CancellationToken::new())
            .await
            .unwrap(),
    )
}

/// Applies pipeline "etl" (one shell task, on no agent: its runs stay queued) every `every_ms`.
async fn apply(engine: &Engine, every_ms: u64, overlap: &str, catchup: &str) {
    let spec = pb::JobSpec {
        name: "etl".into(),
        params: HashMap::new(),
        tasks: vec![pb::TaskSpec {
            id: "t".into(),
            kind: Some(pb::task_spec::Kind::Shell(pb::ShellTask {
                command: "true".into(),
            })),
            ..pb::TaskSpec::default()
        }],
    };
    let job = crate::service::convert::new_job(Some(spec), String::new(), HashMap::new()).unwrap();
    let fields = ScheduleFields {
        every_ms,
        overlap: overlap.into(),
        catchup: catchup.into(),
        ..ScheduleFields::default()
    };
    engine
        .apply_scheduled(job, vec![], Some(fields))
        .await
        .unwrap();
}

/// Moves the test clock to T0 + `secs` and runs one round.
async fn round_at(engine: &Engine, scheduler: &mut Scheduler, secs: i64) {
    let ahead = T0 + secs * 1_000 - engine.clock.now_ms();
    tokio::time::advance(Duration::from_millis(ahead as u64)).await;
    scheduler.round(engine).await.unwrap();
}

/// The runs' scheduled times (seconds after T0), oldest first, with their jobs' states.
async fn runs(engine: &Engine) -> Vec<(i64, JobState, String)> {
    let mut runs: Vec<_> = engine
        .store
        .pipeline_runs("etl", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|r| {
            (
                (r.scheduled_time.unwrap() - T0) / 1_000,
                r.job.state,
                r.job.id,
            )
        })
        .collect();
    runs.sort_by_key(|r| r.0);
    runs
}

async fn ticks(engine: &Engine) -> Vec<i64> {
    runs(engine).await.into_iter().map(|r| r.0).collect()
}

/// Cancels every run still going (the "previous run finished").
async fn finish_all(engine: &Engine) {
    for (_, state, job) in runs(engine).await {
        if !state.is_terminal() {
            engine.cancel(&job).await.unwrap();
        }
    }
}

#[tokio::test(start_paused = true)]
async fn each_overlap_policy_while_the_previous_run_is_still_queued() {
    for overlap in [
        "allow",
        "skip",
        "buffer_one",
        "buffer_all",
        "cancel_previous",
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        apply(&engine, 10_000, overlap, "all").await;
        let mut s = Scheduler::default();
        for secs in [10, 20, 30] {
            round_at(&engine, &mut s, secs).await;
        }
        let started = ticks(&engine).await;
        // The previous runs finish; buffered ticks start one at a time.
        for secs in [31, 32, 33] {
            finish_all(&engine).await;
            round_at(&engine, &mut s, secs).await;
        }
        let after = ticks(&engine).await;
        let states: Vec<JobState> = runs(&engine).await.into_iter().map(|r| r.1).collect();
        match overlap {
            "allow" => assert_eq!((started, after), (vec![10, 20, 30], vec![10, 20, 30])),
            "skip" => assert_eq!((started, after), (vec![10], vec![10])),
            "buffer_one" => assert_eq!((started, after), (vec![10], vec![10, 20])),
            "buffer_all" => assert_eq!((started, after), (vec![10], vec![10, 20, 30])),
            _ => {
                assert_eq!((started, after), (vec![10, 20, 30], vec![10, 20, 30]));
                // Each tick cancelled the run before it.
                let before_finish = &states[..2];
                assert!(
                    before_finish.iter().all(|s| *s == JobState::Cancelled),
                    "{states:?}"
                );
            }
        }
        // Each run knows its window.
        let (_, _, job) = runs(&engine).await.remove(0);
        let params = engine.job(&job).await.unwrap().params;
        assert_eq!(
            params["scheduled_time"], "2023-11-14T22:13:30Z",
            "{overlap}"
        );
        assert_eq!(params["interval_start"], "2023-11-14T22:13:20Z");
        assert_eq!(params["interval_end"], "2023-11-14T22:13:30Z");
    }
}

#[tokio::test(start_paused = true)]
async fn catch_up_after_three_missed_ticks_runs_none_the_latest_or_all() {
    for (catchup, expected) in [
        ("none", vec![100]),
        ("latest", vec![100, 400]),
        ("all", vec![100, 200, 300, 400]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        apply(&engine, 100_000, "allow", catchup).await;
        let mut before = Scheduler::default();
        round_at(&engine, &mut before, 100).await;
        drop(before);
        // The controller is down over the ticks at 200, 300 and 400 s; restarted at 490 s, a new
        // scheduler starts from the newest run the store recorded.
        let mut after = Scheduler::default();
        round_at(&engine, &mut after, 490).await;
        assert_eq!(ticks(&engine).await, expected, "catchup = {catchup}");
        // And carries on on time.
        round_at(&engine, &mut after, 500).await;
        assert_eq!(ticks(&engine).await.last(), Some(&500));
    }
}

#[tokio::test(start_paused = true)]
async fn two_schedulers_firing_the_same_ticks_start_one_run_each() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    apply(&engine, 10_000, "allow", "all").await;
    let (mut a, mut b) = (Scheduler::default(), Scheduler::default());
    tokio::time::advance(Duration::from_secs(30)).await;
    let (ra, rb) = tokio::join!(a.round(&engine), b.round(&engine));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(ticks(&engine).await, [10, 20, 30]);
    // A restart racing the next tick: a fresh scheduler and the old one both fire 40 s.
    let mut restarted = Scheduler::default();
    tokio::time::advance(Duration::from_secs(10)).await;
    let (ra, rb) = tokio::join!(a.round(&engine), restarted.round(&engine));
    ra.unwrap();
    rb.unwrap();
    assert_eq!(ticks(&engine).await, [10, 20, 30, 40]);
}

#[tokio::test(start_paused = true)]
async fn a_paused_pipeline_starts_nothing_and_does_not_catch_up_on_resume() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    apply(&engine, 10_000, "allow", "all").await;
    let mut s = Scheduler::default();
    round_at(&engine, &mut s, 10).await;
    engine.pause_pipeline("etl", true).await.unwrap();
    round_at(&engine, &mut s, 20).await;
    round_at(&engine, &mut s, 30).await;
    assert_eq!(ticks(&engine).await, [10]);
    engine.pause_pipeline("etl", false).await.unwrap();
    round_at(&engine, &mut s, 35).await;
    round_at(&engine, &mut s, 40).await;
    assert_eq!(ticks(&engine).await, [10, 40]);
}

#[tokio::test(start_paused = true)]
async fn a_backfill_runs_each_past_tick_once_also_while_paused() {
    let dir = tempfile::tempdir().unwrap();
    let engine = engine(dir.path()).await;
    apply(&engine, 10_000, "skip", "none").await;
    engine.pause_pipeline("etl", true).await.unwrap();
    tokio::time::advance(Duration::from_secs(100)).await;
    let s = |secs: i64| T0 + secs * 1_000;
    // Two at a time: the first call starts 10 and 20 s and says more are left.
    let (first, more) = engine.backfill("etl", s(5), s(40), 2).await.unwrap();
    assert!(more);
    assert_eq!(
        first.iter().map(|r| r.0).collect::<Vec<_>>(),
        [s(10), s(20)]
    );
    let (all, more) = engine.backfill("etl", s(5), s(40), 0).await.unwrap();
    assert!(!more);
    let existing: Vec<bool> = all.iter().map(|r| r.1.existing).collect();
    assert_eq!(existing, [true, true, false, false]);
    assert_eq!(ticks(&engine).await, [10, 20, 30, 40]);
    // Again: nothing new.
    let (again, _) = engine.backfill("etl", s(10), s(40), 0).await.unwrap();
    assert!(again.iter().all(|r| r.1.existing));
    assert_eq!(ticks(&engine).await.len(), 4);
    // Each knows its window.
    let job = &again[0].1.job_id;
    let params = engine.job(job).await.unwrap().params;
    assert_eq!(params["interval_end"], params["scheduled_time"]);
    // A range in the future or backwards is refused.
    let future = engine.backfill("etl", s(10), s(200), 0).await.unwrap_err();
    assert!(future.to_string().contains("in the future"), "{future}");
    let backwards = engine.backfill("etl", s(40), s(10), 0).await.unwrap_err();
    assert!(backwards.to_string().contains("is after to"), "{backwards}");
}
