//! `ferry queues list`.

use ferry_proto::v1::ListQueuesRequest;

use crate::{
    client::Controller,
    exit::{CliError, Outcome},
    output::{self, Format, QueueView},
};

pub async fn list(controller: &Controller, format: Format) -> Result<Outcome, CliError> {
    let mut client = controller.connect().await?;
    let response = client
        .list_queues(ListQueuesRequest {})
        .await
        .map_err(|status| controller.error("list queues", &status))?
        .into_inner();
    let queues: Vec<QueueView> = response.queues.iter().map(QueueView::from).collect();
    output::emit(format, queues.as_slice(), QueueView::table)?;
    Ok(Outcome::Success)
}
