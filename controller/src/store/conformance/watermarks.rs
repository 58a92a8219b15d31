//! Conformance scenarios of incremental extracts: watermarks move only with a current
//! success, backfills leave them, and they are set and reset by hand.

use super::*;

fn incremental(id: &str) -> TaskSpec {
    let mut spec = on_queue(task(id, &[]), "wm");
    spec.kind = TaskKind::Sql {
        datasource: "orders".into(),
        query: "select * from orders".into(),
        format: "csv".into(),
        incremental_column: "updated_at".into(),
        compression: "gzip".into(),
        max_rows_per_file: 1000,
    };
    spec.retry = RetryPolicy {
        max_attempts: 5,
        initial_delay_ms: 0,
        max_delay_ms: 0,
    };
    spec
}

fn wm_agent(session: &str) -> (crate::store::AgentRegistration, ClaimRequest) {
    agent_on_own_queue("wm", session)
}

/// Agent `name` serving the queue of its own name, under `session`, with datasource `orders`.
fn agent_on_own_queue(
    name: &str,
    session: &str,
) -> (crate::store::AgentRegistration, ClaimRequest) {
    let offer = crate::rules::placement::offer(BTreeMap::new(), &["orders".into()]);
    let mut reg = registration(name);
    reg.queues = vec![name.into()];
    reg.session = session.into();
    reg.labels = offer.clone();
    let mut claim = claim_req(name, 4);
    claim.queues = vec![name.into()];
    claim.session = session.into();
    claim.labels = offer;
    (reg, claim)
}

