//! Shell runner: `/bin/sh -c` under the attempt's guardian (`guard/`), which starts it in its
//! own process group (and cgroup) and a fresh working directory, enforces the timeout
//! (SIGTERM→SIGKILL) and stops it when the agent asks, dies or loses its lease; this side
//! pumps the task's output, renews the guardian's lease and maps how the task ended.

use std::{ffi::OsString, io, path::PathBuf, time::Duration};

use ferry_proto::v1::{LogStream, Outcome};
use tokio::{io::AsyncReadExt, net::unix::pipe, sync::watch};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    guard::{
        confine::Confine,
        protocol::{Ending, FromGuard, Spec, ToGuard},
        Guarded, Guards,
    },
    running::KillSwitch,
};

/// How long output pipes may stay open once the task has ended (a process that escaped its
/// guardian could hold them forever).
const PIPE_GRACE: Duration = Duration::from_secs(2);
/// How long a guardian may take to start the task before the attempt fails.
const START_LIMIT: Duration = Duration::from_secs(30);

/// One shell attempt, ready to start.
pub struct ShellJob {
    /// `job/task/attempt`, for the guardian's diagnostics.
    pub label: String,
    pub command: String,
    /// The attempt's working directory (already created).
    pub dir: PathBuf,
    /// The task's whole environment (`crate::task_env`).
    pub env: Vec<(OsString, OsString)>,
    pub timeout: Option<Duration>,
    pub kill_grace: Duration,
}

/// The lease the attempt's guardian holds: its end, renewed with each acknowledged heartbeat,
/// and the controller's agent timeout.
pub struct LeaseFeed {
    pub end: watch::Receiver<Duration>,
    pub agent_timeout: Duration,
}

/// How an attempt ended, as reported in `Complete`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub error: String,
    /// A failure no retry can fix: the task fails without using its other attempts.
    pub not_retryable: bool,
}

impl Report {
    pub fn failed(error: impl Into<String>) -> Report {
        Report {
            outcome: Outcome::Failed,
            exit_code: None,
            error: error.into(),
            not_retryable: false,
        }
    }

