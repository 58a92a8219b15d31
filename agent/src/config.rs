//! Agent configuration: defaults < TOML file < `FERRY_*` environment < flags, then validation.

mod cli;
mod controllers;
mod datasources;
mod limits;
mod run_as;
mod task_env;
#[cfg(test)]
mod tests;
mod tls;
mod units;

use std::{collections::BTreeMap, ffi::OsString, path::PathBuf, time::Duration};

use clap::Parser;
use serde::Deserialize;

pub use cli::Cli;
pub use controllers::redacted;
pub use datasources::RawDatasource;
pub use limits::{RawCgroup, RawRlimits, TaskLimits};
pub use run_as::RunAs;
use units::{bytes_de, humantime_de};
pub use units::{format_bytes, parse_bytes};

use crate::secret::Secret;

/// Settings that can be set in every layer; the names are the config-file keys and, uppercased
/// with a `FERRY_` prefix, the environment variables.
const KEYS: &[&str] = &[
    "controller",
    "name",
    "queues",
    "labels",
    "max_tasks",
    "work_dir",
    "heartbeat_interval",
    "drain_timeout",
    "kill_grace",
    "token_file",
    "max_output_bytes",
    "tls_ca",
    "tls_cert",
    "tls_key",
    "pass_env",
    "task_path",
    "run_as",
    "allow_root_tasks",
];
/// Keys whose environment value is a comma-separated list. `FERRY_CONTROLLER` is one too, but
/// replaces the file's `controller` and `controllers` alike (`take_controllers`).
const LIST_KEYS: &[&str] = &["queues", "labels", "pass_env"];

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] config::ConfigError),
    #[error("environment variable {0} is not valid unicode")]
    NonUnicodeEnv(String),
    #[error("invalid {key}: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("invalid datasources.{name}: {message}")]
    Datasource { name: String, message: String },
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

/// The merged, not yet validated configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// One controller (the key from before there could be several).
    #[serde(default)]
    pub controller: Option<String>,
    /// Several controllers sharing one database.
    #[serde(default)]
    pub controllers: Option<Vec<String>>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "default_queues")]
    pub queues: Vec<String>,
    #[serde(default)]
    pub labels: Labels,
    #[serde(default = "default_max_tasks")]
    pub max_tasks: u32,
    #[serde(default = "default_work_dir")]
    pub work_dir: PathBuf,
    #[serde(default = "default_heartbeat", deserialize_with = "humantime_de")]
    pub heartbeat_interval: Duration,
    #[serde(default = "default_drain_timeout", deserialize_with = "humantime_de")]
    pub drain_timeout: Duration,
    #[serde(default = "default_kill_grace", deserialize_with = "humantime_de")]
    pub kill_grace: Duration,
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    #[serde(default = "default_max_output_bytes", deserialize_with = "bytes_de")]
    pub max_output_bytes: u64,
    #[serde(default)]
    pub tls_ca: Option<PathBuf>,
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Variables of the agent's environment its tasks get too.
    #[serde(default)]
    pub pass_env: Vec<String>,
    /// PATH of tasks, instead of `task_env::DEFAULT_PATH`.
    #[serde(default)]
    pub task_path: Option<String>,
    /// `[datasources.NAME]` tables (config file only: URLs and secrets stay out of flags).
    #[serde(default)]
    pub datasources: BTreeMap<String, RawDatasource>,
    /// `USER` or `USER:GROUP` shell tasks run as.
    #[serde(default)]
    pub run_as: Option<String>,
    /// Tasks of an agent running as root may run as root.
    #[serde(default)]
    pub allow_root_tasks: bool,
    /// Resource limits of each task's processes (config file only).
    #[serde(default)]
    pub rlimits: RawRlimits,
    /// Limits of each attempt's cgroup (config file only).
    #[serde(default)]
    pub cgroup: RawCgroup,
}

/// Labels as a list of `k=v` (flags, env) or as a TOML table (`[labels] site = "dc1"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Labels {
    List(Vec<String>),
    Table(BTreeMap<String, String>),
}

impl Default for Labels {
    fn default() -> Self {
        Labels::List(Vec::new())
    }
}

