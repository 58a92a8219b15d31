//! Processes by pid, from `/proc`: their parent, group and start time (so that a pid reused by
//! another process is never taken for the one recorded), the orphans a guardian adopted, and
//! signalling a process group.

use std::fs;

use nix::{
    errno::Errno,
    sys::signal::{kill, killpg, Signal},
    unistd::Pid,
};

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    /// Clock ticks after boot at which it started.
    pub start: u64,
}

/// Parses a `/proc/PID/stat` line; the command name may hold anything, even `) `.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

pub fn stat(pid: i32) -> Option<Stat> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Whether `pid` is still the process that started at `start` and has not exited.
pub fn is_same(pid: i32, start: u64) -> bool {
    pid > 0 && stat(pid).is_some_and(|s| s.start == start && !matches!(s.state, 'Z' | 'X' | 'x'))
}

/// Every process's pid and stat, for the rare scans (a kill, an agent's start).
pub fn all() -> Vec<(i32, Stat)> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect()
}

/// The live children of `parent`: for a subreaper, the orphans it adopted.
pub fn children_of(parent: i32) -> Vec<Pid> {
    all()
        .into_iter()
        .filter(|(_, s)| s.ppid == parent && !matches!(s.state, 'Z' | 'X' | 'x'))
        .map(|(pid, _)| Pid::from_raw(pid))
        .collect()
}

/// Signals a process group; one already gone is fine.
pub fn signal_group(pgid: i32, signal: Signal) {
    if pgid > 1 {
        match killpg(Pid::from_raw(pgid), signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(_) => {}
        }
    }
}

/// Signals one process; one already gone is fine.
pub fn signal_one(pid: Pid, signal: Signal) {
    if pid.as_raw() > 1 {
        let _ = kill(pid, signal);
    }
}

/// The value of `name` in the environment `pid` was started with, if it can be read.
pub fn environ_var(pid: i32, name: &str) -> Option<Vec<u8>> {
    let environ = fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ.split(|b| *b == 0).find_map(|entry| {
        entry
            .strip_prefix(name.as_bytes())
            .and_then(|rest| rest.strip_prefix(b"="))
            .map(<[u8]>::to_vec)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_are_read_past_odd_names() {
        let line = "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 \
                    8192 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                ppid: 1,
                pgrp: 4242,
                start: 987654
            })
        );
        assert_eq!(parse_stat("12 (x) S 1"), None);
    }

    #[test]
    fn this_process_is_itself_and_not_another() {
        let me = std::process::id() as i32;
        let start = stat(me).unwrap().start;
        assert!(is_same(me, start));
        assert!(!is_same(me, start + 1));
        assert!(!is_same(0, start));
        assert!(environ_var(me, "PATH").is_some() || std::env::var_os("PATH").is_none());
    }
}
