//! Connection to the controllers: RPC wrappers carrying the session, error classes, backoff,
//! registration, and the move to another controller when the current one cannot be reached
//! (`controllers.rs`).

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use ferry_proto::v1::{
    agent_service_client::AgentServiceClient, AgentIdentity, AppendLogsRequest, AttemptRef,
    DeregisterRequest, HeartbeatRequest, HeartbeatResponse, PollRequest, PollResponse,
    RegisterRequest, RegisterResponse, ReleaseRequest,
};
use tokio_util::sync::CancellationToken;
use tonic::{
    transport::{Channel, Endpoint},
    Status,
};
use tracing::info;

use crate::config::Config;

mod backoff;
mod complete;
mod controllers;
mod errors;
#[cfg(test)]
mod failover_tests;
mod transfers;
pub use backoff::{Backoff, FailureLog};
pub use complete::CompleteAnswer;
pub use controllers::{is_unreachable, Controllers};
pub use errors::{ClientError, Refusal, TransferError};

/// Client for `AgentService`; cheap to clone, all clones share the session and the current
/// controller.
#[derive(Clone)]
pub struct Client {
    /// The connections to each controller, in the order of `controllers`.
    targets: Arc<[Target]>,
    controllers: Arc<Controllers>,
    /// `Bearer <token>`, sent on every call when the agent has a token.
    authorization: Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>,
    identity: Arc<Mutex<AgentIdentity>>,
}

/// The two connections to one controller, each dialled at its first call.
struct Target {
    inner: AgentServiceClient<Channel>,
    /// A connection of its own for uploads and input fetches, so that gigabytes queued in one
    /// TCP connection never delay a heartbeat.
    bulk: AgentServiceClient<Channel>,
}

/// Time allowed for a short RPC (everything but `Poll`).
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 receive window of one download stream.
const BULK_STREAM_WINDOW: u32 = 8 << 20;
/// Largest message the agent accepts on the bulk connection (a `DataChunk`).
const MAX_BULK_MESSAGE: usize = 16 << 20;

impl Client {
    /// A lazily connecting client: nothing is dialled until the first call, and the channels
    /// reconnect by themselves. HTTP/2 keepalives find connections a network cut left
    /// half-open. Starts at a random controller of the list (see `controllers.rs`).
    pub fn new(config: &Config) -> Result<Client, tonic::transport::Error> {
        Client::with_controllers(
            config,
            Controllers::random_start(config.controllers.clone()),
        )
    }

