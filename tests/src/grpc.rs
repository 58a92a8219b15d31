//! Direct gRPC clients, for what the CLI does not show (attempt times, fencing).

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use anyhow::{Context, Result};
use ferry_proto::v1::{
    agent_service_client::AgentServiceClient, job_service_client::JobServiceClient,
};
use tonic::transport::{Channel, Endpoint};

use crate::tls::ClientCerts;

/// The TLS files to dial each https:// controller this process started with, by address, so
/// that every direct client (readiness probes, `Agent::listed_state`, a test's own calls)
/// trusts it.
static TRUSTED: Mutex<BTreeMap<String, ClientCerts>> = Mutex::new(BTreeMap::new());

/// Dial `addr` with `certs` from now on.
pub fn trust(addr: &str, certs: ClientCerts) {
    TRUSTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(addr.to_owned(), certs);
}

/// A channel to `addr` (`http://127.0.0.1:PORT`, or `https://…` of a controller the harness
/// started with TLS), connected now.
pub async fn connect(addr: &str) -> Result<Channel> {
    endpoint(addr)?
        .connect()
        .await
        .with_context(|| format!("connecting to {addr}"))
}

/// The endpoint [`connect`] dials, for a caller that sets more options.
pub fn endpoint(addr: &str) -> Result<Endpoint> {
    let mut endpoint = Endpoint::from_shared(addr.to_owned())
        .with_context(|| format!("bad controller address {addr}"))?
        .connect_timeout(Duration::from_secs(2))
        .timeout(Duration::from_secs(30));
    let certs = TRUSTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(addr)
        .cloned();
    if let Some(certs) = certs {
        endpoint = endpoint.tls_config(certs.load()?.config())?;
    }
    Ok(endpoint)
}

pub async fn job_client(addr: &str) -> Result<JobServiceClient<Channel>> {
    Ok(JobServiceClient::new(connect(addr).await?))
}

pub async fn agent_client(addr: &str) -> Result<AgentServiceClient<Channel>> {
    Ok(AgentServiceClient::new(connect(addr).await?))
}
