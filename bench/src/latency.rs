//! `latency`: submit-to-succeeded time of 1,000 sequential one-task jobs (`true`) on an idle
//! agent, as a client sees it through the `WatchJob` stream.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{JobState, SubmitJobRequest, WatchJobRequest};

use crate::{
    common::{self, job_ended_badly, job_state, ms, Client},
    report::{emit, Stats, Target},
};

const BENCH: &str = "latency";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Measured jobs, run one after the other.
    #[arg(long, default_value_t = 1000)]
    pub jobs: usize,
    /// Jobs run first and not measured.
    #[arg(long, default_value_t = 20)]
    pub warmup: usize,
    /// Upper bound for one job, in seconds.
    #[arg(long, default_value_t = 30)]
    pub job_timeout: u64,
}

pub async fn run(args: &Args) -> Result<()> {
    let controller = common::controller(Duration::from_secs(15)).await?;
    let agent = common::agent(&controller, "bench-latency", 8, Duration::from_secs(5)).await?;
    let mut client = controller.job_client().await?;
    let limit = Duration::from_secs(args.job_timeout);

    eprintln!("[latency] warm-up: {} jobs", args.warmup);
    for _ in 0..args.warmup {
        one_job(&mut client, limit).await?;
    }
    eprintln!("[latency] measuring {} sequential jobs", args.jobs);
    let controller_cpu = common::cpu_of(controller.pid(), "the controller")?;
    let agent_cpu = common::cpu_of(agent.pid(), "the agent")?;
    let started = Instant::now();
    let mut samples = Vec::with_capacity(args.jobs);
    for i in 0..args.jobs {
        samples.push(ms(one_job(&mut client, limit).await?));
        if (i + 1) % 250 == 0 {
            eprintln!("[latency]   {}/{} jobs", i + 1, args.jobs);
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let controller_cpu = common::cpu_of(controller.pid(), "the controller")? - controller_cpu;
    let agent_cpu = common::cpu_of(agent.pid(), "the agent")? - agent_cpu;
    let stats = Stats::of(&mut samples).context("no job was measured")?;
    let n = stats.n;
    emit(
        BENCH,
        "p50_ms",
        stats.p50,
        "ms",
        n,
        Some(Target::Below(2.0)),
    );
    emit(BENCH, "p90_ms", stats.p90, "ms", n, None);
    emit(
        BENCH,
        "p99_ms",
        stats.p99,
        "ms",
        n,
        Some(Target::Below(5.0)),
    );
    emit(BENCH, "max_ms", stats.max, "ms", n, None);
    emit(BENCH, "mean_ms", stats.mean, "ms", n, None);
    eprintln!(
        "[latency] per job: controller CPU {:.2} ms, agent CPU {:.2} ms (+ {:.2} ms in tasks), \
         over {wall:.1} s",
        controller_cpu.own_s * 1000.0 / n as f64,
        agent_cpu.own_s * 1000.0 / n as f64,
        agent_cpu.children_s * 1000.0 / n as f64,
    );
    Ok(())
}

/// Submits one `true` job and waits on `WatchJob` until it succeeded; returns the time from
/// just before the submit.
async fn one_job(client: &mut Client, limit: Duration) -> Result<Duration> {
    let spec = common::shell_job("latency", vec![("t".into(), "true")], 1);
    let start = Instant::now();
    let job_id = client
        .submit_job(SubmitJobRequest {
            spec: Some(spec),
            idempotency_key: String::new(),
        })
        .await
        .context("SubmitJob")?
        .into_inner()
        .job_id;
    let mut stream = client
        .watch_job(WatchJobRequest {
            job_id: job_id.clone(),
        })
        .await
        .context("WatchJob")?
        .into_inner();
    loop {
        let remaining = limit.saturating_sub(start.elapsed());
        let job = match tokio::time::timeout(remaining, stream.message()).await {
            Err(_) => bail!("job {job_id} did not succeed within {limit:?}"),
            Ok(msg) => msg.with_context(|| format!("WatchJob {job_id}"))?,
        };
        let Some(job) = job else {
            bail!("WatchJob {job_id} ended before the job succeeded");
        };
        match job_state(job.state) {
            JobState::Succeeded => return Ok(start.elapsed()),
            state if job_ended_badly(state) => bail!("job {job_id} ended {state:?}: {job:?}"),
            _ => {}
        }
    }
}
