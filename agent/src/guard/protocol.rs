//! What the agent and a guardian say on their control socket: length-prefixed frames, a tag
//! byte and a payload, binary-safe (commands and environment values are bytes). For each
//! attempt the agent sends its `Spec` (the task's stdout and stderr ride along as
//! `SCM_RIGHTS`), then lease renewals and stop requests; the guardian answers `Started` once
//! the task runs and `Ended` or `Failed` once it is over, then waits for the next spec.

use super::confine::{Confine, CpuMax, Creds, Rlimit};
use std::{
    ffi::OsString,
    os::unix::ffi::{OsStrExt, OsStringExt},
    path::PathBuf,
    time::Duration,
};

/// Largest frame either side accepts (a command is at most 128 KiB, the environment a few).
pub const MAX_FRAME: usize = 16 << 20;

/// What a guardian needs to start and watch one attempt's task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// `job/task/attempt`, for diagnostics.
    pub label: String,
    /// The lease's end at the start, on the boot clock.
    pub lease_end: Duration,
    pub agent_timeout: Duration,
    pub kill_grace: Duration,
    /// The task's own timeout, counted from its start.
    pub timeout: Option<Duration>,
    /// Where to make the attempt's cgroup; `None` without a writable cgroup v2.
    pub cgroup_parent: Option<PathBuf>,
    /// Where to leave the record a later agent finds leftovers by.
    pub records: Option<PathBuf>,
    pub cwd: PathBuf,
    /// The program and its arguments (`/bin/sh -c COMMAND`).
    pub argv: Vec<OsString>,
    /// The task's whole environment (`crate::task_env`): nothing of the guardian's is added.
    pub env: Vec<(OsString, OsString)>,
    /// Its user, resource limits and cgroup limits (set by the agent's guards).
    pub confine: Confine,
}

/// Agent → guardian.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToGuard {
    Spec(Box<Spec>),
    /// The lease now ends at this instant of the boot clock.
    Lease(Duration),
    /// Stop the task: SIGTERM, SIGKILL after the grace.
    Term,
    /// Stop the task now: SIGKILL.
    Kill,
}

/// How a guarded task ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    Exited(i32),
    Signaled(i32),
    /// Stopped by the guardian at the task's timeout.
    TimedOut,
    /// Stopped by the guardian because the lease was not renewed in time.
    LeaseExpired,
    /// Stopped because the agent asked, or the guardian was told to stop.
    Stopped,
}

