//! `ferry jobs list | show | cancel | watch`.

use ferry_proto::v1::{CancelJobRequest, GetJobRequest, JobState, ListJobsRequest};

use crate::{
    args::StateFilter,
    client::Controller,
    exit::{CliError, Outcome},
    output::{self, CancelView, Format, JobSummaryView, JobView},
    watch,
};

pub async fn list(
    controller: &Controller,
    format: Format,
    limit: Option<u32>,
    state: Option<StateFilter>,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let request = ListJobsRequest {
        limit: limit.unwrap_or(0),
        state: state.map_or(JobState::Unspecified, JobState::from) as i32,
    };
    let response = client
        .list_jobs(request)
        .await
        .map_err(|status| controller.error("list jobs", &status))?
        .into_inner();
    let jobs: Vec<JobSummaryView> = response.jobs.iter().map(JobSummaryView::from).collect();
    output::emit(format, jobs.as_slice(), JobSummaryView::table)?;
    Ok(Outcome::Success)
}

pub async fn show(controller: &Controller, format: Format, id: &str) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let job = client
        .get_job(GetJobRequest {
            job_id: id.to_owned(),
        })
        .await
        .map_err(|status| controller.error("get job", &status))?
        .into_inner();
    output::emit(format, &JobView::from(&job), JobView::table)?;
    Ok(Outcome::Success)
}

pub async fn cancel(
    controller: &Controller,
    format: Format,
    id: &str,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let response = client
        .cancel_job(CancelJobRequest {
            job_id: id.to_owned(),
        })
        .await
        .map_err(|status| controller.error("cancel job", &status))?
        .into_inner();
    output::emit(format, &CancelView::new(id, &response), CancelView::table)?;
    Ok(Outcome::Success)
}

/// Progress goes to standard error; in JSON mode the final job is printed as `jobs show` does.
pub async fn watch(controller: &Controller, format: Format, id: &str) -> Result<Outcome, CliError> {
    let job = watch::watch(controller, id).await?;
    if format == Format::Json {
        output::emit(format, &JobView::from(&job), JobView::table)?;
    }
    Ok(watch::outcome(&job))
}
