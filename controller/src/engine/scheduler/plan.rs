//! Which of a schedule's ticks are due, and which of them run after a gap (`catchup` within
//! `catchup_window`): pure, on instants in milliseconds.

use ferry_jobspec::schedule::{Catchup, Schedule};

/// A tick seen later than this after its time counts as missed (the controller was down, or
/// the pipeline paused), not as on time.
pub const ON_TIME_MS: i64 = 60_000;

/// The ticks in (`cursor`, `now`] that should start a run, oldest first, and the new cursor
/// (the last tick considered). Ticks older than `catchup_window` are dropped; of the rest,
/// `catchup` keeps none but an on-time one, the latest, or all.
pub fn due(schedule: &Schedule, cursor: i64, now: i64) -> (Vec<i64>, i64) {
    let floor = now.saturating_sub(schedule.catchup_window_ms);
    let mut ticks = Vec::new();
    let mut at = cursor.max(floor.saturating_sub(1));
    let mut last = cursor;
    while let Some(next) = schedule.next_after(at).filter(|t| *t <= now) {
        ticks.push(next);
        last = next;
        at = next;
    }
    let Some(&latest) = ticks.last() else {
        return (ticks, last);
    };
    let on_time = now - latest < ON_TIME_MS;
    let keep = match schedule.catchup {
        Catchup::All => ticks,
        Catchup::Latest => vec![latest],
        Catchup::None if on_time => vec![latest],
        Catchup::None => Vec::new(),
    };
    (keep, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_jobspec::schedule::ScheduleSpec;

    fn every(ms: u64, catchup: &str, window: u64) -> Schedule {
        Schedule::parse(&ScheduleSpec {
            every_ms: ms,
            catchup: catchup.into(),
            catchup_window_ms: window,
            ..ScheduleSpec::default()
        })
        .unwrap()
    }

    #[test]
    fn an_on_time_tick_runs_under_every_policy() {
        for policy in ["none", "latest", "all"] {
            assert_eq!(
                due(&every(10_000, policy, 0), 10_000, 20_005),
                (vec![20_000], 20_000)
            );
            assert_eq!(
                due(&every(10_000, policy, 0), 20_000, 29_999),
                (vec![], 20_000)
            );
        }
    }

    #[test]
    fn three_missed_ticks_run_none_the_latest_or_all_within_the_window() {
        // Down from just after 0 until 300 s: ticks at 100, 200, 300 s were missed, the last
        // seen 90 s late.
        let now = 390_000;
        assert_eq!(due(&every(100_000, "none", 0), 0, now), (vec![], 300_000));
        assert_eq!(
            due(&every(100_000, "latest", 0), 0, now),
            (vec![300_000], 300_000)
        );
        assert_eq!(
            due(&every(100_000, "all", 0), 0, now),
            (vec![100_000, 200_000, 300_000], 300_000)
        );
        // A window of 250 s keeps the two newest.
        assert_eq!(
            due(&every(100_000, "all", 250_000), 0, now),
            (vec![200_000, 300_000], 300_000)
        );
    }
}
