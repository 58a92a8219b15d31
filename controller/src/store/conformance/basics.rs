//! The core transitions: claims need a live session, the DAG runs in order, a failure skips
//! what depends on it, retries wait for their backoff, idempotent submits, bounded logs and
//! queue statistics.

use super::*;

pub(crate) async fn claims_need_a_live_session(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    store
        .submit_job(job("session", vec![task("a", &[])]), T0)
        .await
        .unwrap();
    let mut stale = claim_req("w", 1);
    stale.session = "w-0".into();
    assert!(
        store.claim(stale, T0).await.unwrap().assignments.is_empty(),
        "an old session claims nothing"
    );
    assert!(store
        .claim(claim_req("nobody", 1), T0)
        .await
        .unwrap()
        .assignments
        .is_empty());
    store
        .set_agent_state("w", crate::model::AgentState::Draining)
        .await
        .unwrap();
    assert!(
        store
            .claim(claim_req("w", 1), T0)
            .await
            .unwrap()
            .assignments
            .is_empty(),
        "a draining agent claims nothing"
    );
    store.register_agent(registration("w"), T0).await.unwrap();
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    end(store, "w", &a.attempt, Outcome::Succeeded, T0)
        .await
        .unwrap();
}

pub(crate) async fn dag_runs_in_order(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let id = store
        .submit_job(
            job(
                "dag",
                vec![task("a", &[]), task("b", &["a"]), task("c", &["a", "b"])],
            ),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let first = store
        .claim(claim_req("w", 8), T0)
        .await
        .unwrap()
        .assignments;
    assert_eq!(first.len(), 1, "only the root is eligible");
    assert_eq!(first[0].attempt.task_id, "a");
    assert_eq!(first[0].params["day"], "1");
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Running);
    end(store, "w", &first[0].attempt, Outcome::Succeeded, T0 + 1)
        .await
        .unwrap();
    let second = store
        .claim(claim_req("w", 8), T0 + 2)
        .await
        .unwrap()
        .assignments;
    assert_eq!(
        second
            .iter()
            .map(|a| a.attempt.task_id.as_str())
            .collect::<Vec<_>>(),
        vec!["b"]
    );
    end(store, "w", &second[0].attempt, Outcome::Succeeded, T0 + 3)
        .await
        .unwrap();
    let third = store
        .claim(claim_req("w", 8), T0 + 4)
        .await
        .unwrap()
        .assignments;
    assert_eq!(third[0].attempt.task_id, "c");
    end(store, "w", &third[0].attempt, Outcome::Succeeded, T0 + 5)
        .await
        .unwrap();
    let done = store.get_job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    assert_eq!(done.finished_at, Some(T0 + 5));
}

pub(crate) async fn failure_skips_downstream_and_fails_job(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let id = store
        .submit_job(
            job(
                "fail",
                vec![
                    task("a", &[]),
                    task("b", &["a"]),
                    task("c", &["b"]),
                    task("d", &[]),
                ],
            ),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let claimed = store
        .claim(claim_req("w", 8), T0)
        .await
        .unwrap()
        .assignments;
    assert_eq!(claimed.len(), 2);
    for a in &claimed {
        let outcome = if a.attempt.task_id == "a" {
            Outcome::Failed
        } else {
            Outcome::Succeeded
        };
        end(store, "w", &a.attempt, outcome, T0 + 1).await.unwrap();
    }
    assert_eq!(task_state(store, &id, "a").await, TaskState::Failed);
    assert_eq!(task_state(store, &id, "b").await, TaskState::Skipped);
    assert_eq!(task_state(store, &id, "c").await, TaskState::Skipped);
    assert_eq!(task_state(store, &id, "d").await, TaskState::Succeeded);
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Failed);
}

