//! Guardians as processes (the real `ferry-agent` binary as guardian): a task stops when
//! the agent's end of the control socket closes, when its lease is not renewed — inside the
//! lease's kill window — and lives on while it is; a guardian is kept for the next attempt;
//! with a writable cgroup v2, a task runs in a cgroup of its own, emptied after it and
//! removed with its guardian.

use std::{
    fs::File,
    os::fd::OwnedFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ferry_agent::{
    clock::boot_now,
    guard::{
        cgroup,
        deadline::Window,
        procs,
        protocol::{Ending, FromGuard, Spec, ToGuard},
        Guarded, Guards,
    },
};

fn guards(cgroup: Option<PathBuf>) -> Guards {
    Guards::new(
        PathBuf::from(env!("CARGO_BIN_EXE_ferry-agent")),
        1,
        cgroup,
        None,
        None,
    )
}

fn null() -> OwnedFd {
    File::options()
        .write(true)
        .open("/dev/null")
        .unwrap()
        .into()
}

fn spec(dir: &Path, command: &str, lease_end: Duration, agent_timeout: Duration) -> Spec {
    Spec {
        label: "j/t/1".into(),
        lease_end,
        agent_timeout,
        kill_grace: Duration::from_secs(5),
        timeout: None,
        cgroup_parent: None,
        records: None,
        cwd: dir.to_owned(),
        argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
        env: Vec::new(),
        confine: Default::default(),
    }
}

/// Starts a guardian and waits for its task: the guardian's and the shell's pids.
async fn start(guards: &Guards, spec: Spec) -> (Guarded, i32, i32) {
    let mut guarded = guards.spawn(spec, null(), null()).await.unwrap();
    let started = guarded.split().0.recv().await.unwrap();
    match started {
        Some(FromGuard::Started {
            guard_pid,
            shell_pid,
            ..
        }) => (guarded, guard_pid, shell_pid),
        other => panic!("expected the task to start, got {other:?}"),
    }
}

async fn ended(guarded: &mut Guarded) -> Ending {
    match guarded.split().0.recv().await.unwrap() {
        Some(FromGuard::Ended(ending)) => ending,
        other => panic!("expected the task's end, got {other:?}"),
    }
}

async fn send(guarded: &mut Guarded, msg: ToGuard) {
    guarded.split().1.send(&msg).await.unwrap();
}

fn running(pid: i32) -> bool {
    procs::stat(pid).is_some_and(|s| s.state != 'Z')
}

async fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while running(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    !running(pid)
}

const FAR: Duration = Duration::from_secs(600);

#[tokio::test]
async fn the_agents_end_closing_stops_the_task() {
    let tmp = tempfile::tempdir().unwrap();
    let guards = guards(None);
    let command = "trap '' TERM; touch ready; sleep 100";
    let mut spec = spec(tmp.path(), command, boot_now() + FAR, FAR);
    spec.kill_grace = Duration::from_millis(300);
    let (guarded, guard_pid, shell_pid) = start(&guards, spec).await;
    // TERM is ignored from here on.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tmp.path().join("ready").exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(running(shell_pid) && running(guard_pid));
    let closed = Instant::now();
    // What the agent's death does to its end of the socket.
    drop(guarded);
    assert!(
        gone_within(shell_pid, Duration::from_secs(3)).await,
        "the task outlived its agent"
    );
    assert!(
        closed.elapsed() >= Duration::from_millis(250),
        "TERM was ignored: KILL after the grace"
    );
    assert!(gone_within(guard_pid, Duration::from_secs(3)).await);
}

#[tokio::test]
async fn an_unrenewed_lease_stops_the_task_before_it_ends() {
    let tmp = tempfile::tempdir().unwrap();
    let guards = guards(None);
    let timeout = Duration::from_secs(2);
    let lease_end = boot_now() + timeout;
    let (mut guarded, _, shell_pid) =
        start(&guards, spec(tmp.path(), "sleep 100", lease_end, timeout)).await;
    assert_eq!(ended(&mut guarded).await, Ending::LeaseExpired);
    let now = boot_now();
    let window = Window::of_lease(lease_end, timeout, Duration::from_secs(5));
    assert!(now >= window.term_at, "stopped before the window opened");
    assert!(
        now < lease_end,
        "stopped {:?} after the lease ended",
        now - lease_end
    );
    assert!(!running(shell_pid));
}

#[tokio::test]
async fn a_renewed_lease_keeps_the_task_running() {
    let tmp = tempfile::tempdir().unwrap();
    let guards = guards(None);
    let timeout = Duration::from_millis(600);
    let (mut guarded, _, _) = start(
        &guards,
        spec(tmp.path(), "sleep 1.5", boot_now() + timeout, timeout),
    )
    .await;
    let mut renewals = tokio::time::interval(Duration::from_millis(100));
    let (mut rx, mut tx) = guarded.split();
    let ending = loop {
        tokio::select! {
            _ = renewals.tick() => {
                tx.send(&ToGuard::Lease(boot_now() + timeout)).await.unwrap();
            }
            msg = rx.recv() => match msg.unwrap() {
                Some(FromGuard::Ended(ending)) => break ending,
                other => panic!("{other:?}"),
            },
        }
    };
    assert_eq!(ending, Ending::Exited(0));
}

#[tokio::test]
async fn a_stop_a_timeout_and_a_kept_guardian() {
    let tmp = tempfile::tempdir().unwrap();
    let guards = guards(None);
    let (mut guarded, guard_pid, _) = start(
        &guards,
        spec(tmp.path(), "sleep 100", boot_now() + FAR, FAR),
    )
    .await;
    send(&mut guarded, ToGuard::Kill).await;
    assert_eq!(ended(&mut guarded).await, Ending::Stopped);
    guards.give_back(guarded);

    // The same guardian takes the next attempt.
    let mut timed = spec(tmp.path(), "sleep 100", boot_now() + FAR, FAR);
    timed.timeout = Some(Duration::from_millis(100));
    let (mut again, guard_pid_again, _) = start(&guards, timed).await;
    assert_eq!(
        guard_pid_again, guard_pid,
        "the guardian is kept for the next attempt"
    );
    assert_eq!(ended(&mut again).await, Ending::TimedOut);
}

#[tokio::test]
async fn with_cgroup_v2_a_task_runs_in_a_cgroup_of_its_own() {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let Some(own) = cgroup::locate(&read("/proc/self/cgroup"), &read("/proc/self/mountinfo"))
    else {
        eprintln!("no cgroup v2 here: nothing to check");
        return;
    };
    let parent = own.join(format!("ferry-guard-test-{}", std::process::id()));
    if std::fs::create_dir(&parent).is_err() {
        eprintln!("cgroup v2 is not writable here: nothing to check");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let guards = guards(Some(parent.clone()));
    let command = "cat /proc/$$/cgroup > where";
    let mut guarded = guards
        .spawn(
            spec(tmp.path(), command, boot_now() + FAR, FAR),
            null(),
            null(),
        )
        .await
        .unwrap();
    let started = guarded.split().0.recv().await.unwrap();
    let Some(FromGuard::Started {
        cgroup: Some(attempt),
        ..
    }) = started
    else {
        panic!("the task started without a cgroup: {started:?}");
    };
    assert_eq!(ended(&mut guarded).await, Ending::Exited(0));
    let seen = std::fs::read_to_string(tmp.path().join("where")).unwrap();
    let expected = cgroup::locate(&seen, &read("/proc/self/mountinfo")).unwrap();
    let emptied = !cgroup::populated(&attempt);
    // Kept, empty, for the guardian's next attempt; removed when the guardian goes.
    drop(guarded);
    let deadline = Instant::now() + Duration::from_secs(5);
    while attempt.exists() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let removed = !attempt.exists();
    let _ = std::fs::remove_dir(&parent);
    assert_eq!(expected, attempt, "the task ran in {seen}");
    assert!(
        emptied,
        "{} holds processes after its task",
        attempt.display()
    );
    assert!(removed, "{} is left behind", attempt.display());
}
