//! A pipeline's `[schedule]` (decision 0018) as pure arithmetic: the spec as the job file and
//! the proto carry it, checked and compiled into a `Schedule` that answers when it fires next
//! after an instant, under its daylight-saving policies (`dst_repeated` for a local time that
//! happens twice when clocks go back, `dst_skipped` for one that never happens when they jump
//! forward), and what the zone's next transitions will do to it. Instants are milliseconds
//! since the Unix epoch (UTC); zones come from the system's tz database (/usr/share/zoneinfo).

mod cron;

use jiff::civil::DateTime;
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::{SignedDuration, Timestamp};

pub use cron::{Cron, SHORTHANDS};

/// What a job file's `[schedule]` says, as text and milliseconds (empty or 0: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScheduleSpec {
    pub cron: String,
    pub timezone: String,
    pub every_ms: u64,
    pub overlap: String,
    pub catchup: String,
    pub catchup_window_ms: u64,
    pub dst_repeated: String,
    pub dst_skipped: String,
}

/// What a tick does while the previous scheduled run is still going.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overlap {
    Skip,
    BufferOne,
    BufferAll,
    CancelPrevious,
    Allow,
}

/// Which of the ticks missed while no controller ran (within `catchup_window`) still run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Catchup {
    None,
    Latest,
    All,
}

/// A local time that happens twice (clocks go back): which of its instants fire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstRepeated {
    First,
    Last,
    Both,
}

/// A local time that never happens (clocks jump forward): fired when the jump ends, or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DstSkipped {
    Shift,
    Skip,
}

macro_rules! words {
    ($ty:ident { $($word:literal => $v:ident),* $(,)? }) => {
        impl $ty {
            pub const NAMES: &'static str = concat!($("\"", $word, "\" "),*);
            pub fn parse(text: &str) -> Option<Self> {
                match text { $($word => Some($ty::$v),)* _ => None }
            }
            pub fn name(self) -> &'static str {
                match self { $($ty::$v => $word,)* }
            }
        }
    };
}
words!(Overlap { "skip" => Skip, "buffer_one" => BufferOne, "buffer_all" => BufferAll, "cancel_previous" => CancelPrevious, "allow" => Allow });
words!(Catchup { "none" => None, "latest" => Latest, "all" => All });
words!(DstRepeated { "first" => First, "last" => Last, "both" => Both });
words!(DstSkipped { "shift" => Shift, "skip" => Skip });

/// `catchup_window` when none is given.
pub const DEFAULT_CATCHUP_WINDOW_MS: u64 = 86_400_000;
/// The shortest `every`.
pub const EVERY_MIN_MS: u64 = 1_000;
/// The longest `every` and `catchup_window` (about ten years).
pub const SPAN_MAX_MS: u64 = 10 * 366 * 86_400_000;
/// The longest text field of a schedule.
pub const TEXT_MAX: usize = 256;
/// Local times a transition can move by, at most (a search looks back as far).
const SHIFT_MS: i64 = 3 * 3_600_000;

#[derive(Debug, Clone)]
enum When {
    Cron {
        cron: Cron,
        tz: TimeZone,
        zone: String,
    },
    Every(i64),
}

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    when: When,
    pub overlap: Overlap,
    pub catchup: Catchup,
    pub catchup_window_ms: i64,
    pub dst_repeated: DstRepeated,
    pub dst_skipped: DstSkipped,
}

fn word<T>(
    text: &str,
    key: &str,
    default: T,
    parse: fn(&str) -> Option<T>,
    names: &str,
    problems: &mut Vec<String>,
) -> T {
    if text.is_empty() {
        return default;
    }
    parse(text).unwrap_or_else(|| {
        problems.push(format!(
            "schedule {key} {text:?}: use one of {}",
            names.trim_end()
        ));
        default
    })
}

