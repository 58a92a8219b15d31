//! The reaper, a singleton role (`singleton.rs`): declares agents dead whose last recorded sign
//! of life (`Store::silent_agents`, written in batches by every controller) is older than the
//! agent timeout — their attempts become `lost` and are queued again — times out attempts
//! whose agents did not report their deadline, and fails tasks queued past their
//! schedule-to-start timeout (`placement.rs`). All are decided on the engine's clock.
//!
//! Silence is counted from when this controller took the role, at the earliest: a controller
//! that has just started (or taken over from a dead one) gives every agent a full agent timeout
//! to be heard of, as a restart must not be a mass death (DESIGN.md invariant 3). A stall of
//! the controller itself, or a jump of its wall clock, restarts that count.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::model::Millis;
use crate::notify::Wakes;

pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let mut reaper = Reaper::new(&engine);
    let mut tick = tokio::time::interval(reaper.period);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        reaper.round(&engine).await;
    }
}

/// The reaper's count of time between its rounds.
pub(super) struct Reaper {
    timeout: Duration,
    /// How often a round runs.
    pub(super) period: Duration,
    /// How often overdue attempts are looked for.
    expire_every: Duration,
    /// A round later than this after the previous one means the controller itself stalled.
    stall: Duration,
    /// Silence counts from here (when the role was taken, or the last stall).
    counting_since: Instant,
    /// When the previous round ran, on the monotonic and the wall clock.
    last_round: (Instant, Millis),
    last_expiry: Option<Instant>,
}

impl Reaper {
    pub(super) fn new(engine: &Engine) -> Self {
        let timeout = engine.config.agent_timeout;
        // Silence is checked often, so that a dead agent's tasks move within a small fraction
        // of the agent timeout; timeouts once a second.
        let period = (timeout / 10).clamp(Duration::from_millis(50), Duration::from_millis(500));
        let now = engine.clock.instant();
        Self {
            timeout,
            period,
            expire_every: Duration::from_secs(1).max(period),
            stall: period + timeout / 4,
            counting_since: now,
            last_round: (now, engine.clock.now_ms()),
            last_expiry: None,
        }
    }

    /// One round: silent agents declared dead and overdue attempts timed out, when due. A
    /// failed round logs and the next one tries again.
    pub(super) async fn round(&mut self, engine: &Engine) {
        let (now, wall) = (engine.clock.instant(), engine.clock.now_ms());
        let gap = now.duration_since(self.last_round.0);
        let wall_gap = Duration::from_millis((wall - self.last_round.1).max(0) as u64);
        self.last_round = (now, wall);
        if gap > self.stall || wall_gap > gap + self.stall {
            tracing::warn!(
                stalled_ms = gap.as_millis() as u64,
                wall_ms = wall_gap.as_millis() as u64,
                "the controller stalled or its clock jumped; every agent gets a full agent timeout again"
            );
            self.counting_since = now;
            return;
        }
        if now.duration_since(self.counting_since) >= self.timeout {
            if let Err(e) = reap_silent(engine).await {
                tracing::warn!(error = %e, "reaper round failed; will retry");
            }
        }
        if self
            .last_expiry
            .is_none_or(|at| now.duration_since(at) >= self.expire_every)
        {
            self.last_expiry = Some(now);
            if let Err(e) = expire(engine).await {
                tracing::warn!(error = %e, "timing out overdue attempts failed; will retry");
            }
            if let Err(e) = engine.fail_unstarted().await {
                tracing::warn!(error = %e, "failing tasks past their schedule-to-start timeout failed; will retry");
            }
        }
    }
}

async fn reap_silent(engine: &Engine) -> Result<(), crate::store::StoreError> {
    let timeout = engine.config.agent_timeout;
    let before = engine.clock.now_ms() - timeout.as_millis() as i64;
    for (name, session) in engine.store.silent_agents(before).await? {
        let effects = engine
            .store
            .agent_dead(&name, &session, engine.clock.now_ms())
            .await?;
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

pub(super) async fn expire(engine: &Engine) -> Result<(), crate::store::StoreError> {
    let grace = engine.config.timeout_grace.as_millis() as i64;
    let effects = engine
        .store
        .expire_attempts(engine.clock.now_ms(), grace)
        .await?;
    for placed in &effects.stop {
        tracing::warn!(agent = %placed.agent, attempt = %placed.attempt, "attempt timed out on the controller's clock");
    }
    engine.publish(effects);
    Ok(())
}
