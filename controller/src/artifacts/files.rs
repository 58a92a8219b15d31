//! File-system helpers of the artifact store: walking and removing directories, syncing
//! them, and reopening a staged file after a restart.

use super::*;

/// Every regular file under `dir`, as '/'-separated names relative to it, with its length.
pub(super) fn walk(dir: &Path) -> std::io::Result<Vec<(String, u64)>> {
    let mut files = Vec::new();
    let mut stack = vec![(dir.to_path_buf(), String::new())];
    while let Some((path, prefix)) = stack.pop() {
        let entries = match fs::read_dir(&path) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let name = if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            };
            let meta = entry.metadata()?;
            if meta.is_dir() {
                stack.push((entry.path(), name));
            } else if meta.is_file() {
                files.push((name, meta.len()));
            }
        }
    }
    Ok(files)
}

/// Names of the subdirectories of `dir` (none when it does not exist).
pub(super) fn subdirs(dir: &Path) -> std::io::Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            if let Ok(name) = entry.file_name().into_string() {
                names.push(name);
            }
        }
    }
    Ok(names)
}

pub(super) fn remove_dir(path: &Path) -> Result<(), ArtifactError> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(io("removing", path)(e)),
        _ => Ok(()),
    }
}

pub(super) fn sync_dir(path: &Path) -> Result<(), ArtifactError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", path))
}

/// The length of a staged file, 0 when there is none.
pub(super) fn staged_len(path: &Path) -> Result<u64, ArtifactError> {
    match fs::metadata(path) {
        Ok(meta) => Ok(meta.len()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io("reading", path)(e)),
    }
}

/// Removes a staged file the disk could not hold (closing it) and forgets its state, so that
/// the space is free at once and nothing is left half-written.
pub(super) fn drop_partial(slot: &mut Slot) {
    if let Slot::Open(staged) = std::mem::replace(slot, Slot::Unloaded) {
        let Staged { file, path, .. } = staged;
        drop(file);
        if let Err(e) = fs::remove_file(&path) {
            if e.kind() != ErrorKind::NotFound {
                tracing::warn!(path = %path.display(), error = %e, "removing a partial staged file failed");
            }
        }
    }
}

/// Opens (creating) a staged file: the state of an upload that resumes after a controller
/// restart, from the length the file holds (its chunks were checked as they arrived). A file
/// longer than its declared size is stale and starts over.
pub(super) fn restore(path: &Path, size: u64, sha256: String) -> Result<Staged, ArtifactError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io("creating", dir))?;
    }
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(io("opening", path))?;
    let mut len = file.metadata().map_err(io("reading", path))?.len();
    if len > size {
        file.set_len(0).map_err(io("truncating", path))?;
        len = 0;
    }
    Ok(Staged {
        file,
        path: path.to_path_buf(),
        len,
        size,
        sha256,
    })
}
