//! Pipelines in the store: named, versioned job templates and their runs (decision 0016).
//! `PipelineStore` is what every backend does for them, each method one transaction; the
//! records here are the domain's words for them, free of SQL and gRPC.
//!
//! A run is a job and a `pipeline_runs` row written in one transaction. The row's
//! `(pipeline, scheduled_time)` and `(pipeline, run key)` are unique in the store, so that a
//! schedule's tick or a trigger's delivery, made twice by two controllers or after a restart,
//! starts one job.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::model::{JobSummary, Millis, NewJob, TaskSpec};

/// A typed parameter as a pipeline version keeps it (`ferry_jobspec::pipeline::ParamDecl`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    /// `string`, `int`, `date`, `timestamp` or `bool`.
    #[serde(rename = "type")]
    pub ty: String,
    pub default: Option<String>,
    pub required: bool,
}

/// What one version of a pipeline holds: the job it makes, less a run's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PipelineTemplate {
    pub tasks: Vec<TaskSpec>,
    /// The plain parameters' defaults (`[params] name = "value"`).
    pub defaults: BTreeMap<String, String>,
    /// The typed parameters, by name.
    pub params: Vec<ParamSpec>,
    /// The file's `[schedule]` (decision 0018); left out of the JSON, and so of the hash, when
    /// there is none, so that templates applied before schedules keep their hashes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<ScheduleFields>,
}

/// A `[schedule]` as a version keeps it (`ferry_jobspec::schedule::ScheduleSpec`, checked).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleFields {
    pub cron: String,
    pub timezone: String,
    pub every_ms: u64,
    pub overlap: String,
    pub catchup: String,
    pub catchup_window_ms: u64,
    pub dst_repeated: String,
    pub dst_skipped: String,
}

impl ScheduleFields {
    pub fn spec(&self) -> ferry_jobspec::schedule::ScheduleSpec {
        ferry_jobspec::schedule::ScheduleSpec {
            cron: self.cron.clone(),
            timezone: self.timezone.clone(),
            every_ms: self.every_ms,
            overlap: self.overlap.clone(),
            catchup: self.catchup.clone(),
            catchup_window_ms: self.catchup_window_ms,
            dst_repeated: self.dst_repeated.clone(),
            dst_skipped: self.dst_skipped.clone(),
        }
    }
}

impl PipelineTemplate {
    /// SHA-256 of the template's canonical JSON, hex: equal templates, equal hashes. The
    /// typed parameters are sorted by name first, so their order in the file does not count.
    pub fn hash(&self) -> String {
        let mut normalized = self.clone();
        normalized.params.sort_by(|a, b| a.name.cmp(&b.name));
        let json = serde_json::to_vec(&normalized).expect("a template serializes");
        Sha256::digest(&json)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// A template applied under a name.
#[derive(Debug, Clone)]
pub struct NewPipeline {
    pub name: String,
    pub template: PipelineTemplate,
}

/// What an apply did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    pub name: String,
    /// The latest version: the new one, or the one that was equal.
    pub version: u32,
    /// False when the template equals the latest version's (nothing was written).
    pub changed: bool,
}

/// One run: the job a pipeline version made.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRun {
    pub job: JobSummary,
    pub version: u32,
    /// A scheduled run's time; `None` for a run by hand or by a trigger.
    pub scheduled_time: Option<Millis>,
}

/// A pipeline as `list` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineSummary {
    pub name: String,
    pub version: u32,
    pub paused: bool,
    pub created_at: Millis,
    /// When the latest version was applied.
    pub updated_at: Millis,
    pub last_run: Option<PipelineRun>,
}

/// One version of a pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineVersion {
    pub version: u32,
    pub hash: String,
    pub created_at: Millis,
    pub template: PipelineTemplate,
}

/// A pipeline with every version, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineRecord {
    pub summary: PipelineSummary,
    pub versions: Vec<PipelineVersion>,
}

/// A run to start: the job made from `version` of `pipeline`.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub pipeline: String,
    /// The version the job was made from: refused (`Conflict`) unless it is still the latest.
    pub version: u32,
    pub job: NewJob,
    /// A schedule's tick: at most one run per (pipeline, scheduled time), ever.
    pub scheduled_time: Option<Millis>,
    /// A caller's idempotency key (a webhook's `Idempotency-Key`, `--idempotency-key`): at
    /// most one run per (pipeline, key); the same key returns the first run's job.
    pub key: Option<String>,
    /// Started by a schedule or a trigger, not by hand: refused while the pipeline is paused.
    pub automatic: bool,
}

/// The job a run started, or found already started for its scheduled time or key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStarted {
    pub job_id: String,
    pub version: u32,
    /// True when the scheduled time or key named a run that already existed.
    pub existing: bool,
}

#[async_trait]
pub trait PipelineStore: Send + Sync {
    /// Stores the template as the pipeline's next version, unless it equals the latest one
    /// (same hash): then nothing is written. Versions count from 1 and only grow, also across
    /// a delete (applying a deleted pipeline's name again makes its next version). Two applies
    /// of one template racing make one version.
    async fn apply_pipeline(&self, p: NewPipeline, now: Millis) -> Result<Applied, StoreError>;
    /// Every pipeline not deleted, by name, with its newest run.
    async fn list_pipelines(&self) -> Result<Vec<PipelineSummary>, StoreError>;
    /// A pipeline with its versions, newest first (`NotFound` for an unknown or deleted one).
    async fn get_pipeline(&self, name: &str) -> Result<PipelineRecord, StoreError>;
    /// A pipeline's latest version and whether it is paused (`NotFound` as `get_pipeline`).
    async fn latest_pipeline(&self, name: &str) -> Result<(PipelineVersion, bool), StoreError>;
    /// The runs recorded under a pipeline's name, newest first, also after it was deleted
    /// (empty for a name that never ran).
    async fn pipeline_runs(&self, name: &str, limit: u32) -> Result<Vec<PipelineRun>, StoreError>;
    /// Pauses or resumes; false when it already was so (`NotFound` as `get_pipeline`).
    async fn set_pipeline_paused(
        &self,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> Result<bool, StoreError>;
    /// Forgets a pipeline (`NotFound` as `get_pipeline`); its runs stay, as jobs and in
    /// `pipeline_runs`.
    async fn delete_pipeline(&self, name: &str, now: Millis) -> Result<(), StoreError>;
    /// Starts a run: its job and its record in one transaction. With a scheduled time or a key
    /// already recorded for the pipeline, returns that run's job and writes nothing.
    async fn run_pipeline(&self, run: NewRun, now: Millis) -> Result<RunStarted, StoreError>;
}

/// The refusal of a run made from a version that is no longer the latest.
pub(crate) fn version_moved(name: &str, asked: u32, latest: u32) -> StoreError {
    StoreError::Conflict(format!(
        "pipeline {name:?} is at version {latest}, not {asked}: it was applied again meanwhile"
    ))
}

/// The refusal of an automatic run of a paused pipeline.
pub(crate) fn paused(name: &str) -> StoreError {
    StoreError::Invalid(format!(
        "pipeline {name:?} is paused: `ferry pipelines resume {name}` lets its schedule and triggers start runs again"
    ))
}

/// The refusal of a name no pipeline has.
pub(crate) fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("pipeline {name:?}"))
}
