//! `S3Error`, what an operation of `S3Client` fails with, and how an error answer of the store
//! becomes one.

use std::time::Duration;

use crate::s3::xml;

#[derive(Debug, thiserror::Error)]
pub enum S3Error {
    /// The server answered with an error (`code` and `message` from its XML body, or the
    /// status's name when it sent none, as for HEAD).
    #[error("S3 {op} {target}: HTTP {status} {code}: {message}")]
    Service {
        op: &'static str,
        target: String,
        status: u16,
        code: String,
        message: String,
    },
    #[error("S3 {op} {target}: {detail}")]
    Transport {
        op: &'static str,
        target: String,
        detail: String,
    },
    #[error("S3 {op} {target}: no complete answer within {timeout:?}")]
    Timeout {
        op: &'static str,
        target: String,
        timeout: Duration,
    },
    #[error("S3 {op} {target}: unexpected answer: {detail}")]
    Malformed {
        op: &'static str,
        target: String,
        detail: String,
    },
    #[error("S3 {op} {target}: {detail}")]
    Invalid {
        op: &'static str,
        target: String,
        detail: String,
    },
    #[error("S3 endpoint {endpoint}: {source}")]
    Tls {
        endpoint: String,
        source: ferry_tls::TlsFileError,
    },
}

impl S3Error {
    /// S3's error code (`NoSuchKey`, `SignatureDoesNotMatch`…), for a server's refusal.
    pub fn code(&self) -> Option<&str> {
        match self {
            S3Error::Service { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status, for a server's refusal.
    pub fn status(&self) -> Option<u16> {
        match self {
            S3Error::Service { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `S3Error::Service` from an error answer: `<Code>` and `<Message>` when the body has them,
/// else the status's name.
pub(super) fn service_error(op: &'static str, target: String, status: u16, body: &[u8]) -> S3Error {
    let text = String::from_utf8_lossy(body);
    let code = xml::tag(&text, "Code").filter(|c| !c.is_empty());
    let message = xml::tag(&text, "Message").filter(|m| !m.is_empty());
    let reason = hyper::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error");
    S3Error::Service {
        op,
        target,
        status,
        code: code.unwrap_or_else(|| reason.replace(' ', "")),
        message: message.unwrap_or_else(|| "(no message)".to_string()),
    }
}
