//! `kill -9` of an agent while its task runs: the task's shell, its child and a descendant
//! that escaped into a session of its own (a double fork with `setsid`) are gone before the
//! controller's agent timeout has passed, and the requeued attempt is the only one running.

use std::time::{Duration, Instant};

use ferry_tests::{
    eventually,
    job::{attempt_states, state},
    Agent, AgentOpts, Controller, ControllerOpts, TestDir,
};

use crate::common::{cgroup_processes, processes_in, running_attempt, seen_pids, AGENT_TIMEOUT};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_task_is_gone_before_the_controller_reassigns_it() {
    let controller = Controller::start(ControllerOpts::default().agent_timeout(AGENT_TIMEOUT))
        .await
        .unwrap();
    let mut doomed = Agent::start(&controller.addr(), AgentOpts::new("doomed").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("guardian-killed").unwrap();
    let first = scratch.path().join("first");
    let second = scratch.path().join("second");
    let flag = scratch.path().join("flag");
    let job = format!(
        r#"
name = "killed"

[[tasks]]
id = "work"
queue = "etl"
retry = {{ max_attempts = 2, initial_delay = "0s" }}
shell = '''
if [ "$FERRY_ATTEMPT" = 1 ]; then
  (setsid sh -c 'echo "escaped $$" >> {first}; exec sleep 300' &)
  sleep 300 &
  echo "child $!" >> {first}
  echo "shell $$" >> {first}
  wait
fi
echo "shell $$" > {second}
while [ ! -f {flag} ]; do sleep 0.05; done
'''
"#,
        first = first.display(),
        second = second.display(),
        flag = flag.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let procs = seen_pids(&first, &["shell", "child", "escaped"]).await;
    let (shell, child, escaped) = (procs[0], procs[1], procs[2]);
    assert_eq!(child.stat.pgrp, shell.pid, "{procs:?}");
    assert_ne!(escaped.stat.session, shell.stat.session, "{procs:?}");
    assert_ne!(escaped.stat.pgrp, shell.stat.pgrp, "{procs:?}");

    // Only now does a second agent join: the first attempt could only go to the doomed one.
    let heir = Agent::start(&controller.addr(), AgentOpts::new("heir").queue("etl"))
        .await
        .unwrap();
    doomed.kill9().unwrap();
    let killed = Instant::now();
    eventually(
        "the killed agent's task processes to be gone",
        AGENT_TIMEOUT,
        || async { Ok(procs.iter().all(|p| !p.alive()).then_some(())) },
    )
    .await
    .unwrap_or_else(|e| {
        let left: Vec<_> = procs.iter().filter(|p| p.alive()).collect();
        panic!("{e:#}: {left:?} still run")
    });
    let gone = killed.elapsed();
    assert!(gone < AGENT_TIMEOUT, "gone {gone:?} after the kill");
    assert_eq!(processes_in(&doomed.work_dir()), Vec::<i32>::new());
    if let Some((tree, left)) = cgroup_processes(&doomed.work_dir()) {
        // The guard server may still be on its way out; the task's processes are not.
        let left: Vec<_> = left
            .into_iter()
            .filter(|p| procs.iter().any(|s| s.pid == *p))
            .collect();
        assert!(left.is_empty(), "{left:?} left in {}", tree.display());
    }

    let tries = running_attempt(&cli, &id, "work", 2).await;
    assert_eq!(
        tries
            .iter()
            .map(|a| state(a).to_owned())
            .collect::<Vec<_>>(),
        ["lost", "running"],
        "{tries:#?}"
    );
    assert_eq!(tries[1]["agent"], heir.name());
    let runner = seen_pids(&second, &["shell"]).await[0];
    assert!(runner.alive());
    assert!(
        procs.iter().all(|p| !p.alive()),
        "attempt 1 runs beside attempt 2"
    );

    std::fs::write(&flag, "go").unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(
        attempt_states(&done, "work"),
        ["lost", "succeeded"],
        "{done:#}"
    );
}
