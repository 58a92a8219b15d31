//! Conformance: which agent may take a task beyond its queue and labels — an sql task only an
//! agent with its datasource — a failure no retry can fix, which ends the task at once, and a
//! task failed for waiting past its schedule-to-start timeout.

use super::*;
use crate::rules::placement::offer;

fn sql(id: &str, datasource: &str) -> TaskSpec {
    TaskSpec {
        kind: TaskKind::Sql {
            datasource: datasource.into(),
            query: "select 1".into(),
            format: "csv".into(),
            incremental_column: String::new(),
            compression: String::new(),
            max_rows_per_file: 0,
        },
        ..task(id, &[])
    }
}

pub(crate) async fn sql_tasks_go_only_to_agents_with_their_datasource(store: &Arc<dyn Store>) {
    agents(store, &["crm-agent", "sales-agent"]).await;
    let mut labelled = sql("labelled", "sales");
    labelled.labels.insert("site".into(), "dc1".into());
    let id = store
        .submit_job(
            job(
                "datasources",
                vec![sql("extract", "sales"), labelled, task("shell", &[])],
            ),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    // An agent without the datasource gets the shell task only.
    let mut crm = claim_req("crm-agent", 4);
    crm.labels = offer([("site".into(), "dc1".into())].into(), &["crm".into()]);
    let got = store.claim(crm, T0).await.unwrap().assignments;
    let ids: Vec<&str> = got.iter().map(|a| a.attempt.task_id.as_str()).collect();
    assert_eq!(ids, ["shell"]);
    // Datasource and labels are both required.
    let mut sales = claim_req("sales-agent", 4);
    sales.labels = offer(BTreeMap::new(), &["crm".into(), "sales".into()]);
    let got = store.claim(sales.clone(), T0).await.unwrap().assignments;
    let ids: Vec<&str> = got.iter().map(|a| a.attempt.task_id.as_str()).collect();
    assert_eq!(ids, ["extract"]);
    assert_eq!(task_state(store, &id, "labelled").await, TaskState::Queued);
    // What is stored for the claim is not what the job shows: its labels are the task's own.
    let shown = store.get_job(&id).await.unwrap();
    let labelled = shown
        .tasks
        .iter()
        .find(|t| t.spec.id == "labelled")
        .unwrap();
    assert_eq!(labelled.spec.labels, [("site".into(), "dc1".into())].into());
}

pub(crate) async fn a_failure_no_retry_can_fix_ends_its_task_at_once(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let mut first = task("first", &[]);
    first.retry.max_attempts = 3;
    let id = store
        .submit_job(job("final", vec![first, task("then", &["first"])]), T0)
        .await
        .unwrap()
        .job_id;
    let a = store
        .claim(claim_req("w", 1), T0)
        .await
        .unwrap()
        .assignments
        .remove(0);
    end(store, "w", &a.attempt, Outcome::FailedFinal, T0 + 1)
        .await
        .unwrap();
    let done = store.get_job(&id).await.unwrap();
    assert_eq!(done.state, JobState::Failed);
    let first = done.tasks.iter().find(|t| t.spec.id == "first").unwrap();
    assert_eq!(first.state, TaskState::Failed);
    assert_eq!(first.attempts.len(), 1, "two of its three attempts unused");
    assert_eq!(first.attempts[0].state, AttemptState::Failed);
    assert_eq!(task_state(store, &id, "then").await, TaskState::Skipped);
    assert!(store
        .claim(claim_req("w", 1), T0 + 60_000)
        .await
        .unwrap()
        .assignments
        .is_empty());
}

pub(crate) async fn unstarted_tasks_past_their_timeout_fail_finally(store: &Arc<dyn Store>) {
    agents(store, &["w"]).await;
    let mut a = on_queue(task("a", &[]), "nowhere");
    a.schedule_to_start_timeout_ms = 1_000;
    let id = store
        .submit_job(
            job(
                "unstarted",
                vec![a, task("b", &["a"]), on_queue(task("c", &[]), "nowhere")],
            ),
            T0,
        )
        .await
        .unwrap()
        .job_id;
    assert!(store.overdue_unstarted(T0 + 999).await.unwrap().is_empty());
    let overdue = store.overdue_unstarted(T0 + 1_000).await.unwrap();
    let ids: Vec<(&str, &str)> = overdue
        .iter()
        .map(|(job, spec)| (job.as_str(), spec.id.as_str()))
        .collect();
    assert_eq!(ids, [(id.as_str(), "a")]);
    assert_eq!(overdue[0].1.schedule_to_start_timeout_ms, 1_000);
    let why = "not started within 1s: no agent on queue nowhere";
    let effects = store
        .fail_unstarted(&id, "a", why, T0 + 1_000)
        .await
        .unwrap();
    assert_eq!(effects.jobs, std::slice::from_ref(&id));
    let shown = store.get_job(&id).await.unwrap();
    let a = shown.tasks.iter().find(|t| t.spec.id == "a").unwrap();
    assert_eq!((a.state, a.reason.as_str()), (TaskState::Failed, why));
    assert!(a.attempts.is_empty());
    assert_eq!(task_state(store, &id, "b").await, TaskState::Skipped);
    assert_eq!(task_state(store, &id, "c").await, TaskState::Queued);
    assert_eq!(shown.state, JobState::Pending);
    assert!(store
        .overdue_unstarted(T0 + 60_000)
        .await
        .unwrap()
        .is_empty());

    // A task a claim took is not failed, not even by a late call.
    let mut d = task("d", &[]);
    d.schedule_to_start_timeout_ms = 1_000;
    let second = store
        .submit_job(job("started", vec![d]), T0)
        .await
        .unwrap()
        .job_id;
    let got = store.claim(claim_req("w", 1), T0 + 500).await.unwrap();
    assert_eq!(got.assignments.len(), 1);
    assert!(store
        .overdue_unstarted(T0 + 5_000)
        .await
        .unwrap()
        .is_empty());
    let effects = store
        .fail_unstarted(&second, "d", "late", T0 + 5_000)
        .await
        .unwrap();
    assert!(effects.jobs.is_empty());
    assert_eq!(task_state(store, &second, "d").await, TaskState::Running);
}
