//! Retention of the data directory's artifacts: a job that ended longer ago than
//! `--artifact-retention` loses its published files and its results rows (the S3 counterpart
//! is in `results_s3.rs`).

use std::time::{Duration, Instant};

use ferry_tests::{
    results_fixture::{
        files_under, restart_past_retention, results_by_name as results, run_expiring_job,
    },
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
    let cli = controller.cli();
    let id = run_expiring_job(&cli, 2_000_000, JOB_TIMEOUT).await;
    let published = controller.data_dir().join("artifacts/published").join(&id);
    assert_eq!(files_under(&published).len(), 2, "{}", published.display());

    restart_past_retention(&mut controller).await;
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
