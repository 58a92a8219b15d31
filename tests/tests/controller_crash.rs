//! A controller killed with SIGKILL mid-job and restarted on the same data dir and port loses
//! no accepted job: every one of them, even one submitted just before the kill, completes.

use std::time::Duration;

use ferry_tests::{
    eventually,
    job::{attempts, state},
    Agent, AgentOpts, Controller, ControllerOpts, TestDir,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_jobs_survive_a_controller_kill9() {
    // A generous agent timeout: the restart below must not be taken for the agent's death.
    let mut controller =
        Controller::start(ControllerOpts::default().agent_timeout(Duration::from_secs(5)))
            .await
            .unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-a").queue("etl").max_tasks(2),
    )
    .await
    .unwrap();
    let scratch = TestDir::new("controller-crash").unwrap();
    let cli = controller.cli();

    let mut ids = Vec::new();
    for n in 0..4 {
        let marks = scratch.path().join(format!("job-{n}"));
        let job = format!(
            r#"
name = "crash-{n}"

[[tasks]]
id = "first"
queue = "etl"
shell = "echo first >> {marks}; sleep 1"

[[tasks]]
id = "second"
queue = "etl"
depends_on = ["first"]
shell = "echo second >> {marks}; sleep 1"
"#,
            marks = marks.display()
        );
        ids.push(cli.submit(&job).await.unwrap());
    }
    // Mid-job: some task has started.
    eventually("a task to start", Duration::from_secs(20), || async {
        let started = (0..4).any(|n| scratch.path().join(format!("job-{n}")).exists());
        Ok(started.then_some(()))
    })
    .await
    .unwrap();

    // Accepted (its id printed), then the controller dies at once.
    let last = cli
        .submit(
            r#"
name = "last-words"

[[tasks]]
id = "only"
queue = "etl"
shell = "true"
"#,
        )
        .await
        .unwrap();
    controller.kill9().unwrap();
    ids.push(last);

    controller.restart().await.unwrap();

    let listed = cli.jobs().await.unwrap();
    for id in &ids {
        assert!(
            listed.iter().any(|j| j["id"] == id.as_str()),
            "job {id} missing after the restart: {listed:#?}"
        );
    }
    for id in &ids {
        let done = cli.wait_job(id, Duration::from_secs(60)).await.unwrap();
        assert_eq!(state(&done), "succeeded", "job {id}: {done:#}");
        for task in done["tasks"].as_array().unwrap() {
            let task_id = task["id"].as_str().unwrap();
            assert_eq!(state(task), "succeeded", "{done:#}");
            // A restart is not a mass death: no attempt was lost to it.
            for attempt in attempts(&done, task_id) {
                assert_ne!(state(attempt), "lost", "job {id}: {done:#}");
            }
        }
    }
    for n in 0..4 {
        let marks = std::fs::read_to_string(scratch.path().join(format!("job-{n}"))).unwrap();
        assert_eq!(
            marks.lines().collect::<Vec<_>>(),
            ["first", "second"],
            "job-{n} ran each task once"
        );
    }
}
