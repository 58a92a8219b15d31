//! `ferry agents list [--all] | drain NAME | forget NAME`.

use ferry_proto::v1::{DrainAgentRequest, ForgetAgentRequest, ListAgentsRequest};

use crate::{
    client::Controller,
    exit::{CliError, Outcome},
    output::{self, AgentView, DrainView, ForgetView, Format},
};

pub async fn list(controller: &Controller, format: Format, all: bool) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let response = client
        .list_agents(ListAgentsRequest { all })
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

pub async fn forget(
    controller: &Controller,
    format: Format,
    name: &str,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    client
        .forget_agent(ForgetAgentRequest {
            name: name.to_owned(),
        })
        .await
        .map_err(|status| controller.error("forget agent", &status))?;
    let view = ForgetView {
        name: name.to_owned(),
        forgotten: true,
    };
    output::emit(format, &view, ForgetView::table)?;
    Ok(Outcome::Success)
}
