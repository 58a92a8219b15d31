//! Conformance scenarios of published outputs: publication with the success, nothing from a
//! fenced or failed completion, and what retention reads.

use super::*;

fn outputs_agent(name: &str) -> (crate::store::AgentRegistration, ClaimRequest) {
    let mut reg = registration(name);
    reg.queues = vec!["outputs".into()];
    let mut claim = claim_req(name, 4);
    claim.queues = vec!["outputs".into()];
    (reg, claim)
}

fn file(name: &str, size: u64) -> OutputFile {
    OutputFile {
        name: name.into(),
        size,
        sha256: format!("{:064x}", size),
    }
}

pub(crate) async fn outputs_publish_with_the_success_and_become_inputs(store: &Arc<dyn Store>) {
    let (reg, claim) = outputs_agent("out-a");
    store.register_agent(reg, T0).await.unwrap();
    let id = store
        .submit_job(
            job(
                "outputs",
                vec![
                    on_queue(task("extract", &[]), "outputs"),
                    on_queue(task("other", &[]), "outputs"),
                    on_queue(task("load", &["extract"]), "outputs"),
                ],
            ),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let claimed = store.claim(claim.clone(), T0).await.unwrap().assignments;
    assert_eq!(claimed.len(), 2);
    assert!(
        claimed.iter().all(|a| a.inputs.is_empty()),
        "roots have no inputs"
    );
    let extract = claimed.iter().find(|a| a.task.id == "extract").unwrap();
    let other = claimed.iter().find(|a| a.task.id == "other").unwrap();
    store
        .check_attempt("out-a", &extract.attempt)
        .await
        .unwrap();
    assert!(matches!(
        store.check_attempt("w", &extract.attempt).await,
        Err(StoreError::Fenced { .. })
    ));
    let files = vec![
        file("rows.csv", 10),
        file("empty", 0),
        file("sub/meta.json", 3),
    ];
    store
        .complete(
            completion("out-a", &extract.attempt, Outcome::Succeeded, files.clone()),
            None,
            T0 + 5,
        )
        .await
        .unwrap();
    let listed = store.list_outputs(&id, Some("extract")).await.unwrap();
    let names: Vec<_> = listed.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["empty", "rows.csv", "sub/meta.json"]);
    assert!(listed.iter().all(|f| f.attempt == extract.attempt.attempt
        && f.task_id == "extract"
        && f.created_at == T0 + 5));
    let rows = listed.iter().find(|f| f.name == "rows.csv").unwrap();
    assert_eq!(
        (rows.size, rows.sha256.clone()),
        (10, files[0].sha256.clone())
    );
    assert_eq!(store.list_outputs(&id, None).await.unwrap().len(), 3);
    assert!(store
        .list_outputs(&id, Some("other"))
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.list_outputs(&id, Some("nope")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.list_outputs("no-such-job", None).await,
        Err(StoreError::NotFound(_))
    ));
    // The dependent's claim carries the published outputs of its dependency.
    let (effects, next) = store
        .complete(
            completion("out-a", &other.attempt, Outcome::Succeeded, vec![]),
            Some(claim.clone()),
            T0 + 6,
        )
        .await
        .unwrap();
    assert!(effects.jobs.contains(&id));
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].task.id, "load");
    assert_eq!(next[0].inputs, listed);
    assert_eq!(
        store.task_dependencies(&id, "load").await.unwrap(),
        vec!["extract".to_string()]
    );
    assert!(store
        .task_dependencies(&id, "extract")
        .await
        .unwrap()
        .is_empty());
    assert!(matches!(
        store.task_dependencies(&id, "nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        store
            .running_attempts(vec![extract.attempt.clone(), next[0].attempt.clone()])
            .await
            .unwrap(),
        vec![next[0].attempt.clone()]
    );
    end(store, "out-a", &next[0].attempt, Outcome::Succeeded, T0 + 7)
        .await
        .unwrap();
    assert_eq!(store.get_job(&id).await.unwrap().state, JobState::Succeeded);
}

pub(crate) async fn fenced_or_failed_completions_publish_nothing(store: &Arc<dyn Store>) {
    let (reg, claim) = outputs_agent("out-b");
    store.register_agent(reg.clone(), T0).await.unwrap();
    let mut spec = on_queue(task("t", &[]), "outputs");
    spec.retry.max_attempts = 3;
    spec.retry.initial_delay_ms = 0;
    spec.retry.max_delay_ms = 0;
    let id = store
        .submit_job(job("unpublished", vec![spec]), T0)
        .await
        .unwrap()
        .job_id;
    let first = store.claim(claim.clone(), T0).await.unwrap().assignments;
    assert_eq!(first.len(), 1);
    // The agent comes back under a new session: its attempt is lost, its success fenced.
    let mut again = reg.clone();
    again.session = "out-b-2".into();
    store.register_agent(again, T0 + 1).await.unwrap();
    let err = store
        .complete(
            completion(
                "out-b",
                &first[0].attempt,
                Outcome::Succeeded,
                vec![file("x", 1)],
            ),
            None,
            T0 + 2,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Fenced { .. }), "{err}");
    assert!(store.list_outputs(&id, None).await.unwrap().is_empty());
    // A failed attempt records no outputs even when it names some.
    let mut claim = claim;
    claim.session = "out-b-2".into();
    let second = store.claim(claim, T0 + 3).await.unwrap().assignments;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].attempt.attempt, 2);
    store
        .complete(
            completion(
                "out-b",
                &second[0].attempt,
                Outcome::Failed,
                vec![file("x", 1)],
            ),
            None,
            T0 + 4,
        )
        .await
        .unwrap();
    assert!(store.list_outputs(&id, None).await.unwrap().is_empty());
}

pub(crate) async fn retention_reads_job_ends_and_forgets_outputs(store: &Arc<dyn Store>) {
    let (mut reg, mut claim) = outputs_agent("out-r");
    reg.queues = vec!["retention".into()];
    claim.queues = reg.queues.clone();
    store.register_agent(reg, T0).await.unwrap();
    let ended = store
        .submit_job(
            job("retained", vec![on_queue(task("t", &[]), "retention")]),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let a = store.claim(claim, T0).await.unwrap().assignments.remove(0);
    let files = vec![file("a", 1), file("b", 2), file("c", 3)];
    store
        .complete(
            completion("out-r", &a.attempt, Outcome::Succeeded, files),
            None,
            T0 + 7,
        )
        .await
        .unwrap();
    let pending = store
        .submit_job(
            job("pending", vec![on_queue(task("p", &[]), "nobody-serves")]),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    let ends = store
        .job_ends(vec![ended.clone(), pending.clone(), "unknown".into()])
        .await
        .unwrap();
    assert_eq!(ends.len(), 2);
    assert_eq!(ends[&ended], Some(T0 + 7));
    assert_eq!(ends[&pending], None);
    assert_eq!(store.delete_outputs(&ended).await.unwrap(), 3);
    assert!(store.list_outputs(&ended, None).await.unwrap().is_empty());
    assert_eq!(store.delete_outputs(&ended).await.unwrap(), 0);
    store.cancel_job(&pending, T0).await.unwrap();
}
