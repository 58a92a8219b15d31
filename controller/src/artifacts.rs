//! The artifact store of the data directory: attempts' outputs are staged while they upload
//! (`staging/<job>/<task>/<attempt>/<name>`), verified, then published as a whole by one rename
//! of the attempt's directory (`published/<job>/<task>/<attempt>/<name>`). Readers find files
//! only through the store's `outputs` rows, written in the transaction that records the
//! success, so they see all of an attempt's outputs or none. No SQL and no gRPC here.

mod handles;
pub mod retention;

pub use handles::{Pipeline, Publication, Reader, Upload};

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

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
}

#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("invalid output name {name:?}: {problem}")]
    InvalidName { name: String, problem: &'static str },
    #[error("invalid {what} {value:?}: not usable as a path component")]
    InvalidId { what: &'static str, value: String },
    #[error("chunk at offset {offset} of {name}: crc32c does not match its data, send it again")]
    Crc { name: String, offset: u64 },
    #[error("{name}: expected offset {expected}, got {got}")]
    Offset {
        name: String,
        expected: u64,
        got: u64,
    },
    #[error("{name}: chunk at offset {offset} runs past the declared size of {size} bytes")]
    PastSize {
        name: String,
        offset: u64,
        size: u64,
    },
    #[error("outputs of attempt {attempt} exceed the limit of {limit} bytes (max_output_bytes)")]
    TooLarge { attempt: AttemptKey, limit: u64 },
    #[error("{name}: the {size} bytes received have sha256 {actual}, not {expected}: upload it again from offset 0")]
    Corrupt {
        name: String,
        size: u64,
        actual: String,
        expected: String,
    },
    #[error("upload of {name} is closed: its attempt has completed")]
    Closed { name: String },
    #[error("output {name} is declared twice")]
    Duplicate { name: String },
    #[error("output {name} was not uploaded")]
    NotStaged { name: String },
    #[error("output {name}: received {received} of {size} bytes")]
    Incomplete {
        name: String,
        received: u64,
        size: u64,
    },
    #[error("output {name}: received bytes have sha256 {actual}, the completion says {expected}")]
    Mismatch {
        name: String,
        actual: String,
        expected: String,
    },
    #[error("{0} not found")]
    NotFound(String),
    #[error("offset {offset} is past the end of {name} ({size} bytes)")]
    PastEnd {
        name: String,
        offset: u64,
        size: u64,
    },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: impl std::fmt::Display, path: &Path) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let what = format!("{what} {}", path.display());
    move |source| ArtifactError::Io { what, source }
}

/// Checks an output name: a relative, '/'-separated path that stays inside its directory.
pub fn check_name(name: &str) -> Result<(), ArtifactError> {
    let problem = if name.is_empty() {
        Some("empty")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else if name.contains('\\') {
        Some("contains a backslash (use '/')")
    } else if name.starts_with('/') {
        Some("absolute (must be relative to the working directory)")
    } else if name.split('/').any(|c| c == "..") {
        Some("contains '..'")
    } else if name.split('/').any(|c| c.is_empty() || c == ".") {
        Some("has an empty or '.' component")
    } else if name.len() > 4096 {
        Some("longer than 4096 bytes")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ArtifactError::InvalidName {
            name: name.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Checks that a job or task id is one safe path component.
fn check_id(what: &'static str, value: &str) -> Result<(), ArtifactError> {
    if value.is_empty()
        || value == "."
        || value == ".."
        || value.contains(['/', '\\', '\0'])
        || value.len() > 255
    {
        return Err(ArtifactError::InvalidId {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

fn check_key(key: &AttemptKey) -> Result<(), ArtifactError> {
    check_id("job id", &key.job_id)?;
    check_id("task id", &key.task_id)
}

fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
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

/// One staged file being received: its open file, length and running SHA-256.
struct Staged {
    file: File,
    len: u64,
    hasher: Sha256,
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
    /// Staged files being received, keyed by attempt and name: their running SHA-256 spares
    /// publication a second pass over the data.
    uploads: Mutex<HashMap<(AttemptKey, String), Entry>>,
}

/// Runs blocking file work off the async workers.
async fn blocking<R: Send + 'static>(
    f: impl FnOnce() -> Result<R, ArtifactError> + Send + 'static,
) -> Result<R, ArtifactError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ArtifactError::Io {
            what: "file task".into(),
            source: std::io::Error::other(e.to_string()),
        })?
}

/// Every regular file under `dir`, as '/'-separated names relative to it, with its length.
fn walk(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let name = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push((entry.path(), name));
            } else if meta.is_file() {
                files.push((name, meta.len()));
            }
        }
    }
    Ok(files)
}

/// Names of the subdirectories of `dir` (none when it does not exist).
fn subdirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
    }
    Ok(names)
}

