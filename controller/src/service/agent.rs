//! `ferry.v1.AgentService`: what agents call.

mod completion;
mod upload_path;

use std::sync::Arc;
use std::time::Duration;

use ferry_proto::v1::{self as pb, agent_service_server::AgentService};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{checks, convert, identity, Stream};
use crate::artifacts::{object::URL_LIFETIME, UploadGrant, UploadHeader};
use crate::engine::{AgentOrders, Engine};
use crate::model::{AttemptFinish, AttemptReport, Outcome};
use completion::{completed, completion_stream};
pub use upload_path::UploadPath;

/// Largest message an agent may send: an upload chunk of 4 MiB with its header, with room.
pub const MAX_MESSAGE_BYTES: usize = 8 << 20;

/// An upload's messages, decoded by tonic or straight from the request's frames.
pub(super) enum Chunks {
    Tonic(tonic::Streaming<pb::UploadChunk>),
    Frames(super::upload_frames::Frames<tonic::body::Body>),
}

impl Chunks {
    async fn message(&mut self) -> Result<Option<pb::UploadChunk>, Status> {
        match self {
            Chunks::Tonic(stream) => stream.message().await,
            Chunks::Frames(frames) => frames.message().await,
        }
    }
}

pub struct AgentApi {
    engine: Arc<Engine>,
    /// Owns the tasks that feed server streams (inputs); they end at shutdown.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// Mutual TLS: `Register` only under a name of the agent's certificate.
    names_bound: bool,
}

