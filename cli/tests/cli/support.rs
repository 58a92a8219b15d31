//! Running the `ferry` binary against a controller address (exit code, stdout, stderr), and
//! the paths of the repository's example job files.

use std::path::PathBuf;

/// How a `ferry` run ended.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `ferry --controller CONTROLLER ARGS…` (without `FERRY_OUTPUT`) to its end.
pub async fn ferry(controller: &str, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--controller")
        .arg(controller)
        .args(args)
        .env_remove("FERRY_OUTPUT")
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// The path of `examples/NAME` in the repository.
pub fn example(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "examples", name]
        .iter()
        .collect();
    path.display().to_string()
}
