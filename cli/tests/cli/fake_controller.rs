//! An in-process fake controller: a `JobService` answering from a [`Script`] and recording
//! what the CLI sent, served on a free loopback port.

use std::{
    net::SocketAddr,
    pin::Pin,
    sync::{Arc, Mutex},
};

use ferry_proto::v1::{
    job_service_server::{JobService, JobServiceServer},
    watch_job_event::Kind,
    Attempt, AttemptState, CancelJobRequest, CancelJobResponse, DataChunk, DownloadResultRequest,
    DrainAgentRequest, DrainAgentResponse, ForgetAgentRequest, ForgetAgentResponse, GetJobRequest,
    GetLogsRequest, Job, JobState, ListAgentsRequest, ListAgentsResponse, ListJobsRequest,
    ListJobsResponse, ListQueuesRequest, ListQueuesResponse, ListResultsRequest,
    ListResultsResponse, LogEvent, LogStream, ResultFile, SnapshotPart, SubmitJobRequest,
    SubmitJobResponse, Task, TaskDelta, TaskState, WatchJobEvent, WatchJobRequest,
};
use sha2::{Digest, Sha256};
use tokio_stream::{wrappers::TcpListenerStream, Stream};
use tonic::{Request, Response, Status};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Scripted answers, and what the CLI sent.
#[derive(Default)]
pub struct Script {
    pub final_state: Option<JobState>,
    pub submit_error: Option<Status>,
    /// The first WatchJob stream breaks after its first message.
    pub break_first_watch: bool,
    pub submits: Vec<SubmitJobRequest>,
    pub watches: u32,
    /// Published outputs of task `extract` of `job-1`: (name, bytes served, sha256 listed).
    pub results: Vec<(String, Vec<u8>, String)>,
    /// The first download of each file breaks after this many bytes.
    pub break_downloads_at: Option<usize>,
    pub downloads: Vec<DownloadResultRequest>,
    /// The first GetLogs stream breaks (UNAVAILABLE) after this many events.
    pub break_logs_after: Option<usize>,
    /// The logs are whole: no event says older output was cut.
    pub logs_whole: bool,
    pub log_requests: Vec<GetLogsRequest>,
}

/// A published output whose listed checksum matches its bytes.
pub fn published(name: &str, data: Vec<u8>) -> (String, Vec<u8>, String) {
    let sha = hex(&Sha256::digest(&data));
    (name.to_owned(), data, sha)
}

/// Lowercase hex of `bytes` (a SHA-256 as the controller lists it).
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The whole job as the first event of a watch.
fn snapshot(job: Job) -> WatchJobEvent {
    let tasks_total = job.tasks.len() as u32;
    WatchJobEvent {
        job: Some(job),
        kind: Some(Kind::Snapshot(SnapshotPart {
            first: true,
            resync: false,
            tasks_total,
        })),
        complete: true,
    }
}

/// The job's changed tasks (here: all of them) as a later event.
fn delta(job: Job) -> WatchJobEvent {
    WatchJobEvent {
        job: Some(job),
        kind: Some(Kind::Delta(TaskDelta {})),
        complete: true,
    }
}

/// The fake `JobService`; tests read what the CLI sent through its [`Script`].
#[derive(Clone, Default)]
pub struct Fake(pub Arc<Mutex<Script>>);

fn job(state: JobState) -> Job {
    let task_state = match state {
        JobState::Succeeded => TaskState::Succeeded,
        JobState::Failed => TaskState::Failed,
        _ => TaskState::Running,
    };
    let attempt_state = match state {
        JobState::Succeeded => AttemptState::Succeeded,
        JobState::Failed => AttemptState::Failed,
        _ => AttemptState::Running,
    };
    let ended = matches!(state, JobState::Succeeded | JobState::Failed);
    Job {
        id: "job-1".into(),
        name: "hello".into(),
        state: state as i32,
        created_at_ms: 1_795_000_000_000,
        finished_at_ms: if ended { 1_795_000_001_500 } else { 0 },
        tasks: vec![Task {
            id: "greet".into(),
            state: task_state as i32,
            queue: "default".into(),
            kind: "shell".into(),
            attempts: vec![Attempt {
                number: 1,
                agent: "agent-a".into(),
                state: attempt_state as i32,
                exit_code: ended.then_some(if state == JobState::Failed { 2 } else { 0 }),
                ..Attempt::default()
            }],
            ..Task::default()
        }],
        ..Job::default()
    }
}

