//! Agents' leases without a write per heartbeat: the sessions this controller heard from are
//! written to the store in one batch per `period` (`Store::touch_agents`), so thousands of
//! agents cost one statement a period, not thousands a second. Now and then the cache of
//! sessions is also brought in line with the store (`Liveness::reconcile`), in case a wake-up
//! about a drained, replaced or dead agent was lost.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Engine;

/// How often the batch is written: a small part of the agent timeout, at most a second, so a
/// sign of life reaches the store long before the reaper could miss it.
pub fn period(agent_timeout: Duration) -> Duration {
    (agent_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(1))
}

pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let period = period(engine.config.agent_timeout);
    let reconcile_every =
        (engine.config.agent_timeout / 2).clamp(Duration::from_secs(1), Duration::from_secs(5));
    let mut last_reconcile = engine.clock.instant();
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => break,
        }
        if let Err(e) = write_batch(&engine).await {
            if !failing {
                tracing::warn!(error = %e, "writing agents' signs of life failed; will retry");
            }
            failing = true;
            continue;
        }
        failing = false;
        let now = engine.clock.instant();
        if now.duration_since(last_reconcile) >= reconcile_every {
            last_reconcile = now;
            match engine.store.list_agents().await {
                Ok(records) => engine.local.liveness.reconcile(&records),
                Err(e) => tracing::debug!(error = %e, "reading agents failed; will retry"),
            }
        }
    }
    // What was heard last still counts: a controller stopping for an upgrade must not shorten
    // its agents' leases.
    let _ = write_batch(&engine).await;
}

/// Writes the signs of life seen since the last batch, stamped with the engine's clock.
pub(super) async fn write_batch(engine: &Engine) -> Result<(), crate::store::StoreError> {
    let batch = engine.local.liveness.take_seen();
    if batch.is_empty() {
        return Ok(());
    }
    match engine
        .store
        .touch_agents(batch.clone(), engine.clock.now_ms())
        .await
    {
        Ok(()) => Ok(()),
        Err(e) => {
            engine.local.liveness.unwritten(batch);
            Err(e)
        }
    }
}
