//! Connection to the controller: RPC wrappers carrying the session, error classes, backoff and
//! registration.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_proto::v1::{
    agent_service_client::AgentServiceClient, AgentIdentity, AppendLogsRequest, AttemptRef,
    CompleteUploadRequest, DataChunk, DeregisterRequest, FetchInputRequest, GrantDownloadResponse,
    GrantUploadRequest, GrantUploadResponse, HeartbeatRequest, HeartbeatResponse, PollRequest,
    PollResponse, RegisterRequest, RegisterResponse, ReleaseRequest, UploadChunk,
    UploadOutputResponse, UploadStatusRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::{
    transport::{Channel, Endpoint},
    Code, Status,
};
use tracing::{debug, info, warn};

use crate::config::Config;

mod complete;
pub use complete::CompleteAnswer;

/// What a caller does about a failed RPC.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The controller no longer knows this session: kill everything, register again.
    #[error("session no longer known to the controller: {0}")]
    SessionLost(String),
    /// The attempt is no longer current: stop it and report nothing more.
    #[error("attempt fenced: {0}")]
    Fenced(String),
    /// Worth retrying after a backoff (unreachable, timeout, overload).
    #[error("controller unavailable: {0}")]
    Transient(String),
    /// Refused for good; retrying will not help.
    #[error("controller refused the call: {0}")]
    Rejected(String),
    /// `FAILED_PRECONDITION`: what the call relies on does not hold (for `Complete`, an output
    /// the controller could not verify). Carries the controller's own message.
    #[error("{0}")]
    Precondition(String),
}

fn status_text(status: &Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

impl ClientError {
    fn from_status(status: Status) -> Self {
        let text = status_text(&status);
        match status.code() {
            Code::FailedPrecondition => ClientError::Precondition(if status.message().is_empty() {
                text
            } else {
                status.message().to_owned()
            }),
            Code::NotFound => ClientError::SessionLost(text),
            Code::Aborted => ClientError::Fenced(text),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::ResourceExhausted
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal => ClientError::Transient(text),
            _ => ClientError::Rejected(text),
        }
    }
}

/// What a transfer (`UploadOutput`, `UploadStatus`, `FetchInput`) does about a failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransferError {
    /// `ABORTED`: the attempt is no longer current; stop it and report nothing.
    #[error("attempt fenced: {0}")]
    Fenced(String),
    /// `DATA_LOSS`: a chunk arrived damaged; ask where to resume and send it again.
    #[error("chunk refused: {0}")]
    Damaged(String),
    /// Worth resuming after a backoff: unreachable, reset, deadline, a stalled stream.
    #[error("transfer interrupted: {0}")]
    Transient(String),
    /// Refused for good (size limit, bad name, unverifiable file, missing input): the attempt
    /// fails with the controller's message.
    #[error("{0}")]
    Refused(String),
}

impl TransferError {
    pub fn from_status(status: &Status) -> Self {
        let text = status_text(status);
        match status.code() {
            Code::Aborted => TransferError::Fenced(text),
            Code::DataLoss => TransferError::Damaged(text),
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::Internal => TransferError::Transient(text),
            // The controller's message is for a person; the code adds nothing for them.
            _ if !status.message().is_empty() => {
                TransferError::Refused(status.message().to_owned())
            }
            _ => TransferError::Refused(text),
        }
    }
}

/// Client for `AgentService`; cheap to clone, all clones share the session.
#[derive(Clone)]
pub struct Client {
    inner: AgentServiceClient<Channel>,
    /// A connection of its own for uploads and input fetches, so that gigabytes queued in one
    /// TCP connection never delay a heartbeat.
    bulk: AgentServiceClient<Channel>,
    /// `Bearer <token>`, sent on every call when the agent has a token.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    identity: Arc<Mutex<AgentIdentity>>,
}

/// Time allowed for a short RPC (everything but `Poll`).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 receive window of one download stream.
const BULK_STREAM_WINDOW: u32 = 8 << 20;
/// Largest message the agent accepts on the bulk connection (a `DataChunk`).
const MAX_BULK_MESSAGE: usize = 16 << 20;

