//! Retries: a flaky task succeeds on a later attempt; a task that keeps failing fails the job.

use std::time::Duration;

use ferry_tests::{
    job::{attempt_states, attempts, state, task_state},
    Agent, AgentOpts, Controller, ControllerOpts, TestDir,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_task_succeeds_on_its_third_attempt() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("retry").unwrap();
    let counter = scratch.path().join("runs");
    let job = format!(
        r#"
name = "flaky"

[[tasks]]
id = "flaky"
queue = "etl"
retry = {{ max_attempts = 3, initial_delay = "100ms" }}
shell = '''
n=$(cat {counter} 2>/dev/null || echo 0)
n=$((n + 1))
echo "$n" > {counter}
echo "run $n"
[ "$n" -ge 3 ] || exit 7
'''
"#,
        counter = counter.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();

    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(task_state(&done, "flaky"), "succeeded", "{done:#}");
    assert_eq!(
        attempt_states(&done, "flaky"),
        ["failed", "failed", "succeeded"],
        "{done:#}"
    );
    let tries = attempts(&done, "flaky");
    for (i, attempt) in tries.iter().enumerate() {
        assert_eq!(attempt["number"], i + 1, "{done:#}");
    }
    assert_eq!(tries[0]["exit_code"], 7, "{done:#}");
    assert_eq!(tries[2]["exit_code"], 0, "{done:#}");
    assert_eq!(std::fs::read_to_string(&counter).unwrap().trim(), "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_exhausts_its_retries_fails_the_job() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("retry").unwrap();
    let counter = scratch.path().join("runs");
    let job = format!(
        r#"
name = "hopeless"

[[tasks]]
id = "hopeless"
queue = "etl"
retry = {{ max_attempts = 3, initial_delay = "100ms", max_delay = "200ms" }}
shell = "echo run >> {counter}; exit 1"

[[tasks]]
id = "after"
queue = "etl"
depends_on = ["hopeless"]
shell = "true"
"#,
        counter = counter.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();

    assert_eq!(state(&done), "failed", "{done:#}");
    assert_eq!(task_state(&done, "hopeless"), "failed", "{done:#}");
    assert_eq!(
        attempt_states(&done, "hopeless"),
        ["failed", "failed", "failed"],
        "{done:#}"
    );
    assert_eq!(task_state(&done, "after"), "skipped", "{done:#}");
    let runs = std::fs::read_to_string(&counter).unwrap();
    assert_eq!(runs.lines().count(), 3, "no run past max_attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_retry_policy_a_task_gets_three_attempts() {
    // ferry.proto: no `retry` in the job file means the default, 3 attempts 1 s then 2 s apart.
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let job = r#"
name = "once"

[[tasks]]
id = "once"
queue = "etl"
shell = "exit 1"
"#;
    let cli = controller.cli();
    let id = cli.submit(job).await.unwrap();
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    assert_eq!(
        attempt_states(&done, "once"),
        ["failed", "failed", "failed"],
        "{done:#}"
    );
}
