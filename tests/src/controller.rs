//! A `ferry-controller` process on a free port with its own data dir and log file. Its store is
//! the SQLite file in that dir, or, with `FERRY_TEST_STORE=postgres`, a fresh PostgreSQL
//! database of its own (see `store_db.rs`), unless its options name one.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, ExitStatus},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{
    agent_service_client::AgentServiceClient, job_service_client::JobServiceClient,
    ListQueuesRequest,
};
use nix::sys::signal::Signal;
use tonic::transport::Channel;
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

use crate::{
    bin::{bin_path, CONTROLLER_BIN},
    cli::Cli,
    flag_duration, grpc,
    process::{log_tail, Proc, TestDir},
    store_db::{test_store, StoreDatabase, TestStore},
    tls::{ClientCerts, DevCerts},
};

/// How long a controller gets to answer its health check after being spawned.
const READY_TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
pub struct ControllerOpts {
    /// `--agent-timeout`: silent longer than this, an agent is dead.
    pub agent_timeout: Duration,
    /// `--store`; `None` is the default SQLite file in the data dir, or a fresh PostgreSQL
    /// database with `FERRY_TEST_STORE=postgres`.
    pub store: Option<String>,
    /// `--data-dir`; `None` is `data` in the controller's own temp dir. Controllers of one
    /// cluster share one.
    pub data_dir: Option<PathBuf>,
    pub extra_args: Vec<String>,
    /// Variables set in the controller's environment.
    pub env: Vec<(String, String)>,
    /// With TLS: what the harness's own clients (probes, `cli()`) dial it with.
    pub tls: Option<ClientCerts>,
}

impl Default for ControllerOpts {
    fn default() -> Self {
        Self {
            agent_timeout: Duration::from_secs(2),
            store: None,
            data_dir: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            tls: None,
        }
    }
}

impl ControllerOpts {
    pub fn agent_timeout(mut self, timeout: Duration) -> Self {
        self.agent_timeout = timeout;
        self
    }

    pub fn store(mut self, url: impl Into<String>) -> Self {
        self.store = Some(url.into());
        self
    }

    /// The SQLite file `ferry.db` under `data` in the controller's own temp dir (its default
    /// place), whatever `FERRY_TEST_STORE` says: for tests of what only the embedded store does.
    pub fn sqlite(self) -> Self {
        // A relative path resolves in the controller's working dir, its temp dir.
        self.store("sqlite://data/ferry.db")
    }

    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.extra_args.push(arg.into());
        self
    }

    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Serves TLS with the set's controller certificate. With `client_auth`, every caller
    /// must present a certificate of the set's CA; the harness's own clients present the
    /// `client` one.
    pub fn tls(mut self, certs: &DevCerts, client_auth: bool) -> Self {
        self.extra_args.extend([
            "--tls-cert".to_owned(),
            certs.file("controller.pem").display().to_string(),
            "--tls-key".to_owned(),
            certs.file("controller.key").display().to_string(),
        ]);
        if client_auth {
            self.extra_args.extend([
                "--tls-client-ca".to_owned(),
                certs.ca().display().to_string(),
            ]);
        }
        self.tls = Some(certs.client(client_auth.then_some("client")));
        self
    }
}

pub struct Controller {
    opts: ControllerOpts,
    /// `--store`, when given one.
    store: Option<String>,
    port: u16,
    proc: Option<Proc>,
    /// The database made for this controller alone. Dropped after `proc`: the controller is
    /// killed before its database is.
    database: Option<StoreDatabase>,
    // Dropped after `proc`, so that the log tail is printed before the dir is kept.
    dir: TestDir,
}

