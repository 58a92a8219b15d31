//! `failover`: N controllers on a fresh PostgreSQL database and real `ferry-agent`s listing
//! them all. A: `kill -9` of the controller an agent running long tasks talks to — how soon it
//! takes work from another controller, and that no attempt is lost. B: `kill -9` of the
//! controller holding the reaper role, then of an agent with a running task — how soon that
//! task's next attempt starts elsewhere.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{AttemptState, CancelJobRequest, GetJobRequest, Job, JobState};
use ferry_tests::{now_ms, Agent, AgentOpts, Controller};

use crate::{
    cluster::{self, FreshDb, Store},
    common::{self, Client, Deadline},
    procs,
    report::{emit, Stats, Target},
};

const BENCH: &str = "failover";
const HEARTBEAT: Duration = Duration::from_secs(1);
/// Long tasks of scenario A, each `sleep` outliving the agent timeout after the kill.
const LONG_TASKS: usize = 3;
/// Scenario A's target: the agent polls another controller within this.
const MOVE_TARGET_S: f64 = 2.0;
/// Scenario B's target beyond the agent timeout.
const REASSIGN_SLACK_S: f64 = 5.0;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Controllers sharing the database.
    #[arg(long, default_value_t = 3)]
    pub controllers: usize,
    /// The controllers' `--agent-timeout`.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub agent_timeout: Duration,
    /// Runs of each scenario, each on a fresh cluster.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Upper bound for each wait, in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

pub async fn run(args: &Args) -> Result<()> {
    if args.controllers < 2 {
        bail!("--controllers must be at least 2: one is killed");
    }
    let (mut claims, mut moves, mut lost, mut attempts) = (Vec::new(), Vec::new(), 0, 0);
    for run in 1..=args.runs {
        let db = FreshDb::create().await?;
        let result = controller_killed(args, &db).await;
        db.remove().await;
        let a = result.with_context(|| format!("scenario A, run {run}"))?;
        claims.push(a.claimed_s);
        moves.extend(a.moved_s);
        lost += a.lost;
        attempts += a.attempts;
    }
    let (mut reassigned, mut taken) = (Vec::new(), Vec::new());
    for run in 1..=args.runs {
        let db = FreshDb::create().await?;
        let result = reaper_and_agent_killed(args, &db).await;
        db.remove().await;
        let b = result.with_context(|| format!("scenario B, run {run}"))?;
        reassigned.push(b.reassigned_s);
        taken.extend(b.taken_s);
    }
    let move_target = Some(Target::Below(MOVE_TARGET_S));
    emit_runs("controller_kill_to_claim_elsewhere", claims, move_target);
    emit_runs("controller_kill_to_agent_moved", moves, None);
    emit(
        BENCH,
        "lost_attempts",
        lost as f64,
        "attempts",
        attempts,
        Some(Target::Below(1.0)),
    );
    let reassign_target = args.agent_timeout.as_secs_f64() + REASSIGN_SLACK_S;
    emit_runs(
        "reaper_and_agent_kill_to_new_attempt",
        reassigned,
        Some(Target::Below(reassign_target)),
    );
    emit_runs("reaper_role_taken_over", taken, None);
    Ok(())
}

/// The median and the worst of one figure's runs, in seconds (the target applies to both).
fn emit_runs(figure: &str, mut seconds: Vec<f64>, target: Option<Target>) {
    let Some(stats) = Stats::of(&mut seconds) else {
        return;
    };
    emit(
        BENCH,
        &format!("{figure}_p50_s"),
        stats.p50,
        "s",
        stats.n,
        target,
    );
    emit(
        BENCH,
        &format!("{figure}_max_s"),
        stats.max,
        "s",
        stats.n,
        target,
    );
}

/// Scenario A's measures of one run.
struct ControllerKilled {
    claimed_s: f64,
    moved_s: Option<f64>,
    lost: usize,
    attempts: usize,
}

/// Scenario B's measures of one run.
struct ReaperKilled {
    reassigned_s: f64,
    taken_s: Option<f64>,
}