fn default_queues() -> Vec<String> {
    vec!["default".to_owned()]
}
fn default_max_tasks() -> u32 {
    4
}
fn default_work_dir() -> PathBuf {
    PathBuf::from("./ferry-work")
}
fn default_heartbeat() -> Duration {
    Duration::from_secs(5)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_kill_grace() -> Duration {
    Duration::from_secs(5)
}

fn default_max_output_bytes() -> u64 {
    10 << 30
}
/// The validated configuration the agent runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The controllers' URLs, in the order given (at least one).
    pub controllers: Vec<String>,
    pub name: String,
    /// No name was given: `run` makes it the hostname plus the agent's id (`identity`).
    pub name_is_default: bool,
    /// The agent's own id, from its work directory (`identity`); set by `run`.
    pub instance: String,
    pub hostname: String,
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    pub max_tasks: u32,
    pub work_dir: PathBuf,
    pub heartbeat_interval: Duration,
    pub drain_timeout: Duration,
    pub kill_grace: Duration,
    /// Presented as `authorization: Bearer …` on every call; never logged.
    pub token: Option<Secret>,
    /// Most bytes of outputs one attempt may upload.
    pub max_output_bytes: u64,
    /// TLS settings when the controller URL is https://.
    pub tls: Option<ferry_tls::ClientTls>,
    /// Datasources of sql tasks, by name; their URLs and passwords never leave the agent.
    pub datasources: BTreeMap<String, crate::sql::Datasource>,
    /// Variables of the agent's environment its tasks get too (checked names, each once).
    pub pass_env: Vec<String>,
    /// PATH of tasks, when not the default.
    pub task_path: Option<String>,
    /// The user shell tasks run as (`run_as`); whether the agent may switch to it, and what
    /// it does without one, is decided at start (`crate::task_user`).
    pub run_as: Option<RunAs>,
    /// Tasks may run as root.
    pub allow_root_tasks: bool,
    /// `[rlimits]` and `[cgroup]`.
    pub limits: TaskLimits,
    /// The files holding the agent's secrets — its config file, token, datasources'
    /// password files, TLS key — each with the setting that names it: checked at start to be
    /// unreadable by tasks.
    pub secret_files: Vec<(String, PathBuf)>,
    /// The binary run as guard server (the agent's own, in helper mode; not a setting: tests
    /// that run the agent inside their own binary point it at `ferry-agent`).
    pub guard_exe: PathBuf,
}

impl Config {
    /// Loads from the process's flags and environment.
    pub fn load() -> Result<Config, ConfigError> {
        let cli = Cli::parse();
        Config::load_from(cli, std::env::vars_os())
    }

    /// Loads from the given flags and environment (testable).
    pub fn load_from(
        cli: Cli,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = &cli.config {
            builder = builder.add_source(
                config::File::from(path.as_path())
                    .format(config::FileFormat::Toml)
                    .required(true),
            );
        }
        let mut controllers = None;
        for (key, value) in ferry_env(env)? {
            builder = if key == "controller" {
                controllers = Some(controllers::split_list(&value));
                builder
            } else if LIST_KEYS.contains(&key) {
                builder.set_override(key, controllers::split_list(&value))?
            } else {
                builder.set_override(key, value)?
            };
        }
        if !cli.controllers.is_empty() {
            controllers = Some(cli.controllers);
        }
        builder = builder
            .set_override_option("name", cli.name)?
            .set_override_option("max_tasks", cli.max_tasks.map(u64::from))?
            .set_override_option("work_dir", path_text(cli.work_dir))?
            .set_override_option("heartbeat_interval", cli.heartbeat_interval)?
            .set_override_option("drain_timeout", cli.drain_timeout)?
            .set_override_option("kill_grace", cli.kill_grace)?
            .set_override_option("token_file", path_text(cli.token_file))?
            .set_override_option("max_output_bytes", cli.max_output_bytes)?
            .set_override_option("tls_ca", path_text(cli.tls_ca))?
            .set_override_option("tls_cert", path_text(cli.tls_cert))?
            .set_override_option("tls_key", path_text(cli.tls_key))?;
        if !cli.queues.is_empty() {
            builder = builder.set_override("queues", cli.queues)?;
        }
        if !cli.labels.is_empty() {
            builder = builder.set_override("labels", cli.labels)?;
        }
        if !cli.pass_env.is_empty() {
            builder = builder.set_override("pass_env", cli.pass_env)?;
        }
        builder = builder
            .set_override_option("task_path", cli.task_path)?
            .set_override_option("run_as", cli.run_as)?
            .set_override_option("allow_root_tasks", cli.allow_root_tasks.then_some(true))?;
        let mut raw: RawConfig = builder.build()?.try_deserialize()?;
        raw.take_controllers(controllers);
        let mut config = raw.validate()?;
        if let Some(path) = cli.config {
            config.secret_files.insert(0, ("config".to_owned(), path));
        }
        Ok(config)
    }
}

fn path_text(path: Option<PathBuf>) -> Option<String> {
    path.map(|p| p.to_string_lossy().into_owned())
}

