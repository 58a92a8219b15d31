//! Views of jobs: `jobs show` (tasks, attempts, extracts), `jobs list` and `jobs cancel`.

use std::collections::BTreeMap;

use ferry_proto::v1::{Attempt, CancelJobResponse, Job, JobSummary, Task};
use serde::Serialize;

use super::{non_empty, pairs, sorted};
use crate::output::{
    attempt_state, extracts::ExtractView, job_state, short_timestamp, span, task_state, timestamp,
    Table,
};

/// `jobs show`.
#[derive(Debug, Serialize)]
pub struct JobView {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub params: BTreeMap<String, String>,
    pub idempotency_key: Option<String>,
    pub created_at: Option<String>,
    pub finished_at: Option<String>,
    pub tasks: Vec<TaskView>,
    #[serde(skip)]
    created_ms: i64,
    #[serde(skip)]
    finished_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct TaskView {
    pub id: String,
    pub state: &'static str,
    pub queue: String,
    pub labels: BTreeMap<String, String>,
    pub kind: String,
    pub depends_on: Vec<String>,
    /// When a queued task becomes eligible again (retry backoff).
    pub ready_at: Option<String>,
    pub attempts: Vec<AttemptView>,
    /// A queued task: why no agent runs it yet ("no agent on queue onperm"); a task failed
    /// without starting: why.
    pub reason: Option<String>,
    /// Sql tasks that succeeded: what was extracted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extract: Option<ExtractView>,
}

#[derive(Debug, Serialize)]
pub struct AttemptView {
    pub number: u32,
    pub agent: String,
    pub state: &'static str,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub logs_truncated: bool,
    #[serde(skip)]
    started_ms: i64,
    #[serde(skip)]
    finished_ms: i64,
}

impl From<&Job> for JobView {
    fn from(job: &Job) -> Self {
        JobView {
            id: job.id.clone(),
            name: job.name.clone(),
            state: job_state(job.state()),
            params: sorted(&job.params),
            idempotency_key: non_empty(&job.idempotency_key),
            created_at: timestamp(job.created_at_ms),
            finished_at: timestamp(job.finished_at_ms),
            tasks: job.tasks.iter().map(TaskView::from).collect(),
            created_ms: job.created_at_ms,
            finished_ms: job.finished_at_ms,
        }
    }
}

impl From<&Task> for TaskView {
    fn from(task: &Task) -> Self {
        TaskView {
            id: task.id.clone(),
            state: task_state(task.state()),
            queue: task.queue.clone(),
            labels: sorted(&task.labels),
            kind: task.kind.clone(),
            depends_on: task.depends_on.clone(),
            ready_at: timestamp(task.ready_at_ms),
            attempts: task.attempts.iter().map(AttemptView::from).collect(),
            reason: non_empty(&task.reason),
            extract: task.extract.as_ref().map(ExtractView::from),
        }
    }
}

impl From<&Attempt> for AttemptView {
    fn from(attempt: &Attempt) -> Self {
        AttemptView {
            number: attempt.number,
            agent: attempt.agent.clone(),
            state: attempt_state(attempt.state()),
            exit_code: attempt.exit_code,
            error: non_empty(&attempt.error),
            started_at: timestamp(attempt.started_at_ms),
            finished_at: timestamp(attempt.finished_at_ms),
            logs_truncated: attempt.logs_truncated,
            started_ms: attempt.started_at_ms,
            finished_ms: attempt.finished_at_ms,
        }
    }
}

impl JobView {
    pub fn table(&self) -> String {
        let mut head = Table::new(&["id", &self.id]);
        head.row(vec!["name".into(), self.name.clone()]);
        head.row(vec!["state".into(), self.state.into()]);
        head.row(vec!["created".into(), short_timestamp(self.created_ms)]);
        let finished = if self.finished_ms > 0 {
            format!(
                "{} (took {})",
                short_timestamp(self.finished_ms),
                span(self.created_ms, self.finished_ms)
            )
        } else {
            format!("- (running for {})", span(self.created_ms, 0))
        };
        head.row(vec!["finished".into(), finished]);
        head.row(vec!["params".into(), pairs(&self.params)]);
        if let Some(key) = &self.idempotency_key {
            head.row(vec!["idempotency key".into(), key.clone()]);
        }

        let mut tasks = Table::new(&["TASK", "STATE", "KIND", "QUEUE", "LABELS", "DEPENDS ON"]);
        let mut attempts = Table::new(&[
            "TASK", "ATTEMPT", "AGENT", "STATE", "EXIT", "STARTED", "DURATION", "ERROR",
        ]);
        for task in &self.tasks {
            let depends_on = if task.depends_on.is_empty() {
                "-".to_owned()
            } else {
                task.depends_on.join(",")
            };
            tasks.row(vec![
                task.id.clone(),
                task.state.into(),
                task.kind.clone(),
                task.queue.clone(),
                pairs(&task.labels),
                depends_on,
            ]);
            for attempt in &task.attempts {
                attempts.row(vec![
                    task.id.clone(),
                    attempt.number.to_string(),
                    attempt.agent.clone(),
                    attempt.state.into(),
                    attempt
                        .exit_code
                        .map_or_else(|| "-".to_owned(), |code| code.to_string()),
                    short_timestamp(attempt.started_ms),
                    span(attempt.started_ms, attempt.finished_ms),
                    attempt.error.clone().unwrap_or_default(),
                ]);
            }
        }
        let mut out = head.render();
        out.push('\n');
        out.push_str(&tasks.render());
        for task in &self.tasks {
            if let Some(reason) = &task.reason {
                out.push_str(&format!("task {} is {}: {reason}\n", task.id, task.state));
            }
        }
        if self.tasks.iter().any(|t| !t.attempts.is_empty()) {
            out.push('\n');
            out.push_str(&attempts.render());
        }
        let extracts: Vec<_> = self
            .tasks
            .iter()
            .filter_map(|t| Some((t.id.as_str(), None, t.extract.as_ref()?)))
            .collect();
        if !extracts.is_empty() {
            out.push('\n');
            out.push_str(&ExtractView::table(&extracts));
        }
        out
    }
}

/// One row of `jobs list`.
#[derive(Debug, Serialize)]
pub struct JobSummaryView {
    pub id: String,
    pub name: String,
    pub state: &'static str,
    pub created_at: Option<String>,
    pub finished_at: Option<String>,
    pub tasks_total: u32,
    /// Tasks that ended, whichever way; the four counts below split them by how.
    pub tasks_done: u32,
    pub tasks_succeeded: u32,
    pub tasks_failed: u32,
    pub tasks_cancelled: u32,
    pub tasks_skipped: u32,
    #[serde(skip)]
    created_ms: i64,
    #[serde(skip)]
    finished_ms: i64,
}

impl From<&JobSummary> for JobSummaryView {
    fn from(job: &JobSummary) -> Self {
        JobSummaryView {
            id: job.id.clone(),
            name: job.name.clone(),
            state: job_state(job.state()),
            created_at: timestamp(job.created_at_ms),
            finished_at: timestamp(job.finished_at_ms),
            tasks_total: job.tasks_total,
            tasks_done: job.tasks_done,
            tasks_succeeded: job.tasks_succeeded,
            tasks_failed: job.tasks_failed,
            tasks_cancelled: job.tasks_cancelled,
            tasks_skipped: job.tasks_skipped,
            created_ms: job.created_at_ms,
            finished_ms: job.finished_at_ms,
        }
    }
}

impl JobSummaryView {
    pub fn table(jobs: &[JobSummaryView]) -> String {
        let mut table = Table::new(&["ID", "NAME", "STATE", "TASKS", "CREATED", "DURATION"]);
        for job in jobs {
            table.row(vec![
                job.id.clone(),
                job.name.clone(),
                job.state.into(),
                job.tasks(),
                short_timestamp(job.created_ms),
                span(job.created_ms, job.finished_ms),
            ]);
        }
        table.render()
    }

