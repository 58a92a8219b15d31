//! Resolution of a task's declared `outputs` (files or globs relative to its working
//! directory) into the files to upload, refusing anything that escapes the directory.

use std::{
    collections::BTreeMap,
    fs::Metadata,
    io,
    os::unix::fs::MetadataExt,
    path::{Component, Path, PathBuf},
};

use crate::config::format_bytes;

/// The directory staged inputs live in; globs never reach into it (name a staged file
/// explicitly to publish it again).
pub const INPUTS_DIR: &str = "inputs";

/// One file to upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Relative to the working directory, '/'-separated: the `OutputFile.name`.
    pub name: String,
    /// The file itself (symlinks resolved), inside the working directory.
    pub path: PathBuf,
    pub size: u64,
    /// Device and inode checked here; the uploader opens the same file or refuses.
    pub dev: u64,
    pub ino: u64,
    /// Its owner: with `run_as`, a shell task's outputs must be its user's own files.
    pub uid: u32,
}

/// Why outputs could not be resolved; each message names the output and fails the attempt.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutputError {
    #[error("an output name is empty")]
    Empty,
    #[error(
        "output {0:?}: absolute paths are not allowed; name it relative to the working directory"
    )]
    Absolute(String),
    #[error("output {0:?}: \"..\" is not allowed; outputs stay inside the working directory")]
    ParentDir(String),
    #[error("output pattern {0:?} is not a valid glob: {1}")]
    BadPattern(String, String),
    #[error("declared output {0} is missing")]
    Missing(String),
    #[error("output pattern {0} matched no file")]
    NoMatch(String),
    #[error("output {0} is a symlink pointing outside the working directory")]
    SymlinkOutside(String),
    #[error("output {0} escapes the working directory")]
    Escapes(String),
    #[error("output {0} is a directory; name its files or use a glob such as {0}/**/*")]
    Directory(String),
    #[error("output {0} is not a regular file")]
    NotAFile(String),
    #[error("output path {0:?} is not valid UTF-8")]
    NotUtf8(String),
    #[error("outputs total {total} bytes, over the limit of {limit} (max_output_bytes)")]
    TooLarge { total: u64, limit: String },
    #[error("output {0}: {1}")]
    Io(String, String),
}

fn is_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// Refuses a pattern that is empty, absolute or has a `..` component.
fn check_pattern(pattern: &str) -> Result<(), OutputError> {
    if pattern.trim().is_empty() {
        return Err(OutputError::Empty);
    }
    let path = Path::new(pattern);
    if path.is_absolute() {
        return Err(OutputError::Absolute(pattern.to_owned()));
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(OutputError::ParentDir(pattern.to_owned()));
    }
    Ok(())
}

/// Resolves `patterns` inside `dir` into the files to upload, sorted by name, each once.
/// The total size must not pass `max_total`.
pub fn resolve(
    dir: &Path,
    patterns: &[String],
    max_total: u64,
) -> Result<Vec<Output>, OutputError> {
    let root = dir
        .canonicalize()
        .map_err(|e| OutputError::Io(".".into(), format!("working directory: {e}")))?;
    let mut found = BTreeMap::new();
    for pattern in patterns {
        check_pattern(pattern)?;
        if is_glob(pattern) {
            let matched = expand(&root, pattern)?;
            if matched.is_empty() {
                return Err(OutputError::NoMatch(pattern.clone()));
            }
            let mut files = 0;
            for path in matched {
                let name = name_of(&root, &path)?;
                if let Some(output) = check_file(&root, &path, name, true)? {
                    files += 1;
                    found.insert(output.name.clone(), output);
                }
            }
            if files == 0 {
                // Every match was a directory.
                return Err(OutputError::NoMatch(pattern.clone()));
            }
        } else {
            let name = normalize(pattern);
            let path = root.join(&name);
            let output =
                check_file(&root, &path, name, false)?.expect("a declared file is never skipped");
            found.insert(output.name.clone(), output);
        }
    }
    let total = found
        .values()
        .try_fold(0u64, |sum, o| sum.checked_add(o.size));
    match total {
        Some(total) if total <= max_total => Ok(found.into_values().collect()),
        total => Err(OutputError::TooLarge {
            total: total.unwrap_or(u64::MAX),
            limit: format_bytes(max_total),
        }),
    }
}

fn match_options() -> glob::MatchOptions {
    glob::MatchOptions {
        case_sensitive: true,
        // `*` stays within one directory (`**` crosses them) and skips hidden files, as in a
        // shell.
        require_literal_separator: true,
        require_literal_leading_dot: true,
    }
}

