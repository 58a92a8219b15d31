//! The agent's own id, kept in its work directory (`agent-id`, stable across restarts), and
//! the default name made of it: the hostname plus the id's first six characters, so that
//! cloned machines (one hostname) do not fight over one name; and a warning when the token
//! file others can read.

use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// The file in the work directory that holds the id.
pub const ID_FILE: &str = "agent-id";

/// The id kept in `work_dir`, made (16 hex characters, written whole then renamed into place)
/// the first time.
pub fn instance(work_dir: &Path) -> io::Result<String> {
    let path = work_dir.join(ID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) if valid(text.trim()) => return Ok(text.trim().to_owned()),
        Ok(_) => {
            tracing::warn!(file = %path.display(), "agent id file is damaged; making a new id")
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let id = format!("{:016x}", fastrand::u64(..));
    let partial = work_dir.join(format!(".{ID_FILE}.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&partial)?;
    file.write_all(format!("{id}\n").as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&partial, &path)?;
    Ok(id)
}

fn valid(id: &str) -> bool {
    (6..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The name an agent takes when none is given: `HOSTNAME-ID6`.
pub fn default_name(hostname: &str, instance: &str) -> String {
    format!("{hostname}-{}", &instance[..6.min(instance.len())])
}

/// Warns when the token file can be read or written by others than its owner (`mode &
/// 0o077`): anyone who reads it can join the fleet as an agent.
pub fn warn_if_token_file_open(config: &crate::Config) {
    use std::os::unix::fs::PermissionsExt;
    for (setting, path) in &config.secret_files {
        if setting != "token_file" {
            continue;
        }
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    mode = format!("{mode:03o}"),
                    "the token file is readable by other users (mode {mode:03o}); make it the agent user's alone: chmod 600 {}",
                    path.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_id_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = instance(dir.path()).unwrap();
        assert_eq!(first.len(), 16);
        assert_eq!(
            instance(dir.path()).unwrap(),
            first,
            "stable across restarts"
        );
        let other = tempfile::tempdir().unwrap();
        assert_ne!(
            instance(other.path()).unwrap(),
            first,
            "another work dir, another id"
        );
        assert_eq!(
            default_name("host", &first),
            format!("host-{}", &first[..6])
        );
        std::fs::write(dir.path().join(ID_FILE), "not an id!\n").unwrap();
        assert_ne!(
            instance(dir.path()).unwrap(),
            first,
            "a damaged file is replaced"
        );
    }
}
