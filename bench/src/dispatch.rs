//! `dispatch`: the control plane's own capacity, without process spawn cost: real controllers
//! (one on SQLite; one or N sharing a fresh PostgreSQL database) and many simulated agents in
//! this process (`sim.rs`) that complete every attempt at once; tasks per second from the first
//! claim to the last recorded outcome, and the CPU the controllers, PostgreSQL and this process
//! spent per task.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{JobState, ListJobsRequest, ListQueuesRequest};
use ferry_tests::Controller;

use crate::{
    cluster::{self, FreshDb, PgCpu, Store},
    common::{self, secs},
    report::{emit, Target},
    sim::{self, SimAgent, Tally},
};

const BENCH: &str = "dispatch";
/// Long enough that no agent is declared dead while this process is busy.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);
const HEARTBEAT: Duration = Duration::from_secs(5);
const SUBMITTERS: usize = 4;
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
const SQLITE_TARGET: f64 = 8_000.0;
const POSTGRES_TARGET: f64 = 4_000.0;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum StoreChoice {
    Sqlite,
    Postgres,
    /// SQLite (1 controller), PostgreSQL with 1 controller, PostgreSQL with `--controllers`.
    Both,
}

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    #[arg(long, value_enum, default_value_t = StoreChoice::Both)]
    pub store: StoreChoice,
    /// Controllers sharing the PostgreSQL database.
    #[arg(long, default_value_t = 3)]
    pub controllers: usize,
    /// Tasks in all, split evenly over `--jobs` jobs.
    #[arg(long, default_value_t = 20_000)]
    pub tasks: usize,
    /// Jobs (`--jobs` = `--tasks` submits one-task jobs).
    #[arg(long, default_value_t = 20)]
    pub jobs: usize,
    /// Simulated agents, spread over the controllers.
    #[arg(long, default_value_t = 32)]
    pub agents: usize,
    /// Slots of each simulated agent.
    #[arg(long, default_value_t = 8)]
    pub slots: u32,
    /// Keep a transaction open on the PostgreSQL database for the whole of each run (as a
    /// long report elsewhere in the database would): dispatch must not collapse.
    #[arg(long)]
    pub long_transaction: bool,
    /// Upper bound for each run, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// One configuration to measure.
struct Run {
    label: String,
    postgres: bool,
    controllers: usize,
    target: f64,
}

pub async fn run(args: &Args) -> Result<()> {
    if args.jobs == 0 || args.tasks < args.jobs {
        bail!("--tasks must be at least --jobs (and --jobs at least 1)");
    }
    let mut runs = Vec::new();
    if matches!(args.store, StoreChoice::Sqlite | StoreChoice::Both) {
        runs.push(Run {
            label: "sqlite".into(),
            postgres: false,
            controllers: 1,
            target: SQLITE_TARGET,
        });
    }
    let mut counts = match args.store {
        StoreChoice::Sqlite => vec![],
        StoreChoice::Postgres => vec![args.controllers.max(1)],
        StoreChoice::Both => vec![1, args.controllers.max(1)],
    };
    counts.dedup();
    for n in counts {
        runs.push(Run {
            label: match args.long_transaction {
                true => format!("postgres_x{n}_long_transaction"),
                false => format!("postgres_x{n}"),
            },
            postgres: true,
            controllers: n,
            target: POSTGRES_TARGET,
        });
    }
    for run in &runs {
        measure(args, run)
            .await
            .with_context(|| format!("run {}", run.label))?;
    }
    Ok(())
}

