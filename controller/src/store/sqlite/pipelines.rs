//! Pipelines in SQLite: apply (a new version only when the template's hash changed), read,
//! pause, delete, and a run written with its job in one transaction of the writer.

use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension, Row};

use super::{backend, exec, from_json, jobs, to_json, SqliteStore};
use crate::model::{JobState, JobSummary, Millis};
use crate::store::pipelines::{
    not_found, paused, version_moved, Applied, NewPipeline, NewRun, PipelineRecord, PipelineRun,
    PipelineStore, PipelineSummary, PipelineVersion, RunStarted,
};
use crate::store::StoreError;

/// The live (not deleted) pipeline's version and paused flag.
fn live(conn: &Connection, name: &str) -> Result<(u32, bool), StoreError> {
    conn.prepare_cached(
        "SELECT version, paused FROM pipelines WHERE name = ?1 AND deleted_at IS NULL",
    )
    .map_err(backend)?
    .query_row([name], |r| Ok((r.get(0)?, r.get(1)?)))
    .optional()
    .map_err(backend)?
    .ok_or_else(|| not_found(name))
}

fn apply(conn: &Connection, p: &NewPipeline, now: Millis) -> Result<Applied, StoreError> {
    let hash = p.template.hash();
    let row: Option<(u32, bool)> = conn
        .prepare_cached("SELECT version, deleted_at IS NOT NULL FROM pipelines WHERE name = ?1")
        .map_err(backend)?
        .query_row([&p.name], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .map_err(backend)?;
    if let Some((version, false)) = row {
        let latest: String = conn
            .prepare_cached(
                "SELECT hash FROM pipeline_versions WHERE pipeline = ?1 AND version = ?2",
            )
            .map_err(backend)?
            .query_row(params![p.name, version], |r| r.get(0))
            .map_err(backend)?;
        if latest == hash {
            return Ok(Applied {
                name: p.name.clone(),
                version,
                changed: false,
            });
        }
    }
    let version = row.map_or(1, |(v, _)| v + 1);
    exec(
        conn,
        "INSERT INTO pipeline_versions (pipeline, version, hash, template, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
        params![p.name, version, hash, to_json(&p.template)?, now],
    )?;
    exec(
        conn,
        "INSERT INTO pipelines (name, version, paused, created_at, updated_at)
         VALUES (?1, ?2, 0, ?3, ?3)
         ON CONFLICT (name) DO UPDATE SET version = excluded.version, updated_at = excluded.updated_at,
             created_at = CASE WHEN deleted_at IS NULL THEN created_at ELSE excluded.created_at END,
             paused = CASE WHEN deleted_at IS NULL THEN paused ELSE 0 END,
             deleted_at = NULL",
        params![p.name, version, now],
    )?;
    Ok(Applied {
        name: p.name.clone(),
        version,
        changed: true,
    })
}

/// The columns of a run, from `pipeline_runs r JOIN jobs j`, starting at `at`.
const RUN_COLUMNS: &str = concat!(
    "r.job_id, r.version, r.scheduled_time, j.name, j.state, j.created_at,
     j.finished_at, j.tasks_total, j.tasks_done, ",
    super::jobs::task_counts!()
);

fn run_at(r: &Row<'_>, at: usize) -> rusqlite::Result<Option<(PipelineRun, String)>> {
    let Some(job_id) = r.get::<_, Option<String>>(at)? else {
        return Ok(None);
    };
    let state: String = r.get(at + 4)?;
    Ok(Some((
        PipelineRun {
            job: JobSummary {
                id: job_id,
                name: r.get(at + 3)?,
                state: JobState::Pending,
                created_at: r.get(at + 5)?,
                finished_at: r.get(at + 6)?,
                tasks_total: r.get(at + 7)?,
                tasks_done: r.get(at + 8)?,
                ended: super::jobs::counts_at(r, at + 9)?,
            },
            version: r.get(at + 1)?,
            scheduled_time: r.get(at + 2)?,
        },
        state,
    )))
}

fn with_state(found: Option<(PipelineRun, String)>) -> Result<Option<PipelineRun>, StoreError> {
    found
        .map(|(mut run, state)| {
            run.job.state = JobState::parse(&state)
                .ok_or_else(|| StoreError::backend(format!("unknown job state {state:?}")))?;
            Ok(run)
        })
        .transpose()
}

fn summaries(conn: &Connection, name: Option<&str>) -> Result<Vec<PipelineSummary>, StoreError> {
    let sql = format!(
        "SELECT p.name, p.version, p.paused, p.created_at, p.updated_at, {RUN_COLUMNS}
         FROM pipelines p
         LEFT JOIN pipeline_runs r ON r.job_id = (
             SELECT job_id FROM pipeline_runs WHERE pipeline = p.name
             ORDER BY created_at DESC, job_id DESC LIMIT 1)
         LEFT JOIN jobs j ON j.id = r.job_id
         WHERE p.deleted_at IS NULL AND (?1 IS NULL OR p.name = ?1)
         ORDER BY p.name"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map([name], |r| {
            Ok((
                PipelineSummary {
                    name: r.get(0)?,
                    version: r.get(1)?,
                    paused: r.get(2)?,
                    created_at: r.get(3)?,
                    updated_at: r.get(4)?,
                    last_run: None,
                },
                run_at(r, 5)?,
            ))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (mut summary, run) = row.map_err(backend)?;
        summary.last_run = with_state(run)?;
        out.push(summary);
    }
    Ok(out)
}

fn versions(
    conn: &Connection,
    name: &str,
    only_latest: bool,
) -> Result<Vec<PipelineVersion>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT version, hash, created_at, template FROM pipeline_versions
             WHERE pipeline = ?1 ORDER BY version DESC LIMIT ?2",
        )
        .map_err(backend)?;
    let limit = if only_latest { 1 } else { -1 };
    let rows = stmt
        .query_map(params![name, limit], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, String>(3)?))
        })
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        let (version, hash, created_at, template) = row.map_err(backend)?;
        out.push(PipelineVersion {
            version,
            hash,
            created_at,
            template: from_json(&template)?,
        });
    }
    Ok(out)
}

