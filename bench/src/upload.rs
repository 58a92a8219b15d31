//! `upload`: one task writes a 2 GiB output, the agent uploads it (checksummed, in chunks
//! over gRPC) into the controller's data-directory store on loopback, then the same into an
//! S3-compatible store (moto's server on loopback, started here; the agent PUTs multipart
//! parts itself with presigned URLs). Measured in the same run: the raw loopback TCP throughput (a tokio listener and a client writing the same
//! number of bytes in 1 MiB writes), and the agent's peak RSS (`VmHWM`) over the upload.
//!
//! Upload MB/s = output size / the time from the command's end to the output being stored.
//! It comes from the agent's `output uploaded` log line (`size`, `elapsed_ms`, which counts
//! the SHA-256 pass and the transfer) when the agent prints one; otherwise from the attempt's
//! start and finish on the controller minus the command's own run time (which the command
//! records), an upper bound on the upload time that includes the completion round trip.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{GetJobRequest, Job, JobState};
use ferry_tests::{Controller, ControllerOpts, Moto, TestDir};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{
    common::{self, job_ended_badly, job_state, Deadline},
    report::{emit, Target},
};

const BENCH: &str = "upload";
const MIB: u64 = 1 << 20;
const OUTPUT: &str = "big.bin";
/// Random bytes after the zeros, so that the checksum depends on this run's data.
const RANDOM_TAIL: u64 = 64;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Size of the output (and of the loopback TCP transfer), in MiB.
    #[arg(long, default_value_t = 2048)]
    pub size_mib: u64,
    /// Upper bound for the job, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
    /// Measure the data directory only (no moto).
    #[arg(long)]
    pub no_s3: bool,
}

pub async fn run(args: &Args) -> Result<()> {
    let bytes = args.size_mib * MIB;

    eprintln!(
        "[upload] loopback TCP: {} MiB in 1 MiB writes",
        args.size_mib
    );
    let (tcp_bytes, tcp_time) = loopback_tcp(bytes).await.context("loopback TCP")?;
    let tcp_mb_per_s = mb_per_s(tcp_bytes, tcp_time);
    eprintln!(
        "[upload] loopback TCP: {tcp_bytes} bytes in {:.3} s = {tcp_mb_per_s:.1} MB/s",
        tcp_time.as_secs_f64()
    );

    let data_dir = measure(
        args,
        "data directory",
        common::secured(ControllerOpts::default().agent_timeout(Duration::from_secs(15))),
    )
    .await
    .context("uploading into the data directory")?;

    // The same output into an S3-compatible store (moto's server on loopback): the agent PUTs
    // the parts itself with presigned URLs; moto, a Python server, bounds the figure.
    let s3 = if args.no_s3 {
        None
    } else {
        let moto = Moto::start().await.context("starting moto")?;
        moto.create_bucket(BUCKET).await?;
        let config = TestDir::new("bench-s3")?;
        let opts = moto
            .controller_opts(BUCKET, "bench", &config)
            .agent_timeout(Duration::from_secs(15));
        Some(
            measure(args, "S3 (moto)", opts)
                .await
                .context("uploading into the S3-compatible store")?,
        )
    };

    emit(
        BENCH,
        "data_dir_mb_per_s",
        data_dir.mb_per_s,
        "MB/s",
        1,
        Some(Target::AtLeast(1000.0)),
    );
    emit(
        BENCH,
        "data_dir_agent_cpu_ms_per_mib",
        data_dir.agent_cpu_ms_per_mib,
        "ms",
        1,
        None,
    );
    emit(
        BENCH,
        "data_dir_controller_cpu_ms_per_mib",
        data_dir.controller_cpu_ms_per_mib,
        "ms",
        1,
        None,
    );
    if let Some(s3) = &s3 {
        emit(BENCH, "s3_moto_mb_per_s", s3.mb_per_s, "MB/s", 1, None);
    }
    emit(
        BENCH,
        "loopback_tcp_mb_per_s",
        tcp_mb_per_s,
        "MB/s",
        1,
        None,
    );
    emit(
        BENCH,
        "agent_peak_rss_mb",
        data_dir.hwm,
        "MiB",
        1,
        Some(Target::Below(64.0)),
    );
    if let Some(s3) = &s3 {
        emit(BENCH, "s3_agent_peak_rss_mb", s3.hwm, "MiB", 1, None);
    }
    Ok(())
}

const BUCKET: &str = "ferry-bench";

