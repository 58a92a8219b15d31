//! Controller configuration: defaults < TOML file (`--config`) < `FERRY_*` environment < flags,
//! checked by `validate` into typed settings.

mod flags;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::artifacts::ArtifactConfig;
use crate::engine::EngineConfig;
use crate::s3::{S3Config, S3ConfigError, S3Options};
use crate::serve::{
    ConnectionLimits, DEFAULT_HANDSHAKE_TIMEOUT, MAX_MAX_CONNECTIONS, MIN_HANDSHAKE_TIMEOUT,
};

pub use crate::secret::Secret;
pub use flags::Flags;

/// The keys a config file may hold.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    listen: String,
    http_listen: Option<String>,
    async_threads: usize,
    data_dir: String,
    store: Option<String>,
    store_password_file: Option<String>,
    agent_timeout: String,
    #[serde(deserialize_with = "bytes")]
    log_limit: u64,
    timeout_grace: String,
    #[serde(deserialize_with = "bytes")]
    max_output_bytes: u64,
    #[serde(default, deserialize_with = "opt_bytes")]
    disk_reserve: Option<u64>,
    artifact_retention: String,
    departed_agent_retention: String,
    schedule_to_start_timeout: Option<String>,
    agent_token_file: Option<String>,
    client_token_file: Option<String>,
    tls_cert: Option<String>,
    tls_key: Option<String>,
    tls_client_ca: Option<String>,
    artifacts: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_session_token: Option<String>,
    s3_path_style: Option<bool>,
    max_connections: usize,
    handshake_timeout: String,
}

/// Checked settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// The HTTP listener's address (webhooks, decision 0017); `None` opens none.
    pub http_listen: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub store_url: String,
    /// The PostgreSQL store's password (`--store-password-file` or `PGPASSWORD`).
    pub store_password: Option<Secret>,
    pub engine: EngineConfig,
    pub artifacts: ArtifactConfig,
    /// The S3-compatible artifact store, when `artifacts` names one.
    pub objects: Option<S3Config>,
    /// Token agents must present; `None` leaves `AgentService` open.
    pub agent_token: Option<Secret>,
    /// Token clients must present; `None` leaves `JobService` open.
    pub client_token: Option<Secret>,
    /// The files secrets were read from, by setting: checked at start for other users' access.
    pub secret_files: Vec<(&'static str, PathBuf)>,
    /// TLS of the gRPC port; `None` serves plain HTTP/2.
    pub tls: Option<ferry_tls::ServerTls>,
    /// Whether TLS requires a client certificate of every caller.
    pub tls_client_auth: bool,
    /// Threads of the async runtime; 1 is a single-threaded runtime.
    pub async_threads: usize,
    /// The cap on client connections and their handshake deadline.
    pub connections: ConnectionLimits,
    /// How long `agents list` shows an agent that left (drained or dead).
    pub departed_agent_retention: Duration,
    /// The schedule-to-start timeout of tasks that set none (`None`: no limit).
    pub schedule_to_start_timeout: Option<Duration>,
}

