//! What `ferry pipelines …` prints: a table (or lines) for people, one JSON document with
//! `--output json`.

use std::collections::BTreeMap;

use ferry_proto::v1::{
    ApplyPipelineResponse, ParamDecl, Pipeline, PipelineRun, PipelineSummary, RunPipelineResponse,
};
use serde::Serialize;

use crate::output::{job_state, printable, short_timestamp, span, timestamp, Table};

/// `pipelines apply`.
#[derive(Debug, Serialize)]
pub struct ApplyView {
    pub name: String,
    pub version: u32,
    /// False when the file equals the latest version (no new version).
    pub changed: bool,
}

impl From<&ApplyPipelineResponse> for ApplyView {
    fn from(a: &ApplyPipelineResponse) -> Self {
        ApplyView {
            name: a.name.clone(),
            version: a.version,
            changed: a.changed,
        }
    }
}

impl ApplyView {
    pub fn table(&self) -> String {
        let name = printable(self.name.clone());
        if self.changed {
            format!(
                "pipeline {name}: version {} applied (changed)\n",
                self.version
            )
        } else {
            format!(
                "pipeline {name}: unchanged, still version {}\n",
                self.version
            )
        }
    }
}

/// `pipelines run --output json`.
#[derive(Debug, Serialize)]
pub struct StartedView {
    pub job_id: String,
    pub version: u32,
    pub existing: bool,
}

impl From<&RunPipelineResponse> for StartedView {
    fn from(r: &RunPipelineResponse) -> Self {
        StartedView {
            job_id: r.job_id.clone(),
            version: r.version,
            existing: r.existing,
        }
    }
}

/// One run: `pipelines history`, and the runs of `list` and `show`.
#[derive(Debug, Serialize)]
pub struct RunView {
    pub job_id: String,
    pub version: u32,
    pub state: &'static str,
    /// A scheduled run's time.
    pub scheduled_time: Option<String>,
    pub created_at: Option<String>,
    pub finished_at: Option<String>,
    pub tasks_total: u32,
    pub tasks_done: u32,
    #[serde(skip)]
    created_ms: i64,
    #[serde(skip)]
    finished_ms: i64,
}

impl From<&PipelineRun> for RunView {
    fn from(r: &PipelineRun) -> Self {
        let job = r.job.clone().unwrap_or_default();
        RunView {
            job_id: job.id.clone(),
            version: r.version,
            state: job_state(job.state()),
            scheduled_time: timestamp(r.scheduled_time_ms),
            created_at: timestamp(job.created_at_ms),
            finished_at: timestamp(job.finished_at_ms),
            tasks_total: job.tasks_total,
            tasks_done: job.tasks_done,
            created_ms: job.created_at_ms,
            finished_ms: job.finished_at_ms,
        }
    }
}

impl RunView {
    pub fn table(runs: &[RunView]) -> String {
        let mut table = Table::new(&["JOB", "VERSION", "STATE", "TASKS", "CREATED", "DURATION"]);
        for r in runs {
            table.row(vec![
                r.job_id.clone(),
                r.version.to_string(),
                r.state.into(),
                format!("{}/{}", r.tasks_done, r.tasks_total),
                short_timestamp(r.created_ms),
                span(r.created_ms, r.finished_ms),
            ]);
        }
        table.render()
    }
}

/// `pipelines list`.
#[derive(Debug, Serialize)]
pub struct SummaryView {
    pub name: String,
    pub version: u32,
    pub paused: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    pub last_run: Option<RunView>,
    #[serde(skip)]
    updated_ms: i64,
}

impl From<&PipelineSummary> for SummaryView {
    fn from(s: &PipelineSummary) -> Self {
        SummaryView {
            name: s.name.clone(),
            version: s.version,
            paused: s.paused,
            created_at: timestamp(s.created_at_ms),
            updated_at: timestamp(s.updated_at_ms),
            last_run: s.last_run.as_ref().map(RunView::from),
            updated_ms: s.updated_at_ms,
        }
    }
}

