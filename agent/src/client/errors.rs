//! How a failed RPC is classed: what the caller does about it (`ClientError`), and what a bulk
//! transfer does (`TransferError`).

use tonic::{Code, Status};

/// What a caller does about a failed RPC.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The controller no longer knows this session: kill everything, register again.
    #[error("session no longer known to the controller: {0}")]
    SessionLost(String),
    /// The attempt is no longer current: stop it and report nothing more.
    #[error("attempt fenced: {0}")]
    Fenced(String),
    /// Worth retrying after a backoff (unreachable, timeout, overload).
    #[error("controller unavailable: {0}")]
    Transient(String),
    /// Refused for good; retrying will not help.
    #[error("controller refused the call: {0}")]
    Rejected(String),
    /// `FAILED_PRECONDITION`: what the call relies on does not hold (for `Complete`, an output
    /// the controller could not verify). Carries the controller's own message.
    #[error("{0}")]
    Precondition(String),
}

/// The status for a log line, with the deepest cause a transport error carries (a refused
/// TLS handshake says only "transport error" without it).
fn status_text(status: &Status) -> String {
    let mut text = if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    };
    let mut deepest = None;
    let mut next = std::error::Error::source(status);
    while let Some(cause) = next {
        deepest = Some(cause);
        next = cause.source();
    }
    if let Some(cause) = deepest.map(ToString::to_string) {
        if !text.contains(&cause) {
            text = format!("{text} ({cause})");
        }
    }
    text
}

impl ClientError {
    pub(super) fn from_status(status: Status) -> Self {
        let text = status_text(&status);
        match status.code() {
            Code::FailedPrecondition => ClientError::Precondition(if status.message().is_empty() {
                text
            } else {
                status.message().to_owned()
            }),
            Code::NotFound => ClientError::SessionLost(text),
            Code::Aborted => ClientError::Fenced(text),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal => ClientError::Transient(text),
            _ => ClientError::Rejected(text),
        }
    }
}

/// A refusal of `Register` that retrying alone will not fix, with what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// `ALREADY_EXISTS`: another live agent holds this name (the controller's message says
    /// which, and how to name this one).
    #[error("{0}")]
    NameTaken(String),
    /// `UNAUTHENTICATED`: no agent token, or the wrong one.
    #[error("{0}: give this agent the controller's agent token with --token-file FILE or FERRY_TOKEN_FILE")]
    Unauthenticated(String),
}

impl ClientError {
    /// The refusal this error is, if any (`Rejected` keeps the code first, as `status_text`
    /// writes it).
    pub fn refusal(&self) -> Option<Refusal> {
        let ClientError::Rejected(text) = self else {
            return None;
        };
        if let Some(message) = text.strip_prefix("AlreadyExists: ") {
            return Some(Refusal::NameTaken(message.to_owned()));
        }
        text.strip_prefix("Unauthenticated: ")
            .map(|message| Refusal::Unauthenticated(message.to_owned()))
    }
}

/// What a transfer (`UploadOutput`, `UploadStatus`, `FetchInput`) does about a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// `ABORTED`: the attempt is no longer current; stop it and report nothing.
    #[error("attempt fenced: {0}")]
    Fenced(String),
    /// `DATA_LOSS`: a chunk arrived damaged; ask where to resume and send it again.
    #[error("chunk refused: {0}")]
    Damaged(String),
    /// Worth resuming after a backoff: unreachable, reset, deadline, a stalled stream.
    #[error("transfer interrupted: {0}")]
    Transient(String),
    /// Refused for good (size limit, bad name, unverifiable file): the attempt fails with the
    /// controller's message.
    #[error("{0}")]
    Refused(String),
    /// `NOT_FOUND`: what the transfer names does not exist (an input whose output is gone):
    /// no retry of the attempt can fix it.
    #[error("{0}")]
    Missing(String),
}

impl TransferError {
    pub fn from_status(status: &Status) -> Self {
        let text = status_text(status);
        match status.code() {
            Code::Aborted => TransferError::Fenced(text),
            Code::DataLoss => TransferError::Damaged(text),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal => TransferError::Transient(text),
            Code::NotFound if !status.message().is_empty() => {
                TransferError::Missing(status.message().to_owned())
            }
            Code::NotFound => TransferError::Missing(text),
            // The controller's message is for a person; the code adds nothing for them.
            _ if !status.message().is_empty() => {
                TransferError::Refused(status.message().to_owned())
            }
            _ => TransferError::Refused(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_told_from_the_code() {
        let c = |code, msg: &str| ClientError::from_status(Status::new(code, msg)).refusal();
        assert_eq!(
            c(Code::AlreadyExists, "agent name \"a\" is taken"),
            Some(Refusal::NameTaken("agent name \"a\" is taken".into()))
        );
        let token = c(
            Code::Unauthenticated,
            "the agent token presented is not valid",
        )
        .unwrap();
        assert_eq!(
            token.to_string(),
            "the agent token presented is not valid: give this agent the controller's agent \
             token with --token-file FILE or FERRY_TOKEN_FILE"
        );
        assert_eq!(c(Code::InvalidArgument, "bad"), None);
        assert_eq!(c(Code::Unavailable, "down"), None);
    }

    #[test]
    fn status_classes() {
        let c = |code| ClientError::from_status(Status::new(code, "x"));
        assert!(matches!(c(Code::NotFound), ClientError::SessionLost(_)));
        // An output the controller could not verify: the controller's message, as is.
        assert_eq!(
            c(Code::FailedPrecondition).to_string(),
            "x",
            "carries the message alone"
        );
        assert!(matches!(c(Code::Aborted), ClientError::Fenced(_)));
        assert!(matches!(c(Code::Unavailable), ClientError::Transient(_)));
        assert!(matches!(
            c(Code::DeadlineExceeded),
            ClientError::Transient(_)
        ));
        assert!(matches!(c(Code::InvalidArgument), ClientError::Rejected(_)));
    }

    #[test]
    fn transfer_classes() {
        let t = |code, msg: &str| TransferError::from_status(&Status::new(code, msg));
        assert!(matches!(t(Code::Aborted, "x"), TransferError::Fenced(_)));
        assert!(matches!(t(Code::DataLoss, "x"), TransferError::Damaged(_)));
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unknown,
            Code::Cancelled,
        ] {
            assert!(
                matches!(t(code, "x"), TransferError::Transient(_)),
                "{code:?}"
            );
        }
        for code in [
            Code::ResourceExhausted,
            Code::InvalidArgument,
            Code::FailedPrecondition,
        ] {
            assert_eq!(
                t(code, "output big.bin is over the limit"),
                TransferError::Refused("output big.bin is over the limit".into())
            );
        }
        assert_eq!(
            t(Code::NotFound, "output a.csv of task extract of job j"),
            TransferError::Missing("output a.csv of task extract of job j".into())
        );
        assert_eq!(
            t(Code::ResourceExhausted, ""),
            TransferError::Refused("ResourceExhausted".into())
        );
    }
}