fn remove_dir(path: &Path) -> Result<(), ArtifactError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("removing", path)(e)),
        _ => Ok(()),
    }
}

fn sync_dir(path: &Path) -> Result<(), ArtifactError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", path))
}

/// Opens (creating) a staged file and hashes what it already holds: the state of an upload
/// that resumes after a controller restart. A file longer than its declared size is stale and
/// starts over.
fn restore(path: &Path, size: u64, sha256: String) -> Result<Staged, ArtifactError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io("opening", path))?;
    let mut len = file.metadata().map_err(io("reading", path))?.len();
    let mut hasher = Sha256::new();
    if len > size {
        file.set_len(0).map_err(io("truncating", path))?;
        len = 0;
    } else if len > 0 {
        let started = Instant::now();
        let mut buf = vec![0; READ_CHUNK];
        let mut left = len;
        while left > 0 {
            let n = (left as usize).min(buf.len());
            file.read_exact(&mut buf[..n])
                .map_err(io("reading", path))?;
            hasher.update(&buf[..n]);
            left -= n as u64;
        }
        tracing::debug!(bytes = len, elapsed = ?started.elapsed(), "recomputed the sha256 of a staged prefix");
    }
    Ok(Staged {
        file,
        len,
        hasher,
        size,
        sha256,
    })
}

