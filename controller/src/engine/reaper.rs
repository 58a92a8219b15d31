//! The reaper, a singleton role (`singleton.rs`): declares agents dead whose last recorded sign
//! of life (`Store::silent_agents`, written in batches by every controller) is older than the
//! agent timeout — their attempts become `lost` and are queued again — and times out attempts
//! whose agents did not report their deadline.
//!
//! Silence is counted from when this controller took the role, at the earliest: a controller
//! that has just started (or taken over from a dead one) gives every agent a full agent timeout
//! to be heard of, as a restart must not be a mass death (DESIGN.md invariant 3). A stall of
//! the controller itself, or a jump of its wall clock, restarts that count.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::model::now_ms;
use crate::notify::Wakes;

pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let timeout = engine.config.agent_timeout;
    // Silence is checked often, so that a dead agent's tasks move within a small fraction of
    // the agent timeout; timeouts once a second.
    let period = (timeout / 10).clamp(Duration::from_millis(50), Duration::from_millis(500));
    let expire_every = Duration::from_secs(1).max(period);
    let mut last_expiry = Instant::now() - expire_every;
    // A round later than this after the previous one means the controller itself stalled.
    let stall = period + timeout / 4;
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut counting_since = Instant::now();
    let mut last_round = (Instant::now(), now_ms());
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        let (gap, wall_gap) = (
            last_round.0.elapsed(),
            Duration::from_millis((now_ms() - last_round.1).max(0) as u64),
        );
        last_round = (Instant::now(), now_ms());
        if gap > stall || wall_gap > gap + stall {
            tracing::warn!(
                stalled_ms = gap.as_millis() as u64,
                wall_ms = wall_gap.as_millis() as u64,
                "the controller stalled or its clock jumped; every agent gets a full agent timeout again"
            );
            counting_since = Instant::now();
            continue;
        }
        if counting_since.elapsed() >= timeout {
            if let Err(e) = reap_silent(&engine).await {
                tracing::warn!(error = %e, "reaper round failed; will retry");
            }
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
    let timeout = engine.config.agent_timeout;
    let before = now_ms() - timeout.as_millis() as i64;
    for (name, session) in engine.store.silent_agents(before).await? {
        let effects = engine.store.agent_dead(&name, &session, now_ms()).await?;
        engine.local.liveness.remove_session(&name, &session);
        tracing::warn!(
            agent = %name,
            lost = effects.jobs.len(),
            timeout = %humantime::format_duration(timeout),
            "agent silent past the agent timeout; declared dead, its attempts requeued"
        );
        engine.publish(effects);
        // The controller serving it, if any, drops the session: the agent must register again.
        engine.notify(Wakes {
            agents: vec![name],
            ..Wakes::default()
        });
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