/// `./a//b/` → `a/b`.
fn normalize(pattern: &str) -> String {
    Path::new(pattern)
        .components()
        .filter_map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// Paths under `root` matching `pattern`, leaving out the staged inputs.
fn expand(root: &Path, pattern: &str) -> Result<Vec<PathBuf>, OutputError> {
    let bad = |e: glob::PatternError| OutputError::BadPattern(pattern.to_owned(), e.msg.to_owned());
    glob::Pattern::new(pattern).map_err(bad)?;
    let full = format!(
        "{}/{}",
        glob::Pattern::escape(&root.to_string_lossy()),
        normalize(pattern)
    );
    let mut out = Vec::new();
    for entry in glob::glob_with(&full, match_options()).map_err(bad)? {
        let path = entry.map_err(|e| {
            let name = e
                .path()
                .strip_prefix(root)
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| pattern.to_owned());
            OutputError::Io(name, e.error().to_string())
        })?;
        let inside_inputs = path.strip_prefix(root).is_ok_and(|rel| {
            rel.components().next() == Some(Component::Normal(INPUTS_DIR.as_ref()))
        });
        if !inside_inputs {
            out.push(path);
        }
    }
    Ok(out)
}

fn name_of(root: &Path, path: &Path) -> Result<String, OutputError> {
    let rel = path
        .strip_prefix(root)
        .map_err(|_| OutputError::Escapes(path.display().to_string()))?;
    let mut parts = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(s) => parts.push(
                s.to_str()
                    .ok_or_else(|| OutputError::NotUtf8(rel.display().to_string()))?
                    .to_owned(),
            ),
            _ => return Err(OutputError::Escapes(rel.display().to_string())),
        }
    }
    Ok(parts.join("/"))
}

/// Checks one candidate. `Ok(None)` for what a glob skips (a directory).
fn check_file(
    root: &Path,
    path: &Path,
    name: String,
    from_glob: bool,
) -> Result<Option<Output>, OutputError> {
    let io_err = |e: io::Error| OutputError::Io(name.clone(), e.to_string());
    let link = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OutputError::Missing(name));
        }
        // A component on the way is a file, or a symlink loop.
        Err(e) if e.raw_os_error() == Some(nix::libc::ENOTDIR) => {
            return Err(OutputError::Missing(name));
        }
        Err(e) => return Err(io_err(e)),
    };
    let real = match path.canonicalize() {
        Ok(real) => real,
        // A dangling symlink: missing if it pointed inside, refused if it pointed outside.
        Err(e) if e.kind() == io::ErrorKind::NotFound && link.file_type().is_symlink() => {
            return Err(match std::fs::read_link(path) {
                Ok(target) if !lexically_inside(root, path, &target) => {
                    OutputError::SymlinkOutside(name)
                }
                _ => OutputError::Missing(name),
            });
        }
        Err(e) => return Err(io_err(e)),
    };
    if !real.starts_with(root) {
        return Err(if link.file_type().is_symlink() {
            OutputError::SymlinkOutside(name)
        } else {
            OutputError::Escapes(name)
        });
    }
    let meta: Metadata = std::fs::metadata(&real).map_err(io_err)?;
    if meta.is_dir() {
        return if from_glob {
            Ok(None)
        } else {
            Err(OutputError::Directory(name))
        };
    }
    if !meta.is_file() {
        return Err(OutputError::NotAFile(name));
    }
    Ok(Some(Output {
        name,
        path: real,
        size: meta.len(),
        dev: meta.dev(),
        ino: meta.ino(),
        uid: meta.uid(),
    }))
}

