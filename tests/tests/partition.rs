//! An agent cut off from the controller for longer than the agent timeout kills its own running
//! tasks (DESIGN.md invariant 4), and rejoins once the controller answers again.

use std::time::{Duration, Instant};

use ferry_tests::{
    eventually,
    job::{attempt_states, state},
    procs::{pid_alive, read_pids},
    Agent, AgentOpts, Controller, ControllerOpts, TestDir,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_off_agent_kills_its_tasks_before_the_controller_reassigns_them() {
    let timeout = Duration::from_secs(2);
    let controller = Controller::start(ControllerOpts::default().agent_timeout(timeout))
        .await
        .unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("island")
            .queue("etl")
            .heartbeat_interval(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let scratch = TestDir::new("partition").unwrap();
    let pids = scratch.path().join("pids");
    let runs = scratch.path().join("runs");
    let job = format!(
        r#"
name = "cut-off"

[[tasks]]
id = "long"
queue = "etl"
retry = {{ max_attempts = 2, initial_delay = "0s" }}
shell = '''
echo run >> {runs}
if [ "$FERRY_ATTEMPT" = 1 ]; then echo $$ >> {pids}; sleep 300; fi
'''
"#,
        pids = pids.display(),
        runs = runs.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    // The file exists as soon as the shell opens it, before the pid is written: wait for it.
    let pid = eventually("the task to start", Duration::from_secs(20), || async {
        Ok(if pids.exists() {
            read_pids(&pids)?.first().copied()
        } else {
            None
        })
    })
    .await
    .unwrap();

    // Freeze the controller: to the agent it is unreachable (its calls get no answer).
    let controller_pid = Pid::from_raw(controller.pid().unwrap() as i32);
    kill(controller_pid, Signal::SIGSTOP).unwrap();
    let frozen = Instant::now();
    let killed = loop {
        if !pid_alive(pid) {
            break frozen.elapsed();
        }
        if frozen.elapsed() > Duration::from_secs(10) {
            kill(controller_pid, Signal::SIGCONT).unwrap();
            panic!("the cut-off agent still runs its task after 10s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    kill(controller_pid, Signal::SIGCONT).unwrap();
    assert!(
        killed <= timeout + Duration::from_millis(800),
        "the agent killed its task {killed:?} after losing contact; the agent timeout is {timeout:?}"
    );

    // Back in touch: the controller (which gives agents a full timeout after it resumes
    // hearing from them) declares the old session's attempt lost or the agent re-registers;
    // either way the task runs again and the job succeeds.
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(
        attempt_states(&done, "long"),
        ["lost", "succeeded"],
        "{done:#}"
    );
    let runs = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(runs.lines().count(), 2, "the task ran {runs:?}");
}
