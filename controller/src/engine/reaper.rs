//! The reaper loop: declares silent agents dead (their attempts become `lost` and are queued
//! again) and times out attempts whose agents did not report their deadline.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::model::now_ms;

pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    // Silence is checked often (in memory), so that a dead agent's tasks move within a small
    // fraction of the agent timeout; timeouts, which cost a store round, once a second.
    let period = (engine.config.agent_timeout / 10)
        .clamp(Duration::from_millis(50), Duration::from_millis(500));
    let expire_every = Duration::from_secs(1).max(period);
    let mut last_expiry = Instant::now() - expire_every;
    // A round later than this after the previous one means the controller itself stalled.
    let stall = period + engine.config.agent_timeout / 4;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_round = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let gap = last_round.elapsed();
        last_round = Instant::now();
        if gap > stall {
            tracing::warn!(
                stalled_ms = gap.as_millis() as u64,
                "the controller stalled; every agent gets a full agent timeout again"
            );
            engine.liveness.forgive_all();
            continue;
        }
        if let Err(e) = reap_silent(&engine).await {
            tracing::warn!(error = %e, "reaper round failed; will retry");
        }
        if last_expiry.elapsed() >= expire_every {
            last_expiry = Instant::now();
            if let Err(e) = expire(&engine).await {
                tracing::warn!(error = %e, "timing out overdue attempts failed; will retry");
            }
        }
    }
}

async fn reap_silent(engine: &Engine) -> Result<(), crate::store::StoreError> {
    for (name, session) in engine.liveness.silent(engine.config.agent_timeout) {
        if !engine.liveness.remove_session(&name, &session) {
            continue;
        }
        let effects = engine.store.agent_dead(&name, &session, now_ms()).await?;
        tracing::warn!(
            agent = %name,
            lost = effects.jobs.len(),
            timeout = %humantime::format_duration(engine.config.agent_timeout),
            "agent silent past the agent timeout; declared dead, its attempts requeued"
        );
        engine.publish(effects);
    }
    Ok(())
}

async fn expire(engine: &Engine) -> Result<(), crate::store::StoreError> {
    let grace = engine.config.timeout_grace.as_millis() as i64;
    let effects = engine.store.expire_attempts(now_ms(), grace).await?;
    for placed in &effects.stop {
        tracing::warn!(agent = %placed.agent, attempt = %placed.attempt, "attempt timed out on the controller's clock");
    }
    engine.publish(effects);
    Ok(())
}