impl Client {
    /// A lazily connecting client: nothing is dialled until the first call, and the channel
    /// reconnects by itself. HTTP/2 keepalives find connections a network cut left half-open.
    pub fn new(config: &Config) -> Result<Client, tonic::transport::Error> {
        let endpoint = Endpoint::from_shared(config.controller.clone())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        let channel = endpoint.clone().connect_lazy();
        // Downloads: windows wide enough for a fast link with some latency; the agent consumes
        // as it writes, so at most a window of data waits in memory.
        let bulk = endpoint
            .initial_stream_window_size(Some(BULK_STREAM_WINDOW))
            .initial_connection_window_size(Some(2 * BULK_STREAM_WINDOW))
            .connect_lazy();
        Ok(Client {
            authorization: config.token.as_ref().and_then(|t| {
                let mut value: tonic::metadata::MetadataValue<_> =
                    format!("Bearer {}", t.0).parse().ok()?;
                value.set_sensitive(true);
                Some(value)
            }),
            inner: AgentServiceClient::new(channel),
            bulk: AgentServiceClient::new(bulk).max_decoding_message_size(MAX_BULK_MESSAGE),
            identity: Arc::new(Mutex::new(AgentIdentity {
                name: config.name.clone(),
                session: String::new(),
            })),
        })
    }