impl AgentApi {
    pub fn new(engine: Arc<Engine>, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            engine,
            tracker,
            shutdown,
            names_bound: false,
        }
    }

    /// Agents register only under a name their client certificate holds (mutual TLS).
    pub fn with_names_bound_to_certificates(mut self) -> Self {
        self.names_bound = true;
        self
    }

    /// Serves one `UploadOutput` call: its first message carries the header.
    pub(super) async fn upload(
        &self,
        mut stream: Chunks,
    ) -> Result<pb::UploadOutputResponse, Status> {
        let mut first = stream
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("upload stream is empty"))?;
        let header = first.header.take().ok_or_else(|| {
            Status::invalid_argument("the first message of an upload carries no header")
        })?;
        let (job, task, number) = header
            .attempt
            .as_ref()
            .map(|a| (a.job_id.clone(), a.task_id.clone(), a.attempt))
            .unwrap_or_default();
        let name = header.name.clone();
        let span = tracing::debug_span!("upload", job = %job, task = %task, attempt = number, name = %name);
        let received = self.receive(first, header, stream).instrument(span).await;
        if let Err(status) = &received {
            if status.code() == tonic::Code::ResourceExhausted {
                tracing::warn!(job = %job, task = %task, attempt = number, name = %name, error = %status.message(), "upload refused");
            }
        }
        Ok(pb::UploadOutputResponse {
            received: received?,
        })
    }

    /// Receives one upload stream whose first message is `first`.
    async fn receive(
        &self,
        first: pb::UploadChunk,
        header: pb::UploadHeader,
        mut stream: Chunks,
    ) -> Result<u64, Status> {
        let who = identity(header.agent)?;
        let attempt = convert::attempt_key(header.attempt)?;
        let mut upload = self
            .engine
            .begin_upload(
                &who,
                &attempt,
                UploadHeader {
                    name: header.name,
                    size: header.size,
                    sha256: header.sha256,
                },
            )
            .await?;
        tracing::debug!(
            size = header.size,
            from = upload.resumed_at(),
            "upload stream started"
        );
        // Receiving overlaps the writer thread's checks and writes: the next chunks arrive
        // while one is written.
        let pipeline = upload.pipeline();
        let mut next = Some(first);
        let mut interrupted = None;
        while let Some(chunk) = next {
            if !pipeline
                .push(chunk.offset, chunk.data, chunk.crc32c, chunk.sha256)
                .await
            {
                break;
            }
            match stream.message().await {
                Ok(message) => next = message,
                Err(status) => {
                    interrupted = Some(status);
                    break;
                }
            }
        }
        // Always waits for the writer, so that no chunk of this stream lands after a
        // resumed stream has begun.
        upload.wrote(pipeline.close().await?);
        if let Some(status) = interrupted {
            return Err(status);
        }
        Ok(upload.finish().await?)
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
        inputs: a.inputs.iter().map(convert::result_file).collect(),
        extract_range: a.extract_range.as_ref().map(convert::extract_range),
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let max_tasks = checks::registration(request.get_ref())?;
        super::auth::check_agent_name(&request, &request.get_ref().name, self.names_bound)?;
        let r = request.into_inner();
        let session = self
            .engine
            .register(
                r.name,
                r.queues,
                // Matched by the claim as labels are (`rules::placement`).
                crate::rules::placement::offer(r.labels.into_iter().collect(), &r.datasources),
                max_tasks,
                r.hostname,
                r.version,
                r.instance,
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
        checks::free_slots(r.free_slots)?;
        checks::attempts("running", &r.running)?;
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
        checks::attempts("running", &r.running)?;
        let running = convert::attempt_keys(r.running);
        if r.draining {
            self.engine.draining_on_its_own(&who).await?;
        }
        if !r.given_up.is_empty() {
            let given_up = convert::given_up(r.given_up)?;
            self.engine.attempts_given_up(&who, given_up).await?;
        }
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
        checks::log_chunks(&r.chunks)?;
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

    type CompleteStream = Stream<pb::CompleteResponse>;

    async fn complete(
        &self,
        request: Request<pb::CompleteRequest>,
    ) -> Result<Response<Self::CompleteStream>, Status> {
        let mut r = request.into_inner();
        let who = identity(r.agent.take())?;
        checks::log_chunks(&r.logs)?;
        // A long error is cut, not refused: refusing the completion would strand the attempt.
        // For the same reason a NUL (which PostgreSQL's text cannot hold) is shown as U+FFFD.
        if r.error.contains('\0') {
            r.error = r.error.replace('\0', "\u{FFFD}");
        }
        let mut outcome = convert::outcome(r.outcome)?;
        if r.not_retryable && outcome == Outcome::Failed {
            // Said where the reason is read (`jobs show`), whatever the agent's words.
            outcome = Outcome::FailedFinal;
            r.error.push_str(" (not retryable)");
        }
        ferry_jobspec::check::truncate(&mut r.error, ferry_jobspec::limits::ERROR_MESSAGE_MAX);
        let finish = AttemptFinish {
            agent: who.name.clone(),
            attempt: convert::attempt_key(r.attempt)?,
            outcome,
            exit_code: r.exit_code,
            error: r.error,
        };
        let report = AttemptReport {
            finish,
            outputs: convert::output_files(r.outputs),
            extract: convert::extract_from_agent(r.extract),
            logs: convert::log_chunks(r.logs),
            dropped_bytes: r.dropped_bytes,
        };
        let (next, claimed) = oneshot::channel();
        let engine = Arc::clone(&self.engine);
        // On the tracker, not in this call: once its transaction is written, the completion's
        // publication and effects must follow whatever becomes of the agent's connection.
        let done = self.tracker.spawn(
            async move { engine.complete_early(&who, report, r.want, next).await }
                .in_current_span(),
        );
        // The transaction hands out its claim once written; the sender is dropped unanswered
        // when the completion is refused (or fails) first.
        let Ok(next) = claimed.await else {
            completed(done.await)?;
            return Ok(Response::new(completion_stream(
                pb::CompleteResponse::default(),
                None,
            )));
        };
        // Always one message, even with no next attempt: an agent built when this call was
        // unary reads it as its answer, and the end of the stream as the call's end.
        let first = pb::CompleteResponse {
            assignments: next.iter().map(assignment).collect(),
        };
        Ok(Response::new(completion_stream(first, Some(done))))
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        checks::attempts("attempts", &r.attempts)?;
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

    async fn upload_output(
        &self,
        request: Request<tonic::Streaming<pb::UploadChunk>>,
    ) -> Result<Response<pb::UploadOutputResponse>, Status> {
        // Reached only without `UploadPath` in front (see `upload_path`).
        let answer = self.upload(Chunks::Tonic(request.into_inner())).await?;
        Ok(Response::new(answer))
    }

    async fn upload_status(
        &self,
        request: Request<pb::UploadStatusRequest>,
    ) -> Result<Response<pb::UploadStatusResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let attempt = convert::attempt_key(r.attempt)?;
        let received = self.engine.upload_status(&who, &attempt, &r.name).await?;
        Ok(Response::new(pb::UploadStatusResponse { received }))
    }

    type FetchInputStream = Stream<pb::DataChunk>;

    async fn fetch_input(
        &self,
        request: Request<pb::FetchInputRequest>,
    ) -> Result<Response<Self::FetchInputStream>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let consumer = convert::attempt_key(r.attempt)?;
        checks::task_id("task id", &r.task_id)?;
        let (file, reader) = self
            .engine
            .fetch_input(&who, &consumer, &r.task_id, &r.name, r.offset)
            .await?;
        tracing::debug!(attempt = %consumer, from = %r.task_id, name = %r.name, offset = r.offset, size = file.size, "input fetch started");
        Ok(Response::new(super::stream_file(
            reader,
            &self.tracker,
            self.shutdown.clone(),
        )))
    }

    async fn grant_upload(
        &self,
        request: Request<pb::GrantUploadRequest>,
    ) -> Result<Response<pb::GrantUploadResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let attempt = convert::attempt_key(r.attempt)?;
        let span = tracing::debug_span!("grant_upload", job = %attempt.job_id, task = %attempt.task_id, attempt = attempt.attempt, name = %r.name);
        let grant = self
            .engine
            .grant_upload(&who, &attempt, &r.name, r.size, r.first_part)
            .instrument(span)
            .await?;
        let expires_s = URL_LIFETIME.as_secs() as u32;
        // The URLs carry signatures: never logged.
        Ok(Response::new(match grant {
            None => pb::GrantUploadResponse::default(),
            Some(UploadGrant::Single { url }) => pb::GrantUploadResponse {
                direct: true,
                put_url: url,
                expires_s,
                ..Default::default()
            },
            Some(UploadGrant::Multipart {
                upload_id,
                part_size,
                part_count,
                parts,
                done,
            }) => pb::GrantUploadResponse {
                direct: true,
                put_url: String::new(),
                upload_id,
                part_size,
                part_count,
                parts: parts
                    .into_iter()
                    .map(|(number, url)| pb::PartUrl { number, url })
                    .collect(),
                done: done
                    .into_iter()
                    .map(|(number, etag, size)| pb::UploadedPart { number, etag, size })
                    .collect(),
                expires_s,
            },
        }))
    }

    async fn complete_upload(
        &self,
        request: Request<pb::CompleteUploadRequest>,
    ) -> Result<Response<pb::CompleteUploadResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let attempt = convert::attempt_key(r.attempt)?;
        let parts: Vec<(u32, String)> = r.parts.into_iter().map(|p| (p.number, p.etag)).collect();
        let span = tracing::debug_span!("complete_upload", job = %attempt.job_id, task = %attempt.task_id, attempt = attempt.attempt, name = %r.name);
        let size = self
            .engine
            .complete_upload(&who, &attempt, &r.name, &r.upload_id, &parts)
            .instrument(span)
            .await?;
        tracing::debug!(attempt = %attempt, name = %r.name, parts = parts.len(), size, "multipart upload assembled");
        Ok(Response::new(pb::CompleteUploadResponse { size }))
    }

    async fn grant_download(
        &self,
        request: Request<pb::FetchInputRequest>,
    ) -> Result<Response<pb::GrantDownloadResponse>, Status> {
        let r = request.into_inner();
        let who = identity(r.agent)?;
        let consumer = convert::attempt_key(r.attempt)?;
        checks::task_id("task id", &r.task_id)?;
        let grant = self
            .engine
            .grant_download(&who, &consumer, &r.task_id, &r.name)
            .await?;
        Ok(Response::new(download_grant(grant)))
    }
}

/// The answer to a download grant (`None`: artifacts live in the data directory).
pub(super) fn download_grant(
    grant: Option<(crate::model::ResultFile, String)>,
) -> pb::GrantDownloadResponse {
    match grant {
        None => pb::GrantDownloadResponse::default(),
        Some((file, url)) => pb::GrantDownloadResponse {
            direct: true,
            url,
            size: file.size,
            sha256: file.sha256,
        },
    }
}
