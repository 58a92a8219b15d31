//! End-to-end tests of the `ferry` binary against an in-process fake controller: what goes to
//! standard output and error, and the exit codes.

use std::{
    net::SocketAddr,
    path::PathBuf,
    pin::Pin,
    sync::{Arc, Mutex},
};

use ferry_proto::v1::{
    job_service_server::{JobService, JobServiceServer},
    Attempt, AttemptState, CancelJobRequest, CancelJobResponse, DataChunk, DownloadResultRequest,
    DrainAgentRequest, DrainAgentResponse, GetJobRequest, GetLogsRequest, Job, JobState,
    ListAgentsRequest, ListAgentsResponse, ListJobsRequest, ListJobsResponse, ListQueuesRequest,
    ListQueuesResponse, ListResultsRequest, ListResultsResponse, LogEvent, LogStream, ResultFile,
    SubmitJobRequest, SubmitJobResponse, Task, TaskState, WatchJobRequest,
};
use sha2::{Digest, Sha256};
use tokio_stream::{wrappers::TcpListenerStream, Stream};
use tonic::{Request, Response, Status};

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// Scripted answers, and what the CLI sent.
#[derive(Default)]
struct Script {
    final_state: Option<JobState>,
    submit_error: Option<Status>,
    /// The first WatchJob stream breaks after its first message.
    break_first_watch: bool,
    submits: Vec<SubmitJobRequest>,
    watches: u32,
    /// Published outputs of task `extract` of `job-1`: (name, bytes served, sha256 listed).
    results: Vec<(String, Vec<u8>, String)>,
    /// The first download of each file breaks after this many bytes.
    break_downloads_at: Option<usize>,
    downloads: Vec<DownloadResultRequest>,
}

