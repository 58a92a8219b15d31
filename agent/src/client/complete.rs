//! `Complete`: the outcome of an attempt, and its streamed answer — the next attempts as soon
//! as the controller has claimed them, then the end once the outcome is durable.

use std::{sync::Arc, time::Duration};

use ferry_proto::v1::{Assignment, CompleteRequest, CompleteResponse};

use super::{Client, ClientError, Controllers, RPC_TIMEOUT};

/// The answer to `Complete`, as it streams in.
pub struct CompleteAnswer {
    stream: tonic::Streaming<CompleteResponse>,
    /// The whole answer's deadline, the call's own.
    deadline: tokio::time::Instant,
    timeout: Duration,
    /// The controller answering, left for the next one if the answer breaks off.
    controllers: Arc<Controllers>,
    at: usize,
}

impl CompleteAnswer {
    /// The next attempts the controller claimed (`Some`), then `None` once the outcome is
    /// durable, or why it may not be.
    pub async fn next(&mut self) -> Result<Option<Vec<Assignment>>, ClientError> {
        match tokio::time::timeout_at(self.deadline, self.stream.message()).await {
            Ok(Ok(message)) => Ok(message.map(|m| m.assignments)),
            Ok(Err(status)) => {
                self.controllers.failed(self.at, &status);
                Err(ClientError::from_status(status))
            }
            Err(_) => {
                self.controllers.advance(self.at);
                Err(ClientError::Transient(format!(
                    "no answer within {:?}",
                    self.timeout
                )))
            }
        }
    }
}

impl Client {
    /// Reports an outcome. The answer streams the next attempts (when `req.want` asked for
    /// any) as soon as the controller has claimed them, and ends once the outcome is durable.
    pub async fn complete(&self, mut req: CompleteRequest) -> Result<CompleteAnswer, ClientError> {
        req.agent = self.identity();
        // Publishing outputs moves files on the controller: give it more time.
        let timeout = if req.outputs.is_empty() {
            RPC_TIMEOUT
        } else {
            RPC_TIMEOUT * 6
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let (at, stream) = self
            .call_at(req, timeout, |mut c, r| async move { c.complete(r).await })
            .await?;
        Ok(CompleteAnswer {
            stream,
            deadline,
            timeout,
            controllers: Arc::clone(&self.controllers),
            at,
        })
    }
}
