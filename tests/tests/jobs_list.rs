//! `ferry jobs list` tells the tasks that failed, were cancelled or skipped apart from those
//! that succeeded, in its text and in its JSON.

use std::time::Duration;

use ferry_tests::{eventually, job::task_state, Agent, AgentOpts, Controller, ControllerOpts};

const JOB: &str = r#"
name = "mixed"

[[tasks]]
id = "ok1"
queue = "etl"
shell = "true"

[[tasks]]
id = "ok2"
queue = "etl"
shell = "true"

[[tasks]]
id = "ok3"
queue = "etl"
shell = "true"

[[tasks]]
id = "bad"
queue = "etl"
shell = "exit 3"
retry = { max_attempts = 1 }

[[tasks]]
id = "after_bad"
queue = "etl"
depends_on = ["bad"]
shell = "true"

[[tasks]]
id = "waits"
queue = "etl"
shell = "sleep 300"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_list_counts_failed_cancelled_and_skipped_tasks_apart_from_done_ones() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let cli = controller.cli();
    let id = cli.submit(JOB).await.unwrap();

    eventually(
        "every task but `waits` to end, `waits` running",
        Duration::from_secs(30),
        || {
            let (cli, id) = (&cli, &id);
            async move {
                let job = cli.show(id).await?;
                let states: Vec<&str> = ["ok1", "ok2", "ok3", "bad", "after_bad", "waits"]
                    .iter()
                    .map(|t| task_state(&job, t))
                    .collect();
                Ok((states
                    == [
                        "succeeded",
                        "succeeded",
                        "succeeded",
                        "failed",
                        "skipped",
                        "running",
                    ])
                .then_some(()))
            }
        },
    )
    .await
    .unwrap();
    let out = cli.run(["jobs", "list"]).await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .expect("the job's row");
    assert!(row.contains(" 3/6 done, 1 failed, 1 skipped "), "{row}");

    let cancelled = cli.run(["jobs", "cancel", &id]).await.unwrap();
    assert_eq!(cancelled.code, 0, "{cancelled}");
    cli.wait_job(&id, Duration::from_secs(20)).await.unwrap();

    let out = cli.run(["jobs", "list"]).await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    let row = out
        .stdout
        .lines()
        .find(|l| l.contains(&id))
        .expect("the job's row");
    assert!(row.contains(" cancelled "), "{row}");
    assert!(
        row.contains(" 3/6 done, 1 failed, 1 cancelled, 1 skipped "),
        "{row}"
    );

    let jobs = cli.json(["jobs", "list"]).await.unwrap();
    let job = jobs
        .as_array()
        .and_then(|jobs| jobs.iter().find(|j| j["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("the job in {jobs:#}"));
    for (field, count) in [
        ("tasks_total", 6),
        ("tasks_done", 6),
        ("tasks_succeeded", 3),
        ("tasks_failed", 1),
        ("tasks_cancelled", 1),
        ("tasks_skipped", 1),
    ] {
        assert_eq!(job[field], count, "{field} in {job:#}");
    }
}
