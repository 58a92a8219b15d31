//! `agent-idle`: memory and CPU of an agent with nothing to do (default 5 s heartbeat),
//! sampled from `/proc` after a warm-up.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{
    common,
    report::{emit, Target},
};

const BENCH: &str = "agent-idle";
const SAMPLE_EVERY: Duration = Duration::from_secs(1);

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Length of the measured window, in seconds.
    #[arg(long, default_value_t = 60)]
    pub seconds: u64,
    /// Time given to the agent to settle before measuring, in seconds.
    #[arg(long, default_value_t = 5)]
    pub warmup: u64,
}

pub async fn run(args: &Args) -> Result<()> {
    let controller = common::controller(Duration::from_secs(15)).await?;
    let agent = common::agent(&controller, "bench-idle", 4, Duration::from_secs(5)).await?;
    let pid = agent.pid().context("the agent has no pid")?;
    eprintln!("[agent-idle] warm-up {} s", args.warmup);
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    eprintln!(
        "[agent-idle] sampling agent pid {pid} for {} s",
        args.seconds
    );
    let agent_cpu = common::cpu_times(pid)?;
    let controller_cpu = common::cpu_of(controller.pid(), "the controller")?;
    let start = Instant::now();
    let window = Duration::from_secs(args.seconds);
    let mut samples = 0;
    let mut rss_max: f64 = 0.0;
    let (mut rss, mut hwm) = common::memory_mb(pid)?;
    while start.elapsed() < window {
        tokio::time::sleep(SAMPLE_EVERY.min(window.saturating_sub(start.elapsed()))).await;
        (rss, hwm) = common::memory_mb(pid).context("the agent exited while idle")?;
        rss_max = rss_max.max(rss);
        samples += 1;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let agent_cpu = common::cpu_times(pid)? - agent_cpu;
    let controller_cpu = common::cpu_of(controller.pid(), "the controller")? - controller_cpu;
    let cpu_percent = 100.0 * agent_cpu.own_s / elapsed;
    emit(
        BENCH,
        "rss_mb",
        rss,
        "MiB",
        samples,
        Some(Target::Below(15.0)),
    );
    emit(
        BENCH,
        "peak_rss_mb",
        hwm,
        "MiB",
        samples,
        Some(Target::Below(15.0)),
    );
    emit(
        BENCH,
        "cpu_percent",
        cpu_percent,
        "% of one core",
        samples,
        Some(Target::Below(0.2)),
    );
    eprintln!(
        "[agent-idle] over {elapsed:.1} s: agent CPU {:.2} s, largest sampled RSS {rss_max:.1} \
         MiB; the idle controller used {:.2} s CPU ({:.2}% of a core)",
        agent_cpu.own_s,
        controller_cpu.own_s,
        100.0 * controller_cpu.own_s / elapsed
    );
    Ok(())
}
