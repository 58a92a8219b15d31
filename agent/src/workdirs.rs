//! Working directories of attempts. Each attempt starts in an empty directory of its own; one
//! that leaves it empty hands it back for the next attempt, which spares the file system an
//! `mkdir` and an `rmdir` per task (each allocates or frees an inode and a block: on ext4 the
//! largest cost an agent has for a short task). A directory left with files is removed.
//!
//! When tasks run as another user (`run_as`), a directory is the agent's (mode 0700) whenever
//! the agent writes or reads in it — staging inputs, collecting outputs — so that no task of
//! that user can slip a symlink or a file into it meanwhile; it is handed over to the tasks'
//! user, with what was staged in it, only for the task's run (`hand_over`, `take_back`).

use std::io;
use std::os::unix::fs::{lchown, PermissionsExt};
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
    /// Tasks run as another user: directories change hands around each run.
    handed_over: bool,
}

fn is_empty(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_none())
}

impl WorkDirs {
    /// Takes `root` (created if missing) and removes what earlier runs of the agent left there.
    /// `handed_over`: tasks run as another user, to whom directories are handed for their run.
    pub fn new(root: PathBuf, handed_over: bool) -> io::Result<Self> {
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
            handed_over,
        })
    }

    fn idle(&self) -> std::sync::MutexGuard<'_, Vec<PathBuf>> {
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// An empty directory for one attempt (the agent's alone when tasks run as another user).
    pub fn acquire(&self) -> io::Result<PathBuf> {
        while let Some(dir) = self.idle().pop() {
            // Taken back first, then found empty: nothing of a task's can be in it.
            if (!self.handed_over || take_back(&dir).is_ok()) && is_empty(&dir) {
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
                Ok(()) if self.handed_over => {
                    take_back(&dir)?;
                    return Ok(dir);
                }
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

/// Gives `dir` and everything in it to `uid`:`gid` for a task's run (symlinks are changed,
/// never followed), `dir` itself with mode 0700.
pub fn hand_over(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    fn walk(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            lchown(&path, Some(uid), Some(gid))?;
            if entry.file_type()?.is_dir() {
                walk(&path, uid, gid)?;
            }
        }
        Ok(())
    }
    walk(dir, uid, gid)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    lchown(dir, Some(uid), Some(gid))
}

/// Takes `dir` back from the tasks' user once its task has ended: the agent's, mode 0700, so
/// that no other process of that user can add to or replace what is in it any more.
pub fn take_back(dir: &Path) -> io::Result<()> {
    // SAFETY: no preconditions, cannot fail.
    let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
    lchown(dir, Some(uid), Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn empty_dirs_are_reused_and_used_ones_removed() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("attempt-7")).unwrap();
        std::fs::write(root.path().join("keep-me"), "x").unwrap();
        let dirs = WorkDirs::new(root.path().to_path_buf(), false).unwrap();
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

    #[tokio::test]
    async fn directories_change_hands_around_a_run() {
        if crate::users::euid() != 0 {
            return; // chown to another user needs root
        }
        let root = tempfile::tempdir().unwrap();
        let dirs = WorkDirs::new(root.path().to_path_buf(), true).unwrap();
        let dir = dirs.acquire().unwrap();
        let meta = |p: &Path| {
            use std::os::unix::fs::MetadataExt;
            let m = std::fs::symlink_metadata(p).unwrap();
            (m.uid(), m.gid(), m.mode() & 0o7777)
        };
        assert_eq!(meta(&dir), (0, 0, 0o700));
        std::fs::create_dir_all(dir.join("inputs/up")).unwrap();
        std::fs::write(dir.join("inputs/up/data.csv"), "x").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.join("inputs/link")).unwrap();
        hand_over(&dir, 54321, 54322).unwrap();
        assert_eq!(meta(&dir), (54321, 54322, 0o700));
        assert_eq!(meta(&dir.join("inputs/up/data.csv")).0, 54321);
        assert_eq!(meta(&dir.join("inputs/link")).0, 54321);
        assert_eq!(
            meta(Path::new("/etc/passwd")).0,
            0,
            "a symlink is not followed"
        );
        take_back(&dir).unwrap();
        assert_eq!(meta(&dir), (0, 0, 0o700));
        std::fs::remove_dir_all(dir.join("inputs")).unwrap();
        dirs.release(dir.clone()).await;
        // Handed over again and left empty: reused, the agent's again.
        hand_over(&dir, 54321, 54322).unwrap();
        assert_eq!(dirs.acquire().unwrap(), dir);
        assert_eq!(meta(&dir), (0, 0, 0o700));
    }
}
