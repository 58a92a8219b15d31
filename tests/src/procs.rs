//! Looking at processes that tasks started, by pid, to check that none outlives its task.

use std::path::Path;

use anyhow::{Context, Result};

/// Whether `pid` is a live process: listed in `/proc` and neither a zombie nor dead. A zombie
/// has exited; only its parent (or init, in a container perhaps never) has not reaped it yet.
pub fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last `)`, comm may hold anything.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x") | None)
}

/// The pids written one per line into `path` by a task (`echo $$ >> FILE`).
pub fn read_pids(path: &Path) -> Result<Vec<i32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .with_context(|| format!("bad pid {l:?} in {}", path.display()))
        })
        .collect()
}