impl Controller {
    /// Starts a controller and waits until it answers gRPC. A port taken by someone else in
    /// the meantime is retried with another one.
    pub async fn start(opts: ControllerOpts) -> Result<Self> {
        let mut controller = Self::prepare(opts).await?;
        let mut tries = 0;
        loop {
            tries += 1;
            controller.port = free_port()?;
            match controller.spawn_and_wait().await {
                Ok(()) => return Ok(controller),
                Err(e) if tries < 3 && controller.exited_on_port_clash() => {
                    eprintln!(
                        "controller could not bind port {}, retrying: {e:#}",
                        controller.port
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A controller that is not started yet: its dir, and its database when it gets one.
    async fn prepare(opts: ControllerOpts) -> Result<Self> {
        let dir = TestDir::new("controller")?;
        std::fs::create_dir_all(dir.path().join("data"))?;
        if let Some(data) = &opts.data_dir {
            std::fs::create_dir_all(data)
                .with_context(|| format!("creating {}", data.display()))?;
        }
        let database = match (&opts.store, test_store()) {
            (None, TestStore::Postgres) => Some(StoreDatabase::create().await?),
            _ => None,
        };
        let store = opts
            .store
            .clone()
            .or_else(|| database.as_ref().map(|db| db.url().to_owned()));
        Ok(Self {
            opts,
            store,
            port: 0,
            proc: None,
            database,
            dir,
        })
    }

    /// Runs a controller that is expected to refuse to start, until it exits (at most
    /// `timeout`): its exit status and its whole log (standard output and error).
    pub async fn start_refused(
        opts: ControllerOpts,
        timeout: Duration,
    ) -> Result<(ExitStatus, String)> {
        let mut controller = Self::prepare(opts).await?;
        controller.port = free_port()?;
        controller.spawn()?;
        let status = controller.wait_exit(timeout).await?;
        let log = std::fs::read_to_string(controller.log_path())
            .with_context(|| format!("reading {}", controller.log_path().display()))?;
        Ok((status, log))
    }

    /// `--store` as given to the process: `None` for the default SQLite file.
    pub fn store_url(&self) -> Option<&str> {
        self.store.as_deref()
    }

    /// The PostgreSQL database made for this controller alone, if it got one.
    pub fn database(&self) -> Option<&StoreDatabase> {
        self.database.as_ref()
    }

    /// `http://127.0.0.1:PORT`, or `https://…` with TLS.
    pub fn addr(&self) -> String {
        let scheme = if self.opts.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The controller's own temp dir (data dir, log).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn data_dir(&self) -> PathBuf {
        match &self.opts.data_dir {
            Some(dir) => dir.clone(),
            None => self.dir.path().join("data"),
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("controller.log")
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path(), lines)
    }

    pub fn pid(&self) -> Option<u32> {
        self.proc.as_ref().and_then(Proc::pid)
    }

    /// Whether its process was started and has not exited.
    pub fn is_running(&mut self) -> bool {
        self.proc
            .as_mut()
            .is_some_and(|p| matches!(p.try_wait(), Ok(None)))
    }

    /// A CLI pointed at this controller (trusting it, with TLS).
    pub fn cli(&self) -> Cli {
        let cli = Cli::new(self.addr()).expect("creating the CLI's temp dir");
        match &self.opts.tls {
            Some(certs) => cli.with_global_args(certs.flags()),
            None => cli,
        }
    }

    pub async fn job_client(&self) -> Result<JobServiceClient<Channel>> {
        grpc::job_client(&self.addr()).await
    }

    pub async fn agent_client(&self) -> Result<AgentServiceClient<Channel>> {
        grpc::agent_client(&self.addr()).await
    }

    /// A real `kill -9`: no chance to flush or say goodbye.
    pub fn kill9(&mut self) -> Result<ExitStatus> {
        self.proc
            .as_mut()
            .context("controller not started")?
            .kill9()
    }

    pub fn sigterm(&mut self) -> Result<()> {
        self.proc
            .as_mut()
            .context("controller not started")?
            .signal(Signal::SIGTERM)
    }

    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.proc
            .as_mut()
            .context("controller not started")?
            .wait_exit(timeout)
            .await
    }

    /// Starts the controller again on the same port and data dir (killing it first if it still
    /// runs) and waits until it answers.
    pub async fn restart(&mut self) -> Result<()> {
        if let Some(mut old) = self.proc.take() {
            old.kill9()?;
        }
        self.spawn_and_wait().await
    }

    async fn spawn_and_wait(&mut self) -> Result<()> {
        self.spawn()?;
        if let Some(certs) = &self.opts.tls {
            grpc::trust(&self.addr(), certs.clone());
        }
        self.wait_ready().await
    }

    fn spawn(&mut self) -> Result<()> {
        let mut cmd = Command::new(bin_path(CONTROLLER_BIN));
        cmd.arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.data_dir())
            .arg("--agent-timeout")
            .arg(flag_duration(self.opts.agent_timeout));
        if let Some(store) = &self.store {
            cmd.arg("--store").arg(store);
        }
        cmd.args(&self.opts.extra_args)
            .envs(self.opts.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.dir.path())
            .env("RUST_LOG", crate::process_log_filter());
        // Drop (and so reap) an earlier process before replacing it.
        if let Some(mut old) = self.proc.take() {
            old.kill9()?;
        }
        self.proc = Some(Proc::spawn("ferry-controller", cmd, &self.log_path())?);
        Ok(())
    }

    async fn wait_ready(&mut self) -> Result<()> {
        let addr = self.addr();
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            let proc = self.proc.as_mut().context("controller not started")?;
            if let Some(status) = proc.try_wait()? {
                bail!(
                    "ferry-controller exited ({status}) before it was ready; log {}:\n{}",
                    proc.log().display(),
                    log_tail(proc.log(), 30)
                );
            }
            let last_error = match probe(&addr).await {
                Ok(()) => return Ok(()),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() >= deadline {
                bail!(
                    "ferry-controller at {addr} not ready after {READY_TIMEOUT:?} ({last_error}); \
                     log tail:\n{}",
                    self.log_tail(30)
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn exited_on_port_clash(&mut self) -> bool {
        let exited = self
            .proc
            .as_mut()
            .is_some_and(|p| matches!(p.try_wait(), Ok(Some(_))));
        exited && self.log_tail(20).to_lowercase().contains("in use")
    }
}

/// Ready means the health service says SERVING, or, where it is not served, that
/// `JobService/ListQueues` answers.
async fn probe(addr: &str) -> Result<()> {
    let channel = grpc::connect(addr).await?;
    let health = HealthClient::new(channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await;
    if let Ok(resp) = &health {
        if resp.get_ref().status == ServingStatus::Serving as i32 {
            return Ok(());
        }
    }
    JobServiceClient::new(channel)
        .list_queues(ListQueuesRequest {})
        .await
        .map(drop)
        .with_context(|| format!("health: {health:?}; ListQueues"))
}

/// A port that nothing listens on right now (bind port 0, take the port, close).
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}
