//! The workload, drawn from the seed: DAG jobs of shell tasks that append their side effects
//! (attempt number, start, ticks, end, on the wall clock in ns) to the ledger, some uploading
//! an output that downstream tasks read as input, some printing their environment (and trying
//! to print the datasource's password) into their logs.

use std::path::Path;

/// One task of a job, as planned.
#[derive(Clone, Debug)]
pub struct TaskPlan {
    pub id: String,
    pub kind: Kind,
    pub deps: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Sleeps this many milliseconds (possibly 0).
    Quick(u32),
    /// Runs about `ticks` quarter-seconds, writing a tick to the ledger after each.
    Long(u32),
    /// Writes `out.bin` of about this many random bytes, declared as an output; its SHA-256 goes
    /// to the ledger.
    Upload(u32),
    /// Reads the staged `out.bin` of the upload task named and writes its SHA-256 to the ledger.
    Consume(String),
    /// `env` and the password file into its log: neither must show the secret.
    EnvDump,
}

#[derive(Clone, Debug)]
pub struct JobPlan {
    /// Also the job's idempotency key, so that a submit repeated after an outage is one job.
    pub key: String,
    pub tasks: Vec<TaskPlan>,
}

/// Jobs of 5 to 40 tasks until `tasks` tasks are planned.
pub fn plan(rng: &mut fastrand::Rng, run: &str, tasks: usize) -> Vec<JobPlan> {
    let mut jobs = Vec::new();
    let mut planned = 0;
    while planned < tasks {
        let size = rng.usize(5..=40).min(tasks - planned).max(1);
        let mut plans: Vec<TaskPlan> = Vec::with_capacity(size);
        for i in 0..size {
            let mut deps: Vec<usize> = Vec::new();
            if i > 0 && rng.u8(0..10) >= 2 {
                for _ in 0..rng.usize(1..=3.min(i)) {
                    let d = rng.usize(0..i);
                    if !deps.contains(&d) {
                        deps.push(d);
                    }
                }
            }
            let upload_dep = deps
                .iter()
                .find(|&&d| matches!(plans[d].kind, Kind::Upload(_)))
                .map(|&d| plans[d].id.clone());
            let kind = match (rng.u8(0..100), upload_dep) {
                (0..=49, Some(from)) => Kind::Consume(from),
                (0..=2, None) => Kind::Long(rng.u32(8..=32)),
                (3..=12, None) => Kind::Upload(rng.u32(512..=16384)),
                (13, None) => Kind::EnvDump,
                (r, _) if r % 2 == 0 => Kind::Quick(0),
                _ => Kind::Quick(rng.u32(10..=300)),
            };
            plans.push(TaskPlan {
                id: format!("t{i:02}"),
                kind,
                deps: deps.iter().map(|&d| format!("t{d:02}")).collect(),
            });
        }
        planned += plans.len();
        jobs.push(JobPlan {
            key: format!("chaos-{run}-{}", jobs.len()),
            tasks: plans,
        });
    }
    jobs
}

/// TOML text of a string (a JSON string is a valid TOML basic string for what we write).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).expect("a string serializes")
}

impl JobPlan {
    /// The job file. `secret_file` holds the datasource's password (the env-dump tasks try to
    /// print it).
    pub fn toml(&self, run: &str, ledger: &Path, secret_file: &Path) -> String {
        let mut text = format!(
            "name = \"chaos\"\n\n[params]\nchaos_run = {}\n",
            quoted(run)
        );
        for task in &self.tasks {
            text.push_str(&format!(
                "\n[[tasks]]\nid = \"{}\"\nqueue = \"chaos\"\ntimeout = \"2m\"\n\
                 retry = {{ max_attempts = 25, initial_delay = \"200ms\", max_delay = \"2s\" }}\n",
                task.id
            ));
            if !task.deps.is_empty() {
                let deps: Vec<String> = task.deps.iter().map(|d| quoted(d)).collect();
                text.push_str(&format!("depends_on = [{}]\n", deps.join(", ")));
            }
            if matches!(task.kind, Kind::Upload(_)) {
                text.push_str("outputs = [\"out.bin\"]\n");
            }
            text.push_str(&format!(
                "shell = {}\n",
                quoted(&script(&task.kind, ledger, secret_file))
            ));
        }
        text
    }
}

