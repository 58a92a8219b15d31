//! One run: set up (before any thread: the run's directory, the password, the environment
//! every process inherits), start the fleet, inject the schedule while submitting the workload
//! and running the extracts, heal, wait for every job to end, read the record, stop
//! everything, check and print.

use std::{
    collections::{BTreeMap, HashMap},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Result};
use ferry_tests::Cli;

use crate::{
    checks::{self, Check},
    disk::{self, SmallDisk},
    extract::{self, Source},
    faults,
    fleet::{Fleet, Settings, StoreKind},
    ledger::Ledger,
    leftovers, record, recovery,
    report::{self, Figures},
    schedule::{self, Kind},
    secrets,
    setup::Setup,
    slowfs::SlowDisk,
    submit,
    workload::{self, JobPlan, Kind as TaskKind},
    Args,
};

/// Share of the duration over which the jobs are submitted.
const SUBMIT_SHARE: f64 = 0.7;

/// Runs everything; the number of invariant violations.
pub async fn run(args: &Args, setup: &Setup) -> Result<usize> {
    let began = Instant::now();
    let mut rng = fastrand::Rng::with_seed(setup.seed);
    let mut kinds: Vec<Kind> = if args.faults.is_empty() {
        schedule::ALL.to_vec()
    } else {
        args.faults.clone()
    };
    let disk = match SmallDisk::mount(&setup.root.join("disk"), disk::size_mib(args.tasks)) {
        Ok(disk) => Some(disk),
        Err(e) => {
            if kinds.contains(&Kind::DiskFull) {
                eprintln!("[chaos] no full-disk faults: cannot mount the data disk ({e:#})");
                kinds.retain(|k| *k != Kind::DiskFull);
            }
            None
        }
    };
    let backing = match &disk {
        Some(disk) => disk.path().to_owned(),
        None => setup.root.join("backing"),
    };
    let slow = match SlowDisk::mount(&setup.root.join("slow"), &backing) {
        Ok(slow) => Some(slow),
        Err(e) => {
            if kinds.contains(&Kind::SlowDisk) {
                eprintln!("[chaos] no slow-disk faults: cannot mount the slow disk ({e:#})");
                kinds.retain(|k| *k != Kind::SlowDisk);
            }
            None
        }
    };
    let settings = Settings {
        store: args.store,
        controllers: args.controllers,
        agents: args.agents.max(1),
        slots: args.slots,
        agent_timeout: args.agent_timeout,
        heartbeat: args.agent_timeout / 8,
    };
    let controllers = match args.store {
        StoreKind::Sqlite => 1,
        StoreKind::Postgres => args.controllers.max(1),
    };
    let plans = workload::plan(&mut rng, &setup.run, args.tasks);
    let schedule = schedule::plan(
        &mut rng,
        &kinds,
        args.duration,
        settings.agents,
        controllers,
        args.agent_timeout,
    );
    println!(
        "== ferry-chaos --seed {} --duration {} --tasks {} --store {:?} ({controllers} \
         controllers), {} agents x {} slots, agent timeout {}; run {}",
        setup.seed,
        humantime::format_duration(args.duration),
        args.tasks,
        args.store,
        settings.agents,
        settings.slots,
        humantime::format_duration(args.agent_timeout),
        setup.root.display()
    );
    println!(
        "planned: {} jobs, {} tasks, {} faults",
        plans.len(),
        plans.iter().map(|j| j.tasks.len()).sum::<usize>(),
        schedule.len()
    );

    let mut fleet = Fleet::start(&settings, &setup.root, disk, slow).await?;
    let cli = Arc::new(fleet.cli()?);
    let mut pg_source = Source::postgres().await?;
    let mut maria_source = Source::mariadb().await?;

    // The run: faults and submissions; the source grows and extracts run until both are done.
    let start = Instant::now();
    let stop = AtomicBool::new(false);
    let main_part = async {
        let (injected, submitted) = tokio::join!(
            faults::run(&mut fleet, &schedule, start, start + args.duration),
            submit_all(
                &cli,
                &plans,
                setup,
                start,
                args.duration.mul_f64(SUBMIT_SHARE)
            ),
        );
        stop.store(true, Ordering::Relaxed);
        (injected, submitted)
    };
    let jobs = [&pg_source, &maria_source].map(|s| (s.job(&setup.run), s.job_name(&setup.run)));
    let grown = async {
        let (pg, maria) = tokio::join!(pg_source.grow(&stop), maria_source.grow(&stop));
        pg.and(maria)
    };
    let extracts = async {
        let (pg, maria) = tokio::join!(
            extract::runs(&cli, &jobs[0].0, &jobs[0].1, &stop),
            extract::runs(&cli, &jobs[1].0, &jobs[1].1, &stop),
        );
        Ok::<_, anyhow::Error>((pg?, maria?))
    };
    let ((injected, submitted), grown, extracts) = tokio::join!(main_part, grown, extracts);
    let outcome = async {
        let injected = injected?;
        let ids = submitted?;
        grown?;
        Ok::<_, anyhow::Error>((injected, ids, extracts?))
    }
    .await;
    faults::heal_all(&mut fleet).await?;
    let (injected, ids, (mut pg_ids, mut maria_ids)) = outcome?;
    println!(
        "faults done ({} injected), {} jobs submitted; waiting for every job to end",
        injected.len(),
        ids.len()
    );
    wait_all_final(&cli, args.drain_timeout).await?;

    // One more extract of each source, with no fault: it must take every row left.
    pg_ids.push(extract::last_run(&cli, &pg_source, &setup.run).await?);
    maria_ids.push(extract::last_run(&cli, &maria_source, &setup.run).await?);

    let mut checks = Vec::new();
    let jobs = record::jobs(&cli, &ids).await?;
    let plan_of: HashMap<String, &JobPlan> = ids.iter().cloned().zip(plans.iter()).collect();
    let with_uploads: Vec<String> = ids
        .iter()
        .zip(&plans)
        .filter(|(_, p)| {
            p.tasks
                .iter()
                .any(|t| matches!(t.kind, TaskKind::Upload(_)))
        })
        .map(|(id, _)| id.clone())
        .collect();
    let listed = record::each(&cli, &with_uploads, |cli, id| async move {
        record::outputs(&cli, &id).await
    })
    .await?;
    let outputs: HashMap<String, Vec<record::OutputRec>> =
        with_uploads.into_iter().zip(listed).collect();
    let task_logs = secrets::env_dump_logs(&cli, &jobs, &plan_of).await?;
    let pg_check = extract::check(&cli, &pg_ids, &pg_source, &setup.root).await?;
    let maria_check = extract::check(&cli, &maria_ids, &maria_source, &setup.root).await?;
    let ledger = Ledger::parse(&std::fs::read_to_string(setup.ledger())?);
    let published = fleet.data_dir().join("artifacts").join("published");
    checks.push(checks::jobs_final(&jobs));
    checks.push(checks::one_commit(&jobs, &ledger));
    checks.push(checks::no_overlap(&ledger));
    checks.push(checks::outputs(
        &jobs, &plan_of, &outputs, &ledger, &published,
    ));
    checks.push(pg_check);
    checks.push(maria_check);
    checks.push(checks::found(
        "ledger lines whole (no torn append)",
        ledger.lines,
        ledger
            .bad_lines
            .iter()
            .map(|l| format!("unreadable line {l:?}"))
            .collect(),
    ));

    // Stop everything; then nothing of the run may be left in the process table.
    fleet.stop_agents(Duration::from_secs(60)).await?;
    fleet.stop_controllers(Duration::from_secs(60)).await?;
    checks.push(no_process_left(setup, &ledger).await);
    checks.push(secrets::no_secret(setup, &task_logs, &ledger));
    for source in [&mut pg_source, &mut maria_source] {
        if let Err(e) = source.drop_table().await {
            eprintln!(
                "[chaos] dropping the {} source table: {e:#}",
                source.database()
            );
        }
    }

    let worst = recovery::worst_by_kind(&injected, &jobs);
    let mut figures = Figures {
        jobs: jobs.len(),
        tasks: jobs.iter().map(|j| j.tasks.len()).sum(),
        attempts: BTreeMap::new(),
        job_states: BTreeMap::new(),
        extracts: vec![
            (pg_source.database(), pg_ids.len(), pg_source.last_id),
            (
                maria_source.database(),
                maria_ids.len(),
                maria_source.last_id,
            ),
        ],
        ledger_lines: ledger.lines,
        elapsed_s: began.elapsed().as_secs_f64(),
    };
    for job in &jobs {
        *figures.job_states.entry(job.state.clone()).or_default() += 1;
        for a in job.tasks.iter().flat_map(|t| &t.attempts) {
            *figures.attempts.entry(a.state.clone()).or_default() += 1;
        }
    }
    print!("{}", report::render(&figures, &worst, &checks));
    let violations: usize = checks.iter().map(|c| c.violations.len()).sum();
    if violations > 0 || args.keep {
        keep_logs(&setup.root)?;
    }
    drop(fleet);
    if violations == 0 && !args.keep {
        if let Err(e) = std::fs::remove_dir_all(&setup.root) {
            eprintln!("[chaos] removing {}: {e}", setup.root.display());
        }
    }
    Ok(violations)
}

