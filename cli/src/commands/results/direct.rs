//! `results get` from an S3-compatible artifact store: the controller grants a short-lived
//! presigned GET URL (`GrantResultDownload`) and the bytes come straight from the store, the
//! request resumed with `Range` from the bytes received, into the same `.part` file, size and
//! SHA-256 checked, as a download through the controller.

use std::time::Duration;

use bytes::Bytes;
use ferry_proto::v1::{DownloadResultRequest, ResultFile};
use http_body_util::{BodyExt, Empty};
use hyper::{Method, Request};
use hyper_util::{client::legacy::Client as HttpClient, rt::TokioExecutor};
use tonic::Code;

use super::Stop;
use crate::{
    client::Controller,
    download::{Progress, Receiver, Sink},
    exit::{root_cause, CliError},
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

/// Where a URL points, without its signature: for messages.
fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
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
    let target = redact(url).to_owned();
    let retry = |reason: String| {
        Stop::Retry(CliError::Unreachable {
            url: target.clone(),
            reason,
        })
    };
    let connector = ferry_tls::https::connector(Duration::from_secs(10))
        .map_err(|e| Stop::Fatal(CliError::BadInput(format!("object store TLS: {e}"))))?;
    let http: HttpClient<_, Empty<Bytes>> =
        HttpClient::builder(TokioExecutor::new()).build(connector);
    let mut request = Request::builder().method(Method::GET).uri(url);
    if offset > 0 {
        request = request.header("range", format!("bytes={offset}-"));
    }
    let request = request
        .body(Empty::new())
        .map_err(|e| Stop::Fatal(CliError::Failed(format!("GET {target}: {e}"))))?;
    let response = match tokio::time::timeout(STALL, http.request(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) if ferry_tls::is_certificate_error(&e) => {
            return Err(Stop::Fatal(CliError::Unreachable {
                url: target,
                reason: format!(
                    "{} (for a store with a private CA, set {} to its PEM file)",
                    root_cause(&e).unwrap_or_else(|| e.to_string()),
                    ferry_tls::https::CA_BUNDLE_VAR
                ),
            }))
        }
        Ok(Err(e)) => return Err(retry(root_cause(&e).unwrap_or_else(|| e.to_string()))),
        Err(_) => return Err(retry(format!("no answer within {}s", STALL.as_secs()))),
    };
    let status = response.status().as_u16();
    let expected = if offset > 0 { 206 } else { 200 };
    if status != expected {
        let body = response
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
        let reason = format!("HTTP {status}: {}", text.trim());
        return Err(match status {
            403 => {
                *expired = true;
                retry(reason)
            }
            408 | 429 | 500..=599 => retry(reason),
            _ => Stop::Fatal(CliError::Failed(format!(
                "the object store refused GET {target}: {reason}; not saved"
            ))),
        });
    }
    let mut body = response.into_body();
    loop {
        let frame = match tokio::time::timeout(STALL, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(None) => return Ok(()),
            Ok(Some(Err(e))) => return Err(retry(e.to_string())),
            Err(_) => return Err(retry(format!("no data for {}s", STALL.as_secs()))),
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
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
}