/// What one store's run measured.
struct Measured {
    mb_per_s: f64,
    /// The agent's peak RSS (`VmHWM`), MiB.
    hwm: f64,
    /// CPU time (user + system) each process spent over the job, per MiB of output.
    agent_cpu_ms_per_mib: f64,
    controller_cpu_ms_per_mib: f64,
}

/// CPU time (user + system) a process has used so far (`/proc/PID/stat`).
fn cpu_time(pid: u32) -> Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // Fields after the command name (which may hold spaces) end with `)`.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("no field {i} in {path}"))
    };
    // /proc counts in USER_HZ ticks, which Linux fixes at 100 a second.
    let hz = 100;
    Ok(Duration::from_millis((ticks(11)? + ticks(12)?) * 1000 / hz))
}

/// Starts a controller with `opts` and an agent, runs the upload job, and measures it.
async fn measure(args: &Args, store: &str, opts: ControllerOpts) -> Result<Measured> {
    let bytes = args.size_mib * MIB;
    let controller = Controller::start(opts)
        .await
        .context("starting ferry-controller")?;
    let agent = common::agent(&controller, "bench-upload", 1, Duration::from_secs(5)).await?;
    let agent_pid = agent.pid().context("the agent has no pid")?;
    let (_, hwm_idle) = common::memory_mb(agent_pid)?;
    let scratch = TestDir::new("bench-upload")?;
    let marks = scratch.path().join("command-ns");
    let command = format!(
        "date +%s%N > {marks} && dd if=/dev/zero of={OUTPUT} bs=1M count={count} status=none \
         && head -c {RANDOM_TAIL} /dev/urandom >> {OUTPUT} && date +%s%N >> {marks}",
        marks = marks.display(),
        count = args.size_mib,
    );
    let mut spec = common::shell_job("upload", vec![("produce".into(), command.as_str())], 1);
    spec.tasks[0].outputs = vec![OUTPUT.to_owned()];
    let mut client = controller.job_client().await?;
    eprintln!(
        "[upload] {store}: one task writing a {} MiB output, then uploading it",
        args.size_mib
    );
    let controller_pid = controller.pid().context("the controller has no pid")?;
    let cpu_before = (cpu_time(agent_pid)?, cpu_time(controller_pid)?);
    let job_id = common::submit(&mut client, spec).await?;

    let deadline = Deadline::after(Duration::from_secs(args.timeout));
    let mut rss_max: f64 = 0.0;
    let job = loop {
        if let Ok((rss, _)) = common::memory_mb(agent_pid) {
            rss_max = rss_max.max(rss);
        }
        let job = client
            .get_job(GetJobRequest {
                job_id: job_id.clone(),
            })
            .await
            .context("GetJob")?
            .into_inner();
        let state = job_state(job.state);
        if state == JobState::Succeeded {
            break job;
        }
        if job_ended_badly(state) {
            bail!(
                "the upload job ended {state:?}: {job:?}; agent log:\n{}",
                agent.log_tail(30)
            );
        }
        deadline.check(|| format!("the upload job to succeed; job is {job:?}"))?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (_, hwm) = common::memory_mb(agent_pid).context("the agent exited")?;
    let per_mib = |after: Duration, before: Duration| {
        after.saturating_sub(before).as_secs_f64() * 1000.0 / args.size_mib.max(1) as f64
    };
    let agent_cpu_ms_per_mib = per_mib(cpu_time(agent_pid)?, cpu_before.0);
    let controller_cpu_ms_per_mib = per_mib(cpu_time(controller_pid)?, cpu_before.1);
    eprintln!(
        "[upload] {store}: CPU per MiB: agent {agent_cpu_ms_per_mib:.3} ms, controller \
         {controller_cpu_ms_per_mib:.3} ms"
    );
    let size = bytes + RANDOM_TAIL;

    let from_log = uploaded_line(agent.log_path())?;
    let from_attempt = attempt_upload_time(&job, &marks)?;
    let (upload_mb_per_s, how) = match &from_log {
        Some(line) => (
            mb_per_s(line.size, Duration::from_millis(line.elapsed_ms)),
            format!(
                "from the agent's `output uploaded` line: {} bytes in {} ms ({} ms of it the \
                 SHA-256 pass, the send alone {:.1} MB/s)",
                line.size,
                line.elapsed_ms,
                line.hash_ms,
                mb_per_s(
                    line.size,
                    Duration::from_millis(line.elapsed_ms.saturating_sub(line.hash_ms))
                )
            ),
        ),
        None => (
            mb_per_s(size, from_attempt),
            format!(
                "the agent printed no `output uploaded` line: attempt start-to-finish minus \
                 the command's own time = {:.3} s",
                from_attempt.as_secs_f64()
            ),
        ),
    };
    eprintln!("[upload] {store}: measured {how}");
    eprintln!(
        "[upload] {store}: cross-check: attempt finish - start - command time = {:.3} s ({:.1} MB/s, \
         includes the completion round trip)",
        from_attempt.as_secs_f64(),
        mb_per_s(size, from_attempt)
    );
    eprintln!(
        "[upload] {store}: agent memory: VmHWM {hwm_idle:.1} MiB before the job, {hwm:.1} MiB after; \
         largest sampled RSS {rss_max:.1} MiB"
    );

    Ok(Measured {
        mb_per_s: upload_mb_per_s,
        hwm,
        agent_cpu_ms_per_mib,
        controller_cpu_ms_per_mib,
    })
}

/// MB (10^6 bytes) per second.
fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1e6 / elapsed.as_secs_f64().max(1e-9)
}

