//! The agent's command-line flags: every one optional, so that only the flags given override
//! the lower layers.

use std::path::PathBuf;

use clap::Parser;

/// Command-line flags. Every field is optional so that only flags actually given override the
/// lower layers.
#[derive(Debug, Default, Parser)]
#[command(
    name = "ferry-agent",
    version,
    about = "Ferry agent: runs tasks near the data",
    after_help = ferry_log::RUST_LOG_HELP
)]
pub struct Cli {
    /// TOML config file.
    #[arg(long, value_name = "FILE", env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Controller URL, http:// or https://; repeat (or separate with commas) for several
    /// controllers sharing one database: the agent moves to the next when one is unreachable
    /// [default: http://127.0.0.1:7070].
    #[arg(long = "controller", value_name = "URL", value_delimiter = ',')]
    pub controllers: Vec<String>,
    /// Agent name [default: the hostname and a short id kept in the work directory].
    #[arg(long, value_name = "NAME", env = "FERRY_NAME")]
    pub name: Option<String>,
    /// Queue to serve; repeat for several [default: default].
    #[arg(
        long = "queue",
        value_name = "Q",
        env = "FERRY_QUEUES",
        value_delimiter = ','
    )]
    pub queues: Vec<String>,
    /// Label `k=v` this agent carries; repeat for several.
    #[arg(
        long = "label",
        value_name = "K=V",
        env = "FERRY_LABELS",
        value_delimiter = ','
    )]
    pub labels: Vec<String>,
    /// Attempts run at once [default: 4].
    #[arg(long, value_name = "N", env = "FERRY_MAX_TASKS", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tasks: Option<u32>,
    /// Directory for attempt working directories [default: ./ferry-work].
    #[arg(long, value_name = "DIR", env = "FERRY_WORK_DIR")]
    pub work_dir: Option<PathBuf>,
    /// Heartbeat period, e.g. `5s` [default: 5s].
    #[arg(long, value_name = "DURATION", env = "FERRY_HEARTBEAT_INTERVAL", value_parser = duration_arg)]
    pub heartbeat_interval: Option<String>,
    /// How long a drain waits for running attempts before killing them [default: 30s].
    #[arg(long, value_name = "DURATION", env = "FERRY_DRAIN_TIMEOUT", value_parser = duration_arg)]
    pub drain_timeout: Option<String>,
    /// Grace between SIGTERM and SIGKILL of a task's process group [default: 5s].
    #[arg(long, value_name = "DURATION", env = "FERRY_KILL_GRACE", value_parser = duration_arg)]
    pub kill_grace: Option<String>,
    /// File holding the token this agent presents to join the controller.
    #[arg(long, value_name = "FILE", env = "FERRY_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// Most bytes one attempt may upload as outputs, all files together; a number of bytes
    /// or e.g. `500MiB`, `10GiB` [default: 10GiB].
    #[arg(long, value_name = "BYTES", env = "FERRY_MAX_OUTPUT_BYTES", value_parser = size_arg)]
    pub max_output_bytes: Option<String>,
    /// PEM CA certificates to trust for an https:// controller [default: the system's].
    #[arg(long, value_name = "FILE", env = "FERRY_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// PEM certificate this agent presents to the controller (with --tls-key), for a
    /// controller that requires client certificates.
    #[arg(long, value_name = "FILE", env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// A variable of the agent's environment its tasks get too; repeat (or separate with
    /// commas) for several. Tasks otherwise get only PATH, HOME, LANG, LC_ALL, TZ and their
    /// FERRY_* variables.
    #[arg(
        long = "pass-env",
        value_name = "NAME",
        value_delimiter = ',',
        env = "FERRY_PASS_ENV"
    )]
    pub pass_env: Vec<String>,
    /// PATH of tasks [default: /usr/local/bin:/usr/bin:/bin].
    #[arg(long, value_name = "PATH", env = "FERRY_TASK_PATH")]
    pub task_path: Option<String>,
    /// User (and group) shell tasks run as, `USER` or `USER:GROUP`; needs the agent to run as
    /// root. An agent running as root without it refuses to start unless --allow-root-tasks.
    #[arg(long, value_name = "USER[:GROUP]", env = "FERRY_RUN_AS")]
    pub run_as: Option<String>,
    /// Let an agent running as root run its tasks as root (without --run-as, or with
    /// --run-as root).
    #[arg(long)]
    pub allow_root_tasks: bool,
}

/// A duration flag checked as the flag (`invalid value 'soon' for '--drain-timeout
/// <DURATION>'`), kept as text for the config layers.
fn duration_arg(text: &str) -> Result<String, String> {
    humantime::parse_duration(text.trim())
        .map(|_| text.to_owned())
        .map_err(|e| format!("bad duration {text:?} ({e}); use e.g. 10s, 5m, 7d"))
}

/// A size flag checked as the flag, kept as text for the config layers.
fn size_arg(text: &str) -> Result<String, String> {
    ferry_jobspec::units::bytes_arg(text).map(|_| text.to_owned())
}
