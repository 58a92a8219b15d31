//! The secrets' check: the stored logs of the tasks that print their environment and the
//! password file, and every file of the run, searched for the datasource's password; the
//! redaction's mark counted, and each log without it explained.

use std::{collections::BTreeMap, collections::HashMap, sync::Arc};

use anyhow::Result;
use ferry_tests::Cli;

use crate::{
    checks::{self, Check},
    ledger::Ledger,
    leftovers, record,
    setup::Setup,
    workload::{JobPlan, Kind as TaskKind},
};

/// One attempt of a task that printed its environment: `job task attempt`, its state, its
/// stored log.
pub struct EnvDump {
    key: String,
    state: String,
    log: String,
}

/// The stored logs of every attempt of the tasks that printed their environment.
pub async fn env_dump_logs(
    cli: &Arc<Cli>,
    jobs: &[record::JobRec],
    plans: &HashMap<String, &JobPlan>,
) -> Result<Vec<EnvDump>> {
    let mut wanted = Vec::new();
    let mut states = Vec::new();
    for job in jobs {
        let Some(plan) = plans.get(&job.id) else {
            continue;
        };
        for task in plan.tasks.iter().filter(|t| t.kind == TaskKind::EnvDump) {
            for a in job.task(&task.id).into_iter().flat_map(|t| &t.attempts) {
                wanted.push(format!("{} {} {}", job.id, task.id, a.number));
                states.push(a.state.clone());
            }
        }
    }
    let logs = record::each(cli, &wanted, |cli, key| async move {
        let f: Vec<&str> = key.split(' ').collect();
        record::log(&cli, f[0], f[1], f[2].parse()?).await
    })
    .await?;
    Ok(wanted
        .into_iter()
        .zip(states)
        .zip(logs)
        .map(|((key, state), log)| EnvDump { key, state, log })
        .collect())
}

/// The password in no file of the run (logs, stores, data, ledger) and in no task's stored log;
/// and the redaction seen at work: the log of every env-dump attempt that succeeded shows the
/// password file's line as `[redacted]` (a succeeded attempt's log is whole). An attempt that
/// did not succeed may lack the line — it never started, was stopped before it printed the
/// file, or its agent died before the log's tail was sent — and is counted by why.
pub fn no_secret(setup: &Setup, dumps: &[EnvDump], ledger: &Ledger) -> Check {
    let (files, mut found) =
        leftovers::secret_in_files(&setup.root, &setup.secret, &setup.secret_file());
    let mut redacted = 0;
    let mut unmarked: BTreeMap<String, usize> = BTreeMap::new();
    for dump in dumps {
        if dump.log.contains(&setup.secret) {
            found.push(format!("the password is in the stored log of {}", dump.key));
        }
        if dump.log.contains("[redacted]") {
            redacted += 1;
            continue;
        }
        let f: Vec<&str> = dump.key.split(' ').collect();
        let ran = ledger
            .tasks
            .get(&(f[0].to_owned(), f[1].to_owned()))
            .and_then(|a| a.get(&f[2].parse().unwrap_or(0)));
        let why = match ran {
            _ if dump.state == "succeeded" => {
                found.push(format!(
                    "the stored log of {}, succeeded, lacks the password file's line (redacted \
                     or not): {} bytes",
                    dump.key,
                    dump.log.len()
                ));
                "succeeded (a violation)".to_owned()
            }
            None => format!("{}, never started", dump.state),
            Some(a) if !a.ended => format!("{}, stopped before its end", dump.state),
            Some(_) => format!("{}, ran to its end, the log's tail not stored", dump.state),
        };
        *unmarked.entry(why).or_default() += 1;
    }
    let without: Vec<String> = unmarked.iter().map(|(k, n)| format!("{n} {k}")).collect();
    // The tasks print the password file: the agent's redaction is what keeps it out.
    println!(
        "environment dumps: {} attempts' logs read, {redacted} with the password redacted; \
         without it: {}",
        dumps.len(),
        if without.is_empty() {
            "none".to_owned()
        } else {
            without.join(", ")
        }
    );
    checks::found("no secret in any log", files + dumps.len(), found)
}