async fn measure(args: &Args, run: &Run) -> Result<()> {
    if !run.postgres {
        return measure_on(args, run, &Store::Sqlite, None).await;
    }
    let db = FreshDb::create().await?;
    let store = Store::Postgres(db.url().to_owned());
    let held = match args.long_transaction {
        true => Some(db.hold_snapshot().await?),
        false => None,
    };
    let result = measure_on(args, run, &store, Some(db.name())).await;
    drop(held);
    // The controllers are gone: their backends have reported what they did.
    tokio::time::sleep(Duration::from_millis(500)).await;
    if result.is_ok() {
        match db.activity().await {
            Ok(a) => eprintln!(
                "[dispatch] {}: postgres per task, whole run: {}",
                run.label,
                a.per(args.tasks)
            ),
            Err(e) => eprintln!("[dispatch] {}: {e:#}", run.label),
        }
        if let Ok(hot) = db.hottest_reads(5).await {
            let per = |n: i64| n as f64 / args.tasks.max(1) as f64;
            let hot: Vec<String> = hot
                .iter()
                .map(|(name, n)| format!("{name} {:.1}", per(*n)))
                .collect();
            eprintln!(
                "[dispatch] {}: rows read per task, by relation: {}",
                run.label,
                hot.join(", ")
            );
        }
    }
    db.remove().await;
    result
}

async fn measure_on(args: &Args, run: &Run, store: &Store, db: Option<&str>) -> Result<()> {
    let label = &run.label;
    eprintln!(
        "[dispatch] {label}: {} controller(s), {} agents x {} slots, {} tasks in {} jobs \
         (load {})",
        run.controllers,
        args.agents,
        args.slots,
        args.tasks,
        args.jobs,
        common::load1()
    );
    let cluster = cluster::controllers(store, run.controllers, AGENT_TIMEOUT).await?;
    let controllers = &cluster.list;
    let agents = register_agents(controllers, args.agents, args.slots).await?;
    let submit_s = submit_jobs(controllers, args).await?;
    eprintln!("[dispatch] {label}: submitted in {submit_s:.2} s; dispatching");

    let first_pid = controllers[0].pid().context("controller 0 has no pid")?;
    let threads = cluster::threads_cpu(first_pid);
    let before = (
        cluster::controllers_cpu(controllers)?,
        db.map(PgCpu::read),
        common::cpu_times("self")?,
    );
    let tally = Tally::new(args.tasks);
    let mut set = tokio::task::JoinSet::new();
    for agent in agents {
        set.spawn(sim::dispatch(
            agent,
            args.slots,
            Arc::clone(&tally),
            HEARTBEAT,
        ));
    }
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.timeout);
    loop {
        let wait = PROGRESS_EVERY.min(deadline.saturating_duration_since(Instant::now()));
        if tokio::time::timeout(wait, tally.finished.cancelled())
            .await
            .is_ok()
        {
            break;
        }
        let (claimed, recorded) = tally.counts();
        if Instant::now() >= deadline {
            tally.finished.cancel();
            bail!(
                "{recorded}/{} outcomes recorded ({claimed} claimed) after {}s",
                args.tasks,
                args.timeout
            );
        }
        eprintln!(
            "[dispatch] {label}:   {recorded}/{} recorded, {claimed} claimed after {:.0} s",
            args.tasks,
            started.elapsed().as_secs_f64()
        );
    }
    let controller_s = cluster::controllers_cpu(controllers)? - before.0;
    let postgres_s = match (db, &before.1) {
        (Some(db), Some(earlier)) => Some(postgres_since(label, db, earlier)),
        _ => None,
    };
    let bench_s = cluster::own_cpu_since(before.2)?;
    let threads = cluster::busiest_threads(&threads, &cluster::threads_cpu(first_pid));
    while set.join_next().await.is_some() {}
    if let Some(error) = tally.error() {
        bail!("a simulated agent failed: {error}");
    }
    let span = tally.span().context("nothing was claimed")?;
    check_all_succeeded(&controllers[0]).await?;

    let n = args.tasks;
    let rate = n as f64 / secs(span);
    emit(
        BENCH,
        &format!("{label}_tasks_per_s"),
        rate,
        "tasks/s",
        n,
        Some(Target::AtLeast(run.target)),
    );
    emit(
        BENCH,
        &format!("{label}_elapsed_s"),
        secs(span),
        "s",
        n,
        None,
    );
    emit(BENCH, &format!("{label}_submit_s"), submit_s, "s", n, None);
    let per_task = |s: f64| s * 1000.0 / n as f64;
    let mut shares = vec![("controller", controller_s)];
    if let Some(pg) = postgres_s {
        shares.push(("postgres", pg));
    }
    shares.push(("bench", bench_s));
    for (who, s) in &shares {
        emit(
            BENCH,
            &format!("{label}_{who}_cpu_ms_per_task"),
            per_task(*s),
            "ms",
            n,
            None,
        );
    }
    let wall = secs(span);
    eprintln!(
        "[dispatch] {label}: {rate:.0} tasks/s over {wall:.2} s; CPU per task {} \
         (in cores: {}; load {})",
        shares
            .iter()
            .map(|(who, s)| format!("{who} {:.3} ms", per_task(*s)))
            .collect::<Vec<_>>()
            .join(", "),
        shares
            .iter()
            .map(|(who, s)| format!("{who} {:.2}", s / wall))
            .collect::<Vec<_>>()
            .join(", "),
        common::load1()
    );
    eprintln!("[dispatch] {label}: controller 0's busiest threads: {threads}");
    Ok(())
}

