//! A guardian's task while it runs and at its end: signalling all of it (process group,
//! cgroup, orphans the guardian adopted as their subreaper), reaping, and the final kill that
//! leaves nothing the task started behind.

use std::{
    os::fd::AsFd,
    path::PathBuf,
    time::{Duration, Instant},
};

use nix::{
    errno::Errno,
    poll::{PollFd, PollFlags, PollTimeout},
    sys::{
        signal::Signal,
        signalfd::SignalFd,
        wait::{waitid, waitpid, Id, WaitPidFlag, WaitStatus},
    },
    unistd::getpid,
};

use super::{cgroup, procs};

/// How long the guardian waits for the task's processes to be gone after the final SIGKILL
/// (a process in uninterruptible sleep dies only when it wakes).
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// The task: its process group and, with cgroup v2, its cgroup.
pub(super) struct Task {
    pub pgid: i32,
    pub cgroup: Option<PathBuf>,
}

impl Task {
    /// Signals every process of the task. Without a cgroup, also the orphans this guardian
    /// adopted as a subreaper (processes that left the group, then lost their parent); that
    /// scan of `/proc` is done only when `adopted` says children are left.
    pub fn signal(&self, signal: Signal, adopted: bool) {
        procs::signal_group(self.pgid, signal);
        match &self.cgroup {
            Some(dir) => cgroup::signal(dir, signal),
            None if adopted => {
                for pid in procs::children_of(getpid().as_raw()) {
                    procs::signal_one(pid, signal);
                }
            }
            None => {}
        }
    }
}

/// Reaps the children that have exited, except the shell: its status once it has exited, left
/// a zombie until [`finish`] (its pid, so its process group's id, cannot be reused while the
/// group is signalled).
pub(super) fn exited(shell: i32) -> Option<WaitStatus> {
    let peek = WaitPidFlag::WEXITED | WaitPidFlag::WNOHANG | WaitPidFlag::WNOWAIT;
    loop {
        match waitid(Id::All, peek) {
            Ok(status) => match status.pid() {
                Some(pid) if pid.as_raw() == shell => return Some(status),
                Some(pid) => {
                    let _ = waitpid(pid, Some(WaitPidFlag::WNOHANG));
                }
                None => return None,
            },
            Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

/// Reaps every child that has exited; true when none is left.
pub(super) fn reap_all() -> bool {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => return false,
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return true,
        }
    }
}

/// SIGKILLs what is left of the task and reaps it, until this guardian has no child left
/// (as a subreaper, every process the task started ends up its child), at most
/// [`REAP_LIMIT`]. True when everything is gone. A task whose processes have all ended costs
/// one `killpg` and the reaping: its cgroup is not touched.
pub(super) fn finish(task: &Task, signals: &SignalFd) -> bool {
    let deadline = Instant::now() + REAP_LIMIT;
    // The group first, while its leader's zombie still holds its id.
    procs::signal_group(task.pgid, Signal::SIGKILL);
    loop {
        if reap_all() {
            return true;
        }
        // Children are left: what left the group too (the cgroup, adopted orphans).
        task.signal(Signal::SIGKILL, true);
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let mut fds = [PollFd::new(signals.as_fd(), PollFlags::POLLIN)];
        let ms = left.as_millis().clamp(1, 50) as i32;
        let _ = nix::poll::poll(
            &mut fds,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        );
        while let Ok(Some(_)) = signals.read_signal() {}
    }
}
