//! Guardians (DESIGN.md invariant 7): a task never outlives its agent's lease, even when the
//! agent is killed, crashes or is frozen. Each shell attempt runs under a guardian process
//! (`guardian.rs`, the agent's binary in helper mode) that holds the attempt's lease on the
//! boot clock, renewed by the agent over a socket after each acknowledged heartbeat, and stops
//! the whole task — process group, cgroup, adopted orphans — when the renewals stop or the
//! agent's end closes. A guardian serves one attempt at a time and is kept for the next
//! (`client.rs`): an exec of the agent's large binary per task would cost more than the task's
//! own shell.
//!
//! ```text
//! ferry-agent                          cgroup <own>/ferry-agent-<pid>/agent
//!  └─ ferry-guard (one per running     same cgroup, own process group, subreaper of its tasks
//!      │           attempt, reused)
//!      └─ /bin/sh -c COMMAND           cgroup <own>/ferry-agent-<pid>/attempt-<guard>-<n>,
//!          └─ …                        process group of its own
//! ```
//!
//! The agent keeps a state directory in its work dir (`.ferry-agent/`: a lock, the sub-tree's
//! path, a record per guardian) so that the next agent on that directory stops what this one
//! left (`records.rs`).

pub mod cgroup;
pub mod client;
pub mod confine;
mod conn;
pub mod deadline;
pub mod guardian;
pub mod procs;
pub mod protocol;
pub mod records;
mod spawn;
mod task;

use std::{
    fs, io,
    path::{Path, PathBuf},
    process::ExitCode,
};

use tracing::{info, warn};

pub use self::client::{GuardRx, GuardTx, Guarded, Guards};
use self::confine::Confine;
pub(crate) use crate::clock::boot_now;

/// The agent's state directory inside its work dir.
pub const STATE_DIR: &str = ".ferry-agent";

/// Runs a guardian when this process was started as one (`argv[0]`); `main` asks before it
/// reads any config.
pub fn helper_main() -> Option<ExitCode> {
    let argv0 = std::env::args_os().next()?;
    let name = Path::new(&argv0).file_name()?;
    (name == guardian::ARGV0).then(guardian::main)
}

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("another ferry-agent uses the work directory {0}")]
    InUse(PathBuf),
    #[error("started as a guardian, but {0} has no guardian mode")]
    NotAGuardian(PathBuf),
    #[error("cannot prepare the agent's state in {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Set in a guardian's environment; an agent that finds it refuses to run (a guardian started
/// from a binary without the helper mode would otherwise start agents, each starting
/// another). Never passed on to tasks.
pub const GUARD_MARK: &str = "FERRY_AGENT_GUARDIAN";

/// Before the agent's first task: locks the work directory, stops what an earlier agent on it
/// left running, and sets up cgroups where cgroup v2 is writable (saying once when it is not,
/// and when the cgroup limits of `confine` cannot be applied: its rlimits and user still are).
/// Guardians will run `exe` in helper mode and confine their tasks by `confine`.
pub async fn prepare(
    work_dir: &Path,
    exe: PathBuf,
    keep: usize,
    confine: Confine,
) -> Result<Guards, PrepareError> {
    if std::env::var_os(GUARD_MARK).is_some() {
        return Err(PrepareError::NotAGuardian(exe));
    }
    let work_dir = work_dir.to_owned();
    tokio::task::spawn_blocking(move || prepare_blocking(&work_dir, exe, keep, confine))
        .await
        .map_err(|e| PrepareError::State {
            path: PathBuf::new(),
            source: io::Error::other(e),
        })?
}

fn prepare_blocking(
    work_dir: &Path,
    exe: PathBuf,
    keep: usize,
    mut confine: Confine,
) -> Result<Guards, PrepareError> {
    let state = work_dir.join(STATE_DIR);
    let fail = |source| PrepareError::State {
        path: state.clone(),
        source,
    };
    fs::create_dir_all(state.join(records::GUARDS)).map_err(fail)?;
    let lock = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state.join("lock"))
        .map_err(fail)?;
    match lock.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => return Err(PrepareError::InUse(work_dir.to_owned())),
        Err(fs::TryLockError::Error(e)) => return Err(fail(e)),
    }
    let swept = records::sweep(&state, work_dir);
    if swept != records::Swept::default() {
        warn!(
            processes = swept.processes,
            cgroups = swept.cgroups,
            "stopped what an earlier agent on this work directory left running"
        );
    }
    let cgroup = match cgroup::setup() {
        Ok(tree) => {
            fs::write(
                state.join(records::CGROUP),
                tree.as_os_str().as_encoded_bytes(),
            )
            .map_err(fail)?;
            info!(cgroup = %tree.display(), "each task runs in a cgroup of its own");
            Some(tree)
        }
        Err(reason) => {
            warn!(
                %reason,
                "cgroup v2 is not writable here: a task is stopped through its process group and its guardian's adopted orphans, and one that escapes both while its guardian is killed survives"
            );
            None
        }
    };
    cgroup_limits(cgroup.as_deref(), &mut confine);
    Ok(Guards::new(
        exe,
        keep,
        cgroup,
        Some(state.join(records::GUARDS)),
        Some(lock),
    )
    .confining(confine))
}

/// Enables the controllers the cgroup limits of `confine` need in the agent's sub-tree `tree`;
/// where that cannot be done, says so once and leaves those limits out.
fn cgroup_limits(tree: Option<&Path>, confine: &mut Confine) {
    let mut wanted = Vec::new();
    if confine.memory_max.is_some() {
        wanted.push("memory");
    }
    if confine.cpu_max.is_some() {
        wanted.push("cpu");
    }
    if wanted.is_empty() {
        return;
    }
    let enabled = match tree {
        Some(tree) => cgroup::enable_controllers(tree, &wanted),
        None => Err("cgroup v2 is not writable here".to_owned()),
    };
    match enabled {
        Ok(()) => info!(
            memory_max = ?confine.memory_max,
            cpu_max = ?confine.cpu_max.map(|m| m.file_text()),
            "each attempt's cgroup is limited"
        ),
        Err(reason) => {
            warn!(
                %reason,
                settings = ?wanted.iter().map(|c| format!("cgroup.{c}_max")).collect::<Vec<_>>(),
                "the cgroup limits cannot be applied here and are left out; rlimits still apply"
            );
            confine.memory_max = None;
            confine.cpu_max = None;
        }
    }
}
