//! Working directories of attempts. Each attempt starts in an empty directory of its own; one
//! that leaves it empty hands it back for the next attempt, which spares the file system an
//! `mkdir` and an `rmdir` per task (each allocates or frees an inode and a block: on ext4 the
//! largest cost an agent has for a short task). A directory left with files is removed.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tracing::warn;

/// Directories kept for reuse, at most.
const KEEP: usize = 64;
/// Name prefix of the directories this agent makes under its work dir.
const PREFIX: &str = "attempt-";

pub struct WorkDirs {
    root: PathBuf,
    idle: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

impl WorkDirs {
    /// Takes `root` (created if missing) and removes what earlier runs of the agent left there.
    pub fn new(root: PathBuf) -> io::Result<Self> {
        std::fs::create_dir_all(&root)?;
        for entry in std::fs::read_dir(&root)?.flatten() {
            if entry.file_name().to_string_lossy().starts_with(PREFIX) {
                if let Err(e) = std::fs::remove_dir_all(entry.path()) {
                    warn!(dir = %entry.path().display(), error = %e, "cannot remove a leftover working directory");
                }
            }
        }
        Ok(Self {
            root,
            idle: Mutex::new(Vec::new()),
            next: AtomicU64::new(0),
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty directory for one attempt.
    pub fn acquire(&self) -> io::Result<PathBuf> {
        while let Some(dir) = self.idle().pop() {
            if is_empty(&dir) {
                return Ok(dir);
            }
            // Something wrote into it after it was handed back: never reuse it.
            let _ = std::fs::remove_dir_all(&dir);
        }
        loop {
            let dir = self.root.join(format!(
                "{PREFIX}{}",
                self.next.fetch_add(1, Ordering::Relaxed)
            ));
            match std::fs::create_dir(&dir) {
                Ok(()) => return Ok(dir),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands a directory back once its attempt is over and its processes are gone.
    pub async fn release(&self, dir: PathBuf) {
        if is_empty(&dir) {
            let mut idle = self.idle();
            if idle.len() < KEEP {
                idle.push(dir);
                return;
            }
            drop(idle);
        }
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await {
            if e.kind() != io::ErrorKind::NotFound {
                warn!(dir = %dir.display(), error = %e, "cannot remove an attempt's working directory");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_dirs_are_reused_and_used_ones_removed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("attempt-7")).unwrap();
        std::fs::write(root.path().join("keep-me"), "x").unwrap();
        let dirs = WorkDirs::new(root.path().to_path_buf()).unwrap();
        assert!(
            !root.path().join("attempt-7").exists(),
            "leftovers are cleared"
        );
        assert!(
            root.path().join("keep-me").exists(),
            "other files are not ours"
        );

        let a = dirs.acquire().unwrap();
        let b = dirs.acquire().unwrap();
        assert_ne!(a, b);
        dirs.release(a.clone()).await;
        assert_eq!(dirs.acquire().unwrap(), a, "an empty directory is reused");

        std::fs::write(b.join("out.csv"), "x").unwrap();
        dirs.release(b.clone()).await;
        assert!(!b.exists(), "a directory with files is removed");
        let c = dirs.acquire().unwrap();
        assert_ne!(c, b);
        assert!(is_empty(&c));
    }
}
