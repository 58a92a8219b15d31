//! Handles on the artifact store's files: an upload stream being received, a publication
//! awaiting its transaction's verdict, a published file being read.

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::files::drop_partial;
use super::space::{is_no_space, Check, Reservation};
use super::{blocking, io, remove_dir, ArtifactError, Entry, Slot, READ_CHUNK};

/// A file being received: one stream of `UploadOutput`.
pub struct Upload {
    pub(super) entry: Entry,
    /// This stream's share of the data directory's free space.
    pub(super) reservation: Arc<Reservation>,
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
        data: impl Into<Bytes>,
        crc: u32,
    ) -> Result<(), ArtifactError> {
        let data = data.into();
        if data.is_empty() {
            return Ok(());
        }
        let (entry, reservation) = (self.entry.clone(), self.reservation.clone());
        let name = self.name.clone();
        let n = data.len() as u64;
        blocking(move || write_chunk(&entry, &reservation, &name, offset, &data, crc, None))
            .await?;
        self.written += n;
        Ok(())
    }

    /// A writer for this stream's chunks on a thread of its own, fed through a bounded queue,
    /// so that receiving the next chunks overlaps checking and writing this one.
    /// Close it (which waits for it) before `finish`.
    pub fn pipeline(&self) -> Pipeline {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Chunk>(PIPELINE_DEPTH);
        let (entry, name, from) = (self.entry.clone(), self.name.clone(), self.resumed_at);
        let reservation = self.reservation.clone();
        let task = tokio::task::spawn_blocking(move || {
            let mut behind = WriteBehind::new(from);
            let mut written = 0;
            while let Some(chunk) = rx.blocking_recv() {
                if !chunk.data.is_empty() {
                    write_chunk(
                        &entry,
                        &reservation,
                        &name,
                        chunk.offset,
                        &chunk.data,
                        chunk.crc,
                        Some(&mut behind),
                    )?;
                    written += chunk.data.len() as u64;
                }
                if !chunk.sha256.is_empty() {
                    declare_sha256(&entry, &name, chunk.sha256)?;
                }
            }
            Ok(written)
        });
        Pipeline { tx, task }
    }

    /// Adds what a closed [`Pipeline`] wrote to this stream's count.
    pub fn wrote(&mut self, bytes: u64) {
        self.written += bytes;
    }

    /// Ends the stream: fsyncs the file and answers its length.
    pub async fn finish(self) -> Result<u64, ArtifactError> {
        let (entry, reservation) = (self.entry.clone(), self.reservation.clone());
        let name = self.name.clone();
        let received = blocking(move || {
            let mut slot = entry.lock().expect("upload poisoned");
            let Slot::Open(staged) = &*slot else {
                return Err(ArtifactError::Closed { name });
            };
            let (size, len) = (staged.size, staged.len);
            if let Err(source) = staged.file.sync_data() {
                if is_no_space(&source) {
                    drop_partial(&mut slot);
                    return Err(reservation.no_space(size));
                }
                return Err(ArtifactError::Io {
                    what: format!("syncing {name}"),
                    source,
                });
            }
            Ok(len)
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

/// Chunks queued between the receiving task and the writer thread: a few MiB.
const PIPELINE_DEPTH: usize = 4;

/// One chunk for the writer thread.
struct Chunk {
    offset: u64,
    data: Bytes,
    crc: u32,
    sha256: String,
}

/// The writer thread of one upload stream (see [`Upload::pipeline`]).
pub struct Pipeline {
    tx: tokio::sync::mpsc::Sender<Chunk>,
    task: tokio::task::JoinHandle<Result<u64, ArtifactError>>,
}

impl Pipeline {
    /// Queues a chunk (checked like [`Upload::write`]); a non-empty `sha256` declares the
    /// whole file's, once the chunk is written. `false` when the writer has stopped on an
    /// error, which [`Pipeline::close`] returns.
    pub async fn push(
        &self,
        offset: u64,
        data: impl Into<Bytes>,
        crc: u32,
        sha256: String,
    ) -> bool {
        let chunk = Chunk {
            offset,
            data: data.into(),
            crc,
            sha256,
        };
        self.tx.send(chunk).await.is_ok()
    }

    /// Waits for the queued chunks to be written; the bytes written, or the first error.
    pub async fn close(self) -> Result<u64, ArtifactError> {
        drop(self.tx);
        self.task.await.map_err(|e| ArtifactError::Io {
            what: "upload writer".into(),
            source: std::io::Error::other(e.to_string()),
        })?
    }
}

/// Checks and appends one chunk to a staged file. A chunk the data directory's free space
/// cannot take (by the reserve's count, or `ENOSPC`) removes the partial file: `NoSpace`.
fn write_chunk(
    entry: &Entry,
    reservation: &Reservation,
    name: &str,
    offset: u64,
    data: &[u8],
    crc: u32,
    behind: Option<&mut WriteBehind>,
) -> Result<(), ArtifactError> {
    let n = data.len() as u64;
    // Checked before taking the lock: a reader of `received` never waits for it.
    let crc_ok = crc32c::crc32c(data) == crc;
    let mut slot = entry.lock().expect("upload poisoned");
    let Slot::Open(staged) = &mut *slot else {
        return Err(ArtifactError::Closed { name: name.into() });
    };
    if offset != staged.len {
        return Err(ArtifactError::Offset {
            name: name.into(),
            expected: staged.len,
            got: offset,
        });
    }
    if offset.saturating_add(n) > staged.size {
        return Err(ArtifactError::PastSize {
            name: name.into(),
            offset,
            size: staged.size,
        });
    }
    if !crc_ok {
        return Err(ArtifactError::Crc {
            name: name.into(),
            offset,
        });
    }
    let size = staged.size;
    // Checked again before every chunk: someone else may have filled the disk meanwhile.
    if let Err(e) = reservation.claim(size - offset, size, Check::Chunk) {
        if matches!(e, ArtifactError::NoSpace { .. }) {
            drop_partial(&mut slot);
        }
        return Err(e);
    }
    let result = staged
        .file
        .write_all_at(data, offset)
        .map_err(|e| ("writing", e))
        .and_then(|()| {
            staged.len += n;
            match behind {
                Some(behind) => behind
                    .written(&staged.file, staged.len)
                    .map_err(|e| ("writing back", e)),
                None => Ok(()),
            }
        });
    match result {
        Ok(()) => Ok(()),
        Err((_, source)) if is_no_space(&source) => {
            drop_partial(&mut slot);
            Err(reservation.no_space(size))
        }
        Err((what, source)) => Err(ArtifactError::Io {
            what: format!("{what} {name}"),
            source,
        }),
    }
}

/// Records the SHA-256 the agent declares for the whole file at the end of its stream (its
/// completion must name the same).
fn declare_sha256(entry: &Entry, name: &str, sha256: String) -> Result<(), ArtifactError> {
    let mut slot = entry.lock().expect("upload poisoned");
    let Slot::Open(staged) = &mut *slot else {
        return Err(ArtifactError::Closed { name: name.into() });
    };
    staged.sha256 = sha256;
    Ok(())
}

/// Write-behind of a file written sequentially: every `WINDOW` written is handed to the
/// disk at once (`sync_file_range`), and what lies `KEEP` behind is waited for and dropped
/// from the page cache. The dirty pages of an upload thus stay a few tens of MiB whatever
/// the file's size (no dirty-page throttling, a cheap final fsync), and the page-cache pages
/// are recycled while still warm (measured in `docs/decisions/0004-upload-path.md`).
struct WriteBehind {
    /// Handed to the disk up to here.
    submitted: u64,
    /// Dropped from the page cache up to here.
    dropped: u64,
}

impl WriteBehind {
    const WINDOW: u64 = 8 << 20;
    const KEEP: u64 = 32 << 20;

    fn new(from: u64) -> Self {
        Self {
            submitted: from,
            dropped: from,
        }
    }

    /// The file now holds `len` bytes.
    fn written(&mut self, file: &File, len: u64) -> std::io::Result<()> {
        while len.saturating_sub(self.submitted) >= Self::WINDOW {
            page_cache::start_writeback(file, self.submitted, Self::WINDOW)?;
            self.submitted += Self::WINDOW;
        }
        while self.submitted.saturating_sub(self.dropped) >= Self::KEEP + Self::WINDOW {
            page_cache::write_and_drop(file, self.dropped, Self::WINDOW)?;
            self.dropped += Self::WINDOW;
        }
        Ok(())
    }
}

#[cfg(target_os = "linux")]
mod page_cache {
    //! `sync_file_range(2)` and `posix_fadvise(2)`, declared here: glibc has them, and
    //! the controller needs no more of `libc`.
    use std::fs::File;
    use std::io;
    use std::os::fd::AsRawFd;
    use std::os::raw::{c_int, c_uint};

    const SYNC_FILE_RANGE_WAIT_BEFORE: c_uint = 1;
    const SYNC_FILE_RANGE_WRITE: c_uint = 2;
    const SYNC_FILE_RANGE_WAIT_AFTER: c_uint = 4;
    const POSIX_FADV_DONTNEED: c_int = 4;

    extern "C" {
        fn sync_file_range(fd: c_int, offset: i64, nbytes: i64, flags: c_uint) -> c_int;
        fn posix_fadvise(fd: c_int, offset: i64, len: i64, advice: c_int) -> c_int;
    }

    fn range(file: &File, offset: u64, len: u64, flags: c_uint) -> io::Result<()> {
        let (offset, len) = (offset as i64, len as i64);
        // SAFETY: a plain system call on an open descriptor; no memory is passed.
        if unsafe { sync_file_range(file.as_raw_fd(), offset, len, flags) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Starts writing the range's dirty pages to disk, without waiting.
    pub fn start_writeback(file: &File, offset: u64, len: u64) -> io::Result<()> {
        range(file, offset, len, SYNC_FILE_RANGE_WRITE)
    }

    /// Waits until the range is written, then drops it from the page cache.
    pub fn write_and_drop(file: &File, offset: u64, len: u64) -> io::Result<()> {
        range(
            file,
            offset,
            len,
            SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE | SYNC_FILE_RANGE_WAIT_AFTER,
        )?;
        // SAFETY: as above. Advice only: a failure leaves the pages cached, nothing more.
        unsafe {
            posix_fadvise(
                file.as_raw_fd(),
                offset as i64,
                len as i64,
                POSIX_FADV_DONTNEED,
            )
        };
        Ok(())
    }
}

#[cfg(not(target_os = "linux"))]
mod page_cache {
    use std::{fs::File, io};

    pub fn start_writeback(_: &File, _: u64, _: u64) -> io::Result<()> {
        Ok(())
    }

    pub fn write_and_drop(_: &File, _: u64, _: u64) -> io::Result<()> {
        Ok(())
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
