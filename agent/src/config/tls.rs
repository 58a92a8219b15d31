//! The agent's side of TLS to an https:// controller: the CA it trusts and the certificate it
//! presents, from the files its settings name.

use ferry_tls::{pair, ClientTls, TlsFileError};

use super::{invalid, ConfigError, RawConfig};

impl RawConfig {
    /// The CA to trust (else the system's) and the certificate to present, from their files.
    pub(super) fn client_tls(&self) -> Result<ClientTls, ConfigError> {
        let identity = pair(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            ("tls_cert", "tls_key"),
        );
        let key = |e: &TlsFileError| match e {
            TlsFileError::NoSystemRoots => "tls_ca",
            e => e.setting(
                &[
                    ("tls_ca", self.tls_ca.as_deref()),
                    ("tls_key", self.tls_key.as_deref()),
                ],
                "tls_cert",
            ),
        };
        identity
            .and_then(|identity| ClientTls::load(self.tls_ca.as_deref(), identity))
            .map_err(|e| invalid(key(&e), e.to_string()))
    }
}