#[tonic::async_trait]
impl JobService for Fake {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let mut script = self.0.lock().unwrap();
        script.submits.push(request.into_inner());
        if let Some(status) = script.submit_error.take() {
            return Err(status);
        }
        Ok(Response::new(SubmitJobResponse {
            job_id: "job-1".into(),
            existing: false,
            warnings: vec![],
        }))
    }

    async fn get_job(&self, request: Request<GetJobRequest>) -> Result<Response<Job>, Status> {
        match request.into_inner().job_id.as_str() {
            "job-1" => Ok(Response::new(job(JobState::Succeeded))),
            other => Err(Status::not_found(format!("no job {other:?}"))),
        }
    }

    async fn list_jobs(
        &self,
        _: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        Ok(Response::new(ListJobsResponse::default()))
    }

    async fn cancel_job(
        &self,
        _: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        Ok(Response::new(CancelJobResponse {
            cancelled: true,
            state: JobState::Cancelled as i32,
        }))
    }

    type WatchJobStream = Boxed<WatchJobEvent>;

    async fn watch_job(
        &self,
        _: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let mut script = self.0.lock().unwrap();
        script.watches += 1;
        let end = script.final_state.unwrap_or(JobState::Succeeded);
        let items = if script.break_first_watch && script.watches == 1 {
            vec![
                Ok(snapshot(job(JobState::Running))),
                Err(Status::unavailable("controller shutting down")),
            ]
        } else {
            vec![Ok(snapshot(job(JobState::Running))), Ok(delta(job(end)))]
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    type GetLogsStream = Boxed<LogEvent>;

    async fn get_logs(
        &self,
        request: Request<GetLogsRequest>,
    ) -> Result<Response<Self::GetLogsStream>, Status> {
        let mut script = self.0.lock().unwrap();
        script.log_requests.push(request.into_inner());
        let cut = !script.logs_whole;
        let break_after = script
            .break_logs_after
            .filter(|_| script.log_requests.len() == 1);
        let event = |stream: LogStream, data: &str, truncated_before| {
            Ok(LogEvent {
                attempt: 1,
                stream: stream as i32,
                data: data.as_bytes().to_vec(),
                truncated_before,
            })
        };
        let mut items = vec![
            event(LogStream::Stdout, "out 1\n", cut),
            event(LogStream::Stderr, "err 1\n", false),
            event(LogStream::Stdout, "out 2\n", false),
        ];
        if let Some(n) = break_after {
            items.truncate(n);
            items.push(Err(Status::unavailable("controller shutting down")));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn list_agents(
        &self,
        _: Request<ListAgentsRequest>,
    ) -> Result<Response<ListAgentsResponse>, Status> {
        Ok(Response::new(ListAgentsResponse::default()))
    }

    async fn drain_agent(
        &self,
        _: Request<DrainAgentRequest>,
    ) -> Result<Response<DrainAgentResponse>, Status> {
        Ok(Response::new(DrainAgentResponse {}))
    }

    async fn forget_agent(
        &self,
        _: Request<ForgetAgentRequest>,
    ) -> Result<Response<ForgetAgentResponse>, Status> {
        Ok(Response::new(ForgetAgentResponse {}))
    }

    async fn list_queues(
        &self,
        _: Request<ListQueuesRequest>,
    ) -> Result<Response<ListQueuesResponse>, Status> {
        Ok(Response::new(ListQueuesResponse::default()))
    }

    async fn list_results(
        &self,
        request: Request<ListResultsRequest>,
    ) -> Result<Response<ListResultsResponse>, Status> {
        let request = request.into_inner();
        if request.job_id != "job-1" {
            return Err(Status::not_found(format!("no job {:?}", request.job_id)));
        }
        let script = self.0.lock().unwrap();
        let files = script
            .results
            .iter()
            .filter(|_| request.task_id.is_empty() || request.task_id == "extract")
            .map(|(name, data, sha)| ResultFile {
                task_id: "extract".into(),
                attempt: 2,
                name: name.clone(),
                size: data.len() as u64,
                sha256: sha.clone(),
                created_at_ms: 1_795_000_000_000,
            })
            .collect();
        Ok(Response::new(ListResultsResponse {
            files,
            extracts: Vec::new(),
        }))
    }

    async fn list_watermarks(
        &self,
        _: Request<ferry_proto::v1::ListWatermarksRequest>,
    ) -> Result<Response<ferry_proto::v1::ListWatermarksResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn set_watermark(
        &self,
        _: Request<ferry_proto::v1::SetWatermarkRequest>,
    ) -> Result<Response<ferry_proto::v1::Watermark>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    async fn reset_watermark(
        &self,
        _: Request<ferry_proto::v1::ResetWatermarkRequest>,
    ) -> Result<Response<ferry_proto::v1::ResetWatermarkResponse>, Status> {
        Err(Status::unimplemented("not scripted"))
    }

    type DownloadResultStream = Boxed<DataChunk>;

    async fn download_result(
        &self,
        request: Request<DownloadResultRequest>,
    ) -> Result<Response<Self::DownloadResultStream>, Status> {
        let request = request.into_inner();
        let mut script = self.0.lock().unwrap();
        let first = !script.downloads.iter().any(|d| d.name == request.name);
        script.downloads.push(request.clone());
        let Some((_, data, _)) = script.results.iter().find(|(n, _, _)| *n == request.name) else {
            return Err(Status::not_found(format!("no output {:?}", request.name)));
        };
        let start = usize::try_from(request.offset).unwrap().min(data.len());
        let end = match script.break_downloads_at {
            Some(at) if first => at.min(data.len()),
            _ => data.len(),
        };
        // Chunks of 1000 bytes, each with its offset.
        let mut items: Vec<Result<DataChunk, Status>> = (start..end)
            .step_by(1000)
            .map(|at| {
                Ok(DataChunk {
                    offset: at as u64,
                    data: data[at..(at + 1000).min(end)].to_vec(),
                })
            })
            .collect();
        if end < data.len() {
            items.push(Err(Status::unavailable("connection reset")));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    async fn grant_result_download(
        &self,
        _: Request<DownloadResultRequest>,
    ) -> Result<Response<ferry_proto::v1::GrantDownloadResponse>, Status> {
        // A controller that streams its artifacts itself.
        Ok(Response::new(Default::default()))
    }
}

/// Serves a fake controller answering from `script`; returns its URL and the fake.
pub async fn start(script: Script) -> (String, Fake) {
    let fake = Fake(Arc::new(Mutex::new(script)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let service = JobServiceServer::new(fake.clone());
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(TcpListenerStream::new(listener))
            .await
            .unwrap();
    });
    (format!("http://{addr}"), fake)
}
