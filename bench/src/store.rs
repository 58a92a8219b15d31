//! `store`: durable state transitions per second of the SQLite store alone, in-process:
//! workers loop submit → claim → finish on one fsync'd database, many at once (group commit)
//! and one alone (one fsync per transition).

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_controller::{
    model::{
        now_ms, AttemptFinish, AttemptReport, NewJob, Outcome, RetryPolicy, TaskKind, TaskSpec,
    },
    store::{self, AgentRegistration, ClaimRequest, Completion, Store},
};
use ferry_tests::TestDir;

use crate::{
    common::ms,
    report::{emit, Stats},
};

const BENCH: &str = "store";
const QUEUE: &str = "q";
/// Claims that found nothing (another worker took the task) before a worker gives up.
const MAX_EMPTY_CLAIMS: u32 = 10_000;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Length of each run, in seconds.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Concurrent workers of the main run.
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
}

pub async fn run(args: &Args) -> Result<()> {
    let window = Duration::from_secs(args.seconds);
    let many = measure(args.workers.max(1), window).await?;
    let n = many.latencies.len();
    let mut latencies = many.latencies;
    let stats = Stats::of(&mut latencies).context("no transition was measured")?;
    emit(
        BENCH,
        "transitions_per_s",
        many.rate,
        "transitions/s",
        n,
        None,
    );
    emit(BENCH, "p50_ms", stats.p50, "ms", n, None);
    emit(BENCH, "p99_ms", stats.p99, "ms", n, None);

    let one = measure(1, window).await?;
    let n = one.latencies.len();
    let mut latencies = one.latencies;
    let stats = Stats::of(&mut latencies).context("no transition was measured")?;
    emit(
        BENCH,
        "transitions_per_s_1_worker",
        one.rate,
        "transitions/s",
        n,
        None,
    );
    emit(BENCH, "p50_ms_1_worker", stats.p50, "ms", n, None);
    Ok(())
}

struct Measured {
    rate: f64,
    /// Latency of every transition, in ms.
    latencies: Vec<f64>,
}

/// Runs `workers` loops for `window` on a fresh database.
async fn measure(workers: usize, window: Duration) -> Result<Measured> {
    let dir = TestDir::new("bench-store")?;
    let url = format!("sqlite://{}", dir.path().join("ferry.db").display());
    let store = store::open(&url, None)
        .await
        .with_context(|| format!("opening {url}"))?;
    eprintln!("[store] {workers} worker(s) for {window:?} on {url}");
    let start = Instant::now();
    let stop_at = start + window;
    let mut set = tokio::task::JoinSet::new();
    for w in 0..workers {
        set.spawn(worker(store.clone(), format!("w{w}"), stop_at));
    }
    let mut latencies = Vec::new();
    // Each worker ends its current cycle after the window: allow plenty for that.
    let limit = window + Duration::from_secs(60);
    loop {
        let remaining = limit.saturating_sub(start.elapsed());
        match tokio::time::timeout(remaining, set.join_next()).await {
            Err(_) => bail!("store workers still running {limit:?} after the start"),
            Ok(None) => break,
            Ok(Some(joined)) => latencies.extend(joined.context("a store worker panicked")??),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let rate = latencies.len() as f64 / elapsed;
    eprintln!(
        "[store]   {} transitions in {elapsed:.2} s: {rate:.0}/s",
        latencies.len()
    );
    drop(store);
    Ok(Measured { rate, latencies })
}

/// Submit, claim, finish until `stop_at`; returns the latency of each transition in ms.
async fn worker(store: Arc<dyn Store>, name: String, stop_at: Instant) -> Result<Vec<f64>> {
    let mut latencies = Vec::new();
    // Claims are made for a registered agent's live session; registering is not counted.
    let session = format!("{name}-bench");
    store
        .register_agent(
            AgentRegistration {
                name: name.clone(),
                session: session.clone(),
                queues: vec![QUEUE.into()],
                labels: BTreeMap::new(),
                max_tasks: 1,
                hostname: "bench".into(),
                version: env!("CARGO_PKG_VERSION").into(),
                instance: String::new(),
                live_after: 0,
            },
            now_ms(),
        )
        .await
        .context("register_agent")?;
    let claim = ClaimRequest {
        agent: name.clone(),
        session,
        queues: vec![QUEUE.into()],
        labels: BTreeMap::new(),
        max: 1,
    };
    while Instant::now() < stop_at {
        let t = Instant::now();
        store
            .submit_job(job(&name), now_ms())
            .await
            .context("submit_job")?;
        latencies.push(ms(t.elapsed()));

        // Every worker submits before it claims, so a claim always finds a queued task
        // (perhaps another worker's); retry anyway rather than assume it.
        let mut empty = 0;
        let assignment = loop {
            let t = Instant::now();
            let claimed = store
                .claim(claim.clone(), now_ms())
                .await
                .context("claim")?;
            if let Some(a) = claimed.assignments.into_iter().next() {
                latencies.push(ms(t.elapsed()));
                break a;
            }
            empty += 1;
            if empty >= MAX_EMPTY_CLAIMS {
                bail!("worker {name}: {empty} claims in a row found nothing queued");
            }
            tokio::task::yield_now().await;
        };

        let t = Instant::now();
        let completion = Completion {
            report: AttemptReport {
                finish: AttemptFinish {
                    agent: name.clone(),
                    attempt: assignment.attempt,
                    outcome: Outcome::Succeeded,
                    exit_code: Some(0),
                    error: String::new(),
                },
                outputs: Vec::new(),
                extract: None,
                logs: Vec::new(),
                dropped_bytes: 0,
            },
            log_limit: 1 << 20,
        };
        store
            .complete(completion, None, now_ms())
            .await
            .context("complete")?;
        latencies.push(ms(t.elapsed()));
    }
    Ok(latencies)
}

fn job(worker: &str) -> NewJob {
    NewJob {
        name: format!("bench-{worker}"),
        params: BTreeMap::new(),
        tasks: vec![TaskSpec {
            id: "t".into(),
            queue: QUEUE.into(),
            labels: BTreeMap::new(),
            depends_on: Vec::new(),
            kind: TaskKind::Shell {
                command: "true".into(),
            },
            outputs: Vec::new(),
            timeout_ms: 0,
            schedule_to_start_timeout_ms: 0,
            retry: RetryPolicy {
                max_attempts: 1,
                initial_delay_ms: 1_000,
                max_delay_ms: 1_000,
            },
        }],
        idempotency_key: None,
        backfill: Default::default(),
    }
}
