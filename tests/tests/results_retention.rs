//! Retention of the data directory's artifacts: a job that ended longer ago than
//! `--artifact-retention` loses its published files and its results rows (the S3 counterpart
//! is in `results_s3.rs`).

use std::time::{Duration, Instant};

use ferry_tests::{
    results_fixture::{files_under, results_by_name as results, run_to_success},
    Agent, AgentOpts, Controller, ControllerOpts,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_the_artifacts_of_expired_jobs() {
    let mut controller = Controller::start(
        ControllerOpts::default()
            .arg("--artifact-retention")
            .arg("1s"),
    )
    .await
    .unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let job = r#"
name = "expiring"

[[tasks]]
id = "only"
queue = "etl"
retry = { max_attempts = 1 }
outputs = ["a.txt", "b.bin"]
shell = "echo a > a.txt && head -c 2000000 /dev/urandom > b.bin"
"#;
    let cli = controller.cli();
    let (id, _) = run_to_success(&cli, job, JOB_TIMEOUT).await;
    let published = controller.data_dir().join("artifacts/published").join(&id);
    assert_eq!(files_under(&published).len(), 2, "{}", published.display());

    // The retention loop runs at start, then every minute: a restart past the retention age.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    controller.restart().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while published.exists() {
        assert!(
            Instant::now() < deadline,
            "left: {:?}",
            files_under(&published)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(results(&cli, &id, None).await.is_empty());
}