/// Submits the jobs evenly over `window`; their ids, in the plans' order.
async fn submit_all(
    cli: &Cli,
    plans: &[JobPlan],
    setup: &Setup,
    start: Instant,
    window: Duration,
) -> Result<Vec<String>> {
    let mut ids = Vec::with_capacity(plans.len());
    for (i, plan) in plans.iter().enumerate() {
        let at = start + window.mul_f64(i as f64 / plans.len().max(1) as f64);
        tokio::time::sleep_until(at.into()).await;
        let path = cli.write_job(&plan.toml(&setup.run, &setup.ledger(), &setup.secret_file()))?;
        ids.push(submit::submit(cli, &path, &plan.key).await?);
        std::fs::remove_file(&path)?;
    }
    Ok(ids)
}

/// Waits until no job is pending or running (`jobs list --state`).
async fn wait_all_final(cli: &Cli, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        let mut open = 0;
        let mut answered = true;
        for state in ["pending", "running"] {
            match cli
                .json(["jobs", "list", "--state", state, "--limit", "10000"])
                .await
            {
                Ok(doc) => open += ferry_tests::job::items(&doc, "jobs")?.len(),
                Err(_) => answered = false,
            }
        }
        if answered && open == 0 {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("{open} jobs still open {timeout:?} after the faults stopped");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// No process of the run alive once agents and controllers have stopped (a few seconds of
/// grace for guardians that see their agent gone).
async fn no_process_left(setup: &Setup, ledger: &Ledger) -> Check {
    let pids = ledger.pids();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (seen, found) = leftovers::processes(&setup.run, &setup.root, &pids);
        if found.is_empty() || Instant::now() >= deadline {
            return checks::found(
                "no process left behind (process table)",
                seen + pids.len(),
                found,
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Copies every `*.log` of the harness's dirs to `logs/` of the run, before they are removed.
fn keep_logs(root: &Path) -> Result<()> {
    let kept = root.join("logs");
    let mut stack = vec![root.join("tmp")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "log") {
                let rel = path.strip_prefix(root.join("tmp"))?;
                let to = kept.join(rel.to_string_lossy().replace('/', "__"));
                std::fs::create_dir_all(&kept)?;
                std::fs::copy(&path, &to)?;
            }
        }
    }
    eprintln!("[chaos] logs kept in {}", kept.display());
    Ok(())
}
