//! What the benchmarks learn about processes from outside: which controller an agent is
//! connected to (its sockets), and when a log said something (the log's own timestamps).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{bail, Context, Result};
use ferry_tests::{procs::tcp_peer_ports, Agent};

use crate::common::Deadline;

/// The index (in `ports`) of the one controller `agent` is connected to, once it is connected
/// to exactly one of them.
pub async fn connected_controller(agent: &Agent, ports: &[u16], limit: Duration) -> Result<usize> {
    let pid = agent.pid().context("the agent has no process")?;
    let deadline = Deadline::after(limit);
    loop {
        let mut connected: Vec<usize> = tcp_peer_ports(pid)?
            .into_iter()
            .filter_map(|p| ports.iter().position(|&c| c == p))
            .collect();
        connected.sort_unstable();
        connected.dedup();
        if let [one] = connected[..] {
            return Ok(one);
        }
        deadline.check(|| format!("the agent to be connected to one controller: {connected:?}"))?;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Milliseconds since the epoch of a log line's leading RFC 3339 timestamp (tracing's format).
fn line_time_ms(line: &str) -> Option<i64> {
    let stamp = line.split_whitespace().next()?;
    let at = humantime::parse_rfc3339(stamp).ok()?;
    let ms = at.duration_since(std::time::UNIX_EPOCH).ok()?.as_millis();
    i64::try_from(ms).ok()
}

/// When `log` first said `text` at or after `after_ms` (epoch ms).
pub fn log_time_after(log: &Path, text: &str, after_ms: i64) -> Option<i64> {
    let content = std::fs::read_to_string(log).ok()?;
    content
        .lines()
        .filter(|l| l.contains(text))
        .filter_map(line_time_ms)
        .find(|&at| at >= after_ms)
}

/// Which of the controllers (by their logs) holds `role`: the one whose log last says it took
/// the role (`engine/singleton.rs`) and has not said since that it lost it.
pub async fn role_holder(logs: &[PathBuf], role: &str, limit: Duration) -> Result<usize> {
    let field = format!("role=\"{role}\"");
    let holds = |log: &Path| {
        let content = std::fs::read_to_string(log).unwrap_or_default();
        let mut held = false;
        for line in content.lines().filter(|l| l.contains(&field)) {
            if line.contains("this controller took the role") {
                held = true;
            } else if line.contains("lost the role") {
                held = false;
            }
        }
        held
    };
    let deadline = Deadline::after(limit);
    loop {
        let holders: Vec<usize> = (0..logs.len()).filter(|&i| holds(&logs[i])).collect();
        match holders[..] {
            [one] => return Ok(one),
            [] => {}
            _ => bail!("the logs of controllers {holders:?} all say they hold role {role}"),
        }
        deadline.check(|| format!("a controller's log to say it took role {role}"))?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_timestamps() {
        let line = "2026-12-07T11:23:43.123456Z  INFO ferry_agent::client: moved to another \
                    controller from=http://a to=http://b";
        assert_eq!(line_time_ms(line), Some(1_796_642_623_123));
        assert_eq!(line_time_ms("no time here"), None);
    }
}
