//! A `ferry-agent` process with its own work dir and log file.

use std::{
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{AgentState, ListAgentsRequest};
use nix::sys::signal::Signal;

use crate::{
    bin::{bin_path, AGENT_BIN},
    flag_duration, grpc,
    process::{log_tail, Proc, TestDir},
};

/// How long an agent gets to show up as `ready` after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct AgentOpts {
    pub name: String,
    pub queues: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub max_tasks: u32,
    pub heartbeat_interval: Duration,
    /// `--drain-timeout`; `None` keeps the agent's default.
    pub drain_timeout: Option<Duration>,
    pub extra_args: Vec<String>,
    /// Variables set in the agent's environment.
    pub env: Vec<(String, String)>,
    /// More `--controller` URLs, given in this order after the one [`Agent::start`] names:
    /// controllers sharing one database, tried in turn when one cannot be reached.
    pub controllers: Vec<String>,
}

impl AgentOpts {
    /// An agent serving no queue yet, 2 slots, heartbeating every 300 ms.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            queues: Vec::new(),
            labels: Vec::new(),
            max_tasks: 2,
            heartbeat_interval: Duration::from_millis(300),
            drain_timeout: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            controllers: Vec::new(),
        }
    }

    pub fn queue(mut self, queue: impl Into<String>) -> Self {
        self.queues.push(queue.into());
        self
    }

    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.push((key.into(), value.into()));
        self
    }

    pub fn max_tasks(mut self, n: u32) -> Self {
        self.max_tasks = n;
        self
    }

    pub fn heartbeat_interval(mut self, interval: Duration) -> Self {
        self.heartbeat_interval = interval;
        self
    }

    pub fn drain_timeout(mut self, timeout: Duration) -> Self {
        self.drain_timeout = Some(timeout);
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    /// One more `--controller URL`, after those given so far.
    pub fn controller(mut self, url: impl Into<String>) -> Self {
        self.controllers.push(url.into());
        self
    }
}

pub struct Agent {
    name: String,
    /// Every `--controller` it was given, in order.
    controllers: Vec<String>,
    proc: Proc,
    // Dropped after `proc`, so that the log tail is printed before the dir is kept.
    dir: TestDir,
}

