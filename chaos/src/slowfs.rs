//! The slow disk: a FUSE passthrough filesystem of the suite's own (`fuser`, mounted with the
//! mount(2) syscall as root: no libfuse, no fusermount), mounted over a backing directory and
//! served by this process. Its latency knob, turned by the fault schedule, makes every data
//! and metadata operation that would reach a disk (read, write, fsync, create, mkdir, rename,
//! unlink, truncate) wait that long before it is done on the backing directory; lookups,
//! attributes, listings and `statfs` answer at once (as from a cache). At 0 it is a plain
//! passthrough. Delayed operations wait on threads of their own, so that a slow operation
//! holds up its caller, not the whole filesystem.

mod passthrough;

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use anyhow::{Context, Result};
use fuser::{FileType, MountOption};

use passthrough::Passthrough;

/// The mounted filesystem; unmounted when dropped.
pub struct SlowDisk {
    mount: PathBuf,
    latency_ms: Arc<AtomicU64>,
    session: Option<fuser::BackgroundSession>,
}

impl SlowDisk {
    /// Mounts at `mount` (created) a passthrough of `backing` (created).
    pub fn mount(mount: &Path, backing: &Path) -> Result<Self> {
        std::fs::create_dir_all(mount)?;
        std::fs::create_dir_all(backing)?;
        let latency_ms = Arc::new(AtomicU64::new(0));
        let fs = Passthrough {
            backing: backing.to_owned(),
            latency_ms: latency_ms.clone(),
            state: Arc::new(Mutex::new(State::default())),
        };
        let options = [
            MountOption::FSName("ferry-chaos-slow".to_owned()),
            MountOption::AllowOther,
            MountOption::NoDev,
            MountOption::NoSuid,
        ];
        let session = fuser::spawn_mount2(fs, mount, &options)
            .with_context(|| format!("mounting the slow disk (FUSE) at {}", mount.display()))?;
        // The mount answers before anything is put on it.
        std::fs::metadata(mount).context("the slow disk does not answer")?;
        Ok(Self {
            mount: mount.to_owned(),
            latency_ms,
            session: Some(session),
        })
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// The wait of every slow operation from now on (zero: none).
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for SlowDisk {
    fn drop(&mut self) {
        self.set_latency(Duration::ZERO);
        // Lazily: a process still in the directory does not keep the session alive.
        let _ = nix::mount::umount2(&self.mount, nix::mount::MntFlags::MNT_DETACH);
        drop(self.session.take());
    }
}

#[derive(Default)]
struct State {
    /// Inode → path under the backing directory, with the kernel's lookup count.
    paths: HashMap<u64, (PathBuf, u64)>,
    inodes: HashMap<PathBuf, u64>,
    next_ino: u64,
    files: HashMap<u64, Arc<File>>,
    /// Directory listings, taken at opendir.
    dirs: HashMap<u64, Vec<(u64, FileType, std::ffi::OsString)>>,
    next_fh: u64,
}

impl State {
    fn path(&self, ino: u64) -> Option<PathBuf> {
        if ino == fuser::FUSE_ROOT_ID {
            return Some(PathBuf::new());
        }
        self.paths.get(&ino).map(|(p, _)| p.clone())
    }

    /// The inode of `rel`, its lookup count raised by one.
    fn remember(&mut self, rel: PathBuf) -> u64 {
        if let Some(&ino) = self.inodes.get(&rel) {
            if let Some(entry) = self.paths.get_mut(&ino) {
                entry.1 += 1;
            }
            return ino;
        }
        self.next_ino = self.next_ino.max(fuser::FUSE_ROOT_ID) + 1;
        let ino = self.next_ino;
        self.inodes.insert(rel.clone(), ino);
        self.paths.insert(ino, (rel, 1));
        ino
    }

    fn forget(&mut self, ino: u64, n: u64) {
        if let Some(entry) = self.paths.get_mut(&ino) {
            entry.1 = entry.1.saturating_sub(n);
            if entry.1 == 0 {
                let (path, _) = self.paths.remove(&ino).expect("present");
                if self.inodes.get(&path) == Some(&ino) {
                    self.inodes.remove(&path);
                }
            }
        }
    }

    /// `from` (and everything under it) is now `to`; what was at `to` is gone.
    fn moved(&mut self, from: &Path, to: &Path) {
        self.inodes.remove(to);
        let moved: Vec<(PathBuf, u64)> = self
            .inodes
            .iter()
            .filter(|(p, _)| p.starts_with(from))
            .map(|(p, &i)| (p.clone(), i))
            .collect();
        for (old, ino) in moved {
            let new = to.join(old.strip_prefix(from).expect("a prefix"));
            self.inodes.remove(&old);
            self.inodes.insert(new.clone(), ino);
            if let Some(entry) = self.paths.get_mut(&ino) {
                entry.0 = new;
            }
        }
    }

    fn fh(&mut self) -> u64 {
        self.next_fh += 1;
        self.next_fh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_a_directory_moves_what_is_known_under_it() {
        let mut s = State::default();
        let a = s.remember("a".into());
        let f = s.remember("a/f".into());
        let b = s.remember("b".into());
        s.moved(Path::new("a"), Path::new("b"));
        assert_eq!(s.path(a), Some(PathBuf::from("b")));
        assert_eq!(s.path(f), Some(PathBuf::from("b/f")));
        assert_eq!(s.inodes.get(Path::new("b/f")), Some(&f));
        // What was at the destination is no longer found by its path.
        assert!(!s.inodes.values().any(|&i| i == b));
        s.forget(f, 1);
        assert_eq!(s.path(f), None);
        assert_eq!(s.path(fuser::FUSE_ROOT_ID), Some(PathBuf::new()));
    }
}
