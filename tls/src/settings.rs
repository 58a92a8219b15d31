//! How a connection to the controller is secured: the TLS settings of the controller's port
//! and of the clients that dial it (agents, the CLI), read from PEM files and checked when they
//! are loaded, so that a wrong file stops the start naming the file rather than failing every
//! handshake later. Private keys never show in `Debug` output.

use std::{
    fmt,
    path::{Path, PathBuf},
    sync::{Arc, OnceLock},
    time::Duration,
};

use rustls_pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer};
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

/// A handshake not done by then is dropped: a peer that stalls in it holds nothing for long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A PEM file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsFileError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    Bad { path: PathBuf, problem: String },
    #[error("a certificate and its key go together: {given} is set but {missing} is not")]
    HalfPair {
        given: &'static str,
        missing: &'static str,
    },
    #[error("AWS_CA_BUNDLE: {0}")]
    CaBundle(Box<TlsFileError>),
    #[error("the system's trust store holds no CA certificate: give the controller's CA file")]
    NoSystemRoots,
}

/// The controller's side: its certificate chain and key, and the CA that clients' certificates
/// must chain to when clients must present one; HTTP/2 by ALPN, as tonic's own acceptor. The
/// controller runs the handshake itself, under its own deadline (`controller/src/serve/`).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<ServerTls, TlsFileError> {
    let chain = CertificateDer::pem_slice_iter(&certificates(cert)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, format!("not a usable PEM certificate file ({e})")))?;
    let private_key = private_key(key)?;
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| bad(cert, e.to_string()))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for root in CertificateDer::pem_slice_iter(&certificates(ca)?) {
                let root = root.map_err(|e| bad(ca, format!("not a usable PEM file ({e})")))?;
                roots
                    .add(root)
                    .map_err(|e| bad(ca, format!("not a usable CA certificate ({e})")))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::new(rustls::crypto::ring::default_provider()),
            )
            .build()
            .map_err(|e| bad(ca, format!("not a usable CA ({e})")))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private_key)
        .map_err(|e| bad(key, format!("does not go with {} ({e})", cert.display())))?;
    config.alpn_protocols.push(b"h2".to_vec());
    Ok(ServerTls(Arc::new(config)))
}

