//! Parameters reach shell commands as plain data in `$FERRY_PARAM_<NAME>`, never as shell
//! syntax; idempotency keys make a second submit return the first job.

use std::time::Duration;

use ferry_proto::v1::GetJobRequest;
use ferry_tests::{job::state, Agent, AgentOpts, Controller, ControllerOpts, TestDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parameter_holding_shell_syntax_reaches_the_command_as_data() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("params").unwrap();
    let injected = scratch.path().join("injected");
    let out = scratch.path().join("out");
    let value = format!(
        r#"$(touch {}); rm -rf nope; "quoted" 'single' `backtick` ${{HOME}} \n; touch {}"#,
        injected.display(),
        injected.display()
    );
    let job = format!(
        r#"
name = "hostile-params"

[params]
name = "default"

[[tasks]]
id = "echo"
queue = "etl"
shell = '''printf '%s' "$FERRY_PARAM_NAME" > {out}'''
"#,
        out = out.display()
    );
    let cli = controller.cli();
    let param = format!("name={value}");
    let id = cli.submit_with(&job, &["--param", &param]).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");

    let written = std::fs::read(&out).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&written),
        value,
        "the parameter reached the command changed"
    );
    assert_eq!(written, value.as_bytes());
    assert!(
        !injected.exists(),
        "the parameter's value was run as shell: {} exists",
        injected.display()
    );
    let mut jobs = controller.job_client().await.unwrap();
    let stored = jobs
        .get_job(GetJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stored.params.get("name"), Some(&value), "{stored:?}");

    // Without --param, the job file's default applies.
    let id = cli.submit(&job).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(std::fs::read(&out).unwrap(), b"default");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_idempotency_key_returns_the_same_job() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let job = r#"
name = "nightly"

[[tasks]]
id = "only"
queue = "etl"
shell = "true"
"#;
    let cli = controller.cli();
    let key = ["--idempotency-key", "nightly-2026-11-24"];
    let first = cli.submit_with(job, &key).await.unwrap();
    let second = cli.submit_with(job, &key).await.unwrap();
    assert_eq!(first, second, "same key, same job");
    let listed = cli.jobs().await.unwrap();
    assert_eq!(listed.len(), 1, "one job for one key: {listed:#?}");
    assert_eq!(listed[0]["id"], first.as_str(), "{listed:#?}");

    let other = cli
        .submit_with(job, &["--idempotency-key", "nightly-2026-11-25"])
        .await
        .unwrap();
    assert_ne!(other, first, "another key, another job");
    let plain = cli.submit(job).await.unwrap();
    assert_ne!(plain, first);
    assert_eq!(cli.jobs().await.unwrap().len(), 3);
}
