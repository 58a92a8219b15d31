//! cgroup v2 containment of attempts, where the hierarchy is writable: the agent's sub-tree
//! (`<its cgroup>/ferry-agent-<pid>`, the agent itself moved into its leaf `agent`, so that the
//! sub-tree keeps cgroup v2's "no internal processes" rule), an attempt's cgroup beside it,
//! and killing, signalling and removing one, descendants that left the process group included.

use std::{
    fs,
    io::{self, Read, Seek, Write},
    os::fd::AsFd,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use nix::{
    poll::{PollFd, PollFlags, PollTimeout},
    sys::signal::{kill, Signal},
    unistd::Pid,
};

/// The leaf the agent and its guardians live in.
pub const AGENT_LEAF: &str = "agent";
/// An agent's sub-tree is named by this prefix and the agent's pid.
const TREE_PREFIX: &str = "ferry-agent-";

/// Removes the empty sub-trees that agents killed without a restart on their work directory
/// left beside ours (a live agent's tree holds at least the agent; one with processes left is
/// for its own successor to stop).
fn remove_abandoned(own: &Path) {
    for tree in subdirs(own) {
        let pid = tree
            .file_name()
            .and_then(|n| n.to_str()?.strip_prefix(TREE_PREFIX)?.parse::<i32>().ok());
        if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) && !populated(&tree)
        {
            remove_tree(&tree);
        }
    }
}

/// `\040`-style escapes of `/proc/self/mountinfo` (space, tab, newline, backslash).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 3 < bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).unwrap_or("");
            if let Ok(n) = u8::from_str_radix(digits, 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The directory of a process's cgroup v2 from its `/proc/PID/cgroup` and `mountinfo` texts.
pub fn locate(cgroup: &str, mountinfo: &str) -> Option<PathBuf> {
    let path = cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))?
        .trim_end();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        if right.split_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let fields: Vec<&str> = left.split_whitespace().collect();
        let (root, mount) = (unescape(fields.get(3)?), unescape(fields.get(4)?));
        // A mount of a sub-tree (a cgroup namespace, a container) holds only what is under it.
        let rel = if root == "/" {
            path
        } else {
            path.strip_prefix(root.as_str())
                .filter(|r| r.is_empty() || r.starts_with('/'))?
        };
        return Some(Path::new(&mount).join(rel.trim_start_matches('/')));
    }
    None
}

/// Sets up this agent's sub-tree and moves the agent into its leaf; the reason when cgroup v2
/// cannot be used here.
pub fn setup() -> Result<PathBuf, String> {
    let read = |p: &str| fs::read_to_string(p).map_err(|e| format!("cannot read {p}: {e}"));
    let own = locate(&read("/proc/self/cgroup")?, &read("/proc/self/mountinfo")?)
        .ok_or("no cgroup v2 hierarchy is mounted for this process")?;
    remove_abandoned(&own);
    let tree = own.join(format!("{TREE_PREFIX}{}", std::process::id()));
    let leaf = tree.join(AGENT_LEAF);
    let made = fs::create_dir_all(&leaf)
        .and_then(|()| fs::write(leaf.join("cgroup.procs"), "0"))
        .map_err(|e| format!("cannot use {}: {e}", tree.display()));
    if let Err(e) = made {
        let _ = fs::remove_dir(&leaf);
        let _ = fs::remove_dir(&tree);
        return Err(e);
    }
    Ok(tree)
}

