//! `ferry submit FILE`: check the job file, submit it, print the job id, optionally wait.
//!
//! Standard output holds only the job id line, whatever `--output` says, so that scripts can
//! write `id=$(ferry submit job.toml)`; with `--wait`, progress goes to standard error.

use ferry_proto::v1::{BackfillRange, SubmitJobRequest};

use crate::{
    args::SubmitArgs,
    client::Controller,
    exit::{CliError, Outcome},
    jobfile, output, watch,
};

pub async fn run(controller: &Controller, args: SubmitArgs) -> Result<Outcome, CliError> {
    let spec = jobfile::load(&args.file, &args.params)?;
    let mut backfill = std::collections::HashMap::new();
    for b in &args.backfill {
        let range = BackfillRange {
            from: b.from.clone(),
            until: b.until.clone(),
        };
        if backfill.insert(b.task.clone(), range).is_some() {
            return Err(CliError::BadInput(format!(
                "--backfill names task {} twice",
                b.task
            )));
        }
    }
    let mut client = controller.connect().await?;
    let idempotency_key = args.idempotency_key.unwrap_or_default();
    let response = client
        .submit_job(SubmitJobRequest {
            spec: Some(spec),
            idempotency_key: idempotency_key.clone(),
            backfill,
        })
        .await
        .map_err(|status| controller.error("submit job", &status))?
        .into_inner();
    output::write_stdout(format!("{}\n", response.job_id).as_bytes())?;
    if response.existing {
        eprintln!(
            "note: idempotency key {idempotency_key:?} already named job {}; nothing new was \
             submitted",
            response.job_id
        );
    }
    if !args.wait {
        return Ok(Outcome::Success);
    }
    let job = watch::watch(controller, &response.job_id).await?;
    Ok(watch::outcome(&job))
}
