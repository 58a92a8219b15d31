//! The invariants, each checked from the record — the store's answers (`jobs show`,
//! `results list`), the ledger the tasks wrote, the published files, the process table, the
//! logs — never from what the product logged about itself.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use crate::{
    ledger::Ledger,
    record::{JobRec, OutputRec},
    workload::{JobPlan, Kind},
};

/// One invariant: how many things it looked at, and what broke it.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub checked: usize,
    pub violations: Vec<String>,
}

impl Check {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            checked: 0,
            violations: Vec::new(),
        }
    }
}

/// Every accepted job is final, and a succeeded job's tasks all succeeded.
pub fn jobs_final(jobs: &[JobRec]) -> Check {
    let mut c = Check::new("every accepted job final");
    for job in jobs {
        c.checked += 1;
        if !job.is_final() {
            c.violations
                .push(format!("job {} is {}", job.id, job.state));
        } else if job.state == "succeeded" {
            for t in job.tasks.iter().filter(|t| t.state != "succeeded") {
                c.violations.push(format!(
                    "job {} succeeded with task {} {}",
                    job.id, t.id, t.state
                ));
            }
        }
    }
    c
}

/// The committed attempt of a succeeded task: its only succeeded attempt.
fn committed(job: &JobRec, task: &str) -> Option<u32> {
    let t = job.task(task)?;
    let mut ok = t.attempts.iter().filter(|a| a.state == "succeeded");
    match (t.state.as_str(), ok.next(), ok.next()) {
        ("succeeded", Some(a), None) => Some(a.number),
        _ => None,
    }
}

/// Each succeeded task has exactly one succeeded attempt, its last, which ran to its end in
/// the ledger; other tasks have none; every attempt in the ledger is one the store knows.
pub fn one_commit(jobs: &[JobRec], ledger: &Ledger) -> Check {
    let mut c = Check::new("each succeeded task: exactly one committed attempt");
    let known: HashSet<&str> = jobs.iter().map(|j| j.id.as_str()).collect();
    for job in jobs {
        for t in &job.tasks {
            c.checked += 1;
            let ok: Vec<u32> = t
                .attempts
                .iter()
                .filter(|a| a.state == "succeeded")
                .map(|a| a.number)
                .collect();
            let last = t.attempts.iter().map(|a| a.number).max();
            let ran = ledger.tasks.get(&(job.id.clone(), t.id.clone()));
            let name = format!("{}/{}", job.id, t.id);
            if t.state == "succeeded" {
                if ok.len() != 1 || Some(ok[0]) != last {
                    c.violations.push(format!(
                        "{name} succeeded with succeeded attempts {ok:?} of {last:?}"
                    ));
                } else if !ran
                    .and_then(|r| r.get(&ok[0]))
                    .is_some_and(|a| a.start_ns.is_some() && a.ended)
                {
                    c.violations.push(format!(
                        "{name}: committed attempt {} has no start and end in the ledger",
                        ok[0]
                    ));
                }
            } else if !ok.is_empty() {
                c.violations.push(format!(
                    "{name} is {} with succeeded attempts {ok:?}",
                    t.state
                ));
            }
            for n in ran.into_iter().flat_map(|r| r.keys()) {
                if !t.attempts.iter().any(|a| a.number == *n) {
                    c.violations.push(format!(
                        "{name}: attempt {n} ran but the store has no such attempt"
                    ));
                }
            }
        }
    }
    for (job, task) in ledger.tasks.keys() {
        let listed = jobs
            .iter()
            .find(|j| &j.id == job)
            .is_some_and(|j| j.task(task).is_some());
        if !known.contains(job.as_str()) || !listed {
            c.violations.push(format!(
                "{job}/{task} ran but is not a task of an accepted job"
            ));
        }
    }
    c
}

/// No two attempts of a task ran at the same time, from the ledger's intervals.
pub fn no_overlap(ledger: &Ledger) -> Check {
    let mut c = Check::new("no two attempts of a task at the same time");
    c.checked = ledger.tasks.values().map(|a| a.len()).sum();
    c.violations = ledger.overlaps();
    c
}