/// An agent serving [`common::QUEUE`] that lists every controller (`first` first).
async fn agent(controllers: &[Controller], first: usize, name: &str, slots: u32) -> Result<Agent> {
    let mut opts = AgentOpts::new(name)
        .queue(common::QUEUE)
        .max_tasks(slots)
        .heartbeat_interval(HEARTBEAT);
    for (i, c) in controllers.iter().enumerate() {
        if i != first {
            opts = opts.arg("--controller").arg(c.addr());
        }
    }
    Agent::start(&controllers[first].addr(), common::trusting(opts))
        .await
        .with_context(|| format!("starting ferry-agent {name}"))
}

/// Scenario A: kill the agent's controller while its long tasks run.
async fn controller_killed(args: &Args, db: &FreshDb) -> Result<ControllerKilled> {
    let store = Store::Postgres(db.url().to_owned());
    let mut cluster = cluster::controllers(&store, args.controllers, args.agent_timeout).await?;
    let limit = Duration::from_secs(args.timeout);
    let a = agent(&cluster.list, 0, "bench-failover", LONG_TASKS as u32 + 2).await?;
    let sleep = format!("sleep {}", args.agent_timeout.as_secs() + 3);
    let tasks = (0..LONG_TASKS)
        .map(|i| (format!("long{i}"), sleep.as_str()))
        .collect();
    let mut client = cluster.list[0].job_client().await?;
    let job_id = common::submit(&mut client, common::shell_job("failover-a", tasks, 1)).await?;
    wait_job(
        &mut client,
        &job_id,
        limit,
        "every long task running",
        |job| running(job) == LONG_TASKS,
    )
    .await?;

    let ports: Vec<u16> = cluster.list.iter().map(Controller::port).collect();
    let victim = procs::connected_controller(&a, &ports, limit).await?;
    let survivor = (victim + 1) % ports.len();
    let mut client = cluster.list[survivor].job_client().await?;
    // Times are taken before each kill: `kill9` returns once the process is reaped.
    let t0 = now_ms();
    cluster.list[victim]
        .kill9()
        .context("kill -9 of the agent's controller")?;
    // A job submitted right after the kill can only be claimed through another controller.
    let probe = common::shell_job("failover-probe", vec![("probe".into(), "true")], 1);
    let probe_id = common::submit(&mut client, probe).await?;
    let probe_job = wait_job(
        &mut client,
        &probe_id,
        limit,
        "the probe to succeed",
        |job| common::job_state(job.state) == JobState::Succeeded,
    )
    .await?;
    let claimed = first_attempt(&probe_job).context("the probe has no attempt")?;
    let took = (claimed.started_at_ms - t0) as f64 / 1000.0;
    let moved = procs::log_time_after(a.log_path(), "moved to another controller", t0)
        .map(|at| (at - t0) as f64 / 1000.0);

    let job = wait_job(
        &mut client,
        &job_id,
        limit,
        "the long tasks to end",
        |job| {
            !matches!(
                common::job_state(job.state),
                JobState::Pending | JobState::Running
            )
        },
    )
    .await?;
    let attempts: Vec<_> = job.tasks.iter().flat_map(|t| &t.attempts).collect();
    let lost = attempts
        .iter()
        .filter(|a| a.state == AttemptState::Lost as i32)
        .count();
    let one_each = job
        .tasks
        .iter()
        .all(|t| t.attempts.len() == 1 && t.attempts[0].state == AttemptState::Succeeded as i32);
    eprintln!(
        "[failover] A: killed controller {victim} (the agent's); the agent moved {} s after, \
         a job submitted then was claimed after {took:.3} s; long job {:?}, {lost} lost \
         attempts, one successful attempt per task: {one_each}",
        moved.map_or("?".into(), |s| format!("{s:.3}")),
        common::job_state(job.state),
    );
    if !one_each || common::job_state(job.state) != JobState::Succeeded {
        bail!("the long tasks did not all succeed with one attempt each: {job:?}");
    }
    Ok(ControllerKilled {
        claimed_s: took,
        moved_s: moved,
        lost,
        attempts: attempts.len(),
    })
}

