//! The S3-compatible artifact store (`--artifacts s3://bucket/prefix`). Agents move the bytes
//! themselves, with presigned URLs this module grants per attempt (the caller fences): one PUT
//! for a small file, multipart for a large one, resumed from the parts the store holds. Every
//! attempt writes under its own keys, `<prefix>/jobs/<job>/<task>/<attempt>/<name>`; nothing
//! is copied at publication: the objects become results when the store commits their rows in
//! the transaction that records the success, so a reader never sees a partial file. No SQL and
//! no gRPC here.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::names::{check_declared, check_id, check_key, check_size, hex};
use super::{check_name, ArtifactError};
use crate::model::{AttemptKey, OutputFile};
use crate::s3::{S3Client, S3Error, MAX_PART_NUMBER};

/// Smallest part of a multipart upload; files up to this size go in a single PUT.
pub const PART_SIZE: u64 = 16 << 20;
/// Parts granted per `grant_upload` call.
pub const PART_BATCH: u32 = 16;
/// How long a granted URL stays valid.
pub const URL_LIFETIME: Duration = Duration::from_secs(15 * 60);
/// Objects up to this size are read back and their SHA-256 checked before they publish;
/// larger ones publish with the agent's SHA-256, which every reader checks.
pub const VERIFY_MAX: u64 = PART_SIZE;

/// The part size for a file of `size` bytes: `PART_SIZE`, or larger so that 10000 parts hold
/// it, rounded to a MiB.
pub fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(u64::from(MAX_PART_NUMBER));
    PART_SIZE.max(needed.div_ceil(1 << 20) << 20)
}

/// What an agent may do next with one output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UploadGrant {
    /// PUT the whole file here.
    Single { url: String },
    /// PUT these parts (number, URL); `done` lists the parts the store already holds
    /// (number, ETag, size), filled only when the grant begins or resumes the upload.
    Multipart {
        upload_id: String,
        part_size: u64,
        part_count: u32,
        parts: Vec<(u32, String)>,
        done: Vec<(u32, String, u64)>,
    },
}

/// An upload an attempt has begun: its declared size, and its upload id when multipart.
#[derive(Debug, Clone)]
struct Pending {
    size: u64,
    upload_id: Option<String>,
}

/// An attempt's checked objects, awaiting the transaction that makes them results.
pub struct ObjectPublication {
    pub(super) store: std::sync::Arc<ObjectArtifacts>,
    pub(super) key: AttemptKey,
}

/// The S3-compatible artifact store.
pub struct ObjectArtifacts {
    client: S3Client,
    max_output_bytes: u64,
    /// Uploads begun since this process started; after a restart they are found again in
    /// the store (ListMultipartUploads).
    pending: Mutex<HashMap<(AttemptKey, String), Pending>>,
}

