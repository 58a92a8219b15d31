//! Conversions between the `ferry.v1` wire types and the domain model.

mod extracts;

#[cfg(test)]
mod tests;

use ferry_proto::v1 as pb;
use tonic::Status;

use crate::engine::{AgentView, QueueView};
use crate::model::{
    AgentState, AttemptKey, AttemptRecord, AttemptState, Backfill, HostMetrics, JobRecord,
    JobState, JobSummary, LogChunk, NewJob, Outcome, OutputFile, ResultFile, RetryPolicy, TaskKind,
    TaskRecord, TaskSpec, TaskState,
};

pub use extracts::*;

pub fn attempt_key(r: Option<pb::AttemptRef>) -> Result<AttemptKey, Status> {
    let r = r.ok_or_else(|| Status::invalid_argument("attempt is missing"))?;
    super::checks::attempt("attempt", &r)?;
    Ok(AttemptKey {
        job_id: r.job_id,
        task_id: r.task_id,
        attempt: r.attempt,
    })
}

pub fn attempt_keys(refs: Vec<pb::AttemptRef>) -> Vec<AttemptKey> {
    refs.into_iter()
        .map(|r| AttemptKey {
            job_id: r.job_id,
            task_id: r.task_id,
            attempt: r.attempt,
        })
        .collect()
}

pub fn attempt_ref(k: &AttemptKey) -> pb::AttemptRef {
    pb::AttemptRef {
        job_id: k.job_id.clone(),
        task_id: k.task_id.clone(),
        attempt: k.attempt,
    }
}

/// A retry policy, what it leaves out given its default (`ferry_jobspec::defaults`).
fn retry_policy(r: Option<pb::RetryPolicy>) -> RetryPolicy {
    let (max_attempts, initial_delay_ms, max_delay_ms) = ferry_jobspec::defaults::retry(
        r.map(|r| (r.max_attempts, r.initial_delay_ms, r.max_delay_ms)),
    );
    RetryPolicy {
        max_attempts,
        initial_delay_ms,
        max_delay_ms,
    }
}

/// An sql task, its format and compression as `ferry_jobspec::sql` keeps them.
fn sql_kind(s: pb::SqlTask) -> TaskKind {
    let format = ferry_jobspec::sql::format(s.format);
    let compression = ferry_jobspec::sql::compression(&format, s.compression);
    TaskKind::Sql {
        datasource: s.datasource,
        query: s.query,
        format,
        incremental_column: s.incremental_column,
        compression,
        max_rows_per_file: s.max_rows_per_file,
    }
}

pub fn new_job(
    spec: Option<pb::JobSpec>,
    idempotency_key: String,
    backfill: std::collections::HashMap<String, pb::BackfillRange>,
) -> Result<NewJob, Status> {
    let spec = spec.ok_or_else(|| Status::invalid_argument("job spec is missing"))?;
    let mut problems = Vec::new();
    let mut tasks = Vec::with_capacity(spec.tasks.len());
    for t in spec.tasks {
        let kind = match t.kind {
            Some(pb::task_spec::Kind::Shell(s)) => TaskKind::Shell { command: s.command },
            Some(pb::task_spec::Kind::Sql(s)) => sql_kind(s),
            None => {
                problems.push(format!(
                    "task {} has no kind (shell or sql)",
                    ferry_jobspec::check::shown(&t.id)
                ));
                continue;
            }
        };
        tasks.push(TaskSpec {
            queue: ferry_jobspec::defaults::queue(t.queue),
            labels: t.labels.into_iter().collect(),
            depends_on: t.depends_on,
            kind,
            outputs: t.outputs,
            timeout_ms: t.timeout_ms,
            schedule_to_start_timeout_ms: t.schedule_to_start_timeout_ms,
            retry: retry_policy(t.retry),
            id: t.id,
        });
    }
    if !problems.is_empty() {
        return Err(Status::invalid_argument(format!(
            "invalid job: {}",
            problems.join("; ")
        )));
    }
    Ok(NewJob {
        name: spec.name,
        params: spec.params.into_iter().collect(),
        tasks,
        idempotency_key: (!idempotency_key.is_empty()).then_some(idempotency_key),
        backfill: backfill
            .into_iter()
            .map(|(task, r)| {
                (
                    task,
                    Backfill {
                        from: r.from,
                        until: r.until,
                    },
                )
            })
            .collect(),
    })
}

