//! `latency`: submit-to-succeeded time of 1,000 sequential one-task jobs (`true`) on an idle
//! agent, as a client sees it through the `WatchJob` stream; beside it, how long this host takes
//! to spawn and reap the task's `/bin/sh -c true` alone.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{JobState, WatchJobRequest};
use ferry_proto::watch::JobView;

use crate::{
    baseline,
    common::{self, job_ended_badly, job_state, ms, Client},
    report::{emit, Stats, Target},
};

const BENCH: &str = "latency";
/// Sequential shells for the host's own spawn time.
const BASELINE_SHELLS: usize = 500;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Measured jobs, run one after the other.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Jobs run first and not measured.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Print each measured job's timeline (wall clock, ms) to stderr, to compare with the
    /// processes' logs.
    #[arg(long)]
    pub trace: bool,
    /// Upper bound for one job, in seconds.
    #[arg(long, default_value_t = 30)]
    pub job_timeout: u64,
}

pub async fn run(args: &Args) -> Result<()> {
    // The task process's own share of each job's time: one `/bin/sh -c true`, on an idle host.
    let shell = tokio::task::spawn_blocking(|| baseline::shell_spawns(1, BASELINE_SHELLS))
        .await
        .context("the baseline thread")??;
    eprintln!(
        "[latency] this host: `/bin/sh -c true` spawned and reaped in {:.2} ms (p50 of {}), \
         {:.2} ms of CPU",
        shell.wall.p50, shell.wall.n, shell.cpu_ms
    );
    let controller = common::controller(Duration::from_secs(15)).await?;
    let agent = common::agent(&controller, "bench-latency", 8, Duration::from_secs(5)).await?;
    let mut client = controller.job_client().await?;
    let limit = Duration::from_secs(args.job_timeout);

    eprintln!("[latency] warm-up: {} jobs", args.warmup);
    for _ in 0..args.warmup {
        one_job(&mut client, limit, false).await?;
    }
    eprintln!("[latency] measuring {} sequential jobs", args.jobs);
    let controller_cpu = common::cpu_of(controller.pid(), "the controller")?;
    let agent_cpu = common::cpu_of(agent.pid(), "the agent")?;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(args.jobs);
    let mut submits = Vec::with_capacity(args.jobs);
    let mut servers = Vec::with_capacity(args.jobs);
    for i in 0..args.jobs {
        let timing = one_job(&mut client, limit, args.trace).await?;
        samples.push(ms(timing.total));
        submits.push(ms(timing.submit));
        servers.push(timing.server_ms);
        if (i + 1) % 250 == 0 {
            eprintln!("[latency]   {}/{} jobs", i + 1, args.jobs);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let controller_cpu = common::cpu_of(controller.pid(), "the controller")? - controller_cpu;
    let agent_cpu = common::cpu_of(agent.pid(), "the agent")? - agent_cpu;
    let stats = Stats::of(&mut samples).context("no job was measured")?;
    let n = stats.n;
    // The targets of the store the controller runs on (`FERRY_TEST_STORE`).
    let postgres = std::env::var("FERRY_TEST_STORE").is_ok_and(|s| s == "postgres");
    let (p50_target, p99_target) = if postgres { (4.0, 10.0) } else { (2.0, 5.0) };
    emit(
        BENCH,
        "p50_ms",
        stats.p50,
        "ms",
        n,
        Some(Target::Below(p50_target)),
    );
    emit(BENCH, "p90_ms", stats.p90, "ms", n, None);
    emit(
        BENCH,
        "p99_ms",
        stats.p99,
        "ms",
        n,
        Some(Target::Below(p99_target)),
    );
    emit(BENCH, "max_ms", stats.max, "ms", n, None);
    emit(BENCH, "mean_ms", stats.mean, "ms", n, None);
    // Where the time goes: the SubmitJob round trip, and created → finished on the
    // controller's clock (whole milliseconds).
    let submit = Stats::of(&mut submits).context("no submit was measured")?;
    emit(BENCH, "submit_rpc_p50_ms", submit.p50, "ms", n, None);
    let server = Stats::of(&mut servers).context("no job was measured")?;
    emit(
        BENCH,
        "controller_created_to_finished_p50_ms",
        server.p50,
        "ms",
        n,
        None,
    );
    emit(
        BENCH,
        "raw_sh_p50_ms",
        shell.wall.p50,
        "ms",
        shell.wall.n,
        None,
    );
    eprintln!(
        "[latency] per job: controller CPU {:.2} ms, agent CPU {:.2} ms (+ {:.2} ms in tasks), \
         over {wall:.1} s",
        controller_cpu.own_s * 1000.0 / n as f64,
        agent_cpu.own_s * 1000.0 / n as f64,
        agent_cpu.children_s * 1000.0 / n as f64,
    );
    Ok(())
}

/// How long one job took.
struct Timing {
    /// From just before `SubmitJob` until `WatchJob` showed it succeeded.
    total: Duration,
    /// The `SubmitJob` call alone.
    submit: Duration,
    /// `finished_at_ms - created_at_ms` as the controller recorded them.
    server_ms: f64,
}

/// Submits one `true` job and waits on `WatchJob` until it succeeded.
async fn one_job(client: &mut Client, limit: Duration, trace: bool) -> Result<Timing> {
    let spec = common::shell_job("latency", vec![("t".into(), "true")], 1);
    let start = Instant::now();
    let job_id = common::submit(client, spec).await?;
    let submit = start.elapsed();
    let mut timeline = vec![format!("submitted {:.1}", ms(submit))];
    let mut stream = client
        .watch_job(WatchJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .context("WatchJob")?
        .into_inner();
    let mut view = JobView::new();
    loop {
        let remaining = limit.saturating_sub(start.elapsed());
        let event = match tokio::time::timeout(remaining, stream.message()).await {
            Err(_) => bail!("job {job_id} did not succeed within {limit:?}"),
            Ok(msg) => msg.with_context(|| format!("WatchJob {job_id}"))?,
        };
        let Some(event) = event else {
            bail!("WatchJob {job_id} ended before the job succeeded");
        };
        let Some(job) = view
            .apply(event)
            .with_context(|| format!("WatchJob {job_id}"))?
        else {
            continue;
        };
        if trace {
            timeline.push(format!(
                "{:?} {:.1}",
                job_state(job.state),
                ms(start.elapsed())
            ));
        }
        match job_state(job.state) {
            JobState::Succeeded => {
                if trace {
                    eprintln!(
                        "[latency] job {job_id} from {} ms (epoch): {} (created {} finished {})",
                        ferry_tests::now_ms() - start.elapsed().as_millis() as i64,
                        timeline.join(", "),
                        job.created_at_ms,
                        job.finished_at_ms
                    );
                }
                return Ok(Timing {
                    total: start.elapsed(),
                    submit,
                    server_ms: (job.finished_at_ms - job.created_at_ms) as f64,
                });
            }
            state if job_ended_badly(state) => bail!("job {job_id} ended {state:?}: {job:?}"),
            _ => {}
        }
    }
}
