//! HTTPS for object-store URLs (the controller's S3 client, presigned transfers on agents and
//! the CLI): one HTTP/1.1 connector for `http://` and `https://`, its TLS checked against the
//! system's CAs and those of the PEM file `AWS_CA_BUNDLE` names (the variable the AWS tools
//! read, for a store with a private CA).

use std::{
    path::Path,
    sync::{Arc, OnceLock},
    time::Duration,
};

use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::{pem::PemObject, CertificateDer};

use crate::settings::{certificates, system_roots, TlsFileError};

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