/// Guardian → agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromGuard {
    /// The task runs: the guardian's pid, the shell's (its process group), its cgroup.
    Started {
        guard_pid: i32,
        shell_pid: i32,
        cgroup: Option<PathBuf>,
    },
    Ended(Ending),
    /// Sent just before `Ended` when the kernel OOM-killed processes of the attempt's cgroup
    /// (`memory.events` `oom_kill`, counted over this attempt).
    OomKills(u64),
    /// The task could not be started; nothing runs.
    Failed(String),
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame of {0} bytes is too large")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Malformed(&'static str),
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(tag: u8) -> Self {
        let mut buf = Vec::with_capacity(64);
        buf.extend_from_slice(&[0; 4]);
        buf.push(tag);
        Writer(buf)
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn dur(&mut self, d: Duration) {
        self.u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
    }
    fn opt_dur(&mut self, d: Option<Duration>) {
        match d {
            Some(d) => {
                self.0.push(1);
                self.dur(d);
            }
            None => self.0.push(0),
        }
    }
    fn opt(&mut self, b: Option<&[u8]>) {
        match b {
            Some(b) => {
                self.0.push(1);
                self.bytes(b);
            }
            None => self.0.push(0),
        }
    }
    fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.0.push(1);
                self.u64(v);
            }
            None => self.0.push(0),
        }
    }
    fn confine(&mut self, c: &Confine) {
        match &c.user {
            Some(creds) => {
                self.0.push(1);
                self.u64(u64::from(creds.uid));
                self.u64(u64::from(creds.gid));
                self.u64(creds.groups.len() as u64);
                for g in &creds.groups {
                    self.u64(u64::from(*g));
                }
            }
            None => self.0.push(0),
        }
        self.u64(c.rlimits.len() as u64);
        for limit in &c.rlimits {
            let (resource, soft, hard) = limit.to_raw();
            self.u64(u64::from(resource));
            self.u64(soft);
            self.u64(hard);
        }
        self.opt_u64(c.memory_max);
        self.opt_u64(c.cpu_max.map(|m| m.quota));
        self.opt_u64(c.cpu_max.map(|m| m.period));
    }
    fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() - 4) as u32;
        self.0[..4].copy_from_slice(&len.to_le_bytes());
        self.0
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.0.len() < n {
            return Err(FrameError::Malformed("truncated"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    fn u64(&mut self) -> Result<u64, FrameError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    fn dur(&mut self) -> Result<Duration, FrameError> {
        Ok(Duration::from_nanos(self.u64()?))
    }
    fn bytes(&mut self) -> Result<&'a [u8], FrameError> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    fn os(&mut self) -> Result<OsString, FrameError> {
        Ok(OsString::from_vec(self.bytes()?.to_vec()))
    }
    fn opt_os(&mut self) -> Result<Option<OsString>, FrameError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.os().map(Some),
        }
    }
    fn u32_of_u64(&mut self) -> Result<u32, FrameError> {
        u32::try_from(self.u64()?).map_err(|_| FrameError::Malformed("id out of range"))
    }
    fn opt_u64(&mut self) -> Result<Option<u64>, FrameError> {
        match self.u8()? {
            0 => Ok(None),
            _ => self.u64().map(Some),
        }
    }
    fn confine(&mut self) -> Result<Confine, FrameError> {
        let user = match self.u8()? {
            0 => None,
            _ => {
                let uid = self.u32_of_u64()?;
                let gid = self.u32_of_u64()?;
                let n = self.u64()?;
                if n > 65_536 {
                    return Err(FrameError::Malformed("too many groups"));
                }
                let groups = (0..n)
                    .map(|_| self.u32_of_u64())
                    .collect::<Result<_, _>>()?;
                Some(Creds { uid, gid, groups })
            }
        };
        let n = self.u64()?;
        let mut rlimits = Vec::new();
        for _ in 0..n {
            let raw = (self.u32_of_u64()?, self.u64()?, self.u64()?);
            rlimits.push(Rlimit::from_raw(raw).ok_or(FrameError::Malformed("unknown rlimit"))?);
        }
        let memory_max = self.opt_u64()?;
        let cpu_max = match (self.opt_u64()?, self.opt_u64()?) {
            (Some(quota), Some(period)) => Some(CpuMax { quota, period }),
            _ => None,
        };
        Ok(Confine {
            user,
            rlimits,
            memory_max,
            cpu_max,
        })
    }
    fn done(&self) -> Result<(), FrameError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FrameError::Malformed("trailing bytes"))
        }
    }
}

impl ToGuard {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            ToGuard::Spec(s) => {
                let mut w = Writer::new(b'S');
                w.bytes(s.label.as_bytes());
                w.dur(s.lease_end);
                w.dur(s.agent_timeout);
                w.dur(s.kill_grace);
                w.opt_dur(s.timeout);
                w.opt(s.cgroup_parent.as_deref().map(|p| p.as_os_str().as_bytes()));
                w.opt(s.records.as_deref().map(|p| p.as_os_str().as_bytes()));
                w.bytes(s.cwd.as_os_str().as_bytes());
                w.u64(s.argv.len() as u64);
                for arg in &s.argv {
                    w.bytes(arg.as_bytes());
                }
                w.u64(s.env.len() as u64);
                for (k, v) in &s.env {
                    w.bytes(k.as_bytes());
                    w.bytes(v.as_bytes());
                }
                w.confine(&s.confine);
                w.finish()
            }
            ToGuard::Lease(end) => {
                let mut w = Writer::new(b'L');
                w.dur(*end);
                w.finish()
            }
            ToGuard::Term => Writer::new(b'T').finish(),
            ToGuard::Kill => Writer::new(b'K').finish(),
        }
    }

    pub fn decode(body: &[u8]) -> Result<Self, FrameError> {
        let mut r = Reader(body);
        let msg = match r.u8()? {
            b'S' => {
                let label = String::from_utf8_lossy(r.bytes()?).into_owned();
                let lease_end = r.dur()?;
                let agent_timeout = r.dur()?;
                let kill_grace = r.dur()?;
                let timeout = match r.u8()? {
                    0 => None,
                    _ => Some(r.dur()?),
                };
                let cgroup_parent = r.opt_os()?.map(PathBuf::from);
                let records = r.opt_os()?.map(PathBuf::from);
                let cwd = PathBuf::from(r.os()?);
                let argv = (0..r.u64()?).map(|_| r.os()).collect::<Result<_, _>>()?;
                let env = (0..r.u64()?)
                    .map(|_| Ok((r.os()?, r.os()?)))
                    .collect::<Result<_, _>>()?;
                let confine = r.confine()?;
                ToGuard::Spec(Box::new(Spec {
                    label,
                    lease_end,
                    agent_timeout,
                    kill_grace,
                    timeout,
                    cgroup_parent,
                    records,
                    cwd,
                    argv,
                    env,
                    confine,
                }))
            }
            b'L' => ToGuard::Lease(r.dur()?),
            b'T' => ToGuard::Term,
            b'K' => ToGuard::Kill,
            _ => return Err(FrameError::Malformed("unknown tag")),
        };
        r.done()?;
        Ok(msg)
    }
}

