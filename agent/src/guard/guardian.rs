//! A guardian: the agent's binary in helper mode (`argv[0]` [`ARGV0`]), exec'd once and kept
//! by the agent for one attempt after another, never two at once. For each attempt it starts
//! the task (`/bin/sh -c …` in its own process group and, with cgroup v2, its own cgroup),
//! holds the attempt's lease on the boot clock, and stops the whole task when the lease is
//! not renewed, when the agent's end of the control socket closes, at the task's timeout, or
//! when asked — without the agent being alive or scheduled. It loads no config and starts no
//! runtime: a blocking loop over poll(2) on the control socket, a signalfd (SIGCHLD, and
//! SIGTERM/SIGINT/SIGHUP to itself) and a timerfd on `CLOCK_BOOTTIME` set to the next
//! deadline, so that one passed during a suspend or a freeze fires as soon as the machine runs.

use std::{
    io,
    os::{
        fd::{AsFd, FromRawFd, OwnedFd},
        unix::net::UnixStream,
    },
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use nix::{
    errno::Errno,
    fcntl::OFlag,
    poll::{PollFd, PollFlags, PollTimeout},
    sys::stat::Mode,
    sys::{
        signal::{SigSet, Signal},
        signalfd::{SfdFlags, SignalFd},
        time::TimeSpec,
        timer::{Expiration, TimerSetTimeFlags},
        timerfd::{ClockId, TimerFd, TimerFlags},
        wait::WaitStatus,
    },
    unistd::{getpid, setpgid, Pid},
};

use super::{
    boot_now, cgroup,
    conn::{Conn, Incoming},
    deadline::{Action, Plan, Why},
    procs,
    protocol::{Ending, FromGuard, Spec, ToGuard},
    records::{self, Record},
    spawn::Spawner,
    task::{exited, finish, reap_all, Task},
};

/// `argv[0]` of a guardian; `main` looks for it before anything else.
pub const ARGV0: &str = "ferry-agent-guard";

/// What a guardian holds for its whole life.
struct Guardian {
    conn: Conn,
    signals: SignalFd,
    timer: TimerFd,
    me: i32,
    /// Cgroups made so far (each gets a name of its own).
    made: u64,
    /// The empty cgroup the next attempt runs in, kept (and open) from the last one.
    cgroup: Option<(PathBuf, OwnedFd)>,
    spawner: Spawner,
}

/// The guardian's main loop; the agent's end of its control socket is its stdin.
pub fn main() -> ExitCode {
    match Guardian::new() {
        Ok(mut guardian) => {
            guardian.serve();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("ferry-agent guardian: {e}");
            ExitCode::FAILURE
        }
    }
}

impl Guardian {
    fn new() -> io::Result<Self> {
        // Its own process group (the agent's terminal signals are the agent's), a name in
        // `ps`, and every orphan of its tasks as its child.
        let _ = setpgid(Pid::from_raw(0), Pid::from_raw(0));
        let _ = nix::sys::prctl::set_name(c"ferry-guard");
        nix::sys::prctl::set_child_subreaper(true)?;
        let mut mask = SigSet::empty();
        for s in [
            Signal::SIGCHLD,
            Signal::SIGTERM,
            Signal::SIGINT,
            Signal::SIGHUP,
        ] {
            mask.add(s);
        }
        mask.thread_block()?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        let timer = TimerFd::new(
            ClockId::CLOCK_BOOTTIME,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: fd 0 is the control socket the agent gave as stdin, ours alone.
        let sock = UnixStream::from(unsafe { OwnedFd::from_raw_fd(0) });
        Ok(Guardian {
            conn: Conn::new(sock)?,
            signals,
            timer,
            me: getpid().as_raw(),
            made: 0,
            cgroup: None,
            spawner: Spawner::new()?,
        })
    }

    /// Runs attempts as they come, until the agent closes its end or a signal says stop; then
    /// removes the cgroup it kept.
    fn serve(&mut self) {
        self.serve_attempts();
        if let Some((dir, fd)) = self.cgroup.take() {
            drop(fd);
            let _ = std::fs::remove_dir(dir);
        }
    }

    fn serve_attempts(&mut self) {
        let _ = self.timer.unset();
        let mut next: Option<(Box<Spec>, OwnedFd, OwnedFd)> = None;
        loop {
            if let Some((spec, stdout, stderr)) = next.take() {
                self.attempt(*spec, stdout, stderr);
            }
            if !self.conn.open {
                return;
            }
            let mut fds = [
                PollFd::new(self.conn.fd(), PollFlags::POLLIN),
                PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            ];
            if let Err(e) = nix::poll::poll(&mut fds, PollTimeout::NONE) {
                if e != Errno::EINTR {
                    return;
                }
            }
            // Between attempts, a stop request is for an attempt that has already ended.
            for incoming in self.conn.read_available() {
                if let Incoming::Attempt(spec, stdout, stderr) = incoming {
                    next = Some((spec, stdout, stderr));
                }
            }
            while let Ok(Some(info)) = self.signals.read_signal() {
                if info.ssi_signo != Signal::SIGCHLD as u32 {
                    return;
                }
            }
            // Stragglers of an earlier task that were slow to die.
            reap_all();
        }
    }

    /// A new cgroup for attempts under `parent`, open; `None` if it cannot be made.
    fn make_cgroup(&mut self, parent: &std::path::Path) -> Option<(PathBuf, OwnedFd)> {
        self.made += 1;
        let dir = parent.join(format!("attempt-{}-{}", self.me, self.made));
        std::fs::create_dir(&dir).ok()?;
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        match nix::fcntl::open(&dir, flags, Mode::empty()) {
            Ok(fd) => Some((dir, fd)),
            Err(_) => {
                let _ = std::fs::remove_dir(&dir);
                None
            }
        }
    }

    /// Runs one attempt to its end, and says how it ended.
    fn attempt(&mut self, spec: Spec, stdout: OwnedFd, stderr: OwnedFd) {
        let cgroup = match (self.cgroup.take(), &spec.cgroup_parent) {
            (Some((kept, fd)), Some(parent)) if kept.starts_with(parent) => Some((kept, fd)),
            (_, Some(parent)) => match self.make_cgroup(parent) {
                // Its limits before anything runs in it (a kept one has them already).
                Some((dir, fd)) => {
                    let cpu_max = spec.confine.cpu_max.map(|m| m.file_text());
                    match cgroup::set_limits(&dir, spec.confine.memory_max, cpu_max.as_deref()) {
                        Ok(()) => Some((dir, fd)),
                        Err(e) => {
                            drop(fd);
                            let _ = std::fs::remove_dir(&dir);
                            self.conn.send(&FromGuard::Failed(e));
                            return;
                        }
                    }
                }
                None => None,
            },
            (_, None) => None,
        };
        // The cgroup's count goes on from earlier attempts: this one's is the difference.
        let oom_before = match (&cgroup, spec.confine.memory_max) {
            (Some((dir, _)), Some(_)) => cgroup::oom_kills(dir),
            _ => 0,
        };
        let placed = cgroup.as_ref().map(|(dir, fd)| (dir.as_path(), fd));
        let shell = match self.spawner.start(&spec, placed, stdout, stderr) {
            Ok(pid) => pid,
            Err(e) => {
                let program = spec.argv.first().map(|a| a.to_string_lossy().into_owned());
                self.conn.send(&FromGuard::Failed(format!(
                    "cannot start {}: {e}",
                    program.unwrap_or_default()
                )));
                if let Some((dir, _)) = &cgroup {
                    let _ = std::fs::remove_dir(dir);
                }
                return;
            }
        };
        let started = boot_now();
        let dir = cgroup.as_ref().map(|(dir, _)| dir.clone());
        let task = Task {
            pgid: shell,
            cgroup: dir.clone(),
        };
        // With a cgroup, the agent's record of its sub-tree is enough to find the task again.
        let record = spec
            .records
            .as_ref()
            .filter(|_| cgroup.is_none())
            .and_then(|dir| {
                let record = Record {
                    guard: (self.me, procs::stat(self.me).map_or(0, |s| s.start)),
                    shell: (shell, procs::stat(shell).map_or(0, |s| s.start)),
                    cgroup: None,
                    dir: spec.cwd.clone(),
                };
                records::write(dir, &record).ok()
            });
        self.conn.send(&FromGuard::Started {
            guard_pid: self.me,
            shell_pid: shell,
            cgroup: dir,
        });

        let mut plan = Plan::new(
            spec.lease_end,
            spec.agent_timeout,
            spec.kill_grace,
            spec.timeout.map(|t| started + t),
        );
        // The agent gone before the task started: it is stopped at once.
        if !self.conn.open {
            plan.agent_gone(started);
        }
        let status = self.watch(&mut plan, &task);

        // Whatever the outcome, nothing the task started outlives it.
        let emptied = finish(&task, &self.signals);
        if let (Some(dir), Some(_)) = (&task.cgroup, spec.confine.memory_max) {
            let oom_kills = cgroup::oom_kills(dir).saturating_sub(oom_before);
            if oom_kills > 0 {
                self.conn.send(&FromGuard::OomKills(oom_kills));
            }
        }
        let _ = self.timer.unset();
        if let Some((dir, fd)) = cgroup {
            if emptied {
                // Kept for the next attempt: no cgroup to make and remove per task.
                self.cgroup = Some((dir, fd));
            } else {
                drop(fd);
                // Not emptied in time (a process in uninterruptible sleep): removed if it
                // empties within a second, else left for the next agent on this directory.
                cgroup::wait_empty(&dir, Duration::from_secs(1));
                cgroup::remove_tree(&dir);
            }
        }
        if let Some(path) = record {
            let _ = std::fs::remove_file(path);
        }
        let ending = match (plan.why(), status) {
            (Some(Why::Lease), _) => Ending::LeaseExpired,
            (Some(Why::Timeout), _) => Ending::TimedOut,
            (Some(Why::Asked | Why::AgentGone), _) => Ending::Stopped,
            (None, WaitStatus::Exited(_, code)) => Ending::Exited(code),
            (None, WaitStatus::Signaled(_, sig, _)) => Ending::Signaled(sig as i32),
            (None, _) => Ending::Signaled(0),
        };
        self.conn.send(&FromGuard::Ended(ending));
    }

    /// Watches the task until its shell has exited: applies the plan's actions, renewals and
    /// stop requests. Returns the shell's wait status.
    fn watch(&mut self, plan: &mut Plan, task: &Task) -> WaitStatus {
        let (conn, signals, timer, shell) = (&mut self.conn, &self.signals, &self.timer, task.pgid);
        loop {
            let now = boot_now();
            let (actions, wake) = plan.step(now);
            for action in actions {
                match action {
                    Action::Term => task.signal(Signal::SIGTERM, true),
                    Action::Kill => task.signal(Signal::SIGKILL, true),
                }
            }
            let _ = match wake {
                Some(at) => timer.set(
                    Expiration::OneShot(TimeSpec::from_duration(at)),
                    TimerSetTimeFlags::TFD_TIMER_ABSTIME,
                ),
                None => timer.unset(),
            };
            if let Some(status) = exited(shell) {
                return status;
            }
            let mut fds = vec![
                PollFd::new(signals.as_fd(), PollFlags::POLLIN),
                PollFd::new(timer.as_fd(), PollFlags::POLLIN),
            ];
            if conn.open {
                // A closed end reads as readable (then EOF).
                fds.push(PollFd::new(conn.fd(), PollFlags::POLLIN));
            }
            match nix::poll::poll(&mut fds, PollTimeout::NONE) {
                Ok(_) | Err(Errno::EINTR) => {}
                Err(_) => return WaitStatus::StillAlive,
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(PollFd::revents)
                    .is_some_and(|r| !r.is_empty())
            };
            let (sig_ready, conn_ready) = (ready(0), ready(2));
            drop(fds);
            let now = boot_now();
            if conn_ready {
                for incoming in conn.read_available() {
                    match incoming {
                        Incoming::Msg(ToGuard::Lease(end)) => plan.renew(end),
                        Incoming::Msg(ToGuard::Term) => plan.asked(now, false),
                        Incoming::Msg(ToGuard::Kill) => plan.asked(now, true),
                        // Never while an attempt runs: the agent waits for the end of this one.
                        Incoming::Msg(ToGuard::Spec(_)) | Incoming::Attempt(..) => {}
                    }
                }
                if !conn.open {
                    plan.agent_gone(now);
                }
            }
            if sig_ready {
                while let Ok(Some(info)) = signals.read_signal() {
                    if info.ssi_signo != Signal::SIGCHLD as u32 {
                        plan.asked(now, false);
                    }
                }
            }
        }
    }
}
