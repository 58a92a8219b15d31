//! `ferry submit FILE`: check the job file, submit it, print the job id, optionally wait.
//!
//! Standard output holds only the job id line, so that scripts can write
//! `id=$(ferry submit job.toml)`, or with `--output json` one object with the id and the
//! controller's warnings (`{"job_id", "existing", "warnings"}`); the warnings (a task no agent
//! seen lately may run) also go to standard error, as does the progress of `--wait`.
//!
//! A submit whose answer was lost (the controller died or its connection broke mid-call) may
//! or may not have been accepted: it is sent again, to the next controller when there are
//! several, with the same idempotency key (one of its own when none was given), so that it is
//! accepted once.

use ferry_proto::v1::{BackfillRange, SubmitJobRequest, SubmitJobResponse};
use std::time::Duration;

use tonic::{Code, Status};

use crate::{
    args::SubmitArgs,
    client::Controller,
    exit::{CliError, Outcome},
    jobfile,
    output::{self, Format},
    watch,
};

/// What `--output json` prints of a submit.
#[derive(serde::Serialize)]
struct SubmitView<'a> {
    job_id: &'a str,
    existing: bool,
    /// Why a task may wait: "task extract: no agent on queue onperm: …".
    warnings: &'a [String],
}

pub async fn run(
    controller: &Controller,
    format: Format,
    args: SubmitArgs,
) -> Result<Outcome, CliError> {
    let (spec, extra) = jobfile::load_with(&args.file, &args.params, args.allow_extra_params)?;
    for warning in &extra {
        eprintln!("warning: {warning}");
    }
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
    let (idempotency_key, chosen) = match args.idempotency_key {
        Some(key) => (key, true),
        None => (own_key()?, false),
    };
    let request = SubmitJobRequest {
        spec: Some(spec),
        idempotency_key: idempotency_key.clone(),
        backfill,
    };
    let response = send(controller, request, args.answer_timeout).await?;
    for warning in &response.warnings {
        eprintln!("warning: {warning}");
    }
    match format {
        Format::Json => {
            let view = SubmitView {
                job_id: &response.job_id,
                existing: response.existing,
                warnings: &response.warnings,
            };
            let json = serde_json::to_string(&view)
                .map_err(|err| CliError::Output(std::io::Error::other(err)))?;
            output::write_stdout(format!("{json}\n").as_bytes())?;
        }
        Format::Table => output::write_stdout(format!("{}\n", response.job_id).as_bytes())?,
    }
    if response.existing && chosen {
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

/// Tries of a submit whose answer was lost, on one controller (on several, one each at least).
const TRIES_ON_ONE: usize = 2;

/// Sends the submit, again while its answer is lost (`lost_answer`), moving to the next
/// controller each time.
async fn send(
    controller: &Controller,
    request: SubmitJobRequest,
    answer_timeout: Duration,
) -> Result<SubmitJobResponse, CliError> {
    let tries = controller.urls().count().max(TRIES_ON_ONE);
    let mut tried = 0;
    loop {
        tried += 1;
        let mut client = controller.connect().await?;
        let answer = tokio::time::timeout(answer_timeout, client.submit_job(request.clone()))
            .await
            .unwrap_or_else(|_| {
                Err(Status::deadline_exceeded(format!(
                    "no answer within {}",
                    humantime::format_duration(answer_timeout)
                )))
            });
        match answer {
            Ok(response) => return Ok(response.into_inner()),
            Err(status) if lost_answer(&status) && tried < tries => {
                eprintln!(
                    "note: the submit's answer from {} was lost ({}); sending it again with \
                     idempotency key {:?}",
                    controller.url(),
                    status.message(),
                    request.idempotency_key
                );
                controller.move_on();
            }
            Err(status) => return Err(controller.error("submit job", &status)),
        }
    }
}

/// A failure after which the submit may or may not have been accepted: the connection broke
/// or the controller could not finish (its store unreachable).
fn lost_answer(status: &Status) -> bool {
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::DeadlineExceeded => {
            !ferry_tls::is_certificate_error(status)
        }
        Code::Unknown => {
            status.message().contains("transport error") || status.message().contains("connection")
        }
        _ => false,
    }
}

/// An idempotency key of the CLI's own: 128 random bits, so that a submit sent again after a
/// lost answer is accepted once.
fn own_key() -> Result<String, CliError> {
    use std::io::Read;
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            CliError::Failed(format!("reading /dev/urandom for an idempotency key: {e}"))
        })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("ferry-submit-{hex}"))
}
