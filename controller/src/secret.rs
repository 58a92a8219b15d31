//! A secret the controller holds — the agents' and clients' tokens, the store's password, the
//! object store's keys — as a value that never shows in logs or `Debug` output; and the warning
//! for a file of secrets that other users can read.

/// A secret that never shows in logs or `Debug` output.
#[derive(Clone)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Warns, naming the setting and the remedy, for each file of secrets that other users than
/// its owner may read or write (`mode & 0o077`): whoever reads an agent token can join the
/// fleet, a client token submit commands, the store's password rewrite the record.
pub fn warn_if_readable_by_others(files: &[(&'static str, std::path::PathBuf)]) {
    use std::os::unix::fs::PermissionsExt;
    for (setting, path) in files {
        let Ok(meta) = std::fs::metadata(path) else {
            continue;
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                setting,
                file = %path.display(),
                "{setting} {} is readable by other users (mode {mode:03o}); make it the controller user's alone: chmod 600 {}",
                path.display(),
                path.display()
            );
        }
    }
}
