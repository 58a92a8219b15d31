//! What confines a task (issue 16, class 4), as the agent's config sets it and its guardian
//! applies it: the user and groups it runs as (`run_as`), its resource limits (`[rlimits]`,
//! set in the child before exec, so per process of the task) and its cgroup's limits
//! (`[cgroup]`: `memory.max` and `cpu.max`, for the attempt as a whole). Also how an ending
//! that one of them caused is told, naming the setting.

use std::time::Duration;

use ferry_jobspec::units::format_bytes;

/// The user a task runs as: set in the child with `setgroups`, `setresgid`, `setresuid`
/// before exec, so that its guardian (still the agent's user) keeps the power to kill it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Creds {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary one among them).
    pub groups: Vec<u32>,
}

/// A resource limit of `[rlimits]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    /// `RLIMIT_CPU`, seconds of CPU time per process: SIGXCPU at the limit, SIGKILL a second
    /// later.
    Cpu,
    /// `RLIMIT_AS`, bytes of address space per process: allocations beyond it fail.
    AddressSpace,
    /// `RLIMIT_NOFILE`, open descriptors per process.
    OpenFiles,
    /// `RLIMIT_FSIZE`, bytes per file written: SIGXFSZ at the limit.
    FileSize,
}

impl Resource {
    pub const ALL: [Resource; 4] = [
        Resource::Cpu,
        Resource::AddressSpace,
        Resource::OpenFiles,
        Resource::FileSize,
    ];

    /// The key in the agent's config, within `[rlimits]`.
    pub fn key(self) -> &'static str {
        match self {
            Resource::Cpu => "cpu",
            Resource::AddressSpace => "address_space",
            Resource::OpenFiles => "open_files",
            Resource::FileSize => "file_size",
        }
    }

    /// The kernel's number of the resource.
    // The constants are `u32` with glibc, `c_int` with musl.
    #[allow(clippy::unnecessary_cast)]
    pub fn raw(self) -> u32 {
        (match self {
            Resource::Cpu => libc::RLIMIT_CPU,
            Resource::AddressSpace => libc::RLIMIT_AS,
            Resource::OpenFiles => libc::RLIMIT_NOFILE,
            Resource::FileSize => libc::RLIMIT_FSIZE,
        }) as u32
    }

    fn from_raw(raw: u32) -> Option<Resource> {
        Resource::ALL.into_iter().find(|r| r.raw() == raw)
    }

    /// A value of this resource for people.
    fn show(self, value: u64) -> String {
        match self {
            Resource::Cpu => humantime::format_duration(Duration::from_secs(value)).to_string(),
            Resource::OpenFiles => value.to_string(),
            Resource::AddressSpace | Resource::FileSize => format_bytes(value),
        }
    }
}

/// One limit: the soft value the task runs under and the hard one it cannot raise past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: Resource,
    pub soft: u64,
    pub hard: u64,
}

impl Rlimit {
    /// The limit `value`; CPU time gets a second more as its hard limit, so that the kernel
    /// sends SIGXCPU (which names it) before SIGKILL.
    pub fn new(resource: Resource, value: u64) -> Rlimit {
        let hard = match resource {
            Resource::Cpu => value.saturating_add(1),
            _ => value,
        };
        Rlimit {
            resource,
            soft: value,
            hard,
        }
    }

    /// `rlimits.file_size = 1 MiB`.
    pub fn describe(&self) -> String {
        format!(
            "rlimits.{} = {}",
            self.resource.key(),
            self.resource.show(self.soft)
        )
    }

    /// The raw triple sent to the guardian.
    pub fn to_raw(self) -> (u32, u64, u64) {
        (self.resource.raw(), self.soft, self.hard)
    }

    pub fn from_raw((resource, soft, hard): (u32, u64, u64)) -> Option<Rlimit> {
        Some(Rlimit {
            resource: Resource::from_raw(resource)?,
            soft,
            hard,
        })
    }
}

/// `cpu.max`: `quota` microseconds of CPU time in each `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuMax {
    pub quota: u64,
    pub period: u64,
}

impl CpuMax {
    /// The period of `cpu.max` (the kernel's default).
    pub const PERIOD: u64 = 100_000;

    /// `cpus` CPUs' worth (at least 1 ms in each period).
    pub fn cpus(cpus: f64) -> CpuMax {
        CpuMax {
            quota: ((cpus * Self::PERIOD as f64).round() as u64).max(1000),
            period: Self::PERIOD,
        }
    }

    /// What `cpu.max` is written.
    pub fn file_text(&self) -> String {
        format!("{} {}", self.quota, self.period)
    }
}

/// Everything that confines a task of this agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Confine {
    /// `None`: the task runs as the guardian's (the agent's) user.
    pub user: Option<Creds>,
    pub rlimits: Vec<Rlimit>,
    /// `memory.max` of the attempt's cgroup, in bytes (and `memory.swap.max` 0).
    pub memory_max: Option<u64>,
    pub cpu_max: Option<CpuMax>,
}