pub(crate) async fn retries_after_backoff(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let mut t = task("r", &[]);
    t.retry = RetryPolicy {
        max_attempts: 2,
        initial_delay_ms: 1_000,
        max_delay_ms: 1_000,
    };
    let id = store
        .submit_job(job("retry", vec![t]), T0)
        .await
        .unwrap()
        .job_id;
    let a1 = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    end(store, "w", &a1.attempt, Outcome::Failed, T0)
        .await
        .unwrap();
    let early = store.claim(claim_req("w", 1), T0 + 100).await.unwrap();
    assert!(early.assignments.is_empty(), "backoff holds the retry");
    let ready = early.next_ready_at.expect("the retry's time is known");
    assert!((T0 + 500..=T0 + 1_000).contains(&ready), "{ready}");
    let a2 = store
        .claim(claim_req("w", 1), T0 + 1_000)
        .await
        .unwrap()
        .assignments
        .remove(0);
    assert_eq!(a2.attempt.attempt, 2);
    end(store, "w", &a2.attempt, Outcome::Succeeded, T0 + 1_001)
        .await
        .unwrap();
    let done = store.get_job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Succeeded);
    let states: Vec<_> = done.tasks[0].attempts.iter().map(|a| a.state).collect();
    assert_eq!(states, vec![AttemptState::Failed, AttemptState::Succeeded]);
}

pub(crate) async fn idempotency_key_returns_the_same_job(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let mut j = job("idem", vec![task("a", &[])]);
    j.idempotency_key = Some("k1".into());
    let first = store.submit_job(j.clone(), T0).await.unwrap();
    let second = store.submit_job(j.clone(), T0 + 1).await.unwrap();
    assert_eq!(first.job_id, second.job_id);
    assert!(second.existing);
    j.tasks[0].id = "other".into();
    let conflict = store.submit_job(j, T0 + 2).await;
    assert!(
        matches!(conflict, Err(StoreError::Conflict(_))),
        "{conflict:?}"
    );
    let a = store
        .claim(claim_req("w", 1), T0 + 3)
        .await
        .unwrap()
        .assignments
        .remove(0);
    end(store, "w", &a.attempt, Outcome::Succeeded, T0 + 4)
        .await
        .unwrap();
}

pub(crate) async fn logs_keep_a_bounded_tail(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    store
        .submit_job(job("logs", vec![task("a", &[])]), T0)
        .await
        .unwrap();
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    for i in 0..10u8 {
        let chunk = LogChunk {
            stderr: i % 2 == 1,
            data: vec![b'0' + i; 1_000],
        };
        store
            .append_logs("w", &a.attempt, vec![chunk], 0, 4_096)
            .await
            .unwrap();
    }
    let page = store.read_logs(&a.attempt, 0).await.unwrap();
    assert!(page.truncated);
    assert!(!page.finished);
    let kept: Vec<u8> = page
        .chunks
        .iter()
        .flat_map(|(_, c)| c.data.clone())
        .collect();
    assert!(kept.len() <= 4_096, "{}", kept.len());
    assert_eq!(*kept.last().unwrap(), b'9', "the tail is kept");
    let mut last = completion("w", &a.attempt, Outcome::Succeeded, vec![]);
    last.report.logs = vec![LogChunk {
        stderr: false,
        data: b"end".to_vec(),
    }];
    last.log_limit = 4_096;
    store.complete(last, None, T0 + 1).await.unwrap();
    let page = store.read_logs(&a.attempt, 0).await.unwrap();
    assert!(page.finished);
    assert_eq!(page.chunks.last().unwrap().1.data, b"end");
}

pub(crate) async fn queue_stats_count_queued_and_running(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let counts = |stats: Vec<crate::model::QueueStats>| -> Vec<(String, u32, u32)> {
        stats
            .into_iter()
            .filter(|q| q.name.starts_with("stats-"))
            .map(|q| (q.name, q.queued, q.running))
            .collect()
    };
    store
        .submit_job(
            job(
                "stats",
                vec![
                    on_queue(task("a", &[]), "stats-b"),
                    on_queue(task("b", &[]), "stats-b"),
                    on_queue(task("c", &[]), "stats-a"),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    let mut req = claim_req("w", 1);
    req.queues = vec!["stats-b".into()];
    let claimed = store.claim(req, T0).await.unwrap();
    assert_eq!(claimed.assignments.len(), 1);
    let expected = |b_running| {
        vec![
            ("stats-a".to_string(), 1, 0),
            ("stats-b".to_string(), 1, b_running),
        ]
    };
    assert_eq!(
        counts(store.queue_stats().await.unwrap()),
        expected(1),
        "per queue, in name order"
    );
    end(
        store,
        "w",
        &claimed.assignments[0].attempt,
        Outcome::Succeeded,
        T0,
    )
    .await
    .unwrap();
    assert_eq!(
        counts(store.queue_stats().await.unwrap()),
        expected(0),
        "a finished task counts no more"
    );
}