    fn identity(&self) -> Option<AgentIdentity> {
        Some(
            self.identity
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }

    /// Runs one call under a client-side deadline (also sent to the server as `grpc-timeout`).
    async fn call<Req, Resp, F, Fut>(
        &self,
        msg: Req,
        timeout: Duration,
        f: F,
    ) -> Result<Resp, ClientError>
    where
        F: FnOnce(AgentServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let mut request = tonic::Request::new(msg);
        request.set_timeout(timeout);
        self.authorize(&mut request);
        match tokio::time::timeout(timeout, f(self.inner.clone(), request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(ClientError::from_status(status)),
            Err(_) => Err(ClientError::Transient(format!(
                "no answer within {timeout:?}"
            ))),
        }
    }

    fn authorize<T>(&self, request: &mut tonic::Request<T>) {
        if let Some(auth) = &self.authorization {
            request.metadata_mut().insert("authorization", auth.clone());
        }
    }

    /// The agent's identity, for messages that carry it inside (an upload's header).
    pub fn agent_identity(&self) -> Option<AgentIdentity> {
        self.identity()
    }

    /// Streams one output. No deadline: a large file takes what it takes; the caller watches
    /// the stream's progress and drops the call when it stalls.
    pub async fn upload_output(
        &self,
        chunks: impl tokio_stream::Stream<Item = UploadChunk> + Send + 'static,
    ) -> Result<UploadOutputResponse, TransferError> {
        let mut request = tonic::Request::new(chunks);
        self.authorize(&mut request);
        let mut client = self.bulk.clone();
        client
            .upload_output(request)
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| TransferError::from_status(&s))
    }

    /// Bytes of `name` the controller holds for the attempt.
    pub async fn upload_status(
        &self,
        attempt: &AttemptRef,
        name: &str,
    ) -> Result<u64, TransferError> {
        let mut request = tonic::Request::new(UploadStatusRequest {
            agent: self.identity(),
            attempt: Some(attempt.clone()),
            name: name.to_owned(),
        });
        request.set_timeout(RPC_TIMEOUT);
        self.authorize(&mut request);
        let mut client = self.bulk.clone();
        match tokio::time::timeout(RPC_TIMEOUT, client.upload_status(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner().received),
            // Nothing of that name yet (how a controller may say so): resume from the start.
            Ok(Err(status)) if status.code() == Code::NotFound => Ok(0),
            Ok(Err(status)) => Err(TransferError::from_status(&status)),
            Err(_) => Err(TransferError::Transient(format!(
                "no answer within {RPC_TIMEOUT:?}"
            ))),
        }
    }

    /// Opens the stream of one input file from `req.offset`. No deadline: the caller watches
    /// the stream for stalls.
    pub async fn fetch_input(
        &self,
        mut req: FetchInputRequest,
    ) -> Result<tonic::Streaming<DataChunk>, TransferError> {
        req.agent = self.identity();
        let mut request = tonic::Request::new(req);
        self.authorize(&mut request);
        let mut client = self.bulk.clone();
        match tokio::time::timeout(RPC_TIMEOUT, client.fetch_input(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(TransferError::from_status(&status)),
            Err(_) => Err(TransferError::Transient(format!(
                "no answer within {RPC_TIMEOUT:?}"
            ))),
        }
    }

    /// URLs to PUT one output straight to the object store (`direct = false`: stream it).
    pub async fn grant_upload(
        &self,
        mut req: GrantUploadRequest,
    ) -> Result<GrantUploadResponse, TransferError> {
        req.agent = self.identity();
        let mut request = tonic::Request::new(req);
        request.set_timeout(RPC_TIMEOUT);
        self.authorize(&mut request);
        let mut client = self.inner.clone();
        match tokio::time::timeout(RPC_TIMEOUT, client.grant_upload(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            // A controller from before object stores: stream to it.
            Ok(Err(status)) if status.code() == Code::Unimplemented => {
                Ok(GrantUploadResponse::default())
            }
            Ok(Err(status)) => Err(TransferError::from_status(&status)),
            Err(_) => Err(TransferError::Transient(format!(
                "no answer within {RPC_TIMEOUT:?}"
            ))),
        }
    }

    /// Assembles a multipart upload; the object's size.
    pub async fn complete_upload(
        &self,
        mut req: CompleteUploadRequest,
    ) -> Result<u64, TransferError> {
        req.agent = self.identity();
        let mut request = tonic::Request::new(req);
        // Assembling gigabytes takes the store a while.
        let timeout = RPC_TIMEOUT * 12;
        request.set_timeout(timeout);
        self.authorize(&mut request);
        let mut client = self.inner.clone();
        match tokio::time::timeout(timeout, client.complete_upload(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner().size),
            Ok(Err(status)) => Err(TransferError::from_status(&status)),
            Err(_) => Err(TransferError::Transient(format!(
                "no answer within {timeout:?}"
            ))),
        }
    }

    /// A presigned URL of one input (`direct = false`: fetch it with `fetch_input`).
    pub async fn grant_download(
        &self,
        mut req: FetchInputRequest,
    ) -> Result<GrantDownloadResponse, TransferError> {
        req.agent = self.identity();
        let mut request = tonic::Request::new(req);
        request.set_timeout(RPC_TIMEOUT);
        self.authorize(&mut request);
        let mut client = self.inner.clone();
        match tokio::time::timeout(RPC_TIMEOUT, client.grant_download(request)).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) if status.code() == Code::Unimplemented => {
                Ok(GrantDownloadResponse::default())
            }
            Ok(Err(status)) => Err(TransferError::from_status(&status)),
            Err(_) => Err(TransferError::Transient(format!(
                "no answer within {RPC_TIMEOUT:?}"
            ))),
        }
    }

    pub async fn register(&self, req: RegisterRequest) -> Result<RegisterResponse, ClientError> {
        let resp = self
            .call(
                req,
                RPC_TIMEOUT,
                |mut c, r| async move { c.register(r).await },
            )
            .await?;
        self.identity
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .session = resp.session.clone();
        Ok(resp)
    }

    pub async fn poll(
        &self,
        free_slots: u32,
        wait: Duration,
        running: Vec<AttemptRef>,
    ) -> Result<PollResponse, ClientError> {
        let req = PollRequest {
            agent: self.identity(),
            free_slots,
            wait_ms: u32::try_from(wait.as_millis()).unwrap_or(u32::MAX),
            running,
        };
        let timeout = wait + Duration::from_secs(5);
        self.call(req, timeout, |mut c, r| async move { c.poll(r).await })
            .await
    }

    pub async fn heartbeat(
        &self,
        mut req: HeartbeatRequest,
        timeout: Duration,
    ) -> Result<HeartbeatResponse, ClientError> {
        req.agent = self.identity();
        self.call(req, timeout, |mut c, r| async move { c.heartbeat(r).await })
            .await
    }

    pub async fn append_logs(&self, mut req: AppendLogsRequest) -> Result<(), ClientError> {
        req.agent = self.identity();
        self.call(req, RPC_TIMEOUT, |mut c, r| async move {
            c.append_logs(r).await
        })
        .await
        .map(drop)
    }

    pub async fn release(&self, attempts: Vec<AttemptRef>) -> Result<(), ClientError> {
        let req = ReleaseRequest {
            agent: self.identity(),
            attempts,
        };
        self.call(
            req,
            RPC_TIMEOUT,
            |mut c, r| async move { c.release(r).await },
        )
        .await
        .map(drop)
    }

    pub async fn deregister(&self) -> Result<(), ClientError> {
        let req = DeregisterRequest {
            agent: self.identity(),
        };
        self.call(
            req,
            RPC_TIMEOUT,
            |mut c, r| async move { c.deregister(r).await },
        )
        .await
        .map(drop)
    }

    /// Registers, retrying with backoff while the controller is unreachable or refuses.
    /// `None` when `cancel` fires first.
    pub async fn register_with_backoff(
        &self,
        config: &Config,
        cancel: &CancellationToken,
    ) -> Option<RegisterResponse> {
        let req = RegisterRequest {
            name: config.name.clone(),
            queues: config.queues.clone(),
            labels: config
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            max_tasks: config.max_tasks,
            hostname: config.hostname.clone(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
        };
        let mut backoff = Backoff::default();
        let mut failures = FailureLog::new("register");
        loop {
            let result = tokio::select! {
                r = self.register(req.clone()) => r,
                () = cancel.cancelled() => return None,
            };
            match result {
                Ok(resp) => {
                    failures.recovered();
                    info!(
                        controller = %config.controller,
                        agent_timeout_ms = resp.agent_timeout_ms,
                        "registered"
                    );
                    return Some(resp);
                }
                Err(e) => failures.failed(&e),
            }
            if !backoff.sleep(cancel).await {
                return None;
            }
        }
    }
}

/// Exponential backoff with jitter, 100 ms doubling to a 5 s cap.
pub struct Backoff {
    next: Duration,
}

const BACKOFF_START: Duration = Duration::from_millis(100);
const BACKOFF_CAP: Duration = Duration::from_secs(5);

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            next: BACKOFF_START,
        }
    }
}

