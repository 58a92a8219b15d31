//! `agents`: what an idle fleet costs: thousands of simulated agents (`sim.rs`, one connection
//! each, spread over N controllers sharing a fresh PostgreSQL database) heartbeating every
//! interval with jitter; the controllers' and PostgreSQL's CPU over a window, each
//! controller's peak RSS, and the heartbeat RPC's latency.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{AgentState, ListAgentsRequest, PollRequest};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    cluster::{self, FreshDb, PgCpu, Store},
    common::{self, ms, secs},
    report::{emit, Stats, Target},
    sim::SimAgent,
};

const BENCH: &str = "agents";
/// The controller's default.
const AGENT_TIMEOUT: Duration = Duration::from_secs(15);
/// Registrations in flight at once.
const REGISTERING: usize = 64;
/// An idle agent's long-poll, as the real agent asks for it.
const POLL_WAIT_MS: u32 = 20_000;
/// The real agent pauses `EMPTY_POLL_PAUSE` after `MAX_FAST_EMPTY` polls in a row answered
/// empty faster than `FAST_EMPTY_POLL`.
const FAST_EMPTY_POLL: Duration = Duration::from_millis(100);
const MAX_FAST_EMPTY: u32 = 3;
const EMPTY_POLL_PAUSE: Duration = Duration::from_secs(1);
const CPU_TARGET_PERCENT: f64 = 50.0;
const RSS_TARGET_MB: f64 = 512.0;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Simulated agents.
    #[arg(long, default_value_t = 5_000)]
    pub count: usize,
    /// Controllers sharing the PostgreSQL database.
    #[arg(long, default_value_t = 3)]
    pub controllers: usize,
    /// Heartbeat interval (each beat comes up to a twentieth of it late, at most 500 ms, as
    /// the real agent's jitter).
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// The measured window, after one interval of warm-up.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub window: Duration,
    /// Also keep a long-poll open per agent, as an idle `ferry-agent` does.
    #[arg(long)]
    pub poll: bool,
}

pub async fn run(args: &Args) -> Result<()> {
    let db = FreshDb::create().await?;
    let result = measure(args, &db).await;
    db.remove().await;
    result
}

