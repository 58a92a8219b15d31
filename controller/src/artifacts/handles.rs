//! Handles on the artifact store's files: an upload stream being received, a publication
//! awaiting its transaction's verdict, a published file being read.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use sha2::{Digest, Sha256};

use super::{blocking, hex, io, remove_dir, ArtifactError, Entry, Slot, READ_CHUNK};

/// A file being received: one stream of `UploadOutput`.
pub struct Upload {
    pub(super) entry: Entry,
    pub(super) name: String,
    pub(super) resumed_at: u64,
    pub(super) written: u64,
    pub(super) started: Instant,
}

impl Upload {
    /// Where this stream starts in the file.
    pub fn resumed_at(&self) -> u64 {
        self.resumed_at
    }

    /// Appends one chunk at `offset`, which must be the staged length, after checking its
    /// CRC32C. Nothing is fsync'd here.
    pub async fn write(
        &mut self,
        offset: u64,
        data: Vec<u8>,
        crc: u32,
    ) -> Result<(), ArtifactError> {
        if data.is_empty() {
            return Ok(());
        }
        let entry = self.entry.clone();
        let name = self.name.clone();
        let n = data.len() as u64;
        blocking(move || {
            let mut slot = entry.lock().expect("upload poisoned");
            let Slot::Open(staged) = &mut *slot else {
                return Err(ArtifactError::Closed { name });
            };
            if offset != staged.len {
                return Err(ArtifactError::Offset {
                    name,
                    expected: staged.len,
                    got: offset,
                });
            }
            if offset.saturating_add(n) > staged.size {
                return Err(ArtifactError::PastSize {
                    name,
                    offset,
                    size: staged.size,
                });
            }
            if crc32c::crc32c(&data) != crc {
                return Err(ArtifactError::Crc { name, offset });
            }
            staged
                .file
                .write_all_at(&data, offset)
                .map_err(|source| ArtifactError::Io {
                    what: format!("writing {name}"),
                    source,
                })?;
            staged.hasher.update(&data);
            staged.len += n;
            Ok(())
        })
        .await?;
        self.written += n;
        Ok(())
    }

    /// Ends the stream: fsyncs the file and answers its length. A file received whole whose
    /// SHA-256 differs from its header's is truncated, to be sent again.
    pub async fn finish(self) -> Result<u64, ArtifactError> {
        let entry = self.entry.clone();
        let name = self.name.clone();
        let received = blocking(move || {
            let mut slot = entry.lock().expect("upload poisoned");
            let Slot::Open(staged) = &mut *slot else {
                return Err(ArtifactError::Closed { name });
            };
            staged
                .file
                .sync_data()
                .map_err(|source| ArtifactError::Io {
                    what: format!("syncing {name}"),
                    source,
                })?;
            if staged.len == staged.size {
                let actual = hex(&staged.hasher.clone().finalize());
                if !actual.eq_ignore_ascii_case(&staged.sha256) {
                    let size = staged.len;
                    staged.file.set_len(0).map_err(|source| ArtifactError::Io {
                        what: format!("truncating {name}"),
                        source,
                    })?;
                    staged.len = 0;
                    staged.hasher = Sha256::new();
                    return Err(ArtifactError::Corrupt {
                        name,
                        size,
                        actual,
                        expected: staged.sha256.clone(),
                    });
                }
            }
            Ok(staged.len)
        })
        .await?;
        let secs = self.started.elapsed().as_secs_f64();
        tracing::debug!(
            name = %self.name,
            from = self.resumed_at,
            bytes = self.written,
            received,
            mb_per_s = format_args!("{:.1}", self.written as f64 / 1e6 / secs.max(1e-9)),
            "upload stream ended"
        );
        Ok(received)
    }
}

/// An attempt's files moved to the published area, awaiting the fate of their transaction.
pub struct Publication {
    pub(super) from: PathBuf,
    pub(super) to: PathBuf,
    pub(super) done: bool,
}

impl Publication {
    /// The transaction committed: the files are published.
    pub fn commit(mut self) {
        self.done = true;
    }

    /// The transaction was refused for good (fenced): the files go.
    pub async fn remove(mut self) -> Result<(), ArtifactError> {
        self.done = true;
        let to = self.to.clone();
        blocking(move || remove_dir(&to)).await
    }

    /// The transaction failed and may be retried: the files go back to staging.
    pub async fn restore(mut self) -> Result<(), ArtifactError> {
        self.done = true;
        let (from, to) = (self.from.clone(), self.to.clone());
        blocking(move || fs::rename(&to, &from).map_err(io("restoring", &to))).await
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        if !self.done {
            // Dropped without a verdict (the request was cancelled mid-transaction): what
            // has no rows is invisible; retention removes it with its job.
            tracing::warn!(dir = %self.to.display(), "publication left undecided");
        }
    }
}

/// Reads a published file in `READ_CHUNK` pieces.
pub struct Reader {
    pub(super) file: Arc<File>,
    pub(super) offset: u64,
    pub(super) end: u64,
}

impl Reader {
    /// The next chunk and its offset, `None` at the end.
    pub async fn next(&mut self) -> Option<Result<(u64, Vec<u8>), ArtifactError>> {
        if self.offset >= self.end {
            return None;
        }
        let n = ((self.end - self.offset) as usize).min(READ_CHUNK);
        let (file, offset) = (self.file.clone(), self.offset);
        let read = blocking(move || {
            let mut buf = vec![0; n];
            file.read_exact_at(&mut buf, offset)
                .map_err(|source| ArtifactError::Io {
                    what: format!("reading at offset {offset}"),
                    source,
                })?;
            Ok(buf)
        })
        .await;
        Some(read.map(|buf| {
            self.offset += buf.len() as u64;
            (offset, buf)
        }))
    }
}
