//! Submitting a job through the CLI across controller outages: the same idempotency key on
//! every try, so that a submit whose answer was lost is one job, not two.

use std::{path::Path, time::Duration};

use anyhow::{bail, Result};
use ferry_tests::{job_id_of, Cli};

/// How long a job may take to be accepted before the run gives up.
const PATIENCE: Duration = Duration::from_secs(180);

/// `ferry submit FILE --idempotency-key KEY`, tried again while the controllers cannot be
/// reached (exit code 3); the job's id.
pub async fn submit(cli: &Cli, file: &Path, key: &str) -> Result<String> {
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let out = cli
            .run([
                "submit",
                &file.display().to_string(),
                "--idempotency-key",
                key,
            ])
            .await?;
        match out.code {
            0 => return job_id_of(&out),
            3 if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            _ => bail!("submitting {} (key {key}): {out}", file.display()),
        }
    }
}
