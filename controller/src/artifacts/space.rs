//! Free space on the data directory's filesystem, which the store, the logs and the artifacts
//! share: a reserve kept free there (`disk_reserve`), and the bytes promised to the uploads in
//! flight. An upload stream starts only when what it still has to send fits in what is free,
//! less the reserve, less what the other streams were promised; each chunk checks again
//! before it is written (then allowed into half of the reserve, for the filesystem's own
//! overhead), so that a disk filled by someone else stops the stream rather than the store.
//! A stream refused for space, or whose write fails with `ENOSPC`, is an upload that cannot
//! fit: `ArtifactError::NoSpace`, which names the figures.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::ArtifactError;

/// The default reserve is the smaller of this and [`DEFAULT_RESERVE_PERCENT`] of the
/// filesystem: 1 GiB keeps a large disk's store writable for a long while, 5% keeps a small
/// disk usable at all.
pub const DEFAULT_RESERVE_CAP: u64 = 1 << 30;
/// See [`DEFAULT_RESERVE_CAP`].
pub const DEFAULT_RESERVE_PERCENT: u64 = 5;

/// The reserve kept free on a filesystem of `total` bytes when `disk_reserve` is not set.
pub fn default_reserve(total: u64) -> u64 {
    (total / 100)
        .saturating_mul(DEFAULT_RESERVE_PERCENT)
        .min(DEFAULT_RESERVE_CAP)
}

/// What the filesystem holds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// Free to an unprivileged writer (`f_bavail`).
    pub free: u64,
    /// The filesystem's size.
    pub total: u64,
}

/// When a stream's space is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// At the start of a stream: the whole reserve stays free.
    Begin,
    /// Before each chunk: half of the reserve may go to the filesystem's overhead.
    Chunk,
}

/// Why `need` bytes do not fit; the figures of the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shortfall {
    pub free: u64,
    pub promised: u64,
    pub reserve: u64,
}

/// The decision, free of the filesystem: `need` more bytes fit when `free` holds them, the
/// bytes `promised` to other streams and the reserve (half of it for [`Check::Chunk`]).
pub fn fits(usage: Usage, reserve: u64, promised: u64, need: u64, check: Check) -> bool {
    let kept = match check {
        Check::Begin => reserve,
        Check::Chunk => reserve / 2,
    };
    usage.free >= kept.saturating_add(promised).saturating_add(need)
}

/// Reads a filesystem's usage.
type Probe = dyn Fn(&Path) -> std::io::Result<Usage> + Send + Sync;

/// `statvfs(3)` of the filesystem holding `dir`.
// Its fields are `u64` on 64-bit Linux, narrower on some other targets.
#[allow(clippy::useless_conversion)]
pub fn statvfs(dir: &Path) -> std::io::Result<Usage> {
    let stat = nix::sys::statvfs::statvfs(dir).map_err(std::io::Error::from)?;
    let unit = u64::from(stat.fragment_size());
    Ok(Usage {
        free: u64::from(stat.blocks_available()).saturating_mul(unit),
        total: u64::from(stat.blocks()).saturating_mul(unit),
    })
}

/// Whether an I/O error says the filesystem is full (or the quota spent).
pub fn is_no_space(e: &std::io::Error) -> bool {
    use nix::errno::Errno;
    matches!(e.raw_os_error(), Some(code) if code == Errno::ENOSPC as i32 || code == Errno::EDQUOT as i32)
}

/// The data directory's space: its reserve and the promises of the streams in flight.
pub struct Space {
    dir: PathBuf,
    /// `disk_reserve`; `None` is [`default_reserve`] of the filesystem.
    reserve: Option<u64>,
    probe: Box<Probe>,
    promises: Mutex<Promises>,
}

#[derive(Default)]
struct Promises {
    next: u64,
    /// Bytes each stream in flight may still write, by stream.
    by_stream: HashMap<u64, u64>,
}

impl Space {
    /// The space of the filesystem holding `dir`, with `reserve` kept free.
    pub fn new(dir: &Path, reserve: Option<u64>) -> Self {
        Self::with_probe(dir, reserve, Box::new(statvfs))
    }