/// Sends `bytes` over a loopback TCP connection in 1 MiB writes; returns the bytes the
/// receiver read and the time from connecting to the receiver seeing the end.
async fn loopback_tcp(bytes: u64) -> Result<(u64, Duration)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let receiver = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await?;
        let mut buf = vec![0u8; MIB as usize];
        let mut total = 0u64;
        loop {
            let n = socket.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            total += n as u64;
        }
        Ok::<_, std::io::Error>((total, Instant::now()))
    });
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(addr).await?;
    let chunk = vec![0xA5u8; MIB as usize];
    let mut sent = 0u64;
    while sent < bytes {
        let n = (bytes - sent).min(MIB) as usize;
        socket.write_all(&chunk[..n]).await?;
        sent += n as u64;
    }
    socket.shutdown().await?;
    let (received, ended) = receiver.await.context("the receiver task")??;
    if received != bytes {
        bail!("the receiver read {received} bytes of {bytes}");
    }
    Ok((received, ended.duration_since(started)))
}

/// The fields of the agent's `output uploaded` line for [`OUTPUT`].
#[derive(Debug, PartialEq)]
struct Uploaded {
    size: u64,
    elapsed_ms: u64,
    hash_ms: u64,
}

fn uploaded_line(log: &Path) -> Result<Option<Uploaded>> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("reading {}", log.display()))?;
    Ok(text.lines().rev().find_map(parse_uploaded))
}

fn parse_uploaded(line: &str) -> Option<Uploaded> {
    if !line.contains("output uploaded") {
        return None;
    }
    let field = |key: &str| -> Option<&str> {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim_matches('"'))
    };
    if field("output")? != OUTPUT {
        return None;
    }
    Some(Uploaded {
        size: field("size")?.parse().ok()?,
        elapsed_ms: field("elapsed_ms")?.parse().ok()?,
        hash_ms: field("hash_ms").and_then(|v| v.parse().ok()).unwrap_or(0),
    })
}

/// The attempt's start-to-finish on the controller minus the command's own run time.
fn attempt_upload_time(job: &Job, marks: &Path) -> Result<Duration> {
    let attempt = job
        .tasks
        .first()
        .and_then(|t| t.attempts.last())
        .context("the job has no attempt")?;
    let text = std::fs::read_to_string(marks)
        .with_context(|| format!("reading the command's times from {}", marks.display()))?;
    let ns: Vec<u128> = text.lines().filter_map(|l| l.trim().parse().ok()).collect();
    let [start, end] = ns[..] else {
        bail!("expected two times in {}: {text:?}", marks.display());
    };
    let command_ms = (end.saturating_sub(start) / 1_000_000) as i64;
    let attempt_ms = attempt.finished_at_ms - attempt.started_at_ms;
    Ok(Duration::from_millis(
        u64::try_from(attempt_ms - command_ms).unwrap_or(0),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_agents_upload_line_is_read() {
        let line = "2026-11-25T16:17:47.032528Z  INFO run_attempt{job=01a task=produce \
                    attempt=1}: ferry_agent::upload: output uploaded output=big.bin \
                    size=1073741888 mb_per_s=\"132.2\" elapsed_ms=8123 hash_ms=805";
        assert_eq!(
            parse_uploaded(line),
            Some(Uploaded {
                size: 1_073_741_888,
                elapsed_ms: 8123,
                hash_ms: 805
            })
        );
        assert_eq!(
            parse_uploaded(&line.replace("output=big.bin", "output=other.csv")),
            None
        );
        assert_eq!(parse_uploaded("INFO attempt started"), None);
    }

    #[test]
    fn rates_are_decimal_megabytes() {
        assert_eq!(mb_per_s(2_000_000_000, Duration::from_secs(2)), 1000.0);
    }
}
