//! `reassign`: how long after an agent's `kill -9` its task starts again on another agent
//! (controller `--agent-timeout 3s`, heartbeats every second), over fresh processes each run.

use std::time::Duration;

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{AttemptState, CancelJobRequest, GetJobRequest, Job};
use ferry_tests::now_ms;

use crate::{
    common::{self, Client, Deadline},
    report::{emit, Target},
};

const BENCH: &str = "reassign";
const AGENT_TIMEOUT: Duration = Duration::from_secs(3);
const HEARTBEAT: Duration = Duration::from_secs(1);
const TARGET_S: f64 = 4.0;

#[derive(clap::Args, Debug, Clone)]
pub struct Args {
    /// Runs, each with a fresh controller and agents.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Upper bound for each wait (attempt 1 running, attempt 2 started), in seconds.
    #[arg(long, default_value_t = 60)]
    pub timeout: u64,
}

pub async fn run(args: &Args) -> Result<()> {
    let mut worst: f64 = 0.0;
    for run in 1..=args.runs {
        let took = one_run(run, args)
            .await
            .with_context(|| format!("run {run}"))?;
        emit(
            BENCH,
            &format!("run{run}_s"),
            took,
            "s",
            1,
            Some(Target::Below(TARGET_S)),
        );
        worst = worst.max(took);
    }
    if args.runs > 0 {
        emit(
            BENCH,
            "max_s",
            worst,
            "s",
            args.runs,
            Some(Target::Below(TARGET_S)),
        );
    }
    Ok(())
}

/// One kill and reassignment; returns attempt 2's start minus the kill time, in seconds.
async fn one_run(run: usize, args: &Args) -> Result<f64> {
    let limit = Duration::from_secs(args.timeout);
    let controller = common::controller(AGENT_TIMEOUT).await?;
    let mut a = common::agent(&controller, "bench-a", 1, HEARTBEAT).await?;
    let mut client = controller.job_client().await?;
    let spec = common::shell_job("reassign", vec![("sleep".into(), "sleep 60")], 3);
    let job_id = common::submit(&mut client, spec).await?;

    let deadline = Deadline::after(limit);
    loop {
        let job = get_job(&mut client, &job_id).await?;
        let first = attempt(&job, 1);
        if first.is_some_and(|a| a.agent == "bench-a" && a.state == AttemptState::Running as i32) {
            break;
        }
        deadline.check(|| format!("attempt 1 running on bench-a; job is {job:?}"))?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let b = common::agent(&controller, "bench-b", 1, HEARTBEAT).await?;

    a.kill9().context("kill -9 of agent A")?;
    let t0 = now_ms();
    let deadline = Deadline::after(limit);
    let job = loop {
        let job = get_job(&mut client, &job_id).await?;
        if attempt(&job, 2).is_some() {
            break job;
        }
        deadline.check(|| format!("attempt 2 to start after the kill; job is {job:?}"))?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let second = attempt(&job, 2).expect("attempt 2 exists");
    if second.agent != "bench-b" {
        bail!("attempt 2 ran on {:?}, not bench-b: {job:?}", second.agent);
    }
    let took = (second.started_at_ms - t0) as f64 / 1000.0;
    let lost_after = attempt(&job, 1)
        .filter(|a| a.finished_at_ms > 0)
        .map(|a| (a.finished_at_ms - t0) as f64 / 1000.0);
    eprintln!(
        "[reassign] run {run}: attempt 1 lost {} s after the kill, attempt 2 started on bench-b \
         {took:.3} s after it",
        lost_after.map_or("?".into(), |s| format!("{s:.3}")),
    );

    // Clean up: B stops its `sleep` when the job is cancelled; A's `sleep` outlived A.
    let _ = client
        .cancel_job(CancelJobRequest {
            job_id: job_id.clone(),
        })
        .await;
    let strays = common::kill_strays(&a.work_dir()) + common::kill_strays(&b.work_dir());
    if strays > 0 {
        eprintln!("[reassign] run {run}: killed {strays} leftover task processes");
    }
    Ok(took)
}

async fn get_job(client: &mut Client, job_id: &str) -> Result<Job> {
    Ok(client
        .get_job(GetJobRequest {
            job_id: job_id.to_owned(),
        })
        .await
        .with_context(|| format!("GetJob {job_id}"))?
        .into_inner())
}

/// Attempt `number` of the job's only task.
fn attempt(job: &Job, number: u32) -> Option<&ferry_proto::v1::Attempt> {
    job.tasks
        .first()
        .and_then(|t| t.attempts.iter().find(|a| a.number == number))
}
