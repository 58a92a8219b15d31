//! Live progress of a job from the `WatchJob` stream, on standard error.
//!
//! The stream sends the job, then the tasks that changed; `ferry_proto::watch::JobView` puts
//! them together (a fresh snapshot, sent when this client fell behind, replaces what it
//! held). A line is printed whenever the whole picture changes, then the outcome. When the stream breaks
//! (a controller restart) it reconnects with backoff — to the next controller first when
//! several are given — and gives up after about a minute without hearing from any.

use std::time::{Duration, Instant};

use ferry_proto::v1::{Job, JobState, TaskState, WatchJobRequest};
use ferry_proto::watch::JobView;

use crate::{
    client::Controller,
    exit::{CliError, Outcome},
    output::{attempt_state, duration, job_state},
};

const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Follows the job until it ends, printing progress and the outcome; returns the final job.
pub async fn watch(controller: &Controller, job_id: &str) -> Result<Job, CliError> {
    let mut progress = Progress {
        started: Instant::now(),
        last: None,
    };
    let mut retry = Retry::default();
    loop {
        let err = match follow(controller, job_id, &mut progress, &mut retry).await {
            Ok(job) => {
                eprintln!("{}", ending(&job, progress.started.elapsed()));
                return Ok(job);
            }
            Err(err) => err,
        };
        if !err.is_retryable() {
            return Err(err);
        }
        // Lost: the next connection tries the next controller first (they share one store).
        controller.move_on();
        match retry.next_delay() {
            Some(delay) => {
                if retry.attempts == 1 {
                    eprintln!("{err}; reconnecting");
                }
                tokio::time::sleep(delay).await;
            }
            None => {
                eprintln!(
                    "gave up after {}s without {}",
                    GIVE_UP_AFTER.as_secs(),
                    if controller.has_several() {
                        "any controller"
                    } else {
                        "the controller"
                    }
                );
                return Err(err);
            }
        }
    }
}

/// Exit outcome of a finished job: only a succeeded job is a success.
pub fn outcome(job: &Job) -> Outcome {
    if job.state() == JobState::Succeeded {
        Outcome::Success
    } else {
        Outcome::JobFailed
    }
}

/// One connection's worth of the stream; `Ok` once the job has ended.
async fn follow(
    controller: &Controller,
    job_id: &str,
    progress: &mut Progress,
    retry: &mut Retry,
) -> Result<Job, CliError> {
    let mut client = controller.connect().await?;
    let mut stream = client
        .watch_job(WatchJobRequest {
            job_id: job_id.to_owned(),
        })
        .await
        .map_err(|status| controller.error("watch job", &status))?
        .into_inner();
    // Each stream starts with a whole snapshot.
    let mut view = JobView::new();
    loop {
        let message = stream
            .message()
            .await
            .map_err(|status| controller.error("watch job", &status))?;
        let Some(event) = message else {
            return Err(CliError::Unreachable {
                url: controller.url().to_owned(),
                reason: "the watch stream ended before the job did".to_owned(),
            });
        };
        if retry.attempts > 0 {
            if controller.has_several() {
                eprintln!("reconnected to the controller at {}", controller.url());
            } else {
                eprintln!("reconnected to the controller");
            }
        }
        *retry = Retry::default();
        let whole = view.apply(event).map_err(|e| {
            CliError::Protocol(format!(
                "the controller at {} sent a broken watch stream: {e}",
                controller.url()
            ))
        })?;
        let Some(job) = whole else { continue };
        progress.show(job);
        if is_finished(job.state()) {
            return Ok(job.clone());
        }
    }
}

fn is_finished(state: JobState) -> bool {
    matches!(
        state,
        JobState::Succeeded | JobState::Failed | JobState::Cancelled
    )
}

/// Reconnection backoff, counted from the first failure since the controller was last heard.
#[derive(Default)]
pub(crate) struct Retry {
    since: Option<Instant>,
    attempts: u32,
}

