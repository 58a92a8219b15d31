//! Work taken back from where it was: attempts of a dead agent (lost, fenced, queued again), a
//! cancelled job's running attempts, attempts an agent hands back, and attempts the controller
//! times out itself; and how a job's summaries (its list row, its pipeline run) count its tasks
//! by how they ended.

use super::*;
use crate::store::pipelines::{NewPipeline, NewRun, PipelineTemplate};

pub(crate) async fn lost_attempts_are_fenced_and_requeued(store: &Arc<dyn Store>) {
    agents(store, &["other"]).await;
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
    let late = end(store, "dying", &a1.attempt, Outcome::Succeeded, T0 + 11).await;
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
    end(store, "other", &a2.attempt, Outcome::Succeeded, T0 + 13)
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

pub(crate) async fn labels_route_tasks(store: &Arc<dyn Store>) {
    agents(store, &["plain", "dc1-agent"]).await;
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
    end(store, "dc1-agent", &got[0].attempt, Outcome::Succeeded, T0)
        .await
        .unwrap();
}

pub(crate) async fn cancel_stops_running_attempts(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
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

pub(crate) async fn release_requeues_without_counting(store: &Arc<dyn Store>) {
    agents(store, &["w", "w2"]).await;
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
    end(store, "w2", &again.attempt, Outcome::Succeeded, T0 + 2)
        .await
        .unwrap();
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Succeeded);
}

pub(crate) async fn controller_times_out_unreported_attempts(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
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

pub(crate) async fn job_summaries_count_tasks_by_how_they_ended(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let tasks = vec![
        task("ok", &[]),
        task("bad", &[]),
        task("after_bad", &["bad"]),
        on_queue(task("waits", &[]), "elsewhere"),
    ];
    // A pipeline's run, so that its runs and its summary are counted too.
    let template = PipelineTemplate {
        tasks: tasks.clone(),
        defaults: BTreeMap::new(),
        params: vec![],
        schedule: None,
    };
    let pipeline = NewPipeline {
        name: "mixed".into(),
        template,
    };
    store.apply_pipeline(pipeline, T0).await.unwrap();
    let run = NewRun {
        pipeline: "mixed".into(),
        version: 1,
        job: job("mixed", tasks),
        scheduled_time: None,
        key: None,
        automatic: false,
    };
    let id = store.run_pipeline(run, T0).await.unwrap().job_id;
    let claimed = store
        .claim(claim_req("w", 2), T0)
        .await
        .unwrap()
        .assignments;
    assert_eq!(claimed.len(), 2);
    for a in &claimed {
        let outcome = match a.attempt.task_id.as_str() {
            "ok" => Outcome::Succeeded,
            "bad" => Outcome::Failed,
            other => panic!("claimed {other}"),
        };
        end(store, "w", &a.attempt, outcome, T0 + 1).await.unwrap();
    }
    let summary = |jobs: Vec<crate::model::JobSummary>| {
        jobs.into_iter()
            .find(|j| j.id == id)
            .expect("the job is listed")
    };
    let running = summary(store.list_jobs(None, 10).await.unwrap());
    assert_eq!(running.state, JobState::Running);
    assert_eq!((running.tasks_done, running.tasks_total), (3, 4));
    let counts = |succeeded, failed, cancelled, skipped| crate::model::TaskCounts {
        succeeded,
        failed,
        cancelled,
        skipped,
    };
    assert_eq!(running.ended, counts(1, 1, 0, 1));

    assert!(store.cancel_job(&id, T0 + 2).await.unwrap().cancelled);
    let cancelled = summary(
        store
            .list_jobs(Some(JobState::Cancelled), 10)
            .await
            .unwrap(),
    );
    assert_eq!((cancelled.tasks_done, cancelled.tasks_total), (4, 4));
    assert_eq!(cancelled.ended, counts(1, 1, 1, 1));
    let runs = store.pipeline_runs("mixed", 10).await.unwrap();
    assert_eq!(runs[0].job.id, id);
    assert_eq!(runs[0].job.ended, counts(1, 1, 1, 1));
    let pipelines = store.list_pipelines().await.unwrap();
    let mixed = pipelines.iter().find(|p| p.name == "mixed").unwrap();
    let last = mixed.last_run.as_ref().expect("the pipeline's last run");
    assert_eq!(
        (last.job.id.as_str(), last.job.ended),
        (id.as_str(), counts(1, 1, 1, 1))
    );
}
