//! `ArtifactStore`: what the engine asks of wherever outputs live — the data directory
//! (`Artifacts`) or an S3-compatible store (`ObjectArtifacts`) — so that it never asks which
//! one is configured. An attempt's outputs are granted or streamed in, checked against its
//! completion, published with the transaction that records the success (or taken back), read
//! or handed out as URLs, and removed.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

use super::retention::{self, RetentionError, Round};
use super::{object::ObjectPublication, ArtifactError};
use super::{Artifacts, ObjectArtifacts, Publication, Reader, Upload, UploadGrant, UploadHeader};
use crate::model::{AttemptKey, Millis, OutputFile};
use crate::store::Store;

/// Where attempts' outputs live. Method names differ from the stores' own, which the tests
/// call directly.
#[async_trait]
pub trait ArtifactStore: Send + Sync {
    /// Whether agents and clients move the bytes themselves, with presigned URLs (else they
    /// stream them through the controller).
    fn direct(&self) -> bool;

    /// URLs to upload one output of an attempt the caller has fenced; `None`: stream it.
    async fn grant(
        &self,
        key: &AttemptKey,
        name: &str,
        size: u64,
        first_part: u32,
    ) -> Result<Option<UploadGrant>, ArtifactError>;

    /// Assembles a multipart upload; the object's size. `None`: no multipart uploads here.
    async fn assemble(
        &self,
        key: &AttemptKey,
        name: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<Option<u64>, ArtifactError>;

    /// Starts (or resumes) receiving a streamed output of an attempt the caller has fenced.
    async fn stage(
        self: Arc<Self>,
        key: AttemptKey,
        header: UploadHeader,
    ) -> Result<Upload, ArtifactError>;

    /// Bytes of a streamed output held, from the start.
    async fn staged(&self, key: &AttemptKey, name: &str) -> Result<u64, ArtifactError>;

    /// Checks every declared output against what the store holds.
    async fn check(
        self: Arc<Self>,
        key: &AttemptKey,
        outputs: &[OutputFile],
    ) -> Result<(), ArtifactError>;

    /// Takes back outputs a controller published and then died before recording (the
    /// attempt is still current: the caller checked); true when there were some.
    async fn take_back(&self, key: &AttemptKey) -> Result<bool, ArtifactError>;

    /// Makes a checked attempt's outputs ready to become results with the transaction that
    /// records its success; the caller then ends the `Publishing`.
    async fn prepare(
        self: Arc<Self>,
        key: &AttemptKey,
    ) -> Result<Box<dyn Publishing>, ArtifactError>;

    /// Removes an attempt's outputs (it will not publish).
    async fn drop_attempt(&self, key: &AttemptKey) -> Result<(), ArtifactError>;

    /// A presigned GET URL of a published output; `None`: read it with `open`.
    fn url(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
        name: &str,
    ) -> Result<Option<String>, ArtifactError>;

    /// Opens a published output (of recorded `size`) for reading from `offset`.
    async fn open(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
        name: &str,
        offset: u64,
        size: u64,
    ) -> Result<Reader, ArtifactError>;

    /// One round of retention: expired jobs' rows and outputs, and the outputs of attempts
    /// that no longer run.
    async fn expire(
        &self,
        store: &dyn Store,
        retention: Duration,
        now: Millis,
    ) -> Result<Round, RetentionError>;
}

/// An attempt's outputs awaiting the fate of the transaction that would publish them.
#[async_trait]
pub trait Publishing: Send {
    /// The transaction committed: they are results.
    fn commit(self: Box<Self>);
    /// The transaction was refused for good (fenced): they go.
    async fn remove(self: Box<Self>) -> Result<(), ArtifactError>;
    /// The transaction failed and may be retried: they go back to where they were checked.
    async fn restore(self: Box<Self>) -> Result<(), ArtifactError>;
}

/// Refused by the object store: its bytes never pass through the controller.
fn not_streamed(name: &str) -> ArtifactError {
    ArtifactError::NotFound(format!(
        "a stream of output {name} (artifacts live in an object store: ask for a URL)"
    ))
}

#[async_trait]
impl ArtifactStore for Artifacts {
    fn direct(&self) -> bool {
        false
    }

    async fn grant(
        &self,
        _: &AttemptKey,
        _: &str,
        _: u64,
        _: u32,
    ) -> Result<Option<UploadGrant>, ArtifactError> {
        Ok(None)
    }

    async fn assemble(
        &self,
        _: &AttemptKey,
        _: &str,
        _: &str,
        _: &[(u32, String)],
    ) -> Result<Option<u64>, ArtifactError> {
        Ok(None)
    }

    async fn stage(
        self: Arc<Self>,
        key: AttemptKey,
        header: UploadHeader,
    ) -> Result<Upload, ArtifactError> {
        Artifacts::begin(&self, key, header).await
    }

