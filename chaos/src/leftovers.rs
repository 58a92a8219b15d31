//! What must not be left once the run is over: processes of the run (a task, anything it
//! started, a guardian, an agent, a controller) — found in the process table by the run's
//! marker in their environment or the run's directory in their command line or working
//! directory — and the datasource's password anywhere in a log or a file of the run.

use std::path::{Path, PathBuf};

use ferry_tests::procs::pid_alive;

/// Processes that belong to the run: `FERRY_PARAM_CHAOS_RUN=<run>` in the environment (every
/// task process and its descendants), or `root` in the command line or working directory.
pub fn processes(run: &str, root: &Path, task_pids: &[i32]) -> (usize, Vec<String>) {
    let marker = format!("FERRY_PARAM_CHAOS_RUN={run}");
    let root_text = root.display().to_string();
    let me = std::process::id() as i32;
    let mut found = Vec::new();
    let mut seen = 0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if pid == me || !pid_alive(pid) {
            continue;
        }
        seen += 1;
        let read = |what: &str| std::fs::read(entry.path().join(what)).unwrap_or_default();
        let environ = read("environ");
        let cmdline = read("cmdline");
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        let ours = environ.split(|&b| b == 0).any(|v| v == marker.as_bytes())
            || contains(&cmdline, root_text.as_bytes())
            || cwd.starts_with(root);
        if ours {
            let shown: Vec<String> = cmdline
                .split(|&b| b == 0)
                .filter(|a| !a.is_empty())
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            found.push(format!("process {pid} still alive: {}", shown.join(" ")));
        }
    }
    for &pid in task_pids {
        if pid_alive(pid)
            && !found
                .iter()
                .any(|f| f.starts_with(&format!("process {pid} ")))
        {
            // A pid reused by someone else is not ours: only report it with our marker.
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            if contains(&environ, marker.as_bytes()) {
                found.push(format!("task process {pid} still alive"));
            }
        }
    }
    (seen, found)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// Files under `root` (logs, stores, data, ledger) holding `secret`, except `exempt` (the
/// file that holds it on purpose); the number of files read.
pub fn secret_in_files(root: &Path, secret: &str, exempt: &Path) -> (usize, Vec<String>) {
    let mut stack: Vec<PathBuf> = vec![root.to_owned()];
    let (mut read, mut found) = (0, Vec::new());
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                stack.push(path);
            } else if kind.is_file() && path != exempt {
                let Ok(bytes) = std::fs::read(&path) else {
                    continue;
                };
                read += 1;
                if contains(&bytes, secret.as_bytes()) {
                    found.push(format!("the password is in {}", path.display()));
                }
            }
        }
    }
    (read, found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_is_found_in_any_file_but_the_exempt_one() {
        let dir = std::env::temp_dir().join(format!("chaos-secret-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("a/b")).unwrap();
        std::fs::write(dir.join("secret"), "s3cr3t").unwrap();
        std::fs::write(dir.join("a/log"), "nothing here").unwrap();
        let (read, found) = secret_in_files(&dir, "s3cr3t", &dir.join("secret"));
        assert_eq!((read, found.len()), (1, 0));
        std::fs::write(dir.join("a/b/log"), "x s3cr3t y").unwrap();
        let (_, found) = secret_in_files(&dir, "s3cr3t", &dir.join("secret"));
        assert_eq!(found.len(), 1, "{found:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_process_with_the_marker_is_found_until_it_is_gone() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env("FERRY_PARAM_CHAOS_RUN", "test-run-x")
            .spawn()
            .unwrap();
        let (_, found) = processes("test-run-x", Path::new("/nonexistent-root"), &[]);
        assert_eq!(found.len(), 1, "{found:?}");
        child.kill().unwrap();
        child.wait().unwrap();
        let (_, found) = processes("test-run-x", Path::new("/nonexistent-root"), &[]);
        assert!(found.is_empty(), "{found:?}");
    }
}
