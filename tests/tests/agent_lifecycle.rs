//! Every recorded reason is the true one (issue 19, item 8): a controller killed (`kill -9`)
//! while an agent uploads an attempt's output, and down longer than the agent timeout, makes
//! the agent stop that attempt when its lease runs out; the attempt is recorded with that
//! reason once the controller is back, not as an assignment that never arrived.

use std::time::{Duration, Instant};

use ferry_tests::{
    job::{attempts, state},
    results_fixture::{files_with_sizes, GIB},
    Agent, AgentOpts, Controller, ControllerOpts,
};

const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_cut_by_a_controller_kill9_mid_upload_is_recorded_with_its_true_reason() {
    let mut controller = Controller::start(ControllerOpts::default().agent_timeout(AGENT_TIMEOUT))
        .await
        .unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("uploader").queue("etl"))
        .await
        .unwrap();
    let job = format!(
        r#"
name = "cut"

[[tasks]]
id = "produce"
queue = "etl"
retry = {{ max_attempts = 2, initial_delay = "100ms" }}
outputs = ["big.bin"]
shell = '''
set -e
truncate -s {GIB} big.bin
head -c 64 /dev/urandom >> big.bin
'''
"#
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let staging = controller.data_dir().join("artifacts").join("staging");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if files_with_sizes(&staging)
            .into_iter()
            .any(|(_, len)| len > 0 && len < GIB + 64)
        {
            break;
        }
        assert!(Instant::now() < deadline, "no partial upload within 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    controller.kill9().unwrap();
    // Down past the agent timeout: the agent's lease runs out and it stops the attempt.
    tokio::time::sleep(AGENT_TIMEOUT * 3).await;
    controller.restart().await.unwrap();

    let done = cli.wait_job(&id, Duration::from_secs(120)).await.unwrap();
    let tries = attempts(&done, "produce");
    let first = &tries[0];
    let reason = first["error"].as_str().unwrap_or_default();
    eprintln!("attempt 1: {first:#}");
    assert_eq!(first["state"], "lost", "{done:#}");
    assert!(
        !reason.contains("never arrived"),
        "the attempt had arrived and was running: {reason:?}"
    );
    assert!(
        reason.contains("lost contact with the controller"),
        "the recorded reason is the true one: {reason:?}"
    );
    assert_eq!(
        state(&done),
        "succeeded",
        "the retry runs it whole: {done:#}"
    );
}