impl Retry {
    /// A failure has been met since the controller was last heard.
    pub(crate) fn is_retrying(&self) -> bool {
        self.attempts > 0
    }

    /// The next delay, or `None` once `GIVE_UP_AFTER` has passed since the first failure.
    pub(crate) fn next_delay(&mut self) -> Option<Duration> {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() >= GIVE_UP_AFTER {
            return None;
        }
        let delay = FIRST_BACKOFF
            .saturating_mul(2u32.saturating_pow(self.attempts))
            .min(MAX_BACKOFF);
        self.attempts += 1;
        Some(delay)
    }
}

struct Progress {
    started: Instant,
    last: Option<String>,
}

impl Progress {
    fn show(&mut self, job: &Job) {
        let line = summary(job);
        if self.last.as_deref() != Some(line.as_str()) {
            eprintln!("[+{:.1}s] {line}", self.started.elapsed().as_secs_f64());
            self.last = Some(line);
        }
    }
}

/// `2/4 done · running: transform@agent-b (attempt 1) · queued: load`.
pub fn summary(job: &Job) -> String {
    let ids = |state: TaskState| -> Vec<&str> {
        job.tasks
            .iter()
            .filter(|t| t.state() == state)
            .map(|t| t.id.as_str())
            .collect()
    };
    let done = ids(TaskState::Succeeded).len();
    let mut parts = vec![format!("{done}/{} done", job.tasks.len())];
    let running: Vec<String> = job
        .tasks
        .iter()
        .filter(|t| t.state() == TaskState::Running)
        .map(|t| match t.attempts.last() {
            Some(a) if !a.agent.is_empty() => {
                format!("{}@{} (attempt {})", t.id, a.agent, a.number)
            }
            _ => t.id.clone(),
        })
        .collect();
    if !running.is_empty() {
        parts.push(format!("running: {}", running.join(", ")));
    }
    let queued: Vec<String> = job
        .tasks
        .iter()
        .filter(|t| t.state() == TaskState::Queued)
        .map(|t| match t.attempts.last() {
            Some(a) => format!(
                "{} (retry after attempt {} {})",
                t.id,
                a.number,
                attempt_state(a.state())
            ),
            None => t.id.clone(),
        })
        .collect();
    if !queued.is_empty() {
        parts.push(format!("queued: {}", queued.join(", ")));
    }
    for (state, word) in [
        (TaskState::Failed, "failed"),
        (TaskState::Cancelled, "cancelled"),
        (TaskState::Skipped, "skipped"),
    ] {
        let tasks = ids(state);
        if !tasks.is_empty() {
            parts.push(format!("{word}: {}", tasks.join(", ")));
        }
    }
    parts.join(" · ")
}

/// How the job ended: `job orders-etl 0193… succeeded in 4.1s`, and for a failed job which
/// tasks failed and why.
pub fn ending(job: &Job, watched_for: Duration) -> String {
    let took = if job.created_at_ms > 0 && job.finished_at_ms >= job.created_at_ms {
        duration(u64::try_from(job.finished_at_ms - job.created_at_ms).unwrap_or(0))
    } else {
        duration(u64::try_from(watched_for.as_millis()).unwrap_or(u64::MAX))
    };
    let head = format!("job {} {}", job.name, job.id);
    match job.state() {
        JobState::Succeeded => format!("{head} succeeded in {took}"),
        JobState::Cancelled => format!("{head} was cancelled after {took}"),
        JobState::Failed => {
            let mut text = format!("{head} failed after {took}");
            for task in job.tasks.iter().filter(|t| t.state() == TaskState::Failed) {
                let n = task.attempts.len();
                let why = match task.attempts.last() {
                    Some(a) if !a.error.is_empty() => a.error.clone(),
                    Some(a) => match a.exit_code {
                        Some(code) => format!("exit code {code}"),
                        None => attempt_state(a.state()).to_owned(),
                    },
                    None => "failed before it ran".to_owned(),
                };
                let plural = if n == 1 { "" } else { "s" };
                text.push_str(&format!(
                    "\n  task {} failed after {n} attempt{plural}: {why}",
                    task.id
                ));
            }
            let not_run: Vec<&str> = job
                .tasks
                .iter()
                .filter(|t| matches!(t.state(), TaskState::Skipped | TaskState::Cancelled))
                .map(|t| t.id.as_str())
                .collect();
            if !not_run.is_empty() {
                text.push_str(&format!("\n  not run: {}", not_run.join(", ")));
            }
            text
        }
        other => format!("{head} is {}", job_state(other)),
    }
}

