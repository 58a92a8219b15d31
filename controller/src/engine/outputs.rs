//! The engine's side of task outputs: uploads and input fetches fenced by the attempt, and
//! the published results readers list and download. Files live in `artifacts`; rows in the store.

use crate::artifacts::{Reader, Upload, UploadGrant, UploadHeader};
use crate::model::{AttemptKey, ResultFile};

use super::{Engine, EngineError, Identity};

impl Engine {
    /// Checks that `attempt` is current on this agent's live session (`Fenced` otherwise).
    async fn fence(&self, who: &Identity, attempt: &AttemptKey) -> Result<(), EngineError> {
        self.touch_for(who, attempt).await?;
        Ok(self.store.check_attempt(&who.name, attempt).await?)
    }

    /// Starts (or resumes) receiving one output of the agent's current attempt.
    pub async fn begin_upload(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        header: UploadHeader,
    ) -> Result<Upload, EngineError> {
        self.fence(who, attempt).await?;
        Ok(self.outputs.clone().stage(attempt.clone(), header).await?)
    }

    /// Bytes of one output of the agent's current attempt that the controller holds.
    pub async fn upload_status(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        name: &str,
    ) -> Result<u64, EngineError> {
        self.fence(who, attempt).await?;
        Ok(self.outputs.staged(attempt, name).await?)
    }

    /// Opens a dependency's published output for the consuming attempt, from `offset`.
    pub async fn fetch_input(
        &self,
        who: &Identity,
        consumer: &AttemptKey,
        producer: &str,
        name: &str,
        offset: u64,
    ) -> Result<(ResultFile, Reader), EngineError> {
        self.fence(who, consumer).await?;
        self.check_dependency(consumer, producer).await?;
        self.result(&consumer.job_id, producer, name, offset).await
    }

    /// URLs to upload one output of the agent's current attempt straight to the object store;
    /// `None` when artifacts live in the data directory (the agent streams them here).
    pub async fn grant_upload(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        name: &str,
        size: u64,
        first_part: u32,
    ) -> Result<Option<UploadGrant>, EngineError> {
        self.fence(who, attempt).await?;
        Ok(self.outputs.grant(attempt, name, size, first_part).await?)
    }

    /// Assembles a multipart upload of the agent's current attempt; the object's size.
    pub async fn complete_upload(
        &self,
        who: &Identity,
        attempt: &AttemptKey,
        name: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<u64, EngineError> {
        self.fence(who, attempt).await?;
        self.outputs
            .assemble(attempt, name, upload_id, parts)
            .await?
            .ok_or_else(|| {
                EngineError::InvalidArgument(
                    "this controller keeps artifacts in its data directory: no multipart uploads"
                        .into(),
                )
            })
    }

    /// A presigned URL of a dependency's published output for the consuming attempt; `None`
    /// when artifacts live in the data directory (use `fetch_input`).
    pub async fn grant_download(
        &self,
        who: &Identity,
        consumer: &AttemptKey,
        producer: &str,
        name: &str,
    ) -> Result<Option<(ResultFile, String)>, EngineError> {
        self.fence(who, consumer).await?;
        if !self.outputs.direct() {
            return Ok(None);
        }
        self.check_dependency(consumer, producer).await?;
        self.result_url(&consumer.job_id, producer, name).await
    }

    /// A presigned URL of one published output; `None` when artifacts live in the data
    /// directory (use `result`).
    pub async fn result_url(
        &self,
        job_id: &str,
        task_id: &str,
        name: &str,
    ) -> Result<Option<(ResultFile, String)>, EngineError> {
        if !self.outputs.direct() {
            return Ok(None);
        }
        let file = self.published(job_id, task_id, name).await?;
        let url = self.outputs.url(job_id, task_id, file.attempt, name)?;
        Ok(url.map(|url| (file, url)))
    }

    async fn check_dependency(
        &self,
        consumer: &AttemptKey,
        producer: &str,
    ) -> Result<(), EngineError> {
        let deps = self
            .store
            .task_dependencies(&consumer.job_id, &consumer.task_id)
            .await?;
        if !deps.iter().any(|d| d == producer) {
            return Err(EngineError::PermissionDenied(format!(
                "task {producer} is not a dependency of task {}",
                consumer.task_id
            )));
        }
        Ok(())
    }

    async fn published(
        &self,
        job_id: &str,
        task_id: &str,
        name: &str,
    ) -> Result<ResultFile, EngineError> {
        crate::artifacts::check_name(name)?;
        self.store
            .list_outputs(job_id, Some(task_id))
            .await?
            .into_iter()
            .find(|f| f.name == name)
            .ok_or_else(|| {
                EngineError::NotFound(format!("output {name} of task {task_id} of job {job_id}"))
            })
    }

    /// Published outputs of a job, or of one of its tasks.
    pub async fn results(
        &self,
        job_id: &str,
        task_id: Option<&str>,
    ) -> Result<Vec<ResultFile>, EngineError> {
        Ok(self.store.list_outputs(job_id, task_id).await?)
    }

    /// Opens one published output from `offset` (refused by an object store: ask for a URL).
    pub async fn result(
        &self,
        job_id: &str,
        task_id: &str,
        name: &str,
        offset: u64,
    ) -> Result<(ResultFile, Reader), EngineError> {
        let file = self.published(job_id, task_id, name).await?;
        let reader = self
            .outputs
            .open(job_id, task_id, file.attempt, name, offset, file.size)
            .await?;
        Ok((file, reader))
    }
}

#[cfg(test)]
mod tests;
