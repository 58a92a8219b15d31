//! What an agent leaves in its work directory so that the next agent started on it can stop
//! whatever this one's tasks left behind (its guardians killed with it, say): a record per
//! running guardian (its pid and the shell's, each with its start time, so that a pid since
//! reused by another process is never taken for them; the attempt's cgroup and directory), the
//! incarnation's cgroup sub-tree, and the sweep that kills and removes them at start.

use std::{
    fs, io,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};

use super::{cgroup, procs};

/// The records directory inside the agent's state directory.
pub const GUARDS: &str = "guards";
/// The file naming the incarnation's cgroup sub-tree.
pub const CGROUP: &str = "cgroup";

/// One running guardian and its task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Pid and start time (clock ticks after boot).
    pub guard: (i32, u64),
    /// The task's shell, leader of its process group.
    pub shell: (i32, u64),
    pub cgroup: Option<PathBuf>,
    /// The attempt's working directory.
    pub dir: PathBuf,
}

impl Record {
    pub fn encode(&self) -> String {
        let mut text = format!(
            "guard {} {}\nshell {} {}\ndir {}\n",
            self.guard.0,
            self.guard.1,
            self.shell.0,
            self.shell.1,
            self.dir.display()
        );
        if let Some(cgroup) = &self.cgroup {
            text.push_str(&format!("cgroup {}\n", cgroup.display()));
        }
        text
    }

    pub fn parse(text: &str) -> Option<Record> {
        let mut guard = None;
        let mut shell = None;
        let mut cgroup = None;
        let mut dir = None;
        let pair = |v: &str| -> Option<(i32, u64)> {
            let (pid, start) = v.split_once(' ')?;
            Some((pid.parse().ok()?, start.parse().ok()?))
        };
        for line in text.lines() {
            match line.split_once(' ') {
                Some(("guard", v)) => guard = pair(v),
                Some(("shell", v)) => shell = pair(v),
                Some(("cgroup", v)) => cgroup = Some(PathBuf::from(v)),
                Some(("dir", v)) => dir = Some(PathBuf::from(v)),
                _ => {}
            }
        }
        Some(Record {
            guard: guard?,
            shell: shell?,
            cgroup,
            dir: dir?,
        })
    }
}

/// Writes a guardian's record (named by its pid); its path, to remove it when done.
pub fn write(dir: &Path, record: &Record) -> io::Result<PathBuf> {
    let path = dir.join(record.guard.0.to_string());
    fs::write(&path, record.encode())?;
    Ok(path)
}

/// What a sweep stopped.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Processes killed one by one: guardians, task groups, strays found by their variables.
    pub processes: usize,
    /// cgroups killed and removed.
    pub cgroups: usize,
}

