//! Start-to-close timeouts: the attempt is `timed_out` and the whole process group is gone.

use std::time::Duration;

use ferry_proto::v1::GetJobRequest;
use ferry_tests::{
    eventually,
    job::{attempt_states, state, task_state},
    procs::{pid_alive, read_pids},
    Agent, AgentOpts, Controller, ControllerOpts, TestDir,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_past_its_timeout_is_timed_out_and_its_processes_killed() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("timeout").unwrap();
    let pids = scratch.path().join("pids");
    // The shell itself, a background child, and a foreground child: all must die.
    let job = format!(
        r#"
name = "stuck"

[[tasks]]
id = "stuck"
queue = "etl"
timeout = "1s"
retry = {{ max_attempts = 1 }}
shell = '''
echo $$ >> {pids}
sleep 300 &
echo $! >> {pids}
sleep 300
'''
"#,
        pids = pids.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();

    assert_eq!(state(&done), "failed", "{done:#}");
    assert_eq!(task_state(&done, "stuck"), "failed", "{done:#}");
    assert_eq!(attempt_states(&done, "stuck"), ["timed_out"], "{done:#}");
    let mut jobs = controller.job_client().await.unwrap();
    let stored = jobs
        .get_job(GetJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner();
    let attempt = &stored.tasks[0].attempts[0];
    let ran_ms = attempt.finished_at_ms - attempt.started_at_ms;
    assert!(
        (900..10_000).contains(&ran_ms),
        "a 1s timeout ended the attempt after {ran_ms} ms: {attempt:?}"
    );

    let pids = read_pids(&pids).unwrap();
    assert_eq!(pids.len(), 2, "the task wrote its pids: {pids:?}");
    eventually(
        "the task's processes to be gone",
        Duration::from_secs(5),
        || {
            let pids = pids.clone();
            async move { Ok(pids.iter().all(|&pid| !pid_alive(pid)).then_some(())) }
        },
    )
    .await
    .unwrap_or_else(|e| {
        let alive: Vec<_> = pids.iter().filter(|&&p| pid_alive(p)).collect();
        panic!("{e:#}: still alive: {alive:?}")
    });
}