impl Schedule {
    /// Checks and compiles a spec, or names every problem with it.
    pub fn parse(spec: &ScheduleSpec) -> Result<Schedule, Vec<String>> {
        let mut problems = Vec::new();
        let texts = [
            &spec.cron,
            &spec.timezone,
            &spec.overlap,
            &spec.catchup,
            &spec.dst_repeated,
            &spec.dst_skipped,
        ];
        if texts.iter().any(|t| t.len() > TEXT_MAX) {
            return Err(vec![format!(
                "schedule: a field longer than {TEXT_MAX} bytes"
            )]);
        }
        let when = match (spec.cron.is_empty(), spec.every_ms) {
            (false, 0) => {
                let zone = if spec.timezone.is_empty() {
                    "UTC"
                } else {
                    spec.timezone.as_str()
                };
                let cron = Cron::parse(&spec.cron)
                    .map_err(|e| problems.push(format!("schedule {e}")))
                    .ok();
                let tz = TimeZone::get(zone)
                    .map_err(|_| problems.push(format!("schedule timezone {zone:?} is not in the tz database (/usr/share/zoneinfo): give an IANA name such as \"Europe/Berlin\", or leave it out for UTC")))
                    .ok();
                if let Some(cron) = &cron {
                    let start = DateTime::constant(2000, 1, 1, 0, 0, 0, 0);
                    if cron.next_match(start).is_none() {
                        problems.push(format!(
                            "schedule cron {:?} names no time that exists (such as 30 February)",
                            spec.cron
                        ));
                    }
                }
                cron.zip(tz).map(|(cron, tz)| When::Cron {
                    cron,
                    tz,
                    zone: zone.to_string(),
                })
            }
            (true, 0) => {
                problems.push(
                    "schedule: give cron = \"…\" (with an optional timezone) or every = \"10s\""
                        .into(),
                );
                None
            }
            (false, _) => {
                problems.push("schedule: give cron or every, not both".into());
                None
            }
            (true, ms) => {
                if !spec.timezone.is_empty() {
                    problems.push("schedule timezone is for cron: every counts from the Unix epoch, in any zone".into());
                }
                if !(EVERY_MIN_MS..=SPAN_MAX_MS).contains(&ms) {
                    problems.push(format!("schedule every {ms} ms: give 1s to 3660d"));
                }
                Some(When::Every(ms as i64))
            }
        };
        let overlap = word(
            &spec.overlap,
            "overlap",
            Overlap::Skip,
            Overlap::parse,
            Overlap::NAMES,
            &mut problems,
        );
        let catchup = word(
            &spec.catchup,
            "catchup",
            Catchup::Latest,
            Catchup::parse,
            Catchup::NAMES,
            &mut problems,
        );
        let dst_repeated = word(
            &spec.dst_repeated,
            "dst_repeated",
            DstRepeated::First,
            DstRepeated::parse,
            DstRepeated::NAMES,
            &mut problems,
        );
        let dst_skipped = word(
            &spec.dst_skipped,
            "dst_skipped",
            DstSkipped::Shift,
            DstSkipped::parse,
            DstSkipped::NAMES,
            &mut problems,
        );
        let window = if spec.catchup_window_ms == 0 {
            DEFAULT_CATCHUP_WINDOW_MS
        } else {
            spec.catchup_window_ms
        };
        if window > SPAN_MAX_MS {
            problems.push(format!(
                "schedule catchup_window {window} ms: give at most 3660d"
            ));
        }
        match when {
            Some(when) if problems.is_empty() => Ok(Schedule {
                when,
                overlap,
                catchup,
                catchup_window_ms: window as i64,
                dst_repeated,
                dst_skipped,
            }),
            _ => Err(problems),
        }
    }

    /// The first fire time strictly after `t`; `None` past the year 9990 or for a cron with
    /// no further match.
    pub fn next_after(&self, t: i64) -> Option<i64> {
        match &self.when {
            When::Every(e) => t.div_euclid(*e).checked_add(1)?.checked_mul(*e),
            When::Cron { cron, tz, .. } => {
                let near =
                    transition_within(tz, t.saturating_sub(SHIFT_MS), t.saturating_add(SHIFT_MS));
                let start = if near {
                    t.saturating_sub(SHIFT_MS)
                } else {
                    t.saturating_add(1)
                };
                let mut civil = cron.next_match(tz.to_datetime(ts(start)?))?;
                let mut best: Option<i64> = None;
                loop {
                    if let Some(b) = best {
                        if !near || civil > tz.to_datetime(ts(b.saturating_add(SHIFT_MS))?) {
                            return best;
                        }
                    }
                    for at in self.instants(tz, civil) {
                        if at > t && best.is_none_or(|b| at < b) {
                            best = Some(at);
                        }
                    }
                    match civil
                        .checked_add(SignedDuration::from_secs(60))
                        .ok()
                        .and_then(|c| cron.next_match(c))
                    {
                        Some(c) => civil = c,
                        None => return best,
                    }
                }
            }
        }
    }

    /// The last fire time strictly before `t` (the start of the interval a tick at `t` ends).
    pub fn previous_before(&self, t: i64) -> Option<i64> {
        if let When::Every(e) = self.when {
            return Some(t.saturating_sub(1).div_euclid(e) * e);
        }
        for span in [
            7_200_000i64,
            2 * 86_400_000,
            35 * 86_400_000,
            400 * 86_400_000,
            3_660 * 86_400_000,
        ] {
            let mut at = t.saturating_sub(span);
            let mut last = None;
            while let Some(next) = self.next_after(at) {
                if next >= t {
                    break;
                }
                last = Some(next);
                at = next;
            }
            if last.is_some() {
                return last;
            }
        }
        None
    }

