//! `throughput`: tasks per second through one agent (`--max-tasks 8`), as one job of 10,000
//! independent tasks and as 2,000 one-task jobs submitted 32 at a time; with the CPU time the
//! controller and the agent spent on it; first, how many `/bin/sh -c true` this host spawns per
//! second on all its cores, the ceiling of any such figure.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{JobState, ListJobsRequest, ListQueuesRequest, SubmitJobRequest};
use ferry_tests::{Agent, Controller};

use crate::{
    baseline,
    common::{self, job_ended_badly, job_state, secs, CpuTimes, Deadline},
    report::{emit, Target},
};

const BENCH: &str = "throughput";
const POLL: Duration = Duration::from_millis(50);
/// Scenario B's wait on the queue counts: a pause of `QUEUE_POLL_PER_TASK` per task left,
/// within these bounds. The count costs the controller a scan of the queued tasks, so it is
/// asked rarely while thousands are left and every few milliseconds near the end (where the
/// pause bounds the error of the measured time).
const QUEUE_POLL_MIN: Duration = Duration::from_millis(2);
const QUEUE_POLL_MAX: Duration = Duration::from_millis(250);
const QUEUE_POLL_PER_TASK: Duration = Duration::from_micros(100);
const PROGRESS_EVERY: Duration = Duration::from_secs(5);
/// Shells each core spawns for the host's ceiling (about a second).
const SHELLS_PER_CORE: usize = 1_000;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Tasks of the single job of scenario A (0 skips it; at most 10,000, the controller's
    /// limit of tasks per job).
    #[arg(long, default_value_t = 10_000)]
    pub tasks: usize,
    /// One-task jobs of scenario B (0 skips it).
    #[arg(long, default_value_t = 2_000)]
    pub jobs: usize,
    /// Concurrent submits in scenario B.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// The agent's `--max-tasks`.
    #[arg(long, default_value_t = 8)]
    pub max_tasks: u32,
    /// Upper bound for each scenario, in seconds.
    #[arg(long, default_value_t = 900)]
    pub timeout: u64,
}

pub async fn run(args: &Args) -> Result<()> {
    let ceiling = host_ceiling().await?;
    if args.tasks > 0 {
        one_job(args, ceiling).await?;
    }
    if args.jobs > 0 {
        many_jobs(args, ceiling).await?;
    }
    Ok(())
}

/// Spawns per second of the task process itself on every core at once, before the scenarios:
/// the ceiling a one-process-per-task runner cannot pass on this host today (per second).
async fn host_ceiling() -> Result<f64> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let spawns =
        tokio::task::spawn_blocking(move || baseline::shell_spawns(cores, SHELLS_PER_CORE))
            .await
            .context("the baseline thread")??;
    eprintln!(
        "[throughput] this host: `/bin/sh -c true` spawned and reaped {:.0}/s on {cores} cores \
         ({:.2} ms of CPU each): the task processes alone cap any figure below at that",
        spawns.per_s, spawns.cpu_ms
    );
    emit(
        BENCH,
        "raw_sh_per_s",
        spawns.per_s,
        "/s",
        spawns.wall.n,
        None,
    );
    emit(
        BENCH,
        "raw_sh_cpu_ms",
        spawns.cpu_ms,
        "ms",
        spawns.wall.n,
        None,
    );
    Ok(spawns.per_s)
}

/// A fresh controller and agent, and a snapshot of their CPU times.
struct Setup {
    controller: Controller,
    agent: Agent,
    start_cpu: (CpuTimes, CpuTimes),
}

impl Setup {
    async fn start(args: &Args) -> Result<Self> {
        let controller = common::controller(Duration::from_secs(15)).await?;
        let agent = common::agent(
            &controller,
            "bench-throughput",
            args.max_tasks,
            Duration::from_secs(5),
        )
        .await?;
        let start_cpu = Self::cpu(&controller, &agent)?;
        Ok(Self {
            controller,
            agent,
            start_cpu,
        })
    }

