//! A fake, in-process `AgentService` for the transfer and failover tests: keeps uploads and
//! inputs in memory, checks chunks as the controller does, registers and takes heartbeats, and
//! injects the failures a test asks for.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
};

use ferry_proto::v1::{
    agent_service_server::{AgentService, AgentServiceServer},
    *,
};
use sha2::{Digest, Sha256};
use tokio_stream::{wrappers::TcpListenerStream, Stream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

use crate::{
    client::{Client, Controllers},
    config::Config,
    transfer::hex,
};

/// Failures to inject, each once unless said otherwise.
#[derive(Default)]
pub struct Faults {
    /// Break an upload stream (UNAVAILABLE) once the controller holds at least this many bytes.
    pub cut_upload_at: Option<u64>,
    /// Refuse the chunk at this offset as damaged (DATA_LOSS), as if its CRC did not match.
    pub damage_at: Option<u64>,
    /// Answer ABORTED to every upload (a fenced attempt).
    pub fenced: bool,
    /// Refuse uploads larger than this (RESOURCE_EXHAUSTED), every time.
    pub limit: Option<u64>,
    /// Break an input stream (UNAVAILABLE) after sending at least this many bytes.
    pub cut_fetch_at: Option<u64>,
    /// Serve input bytes that differ from their published checksum.
    pub corrupt_inputs: bool,
    /// Answer NOT_FOUND to heartbeats, as a controller that does not know the session.
    pub unknown_session: bool,
    /// Never answer heartbeats, as a frozen controller.
    pub stall_heartbeats: bool,
}

#[derive(Default)]
pub struct State {
    pub faults: Faults,
    /// Bytes held per upload name.
    pub uploads: HashMap<String, Vec<u8>>,
    /// Verified uploads: name → SHA-256 of the header.
    pub finished: HashMap<String, String>,
    /// Offset of the first chunk of every upload stream, in order.
    pub stream_starts: Vec<u64>,
    pub status_calls: u32,
    /// Published inputs: (task, name) → contents.
    pub inputs: HashMap<(String, String), Vec<u8>>,
    /// Offset of every `FetchInput` call, in order.
    pub fetch_offsets: Vec<u64>,
    pub registers: u32,
    /// The session named by every heartbeat, in order.
    pub heartbeats: Vec<String>,
    /// Handed to the next poll with a free slot.
    pub assignments: Vec<Assignment>,
    /// The session named by every poll, in order.
    pub polls: Vec<String>,
    /// Every `Complete` received.
    pub completions: Vec<CompleteRequest>,
}

#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<State>>);

impl Fake {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap()
    }

    /// Serves on a loopback port; a client for it.
    pub async fn start(&self) -> Client {
        let url = self.serve(CancellationToken::new()).await.0;
        client_for(vec![url], 0)
    }

    /// Serves on a loopback port until `stop` fires; the URL, and the server's task, which
    /// ends once the port is closed.
    pub async fn serve(&self, stop: CancellationToken) -> (String, tokio::task::JoinHandle<()>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let service = AgentServiceServer::new(self.clone());
        let server = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .initial_stream_window_size(Some(8 << 20))
                .initial_connection_window_size(Some(16 << 20))
                .add_service(service)
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                    stop.cancelled().await
                })
                .await
                .unwrap();
        });
        (format!("http://{addr}"), server)
    }
}

/// A client for `urls`, starting with `urls[start]`.
pub fn client_for(urls: Vec<String>, start: usize) -> Client {
    let cli = crate::config::Cli {
        controllers: urls.clone(),
        ..Default::default()
    };
    let config = Config::load_from(cli, Vec::new()).unwrap();
    Client::with_controllers(&config, Controllers::new(urls, start)).unwrap()
}

/// The URL of a loopback port nothing listens on.
pub async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

type DataStream = Pin<Box<dyn Stream<Item = Result<DataChunk, Status>> + Send>>;

