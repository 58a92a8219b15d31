//! Recovery per fault, from the store's attempts: the tasks a fault caught are those with an
//! attempt running in its scope (the agent it hit; every agent for a controller or the disk)
//! when it was injected, or, for a full or slow disk, an attempt that failed while it lasted. A task
//! has recovered when it runs again (its next attempt started, or the caught attempt ended
//! normally) and when it has succeeded; the fault's figures are the worst of its tasks, from
//! the injection.

use std::collections::BTreeMap;

use crate::{faults::Injected, record::JobRec, schedule::Kind};

/// The worst of one fault kind, in seconds.
#[derive(Clone, Debug, Default)]
pub struct Worst {
    pub faults: usize,
    /// Faults that caught at least one task.
    pub caught: usize,
    pub tasks: usize,
    pub to_run_again_s: f64,
    pub to_success_s: f64,
    /// Caught tasks that never succeeded (their job failed).
    pub never: usize,
}

fn ended_normally(state: &str) -> bool {
    matches!(state, "succeeded" | "failed" | "timed_out")
}

pub fn worst_by_kind(faults: &[Injected], jobs: &[JobRec]) -> BTreeMap<Kind, Worst> {
    let mut by_kind: BTreeMap<Kind, Worst> = BTreeMap::new();
    for fault in faults {
        let w = by_kind.entry(fault.kind).or_default();
        w.faults += 1;
        let mut caught_here = false;
        let t0 = fault.injected_ms;
        for task in jobs.iter().flat_map(|j| &j.tasks) {
            let caught = task.attempts.iter().find(|a| {
                let in_scope = fault.agent.as_ref().is_none_or(|name| &a.agent == name);
                let started = a.started_ms.unwrap_or(i64::MAX);
                let running = started < t0 && a.finished_ms.is_none_or(|f| f > t0);
                let failed_during = matches!(fault.kind, Kind::DiskFull | Kind::SlowDisk)
                    && a.state == "failed"
                    && a.finished_ms
                        .is_some_and(|f| f >= t0 && f <= fault.healed_ms);
                in_scope && (running || failed_during)
            });
            let Some(caught) = caught else { continue };
            caught_here = true;
            w.tasks += 1;
            let again = if ended_normally(&caught.state) && caught.state != "failed" {
                caught.finished_ms
            } else {
                task.attempts
                    .iter()
                    .filter(|a| a.number > caught.number)
                    .filter_map(|a| a.started_ms)
                    .min()
            };
            let success = task
                .attempts
                .iter()
                .find(|a| a.state == "succeeded")
                .and_then(|a| a.finished_ms);
            match (again, success) {
                (Some(again), Some(success)) => {
                    w.to_run_again_s = w.to_run_again_s.max((again - t0) as f64 / 1000.0);
                    w.to_success_s = w.to_success_s.max((success - t0) as f64 / 1000.0);
                }
                _ => w.never += 1,
            }
        }
        if caught_here {
            w.caught += 1;
        }
    }
    by_kind
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AttemptRec, TaskRec};

    fn attempt(n: u32, agent: &str, state: &str, start: i64, end: i64) -> AttemptRec {
        AttemptRec {
            number: n,
            agent: agent.into(),
            state: state.into(),
            started_ms: Some(start),
            finished_ms: Some(end),
        }
    }

    #[test]
    fn a_lost_attempt_recovers_when_the_next_one_starts_and_succeeds() {
        let jobs = [JobRec {
            id: "j".into(),
            state: "succeeded".into(),
            tasks: vec![
                TaskRec {
                    id: "t".into(),
                    state: "succeeded".into(),
                    attempts: vec![
                        attempt(1, "a", "lost", 900, 5000),
                        attempt(2, "b", "succeeded", 5500, 6000),
                    ],
                },
                TaskRec {
                    id: "u".into(),
                    state: "succeeded".into(),
                    attempts: vec![attempt(1, "b", "succeeded", 900, 1200)],
                },
            ],
        }];
        let fault = Injected {
            kind: Kind::AgentKill,
            injected_ms: 1000,
            healed_ms: 2000,
            agent: Some("a".into()),
        };
        let w = &worst_by_kind(&[fault], &jobs)[&Kind::AgentKill];
        assert_eq!((w.faults, w.caught, w.tasks, w.never), (1, 1, 1, 0));
        assert_eq!(w.to_run_again_s, 4.5);
        assert_eq!(w.to_success_s, 5.0);
    }
}