    /// As [`Space::new`], with the usage read by `probe` (tests).
    pub(super) fn with_probe(dir: &Path, reserve: Option<u64>, probe: Box<Probe>) -> Self {
        Self {
            dir: dir.to_path_buf(),
            reserve,
            probe,
            promises: Mutex::default(),
        }
    }

    /// The reserve on a filesystem of `total` bytes.
    pub fn reserve(&self, total: u64) -> u64 {
        self.reserve.unwrap_or_else(|| default_reserve(total))
    }

    fn usage(&self) -> Result<Usage, ArtifactError> {
        (self.probe)(&self.dir).map_err(|source| ArtifactError::Io {
            what: format!("reading the free space of {}", self.dir.display()),
            source,
        })
    }

    /// Streams in flight, and the bytes promised to them.
    #[cfg(test)]
    pub(super) fn in_flight(&self) -> (usize, u64) {
        let promises = self.promises.lock().expect("space poisoned");
        (promises.by_stream.len(), others(&promises, None))
    }

    /// A stream's place among the promises, promised nothing yet.
    pub fn reservation(self: &Arc<Self>, name: &str) -> Reservation {
        let mut promises = self.promises.lock().expect("space poisoned");
        promises.next += 1;
        let id = promises.next;
        promises.by_stream.insert(id, 0);
        Reservation {
            space: self.clone(),
            id,
            name: name.to_string(),
        }
    }

    /// The figures of a refusal of `name` (`size` bytes) as things are now, the stream's own
    /// promise left out.
    pub fn no_space(&self, name: &str, size: u64, own: Option<u64>) -> ArtifactError {
        let promised = {
            let promises = self.promises.lock().expect("space poisoned");
            others(&promises, own)
        };
        let (free, reserve) = match self.usage() {
            Ok(usage) => (usage.free, self.reserve(usage.total)),
            Err(_) => (0, self.reserve.unwrap_or(0)),
        };
        ArtifactError::NoSpace {
            name: name.to_string(),
            size,
            free,
            promised,
            reserve,
        }
    }
}

fn others(promises: &Promises, own: Option<u64>) -> u64 {
    promises
        .by_stream
        .iter()
        .filter(|(id, _)| Some(**id) != own)
        .fold(0u64, |sum, (_, bytes)| sum.saturating_add(*bytes))
}

/// One upload stream's promise; withdrawn when dropped.
pub struct Reservation {
    space: Arc<Space>,
    id: u64,
    name: String,
}

impl Reservation {
    /// Promises this stream `need` more bytes (of an output of `size`) if they fit, checked
    /// as `check`; `NoSpace` otherwise, and the stream is promised nothing.
    pub fn claim(&self, need: u64, size: u64, check: Check) -> Result<(), ArtifactError> {
        let mut promises = self.space.promises.lock().expect("space poisoned");
        // Read under the lock: two streams never both take the same free bytes.
        let usage = self.space.usage()?;
        let reserve = self.space.reserve(usage.total);
        let promised = others(&promises, Some(self.id));
        if fits(usage, reserve, promised, need, check) {
            promises.by_stream.insert(self.id, need);
            return Ok(());
        }
        promises.by_stream.insert(self.id, 0);
        Err(ArtifactError::NoSpace {
            name: self.name.clone(),
            size,
            free: usage.free,
            promised,
            reserve,
        })
    }

