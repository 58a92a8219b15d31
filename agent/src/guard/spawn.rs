//! Starting a guardian's task: `spec.argv` in `spec.cwd`, with the spec's environment and
//! nothing of the guardian's, stdin from `/dev/null`, in a process group of its own, under its
//! rlimits and as its user (`spec.confine`, set between clone and exec) and — with
//! cgroup v2 — born in the attempt's cgroup (`clone3` with `CLONE_INTO_CGROUP`, Linux 5.7).
//! Writing a running process into `cgroup.procs` instead is a cgroup migration, which waits
//! for an RCU grace period (as long as a short task's whole run) and holds up every fork on
//! the machine meanwhile; it is kept only for kernels without `CLONE_INTO_CGROUP`.
//!
//! On x86-64 the child shares the guardian's memory until it execs (`CLONE_VM | CLONE_VFORK`
//! on a stack of its own, as `posix_spawn` does), sparing a short task the copy of an address
//! space and its page faults. Elsewhere it is a copy, as after `fork`. The figures:
//! `docs/decisions/0010-per-attempt-guardian.md`.

use std::{
    ffi::{c_void, CString, OsString},
    fs::File,
    io::{self, Read},
    os::{
        fd::{AsRawFd, OwnedFd},
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::Path,
    process::{Command, Stdio},
    ptr,
};

use nix::{
    sys::wait::waitpid,
    unistd::{pipe2, Pid},
};

use super::{cgroup, protocol::Spec};

/// The kernel's `struct clone_args` (`linux/sched.h`), up to `cgroup`.
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;
/// The stack a child runs on until it execs.
const CHILD_STACK: usize = 64 * 1024;

/// What the child needs, prepared before the clone: it allocates nothing.
struct ChildArgs {
    path: *const libc::c_char,
    argv: *const *const libc::c_char,
    envp: *const *const libc::c_char,
    cwd: *const libc::c_char,
    null: i32,
    stdout: i32,
    stderr: i32,
    error: i32,
    limits: Limits,
}

/// The resource limits and user a child takes on before exec, as raw system-call arguments.
struct Limits {
    rlimits: Vec<(u32, libc::rlimit64)>,
    /// uid, gid and the supplementary groups.
    user: Option<(u32, u32, Vec<libc::gid_t>)>,
}

impl Limits {
    fn of(spec: &Spec) -> Limits {
        let c = &spec.confine;
        Limits {
            rlimits: c
                .rlimits
                .iter()
                .map(|r| {
                    let (resource, soft, hard) = r.to_raw();
                    let raw = libc::rlimit64 {
                        rlim_cur: soft,
                        rlim_max: hard,
                    };
                    (resource, raw)
                })
                .collect(),
            user: c.user.as_ref().map(|u| (u.uid, u.gid, u.groups.clone())),
        }
    }

    /// Sets the limits, then drops to the user (groups first, while still allowed to); the
    /// step that failed and its errno. Only raw system calls: they change this process alone
    /// (glibc's `setuid` would signal the threads of the memory it shares until exec), and
    /// are safe between clone and exec.
    ///
    /// # Safety
    /// Only to be called in the child before exec.
    unsafe fn apply(&self) -> Result<(), (Step, i32)> {
        let errno = || io::Error::last_os_error().raw_os_error().unwrap_or(0);
        for (resource, limit) in &self.rlimits {
            // SAFETY: `limit` is a valid rlimit64; the old value is not asked for.
            let rc = unsafe {
                libc::syscall(
                    libc::SYS_prlimit64,
                    0,
                    *resource,
                    limit as *const libc::rlimit64,
                    ptr::null_mut::<libc::rlimit64>(),
                )
            };
            if rc != 0 {
                return Err((Step::Rlimit, errno()));
            }
        }
        if let Some((uid, gid, groups)) = &self.user {
            // SAFETY: `groups` holds `groups.len()` gids.
            unsafe {
                if libc::syscall(libc::SYS_setgroups, groups.len(), groups.as_ptr()) != 0
                    || libc::syscall(libc::SYS_setresgid, *gid, *gid, *gid) != 0
                    || libc::syscall(libc::SYS_setresuid, *uid, *uid, *uid) != 0
                {
                    return Err((Step::User, errno()));
                }
            }
        }
        Ok(())
    }
}

/// What a child was doing when it failed, sent back with the errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(i32)]
enum Step {
    Setup = 0,
    Rlimit = 1,
    User = 2,
    Cwd = 3,
    Exec = 4,
}

impl Step {
    fn from_raw(raw: i32) -> Step {
        match raw {
            1 => Step::Rlimit,
            2 => Step::User,
            3 => Step::Cwd,
            4 => Step::Exec,
            _ => Step::Setup,
        }
    }

    /// The error of a start that failed at this step.
    fn error(self, spec: &Spec, errno: i32) -> io::Error {
        let e = io::Error::from_raw_os_error(errno);
        let user = spec
            .confine
            .user
            .as_ref()
            .map_or_else(String::new, |u| format!(" as uid {}", u.uid));
        let what = match self {
            Step::Setup => return e,
            Step::Rlimit => "cannot set the task's rlimits".to_owned(),
            Step::User => format!("cannot switch to the task's user (run_as){user}"),
            Step::Cwd => format!(
                "cannot enter the working directory {}{user}",
                spec.cwd.display()
            ),
            Step::Exec => return e,
        };
        io::Error::new(e.kind(), format!("{what}: {e}"))
    }
}

/// Starts tasks for one guardian: what every start shares.
pub(super) struct Spawner {
    null: File,
    stack: Option<Stack>,
}

impl Spawner {
    pub fn new() -> io::Result<Self> {
        Ok(Spawner {
            null: File::open("/dev/null")?,
            stack: Stack::new(),
        })
    }

    /// Starts the task in `cgroup` (an open directory) if given; its pid. `stdout` and
    /// `stderr` are the task's from then on.
    pub fn start(
        &mut self,
        spec: &Spec,
        cgroup: Option<(&Path, &OwnedFd)>,
        stdout: OwnedFd,
        stderr: OwnedFd,
    ) -> io::Result<i32> {
        if spec.argv.is_empty() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "no program"));
        }
        match self.clone_task(spec, cgroup.map(|(_, fd)| fd), &stdout, &stderr) {
            Ok(pid) => return Ok(pid),
            // An older kernel: started as usual, and (with a cgroup) moved in before exec.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOSYS | libc::EINVAL | libc::E2BIG)
                ) => {}
            Err(e) => return Err(e),
        }
        let mut cmd = Command::new(&spec.argv[0]);
        // Its working directory is entered as the task's user, after the switch below.
        cmd.args(&spec.argv[1..])
            .env_clear()
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        if let Some((dir, _)) = cgroup {
            let mut procs = cgroup::procs_file(dir)?;
            // SAFETY: one `write` to an open file, async-signal-safe.
            unsafe { cmd.pre_exec(move || cgroup::join(&mut procs)) };
        }
        let limits = Limits::of(spec);
        let cwd = cstring(spec.cwd.as_os_str().as_bytes())?;
        // SAFETY: system calls only, on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                limits
                    .apply()
                    .map_err(|(_, errno)| io::Error::from_raw_os_error(errno))?;
                if libc::chdir(cwd.as_ptr()) != 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            })
        };
        Ok(cmd.spawn()?.id() as i32)
    }

    /// `clone3` (into the cgroup open as `dirfd`), then `execve` in the child; an exec
    /// failure's errno comes back through a close-on-exec pipe.
    fn clone_task(
        &mut self,
        spec: &Spec,
        dirfd: Option<&OwnedFd>,
        stdout: &OwnedFd,
        stderr: &OwnedFd,
    ) -> io::Result<i32> {
        let argv: Vec<CString> = spec
            .argv
            .iter()
            .map(|a| cstring(a.as_bytes()))
            .collect::<io::Result<_>>()?;
        let env: Vec<CString> = spec
            .env
            .iter()
            .map(|(k, v)| key_value(k, v))
            .collect::<io::Result<_>>()?;
        let mut envp: Vec<*const libc::c_char> = env.iter().map(|kv| kv.as_ptr()).collect();
        envp.push(ptr::null());
        let mut argv_ptrs: Vec<*const libc::c_char> = argv.iter().map(|a| a.as_ptr()).collect();
        argv_ptrs.push(ptr::null());
        let cwd = cstring(spec.cwd.as_os_str().as_bytes())?;
        let (err_r, err_w) = pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let child_args = ChildArgs {
            path: argv[0].as_ptr(),
            argv: argv_ptrs.as_ptr(),
            envp: envp.as_ptr(),
            cwd: cwd.as_ptr(),
            null: self.null.as_raw_fd(),
            stdout: stdout.as_raw_fd(),
            stderr: stderr.as_raw_fd(),
            error: err_w.as_raw_fd(),
            limits: Limits::of(spec),
        };
        let mut args = CloneArgs {
            exit_signal: libc::SIGCHLD as u64,
            ..CloneArgs::default()
        };
        if let Some(fd) = dirfd {
            args.flags |= CLONE_INTO_CGROUP;
            args.cgroup = fd.as_raw_fd() as u64;
        }
        // SAFETY: `child_args` and everything it points to outlive the child's use of them
        // (the parent resumes once the child has exec'd or exited, or the child has its own
        // copy); the child only makes system calls with them.
        let pid = unsafe { clone(&mut args, self.stack.as_mut(), &child_args) };
        if pid < 0 {
            return Err(io::Error::last_os_error());
        }
        drop(err_w);
        let mut failure = [0u8; 8];
        match File::from(err_r).read(&mut failure) {
            Ok(8) => {
                let _ = waitpid(Pid::from_raw(pid as i32), None);
                let step = i32::from_ne_bytes(failure[..4].try_into().unwrap_or_default());
                let errno = i32::from_ne_bytes(failure[4..].try_into().unwrap_or_default());
                Err(Step::from_raw(step).error(spec, errno))
            }
            _ => Ok(pid as i32),
        }
    }
}