impl Artifacts {
    /// Opens (creating) the store under `root`.
    pub fn open(root: &Path, max_output_bytes: u64) -> Result<Self, ArtifactError> {
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
        })
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
        let received = {
            let (entry, header) = (entry.clone(), header.clone());
            blocking(move || {
                let mut slot = entry.lock().expect("upload poisoned");
                match &mut *slot {
                    Slot::Closed => {
                        return Err(ArtifactError::Closed {
                            name: header.name.clone(),
                        })
                    }
                    Slot::Unloaded => {
                        *slot = Slot::Open(restore(&path, header.size, header.sha256.clone())?);
                    }
                    Slot::Open(staged) => {
                        if staged.len > header.size {
                            // A different file under the same name: start over.
                            staged.file.set_len(0).map_err(io("truncating", &path))?;
                            staged.len = 0;
                            staged.hasher = Sha256::new();
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

    /// Checks every declared output against what was received: staged, whole, same SHA-256.
    pub async fn verify(
        self: &Arc<Self>,
        key: &AttemptKey,
        outputs: &[OutputFile],
    ) -> Result<(), ArtifactError> {
        check_key(key)?;
        let mut seen = std::collections::HashSet::new();
        for output in outputs {
            check_name(&output.name)?;
            if !seen.insert(output.name.as_str()) {
                return Err(ArtifactError::Duplicate {
                    name: output.name.clone(),
                });
            }
        }
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
                if staged.len != output.size {
                    return Err(ArtifactError::Incomplete {
                        name: output.name,
                        received: staged.len,
                        size: output.size,
                    });
                }
                let actual = hex(&staged.hasher.clone().finalize());
                if !actual.eq_ignore_ascii_case(&output.sha256) {
                    return Err(ArtifactError::Mismatch {
                        name: output.name,
                        actual,
                        expected: output.sha256,
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
mod tests {
    use super::*;

    fn key(attempt: u32) -> AttemptKey {
        AttemptKey {
            job_id: "j1".into(),
            task_id: "extract".into(),
            attempt,
        }
    }

    fn sha(data: &[u8]) -> String {
        hex(&Sha256::digest(data))
    }

    fn header(name: &str, data: &[u8]) -> UploadHeader {
        UploadHeader {
            name: name.into(),
            size: data.len() as u64,
            sha256: sha(data),
        }
    }

    fn open(dir: &Path, limit: u64) -> Arc<Artifacts> {
        Arc::new(Artifacts::open(&dir.join("artifacts"), limit).unwrap())
    }

    #[test]
    fn names_must_stay_inside_the_working_directory() {
        for ok in [
            "out.csv",
            "sub/dir/out.csv",
            "a..b",
            ".hidden",
            "with space",
        ] {
            check_name(ok).unwrap();
        }
        for (bad, problem) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("../up", "'..'"),
            ("a/../../b", "'..'"),
            ("a\\b", "backslash"),
            ("a\0b", "NUL"),
            ("a//b", "empty or '.'"),
            ("./a", "empty or '.'"),
            ("a/", "empty or '.'"),
        ] {
            let err = check_name(bad).unwrap_err().to_string();
            assert!(err.contains(problem), "{bad:?}: {err}");
            assert!(err.contains(&format!("{bad:?}")), "names the name: {err}");
        }
    }

    #[tokio::test]
    async fn refuses_a_chunk_whose_crc_does_not_match_and_takes_it_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 20);
        let data = b"hello, ferry".to_vec();
        let mut up = store.begin(key(1), header("out", &data)).await.unwrap();
        let err = up
            .write(0, data.clone(), crc32c::crc32c(&data) ^ 1)
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::Crc { offset: 0, .. }), "{err}");
        assert_eq!(store.received(&key(1), "out").await.unwrap(), 0);
        up.write(0, data.clone(), crc32c::crc32c(&data))
            .await
            .unwrap();
        assert_eq!(up.finish().await.unwrap(), data.len() as u64);
    }

    #[tokio::test]
    async fn chunks_must_start_at_the_staged_length() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 20);
        let data = vec![7u8; 100];
        let mut up = store.begin(key(1), header("out", &data)).await.unwrap();
        up.write(0, data[..40].to_vec(), crc32c::crc32c(&data[..40]))
            .await
            .unwrap();
        for wrong in [0, 39, 41, 80] {
            let err = up
                .write(wrong, data[40..60].to_vec(), crc32c::crc32c(&data[40..60]))
                .await
                .unwrap_err();
            assert!(err.to_string().contains("expected offset 40"), "{err}");
        }
        let err = up
            .write(40, vec![1; 61], crc32c::crc32c(&[1; 61]))
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::PastSize { .. }), "{err}");
        assert_eq!(up.finish().await.unwrap(), 40);
        assert_eq!(store.received(&key(1), "out").await.unwrap(), 40);
    }

    #[tokio::test]
    async fn an_upload_resumes_after_a_restart_with_the_recomputed_sha() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let cut = 1_234_567;
        {
            let store = open(dir.path(), 1 << 30);
            let mut up = store
                .begin(key(2), header("sub/big.bin", &data))
                .await
                .unwrap();
            up.write(0, data[..cut].to_vec(), crc32c::crc32c(&data[..cut]))
                .await
                .unwrap();
            // The controller dies here: no finish, the in-memory state is gone.
        }
        let store = open(dir.path(), 1 << 30);
        assert_eq!(
            store.received(&key(2), "sub/big.bin").await.unwrap(),
            cut as u64
        );
        let mut up = store
            .begin(key(2), header("sub/big.bin", &data))
            .await
            .unwrap();
        assert_eq!(up.resumed_at(), cut as u64);
        up.write(
            cut as u64,
            data[cut..].to_vec(),
            crc32c::crc32c(&data[cut..]),
        )
        .await
        .unwrap();
        assert_eq!(up.finish().await.unwrap(), data.len() as u64);
        let declared = OutputFile {
            name: "sub/big.bin".into(),
            size: data.len() as u64,
            sha256: sha(&data),
        };
        store
            .verify(&key(2), std::slice::from_ref(&declared))
            .await
            .unwrap();
        // And a restart between the upload and the completion recomputes it once more.
        let store = open(dir.path(), 1 << 30);
        store.verify(&key(2), &[declared]).await.unwrap();
    }

    #[tokio::test]
    async fn a_whole_file_with_the_wrong_sha_is_refused_and_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 20);
        let data = b"abc".to_vec();
        let mut h = header("out", &data);
        h.sha256 = sha(b"abd");
        let mut up = store.begin(key(1), h).await.unwrap();
        up.write(0, data.clone(), crc32c::crc32c(&data))
            .await
            .unwrap();
        let err = up.finish().await.unwrap_err();
        assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
        assert_eq!(store.received(&key(1), "out").await.unwrap(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_pipelined_stream_checks_the_sha_its_last_chunk_declares() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 30);
        let data: Vec<u8> = (0..(42 << 20) + 7).map(|i| (i % 251) as u8).collect();
        let unsigned = |d: &[u8]| UploadHeader {
            sha256: String::new(),
            ..header("big", d)
        };
        for (declared, whole) in [(sha(b"other"), false), (sha(&data), true)] {
            let mut up = store.begin(key(1), unsigned(&data)).await.unwrap();
            assert_eq!(up.resumed_at(), 0);
            let pipeline = up.pipeline();
            let mut chunks = data.chunks(1 << 20).enumerate().peekable();
            while let Some((i, chunk)) = chunks.next() {
                let last = chunks.peek().is_none();
                let sha = if last {
                    declared.clone()
                } else {
                    String::new()
                };
                let offset = (i << 20) as u64;
                let crc = crc32c::crc32c(chunk);
                assert!(pipeline.push(offset, chunk.to_vec(), crc, sha).await);
            }
            up.wrote(pipeline.close().await.unwrap());
            if whole {
                assert_eq!(up.finish().await.unwrap(), data.len() as u64);
            } else {
                let err = up.finish().await.unwrap_err();
                assert!(matches!(err, ArtifactError::Corrupt { .. }), "{err}");
                assert_eq!(store.received(&key(1), "big").await.unwrap(), 0);
            }
        }
        let declared = OutputFile {
            name: "big".into(),
            size: data.len() as u64,
            sha256: sha(&data),
        };
        store.verify(&key(1), &[declared]).await.unwrap();
        let staged = std::fs::read(dir.path().join("artifacts/staging/j1/extract/1/big")).unwrap();
        assert!(staged == data, "the staged file holds the data");
    }

    #[tokio::test]
    async fn a_pipeline_stops_at_a_damaged_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 20);
        let data = vec![3u8; 300];
        let mut h = header("out", &data);
        h.sha256 = String::new();
        let up = store.begin(key(1), h).await.unwrap();
        let pipeline = up.pipeline();
        let crc = crc32c::crc32c(&data[..100]);
        pipeline
            .push(0, data[..100].to_vec(), crc, String::new())
            .await;
        pipeline
            .push(100, data[100..200].to_vec(), crc ^ 1, String::new())
            .await;
        // Queued or refused: either way nothing past the damaged chunk is written.
        pipeline
            .push(200, data[200..].to_vec(), crc, String::new())
            .await;
        let err = pipeline.close().await.unwrap_err();
        assert!(
            matches!(err, ArtifactError::Crc { offset: 100, .. }),
            "{err}"
        );
        assert_eq!(up.finish().await.unwrap(), 100);
    }

    #[tokio::test]
    async fn outputs_of_an_attempt_share_one_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 10);
        let err = store
            .begin(key(1), header("big", &[0; 11]))
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("limit of 10 bytes"), "{err}");
        let data = [1u8; 6];
        let mut up = store.begin(key(1), header("a", &data)).await.unwrap();
        up.write(0, data.to_vec(), crc32c::crc32c(&data))
            .await
            .unwrap();
        up.finish().await.unwrap();
        let err = store.begin(key(1), header("b", &data)).await.err().unwrap();
        assert!(matches!(err, ArtifactError::TooLarge { .. }), "{err}");
        // Another attempt has its own budget.
        store.begin(key(2), header("b", &data)).await.unwrap();
    }

    #[tokio::test]
    async fn verification_names_the_file_that_does_not_check_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 20);
        let data = b"0123456789".to_vec();
        let mut up = store.begin(key(1), header("out", &data)).await.unwrap();
        up.write(0, data[..4].to_vec(), crc32c::crc32c(&data[..4]))
            .await
            .unwrap();
        up.finish().await.unwrap();
        let out = |name: &str, body: &[u8]| OutputFile {
            name: name.into(),
            size: body.len() as u64,
            sha256: sha(body),
        };
        let err = store
            .verify(&key(1), &[out("out", &data)])
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "output out: received 4 of 10 bytes");
        let err = store
            .verify(&key(1), &[out("missing", &data)])
            .await
            .unwrap_err();
        assert_eq!(err.to_string(), "output missing was not uploaded");
        let err = store
            .verify(&key(1), &[out("out", b"0124")])
            .await
            .unwrap_err();
        assert!(matches!(err, ArtifactError::Mismatch { .. }), "{err}");
        store.verify(&key(1), &[out("out", b"0123")]).await.unwrap();
    }

    #[tokio::test]
    async fn publication_moves_all_files_and_can_be_taken_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 20);
        for name in ["a", "sub/b", "empty"] {
            let data = if name == "empty" {
                vec![]
            } else {
                name.as_bytes().to_vec()
            };
            let mut up = store.begin(key(1), header(name, &data)).await.unwrap();
            up.write(0, data.clone(), crc32c::crc32c(&data))
                .await
                .unwrap();
            up.finish().await.unwrap();
        }
        let published = |name: &str| store.published_path("j1", "extract", 1, name).unwrap();
        // Refused transaction that may be retried: back to staging, intact.
        store
            .publish(&key(1))
            .await
            .unwrap()
            .restore()
            .await
            .unwrap();
        assert!(!published("a").exists());
        assert_eq!(store.received(&key(1), "sub/b").await.unwrap(), 5);
        // Fenced: nothing stays.
        store
            .publish(&key(1))
            .await
            .unwrap()
            .remove()
            .await
            .unwrap();
        assert!(!published("a").exists());
        assert_eq!(store.received(&key(1), "a").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_reader_streams_from_an_offset_in_bounded_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path(), 1 << 30);
        let data: Vec<u8> = (0..(READ_CHUNK * 2 + 10)).map(|i| i as u8).collect();
        let path = dir.path().join("f");
        std::fs::write(&path, &data).unwrap();
        let mut reader = store
            .reader(path.clone(), "f", 5, data.len() as u64)
            .await
            .unwrap();
        let mut got = Vec::new();
        while let Some(chunk) = reader.next().await {
            let (offset, bytes) = chunk.unwrap();
            assert_eq!(offset as usize, 5 + got.len());
            assert!(bytes.len() <= READ_CHUNK);
            got.extend(bytes);
        }
        assert_eq!(got, data[5..]);
        let err = store
            .reader(path, "f", data.len() as u64 + 1, data.len() as u64)
            .await
            .err()
            .unwrap();
        assert!(matches!(err, ArtifactError::PastEnd { .. }), "{err}");
    }
}
