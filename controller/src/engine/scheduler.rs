//! The scheduler, a singleton role (`singleton.rs`, role "scheduler"): starts each scheduled
//! pipeline's runs when their ticks come (`ferry_jobspec::schedule` says when; `plan.rs` which
//! ticks are due after a gap), on the engine's clock, each with `scheduled_time`,
//! `interval_start` and `interval_end`, under the schedule's overlap policy. It holds no state
//! the store does not: a tick is started with `Engine::start_run` and its scheduled time, and
//! the store's unique (pipeline, scheduled time) makes one run of it however often, and by
//! however many controllers, it is fired (decisions 0016, 0018). Its cursor (the last tick
//! considered) starts after a restart at the newest scheduled run the store recorded, or the
//! version's apply; a paused pipeline's ticks are passed over, not caught up on resume.

pub mod plan;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use ferry_jobspec::schedule::{rfc3339, Overlap, Schedule};
use tokio_util::sync::CancellationToken;

use super::pipelines::RunOrigin;
use super::{Engine, EngineError};
use crate::model::Millis;
use crate::store::pipelines::{RunStarted, ScheduleFields};

/// How often the scheduler looks again at the pipelines without a tick due (applies, pauses,
/// runs finishing for a buffered tick).
const RESCAN_MS: Millis = 1_000;
/// Newest runs read for the overlap policy and the cursor after a restart.
const RUNS_READ: u32 = 50;

/// What one pipeline's schedule is doing.
struct Tracked {
    schedule: Schedule,
    /// The last tick considered (started, skipped or buffered).
    cursor: Millis,
    /// Ticks waiting for the running one to finish (buffer_one, buffer_all).
    buffered: VecDeque<Millis>,
}

#[derive(Default)]
struct Scheduler {
    /// By name: the version last read and its schedule, if it has one.
    pipelines: HashMap<String, (u32, Option<Tracked>)>,
}

