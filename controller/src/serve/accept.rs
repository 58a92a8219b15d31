//! The accept loop of the gRPC port: each connection takes a place under the cap (or is
//! closed at once when there is none), then gets its handshake on a task of its own, and
//! reaches tonic through `ready` only once it has spoken. Runs until shutdown; every task it
//! starts is on the controller's tracker and ends with shutdown too.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::handshake::{self, Connection, HandshakeError, Secure};
use super::throttle::{Throttle, LOG_EVERY};
use super::ConnectionLimits;

/// How long accept rests after failing for lack of descriptors (EMFILE, ENFILE) or memory,
/// rather than failing again at once in a loop: until then, connections wait in the backlog.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts connections until `shutdown`, handing those that finished their handshake to
/// `ready`.
pub async fn run<S: Secure>(
    listener: TcpListener,
    secure: S,
    limits: ConnectionLimits,
    ready: mpsc::Sender<Connection<S::Stream>>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let places = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused = Throttle::new(LOG_EVERY);
    let mut starved = Throttle::new(LOG_EVERY);
    let timed_out = Arc::new(Mutex::new(Throttle::new(LOG_EVERY)));
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            // The peer gave up before we took it: nothing to wait for.
            Err(e) if is_peer_gone(&e) => {
                tracing::debug!(error = %e, "a connection ended before it was accepted");
                continue;
            }
            Err(e) => {
                if let Some(failures) = starved.event(Instant::now()) {
                    tracing::warn!(error = %e, failures, max_connections = limits.max_connections, backoff = ?ACCEPT_BACKOFF, "cannot accept connections (out of file descriptors? see LimitNOFILE); retrying");
                }
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(ACCEPT_BACKOFF) => continue,
                }
            }
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            if let Some(refused) = refused.event(Instant::now()) {
                tracing::warn!(%peer, refused, max_connections = limits.max_connections, "at the connection cap: new connections are closed at once (see --max-connections)");
            }
            drop(tcp);
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "setting TCP_NODELAY");
        }
        let secure = secure.clone();
        let ready = ready.clone();
        let shutdown = shutdown.clone();
        let timed_out = timed_out.clone();
        tracker.spawn(async move {
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return,
                outcome = handshake::handshake(&secure, tcp, limits.handshake_timeout) => outcome,
            };
            match outcome {
                Ok(stream) => {
                    let connection = Connection::new(stream, place);
                    tokio::select! {
                        _ = shutdown.cancelled() => {}
                        _ = ready.send(connection) => {}
                    }
                }
                Err(e @ HandshakeError::Timeout(_)) => {
                    tracing::debug!(%peer, error = %e, "closing a connection");
                    let due = timed_out
                        .lock()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .event(Instant::now());
                    if let Some(closed) = due {
                        tracing::info!(%peer, closed, timeout = ?limits.handshake_timeout, "closed connections that did not start speaking HTTP/2 in time (see --handshake-timeout)");
                    }
                }
                Err(e) => tracing::debug!(%peer, error = %e, "closing a connection"),
            }
        });
    }
}

/// Accept failed because of that one connection, not for want of a resource.
fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}
