//! Pipelines in PostgreSQL: apply (a new version only when the template's hash changed),
//! read, pause, delete, and a run written with its job in one transaction. Applies and runs
//! of one pipeline take its row's lock first, so that controllers racing make one version, and
//! one run per scheduled time or key (which unique indexes hold as well).

use async_trait::async_trait;
use tokio_postgres::Row;

use super::pool::{col, Conn};
use super::tx::{backoff, begin, end, Mode, MAX_TRIES};
use super::{from_json, jobs, to_json, PostgresStore};
use crate::model::{JobSummary, Millis};
use crate::store::pipelines::{
    not_found, paused, version_moved, Applied, NewPipeline, NewRun, PipelineRecord, PipelineRun,
    PipelineStore, PipelineSummary, PipelineVersion, RunStarted,
};
use crate::store::StoreError;

fn version_of(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::backend(format!("pipeline version {v} out of range")))
}

/// The live (not deleted) pipeline's version and paused flag, read under its row's lock with
/// `FOR UPDATE`.
async fn live(c: &Conn, name: &str, lock: bool) -> Result<(u32, bool), StoreError> {
    let row = if lock {
        c.query_opt(
            "SELECT version, paused FROM pipelines WHERE name = $1 AND deleted_at IS NULL FOR UPDATE",
            &[&name],
        )
        .await?
    } else {
        c.query_opt(
            "SELECT version, paused FROM pipelines WHERE name = $1 AND deleted_at IS NULL",
            &[&name],
        )
        .await?
    };
    let row = row.ok_or_else(|| not_found(name))?;
    Ok((version_of(col(&row, 0)?)?, col(&row, 1)?))
}

async fn apply(c: &Conn, p: &NewPipeline, now: Millis) -> Result<Applied, StoreError> {
    let hash = p.template.hash();
    // A row to lock, made deleted at version 0 if there was none: two applies racing wait
    // here for each other, and the second compares its hash with the first one's version.
    c.execute(
        "INSERT INTO pipelines (name, version, paused, created_at, updated_at, deleted_at)
         VALUES ($1, 0, FALSE, $2, $2, $2) ON CONFLICT (name) DO NOTHING",
        &[&p.name, &now],
    )
    .await?;
    let row = c
        .query_one(
            "SELECT version, deleted_at IS NOT NULL FROM pipelines WHERE name = $1 FOR UPDATE",
            &[&p.name],
        )
        .await?;
    let (latest, deleted): (i64, bool) = (col(&row, 0)?, col(&row, 1)?);
    if !deleted {
        let row = c
            .query_one(
                "SELECT hash FROM pipeline_versions WHERE pipeline = $1 AND version = $2",
                &[&p.name, &latest],
            )
            .await?;
        if col::<String>(&row, 0)? == hash {
            return Ok(Applied {
                name: p.name.clone(),
                version: version_of(latest)?,
                changed: false,
            });
        }
    }
    let version = latest + 1;
    c.execute(
        "INSERT INTO pipeline_versions (pipeline, version, hash, template, created_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[&p.name, &version, &hash, &to_json(&p.template)?, &now],
    )
    .await?;
    c.execute(
        "UPDATE pipelines SET version = $2, updated_at = $3,
             created_at = CASE WHEN deleted_at IS NULL THEN created_at ELSE $3 END,
             paused = paused AND deleted_at IS NULL,
             deleted_at = NULL
         WHERE name = $1",
        &[&p.name, &version, &now],
    )
    .await?;
    Ok(Applied {
        name: p.name.clone(),
        version: version_of(version)?,
        changed: true,
    })
}

/// A run from the columns `r.job_id, r.version, r.scheduled_time, j.name, j.state,
/// j.created_at, j.finished_at, j.tasks_total, j.tasks_done` and `task_counts!` starting at `at`.
fn run_at(r: &Row, at: usize) -> Result<Option<PipelineRun>, StoreError> {
    let Some(job_id) = col::<Option<String>>(r, at)? else {
        return Ok(None);
    };
    Ok(Some(PipelineRun {
        job: JobSummary {
            id: job_id,
            name: col(r, at + 3)?,
            state: jobs::job_state(col(r, at + 4)?)?,
            created_at: col(r, at + 5)?,
            finished_at: col(r, at + 6)?,
            tasks_total: col::<i64>(r, at + 7)? as u32,
            tasks_done: col::<i64>(r, at + 8)? as u32,
            ended: jobs::counts_at(r, at + 9)?,
        },
        version: version_of(col(r, at + 1)?)?,
        scheduled_time: col(r, at + 2)?,
    }))
}

async fn summaries(c: &Conn, name: Option<&str>) -> Result<Vec<PipelineSummary>, StoreError> {
    let rows = c
        .query(
            concat!(
                "SELECT p.name, p.version, p.paused, p.created_at, p.updated_at,
                    r.job_id, r.version, r.scheduled_time, j.name, j.state, j.created_at,
                    j.finished_at, j.tasks_total, j.tasks_done, ",
                jobs::task_counts!(),
                " FROM pipelines p
             LEFT JOIN pipeline_runs r ON r.job_id = (
                 SELECT job_id FROM pipeline_runs WHERE pipeline = p.name
                 ORDER BY created_at DESC, job_id DESC LIMIT 1)
             LEFT JOIN jobs j ON j.id = r.job_id
             WHERE p.deleted_at IS NULL AND ($1::text IS NULL OR p.name = $1)
             ORDER BY p.name"
            ),
            &[&name],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(PipelineSummary {
                name: col(r, 0)?,
                version: version_of(col(r, 1)?)?,
                paused: col(r, 2)?,
                created_at: col(r, 3)?,
                updated_at: col(r, 4)?,
                last_run: run_at(r, 5)?,
            })
        })
        .collect()
}

