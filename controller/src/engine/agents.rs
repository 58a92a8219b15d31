//! The fleet as people see it: `agents list` (departed agents dropped after a retention),
//! `agents forget`, an agent that drains on its own (SIGTERM), and a refused name.

use std::time::Duration;

use super::{AgentView, Engine, EngineError, Identity};
use crate::model::{AgentState, AttemptKey};
use crate::notify::Wakes;
use crate::store::{Effects, StoreError};

impl Engine {
    /// The agents, by name. Without `all`, those that left (drained or dead) and were last
    /// seen more than `retention` ago are left out.
    pub async fn agents(
        &self,
        all: bool,
        retention: Duration,
    ) -> Result<Vec<AgentView>, EngineError> {
        let records = self.store.list_agents().await?;
        let cutoff = self.clock.now_ms() - retention.as_millis() as i64;
        Ok(records
            .into_iter()
            .filter(|r| all || !r.state.is_gone() || r.seen_at >= cutoff)
            .map(|record| AgentView {
                last_heartbeat_ms: record.seen_at,
                metrics: record.metrics,
                record,
            })
            .collect())
    }

    /// Removes a departed agent from the list; a live one is refused, naming why.
    pub async fn forget(&self, name: &str) -> Result<(), EngineError> {
        self.store.forget_agent(name).await?;
        tracing::info!(agent = %name, "departed agent forgotten");
        Ok(())
    }

    /// The agent says it drains on its own (SIGTERM): shown `draining`, and given no more
    /// work, from the first heartbeat that says so.
    pub async fn draining_on_its_own(&self, who: &Identity) -> Result<(), EngineError> {
        let view = self.session(who).await?;
        if view.draining {
            return Ok(());
        }
        self.store
            .set_agent_state(&who.name, AgentState::Draining)
            .await?;
        self.notifier.publish(Wakes {
            agents: vec![who.name.clone()],
            ..Wakes::default()
        });
        tracing::info!(agent = %who.name, "agent draining on its own (SIGTERM)");
        Ok(())
    }

    /// Attempts the agent stopped by itself (its lease ran out while no controller answered):
    /// recorded `lost` with its reason before anything else of the heartbeat is looked at, so
    /// that reconciliation never mistakes them for assignments that never arrived.
    pub async fn attempts_given_up(
        &self,
        who: &Identity,
        given_up: Vec<(AttemptKey, String)>,
    ) -> Result<(), EngineError> {
        self.session(who).await?;
        let effects = self
            .store
            .attempts_given_up(&who.name, given_up, self.clock.now_ms())
            .await?;
        if !effects.jobs.is_empty() {
            tracing::warn!(agent = %who.name, lost = effects.jobs.len(), "attempts the agent stopped by itself are lost");
        }
        self.publish(effects);
        Ok(())
    }

    /// A registration refused because the name's holder is alive: said at warn here too
    /// (the agent backs off, so this is at most a line every half minute per agent), with
    /// when the name frees up.
    pub(crate) fn refused_name(
        &self,
        registered: Result<Effects, StoreError>,
    ) -> Result<Effects, EngineError> {
        match registered {
            Err(StoreError::Conflict(why)) => {
                let why = format!(
                    "{why}; the name frees up once its holder has been silent for the agent \
                     timeout ({})",
                    humantime::format_duration(self.config.agent_timeout)
                );
                tracing::warn!(reason = %why, "agent registration refused");
                Err(EngineError::Store(StoreError::Conflict(why)))
            }
            other => Ok(other?),
        }
    }
}