    fn cpu(controller: &Controller, agent: &Agent) -> Result<(CpuTimes, CpuTimes)> {
        Ok((
            common::cpu_of(controller.pid(), "the controller")?,
            common::cpu_of(agent.pid(), "the agent")?,
        ))
    }

    /// Prints the CPU seconds used since the start, prefixed with `scenario`.
    /// The scenario's rate against its target, its share of the host's ceiling, and the CPU
    /// the controller, the agent and the task processes spent on it.
    fn emit_figures(
        &self,
        scenario: &str,
        tasks: usize,
        elapsed_s: f64,
        ceiling: f64,
    ) -> Result<()> {
        let rate = tasks as f64 / elapsed_s;
        emit(
            BENCH,
            &format!("{scenario}_tasks_per_s"),
            rate,
            "tasks/s",
            tasks,
            Some(Target::AtLeast(1500.0)),
        );
        emit(
            BENCH,
            &format!("{scenario}_share_of_raw_sh"),
            rate / ceiling,
            "ratio",
            tasks,
            None,
        );
        emit(
            BENCH,
            &format!("{scenario}_elapsed_s"),
            elapsed_s,
            "s",
            tasks,
            None,
        );
        let (controller, agent) = Self::cpu(&self.controller, &self.agent)?;
        let controller = controller - self.start_cpu.0;
        let agent = agent - self.start_cpu.1;
        emit(
            BENCH,
            &format!("{scenario}_controller_cpu_s"),
            controller.own_s,
            "s",
            1,
            None,
        );
        emit(
            BENCH,
            &format!("{scenario}_agent_cpu_s"),
            agent.own_s,
            "s",
            1,
            None,
        );
        emit(
            BENCH,
            &format!("{scenario}_agent_tasks_cpu_s"),
            agent.children_s,
            "s",
            1,
            None,
        );
        for (who, seconds) in [("controller", controller.own_s), ("agent", agent.own_s)] {
            emit(
                BENCH,
                &format!("{scenario}_{who}_cpu_ms_per_task"),
                seconds * 1000.0 / tasks as f64,
                "ms",
                tasks,
                None,
            );
        }
        eprintln!(
            "[throughput] {scenario}: CPU over {elapsed_s:.1} s wall: controller {:.1} s, agent \
             {:.1} s, task processes {:.1} s (2 cores = {:.1} s available)",
            controller.own_s,
            agent.own_s,
            agent.children_s,
            2.0 * elapsed_s
        );
        Ok(())
    }
}

/// Scenario A: one job of `args.tasks` independent `true` tasks.
async fn one_job(args: &Args, ceiling: f64) -> Result<()> {
    let setup = Setup::start(args).await?;
    let mut client = setup.controller.job_client().await?;
    let tasks = (0..args.tasks)
        .map(|i| (format!("t{i:05}"), "true"))
        .collect();
    let spec = common::shell_job("throughput-one-job", tasks, 1);
    eprintln!("[throughput] A: submitting one job of {} tasks", args.tasks);
    let start = Instant::now();
    let job_id = common::submit(&mut client, spec).await?;
    let submit_s = secs(start.elapsed());
    eprintln!("[throughput] A: submitted in {submit_s:.2} s; waiting for it to succeed");
    let deadline = Deadline::after(Duration::from_secs(args.timeout));
    let mut shown = Instant::now();
    loop {
        let jobs = client
            .list_jobs(ListJobsRequest {
                limit: 10,
                state: 0,
            })
            .await
            .context("ListJobs")?
            .into_inner()
            .jobs;
        let job = jobs
            .iter()
            .find(|j| j.id == job_id)
            .with_context(|| format!("ListJobs does not list job {job_id}"))?;
        let done = job.tasks_done;
        match job_state(job.state) {
            JobState::Succeeded => break,
            state if job_ended_badly(state) => bail!("job {job_id} ended {state:?}: {job:?}"),
            _ => {}
        }
        if shown.elapsed() >= PROGRESS_EVERY {
            shown = Instant::now();
            eprintln!(
                "[throughput] A:   {done}/{} tasks done after {:.0} s",
                args.tasks,
                start.elapsed().as_secs_f64()
            );
        }
        deadline.check(|| format!("job {job_id}: {done}/{} tasks done", args.tasks))?;
        tokio::time::sleep(POLL).await;
    }
    let elapsed = secs(start.elapsed());
    setup.emit_figures("one_job", args.tasks, elapsed, ceiling)?;
    emit(BENCH, "one_job_submit_s", submit_s, "s", args.tasks, None);
    Ok(())
}