/// Agent `name` on its queue of that name, and a first run of the job `name`'s incremental
/// task `extract` done by it, which stored the watermark "10". Returns the agent's claim.
async fn extracted_once(store: &Arc<dyn Store>, name: &str) -> ClaimRequest {
    let (reg, claim) = agent_on_own_queue(name, &format!("{name}-1"));
    store.register_agent(reg, T0).await.unwrap();
    let spec = on_queue(incremental("extract"), name);
    store.submit_job(job(name, vec![spec]), T0).await.unwrap();
    let a = store.claim(claim.clone(), T0).await.unwrap().assignments;
    store
        .complete(
            with_extract(
                completion(name, &a[0].attempt, Outcome::Succeeded, vec![]),
                extracted(3, Some("10"), false),
            ),
            None,
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(
        stored_mark(store, name, "extract").await.as_deref(),
        Some("10")
    );
    claim
}

fn extracted(rows: u64, watermark: Option<&str>, backfill: bool) -> ExtractInfo {
    ExtractInfo {
        rows,
        bytes: rows * 10,
        files: vec!["extract.csv.gz".into()],
        columns: vec![ExtractColumn {
            name: "updated_at".into(),
            source_type: "timestamptz".into(),
            file_type: "string".into(),
            nullable: false,
        }],
        watermark: watermark.map(str::to_string),
        incremental_column: "updated_at".into(),
        backfill,
    }
}

fn with_extract(mut c: Completion, extract: ExtractInfo) -> Completion {
    c.report.extract = Some(extract);
    c
}

async fn stored_mark(store: &Arc<dyn Store>, job: &str, task: &str) -> Option<String> {
    store
        .list_watermarks(Some(job))
        .await
        .unwrap()
        .into_iter()
        .find(|w| w.task_id == task)
        .map(|w| w.value)
}

pub(crate) async fn watermarks_move_only_with_a_current_success(store: &Arc<dyn Store>) {
    let (reg, claim) = wm_agent("wm-1");
    store.register_agent(reg, T0).await.unwrap();
    let mut load = on_queue(task("load", &["extract"]), "wm");
    load.retry.max_attempts = 1;
    let id = store
        .submit_job(job("wm-job", vec![incremental("extract"), load]), T0)
        .await
        .unwrap()
        .job_id;
    assert!(store
        .list_watermarks(Some("wm-job"))
        .await
        .unwrap()
        .is_empty());
    let first = store.claim(claim.clone(), T0).await.unwrap().assignments;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].extract_range,
        Some(ExtractRange::default()),
        "no watermark yet: from the start, the agent fixes the upper bound"
    );
    match &first[0].task.kind {
        TaskKind::Sql {
            compression,
            max_rows_per_file,
            ..
        } => assert_eq!((compression.as_str(), *max_rows_per_file), ("gzip", 1000)),
        other => panic!("{other:?}"),
    }
    // A failure that reports an extract moves nothing and records nothing.
    store
        .complete(
            with_extract(
                completion("wm", &first[0].attempt, Outcome::Failed, vec![]),
                extracted(3, Some("10"), false),
            ),
            None,
            T0 + 1,
        )
        .await
        .unwrap();
    assert_eq!(stored_mark(store, "wm-job", "extract").await, None);
    // A lost attempt's late success is fenced: nothing moves.
    let second = store
        .claim(claim.clone(), T0 + 2)
        .await
        .unwrap()
        .assignments;
    assert_eq!(second[0].attempt.attempt, 2);
    store.agent_dead("wm", "wm-1", T0 + 3).await.unwrap();
    let late = store
        .complete(
            with_extract(
                completion("wm", &second[0].attempt, Outcome::Succeeded, vec![]),
                extracted(3, Some("10"), false),
            ),
            None,
            T0 + 4,
        )
        .await;
    assert!(matches!(late, Err(StoreError::Fenced { .. })), "{late:?}");
    assert_eq!(stored_mark(store, "wm-job", "extract").await, None);
    assert!(store.list_extracts(&id, None).await.unwrap().is_empty());
    // The current attempt's success sets it, in the same transaction as the success.
    let (reg, claim) = wm_agent("wm-2");
    store.register_agent(reg, T0 + 5).await.unwrap();
    let third = store
        .claim(claim.clone(), T0 + 5)
        .await
        .unwrap()
        .assignments;
    assert_eq!(third[0].attempt.attempt, 3);
    assert_eq!(third[0].extract_range, Some(ExtractRange::default()));
    let (_, next) = store
        .complete(
            with_extract(
                completion("wm", &third[0].attempt, Outcome::Succeeded, vec![]),
                extracted(3, Some("10"), false),
            ),
            Some(claim.clone()),
            T0 + 6,
        )
        .await
        .unwrap();
    let marks = store.list_watermarks(Some("wm-job")).await.unwrap();
    assert_eq!(marks.len(), 1);
    let mark = &marks[0];
    assert_eq!(
        (
            mark.column.as_str(),
            mark.value.as_str(),
            mark.job_id.as_deref(),
            mark.attempt,
            mark.updated_at
        ),
        ("updated_at", "10", Some(id.as_str()), 3, T0 + 6)
    );
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].task.id, "load");
    assert_eq!(next[0].extract_range, None, "shell tasks get no range");
    let record = store.get_job(&id).await.unwrap();
    let extract_task = record
        .tasks
        .iter()
        .find(|t| t.spec.id == "extract")
        .unwrap();
    assert_eq!(extract_task.extract, Some(extracted(3, Some("10"), false)));
    assert_eq!(
        record
            .tasks
            .iter()
            .find(|t| t.spec.id == "load")
            .unwrap()
            .extract,
        None
    );
    let listed = store.list_extracts(&id, None).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        (listed[0].task_id.as_str(), listed[0].attempt),
        ("extract", 3)
    );
    assert!(store
        .list_extracts(&id, Some("load"))
        .await
        .unwrap()
        .is_empty());
    assert_eq!(
        store.list_extracts(&id, Some("extract")).await.unwrap(),
        listed
    );
    assert!(matches!(
        store.list_extracts(&id, Some("nope")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.list_extracts("no-such-job", None).await,
        Err(StoreError::NotFound(_))
    ));
    end(store, "wm", &next[0].attempt, Outcome::Succeeded, T0 + 7)
        .await
        .unwrap();

    // The next run of the same job name starts past it; a success with no rows (no
    // watermark) leaves it, a lost attempt leaves it and its retry gets the same range.
    let run2 = store
        .submit_job(job("wm-job", vec![incremental("extract")]), T0 + 8)
        .await
        .unwrap()
        .job_id;
    let a = store
        .claim(claim.clone(), T0 + 8)
        .await
        .unwrap()
        .assignments;
    let after_10 = Some(ExtractRange {
        after: Some("10".into()),
        until: None,
        backfill: false,
    });
    assert_eq!(a[0].extract_range, after_10);
    store.agent_dead("wm", "wm-2", T0 + 9).await.unwrap();
    assert_eq!(
        stored_mark(store, "wm-job", "extract").await.as_deref(),
        Some("10")
    );
    let (reg, claim) = wm_agent("wm-3");
    store.register_agent(reg, T0 + 10).await.unwrap();
    let retry = store
        .claim(claim.clone(), T0 + 10)
        .await
        .unwrap()
        .assignments;
    assert_eq!(retry[0].attempt.attempt, 2);
    assert_eq!(
        retry[0].extract_range, after_10,
        "the retry extracts the same range"
    );
    store
        .complete(
            with_extract(
                completion("wm", &retry[0].attempt, Outcome::Succeeded, vec![]),
                extracted(0, None, false),
            ),
            None,
            T0 + 11,
        )
        .await
        .unwrap();
    assert_eq!(
        stored_mark(store, "wm-job", "extract").await.as_deref(),
        Some("10")
    );
    assert_eq!(
        store.get_job(&run2).await.unwrap().state,
        JobState::Succeeded
    );
    assert!(matches!(
        store.list_watermarks(Some("no-job-of-that-name")).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(store
        .list_watermarks(None)
        .await
        .unwrap()
        .iter()
        .any(|w| w.job_name == "wm-job" && w.value == "10"));
}

pub(crate) async fn backfills_extract_a_range_and_leave_the_watermark(store: &Arc<dyn Store>) {
    let claim = extracted_once(store, "wm-bf").await;
    let mut backfilled = job("wm-bf", vec![on_queue(incremental("extract"), "wm-bf")]);
    backfilled.backfill.insert(
        "extract".into(),
        Backfill {
            from: Some("3".into()),
            until: "7".into(),
        },
    );
    backfilled.idempotency_key = Some("wm-backfill".into());
    let id = store
        .submit_job(backfilled.clone(), T0 + 20)
        .await
        .unwrap()
        .job_id;
    let again = store.submit_job(backfilled.clone(), T0 + 21).await.unwrap();
    assert!(again.existing);
    assert_eq!(again.job_id, id);
    let mut other = backfilled.clone();
    other.backfill.get_mut("extract").unwrap().until = "8".into();
    assert!(
        matches!(
            store.submit_job(other, T0 + 22).await,
            Err(StoreError::Conflict(_))
        ),
        "a different backfill is a different spec"
    );
    let a = store
        .claim(claim.clone(), T0 + 23)
        .await
        .unwrap()
        .assignments;
    assert_eq!(a.len(), 1);
    assert_eq!(
        a[0].extract_range,
        Some(ExtractRange {
            after: Some("3".into()),
            until: Some("7".into()),
            backfill: true,
        })
    );
    // Even when the agent forgets to say it is a backfill, the job's record decides.
    store
        .complete(
            with_extract(
                completion("wm-bf", &a[0].attempt, Outcome::Succeeded, vec![]),
                extracted(4, Some("7"), false),
            ),
            None,
            T0 + 24,
        )
        .await
        .unwrap();
    assert_eq!(
        stored_mark(store, "wm-bf", "extract").await.as_deref(),
        Some("10")
    );
    assert_eq!(
        store.get_job(&id).await.unwrap().tasks[0]
            .extract
            .as_ref()
            .map(|e| e.rows),
        Some(4),
        "a backfill's extract is still recorded"
    );
}

pub(crate) async fn watermarks_are_set_and_reset_by_hand(store: &Arc<dyn Store>) {
    let claim = extracted_once(store, "wm-set").await;
    let set = store
        .set_watermark("wm-set", "extract", "15", T0 + 30)
        .await
        .unwrap();
    assert_eq!(
        (
            set.column.as_str(),
            set.value.as_str(),
            set.job_id.clone(),
            set.attempt,
            set.updated_at
        ),
        ("updated_at", "15", None, 0, T0 + 30)
    );
    assert_eq!(
        store.list_watermarks(Some("wm-set")).await.unwrap(),
        vec![set]
    );
    store
        .submit_job(
            job(
                "wm-mixed",
                vec![
                    on_queue(incremental("extract"), "nobody-serves"),
                    on_queue(task("sh", &[]), "nobody-serves"),
                ],
            ),
            T0,
        )
        .await
        .unwrap();
    match store.set_watermark("wm-mixed", "sh", "1", T0).await {
        Err(StoreError::Invalid(why)) => {
            assert!(why.contains("\"sh\"") && why.contains("extract"), "{why}")
        }
        other => panic!("{other:?}"),
    }
    match store.set_watermark("wm-mixed", "zz", "1", T0).await {
        Err(StoreError::NotFound(what)) => assert!(
            what.contains("\"zz\"") && what.contains("wm-mixed"),
            "{what}"
        ),
        other => panic!("{other:?}"),
    }
    match store
        .set_watermark("no-such-name", "extract", "1", T0)
        .await
    {
        Err(StoreError::NotFound(what)) => assert!(what.contains("no-such-name"), "{what}"),
        other => panic!("{other:?}"),
    }
    let next = store
        .submit_job(
            job("wm-set", vec![on_queue(incremental("extract"), "wm-set")]),
            T0 + 31,
        )
        .await
        .unwrap()
        .job_id;
    assert!(store.reset_watermark("wm-set", "extract").await.unwrap());
    assert!(!store.reset_watermark("wm-set", "extract").await.unwrap());
    assert!(matches!(
        store.reset_watermark("no-such-name", "extract").await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.reset_watermark("wm-set", "zz").await,
        Err(StoreError::NotFound(_))
    ));
    let a = store.claim(claim, T0 + 32).await.unwrap().assignments;
    assert_eq!(a[0].attempt.job_id, next);
    assert_eq!(
        a[0].extract_range,
        Some(ExtractRange::default()),
        "after a reset the next run extracts from the start"
    );
}
