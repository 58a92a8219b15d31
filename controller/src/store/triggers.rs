//! Webhook triggers in the store (decision 0017): a name, the pipeline it starts and the
//! secret its callers prove they hold. `TriggerStore` is what every backend does for them,
//! each method one transaction.

use async_trait::async_trait;

use super::StoreError;
use crate::model::Millis;

/// A trigger as the store keeps it. The secret is kept as given (decision 0017: HMAC
/// verification needs it); it leaves the controller only in `CreateTrigger`'s answer.
#[derive(Clone, PartialEq, Eq)]
pub struct TriggerRecord {
    pub name: String,
    pub pipeline: String,
    pub secret: String,
    pub created_at: Millis,
}

impl std::fmt::Debug for TriggerRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TriggerRecord")
            .field("name", &self.name)
            .field("pipeline", &self.pipeline)
            .field("secret", &"<redacted>")
            .field("created_at", &self.created_at)
            .finish()
    }
}

#[async_trait]
pub trait TriggerStore: Send + Sync {
    /// Records a trigger of a live pipeline: `NotFound` for an unknown or deleted pipeline,
    /// `Conflict` when a trigger of that name exists.
    async fn create_trigger(&self, t: TriggerRecord) -> Result<(), StoreError>;
    /// Every trigger, by name.
    async fn list_triggers(&self) -> Result<Vec<TriggerRecord>, StoreError>;
    /// One trigger, `None` when there is none of that name.
    async fn get_trigger(&self, name: &str) -> Result<Option<TriggerRecord>, StoreError>;
    /// Forgets a trigger (`NotFound` when there is none); the runs it started stay.
    async fn delete_trigger(&self, name: &str) -> Result<(), StoreError>;
}

/// The refusal of a name no trigger has.
pub(crate) fn not_found(name: &str) -> StoreError {
    StoreError::NotFound(format!("trigger {name:?}"))
}

/// The refusal of a name a trigger has already.
pub(crate) fn exists(name: &str) -> StoreError {
    StoreError::Conflict(format!(
        "trigger {name:?} exists: `ferry triggers delete {name}` first to make it anew (with a new secret)"
    ))
}
