//! The retention task: a round of retention (`retention.rs`) every minute, and once at start,
//! on whichever artifact store is configured, until shutdown.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::retention::Round;
use super::ArtifactStore;
use crate::model::now_ms;
use crate::store::Store;

const TICK: Duration = Duration::from_secs(60);

/// Runs rounds until `shutdown`; a failed round is logged and the next one tried.
pub async fn run(
    store: Arc<dyn Store>,
    artifacts: Arc<dyn ArtifactStore>,
    retention: Duration,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let result = artifacts.expire(store.as_ref(), retention, now_ms()).await;
        match result {
            Ok(done) if done != Round::default() => tracing::info!(
                jobs = done.jobs,
                rows = done.rows,
                attempts = done.attempts,
                "retention removed artifacts"
            ),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "retention round failed"),
        }
    }
}
