//! The processes under test, started with the harness of `ferry-tests`: one controller on
//! SQLite, or several on one fresh PostgreSQL database; their data directory on the run's
//! small disk when it could be mounted, through the suite's slow filesystem; agents reaching every controller through a proxy of
//! their own, with a datasource whose password they know (and must not let out).

use std::{path::Path, time::Duration};

use anyhow::{Context, Result};
use ferry_tests::{
    databases::{mysql_url, postgres_url, write_agent_config, DatasourceConfig},
    Agent, AgentOpts, Cli, Controller, ControllerOpts, StoreDatabase,
};
use nix::{sys::signal::Signal, unistd::Pid};

use crate::{
    disk::{self, SmallDisk},
    extract,
    proxy::{Mode, Proxy},
    slowfs::SlowDisk,
};

/// The variable holding the datasource's password: set in the suite's own environment (and so
/// inherited by every process it starts, not written into the harness's log lines).
pub const PASSWORD_ENV: &str = "FERRY_CHAOS_DS_PASSWORD";

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

pub struct Settings {
    pub store: StoreKind,
    pub controllers: usize,
    pub agents: usize,
    pub slots: u32,
    pub agent_timeout: Duration,
    pub heartbeat: Duration,
}

struct AgentSlot {
    opts: AgentOpts,
    proxy: Proxy,
    agent: Option<Agent>,
    stopped: bool,
}

pub struct Fleet {
    // Dropped in this order: agents, then controllers, then their database and disk.
    slots: Vec<AgentSlot>,
    /// Agents killed and replaced, kept for their logs.
    graveyard: Vec<Agent>,
    controllers: Vec<Controller>,
    down: Vec<bool>,
    /// Held until the controllers are gone (dropped with the fleet).
    _database: Option<StoreDatabase>,
    /// The slow filesystem over the data disk (unmounted before it).
    slow: Option<SlowDisk>,
    disk: Option<SmallDisk>,
}

impl Fleet {
    /// Starts everything. `root` is the run's directory; `disk` its data disk, if mounted;
    /// `slow` the slow filesystem over it (or over the run's directory), if mounted: the data
    /// directory is on the slow filesystem when there is one, else on the disk.
    pub async fn start(
        settings: &Settings,
        root: &Path,
        disk: Option<SmallDisk>,
        slow: Option<SlowDisk>,
    ) -> Result<Self> {
        let data = match (&slow, &disk) {
            (Some(slow), _) => slow.path().join("data"),
            (None, Some(disk)) => disk.path().join("data"),
            (None, None) => root.join("data"),
        };
        let mut opts = ControllerOpts::default()
            .agent_timeout(settings.agent_timeout)
            .data_dir(&data);
        if disk.is_some() {
            opts = opts.arg("--disk-reserve").arg(disk::RESERVE.to_string());
        }
        let (database, count) = match settings.store {
            StoreKind::Sqlite => {
                let file = root.join("store").join("ferry.db");
                std::fs::create_dir_all(file.parent().expect("a parent"))?;
                opts = opts.store(format!("sqlite://{}", file.display()));
                (None, 1)
            }
            StoreKind::Postgres => {
                let db = StoreDatabase::create().await?;
                opts = opts.store(db.url());
                (Some(db), settings.controllers.max(1))
            }
        };
        let mut controllers = Vec::with_capacity(count);
        for i in 0..count {
            let controller = Controller::start(opts.clone())
                .await
                .with_context(|| format!("starting controller {i}"))?;
            controllers.push(controller);
        }
        let ports: Vec<u16> = controllers.iter().map(Controller::port).collect();
        let config = root.join("agent.toml");
        let mut datasource = DatasourceConfig::new(extract::POSTGRES_DATASOURCE, postgres_url());
        datasource.password_env = Some(PASSWORD_ENV.to_owned());
        let maria = DatasourceConfig::new(extract::MARIADB_DATASOURCE, mysql_url());
        write_agent_config(&config, &[datasource.read_only(), maria.read_only()])?;
        // The agent's alone: its tasks run as another user.
        std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        let mut fleet = Self {
            slots: Vec::new(),
            graveyard: Vec::new(),
            down: vec![false; controllers.len()],
            controllers,
            _database: database,
            slow,
            disk,
        };
        for i in 0..settings.agents {
            let proxy = Proxy::start(&ports).await?;
            let opts = AgentOpts::new(format!("agent-{i}"))
                .queue("chaos")
                .queue("sql")
                .max_tasks(settings.slots)
                .heartbeat_interval(settings.heartbeat)
                .arg("--config")
                .arg(config.display().to_string())
                // Tasks as another user than the agent's (ignored by agents without run_as).
                .env("FERRY_RUN_AS", "nobody");
            fleet.slots.push(AgentSlot {
                opts,
                proxy,
                agent: None,
                stopped: false,
            });
            fleet.start_agent(i).await?;
        }
        Ok(fleet)
    }