impl Agent {
    /// Starts an agent against `controller` (`http://…`), then those of
    /// [`AgentOpts::controllers`], and waits until a controller lists it as `ready`.
    pub async fn start(controller: &str, opts: AgentOpts) -> Result<Self> {
        let dir = TestDir::new(&format!("agent-{}", opts.name))?;
        let work = dir.path().join("work");
        std::fs::create_dir_all(&work)?;
        let controllers: Vec<String> = std::iter::once(controller.to_owned())
            .chain(opts.controllers.iter().cloned())
            .collect();
        let mut cmd = Command::new(bin_path(AGENT_BIN));
        for url in &controllers {
            cmd.arg("--controller").arg(url);
        }
        cmd.arg("--name").arg(&opts.name);
        for queue in &opts.queues {
            cmd.arg("--queue").arg(queue);
        }
        for (key, value) in &opts.labels {
            cmd.arg("--label").arg(format!("{key}={value}"));
        }
        cmd.arg("--max-tasks")
            .arg(opts.max_tasks.to_string())
            .arg("--work-dir")
            .arg(&work)
            .arg("--heartbeat-interval")
            .arg(flag_duration(opts.heartbeat_interval));
        if let Some(drain) = opts.drain_timeout {
            cmd.arg("--drain-timeout").arg(flag_duration(drain));
        }
        // The tests run as root: their tasks too, unless a test says otherwise (run_as, or
        // FERRY_ALLOW_ROOT_TASKS=false in `opts.env`, which comes after).
        cmd.args(&opts.extra_args)
            .env("FERRY_ALLOW_ROOT_TASKS", "true")
            .envs(opts.env.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .env("RUST_LOG", crate::process_log_filter());
        let log = dir.path().join("agent.log");
        let proc = Proc::spawn(&format!("ferry-agent {}", opts.name), cmd, &log)?;
        let mut agent = Self {
            name: opts.name,
            controllers,
            proc,
            dir,
        };
        agent.wait_ready().await?;
        Ok(agent)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.pid()
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn work_dir(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    pub fn log_path(&self) -> &Path {
        self.proc.log()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(self.proc.log(), lines)
    }

    /// A real `kill -9`: the agent's tasks (own process groups) are left running, as on a host
    /// whose agent crashed.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        self.proc.kill9()
    }

    pub fn sigterm(&mut self) -> Result<()> {
        self.proc.signal(Signal::SIGTERM)
    }

    pub fn try_wait(&mut self) -> Result<Option<ExitStatus>> {
        self.proc.try_wait()
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.proc.wait_exit(timeout).await
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let deadline = std::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(status) = self.proc.try_wait()? {
                bail!(
                    "ferry-agent {} exited ({status}) before it was ready; log:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            let last = match self.listed_state().await {
                Ok(Some(AgentState::Ready)) => return Ok(()),
                Ok(state) => format!("listed as {state:?}"),
                Err(e) => format!("{e:#}"),
            };
            if std::time::Instant::now() >= deadline {
                bail!(
                    "ferry-agent {} not ready after {READY_TIMEOUT:?} ({last}); log tail:\n{}",
                    self.name,
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The `--controller` URLs it was given, in order.
    pub fn controllers(&self) -> &[String] {
        &self.controllers
    }

    /// This agent's state in `JobService/ListAgents` of the first of its controllers that
    /// answers, `None` when it is not listed.
    pub async fn listed_state(&self) -> Result<Option<AgentState>> {
        let mut failures = Vec::new();
        let mut listed = None;
        for url in &self.controllers {
            let answer = async {
                let mut client = grpc::job_client(url).await?;
                client
                    .list_agents(ListAgentsRequest::default())
                    .await
                    .context("ListAgents")
            };
            match answer.await {
                Ok(answer) => {
                    listed = Some(answer.into_inner().agents);
                    break;
                }
                Err(e) => failures.push(format!("{url}: {e:#}")),
            }
        }
        let Some(agents) = listed else {
            bail!("no controller answered: {}", failures.join("; "));
        };
        Ok(agents
            .iter()
            .find(|a| a.name == self.name)
            .map(|a| AgentState::try_from(a.state).unwrap_or(AgentState::Unspecified)))
    }
}

/// An agent process the controller is expected to refuse: started without waiting for it to
/// join, its log kept for the reason it was given; killed on drop.
pub struct RefusedAgent {
    child: std::process::Child,
    log: PathBuf,
    _dir: TestDir,
}

impl RefusedAgent {
    /// Starts `ferry-agent --controller CONTROLLER --name NAME ARGS…`.
    pub fn spawn(controller: &str, name: &str, args: &[String]) -> Result<Self> {
        let dir = TestDir::new(&format!("refused-{name}"))?;
        let log = dir.path().join("agent.log");
        let child = Command::new(bin_path(AGENT_BIN))
            .args(["--controller", controller, "--name", name])
            .args(args)
            .arg("--work-dir")
            .arg(dir.path().join("work"))
            // Refused for the test's reason, not because it runs as root.
            .env("FERRY_ALLOW_ROOT_TASKS", "true")
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("spawning ferry-agent")?;
        Ok(Self {
            child,
            log,
            _dir: dir,
        })
    }

    /// Its whole log once it holds `text` (ignoring case); panics after `timeout`.
    pub async fn log_once_it_says(&self, text: &str, timeout: Duration) -> String {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            if log.to_lowercase().contains(&text.to_lowercase()) {
                return log;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the refused agent's log does not say {text:?} after {timeout:?}:\n{log}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for RefusedAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