    /// A client for `controllers` (their URLs, checked by the configuration).
    pub fn with_controllers(
        config: &Config,
        controllers: Controllers,
    ) -> Result<Client, tonic::transport::Error> {
        let targets = (0..controllers.len())
            .map(|at| Target::new(controllers.url(at), config))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Client {
            targets: targets.into(),
            controllers: Arc::new(controllers),
            authorization: config.token.as_ref().and_then(|t| {
                let mut value: tonic::metadata::MetadataValue<_> =
                    format!("Bearer {}", t.0).parse().ok()?;
                value.set_sensitive(true);
                Some(value)
            }),
            identity: Arc::new(Mutex::new(AgentIdentity {
                name: config.name.clone(),
                session: String::new(),
            })),
        })
    }

    /// The controllers, and which one calls go to now.
    pub fn controllers(&self) -> &Controllers {
        &self.controllers
    }

    /// The current controller's index and connections.
    fn target(&self) -> (usize, &Target) {
        let at = self.controllers.current();
        (at, &self.targets[at])
    }

    /// What an answer from controller `at` means for the rotation: an unreachable controller
    /// is left for the next one; any answer (even a refusal) shows it is there.
    fn heard<T>(&self, at: usize, result: &Result<T, Status>) {
        match result {
            Err(status) if is_unreachable(status) => {
                self.controllers.advance(at);
            }
            _ => self.controllers.answered(at),
        }
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
        self.call_at(msg, timeout, f).await.map(|(_, resp)| resp)
    }

    /// `call`, also saying which controller answered.
    async fn call_at<Req, Resp, F, Fut>(
        &self,
        msg: Req,
        timeout: Duration,
        f: F,
    ) -> Result<(usize, Resp), ClientError>
    where
        F: FnOnce(AgentServiceClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
    {
        let mut request = tonic::Request::new(msg);
        request.set_timeout(timeout);
        self.authorize(&mut request);
        let (at, target) = self.target();
        match self
            .answer(at, timeout, f(target.inner.clone(), request))
            .await
        {
            Ok(resp) => Ok((at, resp)),
            Err(Some(status)) => Err(ClientError::from_status(status)),
            Err(None) => Err(ClientError::Transient(format!(
                "no answer within {timeout:?}"
            ))),
        }
    }

    /// The answer of a call to controller `at` within `timeout` (`Err(None)`: none came, and
    /// the agent moves on to the next controller).
    async fn answer<Resp>(
        &self,
        at: usize,
        timeout: Duration,
        call: impl std::future::Future<Output = Result<tonic::Response<Resp>, Status>>,
    ) -> Result<Resp, Option<Status>> {
        match tokio::time::timeout(timeout, call).await {
            Ok(result) => {
                self.heard(at, &result);
                result.map(tonic::Response::into_inner).map_err(Some)
            }
            Err(_) => {
                self.controllers.advance(at);
                Err(None)
            }
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
            instance: config.instance.clone(),
            // Names only: the URLs and passwords stay here.
            datasources: config.datasources.keys().cloned().collect(),
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
                        controller = %self.controllers.current_url(),
                        agent_timeout_ms = resp.agent_timeout_ms,
                        "registered"
                    );
                    return Some(resp);
                }
                Err(e) => match e.refusal() {
                    Some(refusal @ Refusal::NameTaken(_)) => {
                        failures.refused(&refusal);
                        // The holder is alive: ask again only as often as its death could
                        // free the name, never in a loop that would disturb it.
                        let pause = NAME_TAKEN_PAUSE.mul_f64(0.75 + fastrand::f64() / 2.0);
                        tokio::select! {
                            () = tokio::time::sleep(pause) => continue,
                            () = cancel.cancelled() => return None,
                        }
                    }
                    Some(refusal) => failures.refused(&refusal),
                    None => match tls_hint(config, &e) {
                        Some(hint) => failures.failed(&format!("{e} ({hint})")),
                        None => failures.failed(&e),
                    },
                },
            }
            if !backoff.sleep(cancel).await {
                return None;
            }
        }
    }
}

/// How long an agent whose name is taken waits before asking again (±25 %).
const NAME_TAKEN_PAUSE: Duration = Duration::from_secs(10);

/// What to check when a TLS controller closes the connection without saying why: a controller
/// that requires client certificates refuses one without (or from another CA) with an alert
/// that, depending on timing, arrives after the client saw the connection close.
fn tls_hint(config: &Config, error: &ClientError) -> Option<&'static str> {
    let ClientError::Transient(text) = error else {
        return None;
    };
    let text = text.to_lowercase();
    if config.tls.is_some()
        && (text.contains("invalidcontenttype") || text.contains("connection reset"))
    {
        return Some("the controller does not speak TLS on this port: use an http:// URL (if it does serve TLS and requires client certificates, give this agent one with --tls-cert and --tls-key)");
    }
    if config.tls.is_none()
        && (text.contains("h2 protocol error") || text.ends_with("transport error"))
    {
        return Some("no plain HTTP/2 answer: the controller speaks TLS on this port, use an https:// URL (with --tls-ca if its CA is not the system's)");
    }
    let closed = [
        "connection closed",
        "broken pipe",
        "connection reset",
        "cancelled",
    ]
    .iter()
    .any(|sign| text.contains(sign));
    (config.tls.is_some() && closed && !text.contains("certificate")).then_some(
        "the controller closed the connection: if it requires client certificates, give this agent one signed by its CA with --tls-cert and --tls-key",
    )
}

impl Target {
    fn new(url: &str, config: &Config) -> Result<Target, tonic::transport::Error> {
        let mut endpoint = Endpoint::from_shared(url.to_owned())?
            .connect_timeout(Duration::from_secs(5))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(5))
            .tcp_nodelay(true);
        if let Some(tls) = &config.tls {
            endpoint = endpoint.tls_config(tls.config())?;
        }
        let channel = endpoint.clone().connect_lazy();
        // Downloads: windows wide enough for a fast link with some latency; the agent consumes
        // as it writes, so at most a window of data waits in memory.
        let bulk = endpoint
            .initial_stream_window_size(Some(BULK_STREAM_WINDOW))
            .initial_connection_window_size(Some(2 * BULK_STREAM_WINDOW))
            .connect_lazy();
        Ok(Target {
            inner: AgentServiceClient::new(channel),
            bulk: AgentServiceClient::new(bulk).max_decoding_message_size(MAX_BULK_MESSAGE),
        })
    }
}
