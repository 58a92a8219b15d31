//! (c) of `watchers`: jobs per second through the real `ferry` binary, `submit --wait`
//! against `submit` alone, in alternate runs on one controller and one real agent. Without
//! waiting, a run ends when the last job has succeeded (read with `GetJob`), so both count
//! the same work: submitted and done.

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use ferry_proto::v1::{GetJobRequest, JobState};
use ferry_tests::{job_id_of, Cli, CLI_BIN};

use super::{Args, AGENT_TIMEOUT, BENCH};
use crate::{
    common::{self, secs},
    report::{emit, percentile, Target},
};

const RUNS: usize = 3;

pub async fn run(args: &Args) -> Result<()> {
    let cli_path = ferry_tests::bin_dir().join(CLI_BIN);
    if !cli_path.is_file() {
        bail!(
            "missing {}: build the workspace's binaries first",
            cli_path.display()
        );
    }
    let controller = common::controller(AGENT_TIMEOUT).await?;
    let agent = common::agent(&controller, "agent-wait", 8, Duration::from_secs(5)).await?;
    let cli = Arc::new(controller.cli());
    let file = cli.write_job("name = \"wait\"\n\n[[tasks]]\nid = \"t\"\nshell = \"true\"\n")?;
    let file = file.display().to_string();
    let mut client = controller.job_client().await?;
    // Warm up (the page cache, the agent's first spawns).
    submit_all(&cli, &file, args.concurrency, args.concurrency, false).await?;
    let (mut plain, mut waiting) = (Vec::new(), Vec::new());
    for run in 0..RUNS * 2 {
        let wait = run % 2 == 1;
        let cpu_before = (
            common::cpu_of(controller.pid(), "the controller")?,
            common::cpu_of(agent.pid(), "the agent")?,
            common::cpu_times("self")?,
        );
        let started = Instant::now();
        let ids = submit_all(&cli, &file, args.submits, args.concurrency, wait).await?;
        if !wait {
            all_succeeded(&mut client, &ids, Duration::from_secs(args.timeout)).await?;
        }
        let rate = ids.len() as f64 / secs(started.elapsed());
        let per_job = |s: f64| s * 1000.0 / ids.len() as f64;
        let controller_cpu = common::cpu_of(controller.pid(), "the controller")? - cpu_before.0;
        let agent_cpu = common::cpu_of(agent.pid(), "the agent")? - cpu_before.1;
        let cli_cpu = common::cpu_times("self")? - cpu_before.2;
        eprintln!(
            "[watchers] submit{}: {} jobs, {} at a time: {rate:.1} jobs/s; CPU per job: \
             controller {:.2} ms, agent {:.2} ms (+ {:.2} ms in tasks), CLI {:.2} ms (load {})",
            if wait { " --wait" } else { "" },
            ids.len(),
            args.concurrency,
            per_job(controller_cpu.own_s),
            per_job(agent_cpu.own_s),
            per_job(agent_cpu.children_s),
            per_job(cli_cpu.children_s),
            common::load1()
        );
        if wait { &mut waiting } else { &mut plain }.push(rate);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        percentile(v, 50.0)
    };
    let (plain, waiting) = (median(&mut plain), median(&mut waiting));
    let n = args.submits * RUNS;
    emit(BENCH, "submit_jobs_per_s", plain, "jobs/s", n, None);
    emit(BENCH, "submit_wait_jobs_per_s", waiting, "jobs/s", n, None);
    let cost = (1.0 - waiting / plain) * 100.0;
    emit(
        BENCH,
        "submit_wait_cost_pct",
        cost,
        "%",
        n,
        Some(Target::Below(5.0)),
    );
    Ok(())
}

/// Runs `ferry submit FILE [--wait]` `count` times, `concurrency` at once; the job ids.
async fn submit_all(
    cli: &Arc<Cli>,
    file: &str,
    count: usize,
    concurrency: usize,
    wait: bool,
) -> Result<Vec<String>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (cli, next, file) = (Arc::clone(cli), Arc::clone(&next), file.to_owned());
        set.spawn(async move {
            let mut ids = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < count {
                let mut argv = vec!["submit", file.as_str()];
                if wait {
                    argv.push("--wait");
                }
                let out = cli.run(&argv).await?;
                if out.code != 0 {
                    bail!("ferry {argv:?} failed: {out}");
                }
                ids.push(job_id_of(&out)?);
            }
            anyhow::Ok(ids)
        });
    }
    let mut ids = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        ids.extend(joined.context("a submitter panicked")??);
    }
    Ok(ids)
}

/// Waits until every job in `ids` has succeeded.
async fn all_succeeded(client: &mut common::Client, ids: &[String], limit: Duration) -> Result<()> {
    let deadline = common::Deadline::after(limit);
    for id in ids {
        loop {
            let job = client
                .get_job(GetJobRequest { job_id: id.clone() })
                .await
                .context("GetJob")?
                .into_inner();
            match common::job_state(job.state) {
                JobState::Succeeded => break,
                state if common::job_ended_badly(state) => bail!("job {id} ended {state:?}"),
                _ => {}
            }
            deadline.check(|| format!("job {id} still {:?}", job.state()))?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok(())
}
