//! `ferry pipelines backfill NAME --from T --to T [--max-concurrent N]`: the runs of a
//! schedule's past ticks, one per tick ever (the controller's `BackfillPipeline`); with
//! `--max-concurrent`, N at a time, each batch waited for before the next is asked for.

use std::time::UNIX_EPOCH;

use ferry_proto::v1::{BackfillPipelineRequest, BackfilledRun};
use serde::Serialize;

use crate::args::BackfillArgs;
use crate::client::Controller;
use crate::exit::{CliError, Outcome};
use crate::output::{self, timestamp, Format};
use crate::watch;

#[derive(Serialize)]
struct BackfilledView {
    scheduled_time: Option<String>,
    job_id: String,
    existing: bool,
}

fn instant(flag: &str, text: &str) -> Result<i64, CliError> {
    humantime::parse_rfc3339(text)
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as i64)
        .ok_or_else(|| {
            CliError::BadInput(format!(
                "--{flag} {text:?} is not an RFC 3339 time in UTC: give e.g. 2026-11-01T00:00:00Z"
            ))
        })
}

pub async fn run(
    controller: &Controller,
    format: Format,
    args: BackfillArgs,
) -> Result<Outcome, CliError> {
    let from = instant("from", &args.from)?;
    let to = instant("to", &args.to)?;
    if args.max_concurrent == Some(0) {
        return Err(CliError::BadInput(
            "--max-concurrent 0: give 1 or more".into(),
        ));
    }
    let mut client = controller.connect_pipelines().await?;
    let mut all: Vec<BackfilledRun> = Vec::new();
    let mut outcome = Outcome::Success;
    loop {
        let answer = client
            .backfill_pipeline(BackfillPipelineRequest {
                name: args.name.clone(),
                from_ms: from,
                to_ms: to,
                max_runs: args.max_concurrent.unwrap_or(0),
            })
            .await
            .map_err(|status| controller.error("backfill pipeline", &status))?
            .into_inner();
        let fresh: Vec<BackfilledRun> = answer
            .runs
            .into_iter()
            .filter(|r| {
                !all.iter()
                    .any(|a| a.scheduled_time_ms == r.scheduled_time_ms)
            })
            .collect();
        if format == Format::Table {
            for r in &fresh {
                output::write_stdout(format!("{}\n", r.job_id).as_bytes())?;
            }
        }
        if args.max_concurrent.is_some() {
            for r in fresh.iter().filter(|r| !r.existing) {
                let job = watch::watch(controller, &r.job_id).await?;
                if watch::outcome(&job) != Outcome::Success {
                    outcome = watch::outcome(&job);
                }
            }
        }
        all.extend(fresh);
        if !answer.more {
            break;
        }
    }
    if format == Format::Json {
        let views: Vec<BackfilledView> = all
            .iter()
            .map(|r| BackfilledView {
                scheduled_time: timestamp(r.scheduled_time_ms),
                job_id: r.job_id.clone(),
                existing: r.existing,
            })
            .collect();
        let json = serde_json::to_string(&views)
            .map_err(|err| CliError::Output(std::io::Error::other(err)))?;
        output::write_stdout(format!("{json}\n").as_bytes())?;
    }
    Ok(outcome)
}