impl Confine {
    fn rlimit(&self, resource: Resource) -> Option<&Rlimit> {
        self.rlimits.iter().find(|r| r.resource == resource)
    }

    /// What a signal that a limit sends means, naming that limit: SIGXCPU and SIGXFSZ.
    pub fn signal_cause(&self, signal: i32) -> Option<String> {
        let (resource, what) = match signal {
            libc::SIGXCPU => (Resource::Cpu, "a process of the task used up its CPU time"),
            libc::SIGXFSZ => (
                Resource::FileSize,
                "a process of the task wrote past the file-size limit",
            ),
            _ => return None,
        };
        let limit = self.rlimit(resource)?;
        Some(format!("{what} ({})", limit.describe()))
    }

    /// The error of an attempt that ended with `status` (`Ok(code)` exit code, `Err(signal)`
    /// killed by a signal), after `oom_kills` OOM kills in its cgroup: the usual text, and
    /// what in this confinement caused it when that can be told.
    pub fn explain(&self, status: Result<i32, i32>, oom_kills: u64) -> String {
        let base = match status {
            Ok(code) => format!("exit code {code}"),
            Err(signal) => format!("killed by signal {signal}"),
        };
        if oom_kills > 0 {
            let limit = self
                .memory_max
                .map(|m| format!(" (cgroup.memory_max = {})", format_bytes(m)))
                .unwrap_or_default();
            return format!(
                "{base}: out of memory: the attempt's cgroup reached its memory limit{limit} and the kernel killed {oom_kills} of its processes"
            );
        }
        // A shell reports a child killed by a signal as 128 + the signal.
        let signal = match status {
            Err(signal) => Some(signal),
            Ok(code) if code > 128 => Some(code - 128),
            Ok(_) => None,
        };
        if let Some(cause) = signal.and_then(|s| self.signal_cause(s)) {
            return format!("{base}: {cause}");
        }
        // Address-space and open-file limits send nothing: the call past them fails and the
        // program ends as it chooses. Named, so that such a failure is not a mystery.
        let silent: Vec<String> = [Resource::AddressSpace, Resource::OpenFiles]
            .into_iter()
            .filter_map(|r| self.rlimit(r).map(Rlimit::describe))
            .collect();
        if status == Ok(0) || silent.is_empty() {
            return base;
        }
        format!(
            "{base} (the task ran under {}, which fail a call past them rather than stop it)",
            silent.join(" and ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endings_caused_by_a_limit_name_it() {
        let confine = Confine {
            rlimits: vec![
                Rlimit::new(Resource::FileSize, 1 << 20),
                Rlimit::new(Resource::Cpu, 2),
            ],
            memory_max: Some(64 << 20),
            ..Confine::default()
        };
        assert_eq!(
            confine.explain(Err(libc::SIGXFSZ), 0),
            "killed by signal 25: a process of the task wrote past the file-size limit (rlimits.file_size = 1 MiB)"
        );
        assert_eq!(
            confine.explain(Ok(128 + libc::SIGXCPU), 0),
            "exit code 152: a process of the task used up its CPU time (rlimits.cpu = 2s)"
        );
        assert!(confine
            .explain(Err(9), 1)
            .contains("out of memory: the attempt's cgroup reached its memory limit (cgroup.memory_max = 64 MiB)"));
        assert_eq!(confine.explain(Ok(3), 0), "exit code 3");
        // Without the limit, the signal is only a signal.
        assert_eq!(
            Confine::default().explain(Err(libc::SIGXFSZ), 0),
            "killed by signal 25"
        );
        let silent = Confine {
            rlimits: vec![
                Rlimit::new(Resource::AddressSpace, 256 << 20),
                Rlimit::new(Resource::OpenFiles, 64),
            ],
            ..Confine::default()
        };
        assert_eq!(
            silent.explain(Ok(1), 0),
            "exit code 1 (the task ran under rlimits.address_space = 256 MiB and rlimits.open_files = 64, which fail a call past them rather than stop it)"
        );
        assert_eq!(silent.explain(Ok(0), 0), "exit code 0");
    }

    #[test]
    fn cpu_limits_leave_a_second_for_sigxcpu() {
        let cpu = Rlimit::new(Resource::Cpu, 10);
        assert_eq!((cpu.soft, cpu.hard), (10, 11));
        let files = Rlimit::new(Resource::OpenFiles, 64);
        assert_eq!((files.soft, files.hard), (64, 64));
        assert_eq!(Rlimit::from_raw(files.to_raw()), Some(files));
        assert_eq!(Rlimit::from_raw((9999, 1, 1)), None);
        assert_eq!(CpuMax::cpus(1.5).file_text(), "150000 100000");
        assert_eq!(CpuMax::cpus(0.001).quota, 1000);
    }
}
