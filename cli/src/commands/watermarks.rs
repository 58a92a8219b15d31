//! `ferry watermarks list [JOB_NAME] | set JOB_NAME TASK VALUE | reset JOB_NAME TASK`.

use ferry_proto::v1::{ListWatermarksRequest, ResetWatermarkRequest, SetWatermarkRequest};

use crate::{
    client::Controller,
    exit::{CliError, Outcome},
    output::{self, Format, ResetView, WatermarkView},
};

pub async fn list(
    controller: &Controller,
    format: Format,
    job_name: Option<&str>,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let response = client
        .list_watermarks(ListWatermarksRequest {
            job_name: job_name.unwrap_or_default().to_owned(),
        })
        .await
        .map_err(|status| controller.error("list watermarks", &status))?
        .into_inner();
    let marks: Vec<WatermarkView> = response
        .watermarks
        .iter()
        .map(WatermarkView::from)
        .collect();
    output::emit(format, marks.as_slice(), WatermarkView::table)?;
    Ok(Outcome::Success)
}

pub async fn set(
    controller: &Controller,
    format: Format,
    job_name: &str,
    task: &str,
    value: &str,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    // Checked against the stored one's type before anything changes (the controller does too).
    // No job of that name (or no answer): the set below says so.
    let stored = client
        .list_watermarks(ListWatermarksRequest {
            job_name: job_name.to_owned(),
        })
        .await
        .map(tonic::Response::into_inner)
        .unwrap_or_default();
    if let Some(old) = stored.watermarks.iter().find(|m| m.task_id == task) {
        let problem = ferry_jobspec::watermark::replacement_problem(&old.column, &old.value, value);
        if let Some(problem) = problem {
            return Err(CliError::BadInput(format!(
                "{problem}, or `ferry watermarks reset {job_name} {task}` first"
            )));
        }
    }
    let mark = client
        .set_watermark(SetWatermarkRequest {
            job_name: job_name.to_owned(),
            task_id: task.to_owned(),
            value: value.to_owned(),
        })
        .await
        .map_err(|status| controller.error("set watermark", &status))?
        .into_inner();
    output::emit(
        format,
        &WatermarkView::from(&mark),
        WatermarkView::set_table,
    )?;
    Ok(Outcome::Success)
}

pub async fn reset(
    controller: &Controller,
    format: Format,
    job_name: &str,
    task: &str,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let response = client
        .reset_watermark(ResetWatermarkRequest {
            job_name: job_name.to_owned(),
            task_id: task.to_owned(),
        })
        .await
        .map_err(|status| controller.error("reset watermark", &status))?
        .into_inner();
    let view = ResetView {
        job_name: job_name.to_owned(),
        task: task.to_owned(),
        existed: response.existed,
    };
    output::emit(format, &view, ResetView::table)?;
    Ok(Outcome::Success)
}
