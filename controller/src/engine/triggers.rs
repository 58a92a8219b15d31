//! Webhook triggers (decision 0017): create (a fresh secret, answered once), list (with each
//! secret's fingerprint, never the secret), delete, and a delivery's run: the trigger's
//! pipeline started with the caller's parameters as an automatic run, its idempotency key
//! kept per trigger. Who may deliver is the HTTP side's check (`http::hooks`).

use std::collections::BTreeMap;

use ferry_jobspec::check::shown;
use ferry_jobspec::pipeline as rules;
use sha2::{Digest, Sha256};

use super::pipelines::{check_name, RunOrigin};
use super::{Engine, EngineError};
use crate::model::Millis;
use crate::store::pipelines::RunStarted;
use crate::store::triggers::TriggerRecord;
use crate::store::StoreError;

/// What `triggers list` shows of a trigger: no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TriggerInfo {
    pub name: String,
    pub pipeline: String,
    pub created_at: Millis,
    /// The first 12 hex digits of the secret's SHA-256: which secret, without it.
    pub fingerprint: String,
}

impl From<&TriggerRecord> for TriggerInfo {
    fn from(t: &TriggerRecord) -> Self {
        Self {
            name: t.name.clone(),
            pipeline: t.pipeline.clone(),
            created_at: t.created_at,
            fingerprint: fingerprint(&t.secret),
        }
    }
}

/// The prefix of every secret: a leaked one is recognisable (secret scanners, logs).
pub const SECRET_PREFIX: &str = "fwh_";

/// The first 12 hex digits of the secret's SHA-256.
pub fn fingerprint(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .take(6)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// 256 random bits from the operating system's generator (through rustls' ring provider,
/// already in the controller), hex, after `SECRET_PREFIX`.
fn new_secret() -> Result<String, EngineError> {
    let mut bytes = [0u8; 32];
    tokio_rustls::rustls::crypto::ring::default_provider()
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| {
            EngineError::Store(StoreError::backend(
                "the system's random number generator failed: no secret made",
            ))
        })?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{SECRET_PREFIX}{hex}"))
}

/// The name's problem, as a refusal: a trigger's name is a URL path segment.
pub fn check_trigger_name(name: &str) -> Result<(), EngineError> {
    match rules::pipeline_name(name) {
        Some(_) => Err(EngineError::InvalidArgument(format!(
            "trigger name {} must be 1 to {} bytes of {} (it is the URL path /hooks/NAME)",
            shown(name),
            ferry_jobspec::limits::PIPELINE_NAME_MAX,
            rules::PIPELINE_NAME_CHARS
        ))),
        None => Ok(()),
    }
}

/// The run key of a delivery's `Idempotency-Key`: one namespace per trigger, apart from the
/// keys of `ferry pipelines run --idempotency-key`.
pub fn run_key(trigger: &str, key: &str) -> String {
    format!("hook:{trigger}:{key}")
}

impl Engine {
    /// Makes a trigger of a live pipeline; answers it with its secret, which nothing shows
    /// again.
    #[tracing::instrument(skip(self))]
    pub async fn create_trigger(
        &self,
        name: &str,
        pipeline: &str,
    ) -> Result<(TriggerInfo, String), EngineError> {
        check_trigger_name(name)?;
        check_name(pipeline)?;
        let record = TriggerRecord {
            name: name.to_string(),
            pipeline: pipeline.to_string(),
            secret: new_secret()?,
            created_at: self.clock.now_ms(),
        };
        let info = TriggerInfo::from(&record);
        let secret = record.secret.clone();
        self.store.create_trigger(record).await?;
        tracing::info!(fingerprint = %info.fingerprint, "trigger created");
        Ok((info, secret))
    }

    pub async fn triggers(&self) -> Result<Vec<TriggerInfo>, EngineError> {
        let all = self.store.list_triggers().await?;
        Ok(all.iter().map(TriggerInfo::from).collect())
    }

    #[tracing::instrument(skip(self))]
    pub async fn delete_trigger(&self, name: &str) -> Result<(), EngineError> {
        check_trigger_name(name)?;
        self.store.delete_trigger(name).await?;
        tracing::info!("trigger deleted");
        Ok(())
    }

    /// The trigger a delivery names, secret included (for the caller's check), if any.
    pub async fn hook_trigger(&self, name: &str) -> Result<Option<TriggerRecord>, EngineError> {
        if rules::pipeline_name(name).is_some() {
            return Ok(None);
        }
        Ok(self.store.get_trigger(name).await?)
    }

    /// Starts the run an authenticated delivery of `trigger` asks for: automatic (a paused
    /// pipeline refuses it), `params` checked against the pipeline's declarations, `key`
    /// answering the first delivery's job.
    #[tracing::instrument(skip(self, trigger, params, key), fields(trigger = %trigger.name, pipeline = %trigger.pipeline))]
    pub async fn fire_trigger(
        &self,
        trigger: &TriggerRecord,
        params: BTreeMap<String, String>,
        key: Option<&str>,
    ) -> Result<RunStarted, EngineError> {
        let origin = RunOrigin {
            scheduled_time: None,
            key: key.map(|k| run_key(&trigger.name, k)),
            automatic: true,
        };
        self.start_run(&trigger.pipeline, params, origin).await
    }
}