pub async fn run(engine: Arc<Engine>, shutdown: CancellationToken) {
    let mut scheduler = Scheduler::default();
    loop {
        let wake = match scheduler.round(&engine).await {
            Ok(wake) => wake,
            Err(e) => {
                tracing::warn!(error = %e, "scheduler round failed; trying again");
                None
            }
        };
        let now = engine.clock.now_ms();
        let at = wake.map_or(now + RESCAN_MS, |w| w.min(now + RESCAN_MS));
        tokio::select! {
            _ = engine.clock.sleep_until(engine.clock.instant_at(at)) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

/// The next fire times (at most 5) and what the zone's next transitions (at most 2) will do,
/// for `pipelines show`; nothing for a schedule that no longer parses.
pub fn upcoming(fields: &ScheduleFields, now: Millis) -> (Vec<Millis>, Vec<String>) {
    match Schedule::parse(&fields.spec()) {
        Ok(s) => (s.fire_times(now, 5), s.transitions(now, 2)),
        Err(_) => (Vec::new(), Vec::new()),
    }
}

impl Scheduler {
    /// Starts what is due now; answers when the next tick comes.
    async fn round(&mut self, engine: &Engine) -> Result<Option<Millis>, EngineError> {
        let listed = engine.store.list_pipelines().await?;
        self.pipelines
            .retain(|name, _| listed.iter().any(|p| &p.name == name));
        let mut wake: Option<Millis> = None;
        for p in listed {
            let known = self.pipelines.get(&p.name).map(|(v, _)| *v);
            if known != Some(p.version) {
                let (latest, _) = engine.store.latest_pipeline(&p.name).await?;
                let tracked = match latest.template.schedule.map(|f| Schedule::parse(&f.spec())) {
                    None => None,
                    Some(Err(problems)) => {
                        tracing::warn!(pipeline = %p.name, ?problems, "schedule not understood");
                        None
                    }
                    Some(Ok(schedule)) => {
                        let old = self.pipelines.remove(&p.name).and_then(|(_, t)| t);
                        let cursor = match &old {
                            Some(t) => t.cursor,
                            None => {
                                cursor_after_restart(engine, &p.name, latest.created_at).await?
                            }
                        };
                        let buffered = old.map(|t| t.buffered).unwrap_or_default();
                        Some(Tracked {
                            schedule,
                            cursor,
                            buffered,
                        })
                    }
                };
                self.pipelines.insert(p.name.clone(), (p.version, tracked));
            }
            let Some((_, Some(t))) = self.pipelines.get_mut(&p.name) else {
                continue;
            };
            let now = engine.clock.now_ms();
            if p.paused {
                t.cursor = t.cursor.max(now);
                t.buffered.clear();
                continue;
            }
            let (ticks, cursor) = plan::due(&t.schedule, t.cursor, now);
            t.cursor = cursor;
            fire(engine, &p.name, t, ticks).await?;
            if let Some(next) = t.schedule.next_after(t.cursor) {
                wake = Some(wake.map_or(next, |w| w.min(next)));
            }
        }
        Ok(wake)
    }
}

/// Where a schedule's cursor starts when this controller first sees it: after its newest
/// scheduled run, or at the version's apply.
async fn cursor_after_restart(
    engine: &Engine,
    name: &str,
    applied_at: Millis,
) -> Result<Millis, EngineError> {
    let runs = engine.store.pipeline_runs(name, RUNS_READ).await?;
    let last = runs.iter().filter_map(|r| r.scheduled_time).max();
    Ok(last.map_or(applied_at, |l| l.max(applied_at.min(l))))
}

/// Starts `ticks` (and buffered ones) as the overlap policy allows.
async fn fire(
    engine: &Engine,
    name: &str,
    t: &mut Tracked,
    ticks: Vec<Millis>,
) -> Result<(), EngineError> {
    if ticks.is_empty() && t.buffered.is_empty() {
        return Ok(());
    }
    let overlap = t.schedule.overlap;
    let mut running: Vec<String> = if overlap == Overlap::Allow {
        Vec::new()
    } else {
        let runs = engine.store.pipeline_runs(name, RUNS_READ).await?;
        runs.into_iter()
            .filter(|r| r.scheduled_time.is_some() && !r.job.state.is_terminal())
            .map(|r| r.job.id)
            .collect()
    };
    if running.is_empty() {
        if let Some(tick) = t.buffered.pop_front() {
            running.extend(start(engine, name, &t.schedule, tick).await);
        }
    }
    for tick in ticks {
        match overlap {
            Overlap::Allow => {
                start(engine, name, &t.schedule, tick).await;
            }
            _ if running.is_empty() => {
                running.extend(start(engine, name, &t.schedule, tick).await);
            }
            Overlap::CancelPrevious => {
                for job in running.drain(..) {
                    if let Err(e) = engine.cancel(&job).await {
                        tracing::warn!(job_id = %job, error = %e, "previous run not cancelled");
                    }
                }
                running.extend(start(engine, name, &t.schedule, tick).await);
            }
            Overlap::BufferOne if t.buffered.is_empty() => t.buffered.push_back(tick),
            Overlap::BufferAll => t.buffered.push_back(tick),
            _ => {
                tracing::info!(pipeline = %name, scheduled_time = %rfc3339(tick), overlap = overlap.name(), "tick passed over: the previous run is still going")
            }
        }
    }
    Ok(())
}

/// Starts the run of one tick; its job id, or none when it was not started.
async fn start(engine: &Engine, name: &str, schedule: &Schedule, tick: Millis) -> Option<String> {
    match start_tick(engine, name, schedule, tick, true).await {
        Ok(started) => Some(started.job_id),
        Err(e) => {
            tracing::warn!(pipeline = %name, scheduled_time = %rfc3339(tick), error = %e, "scheduled run not started");
            None
        }
    }
}

/// Starts the run of one tick with its parameters (`automatic`: by the schedule, refused
/// while paused; a backfill's is not); the tick's existing run when it had one.
pub(super) async fn start_tick(
    engine: &Engine,
    name: &str,
    schedule: &Schedule,
    tick: Millis,
    automatic: bool,
) -> Result<RunStarted, EngineError> {
    let start = schedule.previous_before(tick).unwrap_or(tick);
    let params = BTreeMap::from([
        ("scheduled_time".to_string(), rfc3339(tick)),
        ("interval_start".to_string(), rfc3339(start)),
        ("interval_end".to_string(), rfc3339(tick)),
    ]);
    let origin = RunOrigin {
        scheduled_time: Some(tick),
        key: None,
        automatic,
    };
    engine.start_run(name, params, origin).await
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "scheduler_pg_tests.rs"]
mod pg_tests;
