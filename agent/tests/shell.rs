//! The shell runner under its guardian (the real `ferry-agent` binary in helper mode):
//! outcomes, environment, the group killed with the task, timeouts and stops.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Duration, Instant},
};

use ferry_agent::{
    clock::boot_now,
    guard::Guards,
    runner::shell::{run, End, LeaseFeed, Report, ShellJob},
    running::KillSwitch,
};
use ferry_proto::v1::{LogStream, Outcome};
use tokio::sync::watch;

fn guards() -> Guards {
    Guards::new(
        PathBuf::from(env!("CARGO_BIN_EXE_ferry-agent")),
        2,
        None,
        None,
        None,
    )
}

/// A lease that does not run out during a test.
fn lease() -> (watch::Sender<Duration>, LeaseFeed) {
    let timeout = Duration::from_secs(600);
    let (tx, rx) = watch::channel(boot_now() + timeout);
    let feed = LeaseFeed {
        end: rx,
        agent_timeout: timeout,
    };
    (tx, feed)
}

fn job(dir: &Path, command: &str) -> ShellJob {
    ShellJob {
        label: "j/t/1".into(),
        command: command.to_owned(),
        dir: dir.to_owned(),
        env: Vec::new(),
        timeout: None,
        kill_grace: Duration::from_secs(5),
    }
}

async fn run_capture(guards: &Guards, job: &ShellJob, kill: &KillSwitch) -> (End, String) {
    let out = Mutex::new(Vec::new());
    // Stdout only: its interleaving with stderr is not deterministic.
    let sink = |stream: LogStream, data: &[u8]| {
        if stream == LogStream::Stdout {
            out.lock().unwrap().extend_from_slice(data)
        }
    };
    let (_keep, feed) = lease();
    let end = run(job, guards, feed, &sink, kill).await;
    let text = String::from_utf8(out.into_inner().unwrap()).unwrap();
    (end, text)
}

/// Whether `pid` runs (a zombie has ended: only its reaping is left).
fn running(pid: i32) -> bool {
    ferry_agent::guard::procs::stat(pid).is_some_and(|s| s.state != 'Z')
}

async fn gone_within(pid: i32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while running(pid) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    !running(pid)
}

#[tokio::test]
async fn outcomes_and_env() {
    let tmp = tempfile::tempdir().unwrap();
    let guards = guards();
    let kill = KillSwitch::default();
    let mut j = job(
        tmp.path(),
        r#"echo "$FERRY_PARAM_DAY|${HOME-gone}|$(pwd)"; echo err >&2"#,
    );
    // The task's whole environment: nothing of the agent's or the guardian's (HOME) is added.
    j.env = vec![("FERRY_PARAM_DAY".into(), "2026-11-24; rm -rf /".into())];
    let (end, out) = run_capture(&guards, &j, &kill).await;
    assert_eq!(
        end,
        End::Finished(Report {
            outcome: Outcome::Succeeded,
            exit_code: Some(0),
            error: String::new(),
            not_retryable: false,
        })
    );
    let cwd = tmp.path().canonicalize().unwrap();
    assert!(
        out == format!("2026-11-24; rm -rf /|gone|{}\n", cwd.display()),
        "{out}"
    );

    let (end, _) = run_capture(&guards, &job(tmp.path(), "exit 3"), &kill).await;
    assert_eq!(
        end,
        End::Finished(Report {
            outcome: Outcome::Failed,
            exit_code: Some(3),
            error: "exit code 3".into(),
            not_retryable: false,
        })
    );
    let (end, _) = run_capture(&guards, &job(tmp.path(), "kill -9 $$"), &kill).await;
    assert_eq!(end, End::Finished(Report::failed("killed by signal 9")));
}

#[tokio::test]
async fn a_missing_directory_fails_the_attempt() {
    let tmp = tempfile::tempdir().unwrap();
    let (end, _) = run_capture(
        &guards(),
        &job(&tmp.path().join("nowhere"), "true"),
        &KillSwitch::default(),
    )
    .await;
    let End::Finished(report) = end else {
        panic!("{end:?}");
    };
    assert_eq!(report.outcome, Outcome::Failed);
    assert!(
        report.error.starts_with("cannot start /bin/sh"),
        "{report:?}"
    );
}

#[tokio::test]
async fn background_child_is_killed_with_the_group() {
    let tmp = tempfile::tempdir().unwrap();
    let kill = KillSwitch::default();
    let started = Instant::now();
    let (end, out) = run_capture(&guards(), &job(tmp.path(), "sleep 100 & echo $!"), &kill).await;
    assert!(matches!(
        end,
        End::Finished(Report {
            outcome: Outcome::Succeeded,
            ..
        })
    ));
    let pid: i32 = out.trim().parse().unwrap();
    assert!(!running(pid), "background child {pid} survived its task");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn an_escaped_descendant_is_killed_with_the_task() {
    // A double fork into a session of its own: no longer in the task's process group, and
    // its parent gone, so only the guardian (its subreaper) still knows it.
    let tmp = tempfile::tempdir().unwrap();
    let kill = KillSwitch::default();
    let (end, out) = run_capture(
        &guards(),
        &job(
            tmp.path(),
            "(setsid sh -c 'echo $$; exec sleep 100' &) | head -n1",
        ),
        &kill,
    )
    .await;
    assert!(matches!(end, End::Finished(_)), "{end:?}");
    let pid: i32 = out.trim().parse().unwrap();
    assert!(!running(pid), "escaped descendant {pid} survived its task");
}

#[tokio::test]
async fn timeout_escalates_to_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let kill = KillSwitch::default();
    let mut j = job(tmp.path(), "trap '' TERM; sleep 100 & echo $!; wait");
    j.timeout = Some(Duration::from_millis(200));
    j.kill_grace = Duration::from_millis(200);
    let started = Instant::now();
    let (end, out) = run_capture(&guards(), &j, &kill).await;
    assert_eq!(
        end,
        End::Finished(Report {
            outcome: Outcome::TimedOut,
            exit_code: None,
            error: "timed out after 200ms".into(),
            not_retryable: false,
        })
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let pid: i32 = out.trim().parse().unwrap();
    assert!(
        gone_within(pid, Duration::from_secs(5)).await,
        "child {pid} survived the timeout"
    );
}

#[tokio::test]
async fn abort_reports_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let guards = guards();
    let kill = KillSwitch::default();
    let j = job(tmp.path(), "sleep 100");
    let abort = kill.abort.clone();
    let (end, ()) = tokio::join!(run_capture(&guards, &j, &kill), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        abort.cancel();
    });
    assert_eq!(end.0, End::Aborted);
}
