//! The pieces of `ferry results get` that do not talk to the controller: which output names
//! are safe to save, the `.part` file that is removed unless it is finished, the check of what
//! arrives (offsets, sizes), the writer thread that saves and hashes, and the progress line.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, IsTerminal, Write},
    path::{Component, Path, PathBuf},
    sync::mpsc::{sync_channel, SyncSender},
    thread::JoinHandle,
    time::{Duration, Instant},
};

use sha2::{Digest, Sha256};

use crate::output::bytes;

/// The path, relative to the download folder, that an output `name` is saved under; `Err`
/// says why the name is refused. Names are '/'-separated and must stay inside the folder: not
/// empty, not absolute, no empty, `.` or `..` part, no NUL or backslash, no part ending in
/// `.part` (the suffix of files being downloaded).
pub fn safe_relative(name: &str) -> Result<PathBuf, &'static str> {
    if name.is_empty() {
        return Err("the name is empty");
    }
    if name.starts_with('/') {
        return Err("the name is an absolute path");
    }
    if name.contains('\0') || name.contains('\\') {
        return Err("the name holds a NUL or a backslash");
    }
    let mut path = PathBuf::new();
    for part in name.split('/') {
        match part {
            "" => return Err("the name has an empty part ('//' or a trailing '/')"),
            "." | ".." => return Err("the name has a '.' or '..' part"),
            _ => path.push(part),
        }
    }
    // What `Path` makes of it must be plain parts only (belt and braces).
    if !path.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err("the name is not a plain relative path");
    }
    Ok(path)
}

/// `out.csv` → `out.csv.part`, beside it.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// A file being downloaded: removed when dropped, unless `commit` renamed it into place.
pub struct PartFile {
    path: PathBuf,
    armed: bool,
}

impl PartFile {
    /// Creates `path` anew: an old one is removed first, and `create_new` (`O_EXCL`) neither
    /// follows nor reuses whatever appears there in the meantime, a symlink included.
    pub fn create(path: PathBuf) -> io::Result<(Self, File)> {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((PartFile { path, armed: true }, file))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the finished file to `dest`.
    pub fn commit(mut self, dest: &Path) -> io::Result<()> {
        std::fs::rename(&self.path, dest)?;
        self.armed = false;
        Ok(())
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        if self.armed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Checks what the controller streams for one file: chunks in order from the offset asked
/// for, never past the published size. Knows where to resume when the stream breaks.
#[derive(Debug)]
pub struct Receiver {
    size: u64,
    received: u64,
}

impl Receiver {
    pub fn new(size: u64) -> Self {
        Receiver { size, received: 0 }
    }

    /// Accepts the chunk at `offset` of `len` bytes, or says why it is refused.
    pub fn accept(&mut self, offset: u64, len: usize) -> Result<(), String> {
        if offset != self.received {
            return Err(format!(
                "a chunk at offset {offset} arrived where {} was expected",
                self.received
            ));
        }
        let end = self.received.saturating_add(len as u64);
        if end > self.size {
            return Err(format!(
                "{end} bytes arrived for a file published with {} bytes",
                self.size
            ));
        }
        self.received = end;
        Ok(())
    }

    /// Bytes received (and so saved in the `.part` file) so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// The offset to ask for when the stream broke: the length of the `.part` file.
    pub fn resume_offset(&self) -> u64 {
        self.received
    }

    pub fn is_complete(&self) -> bool {
        self.received == self.size
    }
}

/// How many chunks may wait for the writer thread.
const SINK_QUEUE: usize = 16;

/// A thread that writes the chunks to the `.part` file and hashes them, so that receiving,
/// writing and hashing overlap.
pub struct Sink {
    tx: Option<SyncSender<Vec<u8>>>,
    handle: Option<JoinHandle<io::Result<Saved>>>,
}

/// What the writer thread saved: the byte count and the SHA-256 in lowercase hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub size: u64,
    pub sha256: String,
}

impl Sink {
    pub fn start(file: File) -> Self {
        let (tx, rx) = sync_channel::<Vec<u8>>(SINK_QUEUE);
        let handle = std::thread::spawn(move || {
            let mut out = BufWriter::with_capacity(1 << 20, file);
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            for data in rx {
                hasher.update(&data);
                out.write_all(&data)?;
                size += data.len() as u64;
            }
            let file = out.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            Ok(Saved {
                size,
                sha256: hex(&hasher.finalize()),
            })
        });
        Sink {
            tx: Some(tx),
            handle: Some(handle),
        }
    }

    /// Queues `data`; `false` when the writer has stopped (a write failed: see `finish`).
    pub fn push(&mut self, data: Vec<u8>) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(data).is_ok())
    }

