//! Names and ids that become paths under the artifact store: output names (relative,
//! '/'-separated, never escaping), job and task ids, and the hex form of digests.

use super::*;

pub(super) fn io(
    what: impl std::fmt::Display,
    path: &Path,
) -> impl FnOnce(std::io::Error) -> ArtifactError {
    let what = format!("{what} {}", path.display());
    move |source| ArtifactError::Io { what, source }
}

/// Checks an output name: a relative, '/'-separated path that stays inside its directory.
pub fn check_name(name: &str) -> Result<(), ArtifactError> {
    let problem = if name.is_empty() {
        Some("empty")
    } else if name.contains('\0') {
        Some("contains NUL")
    } else if name.contains('\\') {
        Some("contains a backslash (use '/')")
    } else if name.starts_with('/') {
        Some("absolute (must be relative to the working directory)")
    } else if name.split('/').any(|c| c == "..") {
        Some("contains '..'")
    } else if name.split('/').any(|c| c.is_empty() || c == ".") {
        Some("has an empty or '.' component")
    } else if name.len() > 4096 {
        Some("longer than 4096 bytes")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(ArtifactError::InvalidName {
            name: name.to_string(),
            problem,
        }),
        None => Ok(()),
    }
}

/// Checks that a job or task id is one safe path component.
pub(super) fn check_id(what: &'static str, value: &str) -> Result<(), ArtifactError> {
    if value.is_empty()
        || value == "."
        || value == ".."
        || value.contains(['/', '\\', '\0'])
        || value.len() > 255
    {
        return Err(ArtifactError::InvalidId {
            what,
            value: value.to_string(),
        });
    }
    Ok(())
}

pub(super) fn check_key(key: &AttemptKey) -> Result<(), ArtifactError> {
    check_id("job id", &key.job_id)?;
    check_id("task id", &key.task_id)
}

/// Checks that a declared SHA-256 is 64 hex digits.
pub(super) fn check_sha256(name: &str, sha256: &str) -> Result<(), ArtifactError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ArtifactError::InvalidSha256 {
            name: name.to_string(),
            sha256: sha256.chars().take(80).collect(),
        });
    }
    Ok(())
}

/// What both stores check of a completion's declared outputs before looking at any bytes:
/// the attempt's ids, each name, no name twice, each SHA-256 well formed.
pub(super) fn check_declared(
    key: &AttemptKey,
    outputs: &[OutputFile],
) -> Result<(), ArtifactError> {
    check_key(key)?;
    let mut seen = std::collections::HashSet::new();
    for output in outputs {
        check_name(&output.name)?;
        if !seen.insert(output.name.as_str()) {
            return Err(ArtifactError::Duplicate {
                name: output.name.clone(),
            });
        }
        check_sha256(&output.name, &output.sha256)?;
    }
    Ok(())
}

/// Checks that the store holds as many bytes of an output as its completion declares.
pub(super) fn check_size(output: &OutputFile, held: u64) -> Result<(), ArtifactError> {
    if held != output.size {
        return Err(ArtifactError::Incomplete {
            name: output.name.clone(),
            received: held,
            size: output.size,
        });
    }
    Ok(())
}

pub(super) fn hex(digest: &[u8]) -> String {
    use std::fmt::Write;
    digest.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}