/// Scenario B: kill the reaper's controller, then an agent whose task runs.
async fn reaper_and_agent_killed(args: &Args, db: &FreshDb) -> Result<ReaperKilled> {
    let store = Store::Postgres(db.url().to_owned());
    let mut cluster = cluster::controllers(&store, args.controllers, args.agent_timeout).await?;
    let limit = Duration::from_secs(args.timeout);
    let mut a = agent(&cluster.list, 0, "bench-reaped-a", 1).await?;
    let mut client = cluster.list[0].job_client().await?;
    let spec = common::shell_job("failover-b", vec![("sleep".into(), "sleep 120")], 3);
    let job_id = common::submit(&mut client, spec).await?;
    wait_job(&mut client, &job_id, limit, "attempt 1 running", |job| {
        running(job) == 1
    })
    .await?;
    let b = agent(&cluster.list, 1, "bench-reaped-b", 1).await?;

    let logs: Vec<_> = cluster.list.iter().map(Controller::log_path).collect();
    let reaper = procs::role_holder(&logs, "reaper", limit).await?;
    let survivor = (reaper + 1) % logs.len();
    let mut client = cluster.list[survivor].job_client().await?;
    let killed_reaper = now_ms();
    cluster.list[reaper]
        .kill9()
        .context("kill -9 of the reaper's controller")?;
    let t0 = now_ms();
    a.kill9().context("kill -9 of agent A")?;
    let job = wait_job(&mut client, &job_id, limit, "attempt 2 to start", |job| {
        job.tasks
            .first()
            .is_some_and(|t| t.attempts.iter().any(|a| a.number == 2))
    })
    .await?;
    let second = job.tasks[0].attempts.iter().find(|a| a.number == 2);
    let second = second.context("attempt 2")?;
    if second.agent != "bench-reaped-b" {
        bail!("attempt 2 ran on {:?}, not bench-reaped-b", second.agent);
    }
    let took = (second.started_at_ms - t0) as f64 / 1000.0;
    let taken = logs
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != reaper)
        .filter_map(|(_, log)| procs::log_time_after(log, "this controller took the role", t0))
        .min()
        .map(|at| (at - killed_reaper) as f64 / 1000.0);
    eprintln!(
        "[failover] B: killed controller {reaper} (the reaper) and agent A; another controller \
         took the role {} s later; attempt 2 started on bench-reaped-b {took:.3} s after A's \
         kill (agent timeout {:?})",
        taken.map_or("?".into(), |s| format!("{s:.3}")),
        args.agent_timeout
    );
    let _ = client
        .cancel_job(CancelJobRequest {
            job_id: job_id.clone(),
        })
        .await;
    let strays = common::kill_strays(&a.work_dir()) + common::kill_strays(&b.work_dir());
    if strays > 0 {
        eprintln!("[failover] B: killed {strays} leftover task processes");
    }
    Ok(ReaperKilled {
        reassigned_s: took,
        taken_s: taken,
    })
}

/// Attempts running now.
fn running(job: &Job) -> usize {
    job.tasks
        .iter()
        .flat_map(|t| &t.attempts)
        .filter(|a| a.state == AttemptState::Running as i32)
        .count()
}

fn first_attempt(job: &Job) -> Option<&ferry_proto::v1::Attempt> {
    job.tasks.first().and_then(|t| t.attempts.first())
}

/// Polls `GetJob` until `done` says so.
async fn wait_job(
    client: &mut Client,
    job_id: &str,
    limit: Duration,
    what: &str,
    done: impl Fn(&Job) -> bool,
) -> Result<Job> {
    let deadline = Deadline::after(limit);
    loop {
        let job = client
            .get_job(GetJobRequest {
                job_id: job_id.to_owned(),
            })
            .await
            .with_context(|| format!("GetJob {job_id}"))?
            .into_inner();
        if done(&job) {
            return Ok(job);
        }
        deadline.check(|| format!("{what}; job is {job:?}"))?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
