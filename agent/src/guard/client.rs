//! The agent's side of guardians: a pool of guardian processes (each exec'd once, then given
//! one attempt after another), and an attempt's conversation with its guardian.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, IoSlice},
    os::fd::{AsRawFd, OwnedFd},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Mutex,
    time::Duration,
};

use nix::sys::{
    signal::Signal,
    socket::{sendmsg, ControlMessage, MsgFlags},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, Interest},
    net::{
        unix::{ReadHalf, WriteHalf},
        UnixStream,
    },
};

use super::{
    cgroup,
    confine::Confine,
    guardian::ARGV0,
    procs,
    protocol::{split_frames, FromGuard, Spec, ToGuard},
    GUARD_MARK,
};

/// Starts and keeps the guardians of this agent's attempts.
pub struct Guards {
    exe: PathBuf,
    /// Guardians between attempts, at most `keep`.
    idle: Mutex<Vec<Guarded>>,
    keep: usize,
    /// The agent's cgroup sub-tree: attempts' cgroups go under it.
    cgroup: Option<PathBuf>,
    /// Where guardians leave their records.
    records: Option<PathBuf>,
    /// The work directory's lock, held for the agent's life.
    _lock: Option<File>,
    /// The user and limits of every task.
    confine: Confine,
}

impl Guards {
    /// Guardians run by `exe` (the agent's binary) in helper mode; `keep` of them are kept
    /// between attempts (the agent's slots).
    pub fn new(
        exe: PathBuf,
        keep: usize,
        cgroup: Option<PathBuf>,
        records: Option<PathBuf>,
        lock: Option<File>,
    ) -> Self {
        Guards {
            exe,
            idle: Mutex::new(Vec::new()),
            keep,
            cgroup,
            records,
            _lock: lock,
            confine: Confine::default(),
        }
    }

    /// These guards' tasks run confined by `confine`.
    pub fn confining(mut self, confine: Confine) -> Self {
        self.confine = confine;
        self
    }

    /// The user and limits of every task.
    pub fn confine(&self) -> &Confine {
        &self.confine
    }

