//! What the results tests share, whether the controller keeps outputs itself (`results`) or in
//! an S3-compatible store (`results_s3`): checksums by `sha256sum`, a sparse 1 GiB output, a job
//! run to success, listing and downloading outputs with the CLI, and the fenced-attempt
//! scenario (a fake agent claims a task, falls silent until it is declared dead, then a real
//! agent runs the retry).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use ferry_proto::v1::AttemptRef;
use serde_json::Value;

use crate::{
    job::{attempts, state},
    Agent, AgentOpts, Cli, Controller, ControllerOpts, FakeAgent, TestDir,
};

pub const GIB: u64 = 1 << 30;

/// SHA-256 of a file, lowercase hex, by `sha256sum` (fast, and independent of Ferry's code).
pub fn sha256_file(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("running sha256sum");
    assert!(
        out.status.success(),
        "sha256sum {}: {out:?}",
        path.display()
    );
    String::from_utf8(out.stdout).unwrap()[..64].to_owned()
}

/// `big.bin`, made by a task: a sparse 1 GiB file (made in no time) with a random 64-byte tail
/// (which makes its checksum meaningful); the task writes its `sha256sum` line to a file in
/// the test's scratch dir, for the test to compare with what was published.
pub struct BigBin {
    sums: PathBuf,
}

impl BigBin {
    /// The size of `big.bin`.
    pub const SIZE: u64 = GIB + 64;

    /// The checksum will be written to `big.sha256` under `scratch`.
    pub fn new(scratch: &TestDir) -> Self {
        Self {
            sums: scratch.path().join("big.sha256"),
        }
    }

    /// The shell lines (each ending with a newline) that make `big.bin` in the task's working
    /// dir and write its checksum.
    pub fn shell(&self) -> String {
        format!(
            "truncate -s {GIB} big.bin\nhead -c 64 /dev/urandom >> big.bin\nsha256sum big.bin > {}\n",
            self.sums.display()
        )
    }

    /// The checksum the task wrote, lowercase hex.
    pub fn sha256(&self) -> String {
        std::fs::read_to_string(&self.sums).unwrap()[..64].to_owned()
    }
}

/// Runs a job on queue `etl` whose one task publishes `a.txt` and `b.bin` (`b_bytes` random
/// bytes); returns its id.
pub async fn run_expiring_job(cli: &Cli, b_bytes: u64, timeout: Duration) -> String {
    let job = format!(
        r#"
name = "expiring"

[[tasks]]
id = "only"
queue = "etl"
retry = {{ max_attempts = 1 }}
outputs = ["a.txt", "b.bin"]
shell = "echo a > a.txt && head -c {b_bytes} /dev/urandom > b.bin"
"#
    );
    run_to_success(cli, &job, timeout).await.0
}

/// Restarts a controller started with `--artifact-retention 1s` once that age has passed: its
/// retention loop runs at start, then every minute.
pub async fn restart_past_retention(controller: &mut Controller) {
    tokio::time::sleep(Duration::from_millis(1500)).await;
    controller.restart().await.unwrap();
}

/// Submits `toml`, waits for the job's end and asserts it succeeded; returns its id and its
/// `jobs show` document.
pub async fn run_to_success(cli: &Cli, toml: &str, timeout: Duration) -> (String, Value) {
    let id = cli.submit(toml).await.unwrap();
    let done = cli.wait_job(&id, timeout).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    (id, done)
}

/// `ferry --output json results list JOB [TASK]`, by name.
pub async fn results_by_name(cli: &Cli, job: &str, task: Option<&str>) -> BTreeMap<String, Value> {
    let mut args = vec!["results", "list", job];
    args.extend(task);
    let doc = cli.json(&args).await.unwrap();
    doc.as_array()
        .unwrap_or_else(|| panic!("results list --output json is a list: {doc:#}"))
        .iter()
        .map(|f| (f["name"].as_str().unwrap().to_owned(), f.clone()))
        .collect()
}

