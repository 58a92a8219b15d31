//! Exit codes, and the error type of the CLI with the exit code each error maps to.
//!
//! 0 success (with `--wait`/`watch`: the job succeeded), 1 the job failed or was cancelled,
//! 2 bad input, 3 the controller could not be reached or refused the call.

use std::{io, process::ExitCode};

use tonic::{Code, Status};

use crate::jobfile::{InvalidJobFile, JobFileError};
pub use crate::reason::io_reason;
use crate::reason::lowercase_first;

pub const SUCCESS: u8 = 0;
pub const JOB_FAILED: u8 = 1;
pub const BAD_INPUT: u8 = 2;
pub const CONTROLLER: u8 = 3;
/// 128 + SIGINT, as a shell reports a command stopped by Ctrl-C.
pub const INTERRUPTED: u8 = 130;

/// How a command that ran to its end came out. A failed job is an outcome, not an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    JobFailed,
}

impl Outcome {
    pub fn code(self) -> u8 {
        match self {
            Outcome::Success => SUCCESS,
            Outcome::JobFailed => JOB_FAILED,
        }
    }
}

impl From<Outcome> for ExitCode {
    fn from(outcome: Outcome) -> Self {
        ExitCode::from(outcome.code())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A bad flag, parameter or controller URL, or a job file that cannot be read.
    #[error("{0}")]
    BadInput(String),
    #[error(transparent)]
    InvalidJobFile(#[from] InvalidJobFile),
    /// The controller answered INVALID_ARGUMENT.
    #[error("controller at {url} rejected {call}: {message}")]
    Rejected {
        url: String,
        call: &'static str,
        message: String,
    },
    #[error("cannot reach controller at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    /// The controller's certificate is not trusted: no reconnecting mends that.
    #[error("cannot reach controller at {url}: {reason} (for a private CA, give its certificate with --tls-ca)")]
    Untrusted { url: String, reason: String },
    /// None of several controllers could be reached: each one's URL and why, in the order tried.
    #[error("cannot reach any controller: {}", tried_list(.tried))]
    NoneReachable { tried: Vec<(String, String)> },
    /// Any other gRPC error.
    #[error("controller at {url} refused {call}: {}: {message}", code_words(.code))]
    Refused {
        url: String,
        call: &'static str,
        code: Code,
        message: String,
    },
    /// Writing to standard output or standard error failed.
    #[error("writing output: {0}")]
    Output(io::Error),
    /// The controller answered something that breaks the protocol (a chunk at the wrong
    /// offset, an unsafe output name, more bytes than announced).
    #[error("{0}")]
    Protocol(String),
    /// What was received is not what was published (checksum or size mismatch), or it could
    /// not be saved here.
    #[error("{0}")]
    Failed(String),
    /// Interrupted by the user (Ctrl-C); whatever was partial has been removed.
    #[error("interrupted")]
    Interrupted,
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::BadInput(_) | CliError::InvalidJobFile(_) | CliError::Rejected { .. } => {
                BAD_INPUT
            }
            CliError::Unreachable { .. }
            | CliError::Untrusted { .. }
            | CliError::NoneReachable { .. }
            | CliError::Refused { .. }
            | CliError::Protocol(_) => CONTROLLER,
            CliError::Output(_) | CliError::Failed(_) => JOB_FAILED,
            CliError::Interrupted => INTERRUPTED,
        }
    }

