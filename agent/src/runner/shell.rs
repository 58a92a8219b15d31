//! Shell runner: `/bin/sh -c` in its own process group and a fresh working directory, with
//! timeout, SIGTERM→SIGKILL escalation and a final kill of the whole group.

use std::{
    ffi::OsString,
    io,
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    time::Duration,
};

use ferry_proto::v1::{LogStream, Outcome};
use nix::{
    sys::signal::{killpg, Signal},
    unistd::Pid,
};
use tokio::{io::AsyncReadExt, process::Command};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::running::KillSwitch;

/// How long output pipes may stay open once the process group is dead (a process that left the
/// group could hold them forever).
const PIPE_GRACE: Duration = Duration::from_secs(2);

/// One shell attempt, ready to start.
pub struct ShellJob {
    pub command: String,
    /// The attempt's working directory (already created).
    pub dir: PathBuf,
    /// Variables to set for the task.
    pub env: Vec<(String, String)>,
    /// Variables of the agent's own environment to withhold from the task.
    pub withhold: Vec<OsString>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
}

/// How an attempt ended, as reported in `Complete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub error: String,
}

impl Report {
    pub fn failed(error: impl Into<String>) -> Report {
        Report {
            outcome: Outcome::Failed,
            exit_code: None,
            error: error.into(),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The attempt ran to an outcome that must be reported.
    Finished(Report),
    /// Stopped from outside (stop order, fencing, lost lease, drain): report nothing.
    Aborted,
}

/// `FERRY_PARAM_<NAME>`: NAME uppercased, every char outside `[A-Z0-9_]` replaced by `_`.
pub fn param_env_name(name: &str) -> String {
    let mut out = String::with_capacity("FERRY_PARAM_".len() + name.len());
    out.push_str("FERRY_PARAM_");
    out.extend(name.chars().map(|c| {
        let c = c.to_ascii_uppercase();
        if c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_' {
            c
        } else {
            '_'
        }
    }));
    out
}

/// The names of the agent's own `FERRY_*` variables (they may hold secrets).
pub fn agent_ferry_vars() -> Vec<OsString> {
    std::env::vars_os()
        .map(|(k, _)| k)
        .filter(|k| k.as_encoded_bytes().starts_with(b"FERRY_"))
        .collect()
}

fn signal_group(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        Ok(()) => debug!(pgid = pgid.as_raw(), ?signal, "signalled process group"),
        // Already gone: nothing left to stop.
        Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => warn!(pgid = pgid.as_raw(), ?signal, error = %e, "cannot signal process group"),
    }
}

/// Runs the job; `sink` receives output as it arrives.
pub async fn run(
    job: &ShellJob,
    sink: &(dyn Fn(LogStream, &[u8]) + Sync),
    kill: &KillSwitch,
) -> End {
    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c")
        .arg(&job.command)
        .current_dir(&job.dir)
        .process_group(0)
        .kill_on_drop(true)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for name in &job.withhold {
        cmd.env_remove(name);
    }
    cmd.envs(job.env.iter().map(|(k, v)| (k, v)));
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return End::Finished(Report::failed(format!("cannot start /bin/sh: {e}"))),
    };
    let Some(pid) = child.id() else {
        return End::Finished(Report::failed(
            "the process ended before it could be watched",
        ));
    };
    let pgid = Pid::from_raw(pid as i32);
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let group_dead = CancellationToken::new();

    let pumps = async {
        let both = async {
            tokio::join!(
                pump(stdout, LogStream::Stdout, sink),
                pump(stderr, LogStream::Stderr, sink)
            )
        };
        tokio::select! {
            _ = both => {}
            () = async {
                group_dead.cancelled().await;
                tokio::time::sleep(PIPE_GRACE).await;
            } => warn!("task output still open after its process group ended; no longer reading it"),
        }
    };

    let supervise = async {
        let deadline = async {
            match job.timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        enum Why {
            Exited(io::Result<ExitStatus>),
            TimedOut,
            Aborted,
        }
        debug!("process started");
        let why = tokio::select! {
            status = child.wait() => Why::Exited(status),
            () = deadline => Why::TimedOut,
            () = kill.abort.cancelled() => Why::Aborted,
        };
        let end = match why {
            Why::Exited(Ok(status)) => End::Finished(report_exit(status)),
            Why::Exited(Err(e)) => End::Finished(Report::failed(format!(
                "waiting for the process failed: {e}"
            ))),
            Why::TimedOut => {
                let t = job.timeout.unwrap_or_default();
                debug!(
                    timeout_ms = t.as_millis() as u64,
                    "attempt timed out; terminating"
                );
                terminate(&mut child, pgid, job.kill_grace, &kill.force).await;
                End::Finished(Report {
                    outcome: Outcome::TimedOut,
                    exit_code: None,
                    error: format!("timed out after {}", humantime::format_duration(t)),
                })
            }
            Why::Aborted => {
                terminate(&mut child, pgid, job.kill_grace, &kill.force).await;
                End::Aborted
            }
        };
        // Whatever the outcome, nothing the task started outlives the attempt.
        signal_group(pgid, Signal::SIGKILL);
        group_dead.cancel();
        end
    };

    let (end, ()) = tokio::join!(supervise, pumps);
    debug!("process ended and its output drained");
    // Stopped while finishing: the report is no longer wanted.
    if kill.abort.is_cancelled() {
        return End::Aborted;
    }
    end
}

