//! Views of the fleet: `agents list`, `agents drain` and `queues list`.

use std::collections::BTreeMap;

use ferry_proto::v1::{AgentInfo, QueueInfo};
use serde::Serialize;

use super::{pairs, sorted};
use crate::output::{agent_state, bytes, now_ms, span, timestamp, Table};

/// One row of `agents list`.
#[derive(Debug, Serialize)]
pub struct AgentView {
    pub name: String,
    pub state: &'static str,
    pub queues: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The names of its datasources: its sql tasks' only agents.
    pub datasources: Vec<String>,
    pub running: u32,
    pub max_tasks: u32,
    pub hostname: String,
    pub version: String,
    pub last_heartbeat: Option<String>,
    pub metrics: Option<MetricsView>,
    #[serde(skip)]
    last_heartbeat_ms: i64,
}

#[derive(Debug, Serialize)]
pub struct MetricsView {
    pub cpu_percent: f32,
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub load1: f64,
    pub load5: f64,
    pub load15: f64,
}

impl From<&AgentInfo> for AgentView {
    fn from(agent: &AgentInfo) -> Self {
        AgentView {
            name: agent.name.clone(),
            state: agent_state(agent.state()),
            queues: agent.queues.clone(),
            labels: sorted(&agent.labels),
            datasources: agent.datasources.clone(),
            running: agent.running,
            max_tasks: agent.max_tasks,
            hostname: agent.hostname.clone(),
            version: agent.version.clone(),
            last_heartbeat: timestamp(agent.last_heartbeat_ms),
            metrics: agent.metrics.as_ref().map(|m| MetricsView {
                cpu_percent: m.cpu_percent,
                memory_used_bytes: m.memory_used_bytes,
                memory_total_bytes: m.memory_total_bytes,
                load1: m.load1,
                load5: m.load5,
                load15: m.load15,
            }),
            last_heartbeat_ms: agent.last_heartbeat_ms,
        }
    }
}

impl AgentView {
    pub fn table(agents: &[AgentView]) -> String {
        let mut table = Table::new(&[
            "NAME", "STATE", "QUEUES", "RUNNING", "CPU", "MEMORY", "LOAD", "HOST", "SEEN", "LABELS",
        ]);
        for agent in agents {
            let (cpu, memory, load) = match &agent.metrics {
                Some(m) => (
                    format!("{:.0}%", m.cpu_percent),
                    format!(
                        "{} / {}",
                        bytes(m.memory_used_bytes),
                        bytes(m.memory_total_bytes)
                    ),
                    format!("{:.2}", m.load1),
                ),
                None => ("-".into(), "-".into(), "-".into()),
            };
            let seen = if agent.last_heartbeat_ms > 0 {
                format!("{} ago", span(agent.last_heartbeat_ms, now_ms()))
            } else {
                "-".to_owned()
            };
            table.row(vec![
                agent.name.clone(),
                agent.state.into(),
                agent.queues.join(","),
                format!("{}/{}", agent.running, agent.max_tasks),
                cpu,
                memory,
                load,
                agent.hostname.clone(),
                seen,
                pairs(&agent.labels),
            ]);
        }
        table.render()
    }
}

/// One row of `queues list`.
#[derive(Debug, Serialize)]
pub struct QueueView {
    pub name: String,
    pub queued: u32,
    pub running: u32,
    pub agents: u32,
}

impl From<&QueueInfo> for QueueView {
    fn from(queue: &QueueInfo) -> Self {
        QueueView {
            name: queue.name.clone(),
            queued: queue.queued,
            running: queue.running,
            agents: queue.agents,
        }
    }
}

impl QueueView {
    pub fn table(queues: &[QueueView]) -> String {
        let mut table = Table::new(&["QUEUE", "QUEUED", "RUNNING", "AGENTS"]);
        for queue in queues {
            table.row(vec![
                queue.name.clone(),
                queue.queued.to_string(),
                queue.running.to_string(),
                queue.agents.to_string(),
            ]);
        }
        table.render()
    }
}

/// `agents drain`.
#[derive(Debug, Serialize)]
pub struct DrainView {
    pub name: String,
    pub state: &'static str,
}

impl DrainView {
    pub fn table(&self) -> String {
        format!(
            "draining agent {}: it takes no new tasks and hands its running ones back\n",
            self.name
        )
    }
}

/// What `agents forget` says.
#[derive(Debug, Serialize)]
pub struct ForgetView {
    pub name: String,
    pub forgotten: bool,
}

impl ForgetView {
    pub fn table(&self) -> String {
        format!("forgot agent {}: it is no longer listed\n", self.name)
    }
}

#[cfg(test)]
mod tests {
    use ferry_proto::v1::HostMetrics;
    use serde_json::json;

    use super::*;

    #[test]
    fn agents_list_json_shape() {
        let agent = AgentInfo {
            name: "agent-a".into(),
            state: ferry_proto::v1::AgentState::Draining as i32,
            queues: vec!["default".into()],
            labels: [("site".to_owned(), "dc1".to_owned())].into(),
            datasources: vec!["sales".into()],
            running: 1,
            max_tasks: 4,
            hostname: "host-a".into(),
            version: "0.1.0".into(),
            last_heartbeat_ms: 1_795_000_000_000,
            metrics: Some(HostMetrics {
                cpu_percent: 12.5,
                memory_used_bytes: 1024,
                memory_total_bytes: 4096,
                load1: 0.5,
                load5: 0.25,
                load15: 0.125,
            }),
        };
        assert_eq!(
            serde_json::to_value([AgentView::from(&agent)]).unwrap(),
            json!([{
                "name": "agent-a", "state": "draining", "queues": ["default"],
                "labels": {"site": "dc1"}, "datasources": ["sales"], "running": 1, "max_tasks": 4,
                "hostname": "host-a", "version": "0.1.0",
                "last_heartbeat": "2026-11-18T11:06:40.000Z",
                "metrics": {
                    "cpu_percent": 12.5, "memory_used_bytes": 1024,
                    "memory_total_bytes": 4096, "load1": 0.5, "load5": 0.25, "load15": 0.125
                }
            }])
        );
    }
}