/// The task's shell command: a `start` line (with its pid), the body, an `end` line.
pub fn script(kind: &Kind, ledger: &Path, secret_file: &Path) -> String {
    let body = match kind {
        Kind::Quick(0) => String::new(),
        Kind::Quick(ms) => format!("sleep {}.{:03}; ", ms / 1000, ms % 1000),
        Kind::Long(ticks) => format!(
            "i=0; while [ $i -lt {ticks} ]; do sleep 0.25; \
             echo \"$K tick $(date +%s%N)\" >> \"$L\"; i=$((i+1)); done; "
        ),
        Kind::Upload(bytes) => format!(
            "head -c {bytes} /dev/urandom > out.bin; echo \"$K $$\" >> out.bin; \
             echo \"$K out $(sha256sum out.bin | cut -d' ' -f1)\" >> \"$L\"; "
        ),
        Kind::Consume(from) => format!(
            "echo \"$K in {from} $(sha256sum \"$FERRY_INPUTS/{from}/out.bin\" | cut -d' ' -f1)\" \
             >> \"$L\"; "
        ),
        Kind::EnvDump => format!(
            "env; cat '{}' 2>/dev/null || true; echo; ",
            secret_file.display()
        ),
    };
    format!(
        "set -e; L='{}'; K=\"$FERRY_JOB_ID $FERRY_TASK_ID $FERRY_ATTEMPT\"; \
         echo \"$K start $(date +%s%N) $$\" >> \"$L\"; {body}echo \"$K end $(date +%s%N)\" >> \"$L\"",
        ledger.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_plans_the_same_workload_of_at_least_the_tasks_asked() {
        let a = plan(&mut fastrand::Rng::with_seed(7), "r", 1000);
        let b = plan(&mut fastrand::Rng::with_seed(7), "r", 1000);
        let ids = |jobs: &[JobPlan]| -> Vec<(String, Vec<String>)> {
            jobs.iter()
                .flat_map(|j| {
                    j.tasks
                        .iter()
                        .map(|t| (format!("{:?}", t.kind), t.deps.clone()))
                })
                .collect()
        };
        assert_eq!(ids(&a), ids(&b));
        assert_eq!(a.iter().map(|j| j.tasks.len()).sum::<usize>(), 1000);
        // Every dependency names an earlier task; every consumer an upload it depends on.
        for job in &a {
            for (i, task) in job.tasks.iter().enumerate() {
                for dep in &task.deps {
                    assert!(job.tasks[..i].iter().any(|t| &t.id == dep), "{job:?}");
                }
                if let Kind::Consume(from) = &task.kind {
                    assert!(task.deps.contains(from));
                }
            }
        }
        let kinds = |want: fn(&Kind) -> bool| {
            a.iter()
                .flat_map(|j| &j.tasks)
                .filter(|t| want(&t.kind))
                .count()
        };
        assert!(kinds(|k| matches!(k, Kind::Upload(_))) > 20);
        assert!(kinds(|k| matches!(k, Kind::Consume(_))) > 10);
        assert!(kinds(|k| matches!(k, Kind::Long(_))) > 5);
    }

    #[test]
    fn a_script_writes_start_and_end_lines_with_its_attempt() {
        let dir = std::env::temp_dir().join(format!("chaos-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let ledger = dir.join("ledger");
        let secret = dir.join("secret");
        let out = std::process::Command::new("/bin/sh")
            .arg("-c")
            .arg(script(&Kind::Upload(100), &ledger, &secret))
            .current_dir(&dir)
            .env("FERRY_JOB_ID", "j")
            .env("FERRY_TASK_ID", "t")
            .env("FERRY_ATTEMPT", "3")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let text = std::fs::read_to_string(&ledger).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[0].starts_with("j t 3 start "));
        assert!(lines[1].starts_with("j t 3 out ") && lines[1].len() > 64);
        assert!(lines[2].starts_with("j t 3 end "));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