/// Stops what an earlier agent on `state` (its state directory, inside `work_root`) left:
/// the guardians and tasks of its records, its cgroup sub-tree, and any process still
/// working in one of `work_root`'s attempt directories (`FERRY_WORK_DIR`, which every task
/// process inherits unless it clears its environment). Call it only while holding the state
/// directory's lock, before this agent starts a task.
pub fn sweep(state: &Path, work_root: &Path) -> Swept {
    let mut swept = Swept::default();
    let mut killed: Vec<i32> = Vec::new();
    let guards = state.join(GUARDS);
    for entry in fs::read_dir(&guards).into_iter().flatten().flatten() {
        let path = entry.path();
        if let Some(record) = fs::read_to_string(&path)
            .ok()
            .and_then(|t| Record::parse(&t))
        {
            let (guard, shell) = (record.guard, record.shell);
            if procs::is_same(guard.0, guard.1) {
                procs::signal_one(Pid::from_raw(guard.0), Signal::SIGKILL);
                killed.push(guard.0);
            }
            if procs::is_same(shell.0, shell.1) {
                procs::signal_group(shell.0, Signal::SIGKILL);
                killed.push(shell.0);
            }
            if let Some(dir) = &record.cgroup {
                if dir.exists() {
                    swept.cgroups += 1;
                    cgroup::kill_and_remove(dir, Duration::from_secs(2));
                }
            }
        }
        let _ = fs::remove_file(&path);
    }
    if let Ok(tree) = fs::read_to_string(state.join(CGROUP)) {
        let tree = PathBuf::from(tree.trim_end());
        if tree.is_absolute() && tree.exists() {
            swept.cgroups += 1;
            cgroup::kill_and_remove(&tree, Duration::from_secs(2));
        }
        let _ = fs::remove_file(state.join(CGROUP));
    }
    let mut prefix = work_root.as_os_str().as_encoded_bytes().to_vec();
    prefix.extend_from_slice(b"/attempt-");
    let me = std::process::id() as i32;
    for (pid, _) in procs::all() {
        if pid != me
            && procs::environ_var(pid, "FERRY_WORK_DIR").is_some_and(|v| v.starts_with(&prefix))
        {
            procs::signal_one(Pid::from_raw(pid), Signal::SIGKILL);
            killed.push(pid);
        }
    }
    swept.processes = killed.len();
    // Gone before this agent goes on (a SIGKILLed process exits at once unless it sleeps in
    // the kernel).
    let deadline = Instant::now() + Duration::from_secs(2);
    while killed.iter().any(|&pid| alive(pid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    swept
}

fn alive(pid: i32) -> bool {
    procs::stat(pid).is_some_and(|s| !matches!(s.state, 'Z' | 'X' | 'x'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back() {
        let record = Record {
            guard: (10, 200),
            shell: (11, 201),
            cgroup: Some("/sys/fs/cgroup/a b/attempt-10".into()),
            dir: "/w/attempt-3".into(),
        };
        assert_eq!(Record::parse(&record.encode()), Some(record.clone()));
        let bare = Record {
            cgroup: None,
            ..record
        };
        assert_eq!(Record::parse(&bare.encode()), Some(bare));
        assert_eq!(Record::parse("guard 1 2\n"), None);
    }

    #[test]
    fn a_sweep_kills_a_recorded_group_and_a_stray_but_not_a_reused_pid() {
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join(".ferry-agent");
        fs::create_dir_all(state.join(GUARDS)).unwrap();
        let attempt = tmp.path().join("attempt-0");
        fs::create_dir(&attempt).unwrap();
        let spawn = |env: Option<&Path>| {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("100");
            std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
            if let Some(dir) = env {
                cmd.env("FERRY_WORK_DIR", dir);
            }
            cmd.spawn().unwrap()
        };
        // A group the record names, a stray working in an attempt dir, and a process whose
        // pid a record names with another start time (a reused pid).
        let mut grouped = spawn(None);
        let mut stray = spawn(Some(&attempt));
        let mut innocent = spawn(None);
        let start = |c: &std::process::Child| procs::stat(c.id() as i32).unwrap().start;
        let record = |pid: i32, start: u64| Record {
            guard: (i32::MAX - 1, 1),
            shell: (pid, start),
            cgroup: None,
            dir: attempt.clone(),
        };
        fs::write(
            state.join(GUARDS).join("1"),
            record(grouped.id() as i32, start(&grouped)).encode(),
        )
        .unwrap();
        fs::write(
            state.join(GUARDS).join("2"),
            record(innocent.id() as i32, start(&innocent) + 1).encode(),
        )
        .unwrap();

        let swept = sweep(&state, tmp.path());
        assert_eq!(swept.processes, 2, "{swept:?}");
        // The sweep returns once they are gone: their exit is there to collect.
        let killed = |c: &mut std::process::Child| matches!(c.try_wait(), Ok(Some(status)) if status.code().is_none());
        assert!(killed(&mut grouped), "the recorded group is killed");
        assert!(killed(&mut stray), "the stray is killed");
        assert!(
            innocent.try_wait().unwrap().is_none(),
            "a reused pid is left alone"
        );
        assert_eq!(fs::read_dir(state.join(GUARDS)).unwrap().count(), 0);
        innocent.kill().unwrap();
        innocent.wait().unwrap();
    }
}
