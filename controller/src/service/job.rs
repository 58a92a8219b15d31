//! `ferry.v1.JobService`: what people and programs call through the `ferry` CLI.

use std::sync::Arc;
use std::time::Duration;

use ferry_proto::v1::{self as pb, job_service_server::JobService};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status};

use super::{checks, convert};
use crate::engine::placement::Placed;
use crate::engine::Engine;
use crate::model::AttemptKey;

use super::Stream;

pub struct JobApi {
    engine: Arc<Engine>,
    /// Owns the tasks that feed server streams; they end at shutdown.
    tracker: TaskTracker,
    shutdown: CancellationToken,
    /// How long `agents list` shows agents that left (`--all` shows them all).
    departed_retention: Duration,
}

impl JobApi {
    pub fn new(engine: Arc<Engine>, tracker: TaskTracker, shutdown: CancellationToken) -> Self {
        Self {
            engine,
            tracker,
            shutdown,
            departed_retention: crate::config::DEFAULT_DEPARTED_AGENT_RETENTION,
        }
    }

    /// Departed agents leave `agents list` once last seen longer ago than `retention`.
    pub fn with_departed_retention(mut self, retention: Duration) -> Self {
        self.departed_retention = retention;
        self
    }
}

/// Sends an attempt's logs; with `follow`, waits for more until the attempt ends.
async fn feed_logs(
    engine: Arc<Engine>,
    key: AttemptKey,
    follow: bool,
    tx: mpsc::Sender<Result<pb::LogEvent, Status>>,
    shutdown: CancellationToken,
) {
    let mut changes = engine.watch(&key.job_id);
    let mut after = 0;
    let mut first = true;
    loop {
        changes.mark_unchanged();
        let page = match engine.read_logs(&key, after).await {
            Ok(page) => page,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let full = page.chunks.len();
        for (seq, chunk) in page.chunks {
            after = seq;
            let event = pb::LogEvent {
                attempt: key.attempt,
                stream: convert::log_stream(chunk.stderr) as i32,
                data: chunk.data,
                truncated_before: first && page.truncated,
            };
            first = false;
            if tx.send(Ok(event)).await.is_err() {
                return;
            }
        }
        if first && page.truncated {
            first = false;
        }
        if page.finished || (!follow && full == 0) {
            return;
        }
        if full > 0 {
            continue;
        }
        tokio::select! {
            _ = changes.changed() => {}
            // Also look again now and then: log appends do not always change the job.
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = tx.closed() => return,
            _ = shutdown.cancelled() => return,
        }
    }
}

#[tonic::async_trait]
impl JobService for JobApi {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let r = request.into_inner();
        let job = convert::new_job(r.spec, r.idempotency_key, r.backfill)?;
        let placed: Vec<Placed> = job.tasks.iter().map(Placed::of).collect();
        let submitted = self.engine.submit(job).await?;
        Ok(Response::new(pb::SubmitJobResponse {
            job_id: submitted.job_id,
            existing: submitted.existing,
            warnings: self.engine.submit_warnings(&placed).await,
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let job_id = request.into_inner().job_id;
        checks::lookup_id("job id", &job_id)?;
        let job = self.engine.job(&job_id).await?;
        let mut waiting = self.engine.waiting(&job).await?;
        let mut answer = convert::job(&job);
        for task in &mut answer.tasks {
            if let Some(why) = waiting.remove(&task.id) {
                task.reason = why;
            }
        }
        Ok(Response::new(answer))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let r = request.into_inner();
        let limit = checks::list_limit(r.limit)?;
        let jobs = self
            .engine
            .jobs(convert::job_state_filter(r.state)?, limit)
            .await?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: jobs.iter().map(convert::job_summary).collect(),
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::CancelJobResponse>, Status> {
        let job_id = request.into_inner().job_id;
        checks::lookup_id("job id", &job_id)?;
        let cancelled = self.engine.cancel(&job_id).await?;
        Ok(Response::new(pb::CancelJobResponse {
            cancelled: cancelled.cancelled,
            state: cancelled
                .state
                .map(|s| convert::job_state(s) as i32)
                .unwrap_or(0),
        }))
    }

    type WatchJobStream = Stream<pb::WatchJobEvent>;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let job_id = request.into_inner().job_id;
        checks::lookup_id("job id", &job_id)?;
        let rx =
            super::watch::start(&self.engine, job_id, &self.tracker, self.shutdown.clone()).await?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    type GetLogsStream = Stream<pb::LogEvent>;

    async fn get_logs(
        &self,
        request: Request<pb::GetLogsRequest>,
    ) -> Result<Response<Self::GetLogsStream>, Status> {
        let r = request.into_inner();
        checks::lookup_id("job id", &r.job_id)?;
        checks::task_id("task id", &r.task_id)?;
        let key = self
            .engine
            .resolve_attempt(&r.job_id, &r.task_id, r.attempt)
            .await?;
        let (tx, rx) = mpsc::channel(16);
        self.tracker.spawn(feed_logs(
            self.engine.clone(),
            key,
            r.follow,
            tx,
            self.shutdown.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        let all = request.into_inner().all;
        let agents = self.engine.agents(all, self.departed_retention).await?;
        Ok(Response::new(pb::ListAgentsResponse {
            agents: agents.iter().map(convert::agent).collect(),
        }))
    }

    async fn drain_agent(
        &self,
        request: Request<pb::DrainAgentRequest>,
    ) -> Result<Response<pb::DrainAgentResponse>, Status> {
        let name = request.into_inner().name;
        checks::lookup_id("agent name", &name)?;
        self.engine.drain(&name).await?;
        Ok(Response::new(pb::DrainAgentResponse {}))
    }

    async fn forget_agent(
        &self,
        request: Request<pb::ForgetAgentRequest>,
    ) -> Result<Response<pb::ForgetAgentResponse>, Status> {
        let name = request.into_inner().name;
        checks::lookup_id("agent name", &name)?;
        self.engine.forget(&name).await?;
        Ok(Response::new(pb::ForgetAgentResponse {}))
    }

    async fn list_queues(
        &self,
        _request: Request<pb::ListQueuesRequest>,
    ) -> Result<Response<pb::ListQueuesResponse>, Status> {
        let queues = self.engine.queues().await?;
        Ok(Response::new(pb::ListQueuesResponse {
            queues: queues.iter().map(convert::queue).collect(),
        }))
    }

    async fn list_results(
        &self,
        request: Request<pb::ListResultsRequest>,
    ) -> Result<Response<pb::ListResultsResponse>, Status> {
        let r = request.into_inner();
        checks::lookup_id("job id", &r.job_id)?;
        checks::task_id("task id", &r.task_id)?;
        let task = (!r.task_id.is_empty()).then_some(r.task_id.as_str());
        let files = self.engine.results(&r.job_id, task).await?;
        let extracts = self.engine.extracts(&r.job_id, task).await?;
        Ok(Response::new(pb::ListResultsResponse {
            files: files.iter().map(convert::result_file).collect(),
            extracts: extracts.iter().map(convert::task_extract).collect(),
        }))
    }

    async fn list_watermarks(
        &self,
        request: Request<pb::ListWatermarksRequest>,
    ) -> Result<Response<pb::ListWatermarksResponse>, Status> {
        let r = request.into_inner();
        checks::job_name("job name", &r.job_name)?;
        let name = (!r.job_name.is_empty()).then_some(r.job_name.as_str());
        let marks = self.engine.watermarks(name).await?;
        Ok(Response::new(pb::ListWatermarksResponse {
            watermarks: marks.iter().map(convert::watermark).collect(),
        }))
    }

    async fn set_watermark(
        &self,
        request: Request<pb::SetWatermarkRequest>,
    ) -> Result<Response<pb::Watermark>, Status> {
        let r = request.into_inner();
        checks::job_name("job name", &r.job_name)?;
        checks::task_id("task id", &r.task_id)?;
        checks::watermark_value(&r.value)?;
        let mark = self
            .engine
            .set_watermark(&r.job_name, &r.task_id, &r.value)
            .await?;
        Ok(Response::new(convert::watermark(&mark)))
    }

    async fn reset_watermark(
        &self,
        request: Request<pb::ResetWatermarkRequest>,
    ) -> Result<Response<pb::ResetWatermarkResponse>, Status> {
        let r = request.into_inner();
        checks::job_name("job name", &r.job_name)?;
        checks::task_id("task id", &r.task_id)?;
        let existed = self.engine.reset_watermark(&r.job_name, &r.task_id).await?;
        Ok(Response::new(pb::ResetWatermarkResponse { existed }))
    }

    type DownloadResultStream = Stream<pb::DataChunk>;

    async fn download_result(
        &self,
        request: Request<pb::DownloadResultRequest>,
    ) -> Result<Response<Self::DownloadResultStream>, Status> {
        let r = request.into_inner();
        checks::lookup_id("job id", &r.job_id)?;
        checks::task_id("task id", &r.task_id)?;
        let (file, reader) = self
            .engine
            .result(&r.job_id, &r.task_id, &r.name, r.offset)
            .await?;
        tracing::debug!(job = %r.job_id, task = %r.task_id, name = %r.name, offset = r.offset, size = file.size, "download started");
        Ok(Response::new(super::stream_file(
            reader,
            &self.tracker,
            self.shutdown.clone(),
        )))
    }

    async fn grant_result_download(
        &self,
        request: Request<pb::DownloadResultRequest>,
    ) -> Result<Response<pb::GrantDownloadResponse>, Status> {
        let r = request.into_inner();
        checks::lookup_id("job id", &r.job_id)?;
        checks::task_id("task id", &r.task_id)?;
        let grant = self
            .engine
            .result_url(&r.job_id, &r.task_id, &r.name)
            .await?;
        Ok(Response::new(super::agent::download_grant(grant)))
    }
}
