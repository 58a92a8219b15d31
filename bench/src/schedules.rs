//! `schedules`: how late an `every` schedule's runs are created (a controller on SQLite unless
//! `FERRY_TEST_STORE=postgres`, no agent: the figure is the scheduler's, not dispatch's), and
//! how fast a long range of minutely ticks is queued (`ferry pipelines backfill`, 10,000 ticks
//! a call here, each tick its own run and store transaction, one per tick ever).

use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use ferry_tests::{Cli, Controller, ControllerOpts};

use crate::report::{emit, Stats, Target};

const BENCH: &str = "schedules";
/// Ticks per backfill call (the CLI's calls time out after a minute).
const CHUNK: u64 = 10_000;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Ticks of the `every = "1s"` schedule measured.
    #[arg(long, default_value_t = 30)]
    pub ticks: usize,
    /// Minutely ticks queued by backfill (a year is 525600).
    #[arg(long, default_value_t = 525_600)]
    pub slots: u64,
}

fn ms_of(text: &str) -> Result<i64> {
    Ok(humantime::parse_rfc3339(text)?
        .duration_since(UNIX_EPOCH)?
        .as_millis() as i64)
}

async fn apply(cli: &Cli, name: &str, schedule: &str) -> Result<()> {
    let file = cli.write_job(&format!(
        "name = \"{name}\"\n\n[schedule]\n{schedule}\n\n[[tasks]]\nid = \"t\"\nqueue = \"nobody\"\nshell = \"true\"\n"
    ))?;
    let out = cli
        .run(["pipelines", "apply", file.to_str().context("a UTF-8 path")?])
        .await?;
    if out.code != 0 {
        bail!("pipelines apply: {out}");
    }
    Ok(())
}

pub async fn run(args: &Args) -> Result<()> {
    let controller =
        Controller::start(ControllerOpts::default().agent_timeout(Duration::from_secs(15)))
            .await
            .context("starting ferry-controller")?;
    let cli = controller.cli();

    // Jitter: runs created after their tick.
    apply(&cli, "tick", "every = \"1s\"\noverlap = \"allow\"").await?;
    eprintln!(
        "[schedules] waiting for {} ticks of every 1s",
        args.ticks + 2
    );
    tokio::time::sleep(Duration::from_secs(args.ticks as u64 + 2)).await;
    cli.run(["pipelines", "pause", "tick"]).await?;
    let runs = cli
        .json(["pipelines", "history", "tick", "--limit", "10000"])
        .await?;
    let mut late: Vec<(i64, f64)> = Vec::new();
    for r in runs.as_array().context("history prints a list")? {
        let (Some(at), Some(created)) = (r["scheduled_time"].as_str(), r["created_at"].as_str())
        else {
            continue;
        };
        late.push((ms_of(at)?, (ms_of(created)? - ms_of(at)?) as f64));
    }
    // The first tick after the apply waits for the scheduler's next look at the pipelines
    // (at most a second): reported apart from the steady ticks.
    late.sort_by_key(|l| l.0);
    let first = late.first().map(|l| l.1).context("no scheduled run")?;
    emit(BENCH, "first_tick_late_ms", first, "ms", 1, None);
    let mut late: Vec<f64> = late.iter().skip(1).map(|l| l.1).collect();
    let stats = Stats::of(&mut late).context("one scheduled run only")?;
    emit(BENCH, "fire_late_p50_ms", stats.p50, "ms", stats.n, None);
    emit(
        BENCH,
        "fire_late_p99_ms",
        stats.p99,
        "ms",
        stats.n,
        Some(Target::Below(100.0)),
    );
    emit(BENCH, "fire_late_max_ms", stats.max, "ms", stats.n, None);

    // Queueing a range of minutely ticks.
    apply(&cli, "minutely", "every = \"60s\"\noverlap = \"allow\"").await?;
    cli.run(["pipelines", "pause", "minutely"]).await?;
    let now = std::time::SystemTime::now()
        .duration_since(UNIX_EPOCH)?
        .as_secs();
    let end = now / 60 * 60 - 60;
    let start = end - (args.slots - 1) * 60;
    eprintln!("[schedules] backfilling {} minutely ticks", args.slots);
    let began = Instant::now();
    let mut made = 0u64;
    let mut from = start;
    while from <= end {
        let to = (from + (CHUNK - 1) * 60).min(end);
        let fmt = |s: u64| {
            humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(s)).to_string()
        };
        let out = cli
            .run([
                "pipelines",
                "backfill",
                "minutely",
                "--from",
                &fmt(from),
                "--to",
                &fmt(to),
            ])
            .await?;
        if out.code != 0 {
            bail!("pipelines backfill: {out}");
        }
        made += out.stdout.lines().count() as u64;
        from = to + 60;
    }
    let secs = began.elapsed().as_secs_f64();
    if made != args.slots {
        bail!("backfill made {made} runs, not {}", args.slots);
    }
    emit(
        BENCH,
        "backfill_runs_per_s",
        made as f64 / secs,
        "runs/s",
        made as usize,
        Some(Target::AtLeast(10_000.0)),
    );
    Ok(())
}