    pub fn cgroup(&self) -> Option<&Path> {
        self.cgroup.as_deref()
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<Guarded>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn start_guardian(&self) -> io::Result<Guarded> {
        let (ours, theirs) = std::os::unix::net::UnixStream::pair()?;
        let mut cmd = tokio::process::Command::new(&self.exe);
        // An empty environment but the mark: a guardian needs none, and a task must not find
        // the agent's variables (secrets among them) in its parent's /proc/PID/environ.
        cmd.arg0(ARGV0)
            .env_clear()
            .env(GUARD_MARK, "1")
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            // Away from the agent's group: a Ctrl-C at the agent's terminal is the agent's.
            .process_group(0)
            .kill_on_drop(false);
        let child = cmd.spawn()?;
        ours.set_nonblocking(true)?;
        Ok(Guarded {
            stream: UnixStream::from_std(ours)?,
            child,
            buf: Vec::new(),
            queue: VecDeque::new(),
        })
    }

    /// A guardian for `spec` (its cgroup and record placed by these guards), whose task
    /// writes to `stdout` and `stderr`: an idle one, or a new one.
    pub async fn spawn(
        &self,
        mut spec: Spec,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> io::Result<Guarded> {
        spec.cgroup_parent = self.cgroup.clone();
        spec.records = self.records.clone();
        spec.confine = self.confine.clone();
        let frame = ToGuard::Spec(Box::new(spec)).encode();
        let fds = [stdout.as_raw_fd(), stderr.as_raw_fd()];
        loop {
            let (mut guarded, reused) = match self.take_idle() {
                Some(g) => (g, true),
                None => (self.start_guardian()?, false),
            };
            match guarded.send_spec(&frame, &fds).await {
                Ok(()) => return Ok(guarded),
                // A kept guardian that has died since: another one.
                Err(_) if reused => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// A kept guardian that is still running.
    fn take_idle(&self) -> Option<Guarded> {
        let mut idle = self.idle();
        while let Some(mut guarded) = idle.pop() {
            if matches!(guarded.child.try_wait(), Ok(None)) {
                return Some(guarded);
            }
        }
        None
    }

    /// Takes a guardian back once its attempt has ended; kept for the next one.
    pub fn give_back(&self, guarded: Guarded) {
        if guarded.buf.is_empty() && guarded.queue.is_empty() {
            let mut idle = self.idle();
            if idle.len() < self.keep {
                idle.push(guarded);
            }
        }
    }

    /// After a guardian ended without a word: kills what it guarded and removes its traces.
    pub async fn clean_up_after(&self, guard_pid: i32, shell_pid: i32, cgroup: Option<PathBuf>) {
        procs::signal_group(shell_pid, Signal::SIGKILL);
        let record = self.records.as_ref().map(|r| r.join(guard_pid.to_string()));
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(dir) = cgroup {
                cgroup::kill_and_remove(&dir, Duration::from_secs(2));
            }
            if let Some(path) = record {
                let _ = std::fs::remove_file(path);
            }
        })
        .await;
    }

    /// Lets the idle guardians go and, with cgroups, leaves the sub-tree: the agent moves back
    /// to the cgroup it started in and removes what is empty.
    pub async fn shutdown(&self) {
        self.idle().clear();
        let Some(tree) = self.cgroup.clone() else {
            return;
        };
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(parent) = tree.parent() {
                let _ = std::fs::write(parent.join("cgroup.procs"), "0");
            }
            cgroup::wait_empty(&tree, Duration::from_secs(1));
            cgroup::remove_tree(&tree);
        })
        .await;
    }
}

/// One guardian and what it has said but not yet been read. Dropped, its socket closes: a
/// guardian whose agent's end closes stops its task and exits.
pub struct Guarded {
    stream: UnixStream,
    child: tokio::process::Child,
    buf: Vec<u8>,
    queue: VecDeque<FromGuard>,
}

impl Guarded {
    /// Sends an attempt's spec, the task's pipes riding on its first bytes.
    async fn send_spec(&mut self, frame: &[u8], fds: &[i32]) -> io::Result<()> {
        let fd = self.stream.as_raw_fd();
        let sent = self
            .stream
            .async_io(Interest::WRITABLE, || {
                let cmsgs = [ControlMessage::ScmRights(fds)];
                sendmsg::<()>(
                    fd,
                    &[IoSlice::new(frame)],
                    &cmsgs,
                    MsgFlags::MSG_NOSIGNAL,
                    None,
                )
                .map_err(io::Error::from)
            })
            .await?;
        self.stream.write_all(&frame[sent..]).await
    }

    /// The two halves of the conversation, usable at once.
    pub fn split(&mut self) -> (GuardRx<'_>, GuardTx<'_>) {
        let (rd, wr) = self.stream.split();
        (
            GuardRx {
                rd,
                buf: &mut self.buf,
                queue: &mut self.queue,
            },
            GuardTx { wr },
        )
    }
}

pub struct GuardRx<'a> {
    rd: ReadHalf<'a>,
    buf: &'a mut Vec<u8>,
    queue: &'a mut VecDeque<FromGuard>,
}

impl GuardRx<'_> {
    /// The guardian's next message; `None` once it has closed its end. Cancel-safe.
    pub async fn recv(&mut self) -> io::Result<Option<FromGuard>> {
        loop {
            if let Some(msg) = self.queue.pop_front() {
                return Ok(Some(msg));
            }
            let mut chunk = [0u8; 512];
            let n = self.rd.read(&mut chunk).await?;
            if n == 0 {
                return Ok(None);
            }
            self.buf.extend_from_slice(&chunk[..n]);
            let (frames, used) = split_frames(self.buf.as_slice()).map_err(io::Error::other)?;
            for frame in frames {
                self.queue
                    .push_back(FromGuard::decode(frame).map_err(io::Error::other)?);
            }
            self.buf.drain(..used);
        }
    }
}

pub struct GuardTx<'a> {
    wr: WriteHalf<'a>,
}

impl GuardTx<'_> {
    pub async fn send(&mut self, msg: &ToGuard) -> io::Result<()> {
        self.wr.write_all(&msg.encode()).await
    }
}
