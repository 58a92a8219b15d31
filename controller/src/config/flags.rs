//! The controller's command-line flags: each one optional, with its config-file key, and its
//! `FERRY_` variable read by clap (`env`, listed by `--help` as every binary lists them); a
//! bad value is named as the flag (`--log-limit`), sizes take units (`1MiB`).

use std::path::PathBuf;

use clap::Parser;

/// Command-line flags; each also has a config-file key and a `FERRY_` variable.
#[derive(Debug, Parser)]
#[command(
    name = "ferry-controller",
    version,
    about = "Ferry controller: durable queues of work for ferry agents",
    after_help = ferry_log::RUST_LOG_HELP
)]
pub struct Flags {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on [default: 127.0.0.1:7070; config: listen].
    #[arg(long, env = "FERRY_LISTEN", value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of the HTTP listener: webhook triggers at POST /hooks/NAME, with the gRPC
    /// port's TLS when it has some [default: none, no HTTP listener; config: http_listen].
    #[arg(long, env = "FERRY_HTTP_LISTEN", value_name = "ADDR")]
    pub http_listen: Option<String>,
    /// Directory of the embedded store and artifacts [default: ./ferry-data].
    #[arg(long, env = "FERRY_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Store URL: sqlite://PATH, or postgres://USER@HOST:PORT/DB shared by any number of
    /// controllers [default: sqlite://DATA_DIR/ferry.db].
    #[arg(long, env = "FERRY_STORE", value_name = "URL")]
    pub store: Option<String>,
    /// File holding the PostgreSQL store's password [else PGPASSWORD].
    #[arg(long, env = "FERRY_STORE_PASSWORD_FILE", value_name = "FILE")]
    pub store_password_file: Option<String>,
    /// Silent longer than this, an agent is dead [default: 15s].
    #[arg(long, env = "FERRY_AGENT_TIMEOUT", value_parser = duration_arg, value_name = "DURATION")]
    pub agent_timeout: Option<String>,
    /// Bytes of output kept per attempt, the tail, e.g. 1MiB [default: 1MiB].
    #[arg(long, env = "FERRY_LOG_LIMIT", value_parser = ferry_jobspec::units::bytes_arg, value_name = "BYTES")]
    pub log_limit: Option<u64>,
    /// How long past its timeout an unreported attempt is left to its agent [default: 10s].
    #[arg(long, env = "FERRY_TIMEOUT_GRACE", value_parser = duration_arg, value_name = "DURATION")]
    pub timeout_grace: Option<String>,
    /// Bytes all outputs of one attempt may hold together [default: 10GiB].
    #[arg(long, env = "FERRY_MAX_OUTPUT_BYTES", value_parser = ferry_jobspec::units::bytes_arg, value_name = "BYTES")]
    pub max_output_bytes: Option<u64>,
    /// Bytes kept free on the data directory's filesystem for the store and logs: an upload that
    /// would eat into them is refused and its attempt fails, naming the figures [default: the
    /// smaller of 1 GiB and 5% of the filesystem].
    #[arg(long, env = "FERRY_DISK_RESERVE", value_parser = ferry_jobspec::units::bytes_arg, value_name = "BYTES")]
    pub disk_reserve: Option<u64>,
    /// Artifacts of jobs that ended longer ago than this are removed [default: 7d].
    #[arg(long, env = "FERRY_ARTIFACT_RETENTION", value_parser = duration_arg, value_name = "DURATION")]
    pub artifact_retention: Option<String>,
    /// Agents that left (drained or dead) drop out of `ferry agents list` once last seen longer ago
    /// than this; `--all` still shows them [default: 24h].
    #[arg(long, env = "FERRY_DEPARTED_AGENT_RETENTION", value_parser = duration_arg, value_name = "DURATION")]
    pub departed_agent_retention: Option<String>,
    /// The schedule-to-start timeout of tasks that set none: a task still queued this long
    /// after it became ready fails, finally, with why no agent took it (at most 7d)
    /// [default: none].
    #[arg(long, env = "FERRY_SCHEDULE_TO_START_TIMEOUT", value_parser = duration_arg, value_name = "DURATION")]
    pub schedule_to_start_timeout: Option<String>,
    /// Where artifacts live: the data directory (default) or an S3-compatible store,
    /// s3://BUCKET/PREFIX. Credentials come from the config file (s3_access_key_id,
    /// s3_secret_access_key, s3_session_token) or the usual AWS variables.
    #[arg(long, env = "FERRY_ARTIFACTS", value_name = "URL")]
    pub artifacts: Option<String>,
    /// Endpoint of the S3-compatible store, e.g. http://127.0.0.1:9000 [default: AWS's for the
    /// region; else AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL].
    #[arg(long, env = "FERRY_S3_ENDPOINT", value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Region of the S3-compatible store [default: us-east-1; else AWS_REGION, AWS_DEFAULT_REGION].
    #[arg(long, env = "FERRY_S3_REGION", value_name = "REGION")]
    pub s3_region: Option<String>,
    /// File holding the token agents must present to join.
    #[arg(long, env = "FERRY_AGENT_TOKEN_FILE", value_name = "FILE")]
    pub agent_token_file: Option<String>,
    /// File holding the token clients (the CLI) must present.
    #[arg(long, env = "FERRY_CLIENT_TOKEN_FILE", value_name = "FILE")]
    pub client_token_file: Option<String>,
    /// PEM certificate chain to serve TLS with (needs --tls-key).
    #[arg(long, env = "FERRY_TLS_CERT", value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// PEM private key of --tls-cert.
    #[arg(long, env = "FERRY_TLS_KEY", value_name = "FILE")]
    pub tls_key: Option<String>,
    /// PEM CA certificates: every agent and client must present a certificate signed by one of them
    /// (mutual TLS).
    #[arg(long, env = "FERRY_TLS_CLIENT_CA", value_name = "FILE")]
    pub tls_client_ca: Option<String>,
    /// Threads serving the gRPC services [default: 1]. On one thread they spend less CPU than
    /// several threads stealing work from each other (the store's writes, checksums and artifact
    /// writes have threads of their own); raise it for a controller serving many agents on a large
    /// host.
    #[arg(long, env = "FERRY_ASYNC_THREADS", value_parser = number_arg, value_name = "N")]
    pub async_threads: Option<String>,
    /// Client connections open at once, served or in their handshake; more are closed as soon as
    /// they are accepted. Keep it below the open-file limit less 256 descriptors for the store,
    /// artifacts and logs [default: the open-file limit less 256].
    #[arg(long, env = "FERRY_MAX_CONNECTIONS", value_parser = number_arg, value_name = "N")]
    pub max_connections: Option<String>,
    /// A new connection that has not finished its TLS handshake and sent the HTTP/2 preface by then
    /// is closed; at least 1s [default: 10s].
    #[arg(long, env = "FERRY_HANDSHAKE_TIMEOUT", value_parser = duration_arg, value_name = "DURATION")]
    pub handshake_timeout: Option<String>,
}

/// A duration flag checked as the config checks it (`10s`, `7d`), kept as written.
fn duration_arg(text: &str) -> Result<String, String> {
    humantime::parse_duration(text.trim())
        .map(|_| text.to_owned())
        .map_err(|e| format!("bad duration {text:?} ({e}); use e.g. 10s, 5m, 7d"))
}

/// A count flag: a whole number, kept as written.
fn number_arg(text: &str) -> Result<String, String> {
    text.trim()
        .parse::<u64>()
        .map(|_| text.to_owned())
        .map_err(|_| format!("{text:?} is not a whole number"))
}
