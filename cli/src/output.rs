//! Output: the table or JSON format, aligned tables, and how times, sizes and states read.
//!
//! In JSON mode every command prints exactly one JSON document on standard output, except
//! `submit`, which prints only the job id in every mode, and `logs`, which prints raw bytes.

mod extracts;
mod views;

use std::{
    io::Write,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::ValueEnum;
use ferry_proto::v1::{AgentState, AttemptState, JobState, TaskState};
use serde::Serialize;

pub use extracts::{ColumnView, ExtractView, ResetView, WatermarkView};
pub use views::{
    AgentView, CancelView, DrainView, ForgetView, JobSummaryView, JobView, QueueView, ResultView,
    SavedView,
};

use crate::exit::CliError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Prints `view` as one JSON document, or as the text `table` renders.
pub fn emit<V: Serialize + ?Sized>(
    format: Format,
    view: &V,
    table: impl FnOnce(&V) -> String,
) -> Result<(), CliError> {
    let text = match format {
        Format::Json => {
            let mut json = serde_json::to_string_pretty(view)
                .map_err(|err| CliError::Output(std::io::Error::other(err)))?;
            json.push('\n');
            json
        }
        Format::Table => table(view),
    };
    write_stdout(text.as_bytes())
}

pub fn write_stdout(bytes: &[u8]) -> Result<(), CliError> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(CliError::Output)
}

/// A table of left-aligned columns separated by two spaces.
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(headers: &[&str]) -> Self {
        Table {
            rows: vec![headers.iter().map(|h| (*h).to_owned()).collect()],
        }
    }

    /// Adds a row; control characters in a cell (a name with terminal escapes, a newline) are
    /// printed escaped, so that no value sent by an agent or a client can redraw the terminal
    /// or break the table's lines.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells.into_iter().map(printable).collect());
    }

    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                let pad = widths[c].saturating_sub(cell.chars().count());
                line.extend(std::iter::repeat_n(' ', pad));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `text` with every control character escaped (`\u{1b}`, `\n`).
pub fn printable(text: String) -> String {
    if !text.chars().any(char::is_control) {
        return text;
    }
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// RFC 3339 with milliseconds, or `None` for 0 (not yet).
pub fn timestamp(ms: i64) -> Option<String> {
    let ms = u64::try_from(ms).ok().filter(|&ms| ms > 0)?;
    Some(humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string())
}

/// RFC 3339 to the second for tables, or `-`.
pub fn short_timestamp(ms: i64) -> String {
    match u64::try_from(ms).ok().filter(|&ms| ms > 0) {
        Some(ms) => {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
        }
        None => "-".to_owned(),
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The time from `start_ms` to `end_ms` (or to now while running), or `-`.
pub fn span(start_ms: i64, end_ms: i64) -> String {
    if start_ms <= 0 {
        return "-".to_owned();
    }
    let end = if end_ms > 0 { end_ms } else { now_ms() };
    duration(u64::try_from(end - start_ms).unwrap_or(0))
}

/// A short duration: `850ms`, `4.1s`, `2m03s`, `1h02m`.
pub fn duration(ms: u64) -> String {
    let secs = ms / 1000;
    if ms < 1000 {
        format!("{ms}ms")
    } else if secs < 60 {
        format!("{:.1}s", ms as f64 / 1000.0)
    } else if secs < 3600 {
        format!("{}m{:02}s", secs / 60, secs % 60)
    } else {
        format!("{}h{:02}m", secs / 3600, (secs % 3600) / 60)
    }
}

/// Bytes in binary units: `512 B`, `3.1 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn job_state(state: JobState) -> &'static str {
    match state {
        JobState::Unspecified => "unknown",
        JobState::Pending => "pending",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

pub fn task_state(state: TaskState) -> &'static str {
    match state {
        TaskState::Unspecified => "unknown",
        TaskState::Blocked => "blocked",
        TaskState::Queued => "queued",
        TaskState::Running => "running",
        TaskState::Succeeded => "succeeded",
        TaskState::Failed => "failed",
        TaskState::Cancelled => "cancelled",
        TaskState::Skipped => "skipped",
    }
}

pub fn attempt_state(state: AttemptState) -> &'static str {
    match state {
        AttemptState::Unspecified => "unknown",
        AttemptState::Running => "running",
        AttemptState::Succeeded => "succeeded",
        AttemptState::Failed => "failed",
        AttemptState::TimedOut => "timed_out",
        AttemptState::Lost => "lost",
        AttemptState::Cancelled => "cancelled",
    }
}

pub fn agent_state(state: AgentState) -> &'static str {
    match state {
        AgentState::Unspecified => "unknown",
        AgentState::Ready => "ready",
        AgentState::Draining => "draining",
        AgentState::Dead => "dead",
        AgentState::Drained => "drained",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut table = Table::new(&["NAME", "STATE", "NOTE"]);
        table.row(vec!["agent-a".into(), "ready".into(), String::new()]);
        table.row(vec!["b".into(), "draining".into(), "x".into()]);
        assert_eq!(
            table.render(),
            "NAME     STATE     NOTE\nagent-a  ready\nb        draining  x\n"
        );
    }

    #[test]
    fn control_characters_in_cells_are_escaped() {
        let mut table = Table::new(&["NAME", "HOST"]);
        table.row(vec!["evil\u{1b}[2J".into(), "a\nb\u{9b}".into()]);
        assert_eq!(
            table.render(),
            "NAME           HOST\nevil\\u{1b}[2J  a\\nb\\u{9b}\n"
        );
    }

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration(850), "850ms");
        assert_eq!(duration(4_100), "4.1s");
        assert_eq!(duration(123_000), "2m03s");
        assert_eq!(duration(3_720_000), "1h02m");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(3 * 1024 * 1024 * 1024 + 100 * 1024 * 1024), "3.1 GiB");
    }

    #[test]
    fn timestamps_are_rfc3339_or_none() {
        assert_eq!(timestamp(0), None);
        assert_eq!(
            timestamp(1_795_000_000_123).as_deref(),
            Some("2026-11-18T11:06:40.123Z")
        );
    }
}
