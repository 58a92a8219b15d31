//! Runs the fault schedule against the fleet, one fault at a time, and records when each was
//! injected and healed (the wall clock, in ms) and whom it hit.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::{
    fleet::Fleet,
    proxy::Mode,
    schedule::{Fault, Kind},
};

/// One fault as it happened.
#[derive(Clone, Debug)]
pub struct Injected {
    pub kind: Kind,
    pub injected_ms: i64,
    pub healed_ms: i64,
    /// The agent it hit, when it hit one; else every agent may have felt it.
    pub agent: Option<String>,
}

/// Injects each fault at its time from `start` and heals it after its length; stops at the
/// end of the schedule or once `until` has passed.
pub async fn run(
    fleet: &mut Fleet,
    schedule: &[Fault],
    start: Instant,
    until: Instant,
) -> Result<Vec<Injected>> {
    let mut done = Vec::new();
    for fault in schedule {
        let at = start + fault.at;
        if at >= until {
            break;
        }
        tokio::time::sleep_until(at.into()).await;
        let injected_ms = ferry_tests::now_ms();
        let offset = start.elapsed().as_secs_f64();
        let (target, agent) = inject(fleet, fault)
            .await
            .with_context(|| format!("injecting {fault:?}"))?;
        tokio::time::sleep(fault.length).await;
        if let Err(e) = heal(fleet, fault).await {
            // Healing is retried as a whole: a restart may find the machine busy.
            eprintln!("[chaos] healing {}: {e:#}; healing everything", fault.kind);
            heal_all(fleet).await?;
        }
        let healed_ms = ferry_tests::now_ms();
        eprintln!(
            "[chaos] {:>7.1}s {} {target} for {:.1}s",
            offset,
            fault.kind,
            (healed_ms - injected_ms) as f64 / 1000.0,
        );
        done.push(Injected {
            kind: fault.kind,
            injected_ms,
            healed_ms,
            agent,
        });
    }
    Ok(done)
}

/// Undoes everything, retrying a few times (a restart may time out on a starved machine).
pub async fn heal_all(fleet: &mut Fleet) -> Result<()> {
    let mut tries = 0;
    loop {
        tries += 1;
        match fleet.heal().await {
            Ok(()) => return Ok(()),
            Err(e) if tries < 4 => {
                eprintln!("[chaos] healing, try {tries}: {e:#}");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

async fn inject(fleet: &mut Fleet, fault: &Fault) -> Result<(String, Option<String>)> {
    let agent = fault
        .kind
        .hits_one_agent()
        .then(|| fleet.agent_name(fault.target).to_owned());
    let target = match fault.kind {
        Kind::AgentKill => {
            fleet.kill_agent(fault.target)?;
            None
        }
        Kind::AgentPause => {
            fleet.pause_agent(fault.target)?;
            None
        }
        Kind::ControllerKill => {
            fleet.kill_controller(fault.target)?;
            Some(format!("controller-{}", fault.target))
        }
        Kind::NetCut => {
            fleet.network(fault.target, Mode::Cut);
            None
        }
        Kind::NetBlackhole => {
            fleet.network(fault.target, Mode::Blackhole);
            None
        }
        Kind::NetDelay => {
            fleet.network(fault.target, Mode::Delay(fault.delay));
            None
        }
        Kind::DiskFull => {
            fleet.disk().context("no data disk")?.fill()?;
            Some("data-disk".to_owned())
        }
        Kind::SlowDisk => {
            fleet
                .slow_disk()
                .context("no slow disk")?
                .set_latency(fault.delay);
            Some(format!("data-disk at {} ms", fault.delay.as_millis()))
        }
    };
    let target = target.or_else(|| agent.clone()).unwrap_or_default();
    Ok((target, agent))
}

async fn heal(fleet: &mut Fleet, fault: &Fault) -> Result<()> {
    match fault.kind {
        Kind::AgentKill => fleet.restart_agent(fault.target).await,
        Kind::AgentPause => fleet.resume_agent(fault.target),
        Kind::ControllerKill => fleet.restart_controller(fault.target).await,
        Kind::NetCut | Kind::NetBlackhole | Kind::NetDelay => {
            fleet.network(fault.target, Mode::Pass);
            Ok(())
        }
        Kind::DiskFull => fleet.disk().context("no data disk")?.free(),
        Kind::SlowDisk => {
            fleet
                .slow_disk()
                .context("no slow disk")?
                .set_latency(Duration::ZERO);
            Ok(())
        }
    }
}
