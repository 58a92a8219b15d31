//! What the README and the quickstart promise (issue 19, item 7): the README names every flag
//! `ferry-controller --help` prints, so that the list cannot drift; the quickstart refuses a
//! port another process listens on, before it builds or starts anything.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use ferry_tests::{bin_path, CONTROLLER_BIN};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("ferry-tests lives in the workspace")
        .to_path_buf()
}

/// Every `--flag` at the start of a `--help` line.
fn flags(help: &str) -> Vec<String> {
    help.lines()
        .filter_map(|l| {
            let l = l.trim_start();
            let l = l
                .strip_prefix("-h, ")
                .or(l.strip_prefix("-V, "))
                .unwrap_or(l);
            let flag: String = l
                .strip_prefix("--")?
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            Some(format!("--{flag}"))
        })
        .filter(|f| f != "--help" && f != "--version")
        .collect()
}

#[test]
fn the_readme_lists_every_flag_of_the_controller() {
    let out = Command::new(bin_path(CONTROLLER_BIN))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8(out.stdout).unwrap();
    let flags = flags(&help);
    assert!(flags.len() >= 20, "{flags:?}");
    assert!(help.contains("[env: FERRY_LOG_LIMIT"), "{help}");
    assert!(help.contains("RUST_LOG"), "{help}");
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let named = |flag: &str| {
        readme.match_indices(flag).any(|(i, _)| {
            !readme[i + flag.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphanumeric() || c == '-')
        })
    };
    let missing: Vec<&String> = flags.iter().filter(|f| !named(f)).collect();
    assert!(missing.is_empty(), "README.md does not name {missing:?}");
}

#[test]
fn the_quickstart_refuses_a_port_in_use_before_doing_anything() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let started = Instant::now();
    let out = Command::new(root().join("scripts/quickstart"))
        .env("FERRY_PORT", port.to_string())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "quickstart: port {port} on 127.0.0.1 is in use by another process"
        )) && stderr.contains("choose a free port: FERRY_PORT=NNNN"),
        "{stderr}"
    );
    // Refused before the build and before any process was started.
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("==> building"));
}
