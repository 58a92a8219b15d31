//! One controller per SQLite store: the controller holds an exclusive lock on `<store>.lock`
//! for as long as it runs, so a second controller started on the same data directory stops at
//! once, naming it, instead of sharing the file and stranding tasks. The lock is the kernel's
//! (`flock`): it goes with the process, however it ends, and a stale lock file locks nothing.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreLockError {
    #[error("another controller is using the store {store} (it holds {lock}): stop it first, or give this one its own --data-dir; several controllers share a postgres:// store, not a SQLite file")]
    InUse { store: PathBuf, lock: PathBuf },
    #[error("locking the store {store} ({lock}): {source}")]
    Io {
        store: PathBuf,
        lock: PathBuf,
        source: std::io::Error,
    },
}

/// Held for the controller's life; the lock is released when this is dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

/// Takes the lock of the SQLite store at `store`, creating its directory if needed.
pub fn hold(store: &Path) -> Result<StoreLock, StoreLockError> {
    let mut lock = store.as_os_str().to_owned();
    lock.push(".lock");
    let lock = PathBuf::from(lock);
    let io = |source| StoreLockError::Io {
        store: store.to_path_buf(),
        lock: lock.clone(),
        source,
    };
    if let Some(dir) = lock.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(StoreLock { _file: file }),
        Err(TryLockError::WouldBlock) => Err(StoreLockError::InUse {
            store: store.to_path_buf(),
            lock,
        }),
        Err(TryLockError::Error(e)) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("data/ferry.db");
        let first = hold(&store).unwrap();
        let e = hold(&store).unwrap_err().to_string();
        assert!(
            e.contains("another controller") && e.contains("ferry.db"),
            "{e}"
        );
        drop(first);
        hold(&store).unwrap();
    }
}
