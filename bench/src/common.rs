//! What the benchmarks share: the controller and agent set-ups, job specs built in code,
//! bounded waiting, and reading `/proc` (CPU time, memory, stray task processes).

use std::{
    path::Path,
    sync::OnceLock,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{
    job_service_client::JobServiceClient, task_spec::Kind, JobSpec, JobState, RetryPolicy,
    ShellTask, TaskSpec,
};
use ferry_tests::{Agent, AgentOpts, Controller, ControllerOpts, DevCerts};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};
use tonic::transport::Channel;

/// The queue every benchmark task goes to.
pub const QUEUE: &str = "default";

/// Kernel clock ticks per second for `/proc/PID/stat` times (`CLK_TCK`, 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// A JobService client.
pub type Client = JobServiceClient<Channel>;

/// The certificates every controller and agent of this run use, with `--tls`.
static TLS: OnceLock<DevCerts> = OnceLock::new();

/// Runs every later controller and agent over TLS (certificates from `scripts/dev-certs`).
pub fn use_tls() -> Result<()> {
    let certs = DevCerts::generate().context("making the TLS certificates")?;
    let _ = TLS.set(certs);
    Ok(())
}

/// `opts`, serving TLS when the run asked for it.
pub fn secured(opts: ControllerOpts) -> ControllerOpts {
    match TLS.get() {
        Some(certs) => opts.tls(certs, false),
        None => opts,
    }
}

/// `opts`, trusting the controller's CA when the run uses TLS.
pub fn trusting(opts: AgentOpts) -> AgentOpts {
    match TLS.get() {
        Some(certs) => opts.arg("--tls-ca").arg(certs.ca().display().to_string()),
        None => opts,
    }
}

/// A controller with the given agent timeout and the default (fsync'd SQLite) store.
pub async fn controller(agent_timeout: Duration) -> Result<Controller> {
    Controller::start(secured(
        ControllerOpts::default().agent_timeout(agent_timeout),
    ))
    .await
    .context("starting ferry-controller")
}

/// An agent serving [`QUEUE`], started and listed as ready.
pub async fn agent(
    controller: &Controller,
    name: &str,
    max_tasks: u32,
    heartbeat: Duration,
) -> Result<Agent> {
    let opts = AgentOpts::new(name)
        .queue(QUEUE)
        .max_tasks(max_tasks)
        .heartbeat_interval(heartbeat);
    Agent::start(&controller.addr(), trusting(opts))
        .await
        .with_context(|| format!("starting ferry-agent {name}"))
}

/// A job of independent shell tasks `(id, command)` on [`QUEUE`].
pub fn shell_job(name: &str, tasks: Vec<(String, &str)>, max_attempts: u32) -> JobSpec {
    JobSpec {
        name: name.to_owned(),
        params: Default::default(),
        tasks: tasks
            .into_iter()
            .map(|(id, command)| TaskSpec {
                id,
                queue: QUEUE.to_owned(),
                kind: Some(Kind::Shell(ShellTask {
                    command: command.to_owned(),
                })),
                retry: Some(RetryPolicy {
                    max_attempts,
                    initial_delay_ms: None,
                    max_delay_ms: None,
                }),
                ..Default::default()
            })
            .collect(),
    }
}

/// The job state of a wire enum value.
/// Submits a job and returns its id.
pub async fn submit(client: &mut Client, spec: JobSpec) -> Result<String> {
    Ok(client
        .submit_job(ferry_proto::v1::SubmitJobRequest {
            spec: Some(spec),
            idempotency_key: String::new(),
            ..Default::default()
        })
        .await
        .context("SubmitJob")?
        .into_inner()
        .job_id)
}

pub fn job_state(raw: i32) -> JobState {
    JobState::try_from(raw).unwrap_or(JobState::Unspecified)
}

/// Whether a job state is final and not a success.
pub fn job_ended_badly(state: JobState) -> bool {
    matches!(state, JobState::Failed | JobState::Cancelled)
}

/// A point in time after which a wait gives up, naming what it waited for.
pub struct Deadline {
    at: Instant,
    limit: Duration,
}

impl Deadline {
    pub fn after(limit: Duration) -> Self {
        Self {
            at: Instant::now() + limit,
            limit,
        }
    }

    /// Fails once the deadline has passed.
    pub fn check(&self, what: impl FnOnce() -> String) -> Result<()> {
        if Instant::now() >= self.at {
            bail!("timed out after {:?}: {}", self.limit, what());
        }
        Ok(())
    }

    pub fn remaining(&self) -> Duration {
        self.at.saturating_duration_since(Instant::now())
    }
}

/// CPU time of one process, from `/proc/PID/stat`.
#[derive(Clone, Copy, Debug, Default)]
pub struct CpuTimes {
    /// utime + stime of the process itself, in seconds.
    pub own_s: f64,
    /// cutime + cstime: children it has waited for (an agent's task processes), in seconds.
    pub children_s: f64,
}

impl std::ops::Sub for CpuTimes {
    type Output = Self;
    fn sub(self, rhs: Self) -> Self {
        Self {
            own_s: self.own_s - rhs.own_s,
            children_s: self.children_s - rhs.children_s,
        }
    }
}

/// CPU times of `pid` (`"self"` works too).
pub fn cpu_times(pid: impl std::fmt::Display) -> Result<CpuTimes> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // `pid (comm) S ppid …`: fields after the last `)` start with field 3 (state).
    let fields: Vec<&str> = stat
        .rfind(')')
        .map(|i| stat[i + 1..].split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| -> Result<f64> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse::<u64>().ok())
            .map(|ticks| ticks as f64 / CLK_TCK)
            .with_context(|| format!("no field {n} in {path}: {stat:?}"))
    };
    Ok(CpuTimes {
        own_s: field(14)? + field(15)?,
        children_s: field(16)? + field(17)?,
    })
}

/// CPU times of a harness process that must still run.
pub fn cpu_of(pid: Option<u32>, what: &str) -> Result<CpuTimes> {
    cpu_times(pid.with_context(|| format!("{what} has no pid"))?)
        .with_context(|| format!("CPU time of {what}"))
}

/// `(VmRSS, VmHWM)` of `pid` in MiB, from `/proc/PID/status`.
pub fn memory_mb(pid: u32) -> Result<(f64, f64)> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kb = |key: &str| -> Result<f64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| {
                rest.trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
            .with_context(|| format!("no {key} in {path}"))
    };
    Ok((kb("VmRSS:")? / 1024.0, kb("VmHWM:")? / 1024.0))
}

/// The 1-minute load average, shown before each benchmark: the machine has 2 cores and
/// others may be building on it.
pub fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

/// SIGKILLs every process whose working directory lies under `dir`: the task processes a
/// `kill -9`'d agent leaves behind (they run in their own process groups). Returns how many.
pub fn kill_strays(dir: &Path) -> usize {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut killed = 0;
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(cwd) = std::fs::read_link(entry.path().join("cwd")) else {
            continue;
        };
        if cwd.starts_with(dir) && kill(Pid::from_raw(pid), Signal::SIGKILL).is_ok() {
            killed += 1;
        }
    }
    killed
}

/// Seconds of a duration, for figures.
pub fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Milliseconds of a duration, for figures.
pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
