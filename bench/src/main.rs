//! `ferry-bench NAME [--flags]`: runs one benchmark (or `all`) against real release
//! `ferry-controller` and `ferry-agent` processes and prints one JSON line per figure on
//! standard output; progress goes to standard error.

mod agent_idle;
mod agents;
mod baseline;
mod cluster;
mod common;
mod dispatch;
mod extract;
mod failover;
mod latency;
mod procs;
mod reassign;
mod report;
mod schedules;
mod sim;
mod store;
mod throughput;
mod upload;
mod watchers;
mod webhook;

use std::{path::PathBuf, process::ExitCode};

use anyhow::{bail, Context, Result};
use clap::{Args, Command, FromArgMatches, Parser, Subcommand};
use ferry_tests::{bin_dir, AGENT_BIN, CONTROLLER_BIN};

#[derive(Parser, Debug)]
#[command(
    name = "ferry-bench",
    about = "Ferry benchmarks: one JSON line per figure on stdout",
    after_help = "Build the release binaries first: cargo build --release --workspace --bins"
)]
struct Cli {
    /// Serve the controller over TLS (a private CA from scripts/dev-certs; agents and the
    /// benchmark's own client trust it), to measure what TLS costs.
    #[arg(long, global = true)]
    tls: bool,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand, Debug, Clone)]
enum Bench {
    /// Submit-to-succeeded time of sequential one-task jobs.
    Latency(latency::Args),
    /// Tasks per second through one agent: one big job, many small jobs.
    Throughput(throughput::Args),
    /// Time from an agent's kill -9 to its task's new attempt on another agent.
    Reassign(reassign::Args),
    /// Memory and CPU of an idle agent.
    AgentIdle(agent_idle::Args),
    /// Durable transitions per second of the SQLite store, in-process.
    Store(store::Args),
    /// MB/s of a 2 GiB output uploaded into the data-directory store, beside raw loopback TCP.
    Upload(upload::Args),
    /// SQL extraction rows/s (PostgreSQL csv/parquet, MariaDB csv) beside psql, ConnectorX
    /// and the mariadb client; agent peak RSS.
    Extract(extract::Args),
    /// Tasks/s of the control plane alone (SQLite; PostgreSQL with 1 and N controllers):
    /// simulated agents that complete every attempt at once. Not part of `all` (over 2 min).
    Dispatch(dispatch::Args),
    /// CPU and memory of N controllers and PostgreSQL under thousands of heartbeating agents.
    Agents(agents::Args),
    /// Controllers on PostgreSQL killed under real agents: how soon work moves, nothing lost.
    Failover(failover::Args),
    /// What job watchers cost: dispatch with 10 watchers against none, controller memory with
    /// stalled watchers, `ferry submit --wait` against `submit`.
    Watchers(watchers::Args),
    /// How late an `every` schedule fires; minutely ticks queued per second (backfill).
    Schedules(schedules::Args),
    /// `POST /hooks/NAME` → job created: sequential webhook deliveries with a bearer secret.
    Webhook(webhook::Args),
    /// Every benchmark in sequence, with its defaults (all but `dispatch`).
    All,
}

impl Bench {
    fn name(&self) -> &'static str {
        match self {
            Self::Latency(_) => "latency",
            Self::Throughput(_) => "throughput",
            Self::Reassign(_) => "reassign",
            Self::AgentIdle(_) => "agent-idle",
            Self::Store(_) => "store",
            Self::Upload(_) => "upload",
            Self::Extract(_) => "extract",
            Self::Dispatch(_) => "dispatch",
            Self::Agents(_) => "agents",
            Self::Failover(_) => "failover",
            Self::Watchers(_) => "watchers",
            Self::Schedules(_) => "schedules",
            Self::Webhook(_) => "webhook",
            Self::All => "all",
        }
    }

    fn needs_binaries(&self) -> bool {
        !matches!(self, Self::Store(_))
    }

    async fn run(&self) -> Result<()> {
        match self {
            Self::Latency(args) => latency::run(args).await,
            Self::Throughput(args) => throughput::run(args).await,
            Self::Reassign(args) => reassign::run(args).await,
            Self::AgentIdle(args) => agent_idle::run(args).await,
            Self::Store(args) => store::run(args).await,
            Self::Upload(args) => upload::run(args).await,
            Self::Extract(args) => extract::run(args).await,
            Self::Dispatch(args) => dispatch::run(args).await,
            Self::Agents(args) => agents::run(args).await,
            Self::Failover(args) => failover::run(args).await,
            Self::Watchers(args) => watchers::run(args).await,
            Self::Schedules(args) => schedules::run(args).await,
            Self::Webhook(args) => webhook::run(args).await,
            Self::All => unreachable!("`all` is expanded before running"),
        }
    }
}