/// The pids in `dir`'s own `cgroup.procs` and those of its descendants.
pub fn procs(dir: &Path) -> Vec<Pid> {
    let mut pids = Vec::new();
    if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
        pids.extend(
            text.lines()
                .filter_map(|l| l.trim().parse().ok())
                .map(Pid::from_raw),
        );
    }
    for child in subdirs(dir) {
        pids.extend(procs(&child));
    }
    pids
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// Sends `signal` to every process of `dir` and its descendants. SIGKILL goes through
/// `cgroup.kill` where the kernel has it (5.14): one write, and no fork escapes it.
pub fn signal(dir: &Path, signal: Signal) {
    if signal == Signal::SIGKILL && fs::write(dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    for pid in procs(dir) {
        let _ = kill(pid, signal);
    }
}

/// Whether a process is left in `dir` or below (`cgroup.events`); false once it is gone.
pub fn populated(dir: &Path) -> bool {
    fs::read_to_string(dir.join("cgroup.events"))
        .map(|t| t.lines().any(|l| l == "populated 1"))
        .unwrap_or(false)
}

/// Waits, at most `limit`, until nothing is left in `dir` (the kernel wakes `cgroup.events`
/// pollers when it changes). True when empty.
pub fn wait_empty(dir: &Path, limit: Duration) -> bool {
    let Ok(mut events) = fs::File::open(dir.join("cgroup.events")) else {
        return true;
    };
    let deadline = Instant::now() + limit;
    let mut text = String::new();
    loop {
        text.clear();
        if events
            .rewind()
            .and_then(|()| events.read_to_string(&mut text))
            .is_err()
        {
            return true;
        }
        if !text.lines().any(|l| l == "populated 1") {
            return true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return false;
        }
        let ms = PollTimeout::try_from(left.as_millis().clamp(1, 1000) as i32)
            .unwrap_or(PollTimeout::MAX);
        let mut fds = [PollFd::new(events.as_fd(), PollFlags::POLLPRI)];
        let _ = nix::poll::poll(&mut fds, ms);
    }
}

/// Kills everything in `dir` and below, waits (at most `limit`) for it to be gone, and
/// removes the directories bottom-up. True when `dir` is gone.
pub fn kill_and_remove(dir: &Path, limit: Duration) -> bool {
    if !dir.exists() {
        return true;
    }
    signal(dir, Signal::SIGKILL);
    wait_empty(dir, limit);
    remove_tree(dir)
}

/// Removes `dir` and its sub-cgroups, children first (a cgroup with processes stays).
pub fn remove_tree(dir: &Path) -> bool {
    for child in subdirs(dir) {
        remove_tree(&child);
    }
    match fs::remove_dir(dir) {
        Ok(()) => true,
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}

/// Enables `controllers` (`memory`, `cpu`) for the attempts' cgroups under the agent's
/// sub-tree `tree`: in its parent's `cgroup.subtree_control` when not yet there (which cgroup
/// v2 allows only when the parent holds no process itself, or is the root), then in the
/// tree's. The reason when one of them cannot be had.
pub fn enable_controllers(tree: &Path, controllers: &[&str]) -> Result<(), String> {
    let available = |dir: &Path| {
        fs::read_to_string(dir.join("cgroup.controllers"))
            .map(|t| t.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let enable = |dir: &Path, name: &str| {
        fs::write(dir.join("cgroup.subtree_control"), format!("+{name}")).map_err(|e| {
            format!(
                "cannot enable the {name} controller in {}: {e}",
                dir.display()
            )
        })
    };
    for name in controllers {
        if !available(tree).iter().any(|c| c == name) {
            let parent = tree.parent().unwrap_or(tree);
            if !available(parent).iter().any(|c| c == name) {
                return Err(format!(
                    "the cgroup v2 {name} controller is not available in {} (it may be bound to cgroup v1, or not delegated)",
                    parent.display()
                ));
            }
            enable(parent, name)?;
        }
        enable(tree, name)?;
    }
    Ok(())
}

/// Applies the cgroup limits of an attempt to its new cgroup `dir`: `memory.max` (with no swap
/// beyond it, and the whole attempt OOM-killed together) and `cpu.max`.
pub fn set_limits(
    dir: &Path,
    memory_max: Option<u64>,
    cpu_max: Option<&str>,
) -> Result<(), String> {
    let write = |file: &str, value: &str| {
        fs::write(dir.join(file), value)
            .map_err(|e| format!("cannot set {file} of {}: {e}", dir.display()))
    };
    if let Some(bytes) = memory_max {
        write("memory.max", &bytes.to_string())?;
        // Absent without swap accounting, and a refinement only: no error.
        let _ = fs::write(dir.join("memory.swap.max"), "0");
        let _ = fs::write(dir.join("memory.oom.group"), "1");
    }
    if let Some(text) = cpu_max {
        write("cpu.max", text)?;
    }
    Ok(())
}

/// How many processes of `dir` the kernel has OOM-killed so far (`memory.events`
/// `oom_kill`); 0 without the memory controller.
pub fn oom_kills(dir: &Path) -> u64 {
    fs::read_to_string(dir.join("memory.events"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("oom_kill ")?.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Opens `dir/cgroup.procs` for a child to write itself into between fork and exec.
pub fn procs_file(dir: &Path) -> io::Result<fs::File> {
    fs::OpenOptions::new()
        .write(true)
        .open(dir.join("cgroup.procs"))
}

/// Moves the calling process into the cgroup whose `cgroup.procs` is `file`. Only a `write`:
/// safe between fork and exec.
pub fn join(file: &mut fs::File) -> io::Result<()> {
    file.write_all(b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
25 1 0:23 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    #[test]
    fn the_own_cgroup_is_found_under_its_mount() {
        assert_eq!(
            locate("1:cpu:/\n0::/system.slice/ferry-agent.service\n", MOUNTINFO),
            Some(PathBuf::from(
                "/sys/fs/cgroup/unified/system.slice/ferry-agent.service"
            ))
        );
        assert_eq!(
            locate("0::/\n", MOUNTINFO),
            Some(PathBuf::from("/sys/fs/cgroup/unified/"))
        );
        // cgroup v1 only: nothing to use.
        assert_eq!(locate("4:memory:/x\n", MOUNTINFO), None);
        assert_eq!(
            locate("0::/\n", "25 1 0:23 / /sys rw - sysfs sysfs rw\n"),
            None
        );
        // A mount of a sub-tree, with an escaped space in the mount point.
        let sub = "7 1 0:9 /kube/pod1 /sys/fs/my\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate("0::/kube/pod1/app\n", sub),
            Some(PathBuf::from("/sys/fs/my cgroup/app"))
        );
        assert_eq!(locate("0::/kube/pod10\n", sub), None);
    }

    #[test]
    fn limits_and_oom_kills_in_a_cgroup_directory() {
        // Plain files standing in for cgroupfs: what is written and read, not the kernel.
        let own = tempfile::tempdir().unwrap();
        let tree = own.path().join("ferry-agent-1");
        fs::create_dir(&tree).unwrap();
        fs::write(own.path().join("cgroup.controllers"), "cpu io pids\n").unwrap();
        fs::write(tree.join("cgroup.controllers"), "").unwrap();
        let e = enable_controllers(&tree, &["cpu", "memory"]).unwrap_err();
        assert!(
            e.starts_with("the cgroup v2 memory controller is not available in"),
            "{e}"
        );
        assert_eq!(
            fs::read_to_string(own.path().join("cgroup.subtree_control")).unwrap(),
            "+cpu"
        );
        fs::write(tree.join("cgroup.controllers"), "cpu memory\n").unwrap();
        enable_controllers(&tree, &["memory"]).unwrap();
        assert_eq!(
            fs::read_to_string(tree.join("cgroup.subtree_control")).unwrap(),
            "+memory"
        );

        let attempt = tree.join("attempt-1-1");
        fs::create_dir(&attempt).unwrap();
        set_limits(&attempt, Some(64 << 20), Some("50000 100000")).unwrap();
        let read = |f: &str| fs::read_to_string(attempt.join(f)).unwrap();
        assert_eq!(read("memory.max"), "67108864");
        assert_eq!(read("memory.swap.max"), "0");
        assert_eq!(read("memory.oom.group"), "1");
        assert_eq!(read("cpu.max"), "50000 100000");
        let e = set_limits(&attempt.join("gone"), Some(1 << 20), None).unwrap_err();
        assert!(e.starts_with("cannot set memory.max of"), "{e}");

        assert_eq!(oom_kills(&attempt), 0);
        fs::write(
            attempt.join("memory.events"),
            "low 0\nhigh 0\nmax 12\noom 2\noom_kill 2\noom_group_kill 1\n",
        )
        .unwrap();
        assert_eq!(oom_kills(&attempt), 2);
    }
}
