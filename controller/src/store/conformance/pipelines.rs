//! Pipelines (decision 0016): apply is idempotent on the template's content and versions only
//! grow (also across a delete); a run is its job and its record, written together or not at
//! all, with one run per (pipeline, scheduled time) and per key; pause refuses automatic runs
//! only; two controllers applying one template, or starting one scheduled time, racing.

use tokio::sync::Barrier;

use super::*;
use crate::store::pipelines::{NewPipeline, NewRun, ParamSpec, PipelineTemplate};

fn template(command: &str) -> PipelineTemplate {
    let mut t = task("extract", &[]);
    t.kind = TaskKind::Shell {
        command: command.into(),
    };
    PipelineTemplate {
        tasks: vec![t],
        defaults: [("region".to_string(), "eu".to_string())].into(),
        params: vec![ParamSpec {
            name: "day".into(),
            ty: "date".into(),
            default: None,
            required: true,
        }],
        schedule: None,
    }
}

fn pipeline(name: &str, command: &str) -> NewPipeline {
    NewPipeline {
        name: name.into(),
        template: template(command),
    }
}

/// A run of `version` of `name` by hand.
fn run(name: &str, version: u32) -> NewRun {
    NewRun {
        pipeline: name.into(),
        version,
        job: job(name, vec![task("extract", &[])]),
        scheduled_time: None,
        key: None,
        automatic: false,
    }
}

pub(crate) async fn pipelines_apply_once_per_content_and_versions_only_grow(
    store: &Arc<dyn Store>,
) {
    let first = store
        .apply_pipeline(pipeline("etl", "a"), T0)
        .await
        .unwrap();
    assert_eq!((first.version, first.changed), (1, true));
    let again = store
        .apply_pipeline(pipeline("etl", "a"), T0 + 1)
        .await
        .unwrap();
    assert_eq!((again.version, again.changed), (1, false), "unchanged");
    // The typed parameters' order does not count.
    let mut reordered = pipeline("etl", "a");
    reordered.template.params.insert(
        0,
        ParamSpec {
            name: "a".into(),
            ty: "int".into(),
            default: Some("1".into()),
            required: false,
        },
    );
    let mut other_order = reordered.clone();
    other_order.template.params.reverse();
    assert_eq!(reordered.template.hash(), other_order.template.hash());
    assert_ne!(
        reordered.template.hash(),
        pipeline("etl", "a").template.hash()
    );
    let changed = store
        .apply_pipeline(pipeline("etl", "b"), T0 + 2)
        .await
        .unwrap();
    assert_eq!((changed.version, changed.changed), (2, true));
    let back = store
        .apply_pipeline(pipeline("etl", "a"), T0 + 3)
        .await
        .unwrap();
    assert_eq!(
        (back.version, back.changed),
        (3, true),
        "back to a: a new version"
    );

    let record = store.get_pipeline("etl").await.unwrap();
    let versions: Vec<u32> = record.versions.iter().map(|v| v.version).collect();
    assert_eq!(versions, [3, 2, 1], "newest first");
    assert_eq!(record.versions[0].template, template("a"));
    assert_eq!(record.versions[0].hash, record.versions[2].hash);
    assert_eq!(
        (
            record.summary.version,
            record.summary.created_at,
            record.summary.updated_at
        ),
        (3, T0, T0 + 3)
    );
    let (latest, paused) = store.latest_pipeline("etl").await.unwrap();
    assert_eq!((latest.version, paused), (3, false));

    store
        .apply_pipeline(pipeline("aaa", "x"), T0)
        .await
        .unwrap();
    let names: Vec<String> = store
        .list_pipelines()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .filter(|n| n == "aaa" || n == "etl")
        .collect();
    assert_eq!(names, ["aaa", "etl"], "by name");

    store.delete_pipeline("etl", T0 + 4).await.unwrap();
    assert!(matches!(
        store.get_pipeline("etl").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.delete_pipeline("etl", T0 + 4).await,
        Err(StoreError::NotFound(_))
    ));
    let left = store.list_pipelines().await.unwrap();
    assert!(left.iter().all(|p| p.name != "etl"), "etl deleted");
    assert!(left.iter().any(|p| p.name == "aaa"), "aaa kept");
    let revived = store
        .apply_pipeline(pipeline("etl", "a"), T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        (revived.version, revived.changed),
        (4, true),
        "a deleted pipeline's name continues its versions"
    );
    let record = store.get_pipeline("etl").await.unwrap();
    assert_eq!(record.summary.created_at, T0 + 5);
}

