//! HTTPS for object-store URLs (the controller's S3 client, presigned transfers on agents and
//! the CLI): one HTTP/1.1 connector for `http://` and `https://`, its TLS checked against the
//! system's CAs and those of the PEM file `AWS_CA_BUNDLE` names (the variable the AWS tools
//! read, for a store with a private CA); and how a failed request is told.

use std::{
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{pem::PemObject, CertificateDer};

use crate::tls::{certificates, system_roots, TlsFileError};

/// The variable naming extra CA certificates (PEM) to trust for object stores.
pub const CA_BUNDLE_VAR: &str = "AWS_CA_BUNDLE";

pub type Connector = HttpsConnector<HttpConnector>;

/// A connector for `http://` and `https://` URLs, with TCP_NODELAY and `connect_timeout`.
pub fn connector(connect_timeout: Duration) -> Result<Connector, TlsFileError> {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_connect_timeout(Some(connect_timeout));
    let tls = client_config()?;
    Ok(HttpsConnectorBuilder::new()
        .with_tls_config(ClientConfig::clone(&tls))
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Built once per process (`AWS_CA_BUNDLE` is read once).
fn client_config() -> Result<Arc<ClientConfig>, TlsFileError> {
    static CONFIG: OnceLock<Arc<ClientConfig>> = OnceLock::new();
    if let Some(config) = CONFIG.get() {
        return Ok(config.clone());
    }
    let mut roots = RootCertStore::empty();
    // An empty system store leaves only AWS_CA_BUNDLE, and https fails naming the issuer.
    roots.add_parsable_certificates(system_roots().iter().cloned());
    if let Some(bundle) = std::env::var_os(CA_BUNDLE_VAR) {
        let path = Path::new(&bundle);
        let pem = certificates(path).map_err(|e| TlsFileError::CaBundle(Box::new(e)))?;
        for cert in CertificateDer::pem_slice_iter(&pem).flatten() {
            roots.add(cert).map_err(|e| {
                TlsFileError::CaBundle(Box::new(TlsFileError::Bad {
                    path: path.to_owned(),
                    problem: format!("a certificate rustls cannot use as a CA ({e})"),
                }))
            })?;
        }
    }
    let config = Arc::new(
        ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    Ok(CONFIG.get_or_init(|| config).clone())
}

/// Whether a failed request failed on the peer's certificate (unknown issuer, wrong name,
/// expired): trying again cannot help, unlike a refused or dropped connection.
pub fn is_certificate_error(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(cause) = next {
        if matches!(
            rustls_error(cause),
            Some(rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented)
        ) {
            return true;
        }
        next = cause.source();
    }
    false
}

/// The rustls error `error` is or wraps: I/O errors carry it inside, sometimes twice over
/// (and an I/O error's `source` skips what it wraps).
fn rustls_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    if let Some(tls) = error.downcast_ref::<rustls::Error>() {
        return Some(tls);
    }
    let inner = error.downcast_ref::<std::io::Error>()?.get_ref()?;
    rustls_error(inner)
}

/// An error with its causes, `outer: inner: …` (hyper's and tonic's own texts, "client error
/// (Connect)", "transport error", hide which: a refused connection, an unknown issuer…).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