/// Default of `departed_agent_retention`.
pub const DEFAULT_DEPARTED_AGENT_RETENTION: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(#[from] config::ConfigError),
    #[error("config: {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
    #[error("config: artifacts: {0}")]
    Objects(#[from] S3ConfigError),
}

const KEYS: [&str; 28] = [
    "listen",
    "http_listen",
    "async_threads",
    "data_dir",
    "store",
    "store_password_file",
    "agent_timeout",
    "log_limit",
    "timeout_grace",
    "max_output_bytes",
    "disk_reserve",
    "artifact_retention",
    "departed_agent_retention",
    "schedule_to_start_timeout",
    "agent_token_file",
    "client_token_file",
    "tls_cert",
    "tls_key",
    "tls_client_ca",
    "artifacts",
    "s3_endpoint",
    "s3_region",
    "s3_access_key_id",
    "s3_secret_access_key",
    "s3_session_token",
    "s3_path_style",
    "max_connections",
    "handshake_timeout",
];

/// Most threads `async_threads` may ask for.
const MAX_ASYNC_THREADS: usize = 1024;

/// Default of `max_output_bytes`: 10 GiB.
const DEFAULT_MAX_OUTPUT_BYTES: u64 = 10 << 30;

impl Config {
    pub fn load(flags: Flags) -> Result<Self, ConfigError> {
        let mut builder = config::Config::builder()
            .set_default("listen", "127.0.0.1:7070")?
            .set_default("async_threads", 1)?
            .set_default("data_dir", "./ferry-data")?
            .set_default("agent_timeout", "15s")?
            .set_default("log_limit", 1_048_576)?
            .set_default("timeout_grace", "10s")?
            .set_default("max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES)?
            .set_default("artifact_retention", "7d")?
            .set_default("departed_agent_retention", "24h")?
            .set_default(
                "max_connections",
                crate::serve::default_max_connections() as u64,
            )?
            .set_default(
                "handshake_timeout",
                humantime::format_duration(DEFAULT_HANDSHAKE_TIMEOUT).to_string(),
            )?;
        if let Some(path) = &flags.config {
            builder = builder
                .add_source(config::File::from(path.as_path()).format(config::FileFormat::Toml));
        }
        // Only our own keys: other FERRY_ variables (the CLI's, the agent's) are not ours.
        for key in KEYS {
            if let Ok(value) = std::env::var(format!("FERRY_{}", key.to_uppercase())) {
                builder = builder.set_override(key, value)?;
            }
        }
        let flag_values = [
            ("listen", flags.listen),
            ("http_listen", flags.http_listen),
            ("async_threads", flags.async_threads),
            ("data_dir", flags.data_dir),
            ("store", flags.store),
            ("store_password_file", flags.store_password_file),
            ("agent_timeout", flags.agent_timeout),
            ("log_limit", flags.log_limit.map(|n| n.to_string())),
            ("timeout_grace", flags.timeout_grace),
            (
                "max_output_bytes",
                flags.max_output_bytes.map(|n| n.to_string()),
            ),
            ("disk_reserve", flags.disk_reserve.map(|n| n.to_string())),
            ("artifact_retention", flags.artifact_retention),
            ("departed_agent_retention", flags.departed_agent_retention),
            ("schedule_to_start_timeout", flags.schedule_to_start_timeout),
            ("agent_token_file", flags.agent_token_file),
            ("client_token_file", flags.client_token_file),
            ("tls_cert", flags.tls_cert),
            ("tls_key", flags.tls_key),
            ("tls_client_ca", flags.tls_client_ca),
            ("artifacts", flags.artifacts),
            ("s3_endpoint", flags.s3_endpoint),
            ("s3_region", flags.s3_region),
            ("max_connections", flags.max_connections),
            ("handshake_timeout", flags.handshake_timeout),
        ];
        for (key, value) in flag_values {
            if let Some(value) = value {
                builder = builder.set_override(key, value)?;
            }
        }
        let raw: Raw = builder.build()?.try_deserialize()?;
        raw.validate()
    }
}

/// A byte count of the file, the environment or a flag: an integer, or text such as `1MiB`
/// (`ferry_jobspec::units`, as every binary reads sizes).
fn bytes<'de, D: serde::Deserializer<'de>>(de: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Bytes {
        Number(u64),
        Text(String),
    }
    match Bytes::deserialize(de)? {
        Bytes::Number(n) => Ok(n),
        Bytes::Text(text) => {
            ferry_jobspec::units::bytes_arg(&text).map_err(serde::de::Error::custom)
        }
    }
}

fn opt_bytes<'de, D: serde::Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    bytes(de).map(Some)
}

fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    humantime::parse_duration(text).map_err(|e| ConfigError::Invalid {
        key,
        problem: format!("bad duration {text:?}: {e}"),
    })
}