/// SIGTERM to the group, then SIGKILL after `grace` (or at once when `force` fires).
async fn terminate(
    child: &mut tokio::process::Child,
    pgid: Pid,
    grace: Duration,
    force: &CancellationToken,
) {
    signal_group(pgid, Signal::SIGTERM);
    tokio::select! {
        _ = child.wait() => return,
        () = tokio::time::sleep(grace) => {}
        () = force.cancelled() => {}
    }
    signal_group(pgid, Signal::SIGKILL);
    let _ = child.wait().await;
}

fn report_exit(status: ExitStatus) -> Report {
    match (status.code(), status.signal()) {
        (Some(0), _) => Report {
            outcome: Outcome::Succeeded,
            exit_code: Some(0),
            error: String::new(),
        },
        (Some(code), _) => Report {
            outcome: Outcome::Failed,
            exit_code: Some(code),
            error: format!("exit code {code}"),
        },
        (None, Some(sig)) => Report::failed(format!("killed by signal {sig}")),
        (None, None) => Report::failed(format!("ended abnormally: {status}")),
    }
}

async fn pump<R: tokio::io::AsyncRead + Unpin>(
    reader: Option<R>,
    stream: LogStream,
    sink: &(dyn Fn(LogStream, &[u8]) + Sync),
) {
    let Some(mut reader) = reader else { return };
    // Filled by `read_buf` without being zeroed first: most tasks print nothing at all.
    let mut buf = Vec::with_capacity(16 * 1024);
    loop {
        buf.clear();
        match reader.read_buf(&mut buf).await {
            Ok(0) => return,
            Ok(_) => sink(stream, &buf),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!(error = %e, ?stream, "reading task output failed");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{sync::Mutex, time::Instant};

    use super::*;

    fn job(dir: &std::path::Path, command: &str) -> ShellJob {
        ShellJob {
            command: command.to_owned(),
            dir: dir.to_owned(),
            env: Vec::new(),
            withhold: Vec::new(),
            timeout: None,
            kill_grace: Duration::from_secs(5),
        }
    }

    async fn run_capture(job: &ShellJob, kill: &KillSwitch) -> (End, String) {
        let out = Mutex::new(Vec::new());
        // Stdout only: its interleaving with stderr is not deterministic.
        let sink = |stream: LogStream, data: &[u8]| {
            if stream == LogStream::Stdout {
                out.lock().unwrap().extend_from_slice(data)
            }
        };
        let end = run(job, &sink, kill).await;
        let text = String::from_utf8(out.into_inner().unwrap()).unwrap();
        (end, text)
    }

    fn alive(pid: i32) -> bool {
        nix::sys::signal::kill(Pid::from_raw(pid), None).is_ok()
    }

    #[test]
    fn param_names() {
        assert_eq!(param_env_name("day"), "FERRY_PARAM_DAY");
        assert_eq!(param_env_name("start-date.v2"), "FERRY_PARAM_START_DATE_V2");
        assert_eq!(param_env_name("a b$c"), "FERRY_PARAM_A_B_C");
        assert_eq!(param_env_name("crème"), "FERRY_PARAM_CR_ME");
        assert_eq!(param_env_name("X_9"), "FERRY_PARAM_X_9");
    }

    #[tokio::test]
    async fn outcomes_and_env() {
        let tmp = tempfile::tempdir().unwrap();
        let kill = KillSwitch::default();
        let mut j = job(
            tmp.path(),
            r#"echo "$FERRY_PARAM_DAY|${HOME-gone}|$(pwd)"; echo err >&2"#,
        );
        j.env = vec![("FERRY_PARAM_DAY".into(), "2026-11-24; rm -rf /".into())];
        j.withhold = vec!["HOME".into()];
        let (end, out) = run_capture(&j, &kill).await;
        assert_eq!(
            end,
            End::Finished(Report {
                outcome: Outcome::Succeeded,
                exit_code: Some(0),
                error: String::new()
            })
        );
        let cwd = tmp.path().canonicalize().unwrap();
        assert!(
            out == format!("2026-11-24; rm -rf /|gone|{}\n", cwd.display()),
            "{out}"
        );

        let (end, _) = run_capture(&job(tmp.path(), "exit 3"), &kill).await;
        assert_eq!(
            end,
            End::Finished(Report {
                outcome: Outcome::Failed,
                exit_code: Some(3),
                error: "exit code 3".into()
            })
        );
        let (end, _) = run_capture(&job(tmp.path(), "kill -9 $$"), &kill).await;
        assert_eq!(end, End::Finished(Report::failed("killed by signal 9")));
    }

    #[tokio::test]
    async fn background_child_is_killed_with_the_group() {
        let tmp = tempfile::tempdir().unwrap();
        let kill = KillSwitch::default();
        let started = Instant::now();
        let (end, out) = run_capture(&job(tmp.path(), "sleep 100 & echo $!"), &kill).await;
        assert!(matches!(
            end,
            End::Finished(Report {
                outcome: Outcome::Succeeded,
                ..
            })
        ));
        let pid: i32 = out.trim().parse().unwrap();
        // Reaped by init soon after the SIGKILL; it must not be running.
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && !is_zombie(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !alive(pid) || is_zombie(pid),
            "background child {pid} survived"
        );
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    fn is_zombie(pid: i32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| {
                s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
    }

    #[tokio::test]
    async fn timeout_escalates_to_sigkill() {
        let tmp = tempfile::tempdir().unwrap();
        let kill = KillSwitch::default();
        let mut j = job(tmp.path(), "trap '' TERM; sleep 100 & echo $!; wait");
        j.timeout = Some(Duration::from_millis(200));
        j.kill_grace = Duration::from_millis(200);
        let started = Instant::now();
        let (end, out) = run_capture(&j, &kill).await;
        assert_eq!(
            end,
            End::Finished(Report {
                outcome: Outcome::TimedOut,
                exit_code: None,
                error: "timed out after 200ms".into()
            })
        );
        assert!(started.elapsed() < Duration::from_secs(5));
        let pid: i32 = out.trim().parse().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && !is_zombie(pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(
            !alive(pid) || is_zombie(pid),
            "child {pid} survived the timeout"
        );
    }

    #[tokio::test]
    async fn abort_reports_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let kill = KillSwitch::default();
        let j = job(tmp.path(), "sleep 100");
        let abort = kill.abort.clone();
        let (end, _) = tokio::join!(run_capture(&j, &kill), async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            abort.cancel();
        });
        assert_eq!(end.0, End::Aborted);
    }
}
