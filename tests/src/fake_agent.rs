//! A fake agent speaking `AgentService` directly: it registers, claims one task, then does
//! whatever a test needs (usually: falls silent, to be declared dead, and reports too late).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_proto::v1::{
    agent_service_client::AgentServiceClient, job_service_client::JobServiceClient, AgentIdentity,
    AgentState, Assignment, ListAgentsRequest, PollRequest, RegisterRequest,
};
use tonic::transport::Channel;

use crate::eventually;

pub struct FakeAgent {
    pub client: AgentServiceClient<Channel>,
    pub identity: AgentIdentity,
}

impl FakeAgent {
    /// Registers `name` serving `queue` with one slot.
    pub async fn register(
        mut client: AgentServiceClient<Channel>,
        name: &str,
        queue: &str,
    ) -> Result<Self> {
        let session = client
            .register(RegisterRequest {
                name: name.into(),
                queues: vec![queue.into()],
                labels: HashMap::new(),
                max_tasks: 1,
                hostname: "nowhere".into(),
                version: "test".into(),
            })
            .await
            .context("registering the fake agent")?
            .into_inner()
            .session;
        Ok(Self {
            client,
            identity: AgentIdentity {
                name: name.into(),
                session,
            },
        })
    }

    /// Polls until the controller hands it a task, within `timeout`.
    pub async fn claim_one(&self, timeout: Duration) -> Result<Assignment> {
        eventually("the fake agent to get a task", timeout, || {
            let mut client = self.client.clone();
            let me = self.identity.clone();
            async move {
                let resp = client
                    .poll(PollRequest {
                        agent: Some(me),
                        free_slots: 1,
                        wait_ms: 1000,
                        running: Vec::new(),
                    })
                    .await?
                    .into_inner();
                Ok(resp.assignments.into_iter().next())
            }
        })
        .await
    }

    /// Waits, silent, until the controller lists this agent `dead` (its agent timeout passed).
    pub async fn wait_until_dead(
        &self,
        jobs: &JobServiceClient<Channel>,
        timeout: Duration,
    ) -> Result<()> {
        let name = self.identity.name.clone();
        eventually("the fake agent to be dead", timeout, || {
            let mut jobs = jobs.clone();
            let name = name.clone();
            async move {
                let listed = jobs
                    .list_agents(ListAgentsRequest {})
                    .await?
                    .into_inner()
                    .agents;
                Ok(listed
                    .iter()
                    .find(|a| a.name == name)
                    .filter(|a| a.state == AgentState::Dead as i32)
                    .map(drop))
            }
        })
        .await
    }
}