    /// A failed gRPC call to the controller at `url`; `call` names it ("submit job").
    pub fn from_status(url: &str, call: &'static str, status: &Status) -> CliError {
        let message = if status.message().is_empty() {
            "no details given".to_owned()
        } else {
            status.message().to_owned()
        };
        match status.code() {
            Code::InvalidArgument => CliError::Rejected {
                url: url.to_owned(),
                call,
                message,
            },
            Code::Unavailable if ferry_tls::is_certificate_error(status) => CliError::Untrusted {
                url: url.to_owned(),
                reason: root_cause(status).unwrap_or(message),
            },
            // The controller answered, but its store did not (or it is shutting down).
            Code::Unavailable if message.starts_with("store ") => CliError::Refused {
                url: url.to_owned(),
                call,
                code: Code::Unavailable,
                message,
            },
            // What a TLS client reads from a plaintext port: an HTTP/2 frame where a TLS record
            // should be.
            Code::Unavailable
                if url.starts_with("https://")
                    && root_cause(status).is_some_and(|c| not_tls(&c)) =>
            {
                CliError::Unreachable {
                    url: url.to_owned(),
                    reason: NOT_TLS.to_owned(),
                }
            }
            Code::Unavailable => CliError::Unreachable {
                url: url.to_owned(),
                reason: root_cause(status).unwrap_or(message),
            },
            Code::Unauthenticated => CliError::Refused {
                url: url.to_owned(),
                call,
                code: Code::Unauthenticated,
                message: format!(
                    "{message}; give the CLI the controller's client token with --token-file FILE \
                     or FERRY_TOKEN_FILE"
                ),
            },
            // What a plaintext call to a TLS port gets back: a TLS alert read as HTTP/2, or the
            // connection dropped by the server's failed handshake.
            Code::Internal | Code::Unknown
                if url.starts_with("http://")
                    && (message.contains("h2 protocol error") || message == "transport error") =>
            {
                let cause = root_cause(status).unwrap_or(message);
                CliError::Unreachable {
                    url: url.to_owned(),
                    reason: format!(
                        "no plain HTTP/2 answer ({cause}): the controller speaks TLS on this \
                         port, use an https:// URL"
                    ),
                }
            }
            // What a TLS 1.3 client without an acceptable certificate gets back: the handshake
            // seemed done, then the server closed the connection.
            Code::Cancelled | Code::Unknown
                if url.starts_with("https://")
                    && (message == "operation was canceled" || message == "transport error") =>
            {
                let cause = root_cause(status).unwrap_or(message);
                CliError::Unreachable {
                    url: url.to_owned(),
                    reason: format!(
                        "the controller closed the connection ({cause}); if it requires client \
                         certificates, give --tls-cert and --tls-key of one its CA signed"
                    ),
                }
            }
            code => CliError::Refused {
                url: url.to_owned(),
                call,
                code,
                message,
            },
        }
    }

