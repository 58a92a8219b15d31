//! Locating the Ferry binaries that `cargo build --workspace` put beside the test executable.

use std::{env, path::PathBuf};

pub const CONTROLLER_BIN: &str = "ferry-controller";
pub const AGENT_BIN: &str = "ferry-agent";
pub const CLI_BIN: &str = "ferry";

/// The folder holding the binaries: `FERRY_BIN_DIR` when set (the benchmarks run release
/// binaries), else the target dir of the running executable (`target/<profile>/deps/x` or
/// `target/<profile>/x` → `target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = env::var_os("FERRY_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = env::current_exe().expect("cannot locate the running executable");
    let mut dir = exe
        .parent()
        .expect("the running executable has no parent folder")
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir
}

/// Path of one of the workspace's binaries; panics with what to do when it was not built.
pub fn bin_path(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    if !path.is_file() {
        panic!(
            "binary `{name}` not found at {}: run `cargo build --workspace` (same profile as the \
             tests) first, or set FERRY_BIN_DIR to the folder holding it",
            path.display()
        );
    }
    path
}