    /// `3/5 done, 1 failed, 1 cancelled`: the tasks that succeeded out of all, then each other
    /// way tasks ended, when any did.
    fn tasks(&self) -> String {
        let mut text = format!("{}/{} done", self.tasks_succeeded, self.tasks_total);
        for (count, how) in [
            (self.tasks_failed, "failed"),
            (self.tasks_cancelled, "cancelled"),
            (self.tasks_skipped, "skipped"),
        ] {
            if count > 0 {
                text.push_str(&format!(", {count} {how}"));
            }
        }
        text
    }
}

/// `jobs cancel`.
#[derive(Debug, Serialize)]
pub struct CancelView {
    pub id: String,
    /// False when the job had already ended.
    pub cancelled: bool,
    pub state: &'static str,
}

impl CancelView {
    pub fn new(id: &str, response: &CancelJobResponse) -> Self {
        CancelView {
            id: id.to_owned(),
            cancelled: response.cancelled,
            state: job_state(response.state()),
        }
    }

    pub fn table(&self) -> String {
        if self.cancelled {
            format!("cancelled job {}\n", self.id)
        } else {
            format!("job {} had already ended: {}\n", self.id, self.state)
        }
    }
}

#[cfg(test)]
mod tests {
    use ferry_proto::v1::{AttemptState, JobState, TaskState};
    use serde_json::json;

