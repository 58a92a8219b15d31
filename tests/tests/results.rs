//! Results: outputs uploaded by the agent, published with the completion, listed and
//! downloaded with the CLI, handed to downstream tasks on another agent; a lost attempt's
//! upload is refused; bad output paths and the size limit fail the attempt naming the problem.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    time::Duration,
};

use ferry_proto::v1::{
    task_spec::Kind, JobSpec, RetryPolicy, ShellTask, SubmitJobRequest, TaskSpec, UploadChunk,
    UploadHeader, UploadStatusRequest,
};
use ferry_tests::{
    job::{attempts, last_agent, state, task_state},
    results_fixture::{
        agent_on, files_under, last_error, results_by_name, results_get as get, run_to_success,
        sha256_file, BigBin, FencedAttempt,
    },
    Agent, AgentOpts, Cli, Controller, ControllerOpts, TestDir,
};
use serde_json::Value;

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

fn sha256_bytes(data: &[u8]) -> String {
    let dir = TestDir::new("sha").unwrap();
    let path = dir.path().join("data");
    std::fs::write(&path, data).unwrap();
    sha256_file(&path)
}

/// `ferry --output json results list JOB [TASK]`, by name, each file with every field.
async fn results(cli: &Cli, job: &str, task: Option<&str>) -> BTreeMap<String, Value> {
    let listed = results_by_name(cli, job, task).await;
    for f in listed.values() {
        for key in ["task", "attempt", "name", "size", "sha256", "created_at"] {
            assert!(f.get(key).is_some(), "no {key:?} in {f:#}");
        }
    }
    listed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_round_trip_through_the_cli_including_1gib_and_empty_files() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("results-round-trip").unwrap();
    let big = BigBin::new(&scratch);
    let job = format!(
        r#"
name = "round-trip"

[[tasks]]
id = "produce"
queue = "etl"
retry = {{ max_attempts = 1 }}
outputs = ["out.csv", "empty.txt", "big.bin", "parts/*.csv"]
shell = '''
set -e
printf 'id,v\n1,a\n2,b\n' > out.csv
: > empty.txt
mkdir parts
echo a > parts/a.csv
echo b > parts/b.csv
echo not-matched > parts/c.txt
{big_bin}'''
"#,
        big_bin = big.shell()
    );
    let cli = controller.cli();
    let (id, _) = run_to_success(&cli, &job, JOB_TIMEOUT).await;

    let listed = results(&cli, &id, Some("produce")).await;
    assert_eq!(
        listed.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "big.bin",
            "empty.txt",
            "out.csv",
            "parts/a.csv",
            "parts/b.csv"
        ],
        "the glob takes parts/*.csv only: {listed:#?}"
    );
    let expected: [(&str, u64, String); 5] = [
        ("big.bin", BigBin::SIZE, big.sha256()),
        ("empty.txt", 0, sha256_bytes(b"")),
        ("out.csv", 13, sha256_bytes(b"id,v\n1,a\n2,b\n")),
        ("parts/a.csv", 2, sha256_bytes(b"a\n")),
        ("parts/b.csv", 2, sha256_bytes(b"b\n")),
    ];
    for (name, size, sha) in &expected {
        let file = &listed[*name];
        assert_eq!(file["task"], "produce", "{file:#}");
        assert_eq!(file["attempt"], 1, "{file:#}");
        assert_eq!(file["size"], *size, "{file:#}");
        assert_eq!(file["sha256"], sha.as_str(), "{file:#}");
        assert!(file["created_at"].is_string(), "{file:#}");
    }
    // The whole job's list holds the same files; the table shows them too.
    assert_eq!(results(&cli, &id, None).await.len(), 5);
    let table = cli.run(["results", "list", &id]).await.unwrap();
    assert_eq!(table.code, 0, "{table}");
    assert!(
        table.stdout.contains("big.bin") && table.stdout.contains("1.0 GiB"),
        "{table}"
    );

    let into = scratch.path().join("downloads");
    get(&cli, &id, "produce", &into, &[]).await;
    assert_eq!(
        files_under(&into),
        [
            "big.bin",
            "empty.txt",
            "out.csv",
            "parts/a.csv",
            "parts/b.csv"
        ],
        "every output, and no .part file"
    );
    for (name, size, sha) in &expected {
        let path = into.join(name);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), *size, "{name}");
        assert_eq!(&sha256_file(&path), sha, "{name}");
    }
    assert_eq!(
        std::fs::read(into.join("out.csv")).unwrap(),
        b"id,v\n1,a\n2,b\n"
    );

    // Only the named ones.
    let some = scratch.path().join("some");
    get(&cli, &id, "produce", &some, &["out.csv", "parts/b.csv"]).await;
    assert_eq!(files_under(&some), ["out.csv", "parts/b.csv"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cloud_agent_transforms_what_an_onprem_agent_extracted() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let onprem = agent_on(&controller, "agent-onprem", "onprem").await;
    let cloud = agent_on(&controller, "agent-cloud", "cloud").await;
    let job = r#"
name = "hand-off"

[[tasks]]
id = "extract"
queue = "onprem"
retry = { max_attempts = 1 }
outputs = ["out.csv"]
shell = "printf 'id,city\n1,lyon\n2,oslo\n' > out.csv"

[[tasks]]
id = "load"
depends_on = ["extract"]
queue = "cloud"
retry = { max_attempts = 1 }
outputs = ["derived.csv"]
shell = '''
set -e
test -f "$FERRY_INPUTS/extract/out.csv"
tr a-z A-Z < "$FERRY_INPUTS/extract/out.csv" > derived.csv
'''
"#;
    let cli = controller.cli();
    let (id, done) = run_to_success(&cli, job, JOB_TIMEOUT).await;
    assert_eq!(last_agent(&done, "extract"), onprem.name(), "{done:#}");
    assert_eq!(last_agent(&done, "load"), cloud.name(), "{done:#}");

    let scratch = TestDir::new("hand-off").unwrap();
    get(&cli, &id, "load", scratch.path(), &[]).await;
    assert_eq!(
        std::fs::read_to_string(scratch.path().join("derived.csv")).unwrap(),
        "ID,CITY\n1,LYON\n2,OSLO\n"
    );
    let all = results(&cli, &id, None).await;
    assert_eq!(all["out.csv"]["task"], "extract", "{all:#?}");
    assert_eq!(all["derived.csv"]["task"], "load", "{all:#?}");
}

/// CRC32C (Castagnoli) of `data`, as `UploadChunk.crc32c` carries it.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn crc32c_matches_the_standard_check_value() {
    assert_eq!(crc32c(b"123456789"), 0xE306_9283);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_attempts_upload_is_refused() {
    // A fake agent that claims the task, then goes silent.
    let fenced =
        FencedAttempt::claimed(ControllerOpts::default(), "fake-agent", "fenced-upload").await;
    let mut agents = fenced.fake.client.clone();
    let me = fenced.fake.identity.clone();
    let (cli, id, stale) = (&fenced.cli, &fenced.job_id, fenced.stale.clone());
    assert_eq!((stale.job_id.as_str(), stale.attempt), (id.as_str(), 1));

    // No heartbeat: dead after the agent timeout, its attempt lost.
    fenced.until_lost().await;

    let data = b"stale output\n".to_vec();
    let chunk = UploadChunk {
        header: Some(UploadHeader {
            agent: Some(me.clone()),
            attempt: Some(stale.clone()),
            name: "out.csv".into(),
            size: data.len() as u64,
            sha256: sha256_bytes(&data),
        }),
        offset: 0,
        crc32c: crc32c(&data),
        data: data.into(),
        sha256: String::new(),
    };
    let mut wrong = Vec::new();
    match agents
        .upload_output(tonic::codegen::tokio_stream::iter(vec![chunk]))
        .await
    {
        Ok(resp) => wrong.push(format!(
            "UploadOutput of a lost attempt succeeded: {resp:?}"
        )),
        Err(status) if status.code() == tonic::Code::Aborted => {}
        Err(status) => wrong.push(format!("UploadOutput of a lost attempt: {status:?}")),
    }
    match agents
        .upload_status(UploadStatusRequest {
            agent: Some(me.clone()),
            attempt: Some(stale.clone()),
            name: "out.csv".into(),
        })
        .await
    {
        Ok(resp) => wrong.push(format!(
            "UploadStatus of a lost attempt succeeded: {resp:?}"
        )),
        Err(status) if status.code() == tonic::Code::Aborted => {}
        Err(status) => wrong.push(format!("UploadStatus of a lost attempt: {status:?}")),
    }

    // A real agent runs attempt 2; only its output is published.
    let (real, done) = fenced
        .retried_by_real_agent("agent-real", JOB_TIMEOUT)
        .await;
    let tries = attempts(&done, "only");
    assert_eq!(state(&tries[0]), "lost", "{done:#}");
    assert_eq!(tries.last().unwrap()["agent"], real.name(), "{done:#}");
    let listed = results(cli, id, Some("only")).await;
    let out = &listed["out.csv"];
    assert_eq!(
        out["attempt"],
        tries.last().unwrap()["number"],
        "{listed:#?}"
    );
    assert_eq!(
        out["sha256"],
        sha256_bytes(b"real\n").as_str(),
        "{listed:#?}"
    );
    assert!(
        wrong.is_empty(),
        "a lost attempt's upload is refused with ABORTED (ferry.proto):\n{}",
        wrong.join("\n")
    );
}

/// A one-task job spec, for what the CLI would refuse before sending.
fn one_task(name: &str, queue: &str, shell: &str, outputs: &[&str]) -> JobSpec {
    JobSpec {
        name: name.into(),
        params: HashMap::new(),
        tasks: vec![TaskSpec {
            id: "only".into(),
            queue: queue.into(),
            kind: Some(Kind::Shell(ShellTask {
                command: shell.into(),
            })),
            outputs: outputs.iter().map(|o| (*o).to_owned()).collect(),
            retry: Some(RetryPolicy {
                max_attempts: 1,
                initial_delay_ms: None,
                max_delay_ms: None,
            }),
            ..TaskSpec::default()
        }],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_output_paths_and_the_size_limit_fail_the_attempt_naming_the_problem() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-a").queue("etl").max_tasks(4),
    )
    .await
    .unwrap();
    let _small = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-small")
            .queue("small")
            .arg("--max-output-bytes")
            .arg("1024"),
    )
    .await
    .unwrap();
    let cli = controller.cli();
    let mut problems = Vec::new();

    // The CLI refuses an escaping path before anything is queued.
    let path = cli
        .write_job(
            r#"
name = "escape"
[[tasks]]
id = "only"
queue = "etl"
outputs = ["../escape.txt"]
shell = "echo x > ../escape.txt"
"#,
        )
        .unwrap();
    let out = cli
        .run(["submit".as_ref(), path.as_os_str()])
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("../escape.txt"), "{out}");

    // Sent directly, the controller refuses it, or the attempt fails naming it.
    let mut client = controller.job_client().await.unwrap();
    let escape = client
        .submit_job(SubmitJobRequest {
            spec: Some(one_task(
                "escape",
                "etl",
                "echo x > ../escape.txt",
                &["../escape.txt"],
            )),
            idempotency_key: String::new(),
            ..Default::default()
        })
        .await;
    let escape_job = match escape {
        Err(status) => {
            assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
            assert!(status.message().contains("escape.txt"), "{status:?}");
            None
        }
        Ok(resp) => Some(resp.into_inner().job_id),
    };

    let missing = cli
        .submit(
            r#"
name = "missing"
[[tasks]]
id = "only"
queue = "etl"
retry = { max_attempts = 1 }
outputs = ["present.csv", "missing.csv"]
shell = "echo here > present.csv"
"#,
        )
        .await
        .unwrap();
    let symlink = cli
        .submit(
            r#"
name = "symlink"
[[tasks]]
id = "only"
queue = "etl"
retry = { max_attempts = 1 }
outputs = ["leak.txt"]
shell = "ln -s /etc/passwd leak.txt"
"#,
        )
        .await
        .unwrap();
    let too_big = cli
        .submit(
            r#"
name = "too-big"
[[tasks]]
id = "only"
queue = "small"
retry = { max_attempts = 1 }
outputs = ["big.bin"]
shell = "head -c 4096 /dev/zero > big.bin"
"#,
        )
        .await
        .unwrap();

    let mut check = |job: &Value, what: &str, needles: &[&[&str]]| {
        if state(job) != "failed" || task_state(job, "only") != "failed" {
            problems.push(format!("{what}: the job should fail: {job:#}"));
            return;
        }
        let error = last_error(job, "only");
        for any_of in needles {
            if !any_of.iter().any(|n| error.contains(n)) {
                problems.push(format!(
                    "{what}: the attempt's error should name one of {any_of:?}: {error:?}"
                ));
            }
        }
    };
    if let Some(escape_job) = &escape_job {
        let done = cli.wait_job(escape_job, JOB_TIMEOUT).await.unwrap();
        check(
            &done,
            "an output outside the working dir",
            &[&["../escape.txt"]],
        );
    }
    let done = cli.wait_job(&missing, JOB_TIMEOUT).await.unwrap();
    check(&done, "a missing output", &[&["missing.csv"]]);
    let done = cli.wait_job(&symlink, JOB_TIMEOUT).await.unwrap();
    check(&done, "a symlink to /etc/passwd", &[&["leak.txt"]]);
    let done = cli.wait_job(&too_big, JOB_TIMEOUT).await.unwrap();
    check(
        &done,
        "an output over --max-output-bytes 1024",
        &[
            &["limit", "max_output_bytes", "max-output-bytes"],
            &["1024", "1 KiB", "1.0 KiB"],
        ],
    );

    // None of these published anything.
    let mut jobs: Vec<&String> = vec![&missing, &symlink, &too_big];
    jobs.extend(escape_job.as_ref());
    for job in jobs {
        let listed = results(&cli, job, None).await;
        if !listed.is_empty() {
            problems.push(format!("job {job} failed but published {listed:#?}"));
        }
    }
    // `results get` of a task without published outputs fails and saves nothing.
    let scratch = TestDir::new("no-results").unwrap();
    let into: PathBuf = scratch.path().join("into");
    let out = cli
        .run([
            "results".as_ref(),
            "get".as_ref(),
            missing.as_ref(),
            "only".as_ref(),
            "-o".as_ref(),
            into.as_os_str(),
        ])
        .await
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(files_under(&into).is_empty(), "{:?}", files_under(&into));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
