//! `ferry pipelines apply | list | show | history | run | pause | resume | delete`, and
//! `jobs list --pipeline NAME`.
//!
//! `run` prints the new job's id alone on standard output (as `submit`; with `--output json`,
//! one object with the id), so that scripts can write `id=$(ferry pipelines run etl)`; with
//! `--wait`, progress goes to standard error.

mod backfill;
mod views;

use ferry_proto::v1::{
    ApplyPipelineRequest, DeletePipelineRequest, GetPipelineRequest, JobState,
    ListPipelinesRequest, PipelineHistoryRequest, RunPipelineRequest, SetPipelinePausedRequest,
};

use crate::{
    args::{PipelineRunArgs, PipelinesCommand, StateFilter},
    client::Controller,
    exit::{CliError, Outcome},
    jobfile,
    output::{self, Format, JobSummaryView},
    watch,
};
use views::{ApplyView, PausedView, PipelineView, RunView, StartedView, SummaryView};

pub async fn run(
    controller: &Controller,
    format: Format,
    command: PipelinesCommand,
) -> Result<Outcome, CliError> {
    match command {
        PipelinesCommand::Apply { file } => apply(controller, format, &file).await,
        PipelinesCommand::List => list(controller, format).await,
        PipelinesCommand::Show { name } => show(controller, format, &name).await,
        PipelinesCommand::History { name, limit } => {
            history(controller, format, &name, limit).await
        }
        PipelinesCommand::Run(args) => start(controller, format, args).await,
        PipelinesCommand::Pause { name } => pause(controller, format, &name, true).await,
        PipelinesCommand::Resume { name } => pause(controller, format, &name, false).await,
        PipelinesCommand::Delete { name } => delete(controller, format, &name).await,
        PipelinesCommand::Backfill(args) => backfill::run(controller, format, args).await,
    }
}

async fn apply(
    controller: &Controller,
    format: Format,
    file: &std::path::Path,
) -> Result<Outcome, CliError> {
    let job_file = jobfile::read_file(file)?;
    let mut client = controller.connect_pipelines().await?;
    let applied = client
        .apply_pipeline(ApplyPipelineRequest {
            spec: Some(job_file.spec),
            params: job_file.params,
            schedule: job_file.schedule,
        })
        .await
        .map_err(|status| controller.error("apply pipeline", &status))?
        .into_inner();
    output::emit(format, &ApplyView::from(&applied), ApplyView::table)?;
    Ok(Outcome::Success)
}

async fn list(controller: &Controller, format: Format) -> Result<Outcome, CliError> {
    let mut client = controller.connect_pipelines().await?;
    let listed = client
        .list_pipelines(ListPipelinesRequest {})
        .await
        .map_err(|status| controller.error("list pipelines", &status))?
        .into_inner();
    let views: Vec<SummaryView> = listed.pipelines.iter().map(SummaryView::from).collect();
    output::emit(format, views.as_slice(), SummaryView::table)?;
    Ok(Outcome::Success)
}

async fn show(controller: &Controller, format: Format, name: &str) -> Result<Outcome, CliError> {
    let mut client = controller.connect_pipelines().await?;
    let pipeline = client
        .get_pipeline(GetPipelineRequest {
            name: name.to_owned(),
        })
        .await
        .map_err(|status| controller.error("get pipeline", &status))?
        .into_inner();
    output::emit(format, &PipelineView::from(&pipeline), PipelineView::table)?;
    Ok(Outcome::Success)
}

async fn history(
    controller: &Controller,
    format: Format,
    name: &str,
    limit: Option<u32>,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect_pipelines().await?;
    let runs = client
        .pipeline_history(PipelineHistoryRequest {
            name: name.to_owned(),
            limit: limit.unwrap_or(0),
        })
        .await
        .map_err(|status| controller.error("pipeline history", &status))?
        .into_inner()
        .runs;
    let views: Vec<RunView> = runs.iter().map(RunView::from).collect();
    output::emit(format, views.as_slice(), RunView::table)?;
    Ok(Outcome::Success)
}

/// `jobs list --pipeline NAME`: the pipeline's runs, as `jobs list` shows jobs.
pub async fn jobs(
    controller: &Controller,
    format: Format,
    name: &str,
    limit: Option<u32>,
    state: Option<StateFilter>,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect_pipelines().await?;
    let runs = client
        .pipeline_history(PipelineHistoryRequest {
            name: name.to_owned(),
            limit: limit.unwrap_or(50),
        })
        .await
        .map_err(|status| controller.error("list jobs", &status))?
        .into_inner()
        .runs;
    let wanted = state.map(JobState::from);
    let jobs: Vec<JobSummaryView> = runs
        .iter()
        .filter_map(|r| r.job.as_ref())
        .filter(|j| wanted.is_none_or(|s| j.state() == s))
        .map(JobSummaryView::from)
        .collect();
    output::emit(format, jobs.as_slice(), JobSummaryView::table)?;
    Ok(Outcome::Success)
}

async fn start(
    controller: &Controller,
    format: Format,
    args: PipelineRunArgs,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect_pipelines().await?;
    let started = client
        .run_pipeline(RunPipelineRequest {
            name: args.name.clone(),
            params: args.params.into_iter().collect(),
            idempotency_key: args.idempotency_key.clone().unwrap_or_default(),
        })
        .await
        .map_err(|status| controller.error("run pipeline", &status))?
        .into_inner();
    match format {
        Format::Json => {
            let json = serde_json::to_string(&StartedView::from(&started))
                .map_err(|err| CliError::Output(std::io::Error::other(err)))?;
            output::write_stdout(format!("{json}\n").as_bytes())?;
        }
        Format::Table => output::write_stdout(format!("{}\n", started.job_id).as_bytes())?,
    }
    if started.existing {
        eprintln!(
            "note: idempotency key {:?} already named run {} of pipeline {}; nothing new was started",
            args.idempotency_key.unwrap_or_default(),
            started.job_id,
            args.name
        );
    }
    if !args.wait {
        return Ok(Outcome::Success);
    }
    let job = watch::watch(controller, &started.job_id).await?;
    Ok(watch::outcome(&job))
}

async fn pause(
    controller: &Controller,
    format: Format,
    name: &str,
    paused: bool,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect_pipelines().await?;
    let call = if paused {
        "pause pipeline"
    } else {
        "resume pipeline"
    };
    let answer = client
        .set_pipeline_paused(SetPipelinePausedRequest {
            name: name.to_owned(),
            paused,
        })
        .await
        .map_err(|status| controller.error(call, &status))?
        .into_inner();
    let view = PausedView {
        name: name.to_owned(),
        paused,
        changed: answer.changed,
    };
    output::emit(format, &view, PausedView::table)?;
    Ok(Outcome::Success)
}

async fn delete(controller: &Controller, format: Format, name: &str) -> Result<Outcome, CliError> {
    let mut client = controller.connect_pipelines().await?;
    client
        .delete_pipeline(DeletePipelineRequest {
            name: name.to_owned(),
        })
        .await
        .map_err(|status| controller.error("delete pipeline", &status))?;
    let view = serde_json::json!({ "name": name, "deleted": true });
    output::emit(format, &view, |_| {
        format!("deleted pipeline {name}; its runs stay jobs\n")
    })?;
    Ok(Outcome::Success)
}
