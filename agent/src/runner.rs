//! Runs one assigned attempt from start to its report: stages its inputs, picks the runner for
//! the task's kind, ships its logs, uploads its outputs and sends `Complete`, retrying while
//! the controller is unreachable.

mod assign;
pub mod shell;

use std::{sync::Arc, time::Duration};

use ferry_proto::v1::{
    task_spec::Kind, Assignment, AttemptRef, CompleteRequest, ExtractInfo, LogStream, Outcome,
    OutputFile, SqlTask,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, instrument, warn};

use crate::{
    client::{Backoff, ClientError, FailureLog},
    inputs,
    logs::LogShipper,
    outputs,
    running::{AttemptGuard, KillSwitch},
    sql,
    transfer::Stop,
    upload, Agent, Session,
};

pub(crate) use self::assign::accept;
use self::shell::{End, Report, ShellJob};

/// Starts an attempt on the agent's task tracker. `guard` keeps it in the running registry
/// until it has been reported (or dropped).
pub(crate) fn start(
    agent: &Arc<Agent>,
    session: &Session,
    assignment: Assignment,
    attempt: AttemptRef,
    guard: AttemptGuard,
    kill: KillSwitch,
) {
    let task = run_attempt(
        Arc::clone(agent),
        session.clone(),
        assignment,
        attempt,
        guard,
        kill,
    );
    agent.tracker.spawn(task);
}

#[instrument(
    skip_all,
    fields(job = %attempt.job_id, task = %attempt.task_id, attempt = attempt.attempt)
)]
async fn run_attempt(
    agent: Arc<Agent>,
    session: Session,
    assignment: Assignment,
    attempt: AttemptRef,
    guard: AttemptGuard,
    kill: KillSwitch,
) {
    debug!(job_name = %assignment.job_name, "attempt started");
    let shipper = LogShipper::new(Arc::clone(&agent.secrets));
    let mut work_dir = None;
    let mut extract: Option<ExtractInfo> = None;
    // A working directory with the dependencies' outputs staged in it, then the task's kind.
    let end = match assignment.task.as_ref().and_then(|t| t.kind.as_ref()) {
        None => End::Finished(Report::failed("the task names no kind this agent knows")),
        Some(kind) => match agent.work_dirs.acquire() {
            Err(e) => End::Finished(Report::failed(format!(
                "cannot create a working directory under {}: {e}",
                agent.work_dir.display()
            ))),
            Ok(dir) => {
                let staged =
                    inputs::stage(&agent.client, &attempt, &kill, &dir, &assignment.inputs).await;
                let end = match (staged, kind) {
                    (Err(Stop::Failed(error)), _) => End::Finished(Report::failed(error)),
                    (Err(Stop::Final(error)), _) => End::Finished(Report::final_failure(error)),
                    (Err(Stop::Aborted), _) => End::Aborted,
                    (Ok(()), Kind::Shell(shell)) => {
                        let timeout_ms = assignment.task.as_ref().map_or(0, |t| t.timeout_ms);
                        run_shell(
                            &agent,
                            &session,
                            &assignment,
                            &attempt,
                            &shell.command,
                            &dir,
                            timeout_ms,
                            &shipper,
                            &kill,
                        )
                        .await
                    }
                    (Ok(()), Kind::Sql(sql)) => {
                        let (end, info) =
                            run_sql(&agent, &assignment, &attempt, sql, &dir, &shipper, &kill)
                                .await;
                        extract = info;
                        end
                    }
                };
                work_dir = Some(dir);
                end
            }
        },
    };
    let mut report = match end {
        End::Finished(report) => report,
        End::Aborted => {
            info!("attempt stopped; nothing reported");
            if let Some(dir) = work_dir {
                agent.work_dirs.release(dir).await;
            }
            return;
        }
    };
    // A success counts only once every output is stored; the attempt keeps its slot meanwhile.
    let mut outputs = Vec::new();
    if let (Outcome::Succeeded, Some(dir)) = (report.outcome, &work_dir) {
        let mut declared: Vec<String> = assignment
            .task
            .as_ref()
            .map_or_else(Vec::new, |t| t.outputs.clone());
        // An extract's files are its outputs, first and in order.
        if let Some(info) = &extract {
            declared.retain(|d| !info.files.contains(d));
            declared.splice(0..0, info.files.iter().cloned());
        }
        // A shell task run as another user publishes only its own files: not, say, a hard link
        // it made to a file of the agent's.
        let owner = match assignment.task.as_ref().and_then(|t| t.kind.as_ref()) {
            Some(Kind::Shell(_)) => agent.task_user.as_ref().map(|u| u.uid),
            _ => None,
        };
        match publish(&agent, &attempt, &kill, dir, &declared, owner).await {
            Ok(uploaded) => outputs = uploaded,
            Err(Stop::Failed(error)) => {
                report.outcome = Outcome::Failed;
                report.error = error;
            }
            Err(Stop::Final(error)) => {
                report.outcome = Outcome::Failed;
                report.error = error;
                report.not_retryable = true;
            }
            Err(Stop::Aborted) => {
                info!("attempt stopped while uploading its outputs; nothing reported");
                if let Some(dir) = work_dir {
                    agent.work_dirs.release(dir).await;
                }
                return;
            }
        }
    }
    // Ask for the next task in the same call, unless this agent is winding down.
    let want = u32::from(
        !agent.drain.is_cancelled() && agent.lease.expired(crate::clock::boot_now()).is_none(),
    );
    if want == 0 {
        guard.process_ended();
    }
    let (logs, dropped_bytes) = shipper.finish();
    let succeeded = report.outcome == Outcome::Succeeded;
    let req = CompleteRequest {
        agent: None,
        attempt: Some(attempt),
        outcome: report.outcome as i32,
        exit_code: report.exit_code,
        // A driver's or the shell's message may quote a secret.
        error: agent.secrets.redact_str(&report.error),
        logs,
        dropped_bytes,
        want,
        outputs,
        extract: if succeeded { extract } else { None },
        not_retryable: report.not_retryable,
    };
    match complete(&agent, &session, &kill, &guard, req.clone()).await {
        Completed::Done => {}
        // An output the controller could not verify: the attempt failed, and the task is
        // retried per its policy.
        Completed::Unverified(error) if req.outcome() == Outcome::Succeeded => {
            warn!(error = %error, "controller could not verify the outputs; reporting a failure");
            let failed = CompleteRequest {
                outcome: Outcome::Failed as i32,
                error,
                outputs: Vec::new(),
                not_retryable: false,
                ..req
            };
            if let Completed::Unverified(e) =
                complete(&agent, &session, &kill, &guard, failed).await
            {
                error!(error = %e, "controller refused the outcome; dropped");
            }
        }
        Completed::Unverified(e) => {
            error!(error = %e, "controller refused the outcome; dropped");
        }
    }
    // No next attempt took the slot over: the poller may fill it.
    guard.process_ended();
    drop(guard);
    if let Some(dir) = work_dir {
        agent.work_dirs.release(dir).await;
    }
}

