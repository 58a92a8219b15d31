//! Domain types of the controller: ids, states, job and task specs, and the records the store
//! returns. Free of gRPC and SQL; `service::convert` maps them to and from the wire.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, on the controller's wall clock. Passed into the store
/// rather than read there, so tests control time.
pub type Millis = i64;

/// The controller's wall clock, in [`Millis`].
pub fn now_ms() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Names one attempt of one task: the fencing token of DESIGN.md's invariant 1.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    pub job_id: String,
    pub task_id: String,
    pub attempt: u32,
}

impl std::fmt::Display for AttemptKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}#{}", self.job_id, self.task_id, self.attempt)
    }
}

macro_rules! string_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($text => Some(Self::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

string_enum!(
    /// Lifecycle of a job; it follows from its tasks.
    JobState { Pending => "pending", Running => "running", Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled" }
);
string_enum!(
    /// Lifecycle of a task within its job's DAG.
    TaskState { Blocked => "blocked", Queued => "queued", Running => "running", Succeeded => "succeeded", Failed => "failed", Cancelled => "cancelled", Skipped => "skipped" }
);
string_enum!(
    /// Lifecycle of one attempt of a task on one agent.
    AttemptState { Running => "running", Succeeded => "succeeded", Failed => "failed", TimedOut => "timed_out", Lost => "lost", Cancelled => "cancelled" }
);
string_enum!(
    /// What the controller knows of an agent.
    AgentState { Ready => "ready", Draining => "draining", Dead => "dead", Drained => "drained" }
);

impl AgentState {
    /// The agent has left the fleet: declared dead, or gone on purpose after a drain.
    pub fn is_gone(self) -> bool {
        matches!(self, Self::Dead | Self::Drained)
    }
}

impl JobState {
    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
}

/// How an attempt ended, as its agent (or the controller's reaper) reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Failed,
    /// Failed in a way no retry can fix (an unknown datasource, a parameter that is not the
    /// job's, a refused password): the task fails at once, its other attempts unused.
    FailedFinal,
    TimedOut,
    Cancelled,
}

impl Outcome {
    pub fn attempt_state(self) -> AttemptState {
        match self {
            Self::Succeeded => AttemptState::Succeeded,
            Self::Failed | Self::FailedFinal => AttemptState::Failed,
            Self::TimedOut => AttemptState::TimedOut,
            Self::Cancelled => AttemptState::Cancelled,
        }
    }
}

/// Retry policy of a task: total attempts, exponential backoff bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Default for RetryPolicy {
    /// Three attempts, 1 s then 2 s apart: what AWS Data Pipeline users expect of a default
    /// (`ferry_jobspec::defaults`).
    fn default() -> Self {
        let (max_attempts, initial_delay_ms, max_delay_ms) = ferry_jobspec::defaults::retry(None);
        Self {
            max_attempts,
            initial_delay_ms,
            max_delay_ms,
        }
    }
}

/// What a task runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    Shell {
        command: String,
    },
    Sql {
        datasource: String,
        query: String,
        /// `csv`, `jsonl` or `parquet`.
        format: String,
        /// Empty for a full extract.
        incremental_column: String,
        /// Empty: the format's default (csv/jsonl: none, parquet: zstd).
        #[serde(default)]
        compression: String,
        /// 0: one file; otherwise a new numbered file every this many rows.
        #[serde(default)]
        max_rows_per_file: u64,
    },
}

impl TaskKind {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Shell { .. } => "shell",
            Self::Sql { .. } => "sql",
        }
    }

    /// The incremental column of an incremental sql task.
    pub fn incremental_column(&self) -> Option<&str> {
        match self {
            Self::Sql {
                incremental_column, ..
            } if !incremental_column.is_empty() => Some(incremental_column),
            _ => None,
        }
    }
}

/// One task as submitted; stored whole and handed to the agent that claims it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    pub id: String,
    pub queue: String,
    pub labels: BTreeMap<String, String>,
    pub depends_on: Vec<String>,
    pub kind: TaskKind,
    pub outputs: Vec<String>,
    pub timeout_ms: u64,
    pub retry: RetryPolicy,
    /// Schedule-to-start timeout: still queued this long after it became ready, the task fails
    /// (finally) with why no agent took it; 0 for none.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub schedule_to_start_timeout_ms: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A job as submitted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewJob {
    pub name: String,
    pub params: BTreeMap<String, String>,
    pub tasks: Vec<TaskSpec>,
    pub idempotency_key: Option<String>,
    /// Backfills of incremental sql tasks, by task id.
    #[serde(default)]
    pub backfill: BTreeMap<String, Backfill>,
}

/// An explicit range an incremental sql task extracts instead of reading or moving its
/// stored watermark: rows with `from < column <= until` (`from` unset: from the start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backfill {
    pub from: Option<String>,
    pub until: String,
}

/// What an attempt of an incremental sql task extracts, fixed when it is handed out.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExtractRange {
    /// The stored high watermark (or the backfill's `from`); `None`: from the start.
    pub after: Option<String>,
    /// A backfill's upper bound; `None`: the agent fixes it when the attempt starts.
    pub until: Option<String>,
    /// A backfill never moves the stored watermark.
    pub backfill: bool,
}

