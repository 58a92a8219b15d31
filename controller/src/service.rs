//! gRPC services, kept thin: each handler translates a request into one engine call and the
//! answer back. Conversions live in `convert`, error mapping in `status`.

pub mod agent;
pub mod auth;
mod checks;
pub mod convert;
pub mod job;
pub mod pipelines;
mod status;
pub mod triggers;
pub mod upload_frames;
pub mod watch;

#[cfg(test)]
mod props;

use std::pin::Pin;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::Status;

use crate::artifacts::Reader;
use crate::engine::Identity;

/// A server stream of a tonic handler.
pub type Stream<T> = Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// Streams a file in `DataChunk`s from a task on `tracker`, until its end, the client going
/// away, or shutdown.
fn stream_file(
    mut reader: Reader,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) -> Stream<ferry_proto::v1::DataChunk> {
    let (tx, rx) = mpsc::channel(4);
    tracker.spawn(async move {
        while let Some(chunk) = reader.next().await {
            let item = chunk
                .map(|(offset, data)| ferry_proto::v1::DataChunk { offset, data })
                .map_err(Status::from);
            let failed = item.is_err();
            tokio::select! {
                sent = tx.send(item) => if sent.is_err() || failed { return },
                _ = shutdown.cancelled() => return,
            }
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

fn identity(who: Option<ferry_proto::v1::AgentIdentity>) -> Result<Identity, Status> {
    let who = who.ok_or_else(|| Status::invalid_argument("agent identity is missing"))?;
    checks::lookup_id("agent name", &who.name)?;
    checks::lookup_id("agent session", &who.session)?;
    Ok(Identity {
        name: who.name,
        session: who.session,
    })
}