    /// A CLI given every controller (not through any proxy).
    pub fn cli(&self) -> Result<Cli> {
        Cli::with_controllers(self.controllers.iter().map(Controller::addr))
    }

    pub fn agent_name(&self, i: usize) -> &str {
        &self.slots[i].opts.name
    }

    pub fn disk(&self) -> Option<&SmallDisk> {
        self.disk.as_ref()
    }

    pub fn slow_disk(&self) -> Option<&SlowDisk> {
        self.slow.as_ref()
    }

    /// The controllers' data directory.
    pub fn data_dir(&self) -> std::path::PathBuf {
        self.controllers[0].data_dir()
    }

    async fn start_agent(&mut self, i: usize) -> Result<()> {
        let slot = &mut self.slots[i];
        let urls = slot.proxy.urls();
        let mut opts = slot.opts.clone();
        for url in &urls[1..] {
            opts = opts.controller(url.clone());
        }
        let agent = Agent::start(&urls[0], opts)
            .await
            .with_context(|| format!("starting agent {i}"))?;
        if let Some(old) = slot.agent.replace(agent) {
            self.graveyard.push(old);
        }
        Ok(())
    }

    pub fn kill_agent(&mut self, i: usize) -> Result<()> {
        let agent = self.slots[i].agent.as_mut().context("agent not running")?;
        agent.kill9()?;
        Ok(())
    }

    pub async fn restart_agent(&mut self, i: usize) -> Result<()> {
        self.start_agent(i).await
    }

    fn signal_agent(&mut self, i: usize, signal: Signal) -> Result<()> {
        let agent = self.slots[i].agent.as_ref().context("agent not running")?;
        let pid = agent.pid().context("agent without a process")?;
        nix::sys::signal::kill(Pid::from_raw(pid as i32), signal)
            .with_context(|| format!("{signal} to agent {i}"))?;
        self.slots[i].stopped = signal == Signal::SIGSTOP;
        Ok(())
    }

    pub fn pause_agent(&mut self, i: usize) -> Result<()> {
        self.signal_agent(i, Signal::SIGSTOP)
    }

    pub fn resume_agent(&mut self, i: usize) -> Result<()> {
        self.signal_agent(i, Signal::SIGCONT)
    }

    pub fn network(&self, i: usize, mode: Mode) {
        self.slots[i].proxy.set(mode);
    }

    pub fn kill_controller(&mut self, i: usize) -> Result<()> {
        self.controllers[i].kill9()?;
        self.down[i] = true;
        Ok(())
    }

    pub async fn restart_controller(&mut self, i: usize) -> Result<()> {
        self.controllers[i].restart().await?;
        self.down[i] = false;
        Ok(())
    }

    /// Undoes whatever fault is still in place: every proxy passing, paused agents resumed,
    /// the disk freed, dead controllers and agents started again.
    pub async fn heal(&mut self) -> Result<()> {
        for i in 0..self.slots.len() {
            self.network(i, Mode::Pass);
            if self.slots[i].stopped {
                self.resume_agent(i)?;
            }
        }
        if let Some(slow) = &self.slow {
            slow.set_latency(Duration::ZERO);
        }
        if let Some(disk) = &self.disk {
            disk.free()?;
        }
        for i in 0..self.controllers.len() {
            if self.down[i] || !self.controllers[i].is_running() {
                self.restart_controller(i).await?;
            }
        }
        for i in 0..self.slots.len() {
            let dead = match self.slots[i].agent.as_mut() {
                Some(agent) => agent.try_wait()?.is_some(),
                None => true,
            };
            if dead {
                self.restart_agent(i).await?;
            }
        }
        Ok(())
    }

    /// SIGTERM to every agent, each waited for (`timeout`): they drain and exit.
    pub async fn stop_agents(&mut self, timeout: Duration) -> Result<()> {
        for slot in &mut self.slots {
            if let Some(agent) = slot.agent.as_mut() {
                if agent.try_wait()?.is_none() {
                    agent.sigterm()?;
                }
            }
        }
        for slot in &mut self.slots {
            if let Some(agent) = slot.agent.as_mut() {
                agent.wait_exit(timeout).await?;
            }
        }
        Ok(())
    }

    /// SIGTERM to every controller, each waited for.
    pub async fn stop_controllers(&mut self, timeout: Duration) -> Result<()> {
        for controller in &mut self.controllers {
            if controller.is_running() {
                controller.sigterm()?;
            }
        }
        for controller in &mut self.controllers {
            controller.wait_exit(timeout).await?;
        }
        Ok(())
    }
}
