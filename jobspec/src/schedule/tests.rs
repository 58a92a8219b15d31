//! The schedule arithmetic through Europe/Berlin's 2026 transitions under each policy, the
//! shorthands, `every`, and the refusals.

use super::*;
use proptest::strategy::Strategy;

fn ms(text: &str) -> i64 {
    text.parse::<Timestamp>().unwrap().as_millisecond()
}

fn berlin(cron: &str, repeated: &str, skipped: &str) -> Schedule {
    Schedule::parse(&ScheduleSpec {
        cron: cron.into(),
        timezone: "Europe/Berlin".into(),
        dst_repeated: repeated.into(),
        dst_skipped: skipped.into(),
        ..ScheduleSpec::default()
    })
    .unwrap()
}

fn times(s: &Schedule, from: &str, n: usize) -> Vec<String> {
    s.fire_times(ms(from), n).into_iter().map(rfc3339).collect()
}

#[test]
fn spring_forward_shifts_a_skipped_time_to_the_jump_or_skips_it() {
    // 2026-03-29: 02:00 CET becomes 03:00 CEST (01:00Z); 02:30 never happens.
    let shift = berlin("30 2 * * *", "", "shift");
    assert_eq!(
        times(&shift, "2026-03-27T12:00:00Z", 3),
        [
            "2026-03-28T01:30:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:30:00Z"
        ]
    );
    let skip = berlin("30 2 * * *", "", "skip");
    assert_eq!(
        times(&skip, "2026-03-27T12:00:00Z", 2),
        ["2026-03-28T01:30:00Z", "2026-03-30T00:30:00Z"]
    );
    // Every minute of the missing hour shifts to the one instant: it fires once there.
    let minutely = berlin("* 2 * * *", "", "shift");
    assert_eq!(
        times(&minutely, "2026-03-28T01:58:00Z", 4),
        [
            "2026-03-28T01:59:00Z",
            "2026-03-29T01:00:00Z",
            "2026-03-30T00:00:00Z",
            "2026-03-30T00:01:00Z"
        ]
    );
    // Times either side of the jump are untouched by the policy.
    let around = berlin("0 1,3 * * *", "", "skip");
    assert_eq!(
        times(&around, "2026-03-28T23:00:00Z", 2),
        ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"]
    );
}

#[test]
fn fall_back_fires_a_repeated_time_first_last_or_both() {
    // 2026-10-25: 03:00 CEST becomes 02:00 CET (01:00Z); 02:30 happens at 00:30Z and 01:30Z.
    let from = "2026-10-23T12:00:00Z";
    let first = berlin("30 2 * * *", "first", "");
    assert_eq!(
        times(&first, from, 3),
        [
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-26T01:30:00Z"
        ]
    );
    let last = berlin("30 2 * * *", "last", "");
    assert_eq!(
        times(&last, from, 3),
        [
            "2026-10-24T00:30:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-26T01:30:00Z"
        ]
    );
    let both = berlin("30 2 * * *", "both", "");
    assert_eq!(
        times(&both, from, 4),
        [
            "2026-10-24T00:30:00Z",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:30:00Z",
            "2026-10-26T01:30:00Z"
        ]
    );
    // Asked from between the two 02:30s, each policy answers from there.
    assert_eq!(
        times(&both, "2026-10-25T00:45:00Z", 1),
        ["2026-10-25T01:30:00Z"]
    );
    assert_eq!(
        times(&last, "2026-10-25T00:45:00Z", 1),
        ["2026-10-25T01:30:00Z"]
    );
    assert_eq!(
        times(&first, "2026-10-25T00:45:00Z", 1),
        ["2026-10-26T01:30:00Z"]
    );
    // An hourly schedule has 25 ticks that day with both, 24 with first or last.
    for (policy, count) in [("both", 25), ("first", 24), ("last", 24)] {
        let hourly = berlin("@hourly", policy, "");
        let day = hourly
            .fire_times(ms("2026-10-24T21:59:00Z"), 30)
            .into_iter()
            .filter(|t| *t < ms("2026-10-25T23:00:00Z"))
            .count();
        assert_eq!(day, count, "{policy}");
    }
}

#[test]
fn show_tells_what_the_next_transitions_do() {
    let s = berlin("30 2 * * *", "both", "skip");
    let lines = s.transitions(ms("2026-03-01T00:00:00Z"), 2);
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(
        lines[0].starts_with("2026-03-29 Europe/Berlin skips 02:00–03:00: 02:30 does not fire"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            "repeats 02:00–03:00: 02:30 fires at 2026-10-25T00:30:00Z, 2026-10-25T01:30:00Z"
        ),
        "{}",
        lines[1]
    );
    // A schedule no transition touches has nothing to tell.
    assert!(berlin("0 12 * * *", "", "")
        .transitions(ms("2026-03-01T00:00:00Z"), 2)
        .is_empty());
}