    /// The refusal of this stream's output (`size` bytes) after a write found the disk full.
    pub fn no_space(&self, size: u64) -> ArtifactError {
        self.space
            .promises
            .lock()
            .expect("space poisoned")
            .by_stream
            .insert(self.id, 0);
        self.space.no_space(&self.name, size, Some(self.id))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut promises) = self.space.promises.lock() {
            promises.by_stream.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    const MIB: u64 = 1 << 20;

    #[test]
    fn the_default_reserve_is_5_percent_up_to_1_gib() {
        assert_eq!(default_reserve(64 * MIB), 64 * MIB / 100 * 5);
        assert_eq!(default_reserve(10 << 30), (10 << 30) / 100 * 5);
        assert_eq!(default_reserve(100 << 30), 1 << 30);
        assert_eq!(default_reserve(0), 0);
    }

    #[test]
    fn fits_counts_the_reserve_and_promises() {
        let usage = Usage {
            free: 100 * MIB,
            total: 1000 * MIB,
        };
        assert!(fits(usage, 10 * MIB, 0, 90 * MIB, Check::Begin));
        assert!(!fits(usage, 10 * MIB, 0, 90 * MIB + 1, Check::Begin));
        assert!(!fits(usage, 10 * MIB, 1, 90 * MIB, Check::Begin));
        // A chunk may go into half of the reserve.
        assert!(fits(usage, 10 * MIB, 0, 95 * MIB, Check::Chunk));
        assert!(!fits(usage, 10 * MIB, 0, 95 * MIB + 1, Check::Chunk));
        assert!(!fits(usage, u64::MAX, u64::MAX, u64::MAX, Check::Begin));
    }

    /// A space whose free bytes the test sets.
    fn space(free: &Arc<AtomicU64>, reserve: Option<u64>) -> Arc<Space> {
        let free = free.clone();
        Arc::new(Space::with_probe(
            Path::new("/nowhere"),
            reserve,
            Box::new(move |_| {
                Ok(Usage {
                    free: free.load(Ordering::SeqCst),
                    total: 1000 * MIB,
                })
            }),
        ))
    }

    #[test]
    fn streams_in_flight_share_what_is_free() {
        let free = Arc::new(AtomicU64::new(100 * MIB));
        let space = space(&free, Some(10 * MIB));
        let a = space.reservation("a.bin");
        let b = space.reservation("b.bin");
        a.claim(60 * MIB, 60 * MIB, Check::Begin).unwrap();
        let refused = b.claim(40 * MIB, 40 * MIB, Check::Begin).unwrap_err();
        let ArtifactError::NoSpace {
            free: f,
            promised,
            reserve,
            ..
        } = refused
        else {
            panic!("{refused}")
        };
        assert_eq!((f, promised, reserve), (100 * MIB, 60 * MIB, 10 * MIB));
        b.claim(30 * MIB, 30 * MIB, Check::Begin).unwrap();
        // `a` writes 20 MiB: its promise and the free space shrink together.
        free.store(80 * MIB, Ordering::SeqCst);
        a.claim(40 * MIB, 60 * MIB, Check::Chunk).unwrap();
        // Dropped, `a`'s promise goes.
        drop(a);
        let c = space.reservation("c.bin");
        c.claim(40 * MIB, 40 * MIB, Check::Begin).unwrap();
    }

    #[test]
    fn a_disk_filled_by_someone_else_stops_the_stream_at_its_next_chunk() {
        let free = Arc::new(AtomicU64::new(100 * MIB));
        let space = space(&free, Some(10 * MIB));
        let a = space.reservation("a.bin");
        a.claim(80 * MIB, 80 * MIB, Check::Begin).unwrap();
        free.store(50 * MIB, Ordering::SeqCst);
        let refused = a.claim(70 * MIB, 80 * MIB, Check::Chunk).unwrap_err();
        let text = refused.to_string();
        assert!(
            text.contains("has 50.0 MiB free")
                && text.contains("keeps 10.0 MiB in reserve")
                && text.contains("output a.bin (80.0 MiB) does not fit"),
            "{text}"
        );
        // Refused, it holds no promise: another stream may take the space.
        let b = space.reservation("b.bin");
        b.claim(40 * MIB, 40 * MIB, Check::Begin).unwrap();
    }

    #[test]
    fn the_default_reserve_follows_the_filesystem() {
        let free = Arc::new(AtomicU64::new(100 * MIB));
        let space = space(&free, None);
        assert_eq!(space.reserve(1000 * MIB), 50 * MIB);
        let a = space.reservation("a.bin");
        a.claim(50 * MIB, 50 * MIB, Check::Begin).unwrap();
        assert!(a.claim(50 * MIB + 1, 60 * MIB, Check::Begin).is_err());
    }

    #[test]
    fn statvfs_reads_a_real_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        let usage = statvfs(dir.path()).unwrap();
        assert!(usage.total > 0 && usage.free <= usage.total, "{usage:?}");
    }
}
