//! The limits of every task of this agent (config file only): `[rlimits]`, set in each task's
//! process before exec (`cpu`, `address_space`, `open_files`, `file_size`), and `[cgroup]`,
//! the attempt's cgroup v2 limits where the hierarchy and its controllers are delegated
//! (`memory_max`, `cpu_max`); and their checks.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::{invalid, ConfigError};
use crate::guard::confine::{CpuMax, Resource, Rlimit};

/// `[rlimits]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRlimits {
    /// CPU time per process, a duration (`30s`, `10m`), counted in whole seconds.
    #[serde(default, deserialize_with = "opt_duration")]
    pub cpu: Option<Duration>,
    /// Address space per process, bytes (`4GiB`).
    #[serde(default, deserialize_with = "opt_bytes")]
    pub address_space: Option<u64>,
    /// Open descriptors per process.
    #[serde(default)]
    pub open_files: Option<u64>,
    /// Largest file a process may write, bytes (`10GiB`).
    #[serde(default, deserialize_with = "opt_bytes")]
    pub file_size: Option<u64>,
}

/// `[cgroup]` as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCgroup {
    /// `memory.max` of each attempt's cgroup, bytes (`2GiB`).
    #[serde(default, deserialize_with = "opt_bytes")]
    pub memory_max: Option<u64>,
    /// `cpu.max` of each attempt's cgroup, in CPUs (`1.5`).
    #[serde(default, deserialize_with = "opt_cpus")]
    pub cpu_max: Option<f64>,
}

/// The checked limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaskLimits {
    pub rlimits: Vec<Rlimit>,
    pub memory_max: Option<u64>,
    pub cpu_max: Option<CpuMax>,
}

impl RawRlimits {
    /// Each limit set, checked: more than 0, and within what this process may give (an agent
    /// not running as root cannot raise a hard limit).
    pub(super) fn check(&self, euid: u32) -> Result<Vec<Rlimit>, ConfigError> {
        let set = [
            (Resource::Cpu, self.cpu.map(|d| d.as_secs())),
            (Resource::AddressSpace, self.address_space),
            (Resource::OpenFiles, self.open_files),
            (Resource::FileSize, self.file_size),
        ];
        let mut limits = Vec::new();
        for (resource, value) in set {
            let Some(value) = value else { continue };
            let key = key_of(resource);
            if value == 0 {
                return Err(invalid(
                    key,
                    match resource {
                        Resource::Cpu => "must be at least 1s",
                        _ => "must be more than 0",
                    },
                ));
            }
            let limit = Rlimit::new(resource, value);
            if euid != 0 {
                let own = own_hard_limit(resource);
                if own != libc::RLIM64_INFINITY && limit.hard > own {
                    return Err(invalid(
                        key,
                        format!(
                            "{} is above this agent's own hard limit ({own}), which only root can raise",
                            limit.hard
                        ),
                    ));
                }
            }
            limits.push(limit);
        }
        Ok(limits)
    }
}

impl RawCgroup {
    pub(super) fn check(&self) -> Result<(Option<u64>, Option<CpuMax>), ConfigError> {
        if self.memory_max.is_some_and(|m| m < 1 << 20) {
            return Err(invalid(
                "cgroup.memory_max",
                "must be at least 1MiB (a task needs memory to start)",
            ));
        }
        let cpu_max = match self.cpu_max {
            None => None,
            Some(cpus) if (0.01..=4096.0).contains(&cpus) => Some(CpuMax::cpus(cpus)),
            Some(cpus) => {
                return Err(invalid(
                    "cgroup.cpu_max",
                    format!("{cpus} is not a number of CPUs between 0.01 and 4096"),
                ))
            }
        };
        Ok((self.memory_max, cpu_max))
    }
}

/// The config key of a resource's limit.
fn key_of(resource: Resource) -> &'static str {
    match resource {
        Resource::Cpu => "rlimits.cpu",
        Resource::AddressSpace => "rlimits.address_space",
        Resource::OpenFiles => "rlimits.open_files",
        Resource::FileSize => "rlimits.file_size",
    }
}