/// Resolves the declared outputs and uploads them; what `Complete` declares.
async fn publish(
    agent: &Agent,
    attempt: &AttemptRef,
    kill: &KillSwitch,
    dir: &std::path::Path,
    declared: &[String],
    owner: Option<u32>,
) -> Result<Vec<OutputFile>, Stop> {
    if declared.is_empty() {
        return Ok(Vec::new());
    }
    let resolved = {
        let dir = dir.to_owned();
        let declared = declared.to_vec();
        let limit = agent.config.max_output_bytes;
        tokio::task::spawn_blocking(move || outputs::resolve(&dir, &declared, limit))
            .await
            .map_err(|e| Stop::Failed(format!("resolving outputs failed: {e}")))?
            .map_err(|e| Stop::Failed(e.to_string()))?
    };
    if let Some(uid) = owner {
        if let Some(other) = resolved.iter().find(|o| o.uid != uid) {
            return Err(Stop::Failed(format!(
                "output {} is not the task's own file (owner uid {}, the task ran as uid {uid}): tasks run as another user publish only files they own",
                other.name, other.uid
            )));
        }
    }
    upload::upload_all(&agent.client, attempt, kill, &resolved).await
}

#[allow(clippy::too_many_arguments)]
async fn run_shell(
    agent: &Agent,
    session: &Session,
    assignment: &Assignment,
    attempt: &AttemptRef,
    command: &str,
    dir: &std::path::Path,
    timeout_ms: u64,
    shipper: &LogShipper,
    kill: &KillSwitch,
) -> End {
    let job = ShellJob {
        label: format!("{}/{}/{}", attempt.job_id, attempt.task_id, attempt.attempt),
        command: command.to_owned(),
        env: agent.task_env.with(task_env(assignment, attempt, dir)),
        dir: dir.to_path_buf(),
        timeout: (timeout_ms > 0).then(|| Duration::from_millis(timeout_ms)),
        kill_grace: agent.config.kill_grace,
    };
    let lease = shell::LeaseFeed {
        end: agent.lease.end(),
        agent_timeout: agent.lease.timeout(),
    };
    let flush_stop = CancellationToken::new();
    let sink = |stream: LogStream, data: &[u8]| shipper.push(stream, data);
    let work = async {
        let end = shell::run(&job, &agent.guards, lease, &sink, kill).await;
        flush_stop.cancel();
        end
    };
    let flush = shipper.flush_loop(&agent.client, attempt, &flush_stop, kill, session);
    // The directory (inputs staged) is the tasks' user's for the run, then the agent's again
    // before it reads outputs from it.
    if let Some(user) = &agent.task_user {
        let handed = {
            let (dir, uid, gid) = (dir.to_path_buf(), user.uid, user.gid);
            tokio::task::spawn_blocking(move || crate::workdirs::hand_over(&dir, uid, gid)).await
        };
        if let Err(e) = handed.map_err(std::io::Error::other).and_then(|r| r) {
            return End::Finished(Report::failed(format!(
                "cannot hand the working directory {} over to the tasks' user {}: {e}",
                dir.display(),
                user.spec
            )));
        }
    }
    let (end, ()) = tokio::join!(work, flush);
    if agent.task_user.is_some() {
        if let Err(e) = crate::workdirs::take_back(dir) {
            warn!(dir = %dir.display(), error = %e, "cannot take the working directory back");
            if end == End::Aborted {
                return end;
            }
            return End::Finished(Report::failed(format!(
                "cannot take the working directory {} back from the tasks' user: {e}",
                dir.display()
            )));
        }
    }
    end
}

