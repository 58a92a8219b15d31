//! The controller's one HTTP/1.1 listener (`--http-listen`, off by default): webhook triggers
//! at `/hooks/` today, routes added by others through `router::Router`. Bounded: at most
//! `max_connections` open (one more is closed at once), request headers within
//! `MAX_HEADER_BYTES` and `HEADER_TIMEOUT`, bodies within `BodyLimits` (413, 408), TLS with
//! the gRPC port's settings when it has them; on shutdown it stops accepting and lets each
//! connection finish its request for at most `DRAIN_TIMEOUT`. Every task is on the
//! controller's tracker.

pub mod auth;
pub mod hooks;
pub mod router;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use router::{BodyLimits, Router};

/// Connections open at once.
pub const MAX_CONNECTIONS: usize = 256;
/// A request's line and headers: hyper's buffer (its smallest is 8 KiB).
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// From a connection's first byte (or its previous answer) to the end of its headers.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A TLS handshake.
pub const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// A request body: 1 MiB, read within 10 s.
pub const BODY_LIMITS: BodyLimits = BodyLimits {
    max_bytes: 1 << 20,
    read_timeout: Duration::from_secs(10),
};
/// How long a connection may take to finish its request once shutdown began.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `router` on `listener` until `shutdown`, with TLS when `tls` is given.
pub async fn serve(
    listener: TcpListener,
    tls: Option<ferry_tls::ServerTls>,
    router: Router,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let acceptor = tls.map(|tls| {
        // HTTP/1.1 by ALPN here (the gRPC port offers h2 alone).
        let mut config = (*tls.config()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        tokio_rustls::TlsAcceptor::from(Arc::new(config))
    });
    let router = Arc::new(router);
    let places = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::debug!(error = %e, "http: accept failed");
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    }
                }
            },
        };
        let Ok(place) = places.clone().try_acquire_owned() else {
            tracing::debug!(%peer, max_connections = MAX_CONNECTIONS, "http: at the connection cap, closed");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let (router, shutdown, acceptor) = (router.clone(), shutdown.clone(), acceptor.clone());
        tracker.spawn(async move {
            let _place = place;
            match acceptor {
                None => connection(tcp, peer, router, shutdown).await,
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => connection(stream, peer, router, shutdown).await,
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "http: TLS handshake"),
                        Err(_) => tracing::debug!(%peer, "http: no TLS handshake in time"),
                    }
                }
            }
        });
    }
}

/// Serves one connection's requests until it closes, or until shutdown and then its request
/// in flight for `DRAIN_TIMEOUT` at most.
async fn connection<S>(
    stream: S,
    peer: SocketAddr,
    router: Arc<Router>,
    shutdown: CancellationToken,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |request| {
        let router = router.clone();
        async move { Ok::<_, Infallible>(router.dispatch(request, &BODY_LIMITS).await) }
    });
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let outcome = tokio::select! {
        outcome = conn.as_mut() => outcome,
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            match tokio::time::timeout(DRAIN_TIMEOUT, conn.as_mut()).await {
                Ok(outcome) => outcome,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = outcome {
        tracing::debug!(%peer, error = %e, "http: connection ended");
    }
}
