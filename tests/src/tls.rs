//! TLS material for process tests: a private CA and the certificates signed by it, made by the
//! repository's own `scripts/dev-certs` (openssl), as a user would make them.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{bail, Context, Result};

use crate::process::TestDir;

/// `ca.pem`, `controller.{pem,key}`, `client.{pem,key}` and `agent-NAME.{pem,key}` for each
/// agent name asked for, in a temp dir.
pub struct DevCerts {
    dir: TestDir,
}

impl DevCerts {
    pub fn generate() -> Result<Self> {
        Self::generate_with_agents(&[])
    }

    /// With a certificate for each agent name (its DNS subject alternative name).
    pub fn generate_with_agents(agents: &[&str]) -> Result<Self> {
        let dir = TestDir::new("certs")?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/dev-certs");
        let out = Command::new(&script)
            .arg(dir.path())
            .args(agents.iter().flat_map(|name| ["--agent", name]))
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!(
                "{} failed ({}): {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(Self { dir })
    }

    /// A file of the set, e.g. `ca.pem`.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn ca(&self) -> PathBuf {
        self.file("ca.pem")
    }

    /// What a client trusts and presents: the CA, and with `identity` the named client
    /// certificate (`client`, or `agent-NAME`).
    pub fn client(&self, identity: Option<&str>) -> ClientCerts {
        ClientCerts {
            ca: self.ca(),
            identity: identity.map(|name| {
                (
                    self.file(&format!("{name}.pem")),
                    self.file(&format!("{name}.key")),
                )
            }),
        }
    }
}

/// A client's TLS files: the CA it trusts, and optionally its own certificate and key.
#[derive(Clone, Debug)]
pub struct ClientCerts {
    pub ca: PathBuf,
    pub identity: Option<(PathBuf, PathBuf)>,
}

impl ClientCerts {
    /// The flags the agent and the CLI take for these files.
    pub fn flags(&self) -> Vec<String> {
        let mut flags = vec!["--tls-ca".to_owned(), self.ca.display().to_string()];
        if let Some((cert, key)) = &self.identity {
            flags.extend([
                "--tls-cert".to_owned(),
                cert.display().to_string(),
                "--tls-key".to_owned(),
                key.display().to_string(),
            ]);
        }
        flags
    }

    pub fn load(&self) -> Result<ferry_tls::ClientTls> {
        let identity = self
            .identity
            .as_ref()
            .map(|(cert, key)| (cert.as_path(), key.as_path()));
        Ok(ferry_tls::ClientTls::load(Some(&self.ca), identity)?)
    }
}
