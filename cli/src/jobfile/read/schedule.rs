//! A pipeline file's `[schedule]` table (decision 0018): each key and value at its place, then
//! the schedule checked whole by `ferry_jobspec::schedule` (cron, time zone, policies).

use ferry_jobspec::schedule::{Schedule, SPAN_MAX_MS};
use ferry_proto::v1::ScheduleSpec;

use super::{Reader, Value};

const SCHEDULE_KEYS: &[&str] = &[
    "cron",
    "timezone",
    "every",
    "overlap",
    "catchup",
    "catchup_window",
    "dst_repeated",
    "dst_skipped",
];

impl Reader<'_> {
    pub(super) fn schedule(&mut self, value: &Value<'_>) -> Option<ScheduleSpec> {
        let table = self.table(value, "schedule")?;
        let mut spec = ScheduleSpec::default();
        let before = self.problems.len();
        for (key, v) in table.iter() {
            let name = &**key.get_ref();
            let what = format!("schedule.{name}");
            let text = |r: &mut Self| r.string(v, &what).unwrap_or_default();
            match name {
                "cron" => spec.cron = text(self),
                "timezone" => spec.timezone = text(self),
                "overlap" => spec.overlap = text(self),
                "catchup" => spec.catchup = text(self),
                "dst_repeated" => spec.dst_repeated = text(self),
                "dst_skipped" => spec.dst_skipped = text(self),
                "every" => spec.every_ms = self.duration_ms(v, &what, SPAN_MAX_MS).unwrap_or(0),
                "catchup_window" => {
                    spec.catchup_window_ms = self.duration_ms(v, &what, SPAN_MAX_MS).unwrap_or(0)
                }
                _ => self.unknown_key(key, "in [schedule]", SCHEDULE_KEYS),
            }
        }
        if self.problems.len() == before {
            if let Err(problems) = Schedule::parse(&checked(&spec)) {
                for p in problems {
                    self.push(value.span().start, p);
                }
            }
        }
        Some(spec)
    }
}

/// The proto's schedule as the shared rules take it.
pub fn checked(s: &ScheduleSpec) -> ferry_jobspec::schedule::ScheduleSpec {
    ferry_jobspec::schedule::ScheduleSpec {
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        every_ms: s.every_ms,
        overlap: s.overlap.clone(),
        catchup: s.catchup.clone(),
        catchup_window_ms: s.catchup_window_ms,
        dst_repeated: s.dst_repeated.clone(),
        dst_skipped: s.dst_skipped.clone(),
    }
}
