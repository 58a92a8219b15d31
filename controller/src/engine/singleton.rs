//! Singleton roles (the reaper of dead agents, artifact retention): each runs on one controller
//! at a time, under the store's leadership lock (`Store::lead`). Every controller keeps asking;
//! when the holder dies or loses its database connection the lock is freed and another
//! controller takes the role within about `ASK_EVERY`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// How often a controller without the role asks for it.
const ASK_EVERY: Duration = Duration::from_millis(500);
/// How often the holder checks that it still holds the role.
const CHECK_EVERY: Duration = Duration::from_millis(500);

/// Runs `body` whenever this controller holds `role`, until `shutdown`. `body` gets a token
/// cancelled when the role is lost, and must then return promptly.
pub async fn run<F, Fut>(
    store: Arc<dyn Store>,
    role: &'static str,
    shutdown: CancellationToken,
    mut body: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()>,
{
    let mut failures = 0u32;
    loop {
        let lead = tokio::select! {
            lead = store.lead(role) => lead,
            _ = shutdown.cancelled() => return,
        };
        match lead {
            Ok(Some(mut held)) => {
                failures = 0;
                tracing::info!(role, "this controller took the role");
                let token = shutdown.child_token();
                let work = body(token.clone());
                tokio::pin!(work);
                let mut check = tokio::time::interval(CHECK_EVERY);
                check.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        () = &mut work => return,
                        _ = check.tick() => {
                            if !held.still_held().await {
                                tracing::warn!(role, "lost the role (its database connection broke); another controller may take it");
                                token.cancel();
                                work.await;
                                break;
                            }
                        }
                    }
                }
            }
            Ok(None) => failures = 0,
            Err(e) => {
                failures += 1;
                if failures == 1 || failures.is_multiple_of(60) {
                    tracing::warn!(role, error = %e, "could not ask the store for the role; will retry");
                }
            }
        }
        let pause = ASK_EVERY.mul_f64(0.75 + fastrand::f64() / 2.0);
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
