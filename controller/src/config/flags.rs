//! The controller's command-line flags: each one optional, with its config-file key and its
//! `FERRY_` variable named in its help.

use std::path::PathBuf;

use clap::Parser;

/// Command-line flags; each also has a config-file key and a `FERRY_` variable.
#[derive(Debug, Parser)]
#[command(
    name = "ferry-controller",
    version,
    about = "Ferry controller: durable queues of work for ferry agents"
)]
pub struct Flags {
    /// TOML config file.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve gRPC on [default: 127.0.0.1:7070; config: listen; env: FERRY_LISTEN].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Directory of the embedded store and artifacts [default: ./ferry-data; env: FERRY_DATA_DIR].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<String>,
    /// Store URL: sqlite://PATH, or postgres://USER@HOST:PORT/DB shared by any number of
    /// controllers [default: sqlite://DATA_DIR/ferry.db; env: FERRY_STORE].
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// File holding the PostgreSQL store's password [env: FERRY_STORE_PASSWORD_FILE; else
    /// PGPASSWORD].
    #[arg(long, value_name = "FILE")]
    pub store_password_file: Option<String>,
    /// Silent longer than this, an agent is dead [default: 15s; env: FERRY_AGENT_TIMEOUT].
    #[arg(long, value_name = "DURATION")]
    pub agent_timeout: Option<String>,
    /// Bytes of output kept per attempt, the tail [default: 1048576; env: FERRY_LOG_LIMIT].
    #[arg(long, value_name = "BYTES")]
    pub log_limit: Option<String>,
    /// How long past its timeout an unreported attempt is left to its agent [default: 10s;
    /// env: FERRY_TIMEOUT_GRACE].
    #[arg(long, value_name = "DURATION")]
    pub timeout_grace: Option<String>,
    /// Bytes all outputs of one attempt may hold together [default: 10737418240 (10 GiB);
    /// env: FERRY_MAX_OUTPUT_BYTES].
    #[arg(long, value_name = "BYTES")]
    pub max_output_bytes: Option<String>,
    /// Bytes kept free on the data directory's filesystem for the store and logs: an upload
    /// that would eat into them is refused and its attempt fails, naming the figures
    /// [default: the smaller of 1 GiB and 5% of the filesystem; env: FERRY_DISK_RESERVE].
    #[arg(long, value_name = "BYTES")]
    pub disk_reserve: Option<String>,
    /// Artifacts of jobs that ended longer ago than this are removed [default: 7d;
    /// env: FERRY_ARTIFACT_RETENTION].
    #[arg(long, value_name = "DURATION")]
    pub artifact_retention: Option<String>,
    /// Agents that left (drained or dead) drop out of `ferry agents list` once last seen
    /// longer ago than this; `--all` still shows them [default: 24h;
    /// env: FERRY_DEPARTED_AGENT_RETENTION].
    #[arg(long, value_name = "DURATION")]
    pub departed_agent_retention: Option<String>,
    /// Where artifacts live: the data directory (default) or an S3-compatible store,
    /// s3://BUCKET/PREFIX [env: FERRY_ARTIFACTS]. Credentials come from the config file
    /// (s3_access_key_id, s3_secret_access_key, s3_session_token) or the usual AWS variables.
    #[arg(long, value_name = "URL")]
    pub artifacts: Option<String>,
    /// Endpoint of the S3-compatible store, e.g. http://127.0.0.1:9000 [default: AWS's for
    /// the region; env: FERRY_S3_ENDPOINT, AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL].
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
    /// Region of the S3-compatible store [default: us-east-1; env: FERRY_S3_REGION,
    /// AWS_REGION, AWS_DEFAULT_REGION].
    #[arg(long, value_name = "REGION")]
    pub s3_region: Option<String>,
    /// File holding the token agents must present to join [env: FERRY_AGENT_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub agent_token_file: Option<String>,
    /// File holding the token clients (the CLI) must present [env: FERRY_CLIENT_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub client_token_file: Option<String>,
    /// PEM certificate chain to serve TLS with (needs --tls-key) [env: FERRY_TLS_CERT].
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<String>,
    /// PEM private key of --tls-cert [env: FERRY_TLS_KEY].
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<String>,
    /// PEM CA certificates: every agent and client must present a certificate signed by one
    /// of them (mutual TLS) [env: FERRY_TLS_CLIENT_CA].
    #[arg(long, value_name = "FILE")]
    pub tls_client_ca: Option<String>,
    /// Threads serving the gRPC services [default: 1; env: FERRY_ASYNC_THREADS]. On one
    /// thread they spend less CPU than several threads stealing work from each other (the
    /// store's writes, checksums and artifact writes have threads of their own); raise it for
    /// a controller serving many agents on a large host.
    #[arg(long, value_name = "N")]
    pub async_threads: Option<String>,
    /// Client connections open at once, served or in their handshake; more are closed as soon
    /// as they are accepted. Keep it below the open-file limit less 256 descriptors for the
    /// store, artifacts and logs [default: the open-file limit less 256; env: FERRY_MAX_CONNECTIONS].
    #[arg(long, value_name = "N")]
    pub max_connections: Option<String>,
    /// A new connection that has not finished its TLS handshake and sent the HTTP/2 preface
    /// by then is closed; at least 1s [default: 10s; env: FERRY_HANDSHAKE_TIMEOUT].
    #[arg(long, value_name = "DURATION")]
    pub handshake_timeout: Option<String>,
}