/// Scenario B: `args.jobs` one-task jobs, `args.concurrency` submits at a time.
async fn many_jobs(args: &Args, ceiling: f64) -> Result<()> {
    let setup = Setup::start(args).await?;
    let client = setup.controller.job_client().await?;
    eprintln!(
        "[throughput] B: submitting {} one-task jobs, {} at a time",
        args.jobs, args.concurrency
    );
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut submitters = tokio::task::JoinSet::new();
    for _ in 0..args.concurrency.max(1) {
        let mut client = client.clone();
        let next = next.clone();
        let jobs = args.jobs;
        submitters.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= jobs {
                    return Ok::<_, anyhow::Error>(());
                }
                let spec = common::shell_job("throughput-many", vec![("t".into(), "true")], 1);
                client
                    .submit_job(SubmitJobRequest {
                        spec: Some(spec),
                        idempotency_key: String::new(),
                        ..Default::default()
                    })
                    .await
                    .with_context(|| format!("SubmitJob #{i}"))?;
            }
        });
    }
    let deadline = Deadline::after(Duration::from_secs(args.timeout));
    loop {
        match tokio::time::timeout(deadline.remaining(), submitters.join_next()).await {
            Err(_) => bail!("submitting {} jobs took over {}s", args.jobs, args.timeout),
            Ok(None) => break,
            Ok(Some(joined)) => joined.context("a submitter panicked")??,
        }
    }
    let submit_s = secs(start.elapsed());
    eprintln!("[throughput] B: submitted in {submit_s:.2} s; waiting for all to succeed");
    // Waits on the queue's counts (one aggregate query), not on a listing of every job: a
    // ListJobs of thousands of jobs every poll cost the controller and this process more CPU
    // than the work it measured. Every job's outcome is checked once at the end.
    let mut client = client;
    let mut shown = Instant::now();
    loop {
        let queues = client
            .list_queues(ListQueuesRequest {})
            .await
            .context("ListQueues")?
            .into_inner()
            .queues;
        let (queued, running) = queues
            .iter()
            .find(|q| q.name == common::QUEUE)
            .map_or((0, 0), |q| (q.queued, q.running));
        if queued == 0 && running == 0 {
            break;
        }
        if shown.elapsed() >= PROGRESS_EVERY {
            shown = Instant::now();
            eprintln!(
                "[throughput] B:   {queued} queued, {running} running after {:.0} s",
                start.elapsed().as_secs_f64()
            );
        }
        deadline.check(|| format!("{queued} tasks still queued, {running} running"))?;
        let left = queued.saturating_add(running);
        let pause = (QUEUE_POLL_PER_TASK * left).clamp(QUEUE_POLL_MIN, QUEUE_POLL_MAX);
        tokio::time::sleep(pause).await;
    }
    let elapsed = secs(start.elapsed());
    // Nothing left to run: every job ended. None may have ended badly.
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
            bail!("job {} ended {state:?}: {job:?}", job.id);
        }
    }
    setup.emit_figures("many_jobs", args.jobs, elapsed, ceiling)?;
    emit(BENCH, "many_jobs_submit_s", submit_s, "s", args.jobs, None);
    Ok(())
}