fn paused_word(paused: bool) -> &'static str {
    if paused {
        "paused"
    } else {
        "active"
    }
}

impl SummaryView {
    pub fn table(pipelines: &[SummaryView]) -> String {
        let mut table = Table::new(&[
            "NAME",
            "VERSION",
            "STATE",
            "UPDATED",
            "LAST RUN",
            "RUN STATE",
        ]);
        for p in pipelines {
            let (job, state) = match &p.last_run {
                Some(r) => (r.job_id.clone(), r.state),
                None => ("-".into(), "-"),
            };
            table.row(vec![
                p.name.clone(),
                p.version.to_string(),
                paused_word(p.paused).into(),
                short_timestamp(p.updated_ms),
                job,
                state.into(),
            ]);
        }
        table.render()
    }
}

/// A typed parameter, or a plain one (`type` "string", its default given).
#[derive(Debug, Serialize)]
pub struct ParamView {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: String,
    pub default: Option<String>,
    pub required: bool,
    /// Declared with a type, rather than as `name = "value"`.
    pub typed: bool,
}

fn params(
    decls: &[ParamDecl],
    defaults: &std::collections::HashMap<String, String>,
) -> Vec<ParamView> {
    let mut out: BTreeMap<String, ParamView> = defaults
        .iter()
        .map(|(k, v)| {
            let view = ParamView {
                name: k.clone(),
                ty: "string".into(),
                default: Some(v.clone()),
                required: false,
                typed: false,
            };
            (k.clone(), view)
        })
        .collect();
    for d in decls {
        let view = ParamView {
            name: d.name.clone(),
            ty: d.r#type.clone(),
            default: d.default.clone(),
            required: d.required,
            typed: true,
        };
        out.insert(d.name.clone(), view);
    }
    out.into_values().collect()
}

/// One version in `pipelines show`.
#[derive(Debug, Serialize)]
pub struct VersionView {
    pub version: u32,
    pub hash: String,
    pub applied_at: Option<String>,
    pub tasks: Vec<String>,
    pub params: Vec<ParamView>,
    #[serde(skip)]
    applied_ms: i64,
}

/// `pipelines show`.
#[derive(Debug, Serialize)]
pub struct PipelineView {
    pub name: String,
    pub version: u32,
    pub paused: bool,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
    /// The latest version's parameters.
    pub params: Vec<ParamView>,
    /// The pipeline's schedule, its next fire times (RFC 3339, UTC) and what the time zone's
    /// next transitions will do to it.
    pub schedule: Option<String>,
    pub next_fire_times: Vec<String>,
    pub transitions: Vec<String>,
    /// Newest first.
    pub versions: Vec<VersionView>,
    /// The newest runs, newest first.
    pub last_runs: Vec<RunView>,
}

impl From<&Pipeline> for PipelineView {
    fn from(p: &Pipeline) -> Self {
        let s = p.summary.clone().unwrap_or_default();
        let versions: Vec<VersionView> = p
            .versions
            .iter()
            .map(|v| VersionView {
                version: v.version,
                hash: v.hash.clone(),
                applied_at: timestamp(v.created_at_ms),
                tasks: v.tasks.clone(),
                params: params(&v.params, &v.defaults),
                applied_ms: v.created_at_ms,
            })
            .collect();
        let latest = p
            .versions
            .first()
            .map(|v| params(&v.params, &v.defaults))
            .unwrap_or_default();
        PipelineView {
            name: s.name,
            version: s.version,
            paused: s.paused,
            created_at: timestamp(s.created_at_ms),
            updated_at: timestamp(s.updated_at_ms),
            params: latest,
            schedule: p.schedule.as_ref().map(schedule),
            next_fire_times: p
                .next_fire_times_ms
                .iter()
                .filter_map(|ms| timestamp(*ms))
                .collect(),
            transitions: p.transitions.clone(),
            versions,
            last_runs: p.last_runs.iter().map(RunView::from).collect(),
        }
    }
}

