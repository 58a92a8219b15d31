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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_alive_and_a_reaped_one_is_not() {
        assert!(pid_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn an_unreaped_exited_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // A zombie until waited for: poll without reaping.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pid_alive(pid) {
            assert!(std::time::Instant::now() < deadline, "`true` never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
    }

    #[test]
    fn pids_are_read_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pids");
        std::fs::write(&path, "12\n 34 \n\n").unwrap();
        assert_eq!(read_pids(&path).unwrap(), [12, 34]);
        std::fs::write(&path, "12\nnope\n").unwrap();
        assert!(read_pids(&path).is_err());
    }
}