async fn measure(args: &Args, db: &FreshDb) -> Result<()> {
    let store = Store::Postgres(db.url().to_owned());
    let cluster = cluster::controllers(&store, args.controllers, AGENT_TIMEOUT).await?;
    let controllers = &cluster.list;
    eprintln!(
        "[agents] {} controllers on {}; registering {} agents (load {})",
        controllers.len(),
        db.name(),
        args.count,
        common::load1()
    );
    let started = Instant::now();
    let permits = Arc::new(Semaphore::new(REGISTERING));
    let mut set = tokio::task::JoinSet::new();
    for i in 0..args.count {
        let addr = controllers[i % controllers.len()].addr();
        let permits = Arc::clone(&permits);
        set.spawn(async move {
            let _permit = permits.acquire_owned().await?;
            SimAgent::register(&addr, format!("idle-{i:05}"), 4).await
        });
    }
    let mut agents = Vec::with_capacity(args.count);
    while let Some(joined) = set.join_next().await {
        agents.push(joined.context("a registration panicked")??);
    }
    eprintln!(
        "[agents] registered in {:.1} s; warming up for {:?}, then measuring {:?}",
        started.elapsed().as_secs_f64(),
        args.interval,
        args.window
    );

    let stop = CancellationToken::new();
    let loops_started = Instant::now();
    let measure_from = Instant::now() + args.interval;
    let measure_to = measure_from + args.window;
    let mut loops = tokio::task::JoinSet::new();
    let mut polls = tokio::task::JoinSet::new();
    for agent in agents {
        if args.poll {
            polls.spawn(idle_polls(agent.clone(), stop.clone()));
        }
        loops.spawn(heartbeats(
            agent,
            args.interval,
            (measure_from, measure_to),
            stop.clone(),
        ));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let commits = db.activity().await?.commits;
    let before = (
        cluster::controllers_cpu(controllers)?,
        PgCpu::read(db.name()),
        common::cpu_times("self")?,
    );
    let t0 = Instant::now();
    tokio::time::sleep_until(measure_to.into()).await;
    let wall = t0.elapsed().as_secs_f64();
    let controller_s = cluster::controllers_cpu(controllers)? - before.0;
    let postgres_now = PgCpu::read(db.name());
    let postgres_s = postgres_now.since(&before.1);
    let exited = postgres_now.exited(&before.1);
    if exited > 0 {
        eprintln!("[agents] {exited} backends exited in the window: their CPU is not counted");
    }
    let bench_s = cluster::own_cpu_since(before.2)?;
    // Busy backends report their counts about once a second: close enough over the window.
    let commits = (db.activity().await?.commits - commits) as f64 / wall;
    stop.cancel();
    let mut latencies = Vec::new();
    while let Some(joined) = loops.join_next().await {
        latencies.extend(joined.context("an agent loop panicked")??);
    }
    let mut polled = 0;
    while let Some(joined) = polls.join_next().await {
        polled += joined.context("an agent's poll loop panicked")??;
    }
    let alive = ready_agents(&controllers[0]).await?;
    if alive != args.count {
        bail!("{alive} of {} agents are listed ready", args.count);
    }

    let percent = |s: f64| s / wall * 100.0;
    // Figures of a run whose agents also long-poll are named apart.
    let name = |figure: &str| {
        if args.poll {
            format!("polling_{figure}")
        } else {
            figure.to_owned()
        }
    };
    emit(
        BENCH,
        &name("cpu_percent_of_core"),
        percent(controller_s + postgres_s),
        "%",
        args.count,
        Some(Target::Below(CPU_TARGET_PERCENT)),
    );
    emit(
        BENCH,
        &name("controllers_cpu_percent"),
        percent(controller_s),
        "%",
        args.count,
        None,
    );
    emit(
        BENCH,
        &name("postgres_cpu_percent"),
        percent(postgres_s),
        "%",
        args.count,
        None,
    );
    emit(
        BENCH,
        &name("bench_cpu_percent"),
        percent(bench_s),
        "%",
        args.count,
        None,
    );
    let mut peaks = Vec::new();
    for (i, c) in controllers.iter().enumerate() {
        let pid = c
            .pid()
            .with_context(|| format!("controller {i} has no pid"))?;
        let (_, peak) = common::memory_mb(pid)?;
        emit(
            BENCH,
            &name(&format!("controller{i}_peak_rss_mb")),
            peak,
            "MiB",
            1,
            Some(Target::Below(RSS_TARGET_MB)),
        );
        peaks.push(format!("{peak:.0}"));
    }
    let beats = latencies.len();
    let stats = Stats::of(&mut latencies).context("no heartbeat in the window")?;
    emit(
        BENCH,
        &name("heartbeat_p50_ms"),
        stats.p50,
        "ms",
        beats,
        None,
    );
    emit(
        BENCH,
        &name("heartbeat_p99_ms"),
        stats.p99,
        "ms",
        beats,
        None,
    );
    emit(
        BENCH,
        &name("heartbeats_per_s"),
        beats as f64 / wall,
        "/s",
        beats,
        None,
    );
    if args.poll {
        let since = secs(loops_started.elapsed());
        eprintln!(
            "[agents] polls: {polled} in {since:.0} s, {:.0}/s",
            polled as f64 / since
        );
    }
    eprintln!(
        "[agents] over {wall:.1} s: {:.0} heartbeats/s, about {commits:.0} commits/s; CPU \
         controllers {:.1}%, postgres {:.1}%, this process {:.1}% of a core; peak RSS {} MiB; \
         heartbeat p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms (load {})",
        beats as f64 / wall,
        percent(controller_s),
        percent(postgres_s),
        percent(bench_s),
        peaks.join(" / "),
        stats.p50,
        stats.p99,
        stats.max,
        common::load1()
    );
    Ok(())
}

/// Heartbeats every `interval` with the real agent's jitter, the first at a random point of
/// the first interval; returns the latencies (ms) of those sent within `window`.
async fn heartbeats(
    mut agent: SimAgent,
    interval: Duration,
    window: (Instant, Instant),
    stop: CancellationToken,
) -> Result<Vec<f64>> {
    let mut latencies = Vec::new();
    let jitter = (interval / 20).min(Duration::from_millis(500));
    let mut next = Instant::now() + interval.mul_f64(fastrand::f64());
    loop {
        let at = next + jitter.mul_f64(fastrand::f64());
        tokio::select! {
            () = tokio::time::sleep_until(at.into()) => {}
            () = stop.cancelled() => return Ok(latencies),
        }
        let sent = Instant::now();
        agent.heartbeat(Vec::new()).await?;
        if sent >= window.0 && sent < window.1 {
            latencies.push(ms(sent.elapsed()));
        }
        next += interval;
    }
}

/// Keeps a long-poll open for free slots, as an idle agent does (nothing is ever queued), with
/// the real agent's pause after polls answered empty at once; returns how many it sent.
async fn idle_polls(agent: SimAgent, stop: CancellationToken) -> Result<usize> {
    // Spread the polls' starts as the agents' starts would be.
    let mut pause = Duration::from_millis(fastrand::u64(..5_000));
    let (mut sent, mut fast) = (0, 0);
    let mut client = agent.client.clone();
    loop {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.cancelled() => return Ok(sent),
        }
        let poll = client.poll(PollRequest {
            agent: Some(agent.identity.clone()),
            free_slots: 4,
            wait_ms: POLL_WAIT_MS,
            running: Vec::new(),
        });
        let started = Instant::now();
        tokio::select! {
            answer = poll => {
                let answer = answer.context("Poll")?.into_inner();
                if !answer.assignments.is_empty() {
                    bail!("an idle agent was assigned work");
                }
            }
            () = stop.cancelled() => return Ok(sent),
        }
        sent += 1;
        fast = if started.elapsed() < FAST_EMPTY_POLL {
            fast + 1
        } else {
            0
        };
        pause = if fast >= MAX_FAST_EMPTY {
            fast = 0;
            EMPTY_POLL_PAUSE
        } else {
            Duration::ZERO
        };
    }
}

/// Agents listed `ready`.
async fn ready_agents(controller: &ferry_tests::Controller) -> Result<usize> {
    let agents = controller
        .job_client()
        .await?
        .max_decoding_message_size(64 << 20)
        .list_agents(ListAgentsRequest::default())
        .await
        .context("ListAgents")?
        .into_inner()
        .agents;
    Ok(agents
        .iter()
        .filter(|a| a.state == AgentState::Ready as i32)
        .count())
}
