//! `webhook`: `POST /hooks/NAME` → job created, as a sender sees it: sequential deliveries
//! with a bearer secret to a controller's `--http-listen` (plain HTTP, SQLite unless
//! `FERRY_TEST_STORE=postgres`), each on a new loopback connection, timed from connect to
//! the `201` read. Each creates a job of a one-task pipeline with a typed parameter; no agent
//! runs them (the figure is the trigger's, not dispatch's).

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use ferry_tests::{Controller, ControllerOpts};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::ms;
use crate::report::{emit, Stats, Target};

const BENCH: &str = "webhook";

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Measured deliveries, one after the other.
    #[arg(long, default_value_t = 1000)]
    pub requests: usize,
    /// Deliveries made first and not measured.
    #[arg(long, default_value_t = 50)]
    pub warmup: usize,
}

/// One delivery: its status line's code.
async fn deliver(port: u16, bearer: &str, body: &str) -> Result<u16> {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let request = format!(
        "POST /hooks/bench HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\
         Authorization: Bearer {bearer}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut answer = Vec::with_capacity(512);
    tcp.read_to_end(&mut answer).await?;
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("not an HTTP answer: {text:?}"))
}

pub async fn run(args: &Args) -> Result<()> {
    let port = ferry_tests::free_port()?;
    let controller = Controller::start(
        ControllerOpts::default()
            .agent_timeout(Duration::from_secs(15))
            .arg("--http-listen")
            .arg(format!("127.0.0.1:{port}")),
    )
    .await
    .context("starting ferry-controller")?;
    let cli = controller.cli();
    let file = cli.write_job(
        r#"
name = "bench-hook"

[params]
day = { type = "date", required = true }

[[tasks]]
id = "load"
queue = "bench-hook"
shell = "true"
"#,
    )?;
    let out = cli
        .run(["pipelines", "apply", file.to_str().context("a UTF-8 path")?])
        .await?;
    if out.code != 0 {
        bail!("pipelines apply: {out}");
    }
    let created = cli
        .json(["triggers", "create", "bench", "--pipeline", "bench-hook"])
        .await?;
    let secret = created["secret"]
        .as_str()
        .context("triggers create printed no secret")?
        .to_owned();
    let body = r#"{"day": "2026-12-07"}"#;
    eprintln!("[webhook] warm-up: {} deliveries", args.warmup);
    for _ in 0..args.warmup {
        deliver(port, &secret, body).await?;
    }
    eprintln!(
        "[webhook] measuring {} sequential deliveries",
        args.requests
    );
    let mut samples = Vec::with_capacity(args.requests);
    let started = Instant::now();
    for _ in 0..args.requests {
        let t = Instant::now();
        let status = deliver(port, &secret, body).await?;
        samples.push(ms(t.elapsed()));
        if status != 201 {
            bail!("a delivery answered {status}, not 201");
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let stats = Stats::of(&mut samples).context("no delivery was measured")?;
    let n = stats.n;
    emit(
        BENCH,
        "p50_ms",
        stats.p50,
        "ms",
        n,
        Some(Target::Below(5.0)),
    );
    emit(BENCH, "p90_ms", stats.p90, "ms", n, None);
    emit(BENCH, "p99_ms", stats.p99, "ms", n, None);
    emit(BENCH, "max_ms", stats.max, "ms", n, None);
    emit(BENCH, "runs_per_s", n as f64 / wall, "runs/s", n, None);
    Ok(())
}