fn cstring(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte"))
}

fn key_value(k: &OsString, v: &OsString) -> io::Result<CString> {
    let mut kv = k.as_bytes().to_vec();
    kv.push(b'=');
    kv.extend_from_slice(v.as_bytes());
    cstring(&kv)
}

/// The child, until it execs: signals as a new program expects them, its own process group,
/// stdio, its limits and user, working directory (entered as that user). Never returns.
extern "C" fn child(arg: *mut c_void) -> ! {
    // SAFETY: `arg` is the `ChildArgs` the parent prepared; only system calls follow.
    unsafe {
        let a = &*(arg as *const ChildArgs);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, ptr::null_mut());
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let failed = if libc::setpgid(0, 0) != 0
            || libc::dup2(a.null, 0) != 0
            || libc::dup2(a.stdout, 1) != 1
            || libc::dup2(a.stderr, 2) != 2
        {
            (Step::Setup, *libc::__errno_location())
        } else if let Err(failed) = a.limits.apply() {
            failed
        } else if libc::chdir(a.cwd) != 0 {
            (Step::Cwd, *libc::__errno_location())
        } else {
            libc::execve(a.path, a.argv, a.envp);
            (Step::Exec, *libc::__errno_location())
        };
        let report = [failed.0 as i32, failed.1];
        libc::write(a.error, report.as_ptr().cast(), 8);
        libc::_exit(127)
    }
}

