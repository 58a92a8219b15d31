//! gRPC services, kept thin: each handler translates a request into one engine call and the
//! answer back. Conversions live in `convert`, error mapping in `status`.

pub mod agent;
pub mod auth;
pub mod convert;
pub mod job;
mod status;

use tonic::Status;

use crate::engine::Identity;

fn identity(who: Option<ferry_proto::v1::AgentIdentity>) -> Result<Identity, Status> {
    let who = who.ok_or_else(|| Status::invalid_argument("agent identity is missing"))?;
    Ok(Identity {
        name: who.name,
        session: who.session,
    })
}