/// `ferry results get JOB TASK -o DIR [--name N]…`, which must succeed.
pub async fn results_get(cli: &Cli, job: &str, task: &str, dir: &Path, names: &[&str]) {
    let dir = dir.display().to_string();
    let mut args = vec!["results", "get", job, task, "-o", &dir];
    for name in names {
        args.extend(["--name", name]);
    }
    let out = cli.run(&args).await.unwrap();
    assert_eq!(out.code, 0, "ferry {args:?}: {out}");
}

/// Queue of the fenced-attempt job.
pub const FENCED_QUEUE: &str = "etl";

/// A controller with a 2 s agent timeout, a job whose one task `only` (3 attempts, output
/// `out.csv`) was claimed by a [`FakeAgent`] on [`FENCED_QUEUE`]: the test does what the stale
/// attempt should not be allowed to do once the fake agent is dead.
pub struct FencedAttempt {
    pub controller: Controller,
    pub cli: Cli,
    pub fake: FakeAgent,
    pub job_id: String,
    /// The fake agent's attempt (number 1).
    pub stale: AttemptRef,
}

impl FencedAttempt {
    /// Starts the controller (`opts` with a 2 s agent timeout), registers fake agent
    /// `fake_name`, submits job `job_name` and has the fake agent claim its task (10 s at most).
    pub async fn claimed(opts: ControllerOpts, fake_name: &str, job_name: &str) -> Self {
        let controller = Controller::start(opts.agent_timeout(Duration::from_secs(2)))
            .await
            .unwrap();
        let fake = FakeAgent::register(
            controller.agent_client().await.unwrap(),
            fake_name,
            FENCED_QUEUE,
        )
        .await
        .unwrap();
        let job = format!(
            r#"
name = "{job_name}"

[[tasks]]
id = "only"
queue = "{FENCED_QUEUE}"
retry = {{ max_attempts = 3, initial_delay = "100ms" }}
outputs = ["out.csv"]
shell = "echo real > out.csv"
"#
        );
        let cli = controller.cli();
        let job_id = cli.submit(&job).await.unwrap();
        let assignment = fake.claim_one(Duration::from_secs(10)).await.unwrap();
        let stale = assignment
            .attempt
            .clone()
            .expect("assignment names its attempt");
        Self {
            controller,
            cli,
            fake,
            job_id,
            stale,
        }
    }

    /// No heartbeat: waits (15 s at most) until the controller lists the fake agent dead, its
    /// attempt lost.
    pub async fn until_lost(&self) {
        let jobs = self.controller.job_client().await.unwrap();
        self.fake
            .wait_until_dead(&jobs, Duration::from_secs(15))
            .await
            .unwrap();
    }

    /// Starts a real agent `name` on [`FENCED_QUEUE`] and waits (`timeout`) for the job to
    /// succeed with the retry it runs; returns the agent and the `jobs show` document.
    pub async fn retried_by_real_agent(&self, name: &str, timeout: Duration) -> (Agent, Value) {
        let real = Agent::start(
            &self.controller.addr(),
            AgentOpts::new(name).queue(FENCED_QUEUE),
        )
        .await
        .unwrap();
        let done = self.cli.wait_job(&self.job_id, timeout).await.unwrap();
        assert_eq!(state(&done), "succeeded", "{done:#}");
        (real, done)
    }
}

/// An agent named `name` serving `queue`.
pub async fn agent_on(controller: &Controller, name: &str, queue: &str) -> Agent {
    Agent::start(&controller.addr(), AgentOpts::new(name).queue(queue))
        .await
        .unwrap()
}

/// Files under `dir`, relative, sorted.
pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path.strip_prefix(dir).unwrap().display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// The `error` of the last attempt of `task`.
pub fn last_error(job: &Value, task: &str) -> String {
    let tries = attempts(job, task);
    let last = tries
        .last()
        .unwrap_or_else(|| panic!("task {task} has no attempt: {job:#}"));
    last["error"].as_str().unwrap_or_default().to_owned()
}

/// Regular files under `dir` with their sizes (none when `dir` does not exist yet).
pub fn files_with_sizes(dir: &Path) -> Vec<(std::path::PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&at) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                out.push((entry.path(), meta.len()));
            }
        }
    }
    out
}
