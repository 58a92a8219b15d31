//! What a run prints: the figures (tasks, attempts, faults by kind, worst recovery per kind)
//! and each invariant with what it checked and every violation.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::{checks::Check, recovery::Worst, schedule::Kind};

/// At most this many violations are printed per invariant (all are counted).
const SHOWN: usize = 20;

pub struct Figures {
    pub jobs: usize,
    pub tasks: usize,
    pub attempts: BTreeMap<String, usize>,
    pub job_states: BTreeMap<String, usize>,
    /// Per source database: its extract runs and its rows.
    pub extracts: Vec<(&'static str, usize, i64)>,
    pub ledger_lines: usize,
    pub elapsed_s: f64,
}

pub fn render(figures: &Figures, worst: &BTreeMap<Kind, Worst>, checks: &[Check]) -> String {
    let mut out = String::new();
    let f = figures;
    let pairs = |m: &BTreeMap<String, usize>| {
        m.iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(out, "== figures");
    let _ = writeln!(
        out,
        "tasks: {} in {} jobs ({}); attempts: {} ({})",
        f.tasks,
        f.jobs,
        pairs(&f.job_states),
        f.attempts.values().sum::<usize>(),
        pairs(&f.attempts)
    );
    let extracts: Vec<String> = f
        .extracts
        .iter()
        .map(|(db, runs, rows)| format!("{db} {runs} runs over {rows} source rows"))
        .collect();
    let _ = writeln!(
        out,
        "incremental extracts: {}; ledger: {} lines; {:.0} s in all",
        extracts.join(", "),
        f.ledger_lines,
        f.elapsed_s
    );
    let total: usize = worst.values().map(|w| w.faults).sum();
    let by_kind: Vec<String> = worst
        .iter()
        .map(|(k, w)| format!("{k} {}", w.faults))
        .collect();
    let _ = writeln!(out, "faults: {total} ({})", by_kind.join(", "));
    let _ = writeln!(
        out,
        "worst recovery per kind, from the injection (caught: faults that caught a running task / tasks caught):"
    );
    let _ = writeln!(
        out,
        "  {:<16} {:>6} {:>12} {:>14} {:>12} {:>6}",
        "kind", "faults", "caught", "run again s", "succeeded s", "never"
    );
    for (kind, w) in worst {
        let _ = writeln!(
            out,
            "  {:<16} {:>6} {:>12} {:>14.1} {:>12.1} {:>6}",
            kind.name(),
            w.faults,
            format!("{}/{}", w.caught, w.tasks),
            w.to_run_again_s,
            w.to_success_s,
            w.never
        );
    }
    let _ = writeln!(out, "== invariants");
    for c in checks {
        let mark = if c.violations.is_empty() {
            "ok  "
        } else {
            "FAIL"
        };
        let _ = writeln!(
            out,
            "[{mark}] {} — {} checked, {} violations",
            c.name,
            c.checked,
            c.violations.len()
        );
        for v in c.violations.iter().take(SHOWN) {
            let _ = writeln!(out, "       {v}");
        }
        if c.violations.len() > SHOWN {
            let _ = writeln!(out, "       … and {} more", c.violations.len() - SHOWN);
        }
    }
    let violations: usize = checks.iter().map(|c| c.violations.len()).sum();
    let _ = writeln!(out, "invariant violations: {violations}");
    out
}