/// The arguments of a benchmark with every flag at its default.
fn defaults<T: Args + FromArgMatches>() -> T {
    let cmd = T::augment_args(Command::new("defaults"));
    T::from_arg_matches(&cmd.get_matches_from(["defaults"]))
        .expect("every benchmark flag has a default")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let benches = match cli.bench {
        Bench::All => vec![
            Bench::Latency(defaults()),
            Bench::Throughput(defaults()),
            Bench::Reassign(defaults()),
            Bench::AgentIdle(defaults()),
            Bench::Store(defaults()),
            Bench::Upload(defaults()),
            Bench::Extract(defaults()),
            // Under 2 minutes each; `dispatch` is not: its PostgreSQL runs alone take longer.
            Bench::Failover(defaults()),
            Bench::Agents(defaults()),
            Bench::Watchers(defaults()),
            Bench::Webhook(defaults()),
        ],
        one => vec![one],
    };
    if cli.tls {
        if let Err(e) = common::use_tls() {
            eprintln!("ferry-bench: {e:#}");
            return ExitCode::FAILURE;
        }
    }
    if benches.iter().any(Bench::needs_binaries) {
        if let Err(e) = locate_binaries() {
            eprintln!("ferry-bench: {e:#}");
            return ExitCode::from(2);
        }
    }
    // Started after FERRY_BIN_DIR is set, while this is the only thread.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("ferry-bench: starting the tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut failed = Vec::new();
    for bench in &benches {
        eprintln!(
            "[{}] starting (1-minute load average {})",
            bench.name(),
            common::load1()
        );
        let started = std::time::Instant::now();
        match runtime.block_on(bench.run()) {
            Ok(()) => eprintln!(
                "[{}] done in {:.1} s",
                bench.name(),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => {
                eprintln!("[{}] FAILED: {e:#}", bench.name());
                failed.push(bench.name());
            }
        }
    }
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("ferry-bench: failed: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// Points the harness at the release binaries beside this executable (unless
/// `FERRY_BIN_DIR` says otherwise) and checks that they were built.
fn locate_binaries() -> Result<()> {
    if std::env::var_os("FERRY_BIN_DIR").is_none() {
        let exe = std::env::current_exe().context("locating the ferry-bench executable")?;
        let dir = exe
            .parent()
            .context("the ferry-bench executable has no folder")?
            .to_path_buf();
        if !dir.ends_with("release") {
            eprintln!(
                "ferry-bench: warning: running from {} — not a release build; build with \
                 `cargo run --release -p ferry-bench`",
                dir.display()
            );
        }
        // Only the main thread exists yet: nothing reads the environment concurrently.
        std::env::set_var("FERRY_BIN_DIR", &dir);
    }
    if std::env::var_os("FERRY_PROCESS_LOG").is_none() {
        // What an operator would run with; debug logging would weigh on every figure.
        std::env::set_var("FERRY_PROCESS_LOG", "info");
    }
    let dir = bin_dir();
    let missing: Vec<PathBuf> = [CONTROLLER_BIN, AGENT_BIN]
        .iter()
        .map(|name| dir.join(name))
        .filter(|path| !path.is_file())
        .collect();
    if !missing.is_empty() {
        bail!(
            "missing {}: run `cargo build --release --workspace --bins` first (or set \
             FERRY_BIN_DIR to the folder holding ferry-controller and ferry-agent)",
            missing
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    eprintln!("ferry-bench: binaries from {}", dir.display());
    warn_if_stale(&dir);
    Ok(())
}

/// Warns when a binary is older than the sources it is built from: `cargo run -p ferry-bench`
/// rebuilds only the bench, not the controller or the agent.
fn warn_if_stale(dir: &std::path::Path) {
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    for (bin, crates) in [
        (CONTROLLER_BIN, &["controller", "proto"][..]),
        (AGENT_BIN, &["agent", "proto"][..]),
    ] {
        let Ok(built) = dir.join(bin).metadata().and_then(|m| m.modified()) else {
            continue;
        };
        let newest = crates
            .iter()
            .filter_map(|c| newest_mtime(&workspace.join(c)))
            .max();
        if newest.is_some_and(|n| n > built) {
            eprintln!(
                "ferry-bench: warning: {bin} is older than its sources; run `cargo build \
                 --release --workspace --bins` to measure the current code"
            );
        }
    }
}

/// Newest modification time of the files under `dir` (sources only: `target` is skipped).
fn newest_mtime(dir: &std::path::Path) -> Option<std::time::SystemTime> {
    let mut newest = None;
    for entry in std::fs::read_dir(dir).ok()?.flatten() {
        let path = entry.path();
        let time = if path.is_dir() {
            if path.ends_with("target") {
                continue;
            }
            newest_mtime(&path)
        } else {
            entry.metadata().and_then(|m| m.modified()).ok()
        };
        newest = newest.max(time);
    }
    newest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_uses_each_benchmarks_defaults() {
        let t: throughput::Args = defaults();
        assert_eq!(
            (t.tasks, t.jobs, t.concurrency, t.max_tasks),
            (10_000, 2_000, 32, 8)
        );
        let l: latency::Args = defaults();
        assert_eq!((l.jobs, l.warmup, l.trace), (1000, 20, false));
        let i: agent_idle::Args = defaults();
        assert_eq!(i.seconds, 60);
        let s: store::Args = defaults();
        assert_eq!((s.seconds, s.workers), (10, 64));
        let r: reassign::Args = defaults();
        assert_eq!(r.runs, 3);
        let u: upload::Args = defaults();
        assert_eq!((u.size_mib, u.timeout), (2048, 300));
        let d: dispatch::Args = defaults();
        assert_eq!(
            (d.store, d.controllers, d.tasks, d.jobs, d.agents, d.slots),
            (dispatch::StoreChoice::Both, 3, 20_000, 20, 32, 8)
        );
        let f: failover::Args = defaults();
        assert_eq!((f.controllers, f.runs), (3, 3));
        assert_eq!(f.agent_timeout, std::time::Duration::from_secs(5));
        let a: agents::Args = defaults();
        assert_eq!((a.count, a.controllers, a.poll), (5_000, 3, false));
        assert_eq!(
            (a.interval, a.window),
            (
                std::time::Duration::from_secs(5),
                std::time::Duration::from_secs(30)
            )
        );
    }

    #[test]
    fn cli_parses() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        let cli = Cli::parse_from(["ferry-bench", "agent-idle", "--seconds", "10"]);
        assert!(matches!(cli.bench, Bench::AgentIdle(a) if a.seconds == 10));
        let cli = Cli::parse_from(["ferry-bench", "dispatch", "--store", "sqlite"]);
        assert!(
            matches!(cli.bench, Bench::Dispatch(d) if d.store == dispatch::StoreChoice::Sqlite)
        );
        let cli = Cli::parse_from(["ferry-bench", "agents", "--window", "10s", "--poll"]);
        assert!(matches!(cli.bench, Bench::Agents(a) if a.poll && a.window.as_secs() == 10));
    }
}