pub fn task_spec(t: &TaskSpec) -> pb::TaskSpec {
    pb::TaskSpec {
        id: t.id.clone(),
        queue: t.queue.clone(),
        labels: t.labels.clone().into_iter().collect(),
        depends_on: t.depends_on.clone(),
        kind: Some(match &t.kind {
            TaskKind::Shell { command } => pb::task_spec::Kind::Shell(pb::ShellTask {
                command: command.clone(),
            }),
            TaskKind::Sql {
                datasource,
                query,
                format,
                incremental_column,
                compression,
                max_rows_per_file,
            } => pb::task_spec::Kind::Sql(pb::SqlTask {
                datasource: datasource.clone(),
                query: query.clone(),
                format: format.clone(),
                incremental_column: incremental_column.clone(),
                compression: compression.clone(),
                max_rows_per_file: *max_rows_per_file,
            }),
        }),
        outputs: t.outputs.clone(),
        timeout_ms: t.timeout_ms,
        schedule_to_start_timeout_ms: t.schedule_to_start_timeout_ms,
        retry: Some(pb::RetryPolicy {
            max_attempts: t.retry.max_attempts,
            initial_delay_ms: Some(t.retry.initial_delay_ms),
            max_delay_ms: Some(t.retry.max_delay_ms),
        }),
    }
}

pub fn job_state(s: JobState) -> pb::JobState {
    match s {
        JobState::Pending => pb::JobState::Pending,
        JobState::Running => pb::JobState::Running,
        JobState::Succeeded => pb::JobState::Succeeded,
        JobState::Failed => pb::JobState::Failed,
        JobState::Cancelled => pb::JobState::Cancelled,
    }
}

pub fn job_state_filter(s: i32) -> Result<Option<JobState>, Status> {
    Ok(
        match pb::JobState::try_from(s)
            .map_err(|_| Status::invalid_argument(format!("unknown job state {s}")))?
        {
            pb::JobState::Unspecified => None,
            pb::JobState::Pending => Some(JobState::Pending),
            pb::JobState::Running => Some(JobState::Running),
            pb::JobState::Succeeded => Some(JobState::Succeeded),
            pb::JobState::Failed => Some(JobState::Failed),
            pb::JobState::Cancelled => Some(JobState::Cancelled),
        },
    )
}

fn task_state(s: TaskState) -> pb::TaskState {
    match s {
        TaskState::Blocked => pb::TaskState::Blocked,
        TaskState::Queued => pb::TaskState::Queued,
        TaskState::Running => pb::TaskState::Running,
        TaskState::Succeeded => pb::TaskState::Succeeded,
        TaskState::Failed => pb::TaskState::Failed,
        TaskState::Cancelled => pb::TaskState::Cancelled,
        TaskState::Skipped => pb::TaskState::Skipped,
    }
}

fn attempt_state(s: AttemptState) -> pb::AttemptState {
    match s {
        AttemptState::Running => pb::AttemptState::Running,
        AttemptState::Succeeded => pb::AttemptState::Succeeded,
        AttemptState::Failed => pb::AttemptState::Failed,
        AttemptState::TimedOut => pb::AttemptState::TimedOut,
        AttemptState::Lost => pb::AttemptState::Lost,
        AttemptState::Cancelled => pb::AttemptState::Cancelled,
    }
}

fn agent_state(s: AgentState) -> pb::AgentState {
    match s {
        AgentState::Ready => pb::AgentState::Ready,
        AgentState::Draining => pb::AgentState::Draining,
        AgentState::Dead => pb::AgentState::Dead,
        AgentState::Drained => pb::AgentState::Drained,
    }
}

pub fn outcome(o: i32) -> Result<Outcome, Status> {
    match pb::Outcome::try_from(o) {
        Ok(pb::Outcome::Succeeded) => Ok(Outcome::Succeeded),
        Ok(pb::Outcome::Failed) => Ok(Outcome::Failed),
        Ok(pb::Outcome::TimedOut) => Ok(Outcome::TimedOut),
        Ok(pb::Outcome::Cancelled) => Ok(Outcome::Cancelled),
        _ => Err(Status::invalid_argument(format!("unknown outcome {o}"))),
    }
}

pub fn log_chunks(chunks: Vec<pb::LogChunk>) -> Vec<LogChunk> {
    chunks
        .into_iter()
        .map(|c| LogChunk {
            stderr: c.stream == pb::LogStream::Stderr as i32,
            data: c.data,
        })
        .collect()
}

pub fn log_stream(stderr: bool) -> pb::LogStream {
    if stderr {
        pb::LogStream::Stderr
    } else {
        pb::LogStream::Stdout
    }
}

pub fn metrics(m: Option<pb::HostMetrics>) -> Option<HostMetrics> {
    m.map(|m| HostMetrics {
        cpu_percent: m.cpu_percent,
        memory_used_bytes: m.memory_used_bytes,
        memory_total_bytes: m.memory_total_bytes,
        load1: m.load1,
        load5: m.load5,
        load15: m.load15,
    })
}

