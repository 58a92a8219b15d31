//! The gRPC port's connections, before tonic sees them: our own accept loop (`accept`), a cap
//! on open connections, and a deadline by which each one must have finished its TLS handshake
//! and sent the HTTP/2 client preface (`handshake`). Only connections that did reach tonic, so
//! a client that connects and never speaks holds a file descriptor for `handshake_timeout` at
//! most, and never more than `max_connections` of them at once.

pub mod accept;
pub mod handshake;
mod throttle;

use std::time::Duration;

/// File descriptors kept out of `max_connections`'s reach: the store (SQLite's database, WAL
/// and shared memory per connection, or the PostgreSQL pool and its listener), artifact files
/// being staged, published or read, the log, the listening socket, the runtime's epoll and
/// wake-up descriptors, and the connection that is accepted only to be closed at the cap.
pub const RESERVED_FDS: u64 = 256;

/// `max_connections` when the open-file limit cannot be read: the usual soft limit, 1,024,
/// less `RESERVED_FDS`.
pub const DEFAULT_MAX_CONNECTIONS: usize = 768;

/// The fewest connections the default allows, however low the open-file limit.
const MIN_DEFAULT_CONNECTIONS: u64 = 64;

/// Default of `max_connections`: the process's soft open-file limit less `RESERVED_FDS` (an
/// agent holds one connection, so a controller under the systemd unit's `LimitNOFILE=65536`
/// serves tens of thousands), `DEFAULT_MAX_CONNECTIONS` when the limit cannot be read.
pub fn default_max_connections() -> usize {
    open_file_limit().map_or(DEFAULT_MAX_CONNECTIONS, |n| {
        n.saturating_sub(RESERVED_FDS)
            .clamp(MIN_DEFAULT_CONNECTIONS, MAX_MAX_CONNECTIONS as u64) as usize
    })
}

/// Default of `handshake_timeout`.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The shortest `handshake_timeout`: a TLS handshake over a slow link takes a few round trips.
pub const MIN_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(1);

/// Most connections `max_connections` may allow.
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;

/// How many client connections may be open, and how long a new one has to start speaking.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once, served or still in their handshake; one more is closed as
    /// soon as it is accepted.
    pub max_connections: usize,
    /// From accept to the end of the TLS handshake (with TLS) and the HTTP/2 client preface.
    pub handshake_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_connections: default_max_connections(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The process's soft limit of open files, when it can be read.
pub fn open_file_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own and reads nothing else.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Warns when `max_connections` and the reserve do not fit under the open-file limit: the
/// cap would then not keep the controller from running out of descriptors.
pub fn check_open_file_limit(limits: &ConnectionLimits) {
    let Some(nofile) = open_file_limit() else {
        return;
    };
    let needed = limits.max_connections as u64 + RESERVED_FDS;
    if needed > nofile {
        tracing::warn!(
            max_connections = limits.max_connections,
            reserved = RESERVED_FDS,
            open_file_limit = nofile,
            "max_connections and the descriptors the controller keeps for itself exceed the open-file limit: raise LimitNOFILE (ulimit -n) or lower --max-connections"
        );
    }
}

/// Connections that finished their handshake and wait for tonic to take them.
const READY_QUEUE: usize = 64;

/// Serves `router` on `listener` until `shutdown`, each connection through the accept loop
/// and its handshake first; TLS with `tls`.
pub async fn serve(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    tls: Option<&ferry_tls::ServerTls>,
    limits: ConnectionLimits,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), tonic::transport::Error> {
    match tls {
        None => {
            serve_with(
                router,
                listener,
                handshake::Plain,
                limits,
                tracker,
                shutdown,
            )
            .await
        }
        Some(tls) => {
            let tls = handshake::Tls::new(tls);
            serve_with(router, listener, tls, limits, tracker, shutdown).await
        }
    }
}

async fn serve_with<S: handshake::Secure>(
    router: tonic::transport::server::Router,
    listener: tokio::net::TcpListener,
    secure: S,
    limits: ConnectionLimits,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: &tokio_util::sync::CancellationToken,
) -> Result<(), tonic::transport::Error> {
    use tokio_stream::StreamExt;

    let (ready, incoming) = tokio::sync::mpsc::channel(READY_QUEUE);
    tracker.spawn(accept::run(
        listener,
        secure,
        limits,
        ready,
        tracker.clone(),
        shutdown.clone(),
    ));
    let incoming = tokio_stream::wrappers::ReceiverStream::new(incoming)
        .map(Ok::<_, std::convert::Infallible>);
    router
        .serve_with_incoming_shutdown(incoming, shutdown.cancelled())
        .await
}