/// Client settings for connections a process makes with rustls itself (the controller's
/// PostgreSQL store): servers' certificates must chain to the system's CAs or, when `ca` is
/// given, to the CAs of that PEM file alone.
pub fn client_config(ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, TlsFileError> {
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(ca) => {
            for root in CertificateDer::pem_slice_iter(&certificates(ca)?) {
                let root = root.map_err(|e| bad(ca, format!("not a usable PEM file ({e})")))?;
                roots
                    .add(root)
                    .map_err(|e| bad(ca, format!("not a usable CA certificate ({e})")))?;
            }
        }
        None => {
            let (added, _) = roots.add_parsable_certificates(system_roots().iter().cloned());
            if added == 0 {
                return Err(TlsFileError::NoSystemRoots);
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsFileError::Bad {
        path: ca.map(Path::to_owned).unwrap_or_default(),
        problem: e.to_string(),
    })?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The controller's TLS settings, ready for a `tokio_rustls::TlsAcceptor`. `Debug` shows no key.
#[derive(Clone)]
pub struct ServerTls(Arc<rustls::ServerConfig>);

impl ServerTls {
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.0.clone()
    }
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ServerTls")
    }
}

/// A client's side, ready for `Endpoint::tls_config`. `Debug` shows no key.
#[derive(Clone)]
pub struct ClientTls(ClientTlsConfig);

impl ClientTls {
    /// Trusts the CA certificates in `ca` (the system's trust store when `None`) and, with
    /// `identity` (certificate, key), presents that certificate to the controller.
    pub fn load(ca: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Self, TlsFileError> {
        let mut config = match ca {
            Some(ca) => {
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(certificates(ca)?))
            }
            None => {
                let anchors: Vec<_> = system_roots()
                    .iter()
                    .filter_map(|cert| webpki::anchor_from_trusted_cert(cert).ok())
                    .map(|anchor| anchor.to_owned())
                    .collect();
                if anchors.is_empty() {
                    return Err(TlsFileError::NoSystemRoots);
                }
                ClientTlsConfig::new().trust_anchors(anchors)
            }
        };
        if let Some((cert, key)) = identity {
            config = config.identity(self::identity(cert, key)?);
        }
        Ok(ClientTls(config.timeout(HANDSHAKE_TIMEOUT)))
    }

    pub fn config(&self) -> ClientTlsConfig {
        self.0.clone()
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientTls")
    }
}

impl TlsFileError {
    /// Which of the `settings` (name, file) is at fault: the one naming the file the error is
    /// about, else `fallback`.
    pub fn setting(
        &self,
        settings: &[(&'static str, Option<&Path>)],
        fallback: &'static str,
    ) -> &'static str {
        let file = match self {
            TlsFileError::Read { path, .. } | TlsFileError::Bad { path, .. } => path.as_path(),
            _ => return fallback,
        };
        settings
            .iter()
            .find(|(_, path)| *path == Some(file))
            .map_or(fallback, |(name, _)| name)
    }
}

/// The system's CA certificates, read once per process (reading them takes a while); those
/// that cannot be parsed are skipped, as rustls's own clients do.
pub(crate) fn system_roots() -> &'static [CertificateDer<'static>] {
    static ROOTS: OnceLock<Vec<CertificateDer<'static>>> = OnceLock::new();
    ROOTS.get_or_init(|| rustls_native_certs::load_native_certs().certs)
}

/// Pairs an optional certificate with its optional key: both or neither.
pub fn pair<'a>(
    cert: Option<&'a Path>,
    key: Option<&'a Path>,
    names: (&'static str, &'static str),
) -> Result<Option<(&'a Path, &'a Path)>, TlsFileError> {
    match (cert, key) {
        (Some(cert), Some(key)) => Ok(Some((cert, key))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(TlsFileError::HalfPair {
            given: names.0,
            missing: names.1,
        }),
        (None, Some(_)) => Err(TlsFileError::HalfPair {
            given: names.1,
            missing: names.0,
        }),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|source| TlsFileError::Read {
        path: path.to_owned(),
        source,
    })
}

fn bad(path: &Path, problem: impl Into<String>) -> TlsFileError {
    TlsFileError::Bad {
        path: path.to_owned(),
        problem: problem.into(),
    }
}

/// The file's bytes, once it is known to hold at least one PEM certificate and nothing broken.
pub(crate) fn certificates(path: &Path) -> Result<Vec<u8>, TlsFileError> {
    let pem = read(path)?;
    let mut found = 0;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| bad(path, format!("not a usable PEM certificate file ({e})")))?;
        found += 1;
    }
    if found == 0 {
        return Err(bad(
            path,
            "holds no certificate (expected a -----BEGIN CERTIFICATE----- block)",
        ));
    }
    Ok(pem)
}

fn identity(cert: &Path, key: &Path) -> Result<Identity, TlsFileError> {
    let cert_pem = certificates(cert)?;
    private_key(key)?;
    Ok(Identity::from_pem(cert_pem, read(key)?))
}

/// The key in the file, once it is known to be a usable PEM private key.
fn private_key(key: &Path) -> Result<PrivateKeyDer<'static>, TlsFileError> {
    let key_pem = read(key)?;
    PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        bad(
            key,
            format!("holds no usable private key: PKCS#8, PKCS#1 or SEC1 PEM expected ({e})"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn files_that_hold_no_certificate_or_key_are_named() {
        let dir = std::env::temp_dir().join(format!("ferry-tls-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = write(&dir, "empty.pem", "");
        let garbage = write(
            &dir,
            "garbage.pem",
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        );
        let err = ClientTls::load(Some(&empty), None).unwrap_err().to_string();
        assert!(err.contains("empty.pem: holds no certificate"), "{err}");
        let err = ClientTls::load(Some(&garbage), None)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("garbage.pem: not a usable PEM certificate"),
            "{err}"
        );
        let missing = dir.join("missing.pem");
        let err = server_config(&missing, &empty, None)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot read ") && err.contains("missing.pem"),
            "{err}"
        );
        let err = pair(Some(&empty), None, ("tls_cert", "tls_key"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "a certificate and its key go together: tls_cert is set but tls_key is not"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
