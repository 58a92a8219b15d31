//! Results in an S3-compatible store (a real moto server on loopback): agents upload and
//! download straight to and from the store with presigned URLs the controller grants per
//! attempt; outputs round-trip through `ferry results get`; a task on one queue hands its
//! outputs to a task on another; a lost attempt's grant is refused; an upload interrupted by
//! a `kill -9` of the controller resumes without sending finished parts again; retention
//! removes the objects of expired jobs; outputs over the limit fail the attempt.

use std::time::{Duration, Instant};

use ferry_proto::v1::{FetchInputRequest, GrantUploadRequest};
use ferry_tests::{
    job::{attempts, state},
    moto::SECRET_KEY,
    results_fixture::{
        restart_past_retention, results_by_name as results, results_get, run_expiring_job,
        run_to_success, sha256_file, BigBin, FencedAttempt,
    },
    Agent, AgentOpts, Controller, Moto, TestDir,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const BUCKET: &str = "ferry-results";

/// moto, a bucket, and the controller's options to use it.
async fn store(prefix: &str) -> (Moto, TestDir, ferry_tests::ControllerOpts) {
    let moto = Moto::start().await.unwrap();
    moto.create_bucket(BUCKET).await.unwrap();
    let dir = TestDir::new("s3-config").unwrap();
    let opts = moto.controller_opts(BUCKET, prefix, &dir);
    (moto, dir, opts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outputs_round_trip_through_the_cli_including_1gib_and_empty_files() {
    let (moto, _config, opts) = store("runs").await;
    let controller = Controller::start(opts).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("s3-round-trip").unwrap();
    let big = BigBin::new(&scratch);
    let job = format!(
        r#"
name = "s3-round-trip"

[[tasks]]
id = "produce"
queue = "etl"
retry = {{ max_attempts = 1 }}
outputs = ["out.csv", "empty.txt", "big.bin"]
shell = '''
set -e
printf 'id,v\n1,a\n2,b\n' > out.csv
: > empty.txt
{big_bin}'''
"#,
        big_bin = big.shell()
    );
    let cli = controller.cli();
    let (id, _) = run_to_success(&cli, &job, JOB_TIMEOUT).await;
    let big_sha = big.sha256();

    let listed = results(&cli, &id, Some("produce")).await;
    let names: Vec<_> = listed.keys().cloned().collect();
    assert_eq!(names, ["big.bin", "empty.txt", "out.csv"], "{listed:#?}");
    assert_eq!(listed["big.bin"]["size"], BigBin::SIZE);
    assert_eq!(listed["big.bin"]["sha256"], big_sha.as_str());
    assert_eq!(listed["empty.txt"]["size"], 0);

    // The objects are in the store, under the attempt's keys; the bulk went there directly
    // (multipart), not through the controller's data directory.
    let objects = moto
        .objects(BUCKET, &format!("runs/jobs/{id}/"))
        .await
        .unwrap();
    let expect: Vec<(String, u64)> = [("big.bin", BigBin::SIZE), ("empty.txt", 0), ("out.csv", 13)]
        .iter()
        .map(|(n, s)| (format!("runs/jobs/{id}/produce/1/{n}"), *s))
        .collect();
    assert_eq!(objects, expect);
    let parts = moto.part_puts();
    assert_eq!(parts.len(), 65, "1 GiB + 64 B in 16 MiB parts: {parts:?}");
    let staged = controller.data_dir().join("artifacts/published");
    assert!(
        std::fs::read_dir(&staged).map_or(true, |mut d| d.next().is_none()),
        "nothing published in the data directory"
    );

    // `ferry results get` downloads from the store with presigned URLs, checksums verified.
    let out_dir = scratch.path().join("got");
    results_get(&cli, &id, "produce", &out_dir, &[]).await;
    assert_eq!(sha256_file(&out_dir.join("big.bin")), big_sha);
    assert_eq!(std::fs::read(out_dir.join("empty.txt")).unwrap(), b"");
    assert_eq!(
        std::fs::read(out_dir.join("out.csv")).unwrap(),
        b"id,v\n1,a\n2,b\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    assert!(
        moto.log().contains(&format!(
            "\"GET /{BUCKET}/runs/jobs/{id}/produce/1/big.bin?"
        )),
        "the CLI read the object from the store"
    );

    // No secret in any log.
    let log = std::fs::read_to_string(controller.log_path()).unwrap();
    assert!(
        !log.contains(SECRET_KEY),
        "the secret key is in the controller's log"
    );
    assert!(
        !log.contains("X-Amz-Signature"),
        "a presigned URL is in the controller's log"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_cloud_agent_transforms_what_an_onprem_agent_extracted() {
    let (moto, _config, opts) = store("").await;
    let controller = Controller::start(opts).await.unwrap();
    let _onprem = Agent::start(&controller.addr(), AgentOpts::new("onprem").queue("onprem"))
        .await
        .unwrap();
    let _cloud = Agent::start(&controller.addr(), AgentOpts::new("cloud").queue("cloud"))
        .await
        .unwrap();
    let job = r#"
name = "hand-off"

[[tasks]]
id = "extract"
queue = "onprem"
retry = { max_attempts = 1 }
outputs = ["orders.csv", "big.bin"]
shell = '''
set -e
printf 'id,amount\n1,10\n2,32\n' > orders.csv
head -c 40000000 /dev/urandom > big.bin
'''

[[tasks]]
id = "transform"
depends_on = ["extract"]
queue = "cloud"
retry = { max_attempts = 1 }
outputs = ["total.txt", "big.sha256"]
shell = '''
set -e
awk -F, 'NR > 1 { s += $2 } END { print s }' "$FERRY_INPUTS/extract/orders.csv" > total.txt
sha256sum < "$FERRY_INPUTS/extract/big.bin" | cut -c1-64 > big.sha256
'''
"#;
    let cli = controller.cli();
    let (id, done) = run_to_success(&cli, job, JOB_TIMEOUT).await;
    assert_eq!(attempts(&done, "extract")[0]["agent"], "onprem", "{done:#}");
    assert_eq!(
        attempts(&done, "transform")[0]["agent"],
        "cloud",
        "{done:#}"
    );

    let extracted = results(&cli, &id, Some("extract")).await;
    let out = TestDir::new("hand-off").unwrap();
    results_get(&cli, &id, "transform", out.path(), &[]).await;
    assert_eq!(
        std::fs::read_to_string(out.path().join("total.txt")).unwrap(),
        "42\n"
    );
    assert_eq!(
        std::fs::read_to_string(out.path().join("big.sha256"))
            .unwrap()
            .trim(),
        extracted["big.bin"]["sha256"].as_str().unwrap(),
        "the cloud agent read the bytes the on-prem agent wrote"
    );
    // The cloud agent read its inputs from the store, not through the controller.
    let log = moto.log();
    for name in ["orders.csv", "big.bin"] {
        assert!(
            log.contains(&format!("\"GET /{BUCKET}/jobs/{id}/extract/1/{name}?")),
            "{name} was not fetched from the store"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_a_lost_attempts_grant_is_refused() {
    let (_moto, _config, opts) = store("fenced").await;
    let fenced = FencedAttempt::claimed(opts, "fake", "fenced-grant").await;
    let fake = &fenced.fake;
    let mut agents = fake.client.clone();
    let stale = fenced.stale.clone();

    // While the attempt is current, it gets URLs: one PUT for a small file, parts for a big one.
    let grant = |size: u64| GrantUploadRequest {
        agent: Some(fake.identity.clone()),
        attempt: Some(stale.clone()),
        name: "out.csv".into(),
        size,
        first_part: 0,
    };
    let small = agents.grant_upload(grant(10)).await.unwrap().into_inner();
    assert!(small.direct && small.upload_id.is_empty() && !small.put_url.is_empty());
    let big = agents
        .grant_upload(grant(100 << 20))
        .await
        .unwrap()
        .into_inner();
    assert!(big.direct && !big.upload_id.is_empty(), "{big:?}");
    assert_eq!((big.part_size, big.part_count), (16 << 20, 7));
    assert_eq!(big.parts.len(), 7);

    fenced.until_lost().await;
    let refused = agents.grant_upload(grant(10)).await.unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted, "{refused:?}");
    let refused = agents
        .grant_download(FetchInputRequest {
            agent: Some(fake.identity.clone()),
            attempt: Some(stale.clone()),
            task_id: "x".into(),
            name: "y".into(),
            offset: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Aborted, "{refused:?}");

    // A real agent runs attempt 2; only its output is published.
    let (_real, _) = fenced.retried_by_real_agent("real", JOB_TIMEOUT).await;
    let listed = results(&fenced.cli, &fenced.job_id, Some("only")).await;
    assert_eq!(listed["out.csv"]["attempt"], 2, "{listed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_an_upload_interrupted_by_a_controller_kill_resumes_without_resending_parts() {
    let (moto, _config, opts) = store("resume").await;
    let mut controller = Controller::start(opts.agent_timeout(Duration::from_secs(20)))
        .await
        .unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    // 40 parts of 16 MiB: three batches of URLs, so the agent needs the controller mid-way.
    let job = r#"
name = "resume"

[[tasks]]
id = "big"
queue = "etl"
retry = { max_attempts = 1 }
outputs = ["big.bin"]
shell = "head -c 671088640 /dev/urandom > big.bin"
"#;
    let cli = controller.cli();
    let id = cli.submit(job).await.unwrap();
    // Kill the controller once the agent has sent a few parts.
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.part_puts().len() < 3 {
        assert!(
            Instant::now() < deadline,
            "no part uploaded:\n{}",
            moto.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    controller.kill9().unwrap();
    assert!(
        moto.part_puts().len() < 16,
        "the first batch was sent before the kill"
    );
    // The agent sends the parts it holds URLs for (the first batch of 16), then waits for the
    // controller to grant more.
    let deadline = Instant::now() + Duration::from_secs(60);
    while moto.part_puts().len() < 16 {
        assert!(Instant::now() < deadline, "the first batch was not sent");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        moto.part_puts().len(),
        16,
        "no part goes without a grant from the controller"
    );
    controller.restart().await.unwrap();

    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    let parts = moto.part_puts();
    let mut sorted = parts.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (1..=40).collect::<Vec<u32>>(),
        "every part sent once, none again after the restart: {parts:?}"
    );
    let listed = results(&cli, &id, Some("big")).await;
    assert_eq!(listed["big.bin"]["size"], 640u64 << 20);
    assert!(moto.uploads(BUCKET).await.unwrap().is_empty());
    let log = std::fs::read_to_string(controller.log_path()).unwrap();
    assert!(log.contains("multipart upload assembled"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_retention_removes_the_objects_of_expired_jobs() {
    let (moto, _config, opts) = store("kept").await;
    let mut controller = Controller::start(opts.arg("--artifact-retention").arg("1s"))
        .await
        .unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let cli = controller.cli();
    // Over 16 MiB: one of the two goes up as a multipart upload.
    let id = run_expiring_job(&cli, 20_000_000, JOB_TIMEOUT).await;
    let prefix = format!("kept/jobs/{id}/");
    assert_eq!(moto.objects(BUCKET, &prefix).await.unwrap().len(), 2);

    restart_past_retention(&mut controller).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = moto.objects(BUCKET, &prefix).await.unwrap();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "objects left: {left:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(results(&cli, &id, None).await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outputs_over_the_limit_fail_the_attempt_naming_it() {
    let (moto, _config, opts) = store("limited").await;
    let controller = Controller::start(opts.arg("--max-output-bytes").arg("1000"))
        .await
        .unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let job = r#"
name = "too-big"

[[tasks]]
id = "only"
queue = "etl"
retry = { max_attempts = 1 }
outputs = ["big.bin"]
shell = "head -c 2000 /dev/urandom > big.bin"
"#;
    let cli = controller.cli();
    let id = cli.submit(job).await.unwrap();
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let error = attempts(&done, "only")[0]["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(
        error.contains("exceed the limit of 1000 bytes") && error.contains("big.bin"),
        "{error}"
    );
    assert!(moto
        .objects(BUCKET, &format!("limited/jobs/{id}/"))
        .await
        .unwrap()
        .is_empty());
}