/// Whether a symlink at `link` with `target` points inside `root`, by its text alone.
fn lexically_inside(root: &Path, link: &Path, target: &Path) -> bool {
    let joined = match link.parent() {
        Some(parent) if target.is_relative() => parent.join(target),
        _ => target.to_path_buf(),
    };
    let mut parts: Vec<Component> = Vec::new();
    for c in joined.components() {
        match c {
            Component::ParentDir => {
                parts.pop();
            }
            Component::CurDir => {}
            c => parts.push(c),
        }
    }
    parts.iter().collect::<PathBuf>().starts_with(root)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn setup(files: &[(&str, usize)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, size) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, vec![b'x'; *size]).unwrap();
        }
        dir
    }

    fn resolve_in(dir: &tempfile::TempDir, patterns: &[&str]) -> Result<Vec<Output>, OutputError> {
        let patterns: Vec<String> = patterns.iter().map(|p| (*p).to_owned()).collect();
        resolve(dir.path(), &patterns, 1 << 20)
    }

    fn names(outputs: &[Output]) -> Vec<&str> {
        outputs.iter().map(|o| o.name.as_str()).collect()
    }

    #[test]
    fn plain_files_and_globs() {
        let dir = setup(&[
            ("out.csv", 3),
            ("part/a.csv", 1),
            ("part/b.csv", 2),
            ("part/deep/c.csv", 4),
            ("part/.hidden.csv", 1),
            ("empty.txt", 0),
            ("inputs/extract/orders.csv", 5),
        ]);
        let got = resolve_in(&dir, &["./out.csv", "part/*.csv", "empty.txt"]).unwrap();
        assert_eq!(
            names(&got),
            ["empty.txt", "out.csv", "part/a.csv", "part/b.csv"]
        );
        assert_eq!(got[1].size, 3);
        assert_eq!(got[0].size, 0);
        assert!(got[1].path.is_absolute() && got[1].path.ends_with("out.csv"));

        // `**` crosses directories; a file matched twice is listed once; staged inputs and
        // directories are not matched by globs.
        let got = resolve_in(&dir, &["**/*.csv", "out.csv"]).unwrap();
        assert_eq!(
            names(&got),
            ["out.csv", "part/a.csv", "part/b.csv", "part/deep/c.csv"]
        );
        let got = resolve_in(&dir, &["part/*"]).unwrap();
        assert_eq!(names(&got), ["part/a.csv", "part/b.csv"]);
        // A staged input can still be named explicitly.
        let got = resolve_in(&dir, &["inputs/extract/orders.csv"]).unwrap();
        assert_eq!(names(&got), ["inputs/extract/orders.csv"]);
    }

    #[test]
    fn missing_and_unmatched_are_errors() {
        let dir = setup(&[("a.txt", 1), ("sub/x", 1)]);
        assert_eq!(
            resolve_in(&dir, &["a.txt", "out.csv"])
                .unwrap_err()
                .to_string(),
            "declared output out.csv is missing"
        );
        assert_eq!(
            resolve_in(&dir, &["a.txt/inner"]).unwrap_err(),
            OutputError::Missing("a.txt/inner".into())
        );
        assert_eq!(
            resolve_in(&dir, &["*.csv"]).unwrap_err().to_string(),
            "output pattern *.csv matched no file"
        );
        // Matching only a directory is matching no file.
        assert_eq!(
            resolve_in(&dir, &["su*"]).unwrap_err(),
            OutputError::NoMatch("su*".into())
        );
        assert_eq!(
            resolve_in(&dir, &["sub"]).unwrap_err().to_string(),
            "output sub is a directory; name its files or use a glob such as sub/**/*"
        );
        assert!(matches!(
            resolve_in(&dir, &["[a"]).unwrap_err(),
            OutputError::BadPattern(..)
        ));
    }

    #[test]
    fn escapes_are_refused() {
        let dir = setup(&[("a.txt", 1), ("sub/b.txt", 1)]);
        for pattern in ["../x", "sub/../../x", "sub/../a.txt", "../*"] {
            assert_eq!(
                resolve_in(&dir, &[pattern]).unwrap_err(),
                OutputError::ParentDir(pattern.into()),
                "{pattern}"
            );
        }
        assert_eq!(
            resolve_in(&dir, &["/etc/passwd"]).unwrap_err(),
            OutputError::Absolute("/etc/passwd".into())
        );

        symlink("/etc/passwd", dir.path().join("passwd")).unwrap();
        assert_eq!(
            resolve_in(&dir, &["passwd"]).unwrap_err().to_string(),
            "output passwd is a symlink pointing outside the working directory"
        );
        assert_eq!(
            resolve_in(&dir, &["pass*"]).unwrap_err(),
            OutputError::SymlinkOutside("passwd".into())
        );
        // Through a symlinked directory.
        symlink("/etc", dir.path().join("etc")).unwrap();
        assert_eq!(
            resolve_in(&dir, &["etc/passwd"]).unwrap_err(),
            OutputError::Escapes("etc/passwd".into())
        );
        // Dangling, pointing outside.
        symlink("/nonexistent/ferry", dir.path().join("gone")).unwrap();
        assert_eq!(
            resolve_in(&dir, &["gone"]).unwrap_err(),
            OutputError::SymlinkOutside("gone".into())
        );
        // A symlink that stays inside is fine; its name is the link's.
        symlink("sub/b.txt", dir.path().join("link.txt")).unwrap();
        let got = resolve_in(&dir, &["link.txt"]).unwrap();
        assert_eq!(names(&got), ["link.txt"]);
        assert!(got[0].path.ends_with("sub/b.txt"));
    }

    #[test]
    fn special_files_are_refused() {
        let dir = setup(&[]);
        let made = std::process::Command::new("mkfifo")
            .arg(dir.path().join("fifo"))
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(
            resolve_in(&dir, &["fifo"]).unwrap_err(),
            OutputError::NotAFile("fifo".into())
        );
    }

    #[test]
    fn size_limit_names_the_limit() {
        let dir = setup(&[("a", 600 << 10), ("b", 500 << 10)]);
        assert_eq!(resolve_in(&dir, &["a"]).unwrap().len(), 1);
        let e = resolve_in(&dir, &["a", "b"]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "outputs total 1126400 bytes, over the limit of 1 MiB (max_output_bytes)"
        );
    }
}