#[tonic::async_trait]
impl AgentService for Fake {
    async fn register(
        &self,
        _: Request<RegisterRequest>,
    ) -> Result<Response<RegisterResponse>, Status> {
        let mut st = self.state();
        st.registers += 1;
        Ok(Response::new(RegisterResponse {
            session: format!("s-{}", st.registers),
            agent_timeout_ms: 15_000,
        }))
    }
    async fn poll(&self, request: Request<PollRequest>) -> Result<Response<PollResponse>, Status> {
        let req = request.into_inner();
        let assignments = {
            let mut st = self.state();
            st.polls.push(req.agent.unwrap_or_default().session);
            if req.free_slots > 0 {
                std::mem::take(&mut st.assignments)
            } else {
                Vec::new()
            }
        };
        if assignments.is_empty() {
            // Held open a little, as a controller holds a poll until there is work.
            let wait = std::time::Duration::from_millis(u64::from(req.wait_ms).min(100));
            tokio::time::sleep(wait).await;
        }
        Ok(Response::new(PollResponse {
            assignments,
            ..PollResponse::default()
        }))
    }
    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        if self.state().faults.stall_heartbeats {
            std::future::pending::<()>().await;
        }
        let mut st = self.state();
        if st.faults.unknown_session {
            return Err(Status::not_found("session unknown"));
        }
        let session = request.into_inner().agent.unwrap_or_default().session;
        st.heartbeats.push(session);
        Ok(Response::new(HeartbeatResponse::default()))
    }
    async fn append_logs(
        &self,
        _: Request<AppendLogsRequest>,
    ) -> Result<Response<AppendLogsResponse>, Status> {
        Ok(Response::new(AppendLogsResponse::default()))
    }
    type CompleteStream = Pin<Box<dyn Stream<Item = Result<CompleteResponse, Status>> + Send>>;
    async fn complete(
        &self,
        request: Request<CompleteRequest>,
    ) -> Result<Response<Self::CompleteStream>, Status> {
        self.state().completions.push(request.into_inner());
        let answer = Ok(CompleteResponse::default());
        Ok(Response::new(Box::pin(tokio_stream::iter([answer]))))
    }
    async fn release(
        &self,
        _: Request<ReleaseRequest>,
    ) -> Result<Response<ReleaseResponse>, Status> {
        Ok(Response::new(ReleaseResponse::default()))
    }
    async fn deregister(
        &self,
        _: Request<DeregisterRequest>,
    ) -> Result<Response<DeregisterResponse>, Status> {
        Ok(Response::new(DeregisterResponse::default()))
    }

    async fn upload_output(
        &self,
        request: Request<Streaming<UploadChunk>>,
    ) -> Result<Response<UploadOutputResponse>, Status> {
        let mut stream = request.into_inner();
        let mut header: Option<UploadHeader> = None;
        let mut first = true;
        while let Some(chunk) = stream.message().await? {
            let mut st = self.state();
            if first {
                first = false;
                let h = chunk
                    .header
                    .clone()
                    .ok_or_else(|| Status::invalid_argument("the first chunk carries no header"))?;
                if st.faults.fenced {
                    return Err(Status::aborted("attempt 1 of t is no longer current"));
                }
                if st.faults.limit.is_some_and(|l| h.size > l) {
                    return Err(Status::resource_exhausted(format!(
                        "output {} is over the controller's limit",
                        h.name
                    )));
                }
                st.stream_starts.push(chunk.offset);
                header = Some(h);
            }
            let h = header.as_ref().unwrap();
            let held = st.uploads.entry(h.name.clone()).or_default();
            if chunk.offset != held.len() as u64 {
                return Err(Status::out_of_range(format!(
                    "chunk at {} but {} bytes held",
                    chunk.offset,
                    held.len()
                )));
            }
            if crc32c::crc32c(&chunk.data) != chunk.crc32c {
                return Err(Status::data_loss("chunk checksum mismatch"));
            }
            if st.faults.damage_at == Some(chunk.offset) {
                st.faults.damage_at = None;
                return Err(Status::data_loss(format!(
                    "chunk at {} failed its checksum",
                    chunk.offset
                )));
            }
            if !chunk.sha256.is_empty() {
                // Declared by the last chunk when the header had none.
                header.as_mut().unwrap().sha256 = chunk.sha256.clone();
            }
            let h = header.as_ref().unwrap();
            let held = st.uploads.get_mut(&h.name).unwrap();
            held.extend_from_slice(&chunk.data);
            let len = held.len() as u64;
            if st.faults.cut_upload_at.is_some_and(|at| len >= at) {
                st.faults.cut_upload_at = None;
                return Err(Status::unavailable("connection reset"));
            }
        }
        let h = header.ok_or_else(|| Status::invalid_argument("empty upload"))?;
        let mut st = self.state();
        let held = st.uploads.entry(h.name.clone()).or_default().clone();
        if held.len() as u64 == h.size {
            if h.sha256.is_empty() || sha256_hex(&held) != h.sha256 {
                return Err(Status::failed_precondition(format!(
                    "output {}: checksum mismatch",
                    h.name
                )));
            }
            st.finished.insert(h.name.clone(), h.sha256.clone());
        }
        Ok(Response::new(UploadOutputResponse {
            received: held.len() as u64,
        }))
    }

    async fn upload_status(
        &self,
        request: Request<UploadStatusRequest>,
    ) -> Result<Response<UploadStatusResponse>, Status> {
        let mut st = self.state();
        st.status_calls += 1;
        let received = st
            .uploads
            .get(&request.get_ref().name)
            .map_or(0, |v| v.len() as u64);
        Ok(Response::new(UploadStatusResponse { received }))
    }

    type FetchInputStream = DataStream;

    async fn grant_upload(
        &self,
        _: Request<GrantUploadRequest>,
    ) -> Result<Response<GrantUploadResponse>, Status> {
        // A controller that keeps artifacts itself: stream them.
        Ok(Response::new(GrantUploadResponse::default()))
    }

    async fn complete_upload(
        &self,
        _: Request<CompleteUploadRequest>,
    ) -> Result<Response<CompleteUploadResponse>, Status> {
        Err(Status::invalid_argument("no multipart uploads here"))
    }

    async fn grant_download(
        &self,
        _: Request<FetchInputRequest>,
    ) -> Result<Response<GrantDownloadResponse>, Status> {
        Ok(Response::new(GrantDownloadResponse::default()))
    }

    async fn fetch_input(
        &self,
        request: Request<FetchInputRequest>,
    ) -> Result<Response<DataStream>, Status> {
        let req = request.into_inner();
        let mut st = self.state();
        st.fetch_offsets.push(req.offset);
        let mut data = st
            .inputs
            .get(&(req.task_id.clone(), req.name.clone()))
            .cloned()
            .ok_or_else(|| Status::not_found(format!("no published output {}", req.name)))?;
        if st.faults.corrupt_inputs {
            if let Some(b) = data.last_mut() {
                *b ^= 1;
            }
        }
        let cut = st.faults.cut_fetch_at.take();
        let mut items = Vec::new();
        let mut at = req.offset as usize;
        while at < data.len() {
            let end = (at + 64 * 1024).min(data.len());
            items.push(Ok(DataChunk {
                offset: at as u64,
                data: data[at..end].to_vec(),
            }));
            at = end;
            if cut.is_some_and(|c| at as u64 >= c) {
                items.push(Err(Status::unavailable("connection reset")));
                break;
            }
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }
}
