//! The reading side of an output upload: the reader thread that reads a file once, hashing it
//! (SHA-256) as it goes, and cuts what the controller lacks into CRC32C-checked chunks; and
//! opening the file the resolver checked.

use std::{
    fs::File,
    io,
    os::{
        fd::AsRawFd,
        unix::fs::{FileExt, MetadataExt, OpenOptionsExt},
    },
};

use ferry_proto::v1::{UploadChunk, UploadHeader};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Upload;
use crate::{outputs::Output, transfer::hex};

/// Bytes of file data per upload message: 1 MiB less room for the message's other fields and
/// its gRPC prefix, so that a message fits one HTTP/2 frame of the controller's 1 MiB and is
/// decoded there from that frame without a copy.
pub const CHUNK: usize = (1 << 20) - 256;

/// The reader thread of one stream: reads the file once from 0, hashing it; the prefix the
/// controller already holds (before `offset`) is hashed only, the rest is fed to the stream
/// in [`CHUNK`]s, the first carrying the header, the last the file's SHA-256. Returns the
/// SHA-256 once the whole file is read and queued, `None` when the stream was given up first.
pub(super) fn produce(
    upload: &Upload,
    offset: u64,
    tx: &mpsc::Sender<UploadChunk>,
    stop: &CancellationToken,
    runtime: &tokio::runtime::Handle,
) -> Result<Option<String>, String> {
    let size = upload.size();
    let failed = |e: io::Error| match e.kind() {
        io::ErrorKind::UnexpectedEof => "the file shrank while being uploaded".to_owned(),
        _ => format!("cannot read: {e}"),
    };
    let send = |chunk: UploadChunk| {
        runtime.block_on(async {
            tokio::select! {
                r = tx.send(chunk) => r.is_ok(),
                () = stop.cancelled() => false,
            }
        })
    };
    let mut hasher = Sha256::new();
    let offset = offset.min(size);
    if !hash_range(&mut hasher, &upload.file, 0, offset, stop).map_err(failed)? {
        return Ok(None);
    }
    let mut header = upload.header.clone();
    if offset == size {
        // Nothing left to send (an empty file, or one the controller holds whole): the header
        // alone, declaring the SHA-256.
        let sha256 = hex(&hasher.finalize());
        header.sha256 = sha256.clone();
        let chunk = make_chunk(Some(header), offset, Vec::new(), String::new());
        return Ok(send(chunk).then_some(sha256));
    }
    let mut header = Some(header);
    let mut at = offset;
    loop {
        if stop.is_cancelled() {
            return Ok(None);
        }
        let len = chunk_len(at, size);
        let data = read_chunk(&upload.file, at, len).map_err(failed)?;
        hasher.update(&data);
        let end = at + len as u64;
        let sha256 = if end == size {
            hex(&hasher.clone().finalize())
        } else {
            String::new()
        };
        let last = !sha256.is_empty();
        if !send(make_chunk(header.take(), at, data, sha256.clone())) {
            // The call ended (refused or interrupted); it reports why.
            return Ok(None);
        }
        if last {
            return Ok(Some(sha256));
        }
        at = end;
    }
}

/// Bytes in the chunk at `at`: a full [`CHUNK`] or what is left. Zero only for the single
/// message of an empty file, or of a file the controller already holds whole.
pub(super) fn chunk_len(at: u64, size: u64) -> usize {
    size.saturating_sub(at).min(CHUNK as u64) as usize
}

pub(super) fn make_chunk(
    header: Option<UploadHeader>,
    offset: u64,
    data: Vec<u8>,
    sha256: String,
) -> UploadChunk {
    UploadChunk {
        header,
        offset,
        crc32c: crc32c::crc32c(&data),
        data: data.into(),
        sha256,
    }
}

/// Reads `len` bytes at `at` into a new buffer that is never zeroed first (zeroing 1 MiB per
/// chunk was a tenth of the agent's CPU). Positional (`pread`): the file's offset is shared
/// with a reader thread of an earlier stream that may still be winding down.
pub(super) fn read_chunk(file: &File, at: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(len);
    while buf.len() < len {
        let want = len - buf.len();
        let offset = nix::libc::off_t::try_from(at + buf.len() as u64)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `pread` writes at most `want` bytes into the spare capacity, which holds
        // `len - buf.len()` bytes; only the bytes it reports written are counted as initialised.
        let n = unsafe {
            nix::libc::pread(
                file.as_raw_fd(),
                buf.spare_capacity_mut().as_mut_ptr().cast(),
                want,
                offset,
            )
        };
        match n {
            // SAFETY: `pread` initialised these `n` bytes, within the capacity.
            1.. => unsafe { buf.set_len(buf.len() + n as usize) },
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf)
}

/// Opens the file the resolver checked, refusing a swap for a symlink or another file.
pub(super) fn open_checked(output: &Output) -> Result<File, String> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW)
        .open(&output.path)
        .map_err(|e| format!("cannot open: {e}"))?;
    let meta = file.metadata().map_err(|e| format!("cannot read: {e}"))?;
    if meta.dev() != output.dev || meta.ino() != output.ino || meta.len() != output.size {
        return Err("the file changed after the task ended".to_owned());
    }
    Ok(file)
}

/// Feeds bytes `from..to` of `file` to `hasher`, with bounded memory; `false` when stopped
/// first.
pub(super) fn hash_range(
    hasher: &mut Sha256,
    file: &File,
    from: u64,
    to: u64,
    stop: &CancellationToken,
) -> io::Result<bool> {
    if from >= to {
        return Ok(true);
    }
    let mut buf = vec![0u8; CHUNK];
    let mut at = from;
    while at < to {
        if stop.is_cancelled() {
            return Ok(false);
        }
        let n = (to - at).min(CHUNK as u64) as usize;
        file.read_exact_at(&mut buf[..n], at)?;
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(true)
}