/// One column of an extract's schema.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractColumn {
    pub name: String,
    pub source_type: String,
    pub file_type: String,
    pub nullable: bool,
}

/// What a successful sql attempt extracted, as its agent reported it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ExtractInfo {
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<String>,
    pub columns: Vec<ExtractColumn>,
    /// The upper bound extracted to (text form); `None` when not incremental or no rows.
    pub watermark: Option<String>,
    pub incremental_column: String,
    pub backfill: bool,
}

/// The extract of a task's successful attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskExtract {
    pub task_id: String,
    pub attempt: u32,
    pub extract: ExtractInfo,
}

/// The high watermark of an incremental sql task, per job name and task id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watermark {
    pub job_name: String,
    pub task_id: String,
    pub column: String,
    pub value: String,
    pub updated_at: Millis,
    /// The job and attempt whose success set it; `None` when set by hand.
    pub job_id: Option<String>,
    pub attempt: u32,
}

/// The answer to a submit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submitted {
    pub job_id: String,
    /// True when the idempotency key named a job that already existed.
    pub existing: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub number: u32,
    pub agent: String,
    pub state: AttemptState,
    pub exit_code: Option<i32>,
    pub error: String,
    pub started_at: Millis,
    pub finished_at: Option<Millis>,
    pub logs_truncated: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub spec: TaskSpec,
    pub state: TaskState,
    pub ready_at: Millis,
    pub attempts: Vec<AttemptRecord>,
    /// Sql tasks that succeeded: what the successful attempt extracted.
    pub extract: Option<ExtractInfo>,
    /// A task failed without starting: why ("not started within 10m: no agent on queue q").
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobRecord {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub params: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    pub tasks: Vec<TaskRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct JobSummary {
    pub id: String,
    pub name: String,
    pub state: JobState,
    pub created_at: Millis,
    pub finished_at: Option<Millis>,
    pub tasks_total: u32,
    /// Tasks that ended, whichever way.
    pub tasks_done: u32,
    /// Of the ended tasks, how many ended each way.
    pub ended: TaskCounts,
}

/// A job's tasks by how they ended, counted from their states.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskCounts {
    pub succeeded: u32,
    pub failed: u32,
    pub cancelled: u32,
    pub skipped: u32,
}

/// Work handed to an agent: one new attempt of one task.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    pub attempt: AttemptKey,
    pub job_name: String,
    pub task: TaskSpec,
    pub params: BTreeMap<String, String>,
    /// The published outputs of the task's dependencies.
    pub inputs: Vec<ResultFile>,
    /// Incremental sql tasks: what to extract.
    pub extract_range: Option<ExtractRange>,
}

/// One output of an attempt, as its agent declares it on completion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputFile {
    /// Relative, '/'-separated path (see `artifacts::check_name`).
    pub name: String,
    pub size: u64,
    /// SHA-256 of the whole file, lowercase hex.
    pub sha256: String,
}

/// A published output, as readers (downstream tasks, `ferry results`) see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultFile {
    pub task_id: String,
    pub attempt: u32,
    pub name: String,
    pub size: u64,
    pub sha256: String,
    pub created_at: Millis,
}

/// An agent's registration, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentRecord {
    pub name: String,
    pub session: String,
    pub state: AgentState,
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub max_tasks: u32,
    pub hostname: String,
    pub version: String,
    pub registered_at: Millis,
    /// The last sign of life of its session that a controller recorded (`Store::touch_agents`).
    pub seen_at: Millis,
    /// The host metrics of its latest recorded heartbeat.
    pub metrics: Option<HostMetrics>,
    /// Attempts now running on this agent.
    pub running: u32,
}

/// One piece of an attempt's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogChunk {
    pub stderr: bool,
    pub data: Vec<u8>,
}

/// How an attempt ended, reported with its fencing token.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptFinish {
    pub agent: String,
    pub attempt: AttemptKey,
    pub outcome: Outcome,
    pub exit_code: Option<i32>,
    pub error: String,
}

/// Everything an agent reports when an attempt ends: the outcome, the outputs it uploaded, what
/// an sql task extracted, and the last of its logs.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptReport {
    pub finish: AttemptFinish,
    pub outputs: Vec<OutputFile>,
    pub extract: Option<ExtractInfo>,
    pub logs: Vec<LogChunk>,
    /// Log bytes the agent dropped (its own bound) before these.
    pub dropped_bytes: u64,
}

/// A running attempt the agent must stop, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StopOrder {
    pub attempt: AttemptKey,
    pub reason: String,
}

/// A running attempt and the agent that runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacedAttempt {
    pub agent: String,
    pub attempt: AttemptKey,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueStats {
    pub name: String,
    pub queued: u32,
    pub running: u32,
}

/// Host metrics an agent reports with each heartbeat.
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct HostMetrics {
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}
