//! What the data directory drops and lists: an attempt's staging (refused, discarded or no
//! longer running), outputs reclaimed from a half-done publication, a job's files at retention,
//! and the jobs and staged attempts on disk.

use std::fs;

use super::files::*;
use super::names::*;
use super::{blocking, ArtifactError, Artifacts};
use crate::model::AttemptKey;

impl Artifacts {
    /// Removes an attempt's staged files, whether or not this process received them, and
    /// forgets its uploads (retention: the attempt no longer runs).
    pub async fn remove_staging(&self, key: &AttemptKey) -> Result<(), ArtifactError> {
        check_key(key)?;
        self.close_attempt(key);
        let dir = self.staging_dir(key);
        blocking(move || remove_dir(&dir)).await
    }

    /// Removes an attempt's staged files and forgets its uploads (it will not publish).
    pub async fn discard(&self, key: &AttemptKey) -> Result<(), ArtifactError> {
        check_key(key)?;
        if !self.close_attempt(key) {
            // Nothing uploaded since this process started (the common case: a task without
            // outputs): no file-system round trip per task. Staging left from before a restart
            // goes with the retention loop's next round.
            return Ok(());
        }
        let dir = self.staging_dir(key);
        blocking(move || remove_dir(&dir)).await
    }

    /// Takes back into staging the outputs of `key` that a controller moved to the published
    /// area and then died before its transaction recorded them (the attempt is still running:
    /// the caller checked it, so no row names them). True when there was such a directory.
    pub async fn reclaim_published(&self, key: &AttemptKey) -> Result<bool, ArtifactError> {
        check_key(key)?;
        let (published, staging) = (
            Self::attempt_dir(&self.published, key),
            self.staging_dir(key),
        );
        blocking(move || {
            if staging.exists() || !published.is_dir() {
                return Ok(false);
            }
            let parent = staging.parent().expect("attempt dir has a parent");
            fs::create_dir_all(parent).map_err(io("creating", parent))?;
            fs::rename(&published, &staging).map_err(io("reclaiming", &published))?;
            sync_dir(parent)?;
            sync_dir(published.parent().expect("attempt dir has a parent"))?;
            Ok(true)
        })
        .await
    }

    /// Removes everything a job has here, staged and published (retention).
    pub async fn remove_job(&self, job_id: &str) -> Result<(), ArtifactError> {
        check_id("job id", job_id)?;
        self.close_job(job_id);
        let dirs = [self.published.join(job_id), self.staging.join(job_id)];
        blocking(move || dirs.iter().try_for_each(|d| remove_dir(d))).await
    }

    /// Jobs that have a directory here, staged or published.
    pub async fn job_dirs(&self) -> Result<Vec<String>, ArtifactError> {
        let roots = [self.published.clone(), self.staging.clone()];
        blocking(move || {
            let mut jobs = std::collections::BTreeSet::new();
            for root in &roots {
                jobs.extend(subdirs(root).map_err(io("listing", root))?);
            }
            Ok(jobs.into_iter().collect())
        })
        .await
    }

    /// Attempts that have a staging directory.
    pub async fn staged_attempts(&self) -> Result<Vec<AttemptKey>, ArtifactError> {
        let root = self.staging.clone();
        blocking(move || {
            let mut keys = Vec::new();
            for job in subdirs(&root).map_err(io("listing", &root))? {
                let job_dir = root.join(&job);
                for task in subdirs(&job_dir).map_err(io("listing", &job_dir))? {
                    let task_dir = job_dir.join(&task);
                    for number in subdirs(&task_dir).map_err(io("listing", &task_dir))? {
                        if let Ok(attempt) = number.parse() {
                            keys.push(AttemptKey {
                                job_id: job.clone(),
                                task_id: task.clone(),
                                attempt,
                            });
                        }
                    }
                }
            }
            Ok(keys)
        })
        .await
    }
}
