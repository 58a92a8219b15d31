//! Direct transfers with an S3-compatible artifact store: the controller grants short-lived
//! presigned URLs for the current attempt (`GrantUpload`, `GrantDownload`), and the agent
//! moves the bytes itself over HTTP/1.1 (TLS for an https:// store: the system's CAs and
//! `AWS_CA_BUNDLE`'s), so gigabytes never pass through the controller.
//!
//! Uploads: a single PUT for a small file; otherwise multipart, one part read (and hashed,
//! SHA-256, in file order) while the previous two are sent, the parts the store already holds
//! (a resumed upload) read for the hash but not sent again, then `CompleteUpload`. Downloads:
//! a GET resumed with `Range` from the bytes written. A URL refused as expired is asked for
//! again; a fenced attempt stops.
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request};
use tracing::info;

use crate::{
    client::{Backoff, FailureLog, TransferError},
    running::KillSwitch,
    transfer::Stop,
};

mod download;
mod upload;

pub(crate) use download::{download, Sink};
pub(crate) use upload::upload;

/// One request (a part's PUT, the start of a GET) with no answer for this long is retried.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

/// Why one HTTP request failed.
#[derive(Debug)]
pub(crate) enum HttpFailure {
    /// 403: the URL expired (or its signature no longer holds): ask for a new one.
    Forbidden(String),
    /// Unreachable, reset, timed out, 5xx: try again.
    Transient(String),
    /// Any other refusal: retrying will not help.
    Refused(String),
}

pub(crate) type Http = ferry_tls::presigned::Http;
pub(crate) use ferry_tls::presigned::redact;

/// The client for presigned URLs; the attempt fails when the CA bundle cannot be used.
pub(crate) fn http() -> Result<Http, Stop> {
    ferry_tls::presigned::client().map_err(|e| Stop::Failed(format!("object store TLS: {e}")))
}

impl HttpFailure {
    /// A failure of the request `what`, named in its message.
    pub(crate) fn of(what: &str, failure: ferry_tls::presigned::Failure) -> Self {
        use ferry_tls::presigned::Kind;
        let message = format!("{what}: {}", failure.reason);
        match failure.kind {
            Kind::Expired => HttpFailure::Forbidden(message),
            Kind::Transient => HttpFailure::Transient(message),
            Kind::Refused => HttpFailure::Refused(message),
        }
    }
}

/// A request that got no answer: worth another try, unless the store's certificate is not
/// trusted (set `AWS_CA_BUNDLE` for a private CA), which no retry mends.
pub(crate) fn classify(what: &str, e: &(dyn std::error::Error + 'static)) -> HttpFailure {
    HttpFailure::of(what, ferry_tls::presigned::request_failure(e))
}

pub(crate) fn failure(status: u16, what: &str, body: &[u8]) -> HttpFailure {
    HttpFailure::of(what, ferry_tls::presigned::status_failure(status, body))
}

/// PUTs `data` to a presigned URL; the answer's ETag.
pub(crate) async fn put(http: &Http, url: &str, data: Bytes) -> Result<String, HttpFailure> {
    let what = format!("PUT {}", redact(url));
    let request = Request::builder()
        .method(Method::PUT)
        .uri(url)
        .header("content-length", data.len())
        .body(Full::new(data))
        .map_err(|e| HttpFailure::Refused(format!("{what}: {e}")))?;
    let exchange = async {
        let response = http
            .request(request)
            .await
            .map_err(|e| classify(&what, &e))?;
        let status = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpFailure::Transient(format!("{what}: reading the answer: {e}")))?
            .to_bytes();
        if !(200..300).contains(&status) {
            return Err(failure(status, &what, &body));
        }
        Ok(etag.unwrap_or_default())
    };
    tokio::time::timeout(REQUEST_TIMEOUT, exchange)
        .await
        .map_err(|_| {
            HttpFailure::Transient(format!("{what}: no answer within {REQUEST_TIMEOUT:?}"))
        })?
}

/// Retries a grant-like call while it fails transiently; stops on a fenced attempt.
pub(crate) async fn ask<T, F, Fut>(
    kill: &KillSwitch,
    what: &'static str,
    label: &str,
    mut call: F,
) -> Result<T, Stop>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, TransferError>>,
{
    let mut backoff = Backoff::default();
    let mut failures = FailureLog::new(what);
    loop {
        let result = tokio::select! {
            r = call() => r,
            () = kill.abort.cancelled() => return Err(Stop::Aborted),
        };
        match result {
            Ok(v) => {
                failures.recovered();
                return Ok(v);
            }
            Err(TransferError::Fenced(e)) => {
                info!(file = %label, error = %e, "attempt fenced during a transfer; stopping it");
                return Err(Stop::Aborted);
            }
            Err(TransferError::Refused(m)) => return Err(Stop::Failed(labelled(label, m))),
            Err(TransferError::Missing(m)) => return Err(Stop::Final(labelled(label, m))),
            Err(e) => failures.failed(&e),
        }
        if !backoff.sleep(&kill.abort).await {
            return Err(Stop::Aborted);
        }
    }
}

/// `m`, prefixed with what it is about unless it already names it.
fn labelled(label: &str, m: String) -> String {
    if m.contains(label) {
        m
    } else {
        format!("{label}: {m}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_signature_in_messages() {
        assert_eq!(
            redact("http://127.0.0.1:9000/b/k?X-Amz-Signature=abc"),
            "http://127.0.0.1:9000/b/k"
        );
        assert!(matches!(
            failure(403, "PUT x", b"expired"),
            HttpFailure::Forbidden(_)
        ));
        assert!(matches!(
            failure(503, "PUT x", b""),
            HttpFailure::Transient(_)
        ));
        assert!(matches!(
            failure(400, "PUT x", b"<Error/>"),
            HttpFailure::Refused(_)
        ));
    }
}