    use super::*;

    fn job() -> Job {
        Job {
            id: "0193a".into(),
            name: "orders-etl".into(),
            state: JobState::Failed as i32,
            params: [("day".to_owned(), "2026-11-24".to_owned())].into(),
            idempotency_key: String::new(),
            created_at_ms: 1_795_000_000_000,
            finished_at_ms: 1_795_000_004_100,
            tasks: vec![
                Task {
                    id: "extract".into(),
                    state: TaskState::Succeeded as i32,
                    queue: "onprem".into(),
                    labels: [("site".to_owned(), "dc1".to_owned())].into(),
                    depends_on: vec![],
                    kind: "sql".into(),
                    attempts: vec![Attempt {
                        number: 1,
                        agent: "agent-a".into(),
                        state: AttemptState::Succeeded as i32,
                        exit_code: Some(0),
                        error: String::new(),
                        started_at_ms: 1_795_000_000_500,
                        finished_at_ms: 1_795_000_001_000,
                        logs_truncated: false,
                    }],
                    ready_at_ms: 0,
                    extract: None,
                    reason: String::new(),
                },
                Task {
                    id: "transform".into(),
                    state: TaskState::Failed as i32,
                    queue: "cloud".into(),
                    labels: Default::default(),
                    depends_on: vec!["extract".into()],
                    kind: "shell".into(),
                    attempts: vec![Attempt {
                        number: 1,
                        agent: "agent-b".into(),
                        state: AttemptState::TimedOut as i32,
                        exit_code: None,
                        error: "timed out after 10s".into(),
                        started_at_ms: 1_795_000_001_000,
                        finished_at_ms: 1_795_000_004_000,
                        logs_truncated: true,
                    }],
                    ready_at_ms: 0,
                    extract: None,
                    reason: String::new(),
                },
            ],
        }
    }

    #[test]
    fn jobs_show_json_shape() {
        let view = JobView::from(&job());
        assert_eq!(
            serde_json::to_value(&view).unwrap(),
            json!({
                "id": "0193a",
                "name": "orders-etl",
                "state": "failed",
                "params": {"day": "2026-11-24"},
                "idempotency_key": null,
                "created_at": "2026-11-18T11:06:40.000Z",
                "finished_at": "2026-11-18T11:06:44.100Z",
                "tasks": [
                    {
                        "id": "extract", "state": "succeeded", "queue": "onprem",
                        "labels": {"site": "dc1"}, "kind": "sql", "depends_on": [],
                        "ready_at": null, "reason": null,
                        "attempts": [{
                            "number": 1, "agent": "agent-a", "state": "succeeded",
                            "exit_code": 0, "error": null,
                            "started_at": "2026-11-18T11:06:40.500Z",
                            "finished_at": "2026-11-18T11:06:41.000Z",
                            "logs_truncated": false
                        }]
                    },
                    {
                        "id": "transform", "state": "failed", "queue": "cloud",
                        "labels": {}, "kind": "shell", "depends_on": ["extract"],
                        "ready_at": null, "reason": null,
                        "attempts": [{
                            "number": 1, "agent": "agent-b", "state": "timed_out",
                            "exit_code": null, "error": "timed out after 10s",
                            "started_at": "2026-11-18T11:06:41.000Z",
                            "finished_at": "2026-11-18T11:06:44.000Z",
                            "logs_truncated": true
                        }]
                    }
                ]
            })
        );
    }

