//! Pipelines (decision 0016): a job file applied as a pipeline's next version, runs of its
//! latest version with their parameters checked against its declarations, pause, resume,
//! delete and the reads. Every request is checked here as if no CLI existed; the typing rules
//! are `ferry_jobspec::pipeline`'s, the versions and runs the store's (`store::pipelines`).

use std::collections::{BTreeMap, HashSet};

use ferry_jobspec::check::shown;
use ferry_jobspec::limits as l;
use ferry_jobspec::pipeline::{self as rules, ParamDecl, ParamType};
use ferry_jobspec::schedule::Schedule;

use super::{validate, Engine, EngineError};
use crate::model::{Millis, NewJob};
use crate::notify::Wakes;
use crate::store::pipelines::{
    Applied, NewPipeline, NewRun, ParamSpec, PipelineRecord, PipelineRun, PipelineSummary,
    PipelineTemplate, RunStarted, ScheduleFields,
};
use crate::store::StoreError;

/// How a run is asked for: by hand (the default), by a schedule's tick, by a trigger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOrigin {
    /// A schedule's tick: the store starts at most one run per (pipeline, scheduled time).
    pub scheduled_time: Option<Millis>,
    /// An idempotency key (`--idempotency-key`, a webhook's `Idempotency-Key`): at most one run
    /// per (pipeline, key).
    pub key: Option<String>,
    /// Started by a schedule or a trigger: refused while the pipeline is paused.
    pub automatic: bool,
}

/// Tries of a run whose version moved while it was made (applied again meanwhile).
const RUN_TRIES: usize = 3;

/// The name's problem, as a refusal.
pub fn check_name(name: &str) -> Result<(), EngineError> {
    match rules::pipeline_name(name) {
        Some(problem) => Err(EngineError::InvalidArgument(format!(
            "pipeline name {} {problem}",
            shown(name)
        ))),
        None => Ok(()),
    }
}

