//! `Complete`'s streamed answer: the next attempts at once, then the end of the stream when the
//! outcome is durable, or the error that kept it from being so.

use ferry_proto::v1 as pb;
use tokio::task::{JoinError, JoinHandle};
use tokio_stream::StreamExt;
use tonic::Status;

use super::super::Stream;
use crate::engine::EngineError;

/// A completion's answer: `first` (the next attempts), then the end of the stream once `done`
/// says the outcome is durable — or the error that kept it from being so.
pub(super) fn completion_stream(
    first: pb::CompleteResponse,
    mut done: Option<JoinHandle<Result<(), EngineError>>>,
) -> Stream<pb::CompleteResponse> {
    let end = tokio_stream::once(())
        .then(move |()| {
            let done = done.take();
            async move {
                match done {
                    Some(done) => completed(done.await),
                    None => Ok(()),
                }
            }
        })
        .filter_map(|ended| ended.err().map(Err));
    Box::pin(tokio_stream::once(Ok(first)).chain(end))
}

/// How a completion that ran on the tracker ended, as the agent hears it.
pub(super) fn completed(ended: Result<Result<(), EngineError>, JoinError>) -> Result<(), Status> {
    match ended {
        Ok(result) => result.map_err(Status::from),
        Err(e) => Err(Status::internal(format!(
            "the completion did not finish: {e}"
        ))),
    }
}