    /// The next `n` fire times after `t`.
    pub fn fire_times(&self, t: i64, n: usize) -> Vec<i64> {
        let mut out = Vec::with_capacity(n);
        let mut at = t;
        while out.len() < n {
            match self.next_after(at) {
                Some(next) => {
                    out.push(next);
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    /// The instants a local time fires at, under the DST policies.
    fn instants(&self, tz: &TimeZone, civil: DateTime) -> Vec<i64> {
        let ms = |o: jiff::tz::Offset| o.to_timestamp(civil).ok().map(|t| t.as_millisecond());
        match tz.to_ambiguous_timestamp(civil).offset() {
            AmbiguousOffset::Unambiguous { offset } => ms(offset).into_iter().collect(),
            AmbiguousOffset::Gap { after, .. } => match self.dst_skipped {
                DstSkipped::Skip => Vec::new(),
                // The jump's instant: the first moment after the local times that never were.
                DstSkipped::Shift => after
                    .to_timestamp(civil)
                    .ok()
                    .and_then(|early| tz.following(early).next())
                    .map(|tr| tr.timestamp().as_millisecond())
                    .into_iter()
                    .collect(),
            },
            AmbiguousOffset::Fold { before, after } => match self.dst_repeated {
                DstRepeated::First => ms(before).into_iter().collect(),
                DstRepeated::Last => ms(after).into_iter().collect(),
                DstRepeated::Both => ms(before).into_iter().chain(ms(after)).collect(),
            },
        }
    }

    /// One line for each of the zone's next `n` transitions (within ten years of `t`) that
    /// moves a local time this schedule names: what it will do then. Empty for `every` and
    /// for zones without transitions.
    pub fn transitions(&self, t: i64, n: usize) -> Vec<String> {
        let When::Cron { cron, tz, zone } = &self.when else {
            return Vec::new();
        };
        let Some(from) = ts(t) else { return Vec::new() };
        let mut out = Vec::new();
        for tr in tz.following(from).take(20) {
            if out.len() >= n
                || tr.timestamp().as_millisecond() > t.saturating_add(SPAN_MAX_MS as i64)
            {
                break;
            }
            let at = tr.timestamp();
            let old = tz.to_offset(at.checked_sub(SignedDuration::from_secs(1)).unwrap_or(at));
            let new = tr.offset();
            let (lo, hi) = if new > old {
                (old.to_datetime(at), new.to_datetime(at))
            } else {
                (new.to_datetime(at), old.to_datetime(at))
            };
            let mut named = Vec::new();
            let mut c = cron.next_match(lo);
            while let Some(civil) = c.filter(|c| *c < hi) {
                named.push(civil);
                c = civil
                    .checked_add(SignedDuration::from_secs(60))
                    .ok()
                    .and_then(|c| cron.next_match(c));
            }
            if named.is_empty() {
                continue;
            }
            let list = |v: &[DateTime]| {
                v.iter()
                    .map(|c| c.strftime("%H:%M").to_string())
                    .take(4)
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let when = |ms: i64| ts(ms).map(|t| t.to_string()).unwrap_or_default();
            let what = if new > old {
                match self.dst_skipped {
                    DstSkipped::Shift => format!(
                        "fires at {} (dst_skipped = \"shift\")",
                        when(at.as_millisecond())
                    ),
                    DstSkipped::Skip => "does not fire (dst_skipped = \"skip\")".to_string(),
                }
            } else {
                let fires: Vec<String> = named
                    .iter()
                    .flat_map(|c| self.instants(tz, *c))
                    .map(when)
                    .collect();
                format!(
                    "fires at {} (dst_repeated = \"{}\")",
                    fires.join(", "),
                    self.dst_repeated.name()
                )
            };
            out.push(format!(
                "{} {zone} {} {}: {} {}",
                lo.date(),
                if new > old { "skips" } else { "repeats" },
                format_args!("{}–{}", lo.strftime("%H:%M"), hi.strftime("%H:%M")),
                list(&named),
                what
            ));
        }
        out
    }

    /// `cron "…" in ZONE` or `every N ms`, for `show`.
    pub fn describe(&self) -> String {
        match &self.when {
            When::Cron { zone, .. } => format!("cron in {zone}"),
            When::Every(ms) => format!("every {ms} ms"),
        }
    }
}

fn ts(ms: i64) -> Option<Timestamp> {
    Timestamp::from_millisecond(ms).ok()
}

/// Whether the zone changes its offset between `a` and `b`.
fn transition_within(tz: &TimeZone, a: i64, b: i64) -> bool {
    ts(a)
        .and_then(|a| tz.following(a).next())
        .is_some_and(|tr| tr.timestamp().as_millisecond() <= b)
}

/// An instant as RFC 3339 in UTC (`2026-03-29T01:00:00Z`), as scheduled runs get it.
pub fn rfc3339(ms: i64) -> String {
    ts(ms).map(|t| t.to_string()).unwrap_or_default()
}

#[cfg(test)]
mod tests;