/// Reads a token from its file: surrounding white space is dropped, an empty file is refused.
fn read_token(key: &'static str, path: Option<&str>) -> Result<Option<Secret>, ConfigError> {
    let Some(path) = path else { return Ok(None) };
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Invalid {
        key,
        problem: format!("cannot read {path}: {e}"),
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(ConfigError::Invalid {
            key,
            problem: format!("{path} is empty"),
        });
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ConfigError::Invalid {
            key,
            problem: format!("{path}: a token is printable ASCII without spaces"),
        });
    }
    Ok(Some(Secret(token.to_string())))
}

/// The port's TLS from its files: a certificate and key (both or neither), and optionally the
/// CA that clients' certificates must chain to.
fn server_tls(
    cert: Option<&str>,
    key: Option<&str>,
    client_ca: Option<&str>,
) -> Result<Option<ferry_tls::ServerTls>, ConfigError> {
    use ferry_tls::{self as tls, TlsFileError};
    // Names the setting whose file is at fault.
    let invalid = |e: TlsFileError| ConfigError::Invalid {
        key: e.setting(
            &[
                ("tls_key", key.map(Path::new)),
                ("tls_client_ca", client_ca.map(Path::new)),
            ],
            "tls_cert",
        ),
        problem: e.to_string(),
    };
    let pair = tls::pair(
        cert.map(Path::new),
        key.map(Path::new),
        ("tls_cert", "tls_key"),
    )
    .map_err(invalid)?;
    let Some((cert, key_file)) = pair else {
        if client_ca.is_some() {
            return Err(ConfigError::Invalid {
                key: "tls_client_ca",
                problem: "client certificates need TLS: set tls_cert and tls_key too".into(),
            });
        }
        return Ok(None);
    };
    tls::server_config(cert, key_file, client_ca.map(Path::new))
        .map(Some)
        .map_err(invalid)
}

/// The cap on connections, within 1..=`MAX_MAX_CONNECTIONS`, and a handshake timeout of at
/// least `MIN_HANDSHAKE_TIMEOUT`.
fn connection_limits(
    max_connections: usize,
    handshake_timeout: &str,
) -> Result<ConnectionLimits, ConfigError> {
    if !(1..=MAX_MAX_CONNECTIONS).contains(&max_connections) {
        return Err(ConfigError::Invalid {
            key: "max_connections",
            problem: format!(
                "{max_connections} is out of range: between 1 and {MAX_MAX_CONNECTIONS}"
            ),
        });
    }
    let handshake_timeout = duration("handshake_timeout", handshake_timeout)?;
    if handshake_timeout < MIN_HANDSHAKE_TIMEOUT {
        return Err(ConfigError::Invalid {
            key: "handshake_timeout",
            problem: format!(
                "{} is too short: at least {} (a TLS handshake takes a few round trips)",
                humantime::format_duration(handshake_timeout),
                humantime::format_duration(MIN_HANDSHAKE_TIMEOUT)
            ),
        });
    }
    Ok(ConnectionLimits {
        max_connections,
        handshake_timeout,
    })
}