#[cfg(test)]
mod tests {
    use ferry_proto::v1::{Attempt, AttemptState, Task};

    use super::*;

    fn task(id: &str, state: TaskState, attempts: Vec<Attempt>) -> Task {
        Task {
            id: id.into(),
            state: state as i32,
            attempts,
            ..Task::default()
        }
    }

    fn attempt(number: u32, agent: &str, state: AttemptState, exit_code: Option<i32>) -> Attempt {
        Attempt {
            number,
            agent: agent.into(),
            state: state as i32,
            exit_code,
            ..Attempt::default()
        }
    }

    fn job(state: JobState, tasks: Vec<Task>) -> Job {
        Job {
            id: "0193a".into(),
            name: "orders-etl".into(),
            state: state as i32,
            created_at_ms: 1_000,
            finished_at_ms: if is_finished(state) { 5_100 } else { 0 },
            tasks,
            ..Job::default()
        }
    }

    #[test]
    fn progress_line() {
        let running = job(
            JobState::Running,
            vec![
                task("extract", TaskState::Succeeded, vec![]),
                task("validate", TaskState::Succeeded, vec![]),
                task(
                    "transform",
                    TaskState::Running,
                    vec![attempt(1, "agent-b", AttemptState::Running, None)],
                ),
                task("load", TaskState::Queued, vec![]),
            ],
        );
        assert_eq!(
            summary(&running),
            "2/4 done · running: transform@agent-b (attempt 1) · queued: load"
        );
        let retrying = job(
            JobState::Running,
            vec![task(
                "load",
                TaskState::Queued,
                vec![attempt(1, "agent-a", AttemptState::Lost, None)],
            )],
        );
        assert_eq!(
            summary(&retrying),
            "0/1 done · queued: load (retry after attempt 1 lost)"
        );
    }

    #[test]
    fn endings() {
        let ok = job(
            JobState::Succeeded,
            vec![task("a", TaskState::Succeeded, vec![])],
        );
        assert_eq!(
            ending(&ok, Duration::ZERO),
            "job orders-etl 0193a succeeded in 4.1s"
        );
        assert_eq!(outcome(&ok), Outcome::Success);
        let failed = job(
            JobState::Failed,
            vec![
                task(
                    "transform",
                    TaskState::Failed,
                    vec![
                        attempt(1, "agent-b", AttemptState::Failed, Some(2)),
                        attempt(2, "agent-b", AttemptState::Failed, Some(2)),
                    ],
                ),
                task("load", TaskState::Skipped, vec![]),
            ],
        );
        assert_eq!(
            ending(&failed, Duration::ZERO),
            "job orders-etl 0193a failed after 4.1s\n  task transform failed after 2 attempts: \
             exit code 2\n  not run: load"
        );
        assert_eq!(outcome(&failed), Outcome::JobFailed);
        let cancelled = job(JobState::Cancelled, vec![]);
        assert_eq!(outcome(&cancelled), Outcome::JobFailed);
    }

    #[test]
    fn backoff_grows_then_caps() {
        let mut retry = Retry::default();
        let delays: Vec<_> = (0..6).map(|_| retry.next_delay().unwrap()).collect();
        assert_eq!(delays[0], Duration::from_millis(250));
        assert_eq!(delays[1], Duration::from_millis(500));
        assert_eq!(delays[5], MAX_BACKOFF);
    }
}
