//! `watchers`: what job watchers cost (issue 16, class 2). (a) A job of `--tasks` tasks
//! dispatched to simulated agents (`sim.rs`, so that the controller is the bottleneck) with
//! `--watchers` reading watchers and without, in alternate runs: the median time with over the
//! median without. (b) The controller's peak RSS while `--stalled` watchers open a watch of
//! such a job and never read it. (c) `ferry submit --wait` against `ferry submit` with the
//! real CLI binary (`submit_wait.rs`).

mod submit_wait;

use std::{sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::JobState;
use ferry_tests::{
    watch::{open_narrow, Watcher},
    Controller,
};

use crate::{
    common::{self, secs, Client},
    report::{emit, percentile, Target},
    sim::{self, SimAgent, Tally},
};

const BENCH: &str = "watchers";
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(5);

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Tasks of the watched job.
    #[arg(long, default_value_t = 5_000)]
    pub tasks: usize,
    /// Reading watchers in the runs with watchers.
    #[arg(long, default_value_t = 10)]
    pub watchers: usize,
    /// Runs with watchers and as many without, alternating.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Watchers that never read, for the memory figure.
    #[arg(long, default_value_t = 10)]
    pub stalled: usize,
    /// Simulated agents.
    #[arg(long, default_value_t = 8)]
    pub agents: usize,
    /// Slots of each simulated agent.
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// One-task jobs submitted through the CLI per run of (c).
    #[arg(long, default_value_t = 200)]
    pub submits: usize,
    /// CLI processes running at once in (c).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Upper bound for each run, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

pub async fn run(args: &Args) -> Result<()> {
    if args.tasks == 0 || args.runs == 0 || args.agents == 0 || args.slots == 0 {
        bail!("--tasks, --runs, --agents and --slots must be at least 1");
    }
    dispatch_with_watchers(args)
        .await
        .context("(a) dispatch with watchers")?;
    stalled_memory(args).await.context("(b) stalled watchers")?;
    submit_wait::run(args).await.context("(c) submit --wait")?;
    Ok(())
}

/// (a): alternate runs without and with watchers on one controller.
async fn dispatch_with_watchers(args: &Args) -> Result<()> {
    let controller = common::controller(AGENT_TIMEOUT).await?;
    let agents = register(&controller, args).await?;
    let mut client = controller.job_client().await?;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for run in 0..args.runs * 2 {
        let watchers = if run % 2 == 1 { args.watchers } else { 0 };
        let took = one_job(&controller, &mut client, &agents, args, watchers).await?;
        eprintln!(
            "[watchers] run {}: {} tasks with {watchers} watchers in {took:.2} s (load {})",
            run + 1,
            args.tasks,
            common::load1()
        );
        if watchers > 0 {
            &mut with
        } else {
            &mut without
        }
        .push(took);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(v, 50.0)
    };
    let (base, watched) = (median(&mut without), median(&mut with));
    let n = args.runs;
    emit(BENCH, "dispatch_without_watchers_s", base, "s", n, None);
    let figure = format!("dispatch_with_{}_watchers_s", args.watchers);
    emit(BENCH, &figure, watched, "s", n, None);
    let figure = format!("dispatch_with_{}_watchers_ratio", args.watchers);
    emit(
        BENCH,
        &figure,
        watched / base,
        "x",
        n,
        Some(Target::Below(1.1)),
    );
    Ok(())
}

/// Registers the simulated agents on `controller`.
async fn register(controller: &Controller, args: &Args) -> Result<Vec<SimAgent>> {
    let mut agents = Vec::new();
    for i in 0..args.agents {
        agents
            .push(SimAgent::register(&controller.addr(), format!("sim-{i:03}"), args.slots).await?);
    }
    Ok(agents)
}

/// Submits one job of `args.tasks` tasks, opens `watchers` watchers reading it, dispatches it
/// to the simulated agents; seconds from the first claim to the last recorded outcome. Every
/// watcher must then end on the whole job, succeeded.
async fn one_job(
    controller: &Controller,
    client: &mut Client,
    agents: &[SimAgent],
    args: &Args,
    watchers: usize,
) -> Result<f64> {
    let tasks = (0..args.tasks)
        .map(|t| (format!("t{t:05}"), "true"))
        .collect();
    let job_id = common::submit(client, common::shell_job("watched", tasks, 1)).await?;
    let limit = Duration::from_secs(args.timeout);
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..watchers {
        let mut w = Watcher::open(&controller.addr(), &job_id).await?;
        readers.spawn(async move { w.until_ended(limit).await });
    }
    let tally = Tally::new(args.tasks);
    let mut set = tokio::task::JoinSet::new();
    for agent in agents {
        set.spawn(sim::dispatch(
            agent.clone(),
            args.slots,
            Arc::clone(&tally),
            HEARTBEAT,
        ));
    }
    if tokio::time::timeout(limit, tally.finished.cancelled())
        .await
        .is_err()
    {
        tally.finished.cancel();
        bail!("job {job_id}: not every outcome recorded within {limit:?}");
    }
    while set.join_next().await.is_some() {}
    if let Some(error) = tally.error() {
        bail!("a simulated agent failed: {error}");
    }
    let span = tally.span().context("nothing was claimed")?;
    while let Some(joined) = readers.join_next().await {
        let last = joined.context("a watcher panicked")??;
        if last.state() != JobState::Succeeded || last.tasks.len() != args.tasks {
            bail!(
                "a watcher ended on job {job_id} {:?} with {} tasks",
                last.state(),
                last.tasks.len()
            );
        }
    }
    Ok(secs(span))
}

/// (b): a fresh controller's peak RSS while stalled watchers hold watches of a dispatched job.
async fn stalled_memory(args: &Args) -> Result<()> {
    let controller = common::controller(AGENT_TIMEOUT).await?;
    let pid = controller.pid().context("the controller has no pid")?;
    let agents = register(&controller, args).await?;
    let mut client = controller.job_client().await?;
    // A run without watchers first: the controller's own peak for such a job.
    one_job(&controller, &mut client, &agents, args, 0).await?;
    let (_, alone) = common::memory_mb(pid)?;
    let tasks = (0..args.tasks)
        .map(|t| (format!("t{t:05}"), "true"))
        .collect();
    let job_id = common::submit(&mut client, common::shell_job("stalled", tasks, 1)).await?;
    let mut stalled = Vec::new();
    for _ in 0..args.stalled {
        stalled.push(open_narrow(&controller.addr(), &job_id).await?);
    }
    let tally = Tally::new(args.tasks);
    let mut set = tokio::task::JoinSet::new();
    for agent in &agents {
        set.spawn(sim::dispatch(
            agent.clone(),
            args.slots,
            Arc::clone(&tally),
            HEARTBEAT,
        ));
    }
    let limit = Duration::from_secs(args.timeout);
    if tokio::time::timeout(limit, tally.finished.cancelled())
        .await
        .is_err()
    {
        tally.finished.cancel();
        bail!("job {job_id}: not every outcome recorded within {limit:?}");
    }
    while set.join_next().await.is_some() {}
    // Stalled for a while longer, with the job ended.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss, peak) = common::memory_mb(pid)?;
    // The stalled watchers still end on the whole job once they read.
    for mut w in stalled {
        let last = w.until_ended(limit).await?;
        if last.state() != JobState::Succeeded || last.tasks.len() != args.tasks {
            bail!("a stalled watcher ended on {:?}", last.state());
        }
    }
    eprintln!(
        "[watchers] controller RSS {rss:.0} MiB, peak {peak:.0} MiB with {} stalled watchers \
         (peak {alone:.0} MiB before them)",
        args.stalled
    );
    let figure = format!("stalled_{}_watchers_peak_rss_mb", args.stalled);
    emit(
        BENCH,
        &figure,
        peak,
        "MiB",
        args.tasks,
        Some(Target::Below(256.0)),
    );
    emit(
        BENCH,
        "no_watchers_peak_rss_mb",
        alone,
        "MiB",
        args.tasks,
        None,
    );
    Ok(())
}
