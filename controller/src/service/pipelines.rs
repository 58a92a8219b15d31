//! `ferry.v1.PipelineService`: named, versioned job templates and their runs, what
//! `ferry pipelines …` calls. Thin: each handler checks the request's own fields (the rest is
//! `Engine`'s), makes one engine call and converts its answer.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_jobspec::check::{self, shown, Chars};
use ferry_jobspec::limits as l;
use ferry_proto::v1::{self as pb, pipeline_service_server::PipelineService};
use tonic::{Request, Response, Status};

use super::convert;
use crate::engine::Engine;
use crate::store::pipelines::{
    ParamSpec, PipelineRun, PipelineSummary, PipelineVersion, ScheduleFields,
};

pub struct PipelineApi {
    engine: Arc<Engine>,
}

impl PipelineApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// A run's given parameters: names, values and their sizes, before anything is read.
fn given_params(
    params: std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>, Status> {
    if params.len() > l::PARAMS_MAX {
        return Err(Status::invalid_argument(format!(
            "{} parameters given; the limit is {}",
            params.len(),
            l::PARAMS_MAX
        )));
    }
    let mut problems = Vec::new();
    let mut bytes = 0;
    for (name, value) in &params {
        bytes += name.len() + value.len();
        if let Some(problem) = check::param_name(name) {
            problems.push(format!("parameter name {} {problem}", shown(name)));
        }
        if let Some(problem) = ferry_jobspec::fields::param_value(value) {
            problems.push(format!("parameter {} {problem}", shown(name)));
        }
    }
    if bytes > l::PARAMS_TOTAL_MAX {
        problems.push(format!(
            "parameters take {bytes} bytes together; the limit is {}",
            l::PARAMS_TOTAL_MAX
        ));
    }
    if !problems.is_empty() {
        problems.sort();
        return Err(Status::invalid_argument(problems.join("; ")));
    }
    Ok(params.into_iter().collect())
}

fn param_spec(p: pb::ParamDecl) -> ParamSpec {
    ParamSpec {
        name: p.name,
        ty: p.r#type,
        default: p.default,
        required: p.required,
    }
}

fn param_decl(p: &ParamSpec) -> pb::ParamDecl {
    pb::ParamDecl {
        name: p.name.clone(),
        r#type: p.ty.clone(),
        default: p.default.clone(),
        required: p.required,
    }
}

fn run(r: &PipelineRun) -> pb::PipelineRun {
    pb::PipelineRun {
        job: Some(convert::job_summary(&r.job)),
        version: r.version,
        scheduled_time_ms: r.scheduled_time.unwrap_or(0),
    }
}

fn summary(s: &PipelineSummary) -> pb::PipelineSummary {
    pb::PipelineSummary {
        name: s.name.clone(),
        version: s.version,
        paused: s.paused,
        created_at_ms: s.created_at,
        updated_at_ms: s.updated_at,
        last_run: s.last_run.as_ref().map(run),
    }
}

fn version(v: &PipelineVersion) -> pb::PipelineVersion {
    pb::PipelineVersion {
        version: v.version,
        hash: v.hash.clone(),
        created_at_ms: v.created_at,
        tasks: v.template.tasks.iter().map(|t| t.id.clone()).collect(),
        params: v.template.params.iter().map(param_decl).collect(),
        defaults: v.template.defaults.clone().into_iter().collect(),
    }
}

fn schedule_fields(s: pb::ScheduleSpec) -> ScheduleFields {
    ScheduleFields {
        cron: s.cron,
        timezone: s.timezone,
        every_ms: s.every_ms,
        overlap: s.overlap,
        catchup: s.catchup,
        catchup_window_ms: s.catchup_window_ms,
        dst_repeated: s.dst_repeated,
        dst_skipped: s.dst_skipped,
    }
}

fn schedule_spec(s: ScheduleFields) -> pb::ScheduleSpec {
    pb::ScheduleSpec {
        cron: s.cron,
        timezone: s.timezone,
        every_ms: s.every_ms,
        overlap: s.overlap,
        catchup: s.catchup,
        catchup_window_ms: s.catchup_window_ms,
        dst_repeated: s.dst_repeated,
        dst_skipped: s.dst_skipped,
    }
}

/// The runs `show` lists.
const SHOWN_RUNS: u32 = 10;

#[tonic::async_trait]
impl PipelineService for PipelineApi {
    async fn apply_pipeline(
        &self,
        request: Request<pb::ApplyPipelineRequest>,
    ) -> Result<Response<pb::ApplyPipelineResponse>, Status> {
        let r = request.into_inner();
        let job = convert::new_job(r.spec, String::new(), Default::default())?;
        let applied = self
            .engine
            .apply_scheduled(
                job,
                r.params.into_iter().map(param_spec).collect(),
                r.schedule.map(schedule_fields),
            )
            .await?;
        Ok(Response::new(pb::ApplyPipelineResponse {
            name: applied.name,
            version: applied.version,
            changed: applied.changed,
        }))
    }

    async fn list_pipelines(
        &self,
        _request: Request<pb::ListPipelinesRequest>,
    ) -> Result<Response<pb::ListPipelinesResponse>, Status> {
        let pipelines = self.engine.pipelines().await?;
        Ok(Response::new(pb::ListPipelinesResponse {
            pipelines: pipelines.iter().map(summary).collect(),
        }))
    }

    async fn get_pipeline(
        &self,
        request: Request<pb::GetPipelineRequest>,
    ) -> Result<Response<pb::Pipeline>, Status> {
        let name = request.into_inner().name;
        let record = self.engine.pipeline(&name).await?;
        let runs = self.engine.pipeline_history(&name, SHOWN_RUNS).await?;
        let fields = record
            .versions
            .first()
            .and_then(|v| v.template.schedule.clone());
        let (next, transitions) = fields
            .as_ref()
            .map(|f| crate::engine::scheduler::upcoming(f, self.engine.clock.now_ms()))
            .unwrap_or_default();
        Ok(Response::new(pb::Pipeline {
            summary: Some(summary(&record.summary)),
            versions: record.versions.iter().map(version).collect(),
            last_runs: runs.iter().map(run).collect(),
            schedule: fields.map(schedule_spec),
            next_fire_times_ms: next,
            transitions,
        }))
    }

    async fn pipeline_history(
        &self,
        request: Request<pb::PipelineHistoryRequest>,
    ) -> Result<Response<pb::PipelineHistoryResponse>, Status> {
        let r = request.into_inner();
        let limit = match r.limit {
            0 => l::PIPELINE_HISTORY_DEFAULT,
            n if n > l::PIPELINE_HISTORY_MAX => {
                return Err(Status::invalid_argument(format!(
                    "limit {n} is above the maximum of {}",
                    l::PIPELINE_HISTORY_MAX
                )))
            }
            n => n,
        };
        let runs = self.engine.pipeline_history(&r.name, limit).await?;
        Ok(Response::new(pb::PipelineHistoryResponse {
            runs: runs.iter().map(run).collect(),
        }))
    }

    async fn run_pipeline(
        &self,
        request: Request<pb::RunPipelineRequest>,
    ) -> Result<Response<pb::RunPipelineResponse>, Status> {
        let r = request.into_inner();
        if let Some(problem) = check::text(
            &r.idempotency_key,
            l::IDEMPOTENCY_KEY_MAX,
            Chars::NoControl,
            false,
        ) {
            return Err(Status::invalid_argument(format!(
                "idempotency key {problem}"
            )));
        }
        let params = given_params(r.params)?;
        let key = Some(r.idempotency_key).filter(|k| !k.is_empty());
        let started = self.engine.run_pipeline(&r.name, params, key).await?;
        Ok(Response::new(pb::RunPipelineResponse {
            job_id: started.job_id,
            version: started.version,
            existing: started.existing,
        }))
    }

    async fn set_pipeline_paused(
        &self,
        request: Request<pb::SetPipelinePausedRequest>,
    ) -> Result<Response<pb::SetPipelinePausedResponse>, Status> {
        let r = request.into_inner();
        let changed = self.engine.pause_pipeline(&r.name, r.paused).await?;
        Ok(Response::new(pb::SetPipelinePausedResponse { changed }))
    }

    async fn backfill_pipeline(
        &self,
        request: Request<pb::BackfillPipelineRequest>,
    ) -> Result<Response<pb::BackfillPipelineResponse>, Status> {
        let r = request.into_inner();
        let (runs, more) = self
            .engine
            .backfill(&r.name, r.from_ms, r.to_ms, r.max_runs)
            .await?;
        Ok(Response::new(pb::BackfillPipelineResponse {
            runs: runs
                .into_iter()
                .map(|(tick, started)| pb::BackfilledRun {
                    scheduled_time_ms: tick,
                    job_id: started.job_id,
                    existing: started.existing,
                })
                .collect(),
            more,
        }))
    }

    async fn delete_pipeline(
        &self,
        request: Request<pb::DeletePipelineRequest>,
    ) -> Result<Response<pb::DeletePipelineResponse>, Status> {
        self.engine
            .delete_pipeline(&request.into_inner().name)
            .await?;
        Ok(Response::new(pb::DeletePipelineResponse {}))
    }
}