fn attempt(a: &AttemptRecord) -> pb::Attempt {
    pb::Attempt {
        number: a.number,
        agent: a.agent.clone(),
        state: attempt_state(a.state) as i32,
        exit_code: a.exit_code,
        error: a.error.clone(),
        started_at_ms: a.started_at,
        finished_at_ms: a.finished_at.unwrap_or(0),
        logs_truncated: a.logs_truncated,
    }
}

pub fn task(t: &TaskRecord) -> pb::Task {
    pb::Task {
        id: t.spec.id.clone(),
        state: task_state(t.state) as i32,
        queue: t.spec.queue.clone(),
        labels: t.spec.labels.clone().into_iter().collect(),
        depends_on: t.spec.depends_on.clone(),
        kind: t.spec.kind.name().to_string(),
        attempts: t.attempts.iter().map(attempt).collect(),
        ready_at_ms: t.ready_at,
        extract: t.extract.as_ref().map(extract_info),
        // A failed task's own; filled by `GetJob` for queued tasks (`Engine::waiting`).
        reason: t.reason.clone(),
    }
}

pub fn job(j: &JobRecord) -> pb::Job {
    pb::Job {
        tasks: j.tasks.iter().map(task).collect(),
        ..job_head(j)
    }
}

/// The job's own fields, without its tasks.
pub fn job_head(j: &JobRecord) -> pb::Job {
    pb::Job {
        id: j.id.clone(),
        name: j.name.clone(),
        state: job_state(j.state) as i32,
        params: j.params.clone().into_iter().collect(),
        idempotency_key: j.idempotency_key.clone().unwrap_or_default(),
        created_at_ms: j.created_at,
        finished_at_ms: j.finished_at.unwrap_or(0),
        tasks: Vec::new(),
    }
}

pub fn job_summary(j: &JobSummary) -> pb::JobSummary {
    pb::JobSummary {
        id: j.id.clone(),
        name: j.name.clone(),
        state: job_state(j.state) as i32,
        created_at_ms: j.created_at,
        finished_at_ms: j.finished_at.unwrap_or(0),
        tasks_total: j.tasks_total,
        tasks_done: j.tasks_done,
        tasks_succeeded: j.ended.succeeded,
        tasks_failed: j.ended.failed,
        tasks_cancelled: j.ended.cancelled,
        tasks_skipped: j.ended.skipped,
    }
}

pub fn agent(v: &AgentView) -> pb::AgentInfo {
    let r = &v.record;
    let (labels, datasources) = crate::rules::placement::split_offer(&r.labels);
    pb::AgentInfo {
        name: r.name.clone(),
        state: agent_state(r.state) as i32,
        queues: r.queues.clone(),
        labels: labels.into_iter().collect(),
        datasources,
        running: r.running,
        max_tasks: r.max_tasks,
        hostname: r.hostname.clone(),
        version: r.version.clone(),
        last_heartbeat_ms: v.last_heartbeat_ms,
        metrics: v.metrics.map(|m| pb::HostMetrics {
            cpu_percent: m.cpu_percent,
            memory_used_bytes: m.memory_used_bytes,
            memory_total_bytes: m.memory_total_bytes,
            load1: m.load1,
            load5: m.load5,
            load15: m.load15,
        }),
    }
}

pub fn queue(q: &QueueView) -> pb::QueueInfo {
    pb::QueueInfo {
        name: q.stats.name.clone(),
        queued: q.stats.queued,
        running: q.stats.running,
        agents: q.agents,
    }
}

pub fn result_file(f: &ResultFile) -> pb::ResultFile {
    pb::ResultFile {
        task_id: f.task_id.clone(),
        attempt: f.attempt,
        name: f.name.clone(),
        size: f.size,
        sha256: f.sha256.clone(),
        created_at_ms: f.created_at,
    }
}

pub fn output_files(files: Vec<pb::OutputFile>) -> Vec<OutputFile> {
    files
        .into_iter()
        .map(|f| OutputFile {
            name: f.name,
            size: f.size,
            sha256: f.sha256,
        })
        .collect()
}

/// The attempts an agent stopped by itself, each checked, its reason bounded and kept free of
/// NUL (a database text column refuses it).
pub fn given_up(given: Vec<pb::GivenUp>) -> Result<Vec<(AttemptKey, String)>, Status> {
    super::checks::count("given_up", given.len())?;
    given
        .into_iter()
        .map(|g| {
            let key = attempt_key(g.attempt)?;
            let mut reason = g.reason.replace('\0', "\u{FFFD}");
            ferry_jobspec::check::truncate(&mut reason, ferry_jobspec::limits::ERROR_MESSAGE_MAX);
            Ok((key, reason))
        })
        .collect()
}
