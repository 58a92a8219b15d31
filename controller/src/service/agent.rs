//! `ferry.v1.AgentService`: what agents call.

use std::sync::Arc;
use std::time::Duration;

use ferry_proto::v1::{self as pb, agent_service_server::AgentService};
use tonic::{Request, Response, Status};

use super::{convert, identity};
use crate::engine::{AgentOrders, Engine};
use crate::model::AttemptFinish;

pub struct AgentApi {
    engine: Arc<Engine>,
}

impl AgentApi {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn stop_orders(orders: &AgentOrders) -> Vec<pb::StopOrder> {
    orders
        .stop
        .iter()
        .map(|s| pb::StopOrder {
            attempt: Some(convert::attempt_ref(&s.attempt)),
            reason: s.reason.clone(),
        })
        .collect()
}

fn assignment(a: &crate::model::Assignment) -> pb::Assignment {
    pb::Assignment {
        attempt: Some(convert::attempt_ref(&a.attempt)),
        job_name: a.job_name.clone(),
        task: Some(convert::task_spec(&a.task)),
        params: a.params.clone().into_iter().collect(),
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let r = request.into_inner();
        let session = self
            .engine
            .register(
                r.name,
                r.queues,
                r.labels.into_iter().collect(),
                r.max_tasks.max(1),
                r.hostname,
                r.version,
            )
            .await?;
        Ok(Response::new(pb::RegisterResponse {
            session,
            agent_timeout_ms: self.engine.config.agent_timeout.as_millis() as u64,
        }))
    }

    async fn poll(
        &self,
        request: Request<pb::PollRequest>,
    ) -> Result<Response<pb::PollResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let running = convert::attempt_keys(r.running);
        let orders = self
            .engine
            .poll(
                &who,
                r.free_slots,
                &running,
                Duration::from_millis(u64::from(r.wait_ms)),
            )
            .await?;
        Ok(Response::new(pb::PollResponse {
            stop: stop_orders(&orders),
            drain: orders.drain,
            assignments: orders.assignments.iter().map(assignment).collect(),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let running = convert::attempt_keys(r.running);
        let orders = self
            .engine
            .heartbeat(&who, &running, convert::metrics(r.metrics))
            .await?;
        Ok(Response::new(pb::HeartbeatResponse {
            stop: stop_orders(&orders),
            drain: orders.drain,
        }))
    }

    async fn append_logs(
        &self,
        request: Request<pb::AppendLogsRequest>,
    ) -> Result<Response<pb::AppendLogsResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let attempt = convert::attempt_key(r.attempt)?;
        self.engine
            .append_logs(
                &who,
                &attempt,
                convert::log_chunks(r.chunks),
                r.dropped_bytes,
            )
            .await?;
        Ok(Response::new(pb::AppendLogsResponse {}))
    }

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<pb::CompleteResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let finish = AttemptFinish {
            agent: who.name.clone(),
            attempt: convert::attempt_key(r.attempt)?,
            outcome: convert::outcome(r.outcome)?,
            exit_code: r.exit_code,
            error: r.error,
        };
        let next = self
            .engine
            .complete(
                &who,
                finish,
                convert::log_chunks(r.logs),
                r.dropped_bytes,
                r.want,
            )
            .await?;
        Ok(Response::new(pb::CompleteResponse {
            assignments: next.iter().map(assignment).collect(),
        }))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        self.engine
            .release(&who, &convert::attempt_keys(r.attempts))
            .await?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn deregister(
        &self,
        request: Request<pb::DeregisterRequest>,
    ) -> Result<Response<pb::DeregisterResponse>, Status> {
        let who = identity(request.into_inner().agent)?;
        self.engine.deregister(&who).await?;
        Ok(Response::new(pb::DeregisterResponse {}))
    }
}
