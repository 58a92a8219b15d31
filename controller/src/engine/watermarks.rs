//! The engine's side of incremental extraction: listing, setting and resetting the stored
//! high watermarks of incremental sql tasks, and the extract metadata of a job's results.

use crate::model::{TaskExtract, Watermark};

use super::{Engine, EngineError};

impl Engine {
    /// Watermarks of every job name, or of one.
    pub async fn watermarks(&self, job_name: Option<&str>) -> Result<Vec<Watermark>, EngineError> {
        Ok(self.store.list_watermarks(job_name).await?)
    }

    /// Sets a watermark by hand: the next run of the task extracts the rows past `value`.
    #[tracing::instrument(skip(self))]
    pub async fn set_watermark(
        &self,
        job_name: &str,
        task_id: &str,
        value: &str,
    ) -> Result<Watermark, EngineError> {
        check_names(job_name, task_id)?;
        if value.is_empty() {
            return Err(EngineError::InvalidArgument(format!(
                "the watermark of task {task_id:?} of job {job_name:?} cannot be empty; \
                 reset it to extract from the start"
            )));
        }
        // Of the stored one's type: a mistyped value would fail every later run.
        // No job of that name: the set below names it.
        let stored = match self.store.list_watermarks(Some(job_name)).await {
            Err(crate::store::StoreError::NotFound(_)) => Vec::new(),
            listed => listed?,
        };
        if let Some(old) = stored.iter().find(|m| m.task_id == task_id) {
            let problem =
                ferry_jobspec::watermark::replacement_problem(&old.column, &old.value, value);
            if let Some(problem) = problem {
                return Err(EngineError::InvalidArgument(format!(
                    "{problem}, or reset the watermark of task {task_id:?} of job {job_name:?}"
                )));
            }
        }
        let mark = self
            .store
            .set_watermark(job_name, task_id, value, self.clock.now_ms())
            .await?;
        tracing::info!(column = %mark.column, "watermark set by hand");
        Ok(mark)
    }

    /// Forgets a watermark: the next run of the task extracts from the start.
    #[tracing::instrument(skip(self))]
    pub async fn reset_watermark(
        &self,
        job_name: &str,
        task_id: &str,
    ) -> Result<bool, EngineError> {
        check_names(job_name, task_id)?;
        let existed = self.store.reset_watermark(job_name, task_id).await?;
        tracing::info!(existed, "watermark reset");
        Ok(existed)
    }

    /// Extract metadata of a job's sql tasks (or of one task) that succeeded.
    pub async fn extracts(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<TaskExtract>, EngineError> {
        Ok(self.store.list_extracts(job_id, task_id).await?)
    }
}

fn check_names(job_name: &str, task_id: &str) -> Result<(), EngineError> {
    if job_name.is_empty() {
        return Err(EngineError::InvalidArgument("the job name is empty".into()));
    }
    if task_id.is_empty() {
        return Err(EngineError::InvalidArgument("the task id is empty".into()));
    }
    Ok(())
}