/// Runs an sql attempt: the extract's files land in `dir`; a line per event goes to its log.
async fn run_sql(
    agent: &Agent,
    assignment: &Assignment,
    attempt: &AttemptRef,
    task: &SqlTask,
    dir: &std::path::Path,
    shipper: &LogShipper,
    kill: &KillSwitch,
) -> (End, Option<ExtractInfo>) {
    let timeout_ms = assignment.task.as_ref().map_or(0, |t| t.timeout_ms);
    let deadline = (timeout_ms > 0).then(|| {
        let timeout = Duration::from_millis(timeout_ms);
        (tokio::time::Instant::now() + timeout, timeout)
    });
    let log = |line: String| shipper.push(LogStream::Stdout, format!("{line}\n").as_bytes());
    log(format!(
        "extracting from datasource {} as {}",
        task.datasource,
        if task.format.is_empty() {
            "csv"
        } else {
            &task.format
        }
    ));
    let started = std::time::Instant::now();
    let req = sql::Request {
        task_id: &attempt.task_id,
        task,
        params: &assignment.params,
        range: assignment.extract_range.as_ref(),
        dir,
        abort: &kill.abort,
        deadline,
    };
    match sql::run(&agent.config.datasources, req).await {
        Ok(info) => {
            let secs = started.elapsed().as_secs_f64();
            info!(
                datasource = %task.datasource,
                rows = info.rows,
                bytes = info.bytes,
                files = info.files.len(),
                watermark = info.watermark.as_deref().unwrap_or(""),
                seconds = secs,
                "extract written"
            );
            log(format!(
                "extracted {} rows, {} bytes into {} in {secs:.2}s{}",
                info.rows,
                info.bytes,
                info.files.join(", "),
                info.watermark
                    .as_deref()
                    .map(|w| format!("; watermark {w}"))
                    .unwrap_or_default()
            ));
            let report = Report {
                outcome: Outcome::Succeeded,
                exit_code: None,
                error: String::new(),
                not_retryable: false,
            };
            (End::Finished(report), Some(info))
        }
        Err(sql::SqlError::Aborted) => (End::Aborted, None),
        Err(e @ sql::SqlError::TimedOut(_)) => {
            log(e.to_string());
            let report = Report {
                outcome: Outcome::TimedOut,
                exit_code: None,
                error: e.to_string(),
                not_retryable: false,
            };
            (End::Finished(report), None)
        }
        Err(e) => {
            warn!(datasource = %task.datasource, error = %e, "extract failed");
            if e.retryable() {
                log(format!("extract failed: {e}"));
                (End::Finished(Report::failed(e.to_string())), None)
            } else {
                log(format!("extract failed: {e} (not retryable)"));
                (End::Finished(Report::final_failure(e.to_string())), None)
            }
        }
    }
}

