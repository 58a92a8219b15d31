//! An agent restarted on the work directory of one that died with its guardian (both killed
//! while the agent was frozen, so neither could stop the task) stops the task's processes, an
//! escaped descendant too, before it takes any work; the task then runs again, once.

use std::time::Duration;

use ferry_tests::{
    eventually,
    job::{attempt_states, state},
    Controller, ControllerOpts, TestDir,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::common::{cgroup_processes, seen_pids, stat, stopped, AgentOnDir, Seen, AGENT_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_agent_stops_what_its_predecessor_left() {
    let controller = Controller::start(ControllerOpts::default().agent_timeout(AGENT_TIMEOUT))
        .await
        .unwrap();
    let cli = controller.cli();
    let scratch = TestDir::new("guardian-restart").unwrap();
    let work = scratch.path().join("work");
    let log = scratch.path().join("agents.log");
    let pids = scratch.path().join("pids");
    let mut first = AgentOnDir::start(&cli, "first", &work, &log).await;
    let job = format!(
        r#"
name = "restart"

[[tasks]]
id = "work"
queue = "etl"
retry = {{ max_attempts = 2, initial_delay = "0s" }}
shell = '''
if [ "$FERRY_ATTEMPT" = 1 ]; then
  (setsid sh -c 'echo "escaped $$" >> {pids}; exec sleep 300' &)
  echo "shell $$" >> {pids}
  sleep 300
fi
'''
"#,
        pids = pids.display()
    );
    let id = cli.submit(&job).await.unwrap();
    let left = seen_pids(&pids, &["shell", "escaped"]).await;
    let shell = left[0];
    let guardian = Seen::now(shell.stat.ppid).expect("the task's guardian runs");
    let comm = std::fs::read_to_string(format!("/proc/{}/comm", guardian.pid)).unwrap();
    assert_eq!(
        comm.trim(),
        "ferry-guard",
        "the shell's parent is its guardian"
    );
    let old_tree = cgroup_processes(&work).map(|(tree, _)| tree);

    // Frozen, the agent cannot react to its guardian's death; then both die.
    let agent = Pid::from_raw(first.pid());
    kill(agent, Signal::SIGSTOP).unwrap();
    // Stopped only once every thread is (until then, one could still see its guardian die).
    eventually(
        "the agent to be stopped",
        Duration::from_secs(10),
        || async { Ok(stopped(first.pid()).then_some(())) },
    )
    .await
    .unwrap();
    kill(Pid::from_raw(guardian.pid), Signal::SIGKILL).unwrap();
    eventually(
        "the guardian to be gone",
        Duration::from_secs(10),
        || async { Ok((!guardian.alive()).then_some(())) },
    )
    .await
    .unwrap();
    first.kill9();
    assert!(
        left.iter().all(Seen::alive),
        "the task outlived its agent and guardian: {left:?}, {:?}",
        left.iter().map(|p| stat(p.pid)).collect::<Vec<_>>()
    );

    let _second = AgentOnDir::start(&cli, "second", &work, &log).await;
    let survivors: Vec<_> = left.iter().filter(|p| p.alive()).collect();
    assert!(
        survivors.is_empty(),
        "left running by the first agent: {survivors:?}"
    );
    if let Some(tree) = old_tree {
        assert!(!tree.exists(), "{} is left behind", tree.display());
    }

    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(
        attempt_states(&done, "work"),
        ["lost", "succeeded"],
        "{done:#}"
    );
}
