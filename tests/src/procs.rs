//! Looking at processes by pid: whether one that a task started outlives its task, and whom a
//! process is connected to.

use std::path::Path;

use anyhow::{Context, Result};

/// Whether `pid` is a live process: listed in `/proc` and neither a zombie nor dead. A zombie
/// has exited; only its parent (or init, in a container perhaps never) has not reaped it yet.
pub fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // `pid (comm) S …`: the state follows the last `)`, comm may hold anything.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x") | None)
}

/// The pids written one per line into `path` by a task (`echo $$ >> FILE`).
pub fn read_pids(path: &Path) -> Result<Vec<i32>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            l.trim()
                .parse()
                .with_context(|| format!("bad pid {l:?} in {}", path.display()))
        })
        .collect()
}

/// The remote ports of the established TCP connections that process `pid` holds (its socket
/// descriptors, looked up in `/proc/PID/net/tcp` and `tcp6`), sorted, without repeats: on
/// this host, which controllers it is connected to.
pub fn tcp_peer_ports(pid: u32) -> Result<Vec<u16>> {
    let fds = format!("/proc/{pid}/fd");
    let mut inodes = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&fds).with_context(|| format!("reading {fds}"))? {
        // A descriptor closed since the listing is simply gone.
        let Ok(target) = std::fs::read_link(entry?.path()) else {
            continue;
        };
        let target = target.to_string_lossy();
        if let Some(inode) = target
            .strip_prefix("socket:[")
            .and_then(|rest| rest.strip_suffix(']'))
        {
            inodes.insert(inode.to_owned());
        }
    }
    let mut ports = std::collections::BTreeSet::new();
    for table in ["tcp", "tcp6"] {
        let path = format!("/proc/{pid}/net/{table}");
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode …
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(remote), Some(&"01"), Some(inode)) =
                (fields.get(2), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if !inodes.contains(*inode) {
                continue;
            }
            let port = remote
                .rsplit(':')
                .next()
                .and_then(|hex| u16::from_str_radix(hex, 16).ok())
                .with_context(|| format!("bad remote address {remote:?} in {path}"))?;
            ports.insert(port);
        }
    }
    Ok(ports.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_live_process_is_alive_and_a_reaped_one_is_not() {
        assert!(pid_alive(std::process::id() as i32));
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        child.wait().unwrap();
        assert!(!pid_alive(pid));
    }

    #[test]
    fn an_unreaped_exited_child_is_not_alive() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id() as i32;
        // A zombie until waited for: poll without reaping.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while pid_alive(pid) {
            assert!(std::time::Instant::now() < deadline, "`true` never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        child.wait().unwrap();
    }

    #[test]
    fn a_connection_of_this_process_is_seen_with_its_remote_port() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        assert!(!tcp_peer_ports(std::process::id()).unwrap().contains(&port));
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let _server = listener.accept().unwrap();
        assert!(tcp_peer_ports(std::process::id()).unwrap().contains(&port));
    }

    #[test]
    fn pids_are_read_one_per_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pids");
        std::fs::write(&path, "12\n 34 \n\n").unwrap();
        assert_eq!(read_pids(&path).unwrap(), [12, 34]);
        std::fs::write(&path, "12\nnope\n").unwrap();
        assert!(read_pids(&path).is_err());
    }
}