/// The attempt's own variables, set over those every task of the agent gets
/// ([`crate::task_env`]). Parameter values travel only here, never inside the command text.
fn task_env(
    assignment: &Assignment,
    attempt: &AttemptRef,
    dir: &std::path::Path,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("FERRY_JOB_ID".to_owned(), attempt.job_id.clone()),
        ("FERRY_JOB_NAME".to_owned(), assignment.job_name.clone()),
        ("FERRY_TASK_ID".to_owned(), attempt.task_id.clone()),
        ("FERRY_ATTEMPT".to_owned(), attempt.attempt.to_string()),
        ("FERRY_WORK_DIR".to_owned(), dir.display().to_string()),
        (
            "FERRY_INPUTS".to_owned(),
            dir.join("inputs").display().to_string(),
        ),
    ];
    // Sorted, so that two names mapping to one variable resolve the same way every time.
    let mut params: Vec<_> = assignment.params.iter().collect();
    params.sort();
    env.extend(
        params
            .into_iter()
            .map(|(k, v)| (shell::param_env_name(k), v.clone())),
    );
    env
}

/// How a completion ended.
enum Completed {
    /// Recorded, or dropped for good.
    Done,
    /// `FAILED_PRECONDITION`: an output the controller could not verify; its message.
    Unverified(String),
}

/// Sends the outcome until it is recorded, refused, or the attempt is stopped (lost lease,
/// drain): a stopped attempt's outcome is no longer ours to report. The next attempts the
/// answer brings (for `req.want`) take over the attempt's slot and start at once, while the
/// controller is still making the outcome durable.
async fn complete(
    agent: &Arc<Agent>,
    session: &Session,
    kill: &KillSwitch,
    guard: &AttemptGuard,
    mut req: CompleteRequest,
) -> Completed {
    let outcome = req.outcome().as_str_name();
    let mut backoff = Backoff::default();
    let mut failures = FailureLog::new("complete");
    loop {
        // Not raced against a stop order: once the controller has recorded the outcome it
        // also names the stale attempt to stop, and dropping the call here would lose the next
        // attempts its answer carries. The call has its own deadline.
        let answered = match agent.client.complete(req.clone()).await {
            Ok(mut answer) => loop {
                match answer.next().await {
                    Ok(Some(next)) => {
                        // The slot is filled: an outcome sent again asks for nothing more.
                        req.want = 0;
                        if !next.is_empty() {
                            guard.hand_slot_over();
                            accept(agent, session, next).await;
                        }
                    }
                    Ok(None) => break Ok(()),
                    Err(e) => break Err(e),
                }
            },
            Err(e) => Err(e),
        };
        match answered {
            Ok(()) => {
                info!(outcome, exit_code = req.exit_code, error = %req.error, "attempt completed");
                return Completed::Done;
            }
            Err(ClientError::Fenced(e)) => {
                info!(outcome, error = %e, "attempt no longer current; outcome not recorded");
                return Completed::Done;
            }
            Err(e @ ClientError::SessionLost(_)) => {
                session.lose(&e);
                return Completed::Done;
            }
            Err(ClientError::Precondition(e)) => return Completed::Unverified(e),
            Err(e @ ClientError::Rejected(_)) => {
                error!(outcome, error = %e, "controller refused the outcome; dropped");
                return Completed::Done;
            }
            Err(e @ ClientError::Transient(_)) => failures.failed(&e),
        }
        if !backoff.sleep(&kill.abort).await {
            info!(
                outcome,
                "attempt stopped before its outcome was recorded; dropped"
            );
            return Completed::Done;
        }
    }
}

#[cfg(test)]
mod tests;
