//! The ledger the tasks append to: one line per event, `JOB TASK ATTEMPT EVENT …` with
//! `start NS PID`, `tick NS`, `end NS`, `out SHA256`, `in TASK SHA256` — read back into what
//! each attempt did and when (the wall clock of this host, in ns).

use std::collections::{BTreeMap, HashMap};

/// What one attempt left in the ledger.
#[derive(Clone, Debug, Default)]
pub struct AttemptLog {
    pub start_ns: Option<i64>,
    /// The latest time any of its lines gives: until then it certainly ran.
    pub last_ns: i64,
    pub ended: bool,
    pub pid: Option<i32>,
    /// The SHA-256 of the output it wrote.
    pub out: Option<String>,
    /// (upstream task, SHA-256 of the staged input it read).
    pub inputs: Vec<(String, String)>,
}

/// (job id, task id) → attempt number → its log.
pub type TaskKey = (String, String);

#[derive(Debug, Default)]
pub struct Ledger {
    pub tasks: HashMap<TaskKey, BTreeMap<u32, AttemptLog>>,
    /// Lines that did not parse (a torn append would show here).
    pub bad_lines: Vec<String>,
    pub lines: usize,
}

impl Ledger {
    pub fn parse(text: &str) -> Self {
        let mut ledger = Ledger::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            ledger.lines += 1;
            if ledger.add(line).is_none() {
                ledger.bad_lines.push(line.to_owned());
            }
        }
        ledger
    }

    fn add(&mut self, line: &str) -> Option<()> {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (job, task, attempt, event) = (f.first()?, f.get(1)?, f.get(2)?, f.get(3)?);
        let attempt: u32 = attempt.parse().ok()?;
        let ns = |i: usize| -> Option<i64> { f.get(i)?.parse().ok() };
        enum Event {
            Start(i64, i32),
            Tick(i64),
            End(i64),
            Out(String),
            In(String, String),
        }
        let event = match (*event, f.len()) {
            ("start", 6) => Event::Start(ns(4)?, f[5].parse().ok()?),
            ("tick", 5) => Event::Tick(ns(4)?),
            ("end", 5) => Event::End(ns(4)?),
            ("out", 5) if f[4].len() == 64 => Event::Out(f[4].to_owned()),
            ("in", 6) if f[5].len() == 64 => Event::In(f[4].to_owned(), f[5].to_owned()),
            _ => return None,
        };
        let log = self
            .tasks
            .entry((job.to_string(), task.to_string()))
            .or_default()
            .entry(attempt)
            .or_default();
        match event {
            Event::Start(t, pid) => {
                log.start_ns = Some(t);
                log.pid = Some(pid);
                log.last_ns = log.last_ns.max(t);
            }
            Event::Tick(t) => log.last_ns = log.last_ns.max(t),
            Event::End(t) => {
                log.last_ns = log.last_ns.max(t);
                log.ended = true;
            }
            Event::Out(sha) => log.out = Some(sha),
            Event::In(from, sha) => log.inputs.push((from, sha)),
        }
        Some(())
    }

    /// Pairs of attempts of one task whose ledger intervals overlap: the later one started
    /// before the earlier one's last sign of life.
    pub fn overlaps(&self) -> Vec<String> {
        let mut found = Vec::new();
        for ((job, task), attempts) in &self.tasks {
            let mut by_start: Vec<(u32, i64, i64)> = attempts
                .iter()
                .filter_map(|(n, a)| a.start_ns.map(|s| (*n, s, a.last_ns)))
                .collect();
            by_start.sort_by_key(|&(_, s, _)| s);
            let mut latest: Option<(u32, i64)> = None;
            for (n, start, last) in by_start {
                if let Some((m, until)) = latest {
                    if start <= until {
                        found.push(format!(
                            "{job}/{task}: attempt {n} started {:.3} s before attempt {m}'s last \
                             ledger line",
                            (until - start) as f64 / 1e9
                        ));
                    }
                }
                if latest.is_none_or(|(_, until)| last > until) {
                    latest = Some((n, last));
                }
            }
        }
        found.sort();
        found
    }

    /// Every pid a task wrote at its start.
    pub fn pids(&self) -> Vec<i32> {
        self.tasks
            .values()
            .flat_map(|a| a.values().filter_map(|l| l.pid))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_make_attempts_and_overlaps_are_found() {
        let text = "j t 1 start 100 11\nj t 1 tick 200\nj t 2 start 150 12\nj t 2 end 300\n\
                    j u 1 start 100 13\nj u 1 end 120\nj u 2 start 130 14\nj u 2 out \
                    0000000000000000000000000000000000000000000000000000000000000000\n\
                    j u 2 end 140\ngarbage\nj t 3 sta";
        let ledger = Ledger::parse(text);
        assert_eq!(ledger.bad_lines, ["garbage", "j t 3 sta"]);
        let t = &ledger.tasks[&("j".into(), "t".into())];
        assert_eq!(t[&1].last_ns, 200);
        assert!(!t[&1].ended && t[&2].ended);
        let overlaps = ledger.overlaps();
        assert_eq!(overlaps.len(), 1, "{overlaps:?}");
        assert!(overlaps[0].starts_with("j/t: attempt 2"), "{overlaps:?}");
        let u = &ledger.tasks[&("j".into(), "u".into())];
        assert!(u[&2].out.is_some());
        let mut pids = ledger.pids();
        pids.sort();
        assert_eq!(pids, [11, 12, 13, 14]);
    }
}
