//! Job watchers (issue 16, class 2): a watch sends the job once, then only the tasks that
//! changed; the watch's last view is what `jobs show` prints; a watcher that stops reading is
//! given a fresh snapshot when it reads again, costs the controller a bounded amount of
//! memory, and `ferry jobs watch` stopped and resumed still ends right.

use std::time::Duration;

use ferry_proto::v1::{Job, TaskState};
use ferry_tests::{
    job::{attempts, state},
    watch::{open_narrow, Watcher},
    Agent, AgentOpts, Controller, ControllerOpts, FakeAgent,
};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);

/// A job of `n` tasks running `command`; task `i` depends on task `i - 10`, so tasks are
/// released as others succeed.
fn job_file(name: &str, n: usize, command: &str) -> String {
    let mut toml = format!("name = \"{name}\"\n");
    for i in 0..n {
        toml.push_str(&format!(
            "\n[[tasks]]\nid = \"t{i}\"\nshell = \"{command}\"\n"
        ));
        if i >= 10 {
            toml.push_str(&format!("depends_on = [\"t{}\"]\n", i - 10));
        }
    }
    toml
}

/// `TASK_STATE_SUCCEEDED` → `succeeded`, as `jobs show` prints it.
fn state_word(state: TaskState) -> String {
    state
        .as_str_name()
        .trim_start_matches("TASK_STATE_")
        .to_lowercase()
}

/// The watch's whole view agrees with `jobs show`: job state, and each task's state and
/// attempts (number, agent).
fn assert_same_as_shown(watched: &Job, shown: &Value) {
    assert_eq!(watched.id, shown["id"].as_str().unwrap());
    let job_state = watched
        .state()
        .as_str_name()
        .trim_start_matches("JOB_STATE_")
        .to_lowercase();
    assert_eq!(job_state, state(shown), "job state");
    let tasks = shown["tasks"].as_array().unwrap();
    assert_eq!(watched.tasks.len(), tasks.len(), "task count");
    for task in &watched.tasks {
        let shown_task = tasks
            .iter()
            .find(|t| t["id"] == task.id.as_str())
            .unwrap_or_else(|| panic!("task {} not in jobs show", task.id));
        assert_eq!(
            state_word(task.state()),
            state(shown_task),
            "task {}",
            task.id
        );
        let listed: Vec<(u64, &str)> = attempts(shown, &task.id)
            .iter()
            .map(|a| (a["number"].as_u64().unwrap(), a["agent"].as_str().unwrap()))
            .collect();
        let watched_attempts: Vec<(u64, &str)> = task
            .attempts
            .iter()
            .map(|a| (u64::from(a.number), a.agent.as_str()))
            .collect();
        assert_eq!(watched_attempts, listed, "attempts of {}", task.id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_sends_the_job_once_then_changes_and_ends_as_jobs_show() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-w").max_tasks(2))
        .await
        .unwrap();
    let cli = controller.cli();
    // Two at a time for about two seconds: many changes, a few at a time.
    let n = 60;
    let id = cli
        .submit(&job_file("watched", n, "sleep 0.05"))
        .await
        .unwrap();
    let cli_watch = cli.spawn(["jobs", "watch", &id]).unwrap();
    let mut watcher = Watcher::open(&controller.addr(), &id).await.unwrap();
    let last = watcher.until_ended(LIMIT).await.unwrap();
    let shown = cli.show(&id).await.unwrap();
    assert_eq!(state(&shown), "succeeded", "{shown:#}");
    assert_same_as_shown(&last, &shown);

    let seen = watcher.seen();
    assert_eq!(seen[0].snapshot, Some((true, false)), "{seen:?}");
    let snapshot_tasks: usize = seen
        .iter()
        .take_while(|s| s.snapshot.is_some())
        .map(|s| s.tasks)
        .sum();
    assert_eq!(
        snapshot_tasks, n,
        "the first snapshot is the whole job: {seen:?}"
    );
    let deltas: Vec<usize> = seen
        .iter()
        .filter(|s| s.snapshot.is_none())
        .map(|s| s.tasks)
        .collect();
    assert!(deltas.len() >= 2, "changes came as deltas: {seen:?}");
    let mean = deltas.iter().sum::<usize>() as f64 / deltas.len() as f64;
    assert!(
        mean < n as f64 / 2.0,
        "deltas carry the tasks that changed, not the job: {deltas:?}"
    );
    assert!(
        seen.iter().all(|s| s.snapshot != Some((true, true))),
        "a watcher that keeps up is never resynced: {seen:?}"
    );

    let out = tokio::time::timeout(LIMIT, cli_watch.wait_with_output())
        .await
        .expect("jobs watch still running after the job ended")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "jobs watch: {stderr}");
    assert!(stderr.contains(&format!("{n}/{n} done")), "{stderr}");
    assert!(stderr.contains("succeeded in"), "{stderr}");
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmHWM in {status}"));
    kb / 1024.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_watchers_are_resynced_and_cost_bounded_memory() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let n = 3000;
    let id = cli.submit(&job_file("stalled", n, "true")).await.unwrap();

    // Watchers that open a watch and do not read it while every task changes: the first
    // snapshot fills what their connections hold, and the changes pile up behind it.
    let mut stalled = Vec::new();
    for _ in 0..6 {
        stalled.push(open_narrow(&controller.addr(), &id).await.unwrap());
    }
    // And the CLI, stopped like a terminal on ^Z.
    let cli_watch = cli.spawn(["jobs", "watch", &id]).unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cli_pid = Pid::from_raw(cli_watch.id().unwrap() as i32);
    kill(cli_pid, Signal::SIGSTOP).unwrap();

    let agent = FakeAgent::register_with_slots(
        controller.agent_client().await.unwrap(),
        "fake-w",
        "default",
        64,
    )
    .await
    .unwrap();
    tokio::time::timeout(LIMIT, agent.complete_tasks(n, 64))
        .await
        .expect("the fake agent did not complete every task in time")
        .unwrap();
    let shown = cli.wait_job(&id, LIMIT).await.unwrap();
    assert_eq!(state(&shown), "succeeded");

    let peak = peak_rss_mib(controller.pid().unwrap());
    assert!(
        peak < 256.0,
        "controller peak RSS {peak:.0} MiB with stalled watchers"
    );

    for mut w in stalled {
        let last = w.until_ended(LIMIT).await.unwrap();
        assert_same_as_shown(&last, &shown);
        assert!(
            w.resyncs() >= 1,
            "a watcher that fell behind gets a fresh snapshot: {:?}",
            w.seen()
        );
    }

    kill(cli_pid, Signal::SIGCONT).unwrap();
    let out = tokio::time::timeout(LIMIT, cli_watch.wait_with_output())
        .await
        .expect("jobs watch still running after it was resumed")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "jobs watch: {stderr}");
    let progress: Vec<&str> = stderr.lines().filter(|l| l.starts_with("[+")).collect();
    let last_line = progress.last().expect("progress lines");
    assert!(last_line.contains(&format!("{n}/{n} done")), "{last_line}");
    assert!(stderr.contains("succeeded in"), "{stderr}");
}