    /// Failing to connect to the controller at `url`.
    pub fn unreachable(url: &str, err: &(dyn std::error::Error + 'static)) -> CliError {
        let url = url.to_owned();
        let reason = root_cause(err).unwrap_or_else(|| err.to_string());
        if ferry_tls::is_certificate_error(err) {
            CliError::Untrusted { url, reason }
        } else if url.starts_with("https://") && not_tls(&reason) {
            CliError::Unreachable {
                url,
                reason: NOT_TLS.to_owned(),
            }
        } else {
            CliError::Unreachable { url, reason }
        }
    }

    /// The error for controllers none of which could be reached (`failures`, one each, in
    /// the order tried): one controller's own error when there was only one.
    pub fn none_reachable(mut failures: Vec<CliError>) -> CliError {
        if failures.len() == 1 {
            return failures.remove(0);
        }
        let tried = failures
            .into_iter()
            .map(|failure| match failure {
                CliError::Unreachable { url, reason } => (url, reason),
                CliError::Untrusted { url, reason } => (
                    url,
                    format!("{reason}; for a private CA, give its certificate with --tls-ca"),
                ),
                other => (String::new(), other.to_string()),
            })
            .collect();
        CliError::NoneReachable { tried }
    }

    /// Whether a watch should reconnect and try again after this error.
    pub fn is_retryable(&self) -> bool {
        match self {
            CliError::Unreachable { .. } | CliError::NoneReachable { .. } => true,
            // What a controller restart or a dropped connection looks like mid-stream.
            CliError::Refused { code, .. } => matches!(
                code,
                Code::Unknown
                    | Code::Unavailable
                    | Code::Internal
                    | Code::Cancelled
                    | Code::DeadlineExceeded
                    | Code::Aborted
            ),
            _ => false,
        }
    }
}

/// The deepest cause in an error chain, as a short lowercase reason ("connection refused").
pub(crate) fn root_cause(err: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut deepest = None;
    let mut next = err.source();
    while let Some(cause) = next {
        if let Some(io) = cause.downcast_ref::<io::Error>() {
            return Some(io_reason(io));
        }
        deepest = Some(cause);
        next = cause.source();
    }
    deepest.map(|cause| lowercase_first(&cause.to_string()))
}

/// What an `https://` client is told when the port does not speak TLS.
const NOT_TLS: &str = "the controller does not speak TLS on this port (it answered the TLS \
                       handshake with plain HTTP/2, or reset the connection): use an http:// \
                       URL, or start the controller with --tls-cert and --tls-key";

/// Whether a TLS client's failure reads as a plaintext server: rustls's `InvalidContentType`
/// (an HTTP/2 frame where a TLS record should be), or the connection reset during the
/// handshake (the controller drops what is not an HTTP/2 preface).
fn not_tls(reason: &str) -> bool {
    reason.contains("InvalidContentType") || reason.contains("connection reset")
}

/// `http://a:7070 (connection refused), http://b:7070 (no connection within 10s)`.
fn tried_list(tried: &[(String, String)]) -> String {
    tried
        .iter()
        .map(|(url, reason)| format!("{url} ({reason})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn code_words(code: &Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown error",
        Code::InvalidArgument => "invalid argument",
        Code::DeadlineExceeded => "deadline exceeded",
        Code::NotFound => "not found",
        Code::AlreadyExists => "already exists",
        Code::PermissionDenied => "permission denied",
        Code::ResourceExhausted => "resource exhausted",
        Code::FailedPrecondition => "failed precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out of range",
        Code::Unimplemented => "not implemented",
        Code::Internal => "internal error",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// Prints an error as `error: …` on standard error and gives its exit code.
pub fn report(err: &anyhow::Error) -> ExitCode {
    match err.downcast_ref::<CliError>() {
        Some(CliError::Output(io)) if io.kind() == io::ErrorKind::BrokenPipe => {
            // The reader went away (`ferry logs … | head`): nothing left to say.
            ExitCode::SUCCESS
        }
        Some(cli) => {
            eprintln!("error: {cli}");
            ExitCode::from(cli.exit_code())
        }
        None => {
            eprintln!("error: {err:#}");
            ExitCode::from(JOB_FAILED)
        }
    }
}

/// Prints a clap error (or the help or version it was asked for) and gives its exit code:
/// 2 for usage errors, 0 for `--help` and `--version`.
pub fn report_usage(err: &clap::Error) -> ExitCode {
    let _ = err.print();
    if err.use_stderr() {
        ExitCode::from(BAD_INPUT)
    } else {
        ExitCode::SUCCESS
    }
}

impl From<JobFileError> for CliError {
    fn from(err: JobFileError) -> Self {
        match err {
            JobFileError::Refused(message) => CliError::BadInput(message),
            JobFileError::Invalid(invalid) => CliError::InvalidJobFile(invalid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_map_to_exit_codes() {
        assert_eq!(Outcome::Success.code(), 0);
        assert_eq!(Outcome::JobFailed.code(), 1);
    }

    #[test]
    fn errors_map_to_exit_codes() {
        let url = "http://127.0.0.1:7070";
        let bad = CliError::BadInput("bad --param".into());
        assert_eq!(bad.exit_code(), 2);
        let invalid = CliError::InvalidJobFile(InvalidJobFile {
            file: "job.toml".into(),
            problems: vec!["job.toml:1:1: missing \"name\"".into()],
        });
        assert_eq!(invalid.exit_code(), 2);
        let rejected =
            CliError::from_status(url, "submit job", &Status::invalid_argument("no tasks"));
        assert_eq!(rejected.exit_code(), 2);
        assert_eq!(
            rejected.to_string(),
            "controller at http://127.0.0.1:7070 rejected submit job: no tasks"
        );
        let missing = CliError::from_status(url, "get job", &Status::not_found("no job \"x\""));
        assert_eq!(missing.exit_code(), 3);
        assert_eq!(
            missing.to_string(),
            "controller at http://127.0.0.1:7070 refused get job: not found: no job \"x\""
        );
        let down = CliError::from_status(url, "get job", &Status::unavailable("connect error"));
        assert_eq!(down.exit_code(), 3);
        assert!(down.is_retryable());
        assert!(!missing.is_retryable());
    }

    #[test]
    fn unreachable_names_the_url_and_the_cause() {
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Transport(#[source] io::Error);
        let err = Transport(io::Error::from(io::ErrorKind::ConnectionRefused));
        let err = CliError::unreachable("http://127.0.0.1:7070", &err);
        assert_eq!(
            err.to_string(),
            "cannot reach controller at http://127.0.0.1:7070: connection refused"
        );
        assert_eq!(err.exit_code(), 3);
    }

    #[test]
    fn none_reachable_names_every_controller_and_why() {
        let down = |url: &str, reason: &str| CliError::Unreachable {
            url: url.into(),
            reason: reason.into(),
        };
        let one = CliError::none_reachable(vec![down("http://a:1", "connection refused")]);
        assert_eq!(
            one.to_string(),
            "cannot reach controller at http://a:1: connection refused"
        );
        let err = CliError::none_reachable(vec![
            down("http://a:1", "connection refused"),
            CliError::Untrusted {
                url: "http://b:1".into(),
                reason: "invalid peer certificate: UnknownIssuer".into(),
            },
        ]);
        assert_eq!(
            err.to_string(),
            "cannot reach any controller: http://a:1 (connection refused), http://b:1 (invalid \
             peer certificate: UnknownIssuer; for a private CA, give its certificate with \
             --tls-ca)"
        );
        assert_eq!(err.exit_code(), 3);
        assert!(err.is_retryable());
    }
}