/// PostgreSQL's CPU seconds since `earlier`, warning when backends of `db` exited meanwhile.
fn postgres_since(label: &str, db: &str, earlier: &PgCpu) -> f64 {
    let now = PgCpu::read(db);
    let exited = now.exited(earlier);
    if exited > 0 {
        eprintln!("[dispatch] {label}: {exited} backends of {db} exited: their CPU is not counted");
    }
    now.since(earlier)
}

/// Registers `count` agents, agent `i` on controller `i mod N`.
async fn register_agents(
    controllers: &[Controller],
    count: usize,
    slots: u32,
) -> Result<Vec<SimAgent>> {
    let mut set = tokio::task::JoinSet::new();
    for i in 0..count {
        let addr = controllers[i % controllers.len()].addr();
        set.spawn(async move { SimAgent::register(&addr, format!("sim-{i:05}"), slots).await });
    }
    let mut agents = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        agents.push(joined.context("a registration panicked")??);
    }
    Ok(agents)
}

/// Submits the jobs, [`SUBMITTERS`] at a time, round-robin over the controllers; seconds taken.
async fn submit_jobs(controllers: &[Controller], args: &Args) -> Result<f64> {
    let mut clients = Vec::new();
    for c in controllers {
        clients.push(c.job_client().await?);
    }
    let per_job = args.tasks / args.jobs;
    let extra = args.tasks % args.jobs;
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..SUBMITTERS {
        let (clients, next, jobs) = (clients.clone(), Arc::clone(&next), args.jobs);
        set.spawn(async move {
            loop {
                let j = next.fetch_add(1, Ordering::Relaxed);
                if j >= jobs {
                    return Ok::<_, anyhow::Error>(());
                }
                let size = per_job + usize::from(j < extra);
                let tasks = (0..size).map(|t| (format!("t{t:05}"), "true")).collect();
                let spec = common::shell_job(&format!("dispatch-{j}"), tasks, 1);
                let mut client = clients[j % clients.len()].clone();
                common::submit(&mut client, spec)
                    .await
                    .with_context(|| format!("job {j}"))?;
            }
        });
    }
    while let Some(joined) = set.join_next().await {
        joined.context("a submitter panicked")??;
    }
    Ok(secs(started.elapsed()))
}

/// Nothing left queued or running, and no job failed or was cancelled.
async fn check_all_succeeded(controller: &Controller) -> Result<()> {
    let mut client = controller.job_client().await?;
    let queues = client
        .list_queues(ListQueuesRequest {})
        .await
        .context("ListQueues")?
        .into_inner()
        .queues;
    if let Some(q) = queues.iter().find(|q| q.queued > 0 || q.running > 0) {
        bail!(
            "queue {} still has {} queued and {} running",
            q.name,
            q.queued,
            q.running
        );
    }
    for state in [JobState::Failed, JobState::Cancelled] {
        let bad = client
            .list_jobs(ListJobsRequest {
                limit: 1,
                state: state as i32,
            })
            .await
            .context("ListJobs")?
            .into_inner()
            .jobs;
        if let Some(job) = bad.first() {
            bail!("job {} ended {state:?}", job.id);
        }
    }
    Ok(())
}
