//! What a connection must do before tonic gets it: finish the TLS handshake (when the port
//! serves TLS) and send the 24 bytes of the HTTP/2 client preface, both within the deadline.
//! The preface is read and checked here, then given back to hyper by `Connection`, which
//! also holds the connection's place under the cap for as long as it is open.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tonic::transport::server::Connected;

/// The HTTP/2 client preface (RFC 9113, section 3.4): the first bytes of every gRPC call's
/// connection.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Why a new connection was closed before tonic saw it.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no TLS handshake and HTTP/2 preface within the handshake timeout ({0:?})")]
    Timeout(Duration),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("reading the HTTP/2 preface: {0}")]
    Read(io::Error),
    #[error("not HTTP/2: the connection did not start with the HTTP/2 client preface")]
    NotHttp2,
}

/// How an accepted TCP connection is secured before it speaks HTTP/2.
pub trait Secure: Clone + Send + Sync + 'static {
    type Stream: AsyncRead + AsyncWrite + Connected + Unpin + Send + 'static;

    fn secure(&self, tcp: TcpStream) -> impl Future<Output = io::Result<Self::Stream>> + Send;
}

/// Plain HTTP/2: the TCP connection itself.
#[derive(Clone, Debug)]
pub struct Plain;

impl Secure for Plain {
    type Stream = TcpStream;

    async fn secure(&self, tcp: TcpStream) -> io::Result<TcpStream> {
        Ok(tcp)
    }
}

/// TLS with the port's settings (`ferry_tls::server_config`).
#[derive(Clone)]
pub struct Tls(tokio_rustls::TlsAcceptor);

impl Tls {
    pub fn new(tls: &ferry_tls::ServerTls) -> Self {
        Self(tokio_rustls::TlsAcceptor::from(tls.config()))
    }
}

impl Secure for Tls {
    type Stream = tokio_rustls::server::TlsStream<TcpStream>;

    async fn secure(&self, tcp: TcpStream) -> io::Result<Self::Stream> {
        self.0.accept(tcp).await
    }
}

/// Secures `tcp` and reads its preface, all within `timeout`.
pub async fn handshake<S: Secure>(
    secure: &S,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<S::Stream, HandshakeError> {
    let steps = async {
        let mut stream = secure.secure(tcp).await.map_err(HandshakeError::Tls)?;
        let mut preface = [0u8; PREFACE.len()];
        stream
            .read_exact(&mut preface)
            .await
            .map_err(HandshakeError::Read)?;
        if &preface != PREFACE {
            return Err(HandshakeError::NotHttp2);
        }
        Ok(stream)
    };
    tokio::time::timeout(timeout, steps)
        .await
        .map_err(|_| HandshakeError::Timeout(timeout))?
}

/// A connection that sent its preface, as tonic serves it: the preface read again first, then
/// the stream; its place under the cap given back when hyper drops it.
pub struct Connection<S> {
    stream: S,
    /// Bytes of the preface already given back to the reader.
    replayed: usize,
    _permit: OwnedSemaphorePermit,
}

impl<S> Connection<S> {
    pub fn new(stream: S, permit: OwnedSemaphorePermit) -> Self {
        Self {
            stream,
            replayed: 0,
            _permit: permit,
        }
    }
}

impl<S: Connected> Connected for Connection<S> {
    type ConnectInfo = S::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.stream.connect_info()
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Connection<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.replayed < PREFACE.len() {
            let rest = &PREFACE[this.replayed..];
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.replayed += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Connection<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (client.unwrap(), accepted.unwrap().0)
    }

    #[tokio::test]
    async fn the_preface_is_checked_then_read_again_before_the_rest() {
        let (mut client, server) = pair().await;
        client.write_all(PREFACE).await.unwrap();
        client.write_all(b"settings").await.unwrap();
        let stream = handshake(&Plain, server, Duration::from_secs(5))
            .await
            .unwrap();
        let permit = std::sync::Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .unwrap();
        let mut conn = Connection::new(stream, permit);
        let mut read = vec![0u8; PREFACE.len() + 8];
        conn.read_exact(&mut read).await.unwrap();
        assert_eq!(&read[..PREFACE.len()], PREFACE);
        assert_eq!(&read[PREFACE.len()..], b"settings");
    }

    #[tokio::test]
    async fn a_silent_connection_times_out_and_another_protocol_is_refused() {
        let (_silent, server) = pair().await;
        let err = handshake(&Plain, server, Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::Timeout(_)), "{err}");

        let (mut client, server) = pair().await;
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let err = handshake(&Plain, server, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(matches!(err, HandshakeError::NotHttp2), "{err}");
    }
}
