//! Direct gRPC clients, for what the CLI does not show (attempt times, fencing).

use std::time::Duration;

use anyhow::{Context, Result};
use ferry_proto::v1::{
    agent_service_client::AgentServiceClient, job_service_client::JobServiceClient,
};
use tonic::transport::{Channel, Endpoint};

/// A channel to `addr` (`http://127.0.0.1:PORT`), connected now.
pub async fn connect(addr: &str) -> Result<Channel> {
    Endpoint::from_shared(addr.to_owned())
        .with_context(|| format!("bad controller address {addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30))
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

pub async fn job_client(addr: &str) -> Result<JobServiceClient<Channel>> {
    Ok(JobServiceClient::new(connect(addr).await?))
}

pub async fn agent_client(addr: &str) -> Result<AgentServiceClient<Channel>> {
    Ok(AgentServiceClient::new(connect(addr).await?))
}