/// The `FERRY_<KEY>` variables that name a known key. Others (`FERRY_JOB_ID` inside a task,
/// a controller's `FERRY_LISTEN`) are not ours and are ignored rather than refused.
fn ferry_env(
    env: impl IntoIterator<Item = (OsString, OsString)>,
) -> Result<Vec<(&'static str, String)>, ConfigError> {
    let mut out = Vec::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else { continue };
        let Some(rest) = name.strip_prefix("FERRY_") else {
            continue;
        };
        let Some(key) = KEYS.iter().find(|k| k.eq_ignore_ascii_case(rest)) else {
            continue;
        };
        let value = value
            .into_string()
            .map_err(|_| ConfigError::NonUnicodeEnv(name.to_owned()))?;
        out.push((*key, value));
    }
    Ok(out)
}

impl RawConfig {
    /// Checks every setting and produces the typed configuration.
    pub fn validate(self) -> Result<Config, ConfigError> {
        let (controllers, tls) = self.controller_urls()?;
        let (pass_env, task_path) = self.task_env()?;
        let hostname = hostname();
        let name_is_default = self.name.is_none();
        let name = self.name.unwrap_or_else(|| hostname.clone());
        if name.trim().is_empty() {
            return Err(invalid("name", "must not be empty"));
        }
        if self.queues.is_empty() {
            return Err(invalid("queues", "serve at least one queue"));
        }
        if let Some(q) = self.queues.iter().find(|q| q.trim().is_empty()) {
            return Err(invalid("queues", format!("empty queue name {q:?}")));
        }
        let labels = match self.labels {
            Labels::Table(map) => map,
            Labels::List(list) => {
                let mut map = BTreeMap::new();
                for item in list {
                    let (k, v) = parse_label(&item)?;
                    map.insert(k, v);
                }
                map
            }
        };
        if labels.keys().any(|k| k.is_empty()) {
            return Err(invalid("labels", "a label key must not be empty"));
        }
        if self.max_tasks < 1 {
            return Err(invalid("max_tasks", "must be at least 1"));
        }
        if self.work_dir.as_os_str().is_empty() {
            return Err(invalid("work_dir", "must not be empty"));
        }
        if self.heartbeat_interval < Duration::from_millis(100) {
            return Err(invalid("heartbeat_interval", "must be at least 100ms"));
        }
        if self.max_output_bytes == 0 {
            return Err(invalid("max_output_bytes", "must be more than 0"));
        }
        let token = match &self.token_file {
            None => None,
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid("token_file", format!("cannot read {}: {e}", path.display()))
                })?;
                let token = text.trim();
                if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(invalid(
                        "token_file",
                        format!("{} must hold one printable token", path.display()),
                    ));
                }
                Some(Secret(token.to_owned()))
            }
        };
        let datasources = datasources::resolve(&self.datasources)?;
        let run_as = self.run_as.as_deref().map(RunAs::parse).transpose()?;
        let rlimits = self.rlimits.check(crate::users::euid())?;
        let (memory_max, cpu_max) = self.cgroup.check()?;
        let mut secret_files: Vec<(String, PathBuf)> = Vec::new();
        secret_files.extend(
            self.token_file
                .clone()
                .map(|p| ("token_file".to_owned(), p)),
        );
        secret_files.extend(self.tls_key.clone().map(|p| ("tls_key".to_owned(), p)));
        for (name, ds) in &self.datasources {
            if let Some(path) = &ds.password_file {
                secret_files.push((format!("datasources.{name}.password_file"), path.clone()));
            }
        }
        Ok(Config {
            run_as,
            allow_root_tasks: self.allow_root_tasks,
            limits: TaskLimits {
                rlimits,
                memory_max,
                cpu_max,
            },
            secret_files,
            pass_env,
            task_path,
            datasources,
            token,
            controllers,
            name,
            name_is_default,
            instance: String::new(),
            hostname,
            queues: self.queues,
            labels,
            max_tasks: self.max_tasks,
            work_dir: self.work_dir,
            heartbeat_interval: self.heartbeat_interval,
            drain_timeout: self.drain_timeout,
            kill_grace: self.kill_grace,
            max_output_bytes: self.max_output_bytes,
            tls,
            guard_exe: PathBuf::from("/proc/self/exe"),
        })
    }
}

fn parse_label(item: &str) -> Result<(String, String), ConfigError> {
    match item.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
        _ => Err(invalid(
            "labels",
            format!("{item:?} is not of the form k=v"),
        )),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "ferry-agent".to_owned())
}
