//! Retention of artifacts: a round removes the published outputs, files and rows, of jobs that
//! ended longer ago than `artifact_retention`, and the staged files of attempts that no longer
//! run (lost, failed, cancelled, superseded). `retention_loop.rs` runs the rounds.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use super::{ArtifactError, Artifacts, ObjectArtifacts};
use crate::model::Millis;
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum RetentionError {
    #[error(transparent)]
    Artifacts(#[from] ArtifactError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a round removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Round {
    pub jobs: usize,
    pub rows: u64,
    pub attempts: usize,
}

/// Of the jobs that have artifacts, those whose artifacts go: ended before `now - retention`,
/// or unknown to the store. A job still going keeps its artifacts.
pub fn expired_jobs(
    now: Millis,
    retention: Duration,
    jobs: &[String],
    ends: &HashMap<String, Option<Millis>>,
) -> Vec<String> {
    let cutoff = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
    jobs.iter()
        .filter(|job| match ends.get(*job) {
            None => true,
            Some(None) => false,
            Some(Some(end)) => *end < cutoff,
        })
        .cloned()
        .collect()
}

/// One round of retention at `now`.
pub async fn round(
    store: &dyn Store,
    artifacts: &Artifacts,
    retention: Duration,
    now: Millis,
) -> Result<Round, RetentionError> {
    let mut done = Round::default();
    let jobs = artifacts.job_dirs().await?;
    let ends = store.job_ends(jobs.clone()).await?;
    let expired = expired_jobs(now, retention, &jobs, &ends);
    for job in &expired {
        // Rows first: from then on no reader finds the files.
        done.rows += store.delete_outputs(job).await?;
        artifacts.remove_job(job).await?;
        done.jobs += 1;
    }
    // Listed before the store is asked: an attempt not running then never runs again.
    let expired: HashSet<&String> = expired.iter().collect();
    let staged: Vec<_> = artifacts
        .staged_attempts()
        .await?
        .into_iter()
        .filter(|k| !expired.contains(&k.job_id))
        .collect();
    if !staged.is_empty() {
        let running: HashSet<_> = store
            .running_attempts(staged.clone())
            .await?
            .into_iter()
            .collect();
        for key in staged.into_iter().filter(|k| !running.contains(k)) {
            // Also what an earlier process staged (`discard` looks only at this one's).
            artifacts.remove_staging(&key).await?;
            tracing::debug!(job = %key.job_id, task = %key.task_id, attempt = key.attempt, "staging of an attempt no longer running removed");
            done.attempts += 1;
        }
    }
    Ok(done)
}

/// One round of retention at `now` in the S3-compatible store: the objects (and multipart
/// uploads) of expired jobs, rows first; those of attempts neither running nor published.
pub async fn round_objects(
    store: &dyn Store,
    objects: &ObjectArtifacts,
    retention: Duration,
    now: Millis,
) -> Result<Round, RetentionError> {
    let mut done = Round::default();
    let attempts = objects.attempts().await?;
    let jobs: Vec<String> = attempts
        .iter()
        .map(|k| k.job_id.clone())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if jobs.is_empty() {
        return Ok(done);
    }
    let ends = store.job_ends(jobs.clone()).await?;
    let expired = expired_jobs(now, retention, &jobs, &ends);
    for job in &expired {
        done.rows += store.delete_outputs(job).await?;
        objects.remove_job(job).await?;
        done.jobs += 1;
    }
    let expired: HashSet<&String> = expired.iter().collect();
    let candidates: Vec<_> = attempts
        .into_iter()
        .filter(|k| !expired.contains(&k.job_id))
        .collect();
    if candidates.is_empty() {
        return Ok(done);
    }
    // Asked before the rows are read: an attempt not running then has committed its rows
    // already, or never will.
    let running: HashSet<_> = store
        .running_attempts(candidates.clone())
        .await?
        .into_iter()
        .collect();
    let mut published = HashSet::new();
    for job in candidates.iter().map(|k| &k.job_id).collect::<HashSet<_>>() {
        for file in store.list_outputs(job, None).await? {
            published.insert((job.clone(), file.task_id, file.attempt));
        }
    }
    for key in candidates {
        let id = (key.job_id.clone(), key.task_id.clone(), key.attempt);
        if !running.contains(&key) && !published.contains(&id) {
            objects.discard_all(&key).await?;
            done.attempts += 1;
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Millis = 86_400_000;

    #[test]
    fn selects_jobs_that_ended_before_the_cutoff_and_unknown_ones() {
        let now = 100 * DAY;
        let week = Duration::from_secs(7 * 86_400);
        let jobs: Vec<String> = ["old", "recent", "edge", "running", "unknown"]
            .map(String::from)
            .into();
        let ends: HashMap<String, Option<Millis>> = [
            ("old".to_string(), Some(now - 8 * DAY)),
            ("recent".to_string(), Some(now - DAY)),
            ("edge".to_string(), Some(now - 7 * DAY)),
            ("running".to_string(), None),
        ]
        .into();
        assert_eq!(
            expired_jobs(now, week, &jobs, &ends),
            vec!["old".to_string(), "unknown".to_string()]
        );
        assert_eq!(
            expired_jobs(now, Duration::ZERO, &jobs, &ends),
            vec![
                "old".to_string(),
                "recent".to_string(),
                "edge".to_string(),
                "unknown".to_string()
            ]
        );
    }
}
