//! Ferry agent: registers with the controller, long-polls for attempts, runs them near the data,
//! heartbeats its lease, and drains cleanly on shutdown.

pub mod client;
pub mod clock;
pub mod config;
pub mod direct;
pub mod drain;
#[cfg(test)]
mod failover_tests;
pub mod given_up;
pub mod guard;
pub mod heartbeat;
pub mod identity;
pub mod inputs;
pub mod logs;
pub mod metrics;
pub mod outputs;
pub mod poller;
pub mod redact;
pub mod runner;
pub mod running;
pub mod secret;
pub mod sql;
pub mod task_env;
pub mod task_user;
#[cfg(test)]
mod testing;
pub mod transfer;
pub mod upload;
pub mod users;
pub mod workdirs;

use std::{path::PathBuf, sync::Arc, time::Duration};

use ferry_proto::v1::StopOrder;
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::{info, warn};

use crate::{
    client::{Client, ClientError},
    clock::boot_now,
    heartbeat::Lease,
    running::Running,
};
pub use crate::{config::Config, drain::Shutdown};

/// Why the agent could not run at all.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("invalid controller address: {0}")]
    Controller(#[from] tonic::transport::Error),
    #[error("cannot prepare work directory {path}: {source}")]
    WorkDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Guards(#[from] guard::PrepareError),
    #[error(transparent)]
    TaskUser(#[from] task_user::TaskUserError),
}

/// Used when the controller announces no timeout of its own (DESIGN's default).
const DEFAULT_AGENT_TIMEOUT: Duration = Duration::from_secs(15);

/// State shared by the loops and runners of one agent process.
pub(crate) struct Agent {
    config: Config,
    /// Absolute form of `config.work_dir`.
    work_dir: PathBuf,
    /// Empty directories for attempts.
    work_dirs: workdirs::WorkDirs,
    /// Starts the guardian of each shell attempt.
    guards: guard::Guards,
    /// The variables every task starts with.
    task_env: task_env::TaskEnv,
    /// The user shell tasks run as, when not the agent's own: their working directories are
    /// handed over to it for the task's run.
    task_user: Option<config::RunAs>,
    /// Redacted from tasks' logs and errors.
    secrets: Arc<redact::Secrets>,
    client: Client,
    running: Arc<Running>,
    lease: Lease,
    /// Fires on a signal or a drain order.
    drain: CancellationToken,
    /// Attempts stopped by the lease watchdog, until a heartbeat says so.
    given_up: given_up::GivenUpLog,
    tracker: TaskTracker,
}

impl Agent {
    /// Applies the stop and drain orders of a poll or heartbeat answer.
    fn apply_orders(&self, stop: &[StopOrder], drain: bool) {
        for order in stop {
            let Some(attempt) = &order.attempt else {
                continue;
            };
            if self.running.abort(attempt) {
                info!(
                    job = %attempt.job_id, task = %attempt.task_id, attempt = attempt.attempt,
                    reason = %order.reason, "stop order; killing attempt"
                );
            }
        }
        if drain && !self.drain.is_cancelled() {
            info!("drain ordered by the controller");
            self.drain.cancel();
        }
    }
}

/// One registration's lifetime. `lost` fires when a controller says it no longer knows the
/// session (not when one cannot be reached: the agent then moves to another controller and keeps
/// its session, see `client/controllers.rs`); `stop` ends the session's loops.
#[derive(Clone, Default)]
pub(crate) struct Session {
    lost: CancellationToken,
    stop: CancellationToken,
}

impl Session {
    fn lose(&self, error: &ClientError) {
        if !self.lost.is_cancelled() {
            warn!(error = %error, "controller no longer knows this session");
            self.lost.cancel();
        }
    }
}

/// Runs the agent until it has drained (signal or drain order). Returns `Ok` on a clean exit.
pub async fn run(mut config: Config, shutdown: Shutdown) -> Result<(), AgentError> {
    let work_dir = prepare_work_dir(&config.work_dir).await?;
    config.instance = identity::instance(&work_dir).map_err(|source| AgentError::WorkDir {
        path: work_dir.join(identity::ID_FILE),
        source,
    })?;
    if config.name_is_default {
        config.name = identity::default_name(&config.hostname, &config.instance);
    }
    identity::warn_if_token_file_open(&config);
    let client = Client::new(&config)?;
    info!(
        name = %config.name,
        controllers = %config
            .controllers
            .iter()
            .map(|url| config::redacted(url))
            .collect::<Vec<_>>()
            .join(","),
        starting_with = %client.controllers().current_url(),
        queues = ?config.queues,
        max_tasks = config.max_tasks,
        work_dir = %work_dir.display(),
        "agent starting"
    );
    // Whom tasks run as, before anything runs: refused here rather than after a first task.
    // SAFETY: getegid has no preconditions and cannot fail.
    let egid = unsafe { libc::getegid() };
    let task_user = task_user::decide(&config, users::euid(), egid)?;
    task_user::check_files(&config, task_user.as_ref(), &work_dir)?;
    let confine = guard::confine::Confine {
        user: task_user.as_ref().map(config::RunAs::creds),
        rlimits: config.limits.rlimits.clone(),
        memory_max: config.limits.memory_max,
        cpu_max: config.limits.cpu_max,
    };
    if !confine.rlimits.is_empty() {
        info!(
            rlimits = ?confine.rlimits.iter().map(|r| r.describe()).collect::<Vec<_>>(),
            "each process of a task runs under these limits"
        );
    }
    // Before the old attempt directories go: what ran in them is stopped first.
    let guards = guard::prepare(
        &work_dir,
        config.guard_exe.clone(),
        config.max_tasks as usize,
        confine,
    )
    .await?;
    let mut task_env =
        task_env::TaskEnv::from_process(config.task_path.as_deref(), &config.pass_env);
    if let Some(user) = &task_user {
        // The tasks' user's home, not the agent's.
        task_env.set_home(user.home.clone());
    }
    let secrets = Arc::new(redact::Secrets::of_config(&config));
    info!(variables = ?task_env, "tasks start with these variables and their FERRY_* ones");
    let work_dirs =
        workdirs::WorkDirs::new(work_dir.clone(), task_user.is_some()).map_err(|source| {
            AgentError::WorkDir {
                path: work_dir.clone(),
                source,
            }
        })?;
    let agent = Arc::new(Agent {
        work_dir,
        work_dirs,
        guards,
        task_env,
        task_user,
        secrets,
        client,
        running: Arc::new(Running::default()),
        lease: Lease::new(config.kill_grace),
        drain: shutdown.drain.child_token(),
        given_up: given_up::GivenUpLog::default(),
        tracker: TaskTracker::new(),
        config,
    });

    loop {
        let Some(registered) = agent
            .client
            .register_with_backoff(&agent.config, &agent.drain)
            .await
        else {
            break;
        };
        let timeout = match registered.agent_timeout_ms {
            0 => DEFAULT_AGENT_TIMEOUT,
            ms => Duration::from_millis(ms),
        };
        heartbeat::check_timeout(timeout, agent.config.heartbeat_interval);
        agent.lease.reset(timeout, boot_now());
        let session = Session::default();
        agent
            .tracker
            .spawn(heartbeat::run(Arc::clone(&agent), session.clone()));
        agent
            .tracker
            .spawn(heartbeat::watchdog(Arc::clone(&agent), session.clone()));
        agent
            .tracker
            .spawn(poller::run(Arc::clone(&agent), session.clone()));

        tokio::select! {
            () = session.lost.cancelled() => {
                let killed = agent.running.abort_all(false);
                warn!(killed = killed.len(), "killed running tasks of the lost session; registering again");
                session.stop.cancel();
                let limit = agent.config.kill_grace + Duration::from_secs(2);
                tokio::select! {
                    _ = agent.running.wait_empty(limit) => {}
                    () = shutdown.force.cancelled() => {}
                }
                if agent.drain.is_cancelled() {
                    break;
                }
            }
            () = agent.drain.cancelled() => {
                drain::drain(&agent, &session, &shutdown.force).await;
                break;
            }
        }
    }

    // Nothing should be left; make sure of it before waiting on the tracker.
    agent.running.abort_all(true);
    agent.tracker.close();
    agent.tracker.wait().await;
    agent.guards.shutdown().await;
    info!("agent stopped");
    Ok(())
}

async fn prepare_work_dir(dir: &std::path::Path) -> Result<PathBuf, AgentError> {
    let fail = |source| AgentError::WorkDir {
        path: dir.to_owned(),
        source,
    };
    tokio::fs::create_dir_all(dir).await.map_err(fail)?;
    tokio::fs::canonicalize(dir).await.map_err(fail)
}
