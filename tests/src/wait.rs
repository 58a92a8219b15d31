//! Polling until a condition holds. The timeout is only an upper bound, so that a broken build
//! fails instead of hanging; nothing here sleeps to let something happen.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use anyhow::{bail, Result};

/// Pause between two checks of a condition.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` every [`POLL_INTERVAL`] until it returns `Ok(Some(_))`. Errors are retried
/// too (a process may not be listening yet); after `timeout`, fails naming `what` and the last
/// error or value seen.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        if Instant::now() >= deadline {
            match last_error {
                Some(e) => {
                    bail!("timed out after {timeout:?} waiting for {what}; last error: {e:#}")
                }
                None => bail!("timed out after {timeout:?} waiting for {what}"),
            }
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}