    /// Waits for everything queued to be written and synced.
    pub fn finish(mut self) -> io::Result<Saved> {
        drop(self.tx.take());
        match self.handle.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(io::Error::other("the writer thread panicked")),
            None => Err(io::Error::other("the writer already finished")),
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        // Closing the channel lets the thread end on its own; nobody waits for it.
        drop(self.tx.take());
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// SHA-256 of `data`, lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Checks a finished download against what was published: the checksum mismatch message
/// names the file and both sums.
pub fn verify(name: &str, saved: &Saved, size: u64, sha256: &str) -> Result<(), String> {
    if saved.size != size {
        return Err(format!(
            "size mismatch for {name}: expected {size} bytes, got {}",
            saved.size
        ));
    }
    if !saved.sha256.eq_ignore_ascii_case(sha256.trim()) {
        return Err(format!(
            "checksum mismatch for {name}: expected {}, got {}",
            sha256.trim(),
            saved.sha256
        ));
    }
    Ok(())
}

/// Megabytes (10^6 bytes) per second.
pub fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64().max(1e-6);
    bytes as f64 / 1e6 / secs
}

/// How often the progress line is redrawn.
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const BAR_WIDTH: usize = 24;

/// Progress on standard error: a bar redrawn in place when it is a terminal, otherwise one
/// line per finished file.
pub struct Progress {
    tty: bool,
    name: String,
    size: u64,
    started: Instant,
    last_draw: Option<Instant>,
    drawn: bool,
}

impl Progress {
    pub fn new(name: &str, size: u64) -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            name: name.to_owned(),
            size,
            started: Instant::now(),
            last_draw: None,
            drawn: false,
        }
    }

    pub fn update(&mut self, received: u64) {
        if !self.tty {
            return;
        }
        let now = Instant::now();
        if self
            .last_draw
            .is_some_and(|at| now.duration_since(at) < REDRAW_EVERY)
        {
            return;
        }
        self.last_draw = Some(now);
        self.drawn = true;
        let line = bar_line(&self.name, received, self.size, self.started.elapsed());
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    /// A message on its own line (the bar, if any, is continued below it).
    pub fn note(&mut self, message: &str) {
        self.clear_line();
        eprintln!("{message}");
    }

    /// The file is saved: one summary line with the size and the rate.
    pub fn done(&mut self, transferred: u64) {
        self.clear_line();
        eprintln!(
            "{}",
            done_line(&self.name, self.size, transferred, self.started.elapsed())
        );
    }

    /// Ends the bar's line before an error is printed.
    pub fn abandon(&mut self) {
        self.clear_line();
    }

    fn clear_line(&mut self) {
        if self.tty && self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
            self.last_draw = None;
        }
    }
}

/// `out.csv  [#########---------------]  312.0 MiB / 1.0 GiB  30%  412.3 MB/s`.
pub fn bar_line(name: &str, received: u64, size: u64, elapsed: Duration) -> String {
    let fraction = if size == 0 {
        1.0
    } else {
        received as f64 / size as f64
    };
    let filled = ((fraction * BAR_WIDTH as f64) as usize).min(BAR_WIDTH);
    format!(
        "{name}  [{}{}]  {} / {}  {:.0}%  {:.1} MB/s",
        "#".repeat(filled),
        "-".repeat(BAR_WIDTH - filled),
        bytes(received),
        bytes(size),
        fraction * 100.0,
        mb_per_s(received, elapsed)
    )
}

/// `saved out.csv (1.0 GiB) in 2.1s, 487.3 MB/s`.
pub fn done_line(name: &str, size: u64, transferred: u64, elapsed: Duration) -> String {
    format!(
        "saved {name} ({}) in {:.1}s, {:.1} MB/s",
        bytes(size),
        elapsed.as_secs_f64(),
        mb_per_s(transferred, elapsed)
    )
}

#[cfg(test)]
mod tests;
