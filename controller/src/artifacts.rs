//! The artifact store of the data directory: attempts' outputs are staged while they upload
//! (`staging/<job>/<task>/<attempt>/<name>`), verified, then published as a whole by one rename
//! of the attempt's directory (`published/<job>/<task>/<attempt>/<name>`). Readers find files
//! only through the store's `outputs` rows, written in the transaction that records the
//! success, so they see all of an attempt's outputs or none. No SQL and no gRPC here.
//! `object.rs` is the S3-compatible store, used instead when `--artifacts s3://…` is set;
//! `backend.rs` is `ArtifactStore`, the interface both implement for the engine; `retention.rs`
//! a round of retention, `retention_loop.rs` the task that runs the rounds.
//! `space.rs` keeps `disk_reserve` free on the data directory's filesystem: an upload that
//! cannot fit is refused (`NoSpace`) and its partial file removed.
mod backend;
mod cleanup;
mod error;
mod files;
mod handles;
mod names;
pub mod object;
pub mod retention;
pub mod retention_loop;
pub mod shared_dir;
pub mod space;

use files::*;
pub use names::check_name;
use names::*;
use space::{Check, Space};

pub use backend::{ArtifactStore, Publishing};
pub use error::ArtifactError;
pub use handles::{Pipeline, Publication, Reader, Upload};
pub use object::{ObjectArtifacts, UploadGrant};

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::{AttemptKey, OutputFile};

/// Bytes per chunk when the controller streams a file out (inputs, downloads).
pub const READ_CHUNK: usize = 1 << 20;

/// Settings of the data-directory artifact store.
#[derive(Debug, Clone)]
pub struct ArtifactConfig {
    /// `<data_dir>/artifacts`.
    pub root: PathBuf,
    /// Bytes all outputs of one attempt may hold together.
    pub max_output_bytes: u64,
    /// Published artifacts of jobs that ended longer ago than this are removed.
    pub retention: Duration,
    /// Bytes kept free on the data directory's filesystem (`disk_reserve`); `None` is the
    /// smaller of 1 GiB and 5% of the filesystem (see `space::default_reserve`).
    pub disk_reserve: Option<u64>,
}

/// What the first message of an upload declares.
#[derive(Debug, Clone)]
pub struct UploadHeader {
    pub name: String,
    pub size: u64,
    /// Empty when the agent declares it with the stream's last chunk instead (it hashes the
    /// file while sending it), or only in its completion.
    pub sha256: String,
}

/// One staged file being received: its open file and length.
struct Staged {
    file: File,
    /// Where it is staged: removed when the disk fills up under it.
    path: PathBuf,
    len: u64,
    /// Declared by the latest header.
    size: u64,
    /// Declared by the latest header or the last chunk of a stream; empty when neither did.
    sha256: String,
}

enum Slot {
    /// Not in memory (a controller restart): restored from the file when next used.
    Unloaded,
    Open(Staged),
    /// Published or discarded: nothing more may be written.
    Closed,
}

type Entry = Arc<Mutex<Slot>>;

/// The data directory's artifact store.
pub struct Artifacts {
    staging: PathBuf,
    published: PathBuf,
    max_output_bytes: u64,
    /// Staged files being received, keyed by attempt and name.
    uploads: Mutex<HashMap<(AttemptKey, String), Entry>>,
    /// The filesystem's reserve and the bytes promised to streams in flight.
    space: Arc<Space>,
}

