//! Child processes of the harness: a log file per process, real signals, kill on drop, and
//! temp dirs that are kept when a test fails.

use std::{
    fs::OpenOptions,
    io::Write,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use tempfile::TempDir;

/// A temp dir that is deleted on drop, unless the thread is panicking: then it is kept and its
/// path printed, so that a failed test leaves its data dir, work dirs and logs behind.
pub struct TestDir {
    dir: Option<TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub fn new(label: &str) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(&format!("ferry-{label}-"))
            .tempdir()
            .context("creating a temp dir")?;
        let path = dir.path().to_path_buf();
        Ok(Self {
            dir: Some(dir),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(dir) = self.dir.take() {
                let path = dir.keep();
                eprintln!("kept temp dir {}", path.display());
            }
        }
    }
}

/// Runs the child without the `LD_LIBRARY_PATH` that `cargo run` and `cargo test` set (their
/// build outputs and the toolchain's libraries; cargo says it ran us through `CARGO`), so
/// that the binaries run as a user's would: they need no library of their own. The agent's
/// tasks inherit its environment, and with that variable every `/bin/sh` looked for
/// `libc.so.6` in each of those directories first (dozens of failed `openat`s per process;
/// the cost: `docs/decisions/0011-latency-on-small-hosts.md`).
fn without_cargo_library_path(cmd: &mut Command) {
    if std::env::var_os("CARGO").is_some() {
        cmd.env_remove("LD_LIBRARY_PATH");
    }
}

/// One running binary with its stdout and stderr appended to `log`.
pub(crate) struct Proc {
    name: String,
    log: PathBuf,
    child: Option<Child>,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Spawns `cmd` with stdin closed and stdout+stderr appended to `log`. The child gets
    /// SIGKILL if the spawning thread dies (`PR_SET_PDEATHSIG`), so an aborted test run leaves
    /// no controller behind; spawn from a thread that lives as long as the process should.
    pub(crate) fn spawn(name: &str, mut cmd: Command, log: &Path) -> Result<Self> {
        let mut out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        writeln!(out, "---- harness: starting {cmd:?}")?;
        let err = out.try_clone()?;
        without_cargo_library_path(&mut cmd);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err));
        // SAFETY: `set_pdeathsig` is a single async-signal-safe `prctl` call.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {name} ({cmd:?})"))?;
        Ok(Self {
            name: name.to_owned(),
            log: log.to_path_buf(),
            child: Some(child),
            status: None,
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends `signal` to the process (not to its group: the agent's tasks have their own).
    pub(crate) fn signal(&mut self, signal: Signal) -> Result<()> {
        if self.try_wait()?.is_some() {
            bail!("{} already exited", self.name);
        }
        let pid = self.pid().context("no child")?;
        kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("sending {signal} to {} ({pid})", self.name))
    }

    /// SIGKILL, then reap. A process that already exited is fine.
    pub(crate) fn kill9(&mut self) -> Result<ExitStatus> {
        if let Some(status) = self.try_wait()? {
            return Ok(status);
        }
        self.signal(Signal::SIGKILL)?;
        let child = self.child.as_mut().context("no child")?;
        let status = child.wait()?;
        self.status = Some(status);
        Ok(status)
    }

    /// The exit status once the process has exited, without blocking.
    pub(crate) fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        if let Some(status) = self.status {
            return Ok(Some(status));
        }
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        let status = child.try_wait()?;
        self.status = status;
        Ok(status)
    }

    /// Waits up to `timeout` for the process to exit by itself.
    pub(crate) async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} did not exit within {timeout:?}; log tail:\n{}",
                    self.name,
                    log_tail(&self.log, 30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub(crate) fn log(&self) -> &Path {
        &self.log
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- {} log {} (tail):\n{}",
                self.name,
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
    }
}

/// The last `lines` lines of a log file, or a note saying why there are none.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}
