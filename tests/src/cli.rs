//! The `ferry` CLI run as a process, plus the helpers tests lean on: submit, wait for a job.

use std::{
    ffi::OsStr,
    fmt,
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::{
    bin::{bin_path, CLI_BIN},
    process::TestDir,
    wait::POLL_INTERVAL,
};

/// Upper bound for one CLI invocation, so that a hung CLI fails the test.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Job states after which nothing changes.
pub const TERMINAL_JOB_STATES: [&str; 3] = ["succeeded", "failed", "cancelled"];

/// What one `ferry` invocation did.
#[derive(Clone, Debug)]
pub struct CliOutput {
    /// The exit code; 128 + N when killed by signal N.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CliOutput {
    fn new(status: ExitStatus, stdout: Vec<u8>, stderr: Vec<u8>) -> Self {
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        Self {
            code,
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }
}

impl fmt::Display for CliOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const MAX: usize = 4000;
        let cut = |s: &str| -> String {
            if s.len() <= MAX {
                s.to_owned()
            } else {
                let mut end = MAX;
                while !s.is_char_boundary(end) {
                    end -= 1;
                }
                format!("{}… ({} bytes)", &s[..end], s.len())
            }
        };
        write!(
            f,
            "exit code {}\n--- stdout:\n{}\n--- stderr:\n{}",
            self.code,
            cut(&self.stdout),
            cut(&self.stderr)
        )
    }
}

/// `ferry --controller URL… …` with a temp dir for the job files it is given.
pub struct Cli {
    /// Every `--controller`, in order (at least one).
    controllers: Vec<String>,
    /// Flags given before every command (`--tls-ca …`).
    global: Vec<String>,
    /// Variables set for every command.
    env: Vec<(String, String)>,
    dir: TestDir,
    files: AtomicUsize,
}

impl Cli {
    pub fn new(controller: impl Into<String>) -> Result<Self> {
        Self::with_controllers([controller.into()])
    }

    /// `ferry --controller A --controller B …`: controllers sharing one database, tried in
    /// turn when the one before cannot be reached.
    pub fn with_controllers(controllers: impl IntoIterator<Item = String>) -> Result<Self> {
        let controllers: Vec<String> = controllers.into_iter().collect();
        if controllers.is_empty() {
            bail!("a CLI needs at least one controller");
        }
        Ok(Self {
            controllers,
            global: Vec::new(),
            env: Vec::new(),
            dir: TestDir::new("cli")?,
            files: AtomicUsize::new(0),
        })
    }

    /// Gives `args` to every command, before its own.
    pub fn with_global_args(mut self, args: impl IntoIterator<Item = String>) -> Self {
        self.global.extend(args);
        self
    }

    /// Sets `key=value` in every command's environment.
    pub fn with_env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// The first `--controller`.
    pub fn controller(&self) -> &str {
        &self.controllers[0]
    }