/// Outputs: each published row belongs to its task's committed attempt and is the file that
/// attempt wrote (its SHA-256 in the ledger); each succeeded upload task has one; every input
/// a task read is the published output; no attempt but the committed one has a published
/// directory.
pub fn outputs(
    jobs: &[JobRec],
    plans: &HashMap<String, &JobPlan>,
    outputs: &HashMap<String, Vec<OutputRec>>,
    ledger: &Ledger,
    published: &Path,
) -> Check {
    let mut c = Check::new("outputs: the committed attempt's, and only those");
    for job in jobs {
        let rows = outputs.get(&job.id).map(Vec::as_slice).unwrap_or_default();
        let Some(plan) = plans.get(&job.id) else {
            continue;
        };
        for task in &plan.tasks {
            let name = format!("{}/{}", job.id, task.id);
            let commit = committed(job, &task.id);
            let mine: Vec<&OutputRec> = rows.iter().filter(|r| r.task == task.id).collect();
            let attempts = ledger.tasks.get(&(job.id.clone(), task.id.clone()));
            if matches!(task.kind, Kind::Upload(_)) {
                c.checked += 1;
                match (commit, mine.as_slice()) {
                    (None, []) => {}
                    (None, rows) => c.violations.push(format!(
                        "{name} did not succeed but has published outputs {rows:?}"
                    )),
                    (Some(n), [row]) => {
                        let wrote = attempts.and_then(|a| a.get(&n)).and_then(|a| a.out.clone());
                        if row.attempt != n || row.name != "out.bin" {
                            c.violations.push(format!(
                                "{name}: published {} of attempt {}, committed {n}",
                                row.name, row.attempt
                            ));
                        } else if wrote.as_deref() != Some(row.sha256.as_str()) {
                            c.violations.push(format!(
                                "{name}: published SHA-256 {} but attempt {n} wrote {wrote:?}",
                                row.sha256
                            ));
                        }
                    }
                    (Some(n), rows) => c.violations.push(format!(
                        "{name}: committed attempt {n} has {} published outputs, not 1",
                        rows.len()
                    )),
                }
            } else if !mine.is_empty() {
                c.violations
                    .push(format!("{name} declares no output but has {mine:?}"));
            }
            for (n, a) in attempts.into_iter().flatten() {
                for (from, sha) in &a.inputs {
                    c.checked += 1;
                    let upstream = rows.iter().find(|r| &r.task == from);
                    if upstream.map(|r| &r.sha256) != Some(sha) {
                        c.violations.push(format!(
                            "{name} attempt {n} read input {from} with SHA-256 {sha}, published \
                             {:?}",
                            upstream.map(|r| &r.sha256)
                        ));
                    }
                }
            }
        }
        published_dirs(&mut c, job, &published.join(&job.id));
    }
    c
}

/// `published/<job>/<task>/<attempt>`: only committed attempts.
fn published_dirs(c: &mut Check, job: &JobRec, dir: &Path) {
    let Ok(tasks) = std::fs::read_dir(dir) else {
        return;
    };
    for task in tasks.flatten() {
        let task_id = task.file_name().to_string_lossy().into_owned();
        let commit = committed(job, &task_id);
        for attempt in std::fs::read_dir(task.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let n = attempt.file_name().to_string_lossy().into_owned();
            if n.parse::<u32>().ok() != commit {
                c.violations.push(format!(
                    "{}/{task_id}: attempt {n}'s outputs are in the published area, committed \
                     {commit:?}",
                    job.id
                ));
            }
        }
    }
}

/// A check whose findings come from elsewhere (the extracts, the process table, the logs).
pub fn found(name: &'static str, checked: usize, violations: Vec<String>) -> Check {
    Check {
        name,
        checked,
        violations,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AttemptRec, TaskRec};

    fn attempt(number: u32, state: &str) -> AttemptRec {
        AttemptRec {
            number,
            agent: "a".into(),
            state: state.into(),
            started_ms: Some(0),
            finished_ms: Some(1),
        }
    }

    fn job(state: &str, tasks: Vec<TaskRec>) -> JobRec {
        JobRec {
            id: "j".into(),
            state: state.into(),
            tasks,
        }
    }

    fn task(state: &str, attempts: Vec<AttemptRec>) -> TaskRec {
        TaskRec {
            id: "t".into(),
            state: state.into(),
            attempts,
        }
    }

    #[test]
    fn a_task_committed_twice_or_running_is_found() {
        let ledger = Ledger::parse("j t 1 start 1 9\nj t 2 start 5 9\nj t 2 end 6\n");
        let good = job(
            "succeeded",
            vec![task(
                "succeeded",
                vec![attempt(1, "lost"), attempt(2, "succeeded")],
            )],
        );
        assert!(one_commit(std::slice::from_ref(&good), &ledger)
            .violations
            .is_empty());
        assert!(jobs_final(&[good]).violations.is_empty());
        let twice = job(
            "succeeded",
            vec![task(
                "succeeded",
                vec![attempt(1, "succeeded"), attempt(2, "succeeded")],
            )],
        );
        assert_eq!(one_commit(&[twice], &ledger).violations.len(), 1);
        let unknown = job(
            "running",
            vec![task("running", vec![attempt(2, "running")])],
        );
        assert_eq!(
            one_commit(std::slice::from_ref(&unknown), &ledger)
                .violations
                .len(),
            1
        );
        assert_eq!(jobs_final(&[unknown]).violations.len(), 1);
    }
}