/// A stack for children that share the guardian's memory.
struct Stack {
    base: *mut c_void,
}

impl Stack {
    fn new() -> Option<Self> {
        if !cfg!(target_arch = "x86_64") {
            return None;
        }
        // SAFETY: an anonymous private mapping, unmapped on drop.
        let base = unsafe {
            libc::mmap(
                ptr::null_mut(),
                CHILD_STACK,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        (base != libc::MAP_FAILED).then_some(Stack { base })
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        // SAFETY: mapped in `new`, no child runs on it once its parent has resumed.
        unsafe { libc::munmap(self.base, CHILD_STACK) };
    }
}

/// `clone3` with `args`: on `stack` sharing this process's memory until the child execs or
/// exits (the parent waits meanwhile), else as a copy. Returns the pid, or -1 (errno set).
///
/// # Safety
/// `child_args` must stay valid until the child has exec'd or exited.
unsafe fn clone(args: &mut CloneArgs, stack: Option<&mut Stack>, child_args: &ChildArgs) -> i64 {
    let arg = child_args as *const ChildArgs as *mut c_void;
    #[cfg(target_arch = "x86_64")]
    if let Some(stack) = stack {
        args.flags |= (libc::CLONE_VM | libc::CLONE_VFORK) as u64;
        args.stack = stack.base as u64;
        args.stack_size = CHILD_STACK as u64;
        let ret: i64;
        // The child starts after `syscall` on the new stack (16-byte aligned: `call` then
        // leaves it as the ABI wants) and never comes back; the parent gets its pid or -errno.
        // SAFETY: r12 and r13 survive the syscall; the child touches nothing of this frame.
        unsafe {
            std::arch::asm!(
                "syscall",
                "test rax, rax",
                "jnz 2f",
                "xor ebp, ebp",
                "mov rdi, r12",
                "call r13",
                "ud2",
                "2:",
                inlateout("rax") libc::SYS_clone3 => ret,
                in("rdi") args as *mut CloneArgs,
                in("rsi") std::mem::size_of::<CloneArgs>(),
                in("r12") arg,
                in("r13") child as extern "C" fn(*mut c_void) -> !,
                lateout("rcx") _,
                lateout("r11") _,
                options(nostack),
            );
        }
        if ret < 0 {
            // SAFETY: errno of this thread.
            unsafe { *libc::__errno_location() = -ret as i32 };
            return -1;
        }
        return ret;
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = stack;
    // SAFETY: a plain clone3: the child is a copy of this single-threaded process.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone3,
            args as *mut CloneArgs,
            std::mem::size_of::<CloneArgs>(),
        )
    };
    if pid == 0 {
        child(arg);
    }
    pid
}
