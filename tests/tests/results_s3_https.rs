//! Results in an S3-compatible store served over HTTPS with a private CA (a real moto server
//! with a certificate from `scripts/dev-certs`): with `AWS_CA_BUNDLE` naming the CA, the
//! controller's client, the agents' presigned transfers (multipart included) and `ferry results
//! get` all work; a reader or an agent that does not trust the CA is refused at once, naming
//! the certificate problem (the reader keeps no partial file, the agent's attempt fails).

use std::time::Duration;

use ferry_tests::{
    job::state,
    results_fixture::{
        files_under, last_error, results_by_name, results_get, run_to_success, sha256_file,
    },
    Agent, AgentOpts, Controller, DevCerts, Moto, TestDir,
};

const BUCKET: &str = "ferry-tls";

/// 20 MiB, over the 16 MiB single-PUT limit: a multipart upload.
const JOB: &str = r#"
name = "s3-https"

[[tasks]]
id = "produce"
queue = "etl"
outputs = ["small.txt", "big.bin"]
shell = '''
set -e
echo hello > small.txt
head -c 20971520 /dev/urandom > big.bin
'''

[[tasks]]
id = "consume"
queue = "etl"
depends_on = ["produce"]
shell = 'test $(wc -c < "$FERRY_INPUTS/produce/big.bin") -eq 20971520 && grep -q hello "$FERRY_INPUTS/produce/small.txt"'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_over_https_with_a_private_ca_round_trips_and_untrusting_readers_are_refused() {
    let certs = DevCerts::generate().unwrap();
    let moto = Moto::start_tls(&certs).await.unwrap();
    assert!(moto.endpoint().starts_with("https://"));
    moto.create_bucket(BUCKET).await.unwrap();
    let ca = certs.ca().display().to_string();
    let config = TestDir::new("s3-https-config").unwrap();
    let controller = Controller::start(
        moto.controller_opts(BUCKET, "runs", &config)
            .env("AWS_CA_BUNDLE", &ca),
    )
    .await
    .unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-https")
            .queue("etl")
            .env("AWS_CA_BUNDLE", &ca),
    )
    .await
    .unwrap();

    let cli = controller.cli().with_env("AWS_CA_BUNDLE", &ca);
    let (id, _) = run_to_success(&cli, JOB, Duration::from_secs(120)).await;
    let listed = results_by_name(&cli, &id, Some("produce")).await;
    let objects = moto
        .objects(BUCKET, &format!("runs/jobs/{id}/produce/1/"))
        .await
        .unwrap();
    assert_eq!(objects.len(), 2, "{objects:?}");
    let out = TestDir::new("s3-https-get").unwrap();
    results_get(&cli, &id, "produce", out.path(), &[]).await;
    for name in ["small.txt", "big.bin"] {
        assert_eq!(
            sha256_file(&out.path().join(name)),
            listed[name]["sha256"].as_str().unwrap(),
            "{name}"
        );
    }

    // Without the CA: refused at once (no retrying for a minute), nothing left behind.
    let untrusting = controller.cli();
    let dest = TestDir::new("s3-https-untrusted").unwrap();
    let dest_path = dest.path().display().to_string();
    let started = std::time::Instant::now();
    let refused = untrusting
        .run(["results", "get", &id, "produce", "-o", &dest_path])
        .await
        .unwrap();
    assert_ne!(refused.code, 0, "{refused}");
    assert!(refused.stderr.contains("AWS_CA_BUNDLE"), "{refused}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "a certificate problem was retried: {refused}"
    );
    assert_eq!(files_under(dest.path()), Vec::<String>::new());

    // An agent that does not trust the store: its upload fails the attempt at once, saying why.
    let _untrusting_agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-untrusting").queue("untrusting"),
    )
    .await
    .unwrap();
    let id = cli
        .submit(
            "name = \"untrusted\"\n[[tasks]]\nid = \"t\"\nqueue = \"untrusting\"\n\
             retry = { max_attempts = 1 }\noutputs = [\"o.txt\"]\nshell = \"echo x > o.txt\"\n",
        )
        .await
        .unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let error = last_error(&done, "t");
    assert!(
        error.contains("certificate") && error.contains("AWS_CA_BUNDLE"),
        "{error}"
    );
}
