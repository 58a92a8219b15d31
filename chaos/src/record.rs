//! The record the checks read, through the CLI's `--output json`: each job's tasks and
//! attempts (`jobs show`), its published outputs (`results list`), the logs of the tasks that
//! print their environment (`logs`). Fetched a few at a time.

use std::{sync::Arc, time::Duration};

use anyhow::{bail, Context, Result};
use ferry_tests::{Cli, TERMINAL_JOB_STATES};
use serde_json::Value;
use tokio::{sync::Semaphore, task::JoinSet};

use crate::time::parse_ms;

/// CLI calls at once.
const PARALLEL: usize = 4;

#[derive(Clone, Debug)]
pub struct AttemptRec {
    pub number: u32,
    pub agent: String,
    pub state: String,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

#[derive(Clone, Debug)]
pub struct TaskRec {
    pub id: String,
    pub state: String,
    pub attempts: Vec<AttemptRec>,
}

#[derive(Clone, Debug)]
pub struct OutputRec {
    pub task: String,
    pub attempt: u32,
    pub name: String,
    pub sha256: String,
}

#[derive(Clone, Debug)]
pub struct JobRec {
    pub id: String,
    pub state: String,
    pub tasks: Vec<TaskRec>,
}

impl JobRec {
    pub fn is_final(&self) -> bool {
        TERMINAL_JOB_STATES.contains(&self.state.as_str())
    }

    pub fn task(&self, id: &str) -> Option<&TaskRec> {
        self.tasks.iter().find(|t| t.id == id)
    }
}

fn text(v: &Value, key: &str) -> Result<String> {
    v[key]
        .as_str()
        .map(str::to_owned)
        .with_context(|| format!("no string {key:?} in {v}"))
}

fn time(v: &Value, key: &str) -> Result<Option<i64>> {
    match &v[key] {
        Value::Null => Ok(None),
        Value::String(s) => parse_ms(s).map(Some),
        other => bail!("{key} is {other}"),
    }
}

/// A `jobs show` document read into records.
pub fn job_of(doc: &Value) -> Result<JobRec> {
    let mut tasks = Vec::new();
    for t in doc["tasks"].as_array().context("no tasks")? {
        let mut attempts = Vec::new();
        for a in t["attempts"].as_array().into_iter().flatten() {
            attempts.push(AttemptRec {
                number: a["number"].as_u64().context("attempt without number")? as u32,
                agent: a["agent"].as_str().unwrap_or_default().to_owned(),
                state: text(a, "state")?,
                started_ms: time(a, "started_at")?,
                finished_ms: time(a, "finished_at")?,
            });
        }
        tasks.push(TaskRec {
            id: text(t, "id")?,
            state: text(t, "state")?,
            attempts,
        });
    }
    Ok(JobRec {
        id: text(doc, "id")?,
        state: text(doc, "state")?,
        tasks,
    })
}

/// Runs `call` for every item, [`PARALLEL`] at a time, retrying each a few times (a
/// controller may be restarting); the answers in the items' order.
pub async fn each<T, F, Fut>(cli: &Arc<Cli>, items: &[String], call: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(Arc<Cli>, String) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<T>> + Send,
{
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut set = JoinSet::new();
    for (i, item) in items.iter().enumerate() {
        let (cli, item, call, limit) = (cli.clone(), item.clone(), call.clone(), limit.clone());
        set.spawn(async move {
            let _permit = limit.acquire_owned().await?;
            let mut tries = 0;
            loop {
                tries += 1;
                match call(cli.clone(), item.clone()).await {
                    Ok(v) => return Ok::<_, anyhow::Error>((i, v)),
                    Err(e) if tries < 5 => {
                        eprintln!("[chaos] reading {item} (try {tries}): {e:#}");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                    Err(e) => return Err(e.context(format!("reading {item}"))),
                }
            }
        });
    }
    let mut out: Vec<Option<T>> = (0..items.len()).map(|_| None).collect();
    while let Some(joined) = set.join_next().await {
        let (i, v) = joined??;
        out[i] = Some(v);
    }
    Ok(out
        .into_iter()
        .map(|v| v.expect("every item answered"))
        .collect())
}

/// `jobs show` of each job.
pub async fn jobs(cli: &Arc<Cli>, ids: &[String]) -> Result<Vec<JobRec>> {
    each(cli, ids, |cli, id| async move {
        job_of(&cli.json(["jobs", "show", &id]).await?)
    })
    .await
}

/// `results list` of one job (every task's published outputs).
pub async fn outputs(cli: &Cli, job: &str) -> Result<Vec<OutputRec>> {
    let listed = cli.json(["results", "list", job]).await?;
    let mut out = Vec::new();
    for f in listed.as_array().context("results list is not a list")? {
        out.push(OutputRec {
            task: text(f, "task")?,
            attempt: f["attempt"].as_u64().context("output without attempt")? as u32,
            name: text(f, "name")?,
            sha256: text(f, "sha256")?,
        });
    }
    Ok(out)
}

/// The stored log of one attempt (`job task attempt`), as printed by `ferry logs`.
pub async fn log(cli: &Cli, job: &str, task: &str, attempt: u32) -> Result<String> {
    let out = cli
        .run(["logs", job, task, "--attempt", &attempt.to_string()])
        .await?;
    if out.code != 0 {
        bail!("ferry logs {job} {task} --attempt {attempt}: {out}");
    }
    Ok(out.stdout + &out.stderr)
}
