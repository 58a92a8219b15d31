//! The data directory that several controllers of one store must share. The first controller
//! to start on a store writes a random identity into its artifact directory
//! (`.ferry-store-id`) and binds it in the store; every later one must find the same identity
//! in its own directory, or it would keep outputs that the other controllers cannot read.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::store::{Store, StoreError};

/// The setting that holds the shared directory's identity.
const SETTING: &str = "artifacts.data_dir_id";
/// The identity's file, in the artifact directory.
const FILE: &str = ".ferry-store-id";

#[derive(Debug, thiserror::Error)]
pub enum SharedDirError {
    #[error("the data directory {dir} is not the one the other controllers of this store use (it holds {found:?}, they use {bound:?}): give every controller the same shared directory with --data-dir (an NFS mount, say), or keep artifacts in an object store with --artifacts s3://BUCKET/PREFIX")]
    NotShared {
        dir: PathBuf,
        found: Option<String>,
        bound: String,
    },
    #[error("the data directory {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks (and on the first start, binds) that `root` is the artifact directory every
/// controller of `store` shares.
pub async fn check(store: &dyn Store, root: &Path) -> Result<(), SharedDirError> {
    let io = |source| SharedDirError::Io {
        dir: root.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(root).map_err(io)?;
    let path = root.join(FILE);
    let found = match std::fs::read_to_string(&path) {
        Ok(text) => Some(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io(e)),
    };
    let candidate = found
        .clone()
        .unwrap_or_else(|| uuid::Uuid::now_v7().simple().to_string());
    let bound = store.bind_setting(SETTING, &candidate).await?;
    if found.as_deref() == Some(bound.as_str()) {
        return Ok(());
    }
    if found.is_none() && bound == candidate {
        // This controller is the first: the directory takes the identity it bound.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(io)?;
        file.write_all(candidate.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)?;
        return Ok(());
    }
    Err(SharedDirError::NotShared {
        dir: root.to_path_buf(),
        found,
        bound,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_the_directory_the_first_controller_bound_is_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&tmp.path().join("ferry.db"))
            .await
            .unwrap();
        let shared = tmp.path().join("shared");
        check(&store, &shared).await.unwrap();
        // A second controller on the same directory, and the first after a restart.
        check(&store, &shared).await.unwrap();
        // A controller with a directory of its own is refused, naming the way out.
        let own = tmp.path().join("own");
        let e = check(&store, &own).await.unwrap_err().to_string();
        assert!(e.contains("--data-dir") && e.contains("s3://"), "{e}");
        assert!(
            !own.join(FILE).exists(),
            "a refused directory is left unmarked"
        );
        // A directory bound to another store is refused too.
        std::fs::write(shared.join(FILE), "someone-else").unwrap();
        assert!(matches!(
            check(&store, &shared).await,
            Err(SharedDirError::NotShared { .. })
        ));
    }
}
