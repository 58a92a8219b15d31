//! Claims handed out once their transaction is written, before it is durable: a submit's to
//! parked polls, a completion's to its own agent.

use super::*;

pub(crate) async fn submit_serves_parked_claims(store: &Arc<dyn Store>) {
    agents(store, &["other", "w", "w2"]).await;
    let mut elsewhere = claim_req("other", 1);
    elsewhere.queues = vec!["elsewhere".into()];
    let written = store
        .submit_and_claim(
            job("parked", vec![task("a", &[]), task("b", &[])]),
            vec![elsewhere, claim_req("w", 1), claim_req("w2", 4)],
            T0,
        )
        .await
        .unwrap();
    let claimed = written.early;
    let submitted = written.durable.await.expect("the submit is durable");
    assert!(!submitted.existing);
    assert_eq!(claimed.len(), 3, "one answer per claim, in order");
    assert!(
        claimed[0].assignments.is_empty(),
        "another queue gets nothing"
    );
    assert_eq!(claimed[1].assignments.len(), 1, "at most `max`");
    assert_eq!(claimed[2].assignments.len(), 1, "what is left");
    let mut tasks: Vec<_> = claimed[1..]
        .iter()
        .map(|c| c.assignments[0].attempt.clone())
        .collect();
    tasks.sort_by(|x, y| x.task_id.cmp(&y.task_id));
    assert_eq!(tasks[0].job_id, submitted.job_id);
    assert_eq!(
        (tasks[0].task_id.as_str(), tasks[1].task_id.as_str()),
        ("a", "b")
    );
    for (agent, key) in [("w", &claimed[1]), ("w2", &claimed[2])] {
        let key = &key.assignments[0].attempt;
        assert_eq!(
            task_state(store, &submitted.job_id, &key.task_id).await,
            TaskState::Running
        );
        end(store, agent, key, Outcome::Succeeded, T0)
            .await
            .unwrap();
    }
    assert_eq!(
        store.get_job(&submitted.job_id).await.unwrap().state,
        JobState::Succeeded
    );
}

pub(crate) async fn completion_hands_its_claims_early(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let id = store
        .submit_job(job("early", vec![task("a", &[]), task("b", &["a"])]), T0)
        .await
        .unwrap()
        .job_id;
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments;
    assert_eq!(a[0].attempt.task_id, "a");
    let a = a[0].attempt.clone();
    let written = store
        .complete_early(
            completion("w", &a, Outcome::Succeeded, vec![]),
            Some(claim_req("w", 1)),
            T0 + 1,
        )
        .await
        .unwrap();
    let b = written.early;
    let effects = written.durable.await.expect("the completion is durable");
    assert_eq!(
        b.len(),
        1,
        "the task a's success released, in the same transaction"
    );
    assert_eq!(
        (b[0].attempt.job_id.as_str(), b[0].attempt.task_id.as_str()),
        (id.as_str(), "b")
    );
    assert!(effects.jobs.contains(&id), "{:?}", effects.jobs);
    assert_eq!(task_state(store, &id, "b").await, TaskState::Running);

    // Refused (the attempt already ended): nothing claimed, nothing handed out.
    let refused = store
        .complete_early(
            completion("w", &a, Outcome::Succeeded, vec![]),
            Some(claim_req("w", 1)),
            T0 + 2,
        )
        .await;
    assert!(
        matches!(refused, Err(StoreError::Fenced { .. })),
        "a refused completion hands nothing out: {:?}",
        refused.err()
    );

    end(store, "w", &b[0].attempt, Outcome::Succeeded, T0 + 3)
        .await
        .unwrap();
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Succeeded);
}