/// This process's hard limit of `resource`.
fn own_hard_limit(resource: Resource) -> u64 {
    let mut limit = libc::rlimit64 {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit64 to fill in.
    let rc = unsafe { libc::getrlimit64(resource.raw() as _, &mut limit) };
    if rc == 0 {
        limit.rlim_max
    } else {
        libc::RLIM64_INFINITY
    }
}

fn opt_bytes<'de, D: Deserializer<'de>>(de: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Bytes {
        Number(u64),
        Text(String),
    }
    match Bytes::deserialize(de)? {
        Bytes::Number(n) => Ok(Some(n)),
        Bytes::Text(text) => ferry_jobspec::units::bytes_arg(&text)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

fn opt_duration<'de, D: Deserializer<'de>>(de: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(de)?;
    humantime::parse_duration(text.trim())
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("bad duration {text:?} ({e}); use e.g. 10m")))
}

fn opt_cpus<'de, D: Deserializer<'de>>(de: D) -> Result<Option<f64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Cpus {
        Float(f64),
        Int(u64),
        Text(String),
    }
    match Cpus::deserialize(de)? {
        Cpus::Float(f) => Ok(Some(f)),
        Cpus::Int(n) => Ok(Some(n as f64)),
        Cpus::Text(text) => text.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("bad number of CPUs {text:?}; use e.g. 1.5"))
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::{ffi::OsString, io::Write};

    use clap::Parser;

    use super::super::{Cli, Config};
    use super::*;

    fn load(toml: &str, args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        file.write_all(toml.as_bytes()).unwrap();
        let mut argv = vec!["ferry-agent", "--config", file.path().to_str().unwrap()];
        argv.extend_from_slice(args);
        let env: Vec<(OsString, OsString)> =
            env.iter().map(|(k, v)| (k.into(), v.into())).collect();
        Config::load_from(Cli::try_parse_from(argv).unwrap(), env).map_err(|e| e.to_string())
    }

    #[test]
    fn limits_and_the_tasks_user_from_each_layer() {
        let c = load(
            "run_as = \"root:0\"\n[rlimits]\ncpu = \"90s\"\naddress_space = \"1GiB\"\n\
             open_files = 256\nfile_size = 1048576\n[cgroup]\nmemory_max = \"2GiB\"\ncpu_max = 1.5\n",
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            c.limits.rlimits,
            [
                Rlimit::new(Resource::Cpu, 90),
                Rlimit::new(Resource::AddressSpace, 1 << 30),
                Rlimit::new(Resource::OpenFiles, 256),
                Rlimit::new(Resource::FileSize, 1 << 20),
            ]
        );
        assert_eq!(c.limits.memory_max, Some(2 << 30));
        assert_eq!(c.limits.cpu_max, Some(CpuMax::cpus(1.5)));
        assert_eq!(c.run_as.as_ref().map(|r| r.uid), Some(0));
        assert!(!c.allow_root_tasks);
        // The config file is among the secret files, first.
        assert_eq!(c.secret_files[0].0, "config");

        let c = load("", &[], &[("FERRY_ALLOW_ROOT_TASKS", "true")]).unwrap();
        assert!(c.allow_root_tasks && c.run_as.is_none() && c.limits == TaskLimits::default());
        let c = load("allow_root_tasks = false", &["--allow-root-tasks"], &[]).unwrap();
        assert!(c.allow_root_tasks);
        let c = load("run_as = \"ferry-no-such-user\"", &["--run-as", "0:0"], &[]).unwrap();
        assert_eq!(c.run_as.map(|r| r.spec), Some("0:0".to_owned()));
        let c = load("cgroup.cpu_max = 2", &[], &[]).unwrap();
        assert_eq!(c.limits.cpu_max.map(|m| m.quota), Some(200_000));
    }

    #[test]
    fn bad_limits_are_refused_by_name() {
        for (toml, expected) in [
            (
                "run_as = \"ferry-no-such-user\"",
                "invalid run_as: no user named",
            ),
            (
                "[rlimits]\ncpu = \"0s\"",
                "invalid rlimits.cpu: must be at least 1s",
            ),
            (
                "[rlimits]\nfile_size = 0",
                "invalid rlimits.file_size: must be more than 0",
            ),
            ("[rlimits]\nfile_size = \"lots\"", "bad size \"lots\""),
            ("[rlimits]\ncpu = \"soon\"", "bad duration \"soon\""),
            ("[rlimits]\nstack = 1", "unknown field `stack`"),
            (
                "[cgroup]\nmemory_max = 4096",
                "invalid cgroup.memory_max: must be at least 1MiB",
            ),
            (
                "[cgroup]\ncpu_max = 0",
                "invalid cgroup.cpu_max: 0 is not a number of CPUs",
            ),
            (
                "[cgroup]\ncpu_max = \"many\"",
                "bad number of CPUs \"many\"",
            ),
        ] {
            let e = load(toml, &[], &[]).unwrap_err();
            assert!(e.contains(expected), "{toml:?}: {e}");
        }
    }
}