/// Runs blocking file work (or hashing) off the async workers.
pub(crate) async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, ArtifactError> + Send + 'static,
) -> Result<R, ArtifactError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArtifactError::Io {
            what: "file task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

impl Artifacts {
    /// Opens (creating) the store under `root`, keeping the default reserve free.
    pub fn open(root: &Path, max_output_bytes: u64) -> Result<Self, ArtifactError> {
        Self::open_with_reserve(root, max_output_bytes, None)
    }

    /// Opens (creating) the store under `root`, keeping `disk_reserve` bytes free on its
    /// filesystem (`None`: the default, see `space::default_reserve`).
    pub fn open_with_reserve(
        root: &Path,
        max_output_bytes: u64,
        disk_reserve: Option<u64>,
    ) -> Result<Self, ArtifactError> {
        let staging = root.join("staging");
        let published = root.join("published");
        for dir in [&staging, &published] {
            fs::create_dir_all(dir).map_err(io("creating", dir))?;
        }
        Ok(Self {
            staging,
            published,
            max_output_bytes,
            uploads: Mutex::new(HashMap::new()),
            space: Arc::new(Space::new(root, disk_reserve)),
        })
    }

    /// The reserve kept free on the data directory's filesystem now, and the bytes free there.
    pub fn disk_figures(&self) -> Result<(u64, u64), ArtifactError> {
        let usage = space::statvfs(&self.staging)
            .map_err(io("reading the free space of", &self.staging))?;
        Ok((self.space.reserve(usage.total), usage.free))
    }

    pub fn max_output_bytes(&self) -> u64 {
        self.max_output_bytes
    }

    fn attempt_dir(root: &Path, key: &AttemptKey) -> PathBuf {
        root.join(&key.job_id)
            .join(&key.task_id)
            .join(key.attempt.to_string())
    }

    fn staging_dir(&self, key: &AttemptKey) -> PathBuf {
        Self::attempt_dir(&self.staging, key)
    }

    /// Where a published output lives (readers find it through its row).
    pub fn published_path(
        &self,
        job_id: &str,
        task_id: &str,
        attempt: u32,
        name: &str,
    ) -> Result<PathBuf, ArtifactError> {
        check_id("job id", job_id)?;
        check_id("task id", task_id)?;
        check_name(name)?;
        Ok(self
            .published
            .join(job_id)
            .join(task_id)
            .join(attempt.to_string())
            .join(name))
    }

    fn entry(&self, key: &AttemptKey, name: &str) -> Entry {
        let mut uploads = self.uploads.lock().expect("uploads poisoned");
        uploads
            .entry((key.clone(), name.to_string()))
            .or_insert_with(|| Arc::new(Mutex::new(Slot::Unloaded)))
            .clone()
    }

    /// Closes and forgets every upload state of an attempt.
    /// Closes and forgets the attempt's upload states; false when it had none.
    fn close_attempt(&self, key: &AttemptKey) -> bool {
        let closed: Vec<Entry> = {
            let mut uploads = self.uploads.lock().expect("uploads poisoned");
            let names: Vec<_> = uploads.keys().filter(|(k, _)| k == key).cloned().collect();
            names.iter().filter_map(|n| uploads.remove(n)).collect()
        };
        let had_any = !closed.is_empty();
        for entry in closed {
            // Waits for a chunk being written; later writes through a held handle fail.
            *entry.lock().expect("upload poisoned") = Slot::Closed;
        }
        had_any
    }

    /// Closes and forgets the upload states of every attempt of a job.
    fn close_job(&self, job_id: &str) {
        let keys: Vec<AttemptKey> = {
            let uploads = self.uploads.lock().expect("uploads poisoned");
            uploads
                .keys()
                .filter(|(k, _)| k.job_id == job_id)
                .map(|(k, _)| k.clone())
                .collect()
        };
        for key in keys {
            self.close_attempt(&key);
        }
    }

    /// Bytes the attempt's other staged files hold or are declared to hold.
    fn others_size(&self, key: &AttemptKey, name: &str) -> Result<u64, ArtifactError> {
        let dir = self.staging_dir(key);
        let on_disk = walk(&dir).map_err(io("listing", &dir))?;
        let declared: HashMap<String, u64> = {
            let uploads = self.uploads.lock().expect("uploads poisoned");
            uploads
                .iter()
                .filter(|((k, n), _)| k == key && n != name)
                .filter_map(|((_, n), entry)| match &*entry.try_lock().ok()? {
                    Slot::Open(s) => Some((n.clone(), s.size)),
                    _ => None,
                })
                .collect()
        };
        Ok(on_disk
            .iter()
            .filter(|(n, _)| n != name)
            .map(|(n, len)| (*len).max(declared.get(n).copied().unwrap_or(0)))
            .sum())
    }

    /// Starts (or resumes) receiving one output of an attempt the caller has fenced.
    pub async fn begin(
        self: &Arc<Self>,
        key: AttemptKey,
        header: UploadHeader,
    ) -> Result<Upload, ArtifactError> {
        check_key(&key)?;
        check_name(&header.name)?;
        let too_large = || ArtifactError::TooLarge {
            attempt: key.clone(),
            limit: self.max_output_bytes,
        };
        if header.size > self.max_output_bytes {
            return Err(too_large());
        }
        let others = {
            let (this, key, name) = (self.clone(), key.clone(), header.name.clone());
            blocking(move || this.others_size(&key, &name)).await?
        };
        if others.saturating_add(header.size) > self.max_output_bytes {
            return Err(too_large());
        }
        let entry = self.entry(&key, &header.name);
        let path = self.staging_dir(&key).join(&header.name);
        let reservation = Arc::new(self.space.reservation(&header.name));
        let received = {
            let (entry, header, reservation) = (entry.clone(), header.clone(), reservation.clone());
            blocking(move || {
                let mut slot = entry.lock().expect("upload poisoned");
                // What the stream may still write, before anything is created for it.
                let held = match &*slot {
                    Slot::Closed => {
                        return Err(ArtifactError::Closed {
                            name: header.name.clone(),
                        })
                    }
                    Slot::Open(staged) => staged.len,
                    Slot::Unloaded => staged_len(&path)?,
                };
                let need = if held > header.size {
                    header.size
                } else {
                    header.size - held
                };
                reservation.claim(need, header.size, Check::Begin)?;
                match &mut *slot {
                    Slot::Closed => {
                        return Err(ArtifactError::Closed {
                            name: header.name.clone(),
                        })
                    }
                    Slot::Unloaded => {
                        let staged = restore(&path, header.size, header.sha256.clone()).map_err(
                            |e| match e {
                                ArtifactError::Io { ref source, .. }
                                    if space::is_no_space(source) =>
                                {
                                    reservation.no_space(header.size)
                                }
                                e => e,
                            },
                        )?;
                        *slot = Slot::Open(staged);
                    }
                    Slot::Open(staged) => {
                        if staged.len > header.size {
                            // A different file under the same name: start over.
                            staged.file.set_len(0).map_err(io("truncating", &path))?;
                            staged.len = 0;
                        }
                        staged.size = header.size;
                        staged.sha256 = header.sha256.clone();
                    }
                }
                let Slot::Open(staged) = &*slot else {
                    unreachable!()
                };
                Ok(staged.len)
            })
            .await?
        };
        Ok(Upload {
            entry,
            reservation,
            name: header.name,
            resumed_at: received,
            written: 0,
            started: Instant::now(),
        })
    }

    /// Bytes of an output the store holds, from the start (0 when none).
    pub async fn received(&self, key: &AttemptKey, name: &str) -> Result<u64, ArtifactError> {
        check_key(key)?;
        check_name(name)?;
        let entry = self
            .uploads
            .lock()
            .expect("uploads poisoned")
            .get(&(key.clone(), name.to_string()))
            .cloned();
        if let Some(entry) = entry {
            if let Slot::Open(staged) = &*entry.lock().expect("upload poisoned") {
                return Ok(staged.len);
            }
        }
        let path = self.staging_dir(key).join(name);
        match tokio::fs::metadata(&path).await {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
            Err(e) => Err(io("reading", &path)(e)),
        }
    }

    /// Checks every declared output against what was received: staged, whole, and with the
    /// SHA-256 its upload declared. The controller does not hash the bytes again: each chunk's
    /// CRC32C was checked as it arrived, and every reader verifies the agent's SHA-256 (it was
    /// computed at the source, over the very bytes sent), as with an object store.
    pub async fn verify(
        self: &Arc<Self>,
        key: &AttemptKey,
        outputs: &[OutputFile],
    ) -> Result<(), ArtifactError> {
        check_declared(key, outputs)?;
        for output in outputs {
            let path = self.staging_dir(key).join(&output.name);
            let entry = self.entry(key, &output.name);
            let output = output.clone();
            blocking(move || {
                let mut slot = entry.lock().expect("upload poisoned");
                if matches!(*slot, Slot::Unloaded) {
                    if !path.is_file() {
                        return Err(ArtifactError::NotStaged { name: output.name });
                    }
                    // Never truncates here: a wrong declared size only fails the check.
                    let mut staged = restore(&path, u64::MAX, output.sha256.clone())?;
                    staged.size = output.size.max(staged.len);
                    *slot = Slot::Open(staged);
                }
                let Slot::Open(staged) = &*slot else {
                    return Err(ArtifactError::NotStaged { name: output.name });
                };
                check_size(&output, staged.len)?;
                if !staged.sha256.is_empty() && !staged.sha256.eq_ignore_ascii_case(&output.sha256)
                {
                    return Err(ArtifactError::Disagrees {
                        name: output.name,
                        uploaded: staged.sha256.clone(),
                        completed: output.sha256,
                    });
                }
                Ok(())
            })
            .await?;
        }
        Ok(())
    }

    /// Moves an attempt's staged files to the published area in one rename. They stay
    /// invisible until the store commits their rows; the caller then ends the `Publication`.
    pub async fn publish(self: &Arc<Self>, key: &AttemptKey) -> Result<Publication, ArtifactError> {
        check_key(key)?;
        self.close_attempt(key);
        let from = self.staging_dir(key);
        let to = Self::attempt_dir(&self.published, key);
        let (src, dst) = (from.clone(), to.clone());
        blocking(move || {
            // Make the staged files' directory entries durable before they move.
            let mut dirs = vec![src.clone()];
            while let Some(dir) = dirs.pop() {
                for sub in subdirs(&dir).map_err(io("listing", &dir))? {
                    dirs.push(dir.join(sub));
                }
                sync_dir(&dir)?;
            }
            let parent = dst.parent().expect("attempt dir has a parent");
            fs::create_dir_all(parent).map_err(io("creating", parent))?;
            // Leftover of a crash between a rename and its commit: it has no rows.
            remove_dir(&dst)?;
            fs::rename(&src, &dst).map_err(io("publishing", &src))?;
            sync_dir(parent)?;
            sync_dir(src.parent().expect("attempt dir has a parent"))
        })
        .await?;
        Ok(Publication {
            from,
            to,
            done: false,
        })
    }

    /// Opens a published file for reading from `offset`; `size` is its recorded length.
    pub async fn reader(
        &self,
        path: PathBuf,
        name: &str,
        offset: u64,
        size: u64,
    ) -> Result<Reader, ArtifactError> {
        if offset > size {
            return Err(ArtifactError::PastEnd {
                name: name.to_string(),
                offset,
                size,
            });
        }
        let shown = name.to_string();
        let file = blocking(move || match File::open(&path) {
            Ok(file) => Ok(file),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(ArtifactError::NotFound(format!(
                "file of output {shown} (removed by retention?)"
            ))),
            Err(e) => Err(io("opening", &path)(e)),
        })
        .await?;
        Ok(Reader {
            file: Arc::new(file),
            offset,
            end: size,
        })
    }
}

#[cfg(test)]
mod disk_tests;
#[cfg(test)]
mod tests;
