//! Presigned object-store URLs as the agent and the CLI use them: the HTTP/1.1 client on the
//! object-store connector, a URL told without its signature, how a refusal or a lost request
//! is classed (expired: grant again; transient: retry; refused: stop), and one GET resumed
//! with `Range` from an offset, its body read piece by piece under a stall timeout.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, Method, Request};
use hyper_util::{client::legacy::Client as HttpClient, rt::TokioExecutor};

use crate::https::{connector, Connector, CA_BUNDLE_VAR};
use crate::{error_chain, is_certificate_error, TlsFileError};

/// The client for presigned URLs.
pub type Http = HttpClient<Connector, Full<Bytes>>;

/// Bytes of a refusal's body quoted in its message.
const QUOTED: usize = 512;

/// A client for presigned URLs (TCP connect within 10 s, idle connections kept 30 s).
pub fn client() -> Result<Http, TlsFileError> {
    Ok(HttpClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(connector(Duration::from_secs(10))?))
}

/// Where a URL points, without its query (which carries the signature): for messages.
pub fn redact(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 403: the URL expired (or its signature no longer holds): ask for a new one.
    Expired,
    /// Unreachable, reset, timed out, 408, 429, 5xx: try again.
    Transient,
    /// Any other refusal, or an untrusted certificate: retrying will not help.
    Refused,
}

/// Why one request failed; `reason` does not name the request.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: Kind,
    pub reason: String,
}

impl Failure {
    pub fn transient(reason: String) -> Self {
        Self {
            kind: Kind::Transient,
            reason,
        }
    }

    pub fn refused(reason: String) -> Self {
        Self {
            kind: Kind::Refused,
            reason,
        }
    }
}

/// An answer of `status` (not a success) with `body`.
pub fn status_failure(status: u16, body: &[u8]) -> Failure {
    let text = String::from_utf8_lossy(&body[..body.len().min(QUOTED)]).into_owned();
    let reason = format!("HTTP {status}: {}", text.trim());
    let kind = match status {
        403 => Kind::Expired,
        408 | 429 | 500..=599 => Kind::Transient,
        _ => Kind::Refused,
    };
    Failure { kind, reason }
}

/// A request that got no answer: worth another try, unless the store's certificate is not
/// trusted (set `AWS_CA_BUNDLE` for a private CA), which no retry mends.
pub fn request_failure(e: &(dyn std::error::Error + 'static)) -> Failure {
    let why = error_chain(e);
    if is_certificate_error(e) {
        Failure::refused(format!(
            "{why} (for a store with a private CA, set {CA_BUNDLE_VAR} to its PEM file)"
        ))
    } else {
        Failure::transient(why)
    }
}

/// One GET of `url` from `offset`: the body, once the store answered 200 (206 from an
/// offset) within `timeout`.
pub async fn get(
    http: &Http,
    url: &str,
    offset: u64,
    timeout: Duration,
) -> Result<Incoming, Failure> {
    let mut request = Request::builder().method(Method::GET).uri(url);
    if offset > 0 {
        request = request.header("range", format!("bytes={offset}-"));
    }
    let request = request
        .body(Full::new(Bytes::new()))
        .map_err(|e| Failure::refused(e.to_string()))?;
    let response = match tokio::time::timeout(timeout, http.request(request)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return Err(request_failure(&e)),
        Err(_) => return Err(Failure::transient(format!("no answer within {timeout:?}"))),
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
        return Err(if (200..300).contains(&status) {
            Failure::refused(format!("HTTP {status} where {expected} was expected"))
        } else {
            status_failure(status, &body)
        });
    }
    Ok(response.into_body())
}

/// The next bytes of a body, `None` at its end; a transient failure when none come for
/// `stall`.
pub async fn next(body: &mut Incoming, stall: Duration) -> Result<Option<Bytes>, Failure> {
    loop {
        match tokio::time::timeout(stall, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                if let Ok(data) = frame.into_data() {
                    return Ok(Some(data));
                }
            }
            Ok(None) => return Ok(None),
            Ok(Some(Err(e))) => return Err(Failure::transient(e.to_string())),
            Err(_) => {
                return Err(Failure::transient(format!(
                    "no data for {}s",
                    stall.as_secs()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_signature_and_refusals_are_classed() {
        assert_eq!(
            redact("http://127.0.0.1:9000/b/k?X-Amz-Signature=abc"),
            "http://127.0.0.1:9000/b/k"
        );
        assert_eq!(status_failure(403, b"expired").kind, Kind::Expired);
        assert_eq!(status_failure(503, b"").kind, Kind::Transient);
        assert_eq!(status_failure(400, b"<Error/>").kind, Kind::Refused);
        assert_eq!(
            status_failure(400, b" <Error/> ").reason,
            "HTTP 400: <Error/>"
        );
    }
}
