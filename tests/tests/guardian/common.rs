//! What the guardian tests share: processes known by pid and start time (a pid reused by
//! another process is not taken for the one seen), the processes working in an agent's work
//! directory, an attempt seen running in the record, and an agent started on a work directory
//! the test chooses.

use std::{
    fs::OpenOptions,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use ferry_tests::{
    bin_path, eventually,
    job::{attempts, state},
    process_log_filter, Cli, AGENT_BIN,
};
use serde_json::Value;

/// The agent timeout of these tests' controllers.
pub const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stat {
    pub state: char,
    pub ppid: i32,
    pub pgrp: i32,
    pub session: i32,
    pub start: u64,
}

pub fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        pgrp: fields.get(2)?.parse().ok()?,
        session: fields.get(3)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Whether every thread of `pid` is stopped (a SIGSTOP takes effect thread by thread).
pub fn stopped(pid: i32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).is_ok_and(|text| {
            text.rfind(')')
                .and_then(|i| text[i + 1..].split_whitespace().next())
                .is_some_and(|state| state == "T" || state == "t")
        })
    })
}

/// A process as it was seen running: its pid and when it started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub pid: i32,
    pub stat: Stat,
}

impl Seen {
    /// The process `pid` now, if it runs.
    pub fn now(pid: i32) -> Option<Seen> {
        stat(pid)
            .filter(|s| s.state != 'Z')
            .map(|stat| Seen { pid, stat })
    }

    /// Whether that same process still runs (a zombie has ended; a new start time is another
    /// process under a reused pid).
    pub fn alive(&self) -> bool {
        stat(self.pid).is_some_and(|s| s.start == self.stat.start && s.state != 'Z')
    }
}

/// The processes a task named in `path` (lines `NAME PID`), in the order of `names`, once
/// all are there, each seen running.
pub async fn seen_pids(path: &Path, names: &[&str]) -> Vec<Seen> {
    let pids = eventually(
        &format!("the pids of {names:?} in {}", path.display()),
        Duration::from_secs(20),
        || async {
            let Ok(text) = std::fs::read_to_string(path) else {
                return Ok(None);
            };
            let pid = |name: &str| {
                text.lines().find_map(|l| {
                    let (n, pid) = l.split_once(' ')?;
                    (n == name)
                        .then(|| pid.trim().parse::<i32>().ok())
                        .flatten()
                })
            };
            Ok(names.iter().map(|n| pid(n)).collect::<Option<Vec<i32>>>())
        },
    )
    .await
    .unwrap();
    pids.into_iter()
        .map(|pid| Seen::now(pid).unwrap_or_else(|| panic!("process {pid} is not running")))
        .collect()
}

/// The live processes whose `FERRY_WORK_DIR` is one of `work`'s attempt directories: every
/// process a task of the agent on `work` started (unless it cleared its environment).
pub fn processes_in(work: &Path) -> Vec<i32> {
    let mut prefix = work.as_os_str().as_encoded_bytes().to_vec();
    prefix.extend_from_slice(b"/attempt-");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/environ")).is_ok_and(|env| {
                env.split(|b| *b == 0).any(|var| {
                    var.strip_prefix(b"FERRY_WORK_DIR=")
                        .is_some_and(|v| v.starts_with(&prefix))
                })
            }) && Seen::now(pid).is_some()
        })
        .collect()
}

/// The processes left in the cgroup sub-tree the agent on `work` recorded, if it used one.
pub fn cgroup_processes(work: &Path) -> Option<(PathBuf, Vec<i32>)> {
    let tree = std::fs::read_to_string(work.join(".ferry-agent/cgroup")).ok()?;
    let tree = PathBuf::from(tree.trim_end());
    fn procs(dir: &Path, out: &mut Vec<i32>) {
        if let Ok(text) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            out.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                procs(&entry.path(), out);
            }
        }
    }
    let mut pids = Vec::new();
    procs(&tree, &mut pids);
    Some((tree, pids))
}

/// Waits until attempt `number` of `task` is running in the record; the attempts then.
pub async fn running_attempt(cli: &Cli, job: &str, task: &str, number: u64) -> Vec<Value> {
    eventually(
        &format!("attempt {number} of {task} to be running"),
        Duration::from_secs(20),
        || async {
            let doc = cli.show(job).await?;
            let tries = attempts(&doc, task).to_vec();
            let running = tries
                .iter()
                .any(|a| a["number"] == number && state(a) == "running");
            Ok(running.then_some(tries))
        },
    )
    .await
    .unwrap()
}

/// A `ferry-agent` on a work directory the test chooses (the harness gives each agent its
/// own), so that another can be started on the same one; SIGKILLed on drop.
pub struct AgentOnDir {
    pub child: Child,
}

impl AgentOnDir {
    /// Starts `name` serving queue `etl` with `work` as its work directory, its log appended to
    /// `log`, and waits until the controller lists it as ready.
    pub async fn start(cli: &Cli, name: &str, work: &Path, log: &Path) -> AgentOnDir {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut cmd = Command::new(bin_path(AGENT_BIN));
        cmd.args(["--controller", cli.controller(), "--name", name])
            .args([
                "--queue",
                "etl",
                "--heartbeat-interval",
                "300ms",
                "--work-dir",
            ])
            .arg(work)
            // The tests run as root, and so do their tasks.
            .env("FERRY_ALLOW_ROOT_TASKS", "true")
            .env("RUST_LOG", process_log_filter())
            .env_remove("LD_LIBRARY_PATH")
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out));
        // SAFETY: one prctl, async-signal-safe: the agent dies with the test's thread.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
                    .map_err(std::io::Error::from)
            });
        }
        let agent = AgentOnDir {
            child: cmd.spawn().unwrap(),
        };
        eventually(
            &format!("{name} to be ready"),
            Duration::from_secs(20),
            || async {
                let listed = cli.agent(name).await?;
                Ok(listed.filter(|a| state(a) == "ready").map(drop))
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", ferry_tests::log_tail(log, 30)));
        agent
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for AgentOnDir {
    fn drop(&mut self) {
        self.kill9();
    }
}
