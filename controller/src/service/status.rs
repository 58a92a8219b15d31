//! The one place where engine and store errors become gRPC statuses.

use tonic::Status;

use crate::engine::EngineError;
use crate::store::StoreError;

impl From<EngineError> for Status {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::InvalidJob(_) | EngineError::InvalidArgument(_) => {
                Status::invalid_argument(e.to_string())
            }
            EngineError::UnknownSession(_) => Status::not_found(e.to_string()),
            EngineError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Self {
        match &e {
            StoreError::NotFound(_) => Status::not_found(e.to_string()),
            StoreError::Fenced { .. } => Status::aborted(e.to_string()),
            StoreError::Conflict(_) => Status::already_exists(e.to_string()),
            StoreError::UnsupportedUrl(_) => Status::invalid_argument(e.to_string()),
            StoreError::Closed => Status::unavailable(e.to_string()),
            StoreError::Backend(_) => {
                tracing::error!(error = %e, "store failure");
                Status::internal(e.to_string())
            }
        }
    }
}
