//! The whole agent against two fake controllers sharing nothing but the session the agent
//! carries: when the controller it registered with goes away mid-task, the agent moves to the
//! other one and finishes the task there, under the same session, without registering again.

use std::time::Duration;

use ferry_proto::v1::{task_spec, Assignment, AttemptRef, Outcome, ShellTask, TaskSpec};
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Cli, Config},
    testing::Fake,
    Shutdown,
};

/// Waits until `done` holds, polling; panics naming `what` after 20 s.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_outlives_the_controller_that_assigned_it() {
    let fakes = [Fake::default(), Fake::default()];
    let stops = [CancellationToken::new(), CancellationToken::new()];
    let (url_a, task_a) = fakes[0].serve(stops[0].clone()).await;
    let (url_b, task_b) = fakes[1].serve(stops[1].clone()).await;
    let mut servers = [Some(task_a), Some(task_b)];
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli {
        controllers: vec![url_a, url_b],
        name: Some("failover".into()),
        work_dir: Some(dir.path().join("work")),
        heartbeat_interval: Some("200ms".into()),
        drain_timeout: Some("1s".into()),
        // The tests run as root; the task runs as the test's user.
        allow_root_tasks: true,
        ..Cli::default()
    };
    let mut config = Config::load_from(cli, Vec::new()).unwrap();
    // Guardians run from the agent's binary: the one `cargo test` built beside this one
    // (`target/<profile>/deps/ferry_agent-…` → `target/<profile>/ferry-agent`).
    let exe = std::env::current_exe().unwrap();
    config.guard_exe = exe.parent().unwrap().parent().unwrap().join("ferry-agent");
    assert!(
        config.guard_exe.is_file(),
        "{} not built: run `cargo test -p ferry-agent` (it builds the binary)",
        config.guard_exe.display()
    );
    let shutdown = Shutdown::default();
    let agent = tokio::spawn(crate::run(config, shutdown.clone()));

    // It starts with either controller; that one assigns a task, then goes away.
    until("registered", || {
        fakes.iter().map(|f| f.state().registers).sum::<u32>() == 1
    })
    .await;
    let first = usize::from(fakes[1].state().registers == 1);
    let other = 1 - first;
    let attempt = AttemptRef {
        job_id: "job-1".into(),
        task_id: "slow".into(),
        attempt: 1,
    };
    fakes[first].state().assignments.push(Assignment {
        attempt: Some(attempt.clone()),
        job_name: "failover".into(),
        task: Some(TaskSpec {
            id: "slow".into(),
            kind: Some(task_spec::Kind::Shell(ShellTask {
                command: "sleep 1.5; echo done".into(),
            })),
            ..TaskSpec::default()
        }),
        ..Assignment::default()
    });
    until("assigned", || fakes[first].state().assignments.is_empty()).await;
    stops[first].cancel();
    servers[first].take().unwrap().await.unwrap();

    until("completed on the other controller", || {
        !fakes[other].state().completions.is_empty()
    })
    .await;
    {
        let st = fakes[other].state();
        let done = &st.completions[0];
        assert_eq!(done.attempt.as_ref(), Some(&attempt));
        assert_eq!(done.outcome(), Outcome::Succeeded, "{}", done.error);
        assert_eq!(done.agent.as_ref().unwrap().session, "s-1", "same session");
        assert_eq!(st.registers, 0, "not registered again");
        assert!(!st.heartbeats.is_empty() && st.heartbeats.iter().all(|s| s == "s-1"));
        assert!(!st.polls.is_empty() && st.polls.iter().all(|s| s == "s-1"));
    }
    assert!(fakes[first].state().completions.is_empty());

    shutdown.drain.cancel();
    tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    stops[other].cancel();
    drop(servers);
}