    #[test]
    fn jobs_show_table() {
        let view = JobView::from(&job());
        assert_eq!(
            view.table(),
            "\
id        0193a
name      orders-etl
state     failed
created   2026-11-18T11:06:40Z
finished  2026-11-18T11:06:44Z (took 4.1s)
params    day=2026-11-24

TASK       STATE      KIND   QUEUE   LABELS    DEPENDS ON
extract    succeeded  sql    onprem  site=dc1  -
transform  failed     shell  cloud   -         extract

TASK       ATTEMPT  AGENT    STATE      EXIT  STARTED               DURATION  ERROR
extract    1        agent-a  succeeded  0     2026-11-18T11:06:40Z  500ms
transform  1        agent-b  timed_out  -     2026-11-18T11:06:41Z  3.0s      timed out after 10s
"
        );
    }

    #[test]
    fn jobs_show_carries_each_sql_tasks_extract() {
        let mut job = job();
        job.tasks[0].extract = Some(ferry_proto::v1::ExtractInfo {
            rows: 3,
            bytes: 2048,
            files: vec!["extract.csv".into()],
            columns: vec![ferry_proto::v1::ExtractColumn {
                name: "id".into(),
                source_type: "INTEGER".into(),
                file_type: "int64".into(),
                nullable: false,
            }],
            watermark: Some("3".into()),
            incremental_column: "id".into(),
            backfill: false,
        });
        let view = JobView::from(&job);
        let doc = serde_json::to_value(&view).unwrap();
        assert_eq!(
            doc["tasks"][0]["extract"],
            json!({
                "rows": 3, "bytes": 2048, "files": ["extract.csv"],
                "columns": [{"name": "id", "source_type": "INTEGER", "file_type": "int64",
                             "nullable": false}],
                "watermark": "3", "incremental_column": "id", "backfill": false
            })
        );
        assert!(doc["tasks"][1].get("extract").is_none(), "{doc:#}");
        assert!(
            view.table().ends_with(
                "\n\
TASK     ROWS  SIZE     FILES        WATERMARK  SCHEMA
extract  3     2.0 KiB  extract.csv  3          id INTEGER→int64
"
            ),
            "{}",
            view.table()
        );
    }

    #[test]
    fn jobs_list_tells_how_tasks_ended() {
        let mut summary = JobSummary {
            id: "0193a".into(),
            name: "orders-etl".into(),
            tasks_total: 5,
            tasks_done: 3,
            tasks_succeeded: 3,
            ..JobSummary::default()
        };
        assert_eq!(JobSummaryView::from(&summary).tasks(), "3/5 done");
        summary.tasks_done = 5;
        summary.tasks_failed = 1;
        summary.tasks_cancelled = 1;
        assert_eq!(
            JobSummaryView::from(&summary).tasks(),
            "3/5 done, 1 failed, 1 cancelled"
        );
        let json = serde_json::to_value(JobSummaryView::from(&summary)).unwrap();
        assert_eq!(
            (
                &json["tasks_done"],
                &json["tasks_succeeded"],
                &json["tasks_failed"],
                &json["tasks_cancelled"],
                &json["tasks_skipped"]
            ),
            (&json!(5), &json!(3), &json!(1), &json!(1), &json!(0))
        );
    }
}
