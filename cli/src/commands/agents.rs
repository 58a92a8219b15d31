//! `ferry agents list | drain NAME`.

use ferry_proto::v1::{DrainAgentRequest, ListAgentsRequest};

use crate::{
    client::Controller,
    exit::{CliError, Outcome},
    output::{self, AgentView, DrainView, Format},
};

pub async fn list(controller: &Controller, format: Format) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let response = client
        .list_agents(ListAgentsRequest {})
        .await
        .map_err(|status| controller.error("list agents", &status))?
        .into_inner();
    let agents: Vec<AgentView> = response.agents.iter().map(AgentView::from).collect();
    output::emit(format, agents.as_slice(), AgentView::table)?;
    Ok(Outcome::Success)
}

pub async fn drain(
    controller: &Controller,
    format: Format,
    name: &str,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    client
        .drain_agent(DrainAgentRequest {
            name: name.to_owned(),
        })
        .await
        .map_err(|status| controller.error("drain agent", &status))?;
    let view = DrainView {
        name: name.to_owned(),
        state: "draining",
    };
    output::emit(format, &view, DrainView::table)?;
    Ok(Outcome::Success)
}