fn runs(conn: &Connection, name: &str, limit: u32) -> Result<Vec<PipelineRun>, StoreError> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM pipeline_runs r JOIN jobs j ON j.id = r.job_id
         WHERE r.pipeline = ?1 ORDER BY r.created_at DESC, r.job_id DESC LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(params![name, limit], |r| run_at(r, 0))
        .map_err(backend)?;
    let mut out = Vec::new();
    for row in rows {
        out.extend(with_state(row.map_err(backend)?)?);
    }
    Ok(out)
}

/// The run already recorded for this scheduled time or key, if any.
fn existing(conn: &Connection, run: &NewRun) -> Result<Option<RunStarted>, StoreError> {
    let found: Option<(String, u32)> = conn
        .prepare_cached(
            "SELECT job_id, version FROM pipeline_runs WHERE pipeline = ?1
               AND ((?2 IS NOT NULL AND scheduled_time = ?2) OR (?3 IS NOT NULL AND run_key = ?3))
             LIMIT 1",
        )
        .map_err(backend)?
        .query_row(params![run.pipeline, run.scheduled_time, run.key], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .optional()
        .map_err(backend)?;
    Ok(found.map(|(job_id, version)| RunStarted {
        job_id,
        version,
        existing: true,
    }))
}

fn start(conn: &Connection, run: &NewRun, now: Millis) -> Result<RunStarted, StoreError> {
    if run.scheduled_time.is_some() || run.key.is_some() {
        if let Some(found) = existing(conn, run)? {
            return Ok(found);
        }
    }
    let (version, is_paused) = live(conn, &run.pipeline)?;
    if version != run.version {
        return Err(version_moved(&run.pipeline, run.version, version));
    }
    if is_paused && run.automatic {
        return Err(paused(&run.pipeline));
    }
    let submitted = jobs::submit(conn, &run.job, now)?;
    exec(
        conn,
        "INSERT INTO pipeline_runs (job_id, pipeline, version, scheduled_time, run_key, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            submitted.job_id,
            run.pipeline,
            run.version,
            run.scheduled_time,
            run.key,
            now
        ],
    )?;
    Ok(RunStarted {
        job_id: submitted.job_id,
        version: run.version,
        existing: false,
    })
}

#[async_trait]
impl PipelineStore for SqliteStore {
    async fn apply_pipeline(&self, p: NewPipeline, now: Millis) -> Result<Applied, StoreError> {
        self.writer.write(move |conn| apply(conn, &p, now)).await
    }

    async fn list_pipelines(&self) -> Result<Vec<PipelineSummary>, StoreError> {
        self.read(|conn| summaries(conn, None)).await
    }

    async fn get_pipeline(&self, name: &str) -> Result<PipelineRecord, StoreError> {
        let name = name.to_string();
        self.read(move |conn| {
            let tx = super::ReadTx::begin(conn)?;
            let summary = summaries(&tx, Some(&name))?
                .pop()
                .ok_or_else(|| not_found(&name))?;
            let versions = versions(&tx, &name, false)?;
            Ok(PipelineRecord { summary, versions })
        })
        .await
    }

    async fn latest_pipeline(&self, name: &str) -> Result<(PipelineVersion, bool), StoreError> {
        let name = name.to_string();
        self.read(move |conn| {
            let tx = super::ReadTx::begin(conn)?;
            let (version, is_paused) = live(&tx, &name)?;
            let latest = versions(&tx, &name, true)?
                .pop()
                .filter(|v| v.version == version)
                .ok_or_else(|| {
                    StoreError::backend(format!("pipeline {name:?} lost version {version}"))
                })?;
            Ok((latest, is_paused))
        })
        .await
    }

    async fn pipeline_runs(&self, name: &str, limit: u32) -> Result<Vec<PipelineRun>, StoreError> {
        let name = name.to_string();
        self.read(move |conn| runs(conn, &name, limit)).await
    }

    async fn set_pipeline_paused(
        &self,
        name: &str,
        paused: bool,
        _now: Millis,
    ) -> Result<bool, StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |conn| {
                let (_, was) = live(conn, &name)?;
                if was == paused {
                    return Ok(false);
                }
                exec(
                    conn,
                    "UPDATE pipelines SET paused = ?2 WHERE name = ?1",
                    params![name, paused],
                )?;
                Ok(true)
            })
            .await
    }

    async fn delete_pipeline(&self, name: &str, now: Millis) -> Result<(), StoreError> {
        let name = name.to_string();
        self.writer
            .write(move |conn| {
                live(conn, &name)?;
                exec(
                    conn,
                    "UPDATE pipelines SET deleted_at = ?2, paused = 0 WHERE name = ?1",
                    params![name, now],
                )?;
                Ok(())
            })
            .await
    }

    async fn run_pipeline(&self, run: NewRun, now: Millis) -> Result<RunStarted, StoreError> {
        self.writer.write(move |conn| start(conn, &run, now)).await
    }
}
