//! How the store's connections reach PostgreSQL: in plain TCP, or over TLS when the URL says
//! `sslmode=require` (or `verify-ca`, `verify-full`), the server's certificate always verified
//! against the system's CAs, or those of the URL's `sslrootcert` file, and its host name, as
//! libpq's `verify-full` does. `sslmode=prefer`, the default, stays plain: a TLS whose
//! certificate nobody checks would only look safe.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures_util::Stream;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Socket};

use crate::store::StoreError;

/// How connections are made.
#[derive(Clone)]
pub(super) enum Transport {
    Plain,
    Tls(RustlsConnect),
}

/// A store URL as tokio-postgres reads it, and the CA file it named: libpq's `sslrootcert`
/// taken out and `sslmode=verify-ca` / `verify-full` read as `require` (which this store
/// verifies fully), as tokio-postgres knows neither.
pub(super) fn split_url(url: &str) -> (String, Option<std::path::PathBuf>) {
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), None);
    };
    let mut ca = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslrootcert", path)) => ca = Some(std::path::PathBuf::from(path)),
            Some(("sslmode", "verify-ca" | "verify-full")) => kept.push("sslmode=require".into()),
            _ => kept.push(pair.to_owned()),
        }
    }
    match kept.is_empty() {
        true => (base.to_owned(), ca),
        false => (format!("{base}?{}", kept.join("&")), ca),
    }
}

impl Transport {
    /// TLS when `config` requires it, trusting the CAs of `ca` (PEM) or else the system's.
    pub(super) fn for_config(
        config: &Config,
        ca: Option<&std::path::Path>,
    ) -> Result<Transport, StoreError> {
        match config.get_ssl_mode() {
            SslMode::Require => {
                let tls = ferry_tls::client_config(ca).map_err(|e| {
                    StoreError::backend(format!("the store's TLS settings: {e}"))
                })?;
                Ok(Transport::Tls(RustlsConnect(tls)))
            }
            _ if ca.is_some() => Err(StoreError::backend(
                "the store URL names an sslrootcert but does not ask for TLS: add sslmode=verify-full",
            )),
            _ => Ok(Transport::Plain),
        }
    }

    pub(super) fn is_tls(&self) -> bool {
        matches!(self, Transport::Tls(_))
    }
}

/// What a connection's driver yields: server notices and notifications, until it ends.
pub(super) type Messages =
    Pin<Box<dyn Stream<Item = Result<AsyncMessage, tokio_postgres::Error>> + Send>>;

/// Connects as `config` says over `transport`; the connection must be driven by polling the
/// messages it returns.
pub(super) async fn connect(
    config: &Config,
    transport: &Transport,
) -> Result<(Client, Messages), tokio_postgres::Error> {
    match transport {
        Transport::Plain => {
            let (client, mut connection) = config.connect(NoTls).await?;
            let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            Ok((client, Box::pin(messages)))
        }
        Transport::Tls(tls) => {
            let (client, mut connection) = config.connect(tls.clone()).await?;
            let messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
            Ok((client, Box::pin(messages)))
        }
    }
}

/// rustls as tokio-postgres's TLS.
#[derive(Clone)]
pub(super) struct RustlsConnect(Arc<tokio_rustls::rustls::ClientConfig>);

impl MakeTlsConnect<Socket> for RustlsConnect {
    type Stream = RustlsStream;
    type TlsConnect = RustlsConnectTo;
    type Error = io::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<RustlsConnectTo, io::Error> {
        let name = ServerName::try_from(domain.to_owned()).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{domain:?} cannot be checked against a certificate: {e}"),
            )
        })?;
        Ok(RustlsConnectTo {
            config: self.0.clone(),
            name,
        })
    }
}

/// One connection's handshake, to the server `name`.
pub(super) struct RustlsConnectTo {
    config: Arc<tokio_rustls::rustls::ClientConfig>,
    name: ServerName<'static>,
}

impl TlsConnect<Socket> for RustlsConnectTo {
    type Stream = RustlsStream;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<RustlsStream>> + Send>>;

    fn connect(self, stream: Socket) -> Self::Future {
        Box::pin(async move {
            let tls = tokio_rustls::TlsConnector::from(self.config)
                .connect(self.name, stream)
                .await?;
            Ok(RustlsStream(Box::new(tls)))
        })
    }
}

/// A connection over TLS.
pub(super) struct RustlsStream(Box<tokio_rustls::client::TlsStream<Socket>>);

impl AsyncRead for RustlsStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_read(cx, buf)
    }
}

impl AsyncWrite for RustlsStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().0).poll_shutdown(cx)
    }
}

impl TlsStream for RustlsStream {
    /// None: SCRAM's channel binding is optional, and the certificate is checked already.
    fn channel_binding(&self) -> ChannelBinding {
        ChannelBinding::none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libpq_tls_settings_are_read_from_the_url() {
        assert_eq!(
            split_url("postgres://u@h/db"),
            ("postgres://u@h/db".into(), None)
        );
        assert_eq!(
            split_url(
                "postgres://u@h/db?sslmode=verify-full&sslrootcert=/etc/ca.pem&application_name=x"
            ),
            (
                "postgres://u@h/db?sslmode=require&application_name=x".into(),
                Some("/etc/ca.pem".into())
            )
        );
        assert_eq!(
            split_url("postgres://u@h/db?sslrootcert=/ca.pem"),
            ("postgres://u@h/db".into(), Some("/ca.pem".into()))
        );
        let plain: Config = "postgres://u@h/db".parse().unwrap();
        assert!(!Transport::for_config(&plain, None).unwrap().is_tls());
        let err = Transport::for_config(&plain, Some(std::path::Path::new("/ca.pem")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("sslmode=verify-full"), "{err}");
        let tls: Config = "postgres://u@h/db?sslmode=require".parse().unwrap();
        let err = Transport::for_config(&tls, Some(std::path::Path::new("/nonexistent/ca.pem")))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
    }
}