impl PipelineView {
    pub fn table(&self) -> String {
        let mut out = String::new();
        out.push_str(&format!("pipeline:  {}\n", printable(self.name.clone())));
        out.push_str(&format!("version:   {}\n", self.version));
        let state = if self.paused {
            "paused (its schedule and triggers start no run; `ferry pipelines run` still does)"
        } else {
            "active"
        };
        out.push_str(&format!("state:     {state}\n"));
        match &self.schedule {
            None => out.push_str("schedule:  none\n"),
            Some(schedule) => {
                out.push_str(&format!("schedule:  {}\n", printable(schedule.clone())));
                out.push_str(&format!("next:      {}\n", self.next_fire_times.join(", ")));
                for t in &self.transitions {
                    out.push_str(&format!("dst:       {}\n", printable(t.clone())));
                }
            }
        }
        out.push_str("\nparameters:\n");
        if self.params.is_empty() {
            out.push_str("  none\n");
        } else {
            let mut table = Table::new(&["  NAME", "TYPE", "DEFAULT", "REQUIRED"]);
            for p in &self.params {
                table.row(vec![
                    format!("  {}", p.name),
                    p.ty.clone(),
                    p.default.clone().unwrap_or_else(|| "-".into()),
                    if p.required { "yes" } else { "no" }.into(),
                ]);
            }
            out.push_str(&table.render());
        }
        out.push_str("\nversions:\n");
        let mut table = Table::new(&["  VERSION", "APPLIED", "TASKS", "HASH"]);
        for v in &self.versions {
            table.row(vec![
                format!("  {}", v.version),
                short_timestamp(v.applied_ms),
                v.tasks.join(","),
                v.hash.chars().take(12).collect(),
            ]);
        }
        out.push_str(&table.render());
        out.push_str("\nlast runs:\n");
        if self.last_runs.is_empty() {
            out.push_str("  none\n");
        } else {
            for line in RunView::table(&self.last_runs).lines() {
                out.push_str("  ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }
}

/// `pipelines pause` and `resume`.
#[derive(Debug, Serialize)]
pub struct PausedView {
    pub name: String,
    pub paused: bool,
    /// False when it already was.
    pub changed: bool,
}

impl PausedView {
    pub fn table(&self) -> String {
        let name = printable(self.name.clone());
        match (self.paused, self.changed) {
            (true, true) => format!(
                "paused pipeline {name}: its schedule and triggers start no run until resumed\n"
            ),
            (true, false) => format!("pipeline {name} was already paused\n"),
            (false, true) => format!("resumed pipeline {name}\n"),
            (false, false) => format!("pipeline {name} was not paused\n"),
        }
    }
}

/// A schedule in one line: `cron "30 2 * * *" in Europe/Berlin` or `every 10s`, then its
/// policies.
fn schedule(s: &ferry_proto::v1::ScheduleSpec) -> String {
    let when = if s.cron.is_empty() {
        format!("every {}", crate::output::duration(s.every_ms))
    } else {
        let zone = if s.timezone.is_empty() {
            "UTC"
        } else {
            &s.timezone
        };
        format!("cron {:?} in {zone}", s.cron)
    };
    let or = |v: &str, d: &'static str| {
        if v.is_empty() {
            d.to_string()
        } else {
            v.to_string()
        }
    };
    let window = if s.catchup_window_ms == 0 {
        "1d".to_string()
    } else {
        crate::output::duration(s.catchup_window_ms)
    };
    format!(
        "{when}; overlap {}, catchup {} within {window}, dst_repeated {}, dst_skipped {}",
        or(&s.overlap, "skip"),
        or(&s.catchup, "latest"),
        or(&s.dst_repeated, "first"),
        or(&s.dst_skipped, "shift"),
    )
}