    async fn staged(&self, key: &AttemptKey, name: &str) -> Result<u64, ArtifactError> {
        Artifacts::received(self, key, name).await
    }

    async fn check(
        self: Arc<Self>,
        key: &AttemptKey,
        outputs: &[OutputFile],
    ) -> Result<(), ArtifactError> {
        Artifacts::verify(&self, key, outputs).await
    }

    async fn take_back(&self, key: &AttemptKey) -> Result<bool, ArtifactError> {
        Artifacts::reclaim_published(self, key).await
    }

    async fn prepare(
        self: Arc<Self>,
        key: &AttemptKey,
    ) -> Result<Box<dyn Publishing>, ArtifactError> {
        Ok(Box::new(Artifacts::publish(&self, key).await?))
    }

    async fn drop_attempt(&self, key: &AttemptKey) -> Result<(), ArtifactError> {
        Artifacts::discard(self, key).await
    }

    fn url(&self, _: &str, _: &str, _: u32, _: &str) -> Result<Option<String>, ArtifactError> {
        Ok(None)
    }

    async fn open(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
        name: &str,
        offset: u64,
        size: u64,
    ) -> Result<Reader, ArtifactError> {
        let path = self.published_path(job_id, task_id, attempt, name)?;
        self.reader(path, name, offset, size).await
    }

    async fn expire(
        &self,
        store: &dyn Store,
        retention: Duration,
        now: Millis,
    ) -> Result<Round, RetentionError> {
        retention::round(store, self, retention, now).await
    }
}

#[async_trait]
impl Publishing for Publication {
    fn commit(self: Box<Self>) {
        Publication::commit(*self)
    }

    async fn remove(self: Box<Self>) -> Result<(), ArtifactError> {
        Publication::remove(*self).await
    }

    async fn restore(self: Box<Self>) -> Result<(), ArtifactError> {
        Publication::restore(*self).await
    }
}

#[async_trait]
impl ArtifactStore for ObjectArtifacts {
    fn direct(&self) -> bool {
        true
    }

    async fn grant(
        &self,
        key: &AttemptKey,
        name: &str,
        size: u64,
        first_part: u32,
    ) -> Result<Option<UploadGrant>, ArtifactError> {
        Ok(Some(
            ObjectArtifacts::grant_upload(self, key, name, size, first_part).await?,
        ))
    }

    async fn assemble(
        &self,
        key: &AttemptKey,
        name: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<Option<u64>, ArtifactError> {
        Ok(Some(
            ObjectArtifacts::complete_upload(self, key, name, upload_id, parts).await?,
        ))
    }

    async fn stage(
        self: Arc<Self>,
        _: AttemptKey,
        header: UploadHeader,
    ) -> Result<Upload, ArtifactError> {
        Err(not_streamed(&header.name))
    }

    async fn staged(&self, _: &AttemptKey, name: &str) -> Result<u64, ArtifactError> {
        Err(not_streamed(name))
    }

    async fn check(
        self: Arc<Self>,
        key: &AttemptKey,
        outputs: &[OutputFile],
    ) -> Result<(), ArtifactError> {
        ObjectArtifacts::verify(&self, key, outputs).await
    }

    async fn take_back(&self, _: &AttemptKey) -> Result<bool, ArtifactError> {
        // Objects never move: nothing to take back.
        Ok(false)
    }

    async fn prepare(
        self: Arc<Self>,
        key: &AttemptKey,
    ) -> Result<Box<dyn Publishing>, ArtifactError> {
        // Objects need no move: their rows make them results.
        Ok(Box::new(ObjectPublication {
            store: self,
            key: key.clone(),
        }))
    }

    async fn drop_attempt(&self, key: &AttemptKey) -> Result<(), ArtifactError> {
        ObjectArtifacts::discard(self, key).await
    }

    fn url(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
        name: &str,
    ) -> Result<Option<String>, ArtifactError> {
        Ok(Some(self.download_url(job_id, task_id, attempt, name)?))
    }

    async fn open(
        &self,
        _: &str,
        _: &str,
        _: u32,
        name: &str,
        _: u64,
        _: u64,
    ) -> Result<Reader, ArtifactError> {
        Err(not_streamed(name))
    }

    async fn expire(
        &self,
        store: &dyn Store,
        retention: Duration,
        now: Millis,
    ) -> Result<Round, RetentionError> {
        retention::round_objects(store, self, retention, now).await
    }
}

#[async_trait]
impl Publishing for ObjectPublication {
    fn commit(self: Box<Self>) {
        self.store.published(&self.key);
    }

    async fn remove(self: Box<Self>) -> Result<(), ArtifactError> {
        self.store.discard(&self.key).await
    }

    async fn restore(self: Box<Self>) -> Result<(), ArtifactError> {
        // The objects stay where they were checked; a retried completion checks them again.
        Ok(())
    }
}