pub(crate) async fn pipeline_runs_are_recorded_with_their_job_once_per_time_or_key(
    store: &Arc<dyn Store>,
) {
    store
        .apply_pipeline(pipeline("nightly", "a"), T0)
        .await
        .unwrap();
    let manual = store.run_pipeline(run("nightly", 1), T0 + 1).await.unwrap();
    assert!(!manual.existing);
    let record = store.get_job(&manual.job_id).await.unwrap();
    assert_eq!(record.tasks[0].state, TaskState::Queued, "the job is there");

    let mut tick = run("nightly", 1);
    tick.scheduled_time = Some(T0 + 60_000);
    tick.automatic = true;
    let fired = store.run_pipeline(tick.clone(), T0 + 60_000).await.unwrap();
    let again = store.run_pipeline(tick.clone(), T0 + 60_001).await.unwrap();
    assert_eq!(
        (again.job_id.as_str(), again.existing),
        (fired.job_id.as_str(), true)
    );
    let mut keyed = run("nightly", 1);
    keyed.key = Some("delivery-1".into());
    let hooked = store.run_pipeline(keyed.clone(), T0 + 2).await.unwrap();
    let replay = store.run_pipeline(keyed, T0 + 3).await.unwrap();
    assert_eq!(
        (replay.job_id.as_str(), replay.existing),
        (hooked.job_id.as_str(), true)
    );

    let runs = store.pipeline_runs("nightly", 10).await.unwrap();
    let ids: Vec<&str> = runs.iter().map(|r| r.job.id.as_str()).collect();
    assert_eq!(
        ids,
        [&fired.job_id, &hooked.job_id, &manual.job_id],
        "newest first"
    );
    assert_eq!(runs[0].scheduled_time, Some(T0 + 60_000));
    assert_eq!(runs[2].scheduled_time, None);
    assert!(runs
        .iter()
        .all(|r| r.version == 1 && r.job.name == "nightly"));
    assert_eq!(store.pipeline_runs("nightly", 1).await.unwrap().len(), 1);
    let listed = store.list_pipelines().await.unwrap();
    let nightly = listed.iter().find(|p| p.name == "nightly").unwrap();
    assert_eq!(
        nightly.last_run.as_ref().map(|r| r.job.id.as_str()),
        Some(fired.job_id.as_str())
    );

    // A run made from a version that is no longer the latest is refused.
    store
        .apply_pipeline(pipeline("nightly", "b"), T0 + 4)
        .await
        .unwrap();
    assert!(matches!(
        store.run_pipeline(run("nightly", 1), T0 + 5).await,
        Err(StoreError::Conflict(_))
    ));
    // A job that cannot be written leaves no run: both or neither.
    let jobs_before = store.list_jobs(None, 1000).await.unwrap().len();
    let mut broken = run("nightly", 2);
    broken.job.tasks.push(task("extract", &[]));
    broken.scheduled_time = Some(T0 + 120_000);
    assert!(store.run_pipeline(broken, T0 + 6).await.is_err());
    assert_eq!(
        store.list_jobs(None, 1000).await.unwrap().len(),
        jobs_before
    );
    assert_eq!(store.pipeline_runs("nightly", 10).await.unwrap().len(), 3);

    // Paused: runs by hand start, automatic ones are refused; resumed, they start.
    assert!(store
        .set_pipeline_paused("nightly", true, T0)
        .await
        .unwrap());
    assert!(!store
        .set_pipeline_paused("nightly", true, T0)
        .await
        .unwrap());
    assert!(store.latest_pipeline("nightly").await.unwrap().1);
    store.run_pipeline(run("nightly", 2), T0 + 7).await.unwrap();
    let mut tick = run("nightly", 2);
    tick.scheduled_time = Some(T0 + 180_000);
    tick.automatic = true;
    assert!(matches!(
        store.run_pipeline(tick.clone(), T0 + 8).await,
        Err(StoreError::Invalid(_))
    ));
    assert!(store
        .set_pipeline_paused("nightly", false, T0)
        .await
        .unwrap());
    assert!(!store.run_pipeline(tick, T0 + 9).await.unwrap().existing);

    // Deleted: no new runs; its runs stay.
    store.delete_pipeline("nightly", T0 + 10).await.unwrap();
    assert!(matches!(
        store.run_pipeline(run("nightly", 2), T0 + 11).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.set_pipeline_paused("nightly", true, T0).await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(store.pipeline_runs("nightly", 10).await.unwrap().len(), 5);
    assert!(store.pipeline_runs("never", 10).await.unwrap().is_empty());
}

/// Rounds of each race.
const ROUNDS: u32 = 20;

pub(crate) async fn two_controllers_applying_or_firing_one_pipeline_make_one(
    backend: &dyn TestBackend,
) {
    let handles = [backend.open().await, backend.open().await];
    for round in 1..=ROUNDS {
        let barrier = Arc::new(Barrier::new(2));
        let applies: Vec<_> = handles
            .iter()
            .cloned()
            .map(|store| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let p = pipeline("raced", &format!("echo {round}"));
                    store
                        .apply_pipeline(p, T0 + i64::from(round))
                        .await
                        .unwrap()
                })
            })
            .collect();
        let mut changed = 0;
        for one in applies {
            let applied = one.await.unwrap();
            assert_eq!(applied.version, round, "one version per template");
            changed += usize::from(applied.changed);
        }
        assert_eq!(changed, 1, "round {round}: one of the two applies wrote");

        let barrier = Arc::new(Barrier::new(2));
        let fires: Vec<_> = handles
            .iter()
            .cloned()
            .map(|store| {
                let barrier = barrier.clone();
                tokio::spawn(async move {
                    let mut tick = run("raced", round);
                    tick.scheduled_time = Some(T0 + 60_000 * i64::from(round));
                    tick.automatic = true;
                    barrier.wait().await;
                    store.run_pipeline(tick, T0).await.unwrap()
                })
            })
            .collect();
        let mut ids = Vec::new();
        for one in fires {
            ids.push(one.await.unwrap());
        }
        assert_eq!(ids[0].job_id, ids[1].job_id, "one job per scheduled time");
        assert_eq!(ids.iter().filter(|s| !s.existing).count(), 1);
    }
    let record = handles[0].get_pipeline("raced").await.unwrap();
    assert_eq!(record.versions.len(), ROUNDS as usize);
    let runs = handles[1].pipeline_runs("raced", 1000).await.unwrap();
    assert_eq!(runs.len(), ROUNDS as usize);
}