impl Backoff {
    /// The next delay: uniformly in [d/2, d], where d doubles each time up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (d * 2).min(BACKOFF_CAP);
        let half = d / 2;
        half + half.mul_f64(fastrand::f64())
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_START;
    }

    /// Sleeps the next delay; false when cancelled first.
    pub async fn sleep(&mut self, cancel: &CancellationToken) -> bool {
        let delay = self.next_delay();
        tokio::select! {
            () = tokio::time::sleep(delay) => true,
            () = cancel.cancelled() => false,
        }
    }
}

/// Logs a failing loop's error at warn once, then at debug while it repeats, and once more at
/// info when the loop recovers: an outage is one line, not a storm.
pub struct FailureLog {
    what: &'static str,
    last: Option<String>,
    count: u64,
}

impl FailureLog {
    pub fn new(what: &'static str) -> Self {
        FailureLog {
            what,
            last: None,
            count: 0,
        }
    }

    pub fn failed(&mut self, error: &impl std::fmt::Display) {
        let text = error.to_string();
        self.count += 1;
        if self.last.as_deref() == Some(text.as_str()) {
            debug!(call = self.what, error = %text, failures = self.count, "call failed again");
        } else {
            warn!(call = self.what, error = %text, "call failed; retrying with backoff");
            self.last = Some(text);
        }
    }

    pub fn recovered(&mut self) {
        if self.last.take().is_some() {
            info!(
                call = self.what,
                failures = self.count,
                "call succeeded again"
            );
        }
        self.count = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_to_cap() {
        let mut b = Backoff::default();
        let first = b.next_delay();
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        for _ in 0..20 {
            let d = b.next_delay();
            assert!(d <= BACKOFF_CAP);
        }
        let d = b.next_delay();
        assert!(d >= BACKOFF_CAP / 2, "{d:?}");
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(100));
    }

    #[test]
    fn status_classes() {
        let c = |code| ClientError::from_status(Status::new(code, "x"));
        assert!(matches!(c(Code::NotFound), ClientError::SessionLost(_)));
        // An output the controller could not verify: the controller's message, as is.
        assert_eq!(
            c(Code::FailedPrecondition).to_string(),
            "x",
            "carries the message alone"
        );
        assert!(matches!(c(Code::Aborted), ClientError::Fenced(_)));
        assert!(matches!(c(Code::Unavailable), ClientError::Transient(_)));
        assert!(matches!(
            c(Code::DeadlineExceeded),
            ClientError::Transient(_)
        ));
        assert!(matches!(c(Code::InvalidArgument), ClientError::Rejected(_)));
    }

    #[test]
    fn transfer_classes() {
        let t = |code, msg: &str| TransferError::from_status(&Status::new(code, msg));
        assert!(matches!(t(Code::Aborted, "x"), TransferError::Fenced(_)));
        assert!(matches!(t(Code::DataLoss, "x"), TransferError::Damaged(_)));
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Unknown,
            Code::Cancelled,
        ] {
            assert!(
                matches!(t(code, "x"), TransferError::Transient(_)),
                "{code:?}"
            );
        }
        for code in [
            Code::ResourceExhausted,
            Code::InvalidArgument,
            Code::FailedPrecondition,
            Code::NotFound,
        ] {
            assert_eq!(
                t(code, "output big.bin is over the limit"),
                TransferError::Refused("output big.bin is over the limit".into())
            );
        }
        assert_eq!(
            t(Code::ResourceExhausted, ""),
            TransferError::Refused("ResourceExhausted".into())
        );
    }
}