    /// A failure no retry can fix.
    pub fn final_failure(error: impl Into<String>) -> Report {
        Report {
            not_retryable: true,
            ..Report::failed(error)
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

/// Runs the job under a guardian from `guards`; `sink` receives output as it arrives.
pub async fn run(
    job: &ShellJob,
    guards: &Guards,
    mut lease: LeaseFeed,
    sink: &(dyn Fn(LogStream, &[u8]) + Sync),
    kill: &KillSwitch,
) -> End {
    // Work handed out right after an outage may find the lease not yet renewed: wait (at most
    // an agent timeout) for the heartbeat that renews it, rather than start a task its guardian
    // would stop at once.
    let margin = lease.agent_timeout / 4;
    let renewed = async {
        while *lease.end.borrow_and_update() <= crate::clock::boot_now() + margin {
            if lease.end.changed().await.is_err() {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(lease.agent_timeout, renewed).await;
    let pipes = std::io::pipe().and_then(|out| Ok((out, std::io::pipe()?)));
    let Ok(((out_r, out_w), (err_r, err_w))) = pipes else {
        return End::Finished(Report::failed("cannot create the task's output pipes"));
    };
    let spec = Spec {
        label: job.label.clone(),
        lease_end: *lease.end.borrow_and_update(),
        agent_timeout: lease.agent_timeout,
        kill_grace: job.kill_grace,
        timeout: job.timeout,
        // Placed by `guards`.
        cgroup_parent: None,
        records: None,
        cwd: job.dir.clone(),
        argv: vec!["/bin/sh".into(), "-c".into(), OsString::from(&job.command)],
        env: job.env.clone(),
        // Set by `guards`.
        confine: Confine::default(),
    };
    let guarded = match guards.spawn(spec, out_w.into(), err_w.into()).await {
        Ok(guarded) => guarded,
        Err(e) => {
            return End::Finished(Report::failed(format!(
                "cannot start the task's guardian: {e}"
            )))
        }
    };
    let stdout = pipe::Receiver::from_owned_fd(out_r.into()).ok();
    let stderr = pipe::Receiver::from_owned_fd(err_r.into()).ok();
    let task_over = CancellationToken::new();

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
                task_over.cancelled().await;
                tokio::time::sleep(PIPE_GRACE).await;
            } => warn!("task output still open after the task ended; no longer reading it"),
        }
    };

    let supervise = async {
        let mut guarded = guarded;
        let (end, clean) = supervise(job, guards, &mut guarded, &mut lease, kill).await;
        task_over.cancel();
        if clean {
            guards.give_back(guarded);
        }
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

/// Talks with the guardian until the task has ended: renews its lease, passes stop requests
/// on, and maps how the task ended; and whether the guardian can take another attempt.
async fn supervise(
    job: &ShellJob,
    guards: &Guards,
    guarded: &mut Guarded,
    lease: &mut LeaseFeed,
    kill: &KillSwitch,
) -> (End, bool) {
    let (mut rx, mut tx) = guarded.split();
    let mut started: Option<(i32, i32, Option<PathBuf>)> = None;
    let (mut termed, mut killed, mut lease_open) = (false, false, true);
    let mut oom_kills = 0;
    let start_limit = tokio::time::sleep(START_LIMIT);
    tokio::pin!(start_limit);
    // Outer error: the guardian is lost; inner: it could not start the task.
    let ended: Result<Result<Ending, String>, String> = loop {
        tokio::select! {
            msg = rx.recv() => match msg {
                Ok(Some(FromGuard::Started { guard_pid, shell_pid, cgroup })) => {
                    debug!(guard_pid, shell_pid, "process started");
                    started = Some((guard_pid, shell_pid, cgroup));
                }
                Ok(Some(FromGuard::OomKills(n))) => oom_kills = n,
                Ok(Some(FromGuard::Ended(ending))) => break Ok(Ok(ending)),
                Ok(Some(FromGuard::Failed(error))) => break Ok(Err(error)),
                Ok(None) => break Err("the task's guardian ended without a word".to_owned()),
                Err(e) => break Err(format!("the task's guardian cannot be heard: {e}")),
            },
            changed = lease.end.changed(), if lease_open => match changed {
                Ok(()) => {
                    let end = *lease.end.borrow_and_update();
                    let _ = tx.send(&ToGuard::Lease(end)).await;
                }
                Err(_) => lease_open = false,
            },
            () = kill.abort.cancelled(), if !termed => {
                termed = true;
                let _ = tx.send(&ToGuard::Term).await;
            }
            () = kill.force.cancelled(), if !killed => {
                killed = true;
                let _ = tx.send(&ToGuard::Kill).await;
            }
            () = &mut start_limit, if started.is_none() => {
                break Err(format!(
                    "the task's guardian did not start it within {}",
                    humantime::format_duration(START_LIMIT)
                ));
            }
        }
    };
    let ending = match ended {
        Ok(Ok(ending)) => ending,
        Ok(Err(error)) => return (End::Finished(Report::failed(error)), true),
        Err(error) => {
            // Whatever it guarded goes too.
            if let Some((guard_pid, shell_pid, cgroup)) = started {
                guards.clean_up_after(guard_pid, shell_pid, cgroup).await;
            }
            warn!(%error, "the task's guardian failed");
            return (End::Finished(Report::failed(error)), false);
        }
    };
    // A guardian that had to stop its task (lease, stop order) is not kept for the next one:
    // a kill still reaching its cgroup must not hit the next attempt's task.
    let reusable = !matches!(ending, Ending::LeaseExpired | Ending::Stopped);
    let end = match ending {
        Ending::Exited(0) => End::Finished(Report {
            outcome: Outcome::Succeeded,
            exit_code: Some(0),
            error: String::new(),
            not_retryable: false,
        }),
        Ending::Exited(code) => End::Finished(Report {
            outcome: Outcome::Failed,
            exit_code: Some(code),
            // Naming the limit that made it fail, when one did.
            error: guards.confine().explain(Ok(code), oom_kills),
            not_retryable: false,
        }),
        Ending::Signaled(sig) => End::Finished(Report::failed(
            guards.confine().explain(Err(sig), oom_kills),
        )),
        Ending::TimedOut => {
            let t = job.timeout.unwrap_or_default();
            End::Finished(Report {
                outcome: Outcome::TimedOut,
                exit_code: None,
                error: format!("timed out after {}", humantime::format_duration(t)),
                not_retryable: false,
            })
        }
        Ending::LeaseExpired => {
            info!("the lease ran out; the guardian stopped the task");
            End::Aborted
        }
        Ending::Stopped => End::Aborted,
    };
    (end, reusable)
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
    use super::*;

    #[test]
    fn param_names() {
        assert_eq!(param_env_name("day"), "FERRY_PARAM_DAY");
        assert_eq!(param_env_name("start-date.v2"), "FERRY_PARAM_START_DATE_V2");
        assert_eq!(param_env_name("a b$c"), "FERRY_PARAM_A_B_C");
        assert_eq!(param_env_name("crème"), "FERRY_PARAM_CR_ME");
        assert_eq!(param_env_name("X_9"), "FERRY_PARAM_X_9");
    }
}