impl FromGuard {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            FromGuard::Started {
                guard_pid,
                shell_pid,
                cgroup,
            } => {
                let mut w = Writer::new(b'R');
                w.u64(*guard_pid as u32 as u64);
                w.u64(*shell_pid as u32 as u64);
                w.opt(cgroup.as_deref().map(|p| p.as_os_str().as_bytes()));
                w.finish()
            }
            FromGuard::Ended(ending) => {
                let mut w = Writer::new(b'E');
                let (kind, n) = match ending {
                    Ending::Exited(code) => (b'x', *code),
                    Ending::Signaled(sig) => (b's', *sig),
                    Ending::TimedOut => (b't', 0),
                    Ending::LeaseExpired => (b'l', 0),
                    Ending::Stopped => (b'k', 0),
                };
                w.0.push(kind);
                w.u64(n as u32 as u64);
                w.finish()
            }
            FromGuard::OomKills(n) => {
                let mut w = Writer::new(b'O');
                w.u64(*n);
                w.finish()
            }
            FromGuard::Failed(message) => {
                let mut w = Writer::new(b'F');
                w.bytes(message.as_bytes());
                w.finish()
            }
        }
    }

    pub fn decode(body: &[u8]) -> Result<Self, FrameError> {
        let mut r = Reader(body);
        let msg = match r.u8()? {
            b'R' => FromGuard::Started {
                guard_pid: r.u64()? as u32 as i32,
                shell_pid: r.u64()? as u32 as i32,
                cgroup: r.opt_os()?.map(PathBuf::from),
            },
            b'E' => {
                let kind = r.u8()?;
                let n = r.u64()? as u32 as i32;
                FromGuard::Ended(match kind {
                    b'x' => Ending::Exited(n),
                    b's' => Ending::Signaled(n),
                    b't' => Ending::TimedOut,
                    b'l' => Ending::LeaseExpired,
                    b'k' => Ending::Stopped,
                    _ => return Err(FrameError::Malformed("unknown ending")),
                })
            }
            b'O' => FromGuard::OomKills(r.u64()?),
            b'F' => FromGuard::Failed(String::from_utf8_lossy(r.bytes()?).into_owned()),
            _ => return Err(FrameError::Malformed("unknown tag")),
        };
        r.done()?;
        Ok(msg)
    }
}

/// Splits whole frames off the front of `buf`: each frame's body, and how many bytes they
/// took. A partial frame stays for the next read.
pub fn split_frames(buf: &[u8]) -> Result<(Vec<&[u8]>, usize), FrameError> {
    let mut frames = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 4 {
        let len = u32::from_le_bytes(buf[at..at + 4].try_into().unwrap()) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        if buf.len() - at - 4 < len {
            break;
        }
        frames.push(&buf[at + 4..at + 4 + len]);
        at += 4 + len;
    }
    Ok((frames, at))
}

#[cfg(test)]
mod tests;