    /// Every `--controller`, in order.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    fn command<I, S>(&self, args: I) -> tokio::process::Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = tokio::process::Command::new(bin_path(CLI_BIN));
        for url in &self.controllers {
            cmd.arg("--controller").arg(url);
        }
        cmd.args(&self.global)
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("FERRY_CONTROLLER")
            .env_remove("FERRY_OUTPUT")
            .env_remove("FERRY_TLS_CA")
            .env_remove("FERRY_TLS_CERT")
            .env_remove("FERRY_TLS_KEY")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd
    }

    /// Runs `ferry --controller URL ARGS…` to the end; any exit code is an `Ok` outcome.
    pub async fn run<I, S>(&self, args: I) -> Result<CliOutput>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = self.command(args);
        let shown = format!("{cmd:?}");
        let out = tokio::time::timeout(RUN_TIMEOUT, cmd.output())
            .await
            .with_context(|| format!("{shown} still running after {RUN_TIMEOUT:?}"))?
            .with_context(|| format!("running {shown}"))?;
        Ok(CliOutput::new(out.status, out.stdout, out.stderr))
    }

    /// Starts `ferry … ARGS` in the background (e.g. `jobs watch`); killed on drop.
    pub fn spawn<I, S>(&self, args: I) -> Result<tokio::process::Child>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.command(args).spawn().context("spawning ferry")
    }

    /// Runs `ferry --output json ARGS…`, requires exit 0 and parses standard output.
    pub async fn json<I, S>(&self, args: I) -> Result<Value>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut all: Vec<std::ffi::OsString> = vec!["--output".into(), "json".into()];
        all.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        let out = self.run(&all).await?;
        if out.code != 0 {
            bail!("ferry {all:?} failed: {out}");
        }
        serde_json::from_str(&out.stdout)
            .with_context(|| format!("ferry {all:?} printed no JSON document: {out}"))
    }

    /// Writes a job file into the CLI's temp dir and returns its path.
    pub fn write_job(&self, toml: &str) -> Result<PathBuf> {
        let n = self.files.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("job-{n}.toml"));
        std::fs::write(&path, toml).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// `ferry submit FILE`, the id printed alone on standard output.
    pub async fn submit(&self, toml: &str) -> Result<String> {
        self.submit_with(toml, &[]).await
    }

    /// `ferry submit FILE EXTRA…` (e.g. `--param k=v`); requires exit 0 and returns the id.
    pub async fn submit_with(&self, toml: &str, extra: &[&str]) -> Result<String> {
        let path = self.write_job(toml)?;
        let mut args: Vec<std::ffi::OsString> = vec!["submit".into(), path.into()];
        args.extend(extra.iter().map(Into::into));
        let out = self.run(&args).await?;
        if out.code != 0 {
            bail!("ferry submit failed: {out}");
        }
        job_id_of(&out)
    }

    /// `ferry --output json jobs show ID`.
    pub async fn show(&self, job: &str) -> Result<Value> {
        self.json(["jobs", "show", job]).await
    }

    /// Polls `jobs show` until the job is succeeded, failed or cancelled, and returns that
    /// document. `timeout` is only an upper bound.
    pub async fn wait_job(&self, job: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let last = match self.show(job).await {
                Ok(doc) => {
                    let state = doc["state"].as_str().unwrap_or_default();
                    if TERMINAL_JOB_STATES.contains(&state) {
                        return Ok(doc);
                    }
                    format!("{doc:#}")
                }
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!("job {job} did not end within {timeout:?}; last seen: {last}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// `ferry --output json agents list`, as a list.
    pub async fn agents(&self) -> Result<Vec<Value>> {
        let doc = self.json(["agents", "list"]).await?;
        crate::job::items(&doc, "agents")
    }

    /// One agent's entry in `agents list`, `None` when not listed.
    pub async fn agent(&self, name: &str) -> Result<Option<Value>> {
        Ok(self.agents().await?.into_iter().find(|a| a["name"] == name))
    }

    /// `ferry --output json jobs list`, as a list.
    pub async fn jobs(&self) -> Result<Vec<Value>> {
        let doc = self.json(["jobs", "list"]).await?;
        crate::job::items(&doc, "jobs")
    }
}

/// The job id that `submit` printed: standard output is that one line.
pub fn job_id_of(out: &CliOutput) -> Result<String> {
    let lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    match lines.as_slice() {
        [id] if !id.trim().contains(char::is_whitespace) => Ok(id.trim().to_owned()),
        _ => bail!("submit should print the job id alone on standard output: {out}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stdout: &str) -> CliOutput {
        CliOutput {
            code: 0,
            stdout: stdout.to_owned(),
            stderr: String::new(),
        }
    }

    #[test]
    fn the_job_id_is_the_only_line_of_standard_output() {
        assert_eq!(job_id_of(&output("01abc\n")).unwrap(), "01abc");
        assert!(job_id_of(&output("")).is_err());
        assert!(job_id_of(&output("submitted 01abc\n")).is_err());
        assert!(job_id_of(&output("01abc\nrunning\n")).is_err());
    }
}
