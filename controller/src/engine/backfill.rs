//! `ferry pipelines backfill` (decision 0018): the runs of a schedule's past ticks in a range,
//! each started as the scheduler would (`scheduler::start_tick`), so that a tick the schedule
//! or an earlier backfill already ran answers its job and starts nothing.

use ferry_jobspec::check::shown;
use ferry_jobspec::schedule::{rfc3339, Schedule};

use super::pipelines::check_name;
use super::{Engine, EngineError};
use crate::model::Millis;
use crate::store::pipelines::RunStarted;

/// The most ticks one backfill may name.
pub const BACKFILL_TICKS_MAX: usize = 100_000;

impl Engine {
    /// Starts the runs of the ticks in [`from`, `to`] of the pipeline's schedule, oldest
    /// first, at most `max_new` new ones (0: all); true when ticks were left for another call.
    #[tracing::instrument(skip(self))]
    pub async fn backfill(
        &self,
        name: &str,
        from: Millis,
        to: Millis,
        max_new: u32,
    ) -> Result<(Vec<(Millis, RunStarted)>, bool), EngineError> {
        check_name(name)?;
        let now = self.clock.now_ms();
        if from > to {
            return Err(EngineError::InvalidArgument(format!(
                "backfill from {} is after to {}: give --from before --to",
                rfc3339(from),
                rfc3339(to)
            )));
        }
        if to > now {
            return Err(EngineError::InvalidArgument(format!(
                "backfill to {} is in the future: a backfill runs past ticks; the schedule runs the others",
                rfc3339(to)
            )));
        }
        let (latest, _) = self.store.latest_pipeline(name).await?;
        let Some(fields) = latest.template.schedule else {
            return Err(EngineError::InvalidArgument(format!(
                "pipeline {} has no [schedule]: a backfill runs a schedule's ticks; use `ferry pipelines run` for one run",
                shown(name)
            )));
        };
        let schedule = Schedule::parse(&fields.spec()).map_err(EngineError::InvalidJob)?;
        let mut ticks = Vec::new();
        let mut at = from.saturating_sub(1);
        while let Some(tick) = schedule.next_after(at).filter(|t| *t <= to) {
            if ticks.len() == BACKFILL_TICKS_MAX {
                return Err(EngineError::InvalidArgument(format!(
                    "backfill names more than {BACKFILL_TICKS_MAX} ticks: split the range"
                )));
            }
            ticks.push(tick);
            at = tick;
        }
        let mut out = Vec::new();
        let mut new = 0;
        for (i, tick) in ticks.iter().enumerate() {
            if max_new > 0 && new == max_new {
                return Ok((out, i < ticks.len()));
            }
            let started = super::scheduler::start_tick(self, name, &schedule, *tick, false).await?;
            if !started.existing {
                new += 1;
            }
            out.push((*tick, started));
        }
        Ok((out, false))
    }
}
