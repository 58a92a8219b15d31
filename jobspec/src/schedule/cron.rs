//! A five-field cron expression (minute hour day-of-month month day-of-week, with `*`, lists,
//! ranges, steps and month/day names) and the `@daily`-style shorthands, matched against civil
//! (wall-clock) times: which local times a schedule names, before any time zone says when
//! they happen.

use jiff::civil::{Date, DateTime};

/// The local times a cron expression names, one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    /// Bits 1..=31.
    days: u32,
    /// Bits 1..=12.
    months: u16,
    /// Bits 0..=6, Sunday = 0.
    weekdays: u8,
    /// Day-of-month and day-of-week both restricted: a day matching either counts (as in
    /// every cron since Vixie's).
    either_day: bool,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const WEEKDAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// The shorthands and the expressions they stand for.
pub const SHORTHANDS: [(&str, &str); 7] = [
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

/// Years a search for the next match looks ahead before concluding there is none.
const HORIZON_YEARS: i16 = 9;

impl Cron {
    /// Parses `text`, or says what is wrong with it.
    pub fn parse(text: &str) -> Result<Cron, String> {
        let text = text.trim();
        let expanded = if text.starts_with('@') {
            SHORTHANDS
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(text))
                .map(|(_, expr)| *expr)
                .ok_or_else(|| {
                    let names: Vec<&str> = SHORTHANDS.iter().map(|(n, _)| *n).collect();
                    format!(
                        "unknown shorthand {text:?}: use one of {}",
                        names.join(", ")
                    )
                })?
        } else {
            text
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "cron {text:?} has {} fields: give 5 (minute hour day-of-month month day-of-week), or a shorthand such as @daily",
                fields.len()
            ));
        }
        let minutes = field(fields[0], "minute", 0, 59, &[])?;
        let hours = field(fields[1], "hour", 0, 23, &[])?;
        let days = field(fields[2], "day-of-month", 1, 31, &[])?;
        let months = field(fields[3], "month", 1, 12, &MONTHS)?;
        let mut weekdays = field(fields[4], "day-of-week", 0, 7, &WEEKDAYS)?;
        if weekdays & (1 << 7) != 0 {
            weekdays = (weekdays & !(1 << 7)) | 1;
        }
        Ok(Cron {
            minutes,
            hours: hours as u32,
            days: days as u32,
            months: months as u16,
            weekdays: weekdays as u8,
            either_day: !fields[2].starts_with('*') && !fields[4].starts_with('*'),
        })
    }

    fn day_matches(&self, date: Date) -> bool {
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        if self.either_day {
            dom || dow
        } else {
            dom && dow
        }
    }

    /// The first minute at or after `from` (rounded up to a whole minute) that the expression
    /// names; `None` when none comes within nine years (`0 0 30 2 *`).
    pub fn next_match(&self, from: DateTime) -> Option<DateTime> {
        let mut date = from.date();
        let mut minute = i32::from(from.hour()) * 60 + i32::from(from.minute());
        if from.second() != 0 || from.subsec_nanosecond() != 0 {
            minute += 1;
        }
        let last_year = date.year().saturating_add(HORIZON_YEARS);
        loop {
            if minute >= 24 * 60 {
                date = date.tomorrow().ok()?;
                minute = 0;
            }
            if date.year() > last_year {
                return None;
            }
            if self.months & (1 << date.month()) == 0 {
                date = date.last_of_month().tomorrow().ok()?;
                minute = 0;
                continue;
            }
            if !self.day_matches(date) {
                date = date.tomorrow().ok()?;
                minute = 0;
                continue;
            }
            let (h0, m0) = (minute / 60, minute % 60);
            for h in h0..24 {
                if self.hours & (1 << h) == 0 {
                    continue;
                }
                let from_minute = if h == h0 { m0 } else { 0 };
                if let Some(m) = (from_minute..60).find(|m| self.minutes & (1 << m) != 0) {
                    return Some(date.at(h as i8, m as i8, 0, 0));
                }
            }
            minute = 24 * 60;
        }
    }
}

/// One field's allowed values as bits, or what is wrong with it.
fn field(text: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<u64, String> {
    let mut bits = 0u64;
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: u32 = step
                    .parse()
                    .ok()
                    .filter(|s| *s >= 1 && *s <= max)
                    .ok_or_else(|| {
                        format!(
                            "cron {what} field {text:?}: step {step:?} is not a number 1..={max}"
                        )
                    })?;
                (range, step)
            }
            None => (part, 1),
        };
        let (lo, hi) = if range == "*" {
            (min, max)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, what, min, max, names)?,
                value(b, what, min, max, names)?,
            )
        } else {
            let v = value(range, what, min, max, names)?;
            // `5/15` means from 5 to the end, by 15.
            (v, if part.contains('/') { max } else { v })
        };
        if lo > hi {
            return Err(format!(
                "cron {what} field {text:?}: range {range:?} runs backwards"
            ));
        }
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step;
        }
    }
    Ok(bits)
}

fn value(text: &str, what: &str, min: u32, max: u32, names: &[&str]) -> Result<u32, String> {
    if let Some(i) = names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        // Month names count from 1, weekday names from 0 (Sunday).
        return Ok(i as u32 + if names.len() == 12 { 1 } else { 0 });
    }
    text.parse::<u32>()
        .ok()
        .filter(|v| (min..=max).contains(v))
        .ok_or_else(|| {
            format!(
                "cron {what} value {text:?} is not a number {min}..={max}{}",
                if names.is_empty() {
                    String::new()
                } else {
                    format!(" or a name ({})", names.join(", "))
                }
            )
        })
}
