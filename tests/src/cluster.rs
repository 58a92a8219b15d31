//! Several `ferry-controller` processes on one fresh PostgreSQL database, each on its own port,
//! all given the same `--data-dir` for artifacts; agents and CLIs that list several of them.

use std::{path::Path, process::ExitStatus, time::Duration};

use anyhow::{Context, Result};

use crate::{
    agent::{Agent, AgentOpts},
    cli::Cli,
    controller::{Controller, ControllerOpts},
    databases,
    process::TestDir,
    procs::{pid_alive, tcp_peer_ports},
    store_db::StoreDatabase,
    wait::eventually,
};

/// The log line of a controller taking a singleton role (`engine/singleton.rs`), and of one
/// losing it. Only to find the holder: what a test checks comes from the record.
const TOOK_ROLE: &str = "this controller took the role";
const LOST_ROLE: &str = "lost the role";

pub struct Cluster {
    controllers: Vec<Controller>,
    // Dropped after the controllers: the processes are killed before their database is
    // dropped and their data dir removed.
    database: StoreDatabase,
    data: TestDir,
}

impl Cluster {
    /// `n` controllers started with `opts` (its store and data dir replaced) on a fresh
    /// database of `databases::postgres_url()`'s server.
    pub async fn start(n: usize, opts: ControllerOpts) -> Result<Self> {
        Self::start_on(&databases::postgres_url(), n, opts).await
    }

    /// `n` controllers on a fresh database created through `admin_url`.
    pub async fn start_on(admin_url: &str, n: usize, opts: ControllerOpts) -> Result<Self> {
        let database = StoreDatabase::create_on(admin_url).await?;
        let data = TestDir::new("cluster-data")?;
        let opts = opts.store(database.url()).data_dir(data.path());
        let mut controllers = Vec::with_capacity(n);
        for i in 0..n {
            let controller = Controller::start(opts.clone())
                .await
                .with_context(|| format!("starting controller {i} of the cluster"))?;
            controllers.push(controller);
        }
        Ok(Self {
            controllers,
            database,
            data,
        })
    }

    pub fn len(&self) -> usize {
        self.controllers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.controllers.is_empty()
    }

    pub fn controller(&self, i: usize) -> &Controller {
        &self.controllers[i]
    }

    /// Controller `i`'s `http://127.0.0.1:PORT`.
    pub fn addr(&self, i: usize) -> String {
        self.controllers[i].addr()
    }

    /// Every controller's address, in order.
    pub fn addrs(&self) -> Vec<String> {
        self.controllers.iter().map(Controller::addr).collect()
    }

    /// The index of the controller listening on `port`.
    pub fn index_of_port(&self, port: u16) -> Option<usize> {
        self.controllers.iter().position(|c| c.port() == port)
    }

    /// A real `kill -9` of controller `i`.
    pub fn kill9(&mut self, i: usize) -> Result<ExitStatus> {
        self.controllers[i].kill9()
    }

    /// Starts controller `i` again on its port (killing it first if it runs).
    pub async fn restart(&mut self, i: usize) -> Result<()> {
        self.controllers[i].restart().await
    }

    pub fn database(&self) -> &StoreDatabase {
        &self.database
    }

    /// The data dir every controller was given.
    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// A CLI given every controller, in order.
    pub fn cli(&self) -> Cli {
        self.cli_via(&(0..self.len()).collect::<Vec<_>>())
    }

    /// A CLI given the controllers `order` names, in that order.
    pub fn cli_via(&self, order: &[usize]) -> Cli {
        Cli::with_controllers(order.iter().map(|&i| self.addr(i))).expect("creating a CLI")
    }

    /// Starts an agent given the controllers `order` names, in that order.
    pub async fn agent(&self, order: &[usize], opts: AgentOpts) -> Result<Agent> {
        let (first, rest) = order.split_first().context("an agent needs a controller")?;
        let opts = rest
            .iter()
            .fold(opts, |opts, &i| opts.controller(self.addr(i)));
        Agent::start(&self.addr(*first), opts).await
    }

    /// One agent connected to each controller, by index. An agent starts at a random
    /// controller of its list, so agents (`opts(k)` for the k-th, each given the controllers in
    /// another rotation) are started until every controller has one; the others are stopped
    /// (SIGTERM, which drains them: they take no work) and waited for. Call it before jobs
    /// are submitted.
    pub async fn agent_per_controller(
        &self,
        opts: impl Fn(usize) -> AgentOpts,
    ) -> Result<Vec<Agent>> {
        const TRIES: usize = 40;
        let n = self.len();
        let mut placed: Vec<Option<Agent>> = (0..n).map(|_| None).collect();
        for k in 0..TRIES {
            if placed.iter().all(Option::is_some) {
                break;
            }
            let order: Vec<usize> = (0..n).map(|i| (i + k) % n).collect();
            let mut agent = self.agent(&order, opts(k)).await?;
            let at = self
                .connected_controller(&agent, Duration::from_secs(10))
                .await?;
            if placed[at].is_none() {
                placed[at] = Some(agent);
            } else {
                agent.sigterm()?;
                agent.wait_exit(Duration::from_secs(20)).await?;
            }
        }
        placed
            .into_iter()
            .enumerate()
            .map(|(i, agent)| {
                agent.with_context(|| format!("no agent landed on controller {i} in {TRIES} tries"))
            })
            .collect()
    }

    /// The controllers (indices) that `agent`'s process holds established TCP connections
    /// to, from its sockets.
    pub fn connected(&self, agent: &Agent) -> Result<Vec<usize>> {
        let pid = agent.pid().context("the agent has no process")?;
        Ok(tcp_peer_ports(pid)?
            .into_iter()
            .filter_map(|port| self.index_of_port(port))
            .collect())
    }

    /// The controller `agent` talks to, once its sockets are connected to exactly one of the
    /// cluster's (within `timeout`).
    pub async fn connected_controller(&self, agent: &Agent, timeout: Duration) -> Result<usize> {
        eventually(
            &format!("agent {} to be connected to one controller", agent.name()),
            timeout,
            || async {
                let connected = self.connected(agent)?;
                Ok(match connected.as_slice() {
                    [one] => Some(*one),
                    _ => None,
                })
            },
        )
        .await
    }

    /// The live controller whose log says last that it took `role` (`reaper`, `retention`)
    /// and not, after that, that it lost it. Only to find the holder: not a check.
    pub fn role_holder(&self, role: &str) -> Option<usize> {
        let field = format!("role={role}");
        let quoted = format!("role=\"{role}\"");
        let mut holder = None;
        for (i, controller) in self.controllers.iter().enumerate() {
            if !controller.pid().is_some_and(|pid| pid_alive(pid as i32)) {
                continue;
            }
            let log = std::fs::read_to_string(controller.log_path()).unwrap_or_default();
            // A restart appends to the same log: only the current process's lines count.
            let current = log.rsplit("---- harness: starting").next().unwrap_or("");
            let holds = current
                .lines()
                .filter(|l| l.contains(&field) || l.contains(&quoted))
                .fold(false, |holds, l| {
                    if l.contains(TOOK_ROLE) {
                        true
                    } else if l.contains(LOST_ROLE) {
                        false
                    } else {
                        holds
                    }
                });
            if holds {
                holder = Some(i);
            }
        }
        holder
    }
}
