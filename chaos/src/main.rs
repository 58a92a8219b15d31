//! `ferry-chaos`: a seeded, reproducible fault schedule over a workload of real processes
//! (controllers, agents, the CLI — started with the `ferry-tests` harness), then the
//! invariants of DESIGN.md checked from the record and printed; exits 1 on any violation.
//!
//! The seed draws the workload (DAG jobs of shell tasks that append their attempt and times to
//! a ledger, uploads and their consumers, tasks printing their environment) and the fault
//! schedule (agent `kill -9` and restart, agent SIGSTOP past the agent timeout, controller
//! `kill -9` and restart, network cuts, blackholes and delays through the suite's own proxy, a
//! full data disk, a slow one through the suite's FUSE filesystem). Incremental SQL extracts
//! of a growing PostgreSQL table and of a growing MariaDB table run throughout.

mod checks;
mod disk;
mod extract;
mod faults;
mod fleet;
mod ledger;
mod leftovers;
mod proxy;
mod record;
mod recovery;
mod report;
mod run;
mod schedule;
mod secrets;
mod setup;
mod slowfs;
mod submit;
mod time;
mod workload;

use std::{path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;

use crate::{fleet::StoreKind, schedule::Kind};

#[derive(Parser, Debug, Clone)]
#[command(
    name = "ferry-chaos",
    about = "Faults over a large workload; the invariants checked"
)]
pub struct Args {
    /// Seed of the workload and the fault schedule [default: random, printed]
    #[arg(long)]
    pub seed: Option<u64>,
    /// How long faults are injected (jobs are submitted over the first 70 % of it)
    #[arg(long, default_value = "4m", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Tasks of the workload
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// The controllers' store: one controller on SQLite, or several on one fresh PostgreSQL
    /// database of FERRY_TEST_POSTGRES_URL's server
    #[arg(long, value_enum, default_value = "sqlite")]
    pub store: StoreKind,
    /// Controllers with `--store postgres`
    #[arg(long, default_value_t = 2)]
    pub controllers: usize,
    #[arg(long, default_value_t = 4)]
    pub agents: usize,
    /// `--max-tasks` of each agent
    #[arg(long, default_value_t = 6)]
    pub slots: u32,
    /// The controllers' `--agent-timeout`
    #[arg(long, default_value = "4s", value_parser = humantime::parse_duration)]
    pub agent_timeout: Duration,
    /// Fault kinds to inject, comma-separated [default: all]: agent-kill, agent-pause,
    /// controller-kill, net-cut, net-blackhole, net-delay, disk-full, slow-disk
    #[arg(long, value_delimiter = ',')]
    pub faults: Vec<Kind>,
    /// How long the jobs may take to end once the faults stop
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Where the run's directory is made [default: the temp dir]
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Keep the run's directory (kept anyway when an invariant fails)
    #[arg(long)]
    pub keep: bool,
}

/// Runs `work` unless SIGINT or SIGTERM comes first: then it is dropped, and with it every
/// process it started, its database and its disk.
async fn until_signal(
    work: impl std::future::Future<Output = anyhow::Result<usize>>,
) -> anyhow::Result<usize> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        done = work => done,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted (SIGINT)"),
        _ = term.recv() => anyhow::bail!("terminated (SIGTERM)"),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let setup = match setup::Setup::new(&args) {
        Ok(setup) => setup,
        Err(e) => {
            eprintln!("ferry-chaos: {e:#}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(until_signal(run::run(&args, &setup))) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(violations) => {
            eprintln!(
                "ferry-chaos: {violations} invariant violations (seed {}); run kept in {}",
                setup.seed,
                setup.root.display()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!(
                "ferry-chaos: the run could not complete (seed {}): {e:#}; run kept in {}",
                setup.seed,
                setup.root.display()
            );
            ExitCode::from(2)
        }
    }
}
