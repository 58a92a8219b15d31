//! `ferry triggers create NAME --pipeline P | list | delete NAME`. `create` prints the
//! secret once (with `--output json`, one object with it): the controller shows it never
//! again, only its fingerprint.

use ferry_proto::v1::{CreateTriggerRequest, DeleteTriggerRequest, ListTriggersRequest, Trigger};
use serde::Serialize;

use crate::{
    args::TriggersCommand,
    client::Controller,
    exit::{CliError, Outcome},
    output::{self, printable, short_timestamp, timestamp, Format, Table},
};

/// A trigger as `list` shows it.
#[derive(Debug, Serialize)]
pub struct TriggerView {
    pub name: String,
    pub pipeline: String,
    /// The first 12 hex digits of the secret's SHA-256.
    pub fingerprint: String,
    pub created_at: Option<String>,
    #[serde(skip)]
    created_at_ms: i64,
}

impl From<&Trigger> for TriggerView {
    fn from(t: &Trigger) -> Self {
        TriggerView {
            name: t.name.clone(),
            pipeline: t.pipeline.clone(),
            fingerprint: t.fingerprint.clone(),
            created_at: timestamp(t.created_at_ms),
            created_at_ms: t.created_at_ms,
        }
    }
}

fn table(views: &[TriggerView]) -> String {
    let mut table = Table::new(&["NAME", "PIPELINE", "FINGERPRINT", "CREATED"]);
    for v in views {
        table.row(vec![
            v.name.clone(),
            v.pipeline.clone(),
            v.fingerprint.clone(),
            short_timestamp(v.created_at_ms),
        ]);
    }
    table.render()
}

/// `create`: the trigger and its secret.
#[derive(Debug, Serialize)]
pub struct CreatedView {
    #[serde(flatten)]
    pub trigger: TriggerView,
    pub secret: String,
    /// Where callers send their runs, relative to the HTTP listener.
    pub path: String,
}

impl CreatedView {
    fn table(&self) -> String {
        format!(
            "trigger {} of pipeline {} created: POST {} on the controller's --http-listen\n\
             secret (shown once, keep it): {}\n",
            printable(self.trigger.name.clone()),
            printable(self.trigger.pipeline.clone()),
            printable(self.path.clone()),
            self.secret
        )
    }
}

#[derive(Debug, Serialize)]
struct DeletedView {
    name: String,
    deleted: bool,
}

pub async fn run(
    controller: &Controller,
    format: Format,
    command: TriggersCommand,
) -> Result<Outcome, CliError> {
    let mut client = controller.connect_triggers().await?;
    match command {
        TriggersCommand::Create { name, pipeline } => {
            let created = client
                .create_trigger(CreateTriggerRequest { name, pipeline })
                .await
                .map_err(|status| controller.error("create trigger", &status))?
                .into_inner();
            let trigger = created.trigger.unwrap_or_default();
            let view = CreatedView {
                path: format!("/hooks/{}", trigger.name),
                trigger: TriggerView::from(&trigger),
                secret: created.secret,
            };
            output::emit(format, &view, CreatedView::table)?;
        }
        TriggersCommand::List => {
            let listed = client
                .list_triggers(ListTriggersRequest {})
                .await
                .map_err(|status| controller.error("list triggers", &status))?
                .into_inner();
            let views: Vec<TriggerView> = listed.triggers.iter().map(TriggerView::from).collect();
            output::emit(format, views.as_slice(), table)?;
        }
        TriggersCommand::Delete { name } => {
            client
                .delete_trigger(DeleteTriggerRequest { name: name.clone() })
                .await
                .map_err(|status| controller.error("delete trigger", &status))?;
            let view = DeletedView {
                name,
                deleted: true,
            };
            output::emit(format, &view, |v| {
                format!("trigger {} deleted\n", printable(v.name.clone()))
            })?;
        }
    }
    Ok(Outcome::Success)
}
