//! The one place where engine and store errors become gRPC statuses.

use tonic::Status;

use crate::artifacts::ArtifactError;
use crate::engine::EngineError;
use crate::store::StoreError;

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidJob(_) | EngineError::InvalidArgument(_) => {
                Status::invalid_argument(e.to_string())
            }
            EngineError::UnknownSession(_) | EngineError::NotFound(_) => {
                Status::not_found(e.to_string())
            }
            EngineError::PermissionDenied(_) => Status::permission_denied(e.to_string()),
            EngineError::Store(e) => e.into(),
            EngineError::Artifact(e) => e.into(),
            EngineError::TooManyWatches(_) => Status::resource_exhausted(e.to_string()),
        }
    }
}

impl From<ArtifactError> for Status {
    fn from(e: ArtifactError) -> Self {
        use ArtifactError as E;
        let message = e.to_string();
        match e {
            E::InvalidName { .. }
            | E::InvalidSha256 { .. }
            | E::InvalidId { .. }
            | E::PastSize { .. }
            | E::Duplicate { .. } => Status::invalid_argument(message),
            E::Crc { .. } => Status::data_loss(message),
            E::Offset { .. }
            | E::NotStaged { .. }
            | E::Incomplete { .. }
            | E::Mismatch { .. }
            | E::Disagrees { .. } => Status::failed_precondition(message),
            E::TooLarge { .. } => Status::resource_exhausted(message),
            // Final for the attempt: the agent fails it with this message (logged, with the
            // attempt, where the upload is received).
            E::NoSpace { .. } => Status::resource_exhausted(message),
            E::Closed { .. } => Status::aborted(message),
            E::NotFound(_) => Status::not_found(message),
            E::PastEnd { .. } => Status::out_of_range(message),
            // The object store refused (a bad part, an upload gone): retrying the same will
            // not help. Unreachable, timed out or failing (5xx): worth retrying.
            E::Object(ref o) if o.status().is_some_and(|s| (400..500).contains(&s)) => {
                Status::failed_precondition(message)
            }
            E::Object(_) => {
                tracing::warn!(error = %message, "object store failure");
                Status::unavailable(message)
            }
            E::Io { .. } => {
                tracing::error!(error = %message, "artifact store failure");
                Status::internal(message)
            }
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound(_) => Status::not_found(e.to_string()),
            StoreError::Fenced { .. } => Status::aborted(e.to_string()),
            StoreError::Conflict(_) => Status::already_exists(e.to_string()),
            StoreError::Precondition(_) => Status::failed_precondition(e.to_string()),
            StoreError::Invalid(_) => Status::invalid_argument(e.to_string()),
            StoreError::UnsupportedUrl(_) => Status::invalid_argument(e.to_string()),
            StoreError::Closed => Status::unavailable(e.to_string()),
            // The database is unreachable or overloaded for now: the caller may try again,
            // here or on another controller.
            StoreError::Backend {
                retryable: true, ..
            } => {
                tracing::warn!(error = %e, "store unavailable");
                Status::unavailable(e.to_string())
            }
            StoreError::Backend { .. } | StoreError::SchemaTooNew { .. } => {
                tracing::error!(error = %e, "store failure");
                Status::internal(e.to_string())
            }
        }
    }
}