async fn versions(c: &Conn, name: &str, limit: i64) -> Result<Vec<PipelineVersion>, StoreError> {
    let rows = c
        .query(
            "SELECT version, hash, created_at, template FROM pipeline_versions
             WHERE pipeline = $1 ORDER BY version DESC LIMIT $2",
            &[&name, &limit],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(PipelineVersion {
                version: version_of(col(r, 0)?)?,
                hash: col(r, 1)?,
                created_at: col(r, 2)?,
                template: from_json(col(r, 3)?)?,
            })
        })
        .collect()
}

async fn runs(c: &Conn, name: &str, limit: u32) -> Result<Vec<PipelineRun>, StoreError> {
    let rows = c
        .query(
            concat!(
                "SELECT r.job_id, r.version, r.scheduled_time, j.name, j.state, j.created_at,
                    j.finished_at, j.tasks_total, j.tasks_done, ",
                jobs::task_counts!(),
                " FROM pipeline_runs r JOIN jobs j ON j.id = r.job_id
             WHERE r.pipeline = $1 ORDER BY r.created_at DESC, r.job_id DESC LIMIT $2"
            ),
            &[&name, &i64::from(limit)],
        )
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        out.extend(run_at(r, 0)?);
    }
    Ok(out)
}

async fn start(c: &Conn, run: &NewRun, now: Millis) -> Result<RunStarted, StoreError> {
    // The pipeline's row first, deleted or not: runs of one pipeline take their turns.
    c.query_opt(
        "SELECT 1 FROM pipelines WHERE name = $1 FOR UPDATE",
        &[&run.pipeline],
    )
    .await?;
    if run.scheduled_time.is_some() || run.key.is_some() {
        let found = c
            .query_opt(
                "SELECT job_id, version FROM pipeline_runs WHERE pipeline = $1
                   AND (($2::int8 IS NOT NULL AND scheduled_time = $2)
                        OR ($3::text IS NOT NULL AND run_key = $3))
                 LIMIT 1",
                &[&run.pipeline, &run.scheduled_time, &run.key],
            )
            .await?;
        if let Some(row) = found {
            return Ok(RunStarted {
                job_id: col(&row, 0)?,
                version: version_of(col(&row, 1)?)?,
                existing: true,
            });
        }
    }
    let (version, is_paused) = live(c, &run.pipeline, false).await?;
    if version != run.version {
        return Err(version_moved(&run.pipeline, run.version, version));
    }
    if is_paused && run.automatic {
        return Err(paused(&run.pipeline));
    }
    let submitted = jobs::submit(c, &run.job, now).await?;
    c.execute(
        "INSERT INTO pipeline_runs (job_id, pipeline, version, scheduled_time, run_key, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            &submitted.job_id,
            &run.pipeline,
            &i64::from(run.version),
            &run.scheduled_time,
            &run.key,
            &now,
        ],
    )
    .await?;
    Ok(RunStarted {
        job_id: submitted.job_id,
        version: run.version,
        existing: false,
    })
}

#[async_trait]
impl PipelineStore for PostgresStore {
    async fn apply_pipeline(&self, p: NewPipeline, now: Millis) -> Result<Applied, StoreError> {
        transaction!(self, Mode::Write, |c| apply(c, &p, now))
    }

    async fn list_pipelines(&self) -> Result<Vec<PipelineSummary>, StoreError> {
        transaction!(self, Mode::Snapshot, |c| summaries(c, None))
    }

    async fn get_pipeline(&self, name: &str) -> Result<PipelineRecord, StoreError> {
        transaction!(self, Mode::Snapshot, |c| async {
            let summary = summaries(c, Some(name))
                .await?
                .pop()
                .ok_or_else(|| not_found(name))?;
            let versions = versions(c, name, i64::MAX).await?;
            Ok(PipelineRecord { summary, versions })
        })
    }

    async fn latest_pipeline(&self, name: &str) -> Result<(PipelineVersion, bool), StoreError> {
        transaction!(self, Mode::Snapshot, |c| async {
            let (version, is_paused) = live(c, name, false).await?;
            let latest = versions(c, name, 1)
                .await?
                .pop()
                .filter(|v| v.version == version)
                .ok_or_else(|| {
                    StoreError::backend(format!("pipeline {name:?} lost version {version}"))
                })?;
            Ok((latest, is_paused))
        })
    }

    async fn pipeline_runs(&self, name: &str, limit: u32) -> Result<Vec<PipelineRun>, StoreError> {
        transaction!(self, Mode::Snapshot, |c| runs(c, name, limit))
    }

    async fn set_pipeline_paused(
        &self,
        name: &str,
        paused: bool,
        _now: Millis,
    ) -> Result<bool, StoreError> {
        transaction!(self, Mode::Write, |c| async {
            let (_, was) = live(c, name, true).await?;
            if was == paused {
                return Ok(false);
            }
            c.execute(
                "UPDATE pipelines SET paused = $2 WHERE name = $1",
                &[&name, &paused],
            )
            .await?;
            Ok(true)
        })
    }

    async fn delete_pipeline(&self, name: &str, now: Millis) -> Result<(), StoreError> {
        transaction!(self, Mode::Write, |c| async {
            live(c, name, true).await?;
            c.execute(
                "UPDATE pipelines SET deleted_at = $2, paused = FALSE WHERE name = $1",
                &[&name, &now],
            )
            .await?;
            Ok(())
        })
    }

    async fn run_pipeline(&self, run: NewRun, now: Millis) -> Result<RunStarted, StoreError> {
        transaction!(self, Mode::WriteKeyed, |c| start(c, &run, now))
    }
}