impl Raw {
    fn validate(self) -> Result<Config, ConfigError> {
        let listen = self.listen.parse().map_err(|e| ConfigError::Invalid {
            key: "listen",
            problem: format!(
                "bad address {:?}: {e} (expected HOST:PORT, e.g. 127.0.0.1:7070)",
                self.listen
            ),
        })?;
        let http_listen = match self.http_listen.as_deref() {
            None | Some("") => None,
            Some(addr) => Some(addr.parse().map_err(|e| ConfigError::Invalid {
                key: "http_listen",
                problem: format!(
                    "bad address {addr:?}: {e} (expected HOST:PORT, e.g. 127.0.0.1:7080)"
                ),
            })?),
        };
        if !(1..=MAX_ASYNC_THREADS).contains(&self.async_threads) {
            return Err(ConfigError::Invalid {
                key: "async_threads",
                problem: format!(
                    "{} is out of range: between 1 and {MAX_ASYNC_THREADS}",
                    self.async_threads
                ),
            });
        }
        let connections = connection_limits(self.max_connections, &self.handshake_timeout)?;
        let agent_timeout = duration("agent_timeout", &self.agent_timeout)?;
        if agent_timeout < Duration::from_millis(100) {
            return Err(ConfigError::Invalid {
                key: "agent_timeout",
                problem: "must be at least 100ms".into(),
            });
        }
        if self.log_limit < 1024 {
            return Err(ConfigError::Invalid {
                key: "log_limit",
                problem: "must be at least 1024 bytes".into(),
            });
        }
        let data_dir = PathBuf::from(&self.data_dir);
        let store_url = match self.store {
            Some(url) => url,
            None => format!("sqlite://{}", data_dir.join("ferry.db").display()),
        };
        let postgres = ["postgres://", "postgresql://"]
            .iter()
            .any(|scheme| store_url.starts_with(scheme));
        if !store_url.starts_with("sqlite://") && !postgres {
            return Err(ConfigError::Invalid {
                key: "store",
                problem: format!(
                    "unsupported store {:?}: use sqlite://PATH or postgres://USER@HOST:PORT/DB",
                    crate::store::redact_url(&store_url)
                ),
            });
        }
        let store_password = match self.store_password_file.as_deref() {
            Some(path) => read_token("store_password_file", Some(path))?,
            None => std::env::var("PGPASSWORD")
                .ok()
                .filter(|p| !p.is_empty())
                .map(Secret),
        };
        if store_password.is_some() && !postgres {
            return Err(ConfigError::Invalid {
                key: "store_password_file",
                problem: "a password is only for a postgres:// store".into(),
            });
        }
        if self.max_output_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "max_output_bytes",
                problem: "must be at least 1 byte".into(),
            });
        }
        let artifacts = ArtifactConfig {
            root: data_dir.join("artifacts"),
            max_output_bytes: self.max_output_bytes,
            retention: duration("artifact_retention", &self.artifact_retention)?,
            disk_reserve: self.disk_reserve,
        };
        let objects = match self.artifacts.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(url) => {
                let options = S3Options {
                    endpoint: self.s3_endpoint,
                    region: self.s3_region,
                    access_key_id: self.s3_access_key_id,
                    secret_access_key: self.s3_secret_access_key.map(Secret),
                    session_token: self.s3_session_token.map(Secret),
                    path_style: self.s3_path_style,
                };
                Some(S3Config::from_env(url, &options)?)
            }
        };
        let secret_files = [
            ("agent_token_file", &self.agent_token_file),
            ("client_token_file", &self.client_token_file),
            ("store_password_file", &self.store_password_file),
        ]
        .into_iter()
        .filter_map(|(key, path)| Some((key, PathBuf::from(path.as_deref()?))))
        .collect();
        let agent_token = read_token("agent_token_file", self.agent_token_file.as_deref())?;
        let client_token = read_token("client_token_file", self.client_token_file.as_deref())?;
        let tls = server_tls(
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
            self.tls_client_ca.as_deref(),
        )?;
        let schedule_to_start_timeout = match self.schedule_to_start_timeout.as_deref() {
            None | Some("") => None,
            Some(text) => {
                let timeout = duration("schedule_to_start_timeout", text)?;
                let max = Duration::from_millis(ferry_jobspec::limits::TIMEOUT_MAX_MS);
                if timeout > max {
                    return Err(ConfigError::Invalid {
                        key: "schedule_to_start_timeout",
                        problem: format!("{text:?} is above the limit of 7d"),
                    });
                }
                (!timeout.is_zero()).then_some(timeout)
            }
        };
        Ok(Config {
            schedule_to_start_timeout,
            tls_client_auth: tls.is_some() && self.tls_client_ca.is_some(),
            departed_agent_retention: duration(
                "departed_agent_retention",
                &self.departed_agent_retention,
            )?,
            tls,
            async_threads: self.async_threads,
            connections,
            agent_token,
            client_token,
            secret_files,
            listen,
            http_listen,
            data_dir,
            store_url,
            store_password,
            artifacts,
            objects,
            engine: EngineConfig {
                agent_timeout,
                log_limit: self.log_limit,
                timeout_grace: duration("timeout_grace", &self.timeout_grace)?,
                max_poll_wait: Duration::from_secs(60),
            },
        })
    }
}

#[cfg(test)]
mod tests;
