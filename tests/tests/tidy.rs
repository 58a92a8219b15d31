//! Tidy checks of the source tree (like rust-analyzer's `tidy`): every Rust file the repository
//! tracks stays at most `MAX_LINES` long and opens with its `//!` module doc line, and no two
//! sibling modules import each other, directly or around a loop (see `tidy/cycles.rs` for what
//! counts as an import, and which test code is left out). No process is started; the test reads
//! the files and takes milliseconds.

#[path = "tidy/cycles.rs"]
mod cycles;
#[cfg(test)]
#[path = "tidy/cycles_tests.rs"]
mod cycles_tests;
#[path = "tidy/scan.rs"]
mod scan;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The most lines a Rust file may have; the aim is under 500 (issue 15).
const MAX_LINES: usize = 600;

/// The workspace's root: the parent of this crate's directory.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ferry-tests lives in the workspace")
        .to_path_buf()
}

/// The Rust files git tracks (relative to `root`), or, without git, every `*.rs` file under the
/// root outside `target/` and hidden directories.
fn rust_files(root: &Path) -> Vec<PathBuf> {
    let listed = Command::new("git")
        .args(["ls-files", "-z", "--", "*.rs"])
        .current_dir(root)
        .output();
    if let Ok(out) = listed {
        if out.status.success() {
            return out
                .stdout
                .split(|&b| b == 0)
                .filter(|p| !p.is_empty())
                .map(|p| PathBuf::from(String::from_utf8_lossy(p).into_owned()))
                .collect();
        }
    }
    let mut files = Vec::new();
    let mut dirs = vec![PathBuf::new()];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(root.join(&dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let rel = dir.join(&*name);
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    dirs.push(rel);
                }
            } else if name.ends_with(".rs") {
                files.push(rel);
            }
        }
    }
    files
}

/// What is wrong with one file's text, if anything.
fn problems(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines = text.lines().count();
    if lines > MAX_LINES {
        out.push(format!(
            "{lines} lines, more than {MAX_LINES}: split it into submodules"
        ));
    }
    if !text.lines().next().is_some_and(|l| l.starts_with("//!")) {
        out.push("its first line is not a `//!` module doc comment".to_owned());
    }
    out
}

#[test]
fn every_rust_file_is_short_and_says_what_it_is() {
    let root = workspace_root();
    let files = rust_files(&root);
    assert!(!files.is_empty(), "no Rust files found under {root:?}");
    let mut offenders = Vec::new();
    for file in &files {
        // A file git tracks but the working tree has deleted is not checked.
        let Ok(text) = std::fs::read_to_string(root.join(file)) else {
            continue;
        };
        for problem in problems(&text) {
            offenders.push(format!("{}: {problem}", file.display()));
        }
    }
    assert!(
        offenders.is_empty(),
        "{} problem(s) in {} Rust files:\n{}",
        offenders.len(),
        files.len(),
        offenders.join("\n")
    );
}

#[test]
fn the_checks_catch_a_long_file_and_a_missing_doc_line() {
    assert!(problems("//! A module.\nfn f() {}\n").is_empty());
    assert_eq!(problems("fn f() {}\n").len(), 1);
    assert_eq!(problems("").len(), 1);
    let long = format!("//! Long.\n{}", "\n".repeat(MAX_LINES));
    assert_eq!(problems(&long).len(), 1);
    let at_limit = format!("//! At the limit.\n{}", "\n".repeat(MAX_LINES - 1));
    assert!(problems(&at_limit).is_empty());
}

/// Import cycles between sibling modules known and not yet broken, by directory and the modules
/// of the cycle (sorted), each with why it stays for now. Remove an entry when its cycle is
/// broken; add none without saying why.
const ALLOWED_CYCLES: &[(&str, &[&str])] = &[];

#[test]
fn no_import_cycle_between_sibling_modules() {
    let root = workspace_root();
    let files: Vec<(String, String)> = rust_files(&root)
        .into_iter()
        .filter_map(|file| {
            let text = std::fs::read_to_string(root.join(&file)).ok()?;
            Some((file.to_string_lossy().into_owned(), text))
        })
        .collect();
    assert!(
        files.len() > 100,
        "only {} Rust files found under {root:?}",
        files.len()
    );
    let found = cycles::find(&files);
    for cycle in &found {
        println!("{cycle}");
    }
    let allowed = |c: &cycles::Cycle, (dir, modules): &(&str, &[&str])| {
        let mut found: Vec<&str> = c.modules.iter().map(String::as_str).collect();
        found.sort_unstable();
        c.dir == *dir && found == *modules
    };
    let stale: Vec<_> = ALLOWED_CYCLES
        .iter()
        .filter(|entry| !found.iter().any(|c| allowed(c, entry)))
        .collect();
    assert!(
        stale.is_empty(),
        "allowed cycles no longer found (broken: remove them from ALLOWED_CYCLES): {stale:?}"
    );
    let offenders: Vec<String> = found
        .iter()
        .filter(|c| !ALLOWED_CYCLES.iter().any(|entry| allowed(c, entry)))
        .map(ToString::to_string)
        .collect();
    assert!(
        offenders.is_empty(),
        "{} import cycle(s) between sibling modules: make the dependency point one way (move the \
         shared code down into a module both use, or the type to the module that owns it):\n{}",
        offenders.len(),
        offenders.join("")
    );
}
