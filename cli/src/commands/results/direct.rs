//! `results get` from an S3-compatible artifact store: the controller grants a short-lived
//! presigned GET URL (`GrantResultDownload`) and the bytes come straight from the store
//! (`ferry_tls::presigned`, shared with the agent), the request resumed with `Range` from the
//! bytes received, into the same `.part` file, size and SHA-256 checked, as a download through
//! the controller.

use std::time::Duration;

use ferry_proto::v1::{DownloadResultRequest, ResultFile};
use ferry_tls::presigned::{self, Failure, Kind};
use tonic::Code;

use super::Stop;
use crate::{
    client::Controller,
    download::{Progress, Receiver, Sink},
    exit::CliError,
};

/// No answer (or no data) for this long: the request is dropped and resumed.
const STALL: Duration = Duration::from_secs(60);

/// The presigned URL of `file`, or `None` when the controller streams its artifacts itself.
pub async fn grant(
    controller: &Controller,
    job: &str,
    file: &ResultFile,
) -> Result<Option<String>, CliError> {
    let mut client = controller.connect().await?;
    let answer = client
        .grant_result_download(DownloadResultRequest {
            job_id: job.to_owned(),
            task_id: file.task_id.clone(),
            name: file.name.clone(),
            offset: 0,
        })
        .await;
    match answer {
        Ok(r) => {
            let r = r.into_inner();
            Ok(r.direct.then_some(r.url))
        }
        // A controller from before object stores.
        Err(status) if status.code() == Code::Unimplemented => Ok(None),
        Err(status) => Err(controller.error("grant result download", &status)),
    }
}

/// One GET of `url` from `offset`, feeding the writer until the body ends. A refused URL
/// (403: expired) comes back as `Stop::Retry` with `expired` set, to be granted again.
pub async fn get_from(
    url: &str,
    offset: u64,
    receiver: &mut Receiver,
    sink: &mut Sink,
    progress: &mut Progress,
    expired: &mut bool,
) -> Result<(), Stop> {
    let target = presigned::redact(url).to_owned();
    let mut stop = |failure: Failure| match failure.kind {
        Kind::Expired | Kind::Transient => {
            *expired |= failure.kind == Kind::Expired;
            Stop::Retry(CliError::Unreachable {
                url: target.clone(),
                reason: failure.reason,
            })
        }
        Kind::Refused => Stop::Fatal(CliError::Failed(format!(
            "the object store refused GET {target}: {}; not saved",
            failure.reason
        ))),
    };
    let http = presigned::client()
        .map_err(|e| Stop::Fatal(CliError::BadInput(format!("object store TLS: {e}"))))?;
    let mut body = presigned::get(&http, url, offset, STALL)
        .await
        .map_err(&mut stop)?;
    while let Some(data) = presigned::next(&mut body, STALL).await.map_err(&mut stop)? {
        let at = receiver.received();
        receiver.accept(at, data.len()).map_err(|why| {
            Stop::Fatal(CliError::Protocol(format!(
                "the object store sent a bad download: {why}; not saved"
            )))
        })?;
        if !sink.push(data.to_vec()) {
            return Err(Stop::WriterFailed);
        }
        progress.update(receiver.received());
    }
    Ok(())
}