/// A published output whose listed checksum matches its bytes.
fn published(name: &str, data: Vec<u8>) -> (String, Vec<u8>, String) {
    let sha = hex(&Sha256::digest(&data));
    (name.to_owned(), data, sha)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Script>>);

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

    type WatchJobStream = Boxed<Job>;

    async fn watch_job(
        &self,
        _: Request<WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let mut script = self.0.lock().unwrap();
        script.watches += 1;
        let end = script.final_state.unwrap_or(JobState::Succeeded);
        let items = if script.break_first_watch && script.watches == 1 {
            vec![
                Ok(job(JobState::Running)),
                Err(Status::unavailable("controller shutting down")),
            ]
        } else {
            vec![Ok(job(JobState::Running)), Ok(job(end))]
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(items))))
    }

    type GetLogsStream = Boxed<LogEvent>;

    async fn get_logs(
        &self,
        _: Request<GetLogsRequest>,
    ) -> Result<Response<Self::GetLogsStream>, Status> {
        let event = |stream: LogStream, data: &str, truncated_before| {
            Ok(LogEvent {
                attempt: 1,
                stream: stream as i32,
                data: data.as_bytes().to_vec(),
                truncated_before,
            })
        };
        Ok(Response::new(Box::pin(tokio_stream::iter(vec![
            event(LogStream::Stdout, "out 1\n", true),
            event(LogStream::Stderr, "err 1\n", false),
            event(LogStream::Stdout, "out 2\n", false),
        ]))))
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

async fn start(script: Script) -> (String, Fake) {
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

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn ferry(controller: &str, args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--controller")
        .arg(controller)
        .args(args)
        .env_remove("FERRY_OUTPUT")
        .output()
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn example(name: &str) -> String {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "..", "examples", name]
        .iter()
        .collect();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_prints_only_the_id_and_sends_overridden_params() {
    let (url, fake) = start(Script::default()).await;
    let hello = example("hello.toml");
    let run = ferry(&url, &["submit", &hello, "--param", "who=ferry"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "job-1\n"),
        "{}",
        run.stderr
    );
    let script = fake.0.lock().unwrap();
    let spec = script.submits[0].spec.as_ref().unwrap();
    assert_eq!(spec.name, "hello");
    assert_eq!(spec.params["who"], "ferry");
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_sends_backfills_and_refuses_bad_ones_before_any_call() {
    let (url, fake) = start(Script::default()).await;
    let hello = example("hello.toml");
    let run = ferry(
        &url,
        &[
            "submit",
            &hello,
            "--backfill",
            "greet=2026-01-01..2026-02-01",
            "--backfill",
            "other=..7",
        ],
    )
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "job-1\n"),
        "{}",
        run.stderr
    );
    {
        let script = fake.0.lock().unwrap();
        let backfill = &script.submits[0].backfill;
        assert_eq!(backfill.len(), 2);
        assert_eq!(backfill["greet"].from.as_deref(), Some("2026-01-01"));
        assert_eq!(backfill["greet"].until, "2026-02-01");
        assert_eq!(backfill["other"].from, None);
        assert_eq!(backfill["other"].until, "7");
    }
    for bad in [
        "greet",
        "greet=5",
        "greet=5..",
        "greet=1..2 --backfill greet=3..4",
    ] {
        let mut args = vec!["submit", hello.as_str()];
        for part in format!("--backfill {bad}").split(' ') {
            args.push(Box::leak(part.to_owned().into_boxed_str()));
        }
        let run = ferry(&url, &args).await;
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--backfill"), "{bad}: {}", run.stderr);
        assert_eq!(run.stdout, "");
    }
    assert_eq!(fake.0.lock().unwrap().submits.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_wait_reports_progress_on_stderr_and_exits_by_outcome() {
    let (url, _) = start(Script::default()).await;
    let hello = example("hello.toml");
    let run = ferry(&url, &["--output", "json", "submit", &hello, "--wait"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "job-1\n"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("0/1 done · running: greet@agent-a (attempt 1)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("job hello job-1 succeeded in 1.5s"),
        "{}",
        run.stderr
    );

    let (url, _) = start(Script {
        final_state: Some(JobState::Failed),
        ..Script::default()
    })
    .await;
    let run = ferry(&url, &["jobs", "watch", "job-1"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("task greet failed after 1 attempt: exit code 2"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_reconnects_when_the_stream_breaks() {
    let (url, fake) = start(Script {
        break_first_watch: true,
        ..Script::default()
    })
    .await;
    let run = ferry(&url, &["jobs", "watch", "job-1"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("reconnecting"), "{}", run.stderr);
    assert_eq!(fake.0.lock().unwrap().watches, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_exits_2_before_any_call() {
    let (url, fake) = start(Script {
        submit_error: Some(Status::invalid_argument("queue \"gpu\" has no agents")),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[[tasks]]\nid = \"a\"\ntimeout = \"10 parsecs\"\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let run = ferry(&url, &["submit", &bad]).await;
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with("error: invalid job file"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "{bad}:4:11: bad duration \"10 parsecs\" for timeout"
        )),
        "{}",
        run.stderr
    );
    assert!(fake.0.lock().unwrap().submits.is_empty());

    let run = ferry(&url, &["submit", &example("hello.toml"), "--param", "who"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);

    let run = ferry(&url, &["submit", &example("hello.toml")]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!("error: controller at {url} rejected submit job: queue \"gpu\" has no agents\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn controller_errors_exit_3() {
    let (url, _) = start(Script::default()).await;
    let run = ferry(&url, &["jobs", "show", "nope"]).await;
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        format!("error: controller at {url} refused get job: not found: no job \"nope\"\n")
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let run = ferry(&closed, &["queues", "list"]).await;
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        format!("error: cannot reach controller at {closed}: connection refused\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_show_json_is_one_document() {
    let (url, _) = start(Script::default()).await;
    let run = ferry(&url, &["jobs", "show", "job-1", "--output", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["tasks"][0]["attempts"][0]["agent"], "agent-a");
    assert_eq!(json["finished_at"], "2026-11-18T11:06:41.500Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_go_to_their_own_streams() {
    let (url, _) = start(Script::default()).await;
    let run = ferry(&url, &["logs", "job-1", "greet"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "out 1\nout 2\n");
    assert!(
        run.stderr.starts_with("(earlier output was cut"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.ends_with("err 1\n"), "{}", run.stderr);
}

fn results_script() -> Script {
    let big: Vec<u8> = (0..10_500u32).map(|i| (i % 251) as u8).collect();
    Script {
        results: vec![
            published("out.csv", big),
            published("empty.txt", Vec::new()),
            published("parts/a.csv", b"a,1\n".to_vec()),
        ],
        ..Script::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn results_list_prints_a_table_or_json() {
    let (url, _) = start(results_script()).await;
    let run = ferry(&url, &["results", "list", "job-1"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    assert!(
        lines[0].starts_with("TASK     ATTEMPT  NAME"),
        "{}",
        run.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("out.csv") && l.contains("10.3 KiB")),
        "{}",
        run.stdout
    );

    let run = ferry(
        &url,
        &["results", "list", "job-1", "extract", "--output", "json"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let files = json.as_array().unwrap();
    assert_eq!(files.len(), 3);
    let empty = files.iter().find(|f| f["name"] == "empty.txt").unwrap();
    assert_eq!(
        empty,
        &serde_json::json!({
            "task": "extract", "attempt": 2, "name": "empty.txt", "size": 0,
            "sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
            "created_at": "2026-11-18T11:06:40.000Z"
        })
    );

    let run = ferry(&url, &["results", "list", "nope"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn results_get_saves_verified_files_and_resumes_a_broken_stream() {
    let (url, fake) = start(Script {
        break_downloads_at: Some(4000),
        ..results_script()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("new/folder");
    let out_arg = out.display().to_string();
    let run = ferry(
        &url,
        &["results", "get", "job-1", "extract", "-o", &out_arg],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let (results, downloads) = {
        let script = fake.0.lock().unwrap();
        (script.results.clone(), script.downloads.clone())
    };
    for (name, data, _) in &results {
        assert_eq!(&std::fs::read(out.join(name)).unwrap(), data, "{name}");
    }
    let mut left: Vec<String> = walk(&out);
    left.sort();
    assert_eq!(
        left,
        ["empty.txt", "out.csv", "parts/a.csv"],
        "nothing else"
    );
    assert_eq!(
        sorted_paths(&run.stdout),
        sorted_paths(&format!(
            "{0}/out.csv\n{0}/empty.txt\n{0}/parts/a.csv\n",
            out.display()
        )),
        "one saved path a line"
    );
    // out.csv: asked from 0, broke at 4000, asked again from 4000.
    let offsets: Vec<u64> = downloads
        .iter()
        .filter(|d| d.name == "out.csv")
        .map(|d| d.offset)
        .collect();
    assert_eq!(offsets, [0, 4000]);
    assert!(
        run.stderr
            .contains("download of out.csv broke at byte 4000 of 10500"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("resuming from byte 4000"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("saved out.csv (10.3 KiB)"),
        "{}",
        run.stderr
    );

    // Only the named one, as JSON.
    let only = dir.path().join("only");
    let only_arg = only.display().to_string();
    let run = ferry(
        &url,
        &[
            "--output",
            "json",
            "results",
            "get",
            "job-1",
            "extract",
            "-o",
            &only_arg,
            "--name",
            "parts/a.csv",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 1, "{json:#}");
    assert_eq!(json[0]["name"], "parts/a.csv");
    assert_eq!(
        json[0]["path"],
        only.join("parts/a.csv").display().to_string()
    );
    assert_eq!(walk(&only), ["parts/a.csv"]);
}

/// The stdout lines sorted, for comparing without depending on order.
fn sorted_paths(stdout: &str) -> String {
    let mut lines: Vec<&str> = stdout.lines().collect();
    lines.sort();
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// Files under `dir`, relative, '/'-separated.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(at) = stack.pop() {
        for entry in std::fs::read_dir(&at).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(dir).unwrap();
                out.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn results_get_refuses_a_corrupt_download_and_leaves_nothing() {
    let mut script = results_script();
    // The listed checksum is that of other bytes.
    script.results[0].2 = hex(&Sha256::digest(b"something else"));
    let expected = script.results[0].2.clone();
    let actual = hex(&Sha256::digest(&script.results[0].1));
    let (url, _) = start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().display().to_string();
    let run = ferry(
        &url,
        &[
            "results", "get", "job-1", "extract", "-o", &out, "--name", "out.csv",
        ],
    )
    .await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!("error: checksum mismatch for out.csv: expected {expected}, got {actual}\n")
    );
    assert!(
        walk(dir.path()).is_empty(),
        "left behind: {:?}",
        walk(dir.path())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_get_refuses_names_escaping_the_folder() {
    let mut script = results_script();
    script
        .results
        .push(published("../escape.txt", b"x".to_vec()));
    let (url, fake) = start(script).await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let run = ferry(
        &url,
        &["results", "get", "job-1", "extract", "-o", &out_arg],
    )
    .await;
    assert_eq!(run.code, 3, "{}", run.stderr);
    assert!(run.stderr.contains("\"../escape.txt\""), "{}", run.stderr);
    assert!(walk(dir.path()).is_empty(), "{:?}", walk(dir.path()));
    assert!(!dir.path().join("escape.txt").exists());
    assert!(
        fake.0.lock().unwrap().downloads.is_empty(),
        "nothing was fetched"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_get_bad_input_exits_2() {
    let (url, _) = start(results_script()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let under_file = file.join("sub").display().to_string();
    let run = ferry(
        &url,
        &["results", "get", "job-1", "extract", "-o", &under_file],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.starts_with("error: cannot create folder"),
        "{}",
        run.stderr
    );

    let out = dir.path().join("out").display().to_string();
    let run = ferry(
        &url,
        &[
            "results", "get", "job-1", "extract", "-o", &out, "--name", "nope.csv",
        ],
    )
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("no published output named \"nope.csv\""),
        "{}",
        run.stderr
    );

    let run = ferry(&url, &["results", "get", "job-1", "extract", "--bogus"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);

    let run = ferry(&url, &["results", "get", "nope", "extract", "-o", &out]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);
}
