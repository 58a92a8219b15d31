//! `ferry.v1.TriggerService`: webhook triggers, what `ferry triggers …` calls. Thin: the
//! names are checked by `Engine` (a name past its limit is refused before anything is read).

use std::sync::Arc;

use ferry_proto::v1::{self as pb, trigger_service_server::TriggerService};
use tonic::{Request, Response, Status};

use crate::engine::triggers::TriggerInfo;
use crate::engine::Engine;

pub struct TriggerApi {
    engine: Arc<Engine>,
}

impl TriggerApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn trigger(t: TriggerInfo) -> pb::Trigger {
    pb::Trigger {
        name: t.name,
        pipeline: t.pipeline,
        created_at_ms: t.created_at,
        fingerprint: t.fingerprint,
    }
}

#[tonic::async_trait]
impl TriggerService for TriggerApi {
    async fn create_trigger(
        &self,
        request: Request<pb::CreateTriggerRequest>,
    ) -> Result<Response<pb::CreateTriggerResponse>, Status> {
        let r = request.into_inner();
        let (info, secret) = self.engine.create_trigger(&r.name, &r.pipeline).await?;
        Ok(Response::new(pb::CreateTriggerResponse {
            trigger: Some(trigger(info)),
            secret,
        }))
    }

    async fn list_triggers(
        &self,
        _request: Request<pb::ListTriggersRequest>,
    ) -> Result<Response<pb::ListTriggersResponse>, Status> {
        let triggers = self.engine.triggers().await?;
        Ok(Response::new(pb::ListTriggersResponse {
            triggers: triggers.into_iter().map(trigger).collect(),
        }))
    }

    async fn delete_trigger(
        &self,
        request: Request<pb::DeleteTriggerRequest>,
    ) -> Result<Response<pb::DeleteTriggerResponse>, Status> {
        self.engine
            .delete_trigger(&request.into_inner().name)
            .await?;
        Ok(Response::new(pb::DeleteTriggerResponse {}))
    }
}
