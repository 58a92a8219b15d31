//! A fake agent speaking `AgentService` directly: it registers, claims one task, then does
//! whatever a test needs (usually: falls silent, to be declared dead, and reports too late).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Context, Result};
use ferry_proto::v1::{
    agent_service_client::AgentServiceClient, job_service_client::JobServiceClient, AgentIdentity,
    AgentState, Assignment, CompleteRequest, ListAgentsRequest, Outcome, PollRequest,
    RegisterRequest,
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
        client: AgentServiceClient<Channel>,
        name: &str,
        queue: &str,
    ) -> Result<Self> {
        Self::register_with_slots(client, name, queue, 1).await
    }

    /// Registers `name` serving `queue` with `slots` slots.
    pub async fn register_with_slots(
        client: AgentServiceClient<Channel>,
        name: &str,
        queue: &str,
        slots: u32,
    ) -> Result<Self> {
        Self::register_full(client, name, queue, slots, &[]).await
    }

    /// Registers `name` serving `queue` with one slot, advertising `datasources` (the names an
    /// sql task must find on its agent).
    pub async fn register_with_datasources(
        client: AgentServiceClient<Channel>,
        name: &str,
        queue: &str,
        datasources: &[&str],
    ) -> Result<Self> {
        Self::register_full(client, name, queue, 1, datasources).await
    }

    async fn register_full(
        mut client: AgentServiceClient<Channel>,
        name: &str,
        queue: &str,
        slots: u32,
        datasources: &[&str],
    ) -> Result<Self> {
        let session = client
            .register(RegisterRequest {
                name: name.into(),
                queues: vec![queue.into()],
                labels: HashMap::new(),
                datasources: datasources.iter().map(|d| d.to_string()).collect(),
                max_tasks: slots,
                hostname: "nowhere".into(),
                version: "test".into(),
                // The same name registering again is this fake agent restarted.
                instance: format!("fake-{name}"),
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

    /// Claims up to `slots` tasks at a time and completes each at once as succeeded, without
    /// running anything, until `tasks` have been completed.
    pub async fn complete_tasks(&self, tasks: usize, slots: u32) -> Result<()> {
        let mut done = 0;
        while done < tasks {
            let mut client = self.client.clone();
            let assignments = client
                .poll(PollRequest {
                    agent: Some(self.identity.clone()),
                    free_slots: slots,
                    wait_ms: 1000,
                    running: Vec::new(),
                })
                .await
                .context("Poll")?
                .into_inner()
                .assignments;
            let mut completions = tokio::task::JoinSet::new();
            for attempt in assignments.into_iter().filter_map(|a| a.attempt) {
                let mut client = self.client.clone();
                let request = CompleteRequest {
                    agent: Some(self.identity.clone()),
                    attempt: Some(attempt),
                    outcome: Outcome::Succeeded as i32,
                    exit_code: Some(0),
                    ..Default::default()
                };
                completions.spawn(async move {
                    let mut answer = client.complete(request).await?.into_inner();
                    // Recorded once the answer ends OK.
                    while answer.message().await?.is_some() {}
                    anyhow::Ok(())
                });
            }
            while let Some(completed) = completions.join_next().await {
                completed
                    .context("a completion's task")?
                    .context("Complete")?;
                done += 1;
            }
        }
        Ok(())
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
                    .list_agents(ListAgentsRequest::default())
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
