//! Cancelling a running job: the job and attempt are `cancelled`, the process is gone, and
//! `jobs watch` reports the outcome with exit code 1.

use std::time::Duration;

use ferry_tests::{
    eventually,
    job::{attempt_states, state, task_state},
    procs::{pid_alive, read_pids},
    Agent, AgentOpts, Controller, ControllerOpts, TestDir,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_stops_its_process() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("cancel").unwrap();
    let pids = scratch.path().join("pids");
    let job = format!(
        r#"
name = "long"

[[tasks]]
id = "long"
queue = "etl"
shell = '''
sleep 300 &
echo $! >> {pids}
echo $$ >> {pids}
sleep 300
'''

[[tasks]]
id = "after"
queue = "etl"
depends_on = ["long"]
shell = "true"
"#,
        pids = pids.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();

    // Definitely mid-run: the task wrote both pids.
    eventually("the task to start", Duration::from_secs(20), || {
        let pids = pids.clone();
        async move { Ok(read_pids(&pids).ok().filter(|p| p.len() == 2).map(drop)) }
    })
    .await
    .unwrap();
    let running = cli.show(&id).await.unwrap();
    assert_eq!(state(&running), "running", "{running:#}");
    assert_eq!(task_state(&running, "long"), "running", "{running:#}");

    let watch = cli.spawn(["jobs", "watch", &id]).unwrap();
    let out = cli.run(["jobs", "cancel", &id]).await.unwrap();
    assert_eq!(out.code, 0, "jobs cancel: {out}");

    let done = cli.wait_job(&id, Duration::from_secs(20)).await.unwrap();
    assert_eq!(state(&done), "cancelled", "{done:#}");
    assert_eq!(task_state(&done, "long"), "cancelled", "{done:#}");
    assert_eq!(attempt_states(&done, "long"), ["cancelled"], "{done:#}");
    let after = task_state(&done, "after");
    assert!(
        after == "cancelled" || after == "skipped",
        "a task of a cancelled job never runs: {done:#}"
    );

    let pids = read_pids(&pids).unwrap();
    eventually(
        "the task's processes to be gone",
        Duration::from_secs(10),
        || {
            let pids = pids.clone();
            async move { Ok(pids.iter().all(|&pid| !pid_alive(pid)).then_some(())) }
        },
    )
    .await
    .unwrap();

    let watched = tokio::time::timeout(Duration::from_secs(20), watch.wait_with_output())
        .await
        .expect("jobs watch still running after the job was cancelled")
        .unwrap();
    assert_eq!(
        watched.status.code(),
        Some(1),
        "jobs watch of a cancelled job: {}",
        String::from_utf8_lossy(&watched.stderr)
    );
    // Watching a job that has already ended reports the same.
    let again = cli.run(["jobs", "watch", &id]).await.unwrap();
    assert_eq!(again.code, 1, "jobs watch after the end: {again}");
}