/// The typed declarations of a spec, or every problem with them (and with the plain
/// parameters beside them).
fn decls(
    params: &[ParamSpec],
    defaults: &BTreeMap<String, String>,
) -> Result<Vec<ParamDecl>, Vec<String>> {
    let mut problems = Vec::new();
    let mut out = Vec::with_capacity(params.len());
    let mut seen = HashSet::new();
    if params.len() + defaults.len() > l::PARAMS_MAX {
        problems.push(format!(
            "{} parameters declared; the limit is {}",
            params.len() + defaults.len(),
            l::PARAMS_MAX
        ));
        return Err(problems);
    }
    for p in params {
        let name = shown(&p.name);
        if !seen.insert(p.name.as_str()) {
            problems.push(format!("parameter {name} is declared twice"));
        }
        if defaults.contains_key(&p.name) {
            problems.push(format!(
                "parameter {name} is both a plain parameter and a typed one: keep one"
            ));
        }
        let Some(ty) = ParamType::parse(&p.ty) else {
            problems.push(format!(
                "parameter {name} has type {}: use {}",
                shown(&p.ty),
                ParamType::NAMES
            ));
            continue;
        };
        let decl = ParamDecl {
            name: p.name.clone(),
            ty,
            default: p.default.clone(),
            required: p.required,
        };
        problems.extend(rules::decl_problems(&decl));
        out.push(decl);
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

impl Engine {
    /// Stores `job` (its name the pipeline's, its params the plain parameters' defaults) and
    /// the typed `params` as the pipeline's next version, unless equal to the latest one.
    pub async fn apply_pipeline(
        &self,
        job: NewJob,
        params: Vec<ParamSpec>,
    ) -> Result<Applied, EngineError> {
        self.apply_scheduled(job, params, None).await
    }

    /// `apply_pipeline` with the file's `[schedule]`, checked (`ferry_jobspec::schedule`).
    #[tracing::instrument(skip_all, fields(pipeline = %job.name))]
    pub async fn apply_scheduled(
        &self,
        job: NewJob,
        params: Vec<ParamSpec>,
        schedule: Option<ScheduleFields>,
    ) -> Result<Applied, EngineError> {
        check_name(&job.name)?;
        let mut problems = validate::problems(&job);
        if let Some(key) = &job.idempotency_key {
            problems.push(format!(
                "idempotency key {}: a pipeline has none (give one to each run)",
                shown(key)
            ));
        }
        if !job.backfill.is_empty() {
            problems.push("a pipeline has no backfill: give one to a submit".into());
        }
        if let Err(more) = decls(&params, &job.params) {
            problems.extend(more);
        }
        if let Some(Err(more)) = schedule.as_ref().map(|s| Schedule::parse(&s.spec())) {
            problems.extend(more);
        }
        if !problems.is_empty() {
            return Err(EngineError::InvalidJob(problems));
        }
        let template = PipelineTemplate {
            tasks: job.tasks,
            defaults: job.params,
            params,
            schedule,
        };
        let applied = self
            .store
            .apply_pipeline(
                NewPipeline {
                    name: job.name,
                    template,
                },
                self.clock.now_ms(),
            )
            .await?;
        tracing::info!(
            version = applied.version,
            changed = applied.changed,
            "pipeline applied"
        );
        Ok(applied)
    }

    /// Starts a run of the pipeline's latest version by hand, with `given` parameters over
    /// its defaults, each checked against its declaration; `key` makes it idempotent.
    pub async fn run_pipeline(
        &self,
        name: &str,
        given: BTreeMap<String, String>,
        key: Option<String>,
    ) -> Result<RunStarted, EngineError> {
        let origin = RunOrigin {
            key,
            ..RunOrigin::default()
        };
        self.start_run(name, given, origin).await
    }

    /// Starts a run as `origin` says (the scheduler and the triggers call this): the latest
    /// version's job with `given` over its defaults, each checked against its declaration. A
    /// scheduled time or key already run answers that run's job (`existing`).
    #[tracing::instrument(skip(self, given, origin), fields(scheduled = ?origin.scheduled_time, automatic = origin.automatic))]
    pub async fn start_run(
        &self,
        name: &str,
        given: BTreeMap<String, String>,
        origin: RunOrigin,
    ) -> Result<RunStarted, EngineError> {
        check_name(name)?;
        let mut tries = 0;
        loop {
            tries += 1;
            let (latest, _paused) = self.store.latest_pipeline(name).await?;
            let template = latest.template;
            let declared =
                decls(&template.params, &template.defaults).map_err(EngineError::InvalidJob)?;
            // A scheduled run adds scheduled_time, interval_start and interval_end, which a
            // pipeline need not declare (decision 0018).
            let params = rules::resolve(
                &template.defaults,
                &declared,
                &given,
                origin.scheduled_time.is_none(),
            )
            .map_err(|problems| {
                EngineError::InvalidArgument(format!(
                    "pipeline {} version {} refuses the run: {}",
                    shown(name),
                    latest.version,
                    problems.join("; ")
                ))
            })?;
            let job = NewJob {
                name: name.to_string(),
                params,
                tasks: template.tasks,
                idempotency_key: None,
                backfill: BTreeMap::new(),
            };
            let problems = validate::problems(&job);
            if !problems.is_empty() {
                return Err(EngineError::InvalidJob(problems));
            }
            let run = NewRun {
                pipeline: name.to_string(),
                version: latest.version,
                job,
                scheduled_time: origin.scheduled_time,
                key: origin.key.clone(),
                automatic: origin.automatic,
            };
            match self.store.run_pipeline(run, self.clock.now_ms()).await {
                Err(StoreError::Conflict(_)) if tries < RUN_TRIES => continue,
                Err(e) => return Err(e.into()),
                Ok(started) => {
                    if !started.existing {
                        tracing::info!(job_id = %started.job_id, version = started.version, "pipeline run started");
                        self.notify(Wakes {
                            work: true,
                            ..Wakes::default()
                        });
                    }
                    return Ok(started);
                }
            }
        }
    }

    pub async fn pipelines(&self) -> Result<Vec<PipelineSummary>, EngineError> {
        Ok(self.store.list_pipelines().await?)
    }

    pub async fn pipeline(&self, name: &str) -> Result<PipelineRecord, EngineError> {
        check_name(name)?;
        Ok(self.store.get_pipeline(name).await?)
    }

    /// The runs recorded under the name, newest first; also those of a deleted pipeline.
    /// `NotFound` when there is no such pipeline and never was a run of it.
    pub async fn pipeline_history(
        &self,
        name: &str,
        limit: u32,
    ) -> Result<Vec<PipelineRun>, EngineError> {
        check_name(name)?;
        let runs = self.store.pipeline_runs(name, limit).await?;
        if runs.is_empty() {
            self.store.get_pipeline(name).await?;
        }
        Ok(runs)
    }

    #[tracing::instrument(skip(self))]
    pub async fn pause_pipeline(&self, name: &str, paused: bool) -> Result<bool, EngineError> {
        check_name(name)?;
        let changed = self
            .store
            .set_pipeline_paused(name, paused, self.clock.now_ms())
            .await?;
        tracing::info!(
            changed,
            "pipeline {}",
            if paused { "paused" } else { "resumed" }
        );
        Ok(changed)
    }

    #[tracing::instrument(skip(self))]
    pub async fn delete_pipeline(&self, name: &str) -> Result<(), EngineError> {
        check_name(name)?;
        self.store
            .delete_pipeline(name, self.clock.now_ms())
            .await?;
        tracing::info!("pipeline deleted");
        Ok(())
    }
}

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