impl ObjectArtifacts {
    pub fn new(client: S3Client, max_output_bytes: u64) -> Self {
        Self {
            client,
            max_output_bytes,
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn client(&self) -> &S3Client {
        &self.client
    }

    /// `s3://bucket/prefix`, for logs.
    pub fn location(&self) -> String {
        self.client.config().location.to_string()
    }

    fn jobs_prefix(&self) -> String {
        self.client.key("jobs/")
    }

    fn job_prefix(&self, job_id: &str) -> String {
        self.client.key(&format!("jobs/{job_id}/"))
    }

    fn attempt_prefix(&self, key: &AttemptKey) -> String {
        self.client.key(&format!(
            "jobs/{}/{}/{}/",
            key.job_id, key.task_id, key.attempt
        ))
    }

    /// The object key of an attempt's output.
    pub fn object_key(&self, key: &AttemptKey, name: &str) -> String {
        format!("{}{name}", self.attempt_prefix(key))
    }

    /// Bytes the attempt's other outputs hold in the store or are declared to hold.
    async fn others_size(&self, key: &AttemptKey, name: &str) -> Result<u64, ArtifactError> {
        let prefix = self.attempt_prefix(key);
        let mut sizes: HashMap<String, u64> = self
            .client
            .list_objects_v2(&prefix)
            .await?
            .into_iter()
            .map(|o| (o.key[prefix.len()..].to_string(), o.size))
            .collect();
        for ((k, n), p) in self.pending.lock().expect("pending poisoned").iter() {
            if k == key {
                let size = sizes.entry(n.clone()).or_default();
                *size = (*size).max(p.size);
            }
        }
        Ok(sizes
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(_, s)| *s)
            .sum())
    }

    /// The multipart upload of `object`: the one this process began, else one in progress in
    /// the store (after a restart), else a new one.
    async fn upload_id(
        &self,
        key: &AttemptKey,
        name: &str,
        size: u64,
        object: &str,
    ) -> Result<String, ArtifactError> {
        let slot = (key.clone(), name.to_string());
        if let Some(Pending {
            upload_id: Some(id),
            size: known,
        }) = self.pending.lock().expect("pending poisoned").get(&slot)
        {
            if *known == size {
                return Ok(id.clone());
            }
        }
        let found = self
            .client
            .list_multipart_uploads(object)
            .await?
            .into_iter()
            .filter(|(k, _)| k == object)
            .map(|(_, id)| id)
            .collect::<Vec<_>>();
        // Resumes the first one whose parts fit this size; a declared size that changed
        // (a different file under the same name) starts over.
        let part = part_size(size);
        let mut chosen = None;
        for id in found {
            let fits = match self.client.list_parts(object, &id).await {
                Ok(parts) => parts
                    .iter()
                    .all(|(n, _, s)| u64::from(*n) <= size.div_ceil(part) && *s <= part),
                Err(e) if e.code() == Some("NoSuchUpload") => continue,
                Err(e) => return Err(e.into()),
            };
            if chosen.is_none() && fits {
                chosen = Some(id);
            } else {
                let _ = self.client.abort_multipart_upload(object, &id).await;
            }
        }
        let id = match chosen {
            Some(id) => id,
            None => self.client.create_multipart_upload(object).await?,
        };
        self.pending.lock().expect("pending poisoned").insert(
            slot,
            Pending {
                size,
                upload_id: Some(id.clone()),
            },
        );
        Ok(id)
    }

    /// Grants URLs to upload one output of an attempt the caller has fenced: with
    /// `first_part == 0` the start (or resumption) of the upload, else the batch of parts from
    /// `first_part`.
    pub async fn grant_upload(
        &self,
        key: &AttemptKey,
        name: &str,
        size: u64,
        first_part: u32,
    ) -> Result<UploadGrant, ArtifactError> {
        check_key(key)?;
        check_name(name)?;
        let too_large = || ArtifactError::TooLarge {
            attempt: key.clone(),
            limit: self.max_output_bytes,
        };
        if size > self.max_output_bytes {
            return Err(too_large());
        }
        if first_part == 0
            && self.others_size(key, name).await?.saturating_add(size) > self.max_output_bytes
        {
            return Err(too_large());
        }
        let object = self.object_key(key, name);
        if size <= PART_SIZE {
            self.pending.lock().expect("pending poisoned").insert(
                (key.clone(), name.to_string()),
                Pending {
                    size,
                    upload_id: None,
                },
            );
            return Ok(UploadGrant::Single {
                url: self.client.presign_put(&object, URL_LIFETIME)?,
            });
        }
        let part_size = part_size(size);
        let part_count = u32::try_from(size.div_ceil(part_size)).map_err(|_| too_large())?;
        let upload_id = self.upload_id(key, name, size, &object).await?;
        let done = if first_part == 0 {
            self.client.list_parts(&object, &upload_id).await?
        } else {
            Vec::new()
        };
        let held: BTreeSet<u32> = done.iter().map(|p| p.0).collect();
        let mut parts = Vec::new();
        let mut number = first_part.max(1);
        while number <= part_count && parts.len() < PART_BATCH as usize {
            if !held.contains(&number) {
                let url =
                    self.client
                        .presign_upload_part(&object, &upload_id, number, URL_LIFETIME)?;
                parts.push((number, url));
            }
            number += 1;
        }
        Ok(UploadGrant::Multipart {
            upload_id,
            part_size,
            part_count,
            parts,
            done,
        })
    }

    /// Assembles a multipart upload from its parts; the object's size. Completing an upload
    /// already completed (a retry after a lost answer) answers the object's size.
    pub async fn complete_upload(
        &self,
        key: &AttemptKey,
        name: &str,
        upload_id: &str,
        parts: &[(u32, String)],
    ) -> Result<u64, ArtifactError> {
        check_key(key)?;
        check_name(name)?;
        let object = self.object_key(key, name);
        match self
            .client
            .complete_multipart_upload(&object, upload_id, parts)
            .await
        {
            Ok(_) => {}
            Err(e) if e.code() == Some("NoSuchUpload") => {
                if self.client.head_object(&object).await?.is_none() {
                    return Err(e.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
        let meta =
            self.client
                .head_object(&object)
                .await?
                .ok_or_else(|| ArtifactError::NotStaged {
                    name: name.to_string(),
                })?;
        if let Some(p) = self
            .pending
            .lock()
            .expect("pending poisoned")
            .get_mut(&(key.clone(), name.to_string()))
        {
            p.upload_id = None;
        }
        Ok(meta.size)
    }

    /// Checks every declared output against the store: present, whole, and for small ones the
    /// same SHA-256 (read back); larger ones keep the agent's SHA-256, checked by readers.
    pub async fn verify(
        &self,
        key: &AttemptKey,
        outputs: &[OutputFile],
    ) -> Result<(), ArtifactError> {
        check_declared(key, outputs)?;
        for output in outputs {
            let object = self.object_key(key, &output.name);
            let meta = self.client.head_object(&object).await?.ok_or_else(|| {
                ArtifactError::NotStaged {
                    name: output.name.clone(),
                }
            })?;
            check_size(output, meta.size)?;
            if meta.size <= VERIFY_MAX {
                let data = self.client.get_object(&object).await?;
                // Up to 16 MiB: hashed off the async thread, which serves every agent.
                let actual = super::blocking(move || Ok(hex(&Sha256::digest(&data)))).await?;
                if !actual.eq_ignore_ascii_case(&output.sha256) {
                    return Err(ArtifactError::Mismatch {
                        name: output.name.clone(),
                        actual,
                        expected: output.sha256.clone(),
                    });
                }
            }
        }
        Ok(())
    }

    /// Forgets the attempt's uploads; the caller's transaction decides whether its objects
    /// are results.
    pub fn published(&self, key: &AttemptKey) {
        self.pending
            .lock()
            .expect("pending poisoned")
            .retain(|(k, _), _| k != key);
    }

    /// Removes an attempt's objects and abandons its multipart uploads (it will not publish).
    pub async fn discard(&self, key: &AttemptKey) -> Result<(), ArtifactError> {
        check_key(key)?;
        let had_any = {
            let mut pending = self.pending.lock().expect("pending poisoned");
            let before = pending.len();
            pending.retain(|(k, _), _| k != key);
            pending.len() != before
        };
        if !had_any {
            // Nothing begun since this process started (the common case: a task without
            // outputs); what an earlier process left goes with the retention loop.
            return Ok(());
        }
        self.remove_prefix(&self.attempt_prefix(key)).await
    }

    /// Removes an attempt's objects and uploads whatever this process knows of it (retention).
    pub async fn discard_all(&self, key: &AttemptKey) -> Result<(), ArtifactError> {
        check_key(key)?;
        self.pending
            .lock()
            .expect("pending poisoned")
            .retain(|(k, _), _| k != key);
        self.remove_prefix(&self.attempt_prefix(key)).await
    }

    async fn remove_prefix(&self, prefix: &str) -> Result<(), ArtifactError> {
        for (object, id) in self.client.list_multipart_uploads(prefix).await? {
            match self.client.abort_multipart_upload(&object, &id).await {
                Err(e) if e.code() != Some("NoSuchUpload") => return Err(e.into()),
                _ => {}
            }
        }
        let keys: Vec<String> = self
            .client
            .list_objects_v2(prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        self.client.delete_objects(&keys).await?;
        Ok(())
    }

    /// Removes everything a job has in the store (retention).
    pub async fn remove_job(&self, job_id: &str) -> Result<(), ArtifactError> {
        check_id("job id", job_id)?;
        self.pending
            .lock()
            .expect("pending poisoned")
            .retain(|(k, _), _| k.job_id != job_id);
        self.remove_prefix(&self.job_prefix(job_id)).await
    }

    /// Every attempt that has objects or multipart uploads in the store.
    pub async fn attempts(&self) -> Result<Vec<AttemptKey>, ArtifactError> {
        let prefix = self.jobs_prefix();
        let mut keys: Vec<String> = self
            .client
            .list_objects_v2(&prefix)
            .await?
            .into_iter()
            .map(|o| o.key)
            .collect();
        keys.extend(
            self.client
                .list_multipart_uploads(&prefix)
                .await?
                .into_iter()
                .map(|(k, _)| k),
        );
        let mut attempts = BTreeSet::new();
        for key in keys {
            let mut parts = key[prefix.len()..].splitn(4, '/');
            let (Some(job), Some(task), Some(attempt), Some(_)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if let Ok(attempt) = attempt.parse::<u32>() {
                attempts.insert((job.to_string(), task.to_string(), attempt));
            }
        }
        Ok(attempts
            .into_iter()
            .map(|(job_id, task_id, attempt)| AttemptKey {
                job_id,
                task_id,
                attempt,
            })
            .collect())
    }

    /// A presigned GET URL of a published output.
    pub fn download_url(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
        name: &str,
    ) -> Result<String, ArtifactError> {
        check_id("job id", job_id)?;
        check_id("task id", task_id)?;
        check_name(name)?;
        let key = AttemptKey {
            job_id: job_id.to_string(),
            task_id: task_id.to_string(),
            attempt,
        };
        Ok(self
            .client
            .presign_get(&self.object_key(&key, name), URL_LIFETIME)?)
    }
}

impl From<S3Error> for ArtifactError {
    fn from(e: S3Error) -> Self {
        ArtifactError::Object(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_sizes_fit_ten_thousand_parts() {
        assert_eq!(part_size(0), PART_SIZE);
        assert_eq!(part_size(1 << 30), PART_SIZE);
        let huge = 500u64 << 30;
        let p = part_size(huge);
        assert!(huge.div_ceil(p) <= u64::from(MAX_PART_NUMBER), "{p}");
        assert_eq!(p % (1 << 20), 0);
    }
}

#[cfg(test)]
mod moto_tests;