#[test]
fn shorthands_name_their_expressions() {
    let utc = |cron: &str| {
        Schedule::parse(&ScheduleSpec {
            cron: cron.into(),
            ..ScheduleSpec::default()
        })
        .unwrap()
    };
    let from = "2026-05-13T10:20:00Z"; // a Wednesday
    assert_eq!(times(&utc("@hourly"), from, 1), ["2026-05-13T11:00:00Z"]);
    assert_eq!(times(&utc("@daily"), from, 1), ["2026-05-14T00:00:00Z"]);
    assert_eq!(times(&utc("@midnight"), from, 1), ["2026-05-14T00:00:00Z"]);
    assert_eq!(times(&utc("@weekly"), from, 1), ["2026-05-17T00:00:00Z"]);
    assert_eq!(times(&utc("@monthly"), from, 1), ["2026-06-01T00:00:00Z"]);
    assert_eq!(times(&utc("@yearly"), from, 1), ["2027-01-01T00:00:00Z"]);
    assert_eq!(times(&utc("@ANNUALLY"), from, 1), ["2027-01-01T00:00:00Z"]);
    // Ranges, steps, lists, names; day-of-month or day-of-week when both are given.
    assert_eq!(
        times(&utc("*/20 9-10 * * mon-fri"), from, 3),
        [
            "2026-05-13T10:40:00Z",
            "2026-05-14T09:00:00Z",
            "2026-05-14T09:20:00Z"
        ]
    );
    assert_eq!(
        times(&utc("0 0 1 * sun"), from, 2),
        ["2026-05-17T00:00:00Z", "2026-05-24T00:00:00Z"]
    );
    assert_eq!(
        times(&utc("0 0 29 feb *"), from, 1),
        ["2028-02-29T00:00:00Z"]
    );
    assert_eq!(
        times(&utc("5/30 * * * 7"), from, 1),
        ["2026-05-17T00:05:00Z"]
    );
    // Previous ticks: the interval a tick ends.
    let daily = utc("@daily");
    assert_eq!(
        daily.previous_before(ms("2026-05-14T00:00:00Z")),
        Some(ms("2026-05-13T00:00:00Z"))
    );
    assert_eq!(
        utc("@yearly").previous_before(ms("2027-01-01T00:00:00Z")),
        Some(ms("2026-01-01T00:00:00Z"))
    );
}

#[test]
fn every_counts_from_the_epoch() {
    let s = Schedule::parse(&ScheduleSpec {
        every_ms: 10_000,
        ..ScheduleSpec::default()
    })
    .unwrap();
    assert_eq!(s.next_after(0), Some(10_000));
    assert_eq!(s.next_after(9_999), Some(10_000));
    assert_eq!(s.next_after(10_000), Some(20_000));
    assert_eq!(s.previous_before(20_000), Some(10_000));
    assert_eq!(s.previous_before(20_001), Some(20_000));
    assert_eq!(s.fire_times(25_000, 3), [30_000, 40_000, 50_000]);
    assert!(s.transitions(0, 3).is_empty());
    assert_eq!(s.next_after(i64::MAX), None);
}

#[test]
fn bad_schedules_are_refused_naming_the_problem() {
    let bad = |spec: ScheduleSpec| Schedule::parse(&spec).unwrap_err().join("; ");
    let cron = |c: &str| ScheduleSpec {
        cron: c.into(),
        ..ScheduleSpec::default()
    };
    assert!(bad(cron("0 2 * *")).contains("has 4 fields"));
    assert!(bad(cron("60 * * * *")).contains("minute value \"60\""));
    assert!(bad(cron("0 0 30 2 *")).contains("names no time"));
    assert!(bad(cron("@fortnightly")).contains("unknown shorthand"));
    assert!(bad(cron("*/0 * * * *")).contains("step"));
    assert!(bad(cron("5-1 * * * *")).contains("backwards"));
    assert!(bad(ScheduleSpec {
        timezone: "Mars/Olympus".into(),
        ..cron("@daily")
    })
    .contains("not in the tz database"));
    assert!(bad(ScheduleSpec::default()).contains("give cron"));
    assert!(bad(ScheduleSpec {
        every_ms: 1000,
        ..cron("@daily")
    })
    .contains("not both"));
    assert!(bad(ScheduleSpec {
        every_ms: 10,
        ..ScheduleSpec::default()
    })
    .contains("give 1s"));
    assert!(bad(ScheduleSpec {
        overlap: "queue".into(),
        ..cron("@daily")
    })
    .contains("\"skip\""));
    assert!(
        bad(ScheduleSpec {
            catchup: "some".into(),
            dst_repeated: "twice".into(),
            dst_skipped: "later".into(),
            ..cron("@daily")
        })
        .matches("use one of")
        .count()
            == 3
    );
}

proptest::proptest! {
    /// No text makes the checks panic, and no instant makes a schedule's arithmetic panic.
    #[test]
    fn no_schedule_text_or_instant_panics(
        cron in proptest::prop_oneof![
            "[0-9a-z*/,@ -]{0,24}",
            proptest::sample::select(vec!["30 2 * * *", "* 2 * * *", "@hourly", "0 0 29 2 *", "*/7 1-3 * * sun"]).prop_map(String::from),
        ],
        zone in proptest::sample::select(vec!["", "UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "../etc/passwd"]),
        every in proptest::prop_oneof![proptest::strategy::Just(0u64), 1_000u64..SPAN_MAX_MS],
        at in proptest::prop_oneof![proptest::num::i64::ANY, 0i64..4_102_444_800_000],
        repeated in proptest::sample::select(vec!["first", "last", "both"]),
    ) {
        let spec = ScheduleSpec { cron, timezone: zone.into(), every_ms: every, dst_repeated: repeated.into(), ..ScheduleSpec::default() };
        if let Ok(s) = Schedule::parse(&spec) {
            if let Some(next) = s.next_after(at) {
                proptest::prop_assert!(next > at);
            }
            let _ = s.previous_before(at);
            let _ = s.transitions(at, 2);
        }
    }
}
