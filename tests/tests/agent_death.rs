//! An agent that dies mid-task: its attempt is `lost`, the task runs again elsewhere, and
//! whatever the dead agent says afterwards about the old attempt is refused (fencing).

use std::time::Duration;

use ferry_proto::v1::{AppendLogsRequest, CompleteRequest, LogChunk, LogStream, Outcome};
use ferry_tests::{
    eventually,
    job::{attempts, state, task_state},
    procs::read_pids,
    Agent, AgentOpts, Controller, ControllerOpts, FakeAgent, TestDir,
};
use serde_json::Value;

const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

/// Polls `jobs show` until task `task` has an attempt numbered `number` that is running.
async fn running_attempt(
    cli: &ferry_tests::Cli,
    job: &str,
    task: &str,
    number: u64,
    timeout: Duration,
) -> Value {
    eventually(
        &format!("attempt {number} of {task} to be running"),
        timeout,
        || async {
            let doc = cli.show(job).await?;
            Ok(attempts(&doc, task)
                .iter()
                .find(|a| a["number"] == number && a["state"] == "running")
                .cloned())
        },
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_agents_task_completes_on_another_agent() {
    let controller = Controller::start(ControllerOpts::default().agent_timeout(AGENT_TIMEOUT))
        .await
        .unwrap();
    let mut doomed = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-doomed").queue("etl"),
    )
    .await
    .unwrap();
    let scratch = TestDir::new("agent-death").unwrap();
    let starts = scratch.path().join("starts");
    let flag = scratch.path().join("flag");
    // Waits (at most a minute, so that the orphan of the killed agent ends too) for the flag.
    let job = format!(
        r#"
name = "survivor"

[[tasks]]
id = "extract"
queue = "etl"
retry = {{ max_attempts = 3, initial_delay = "100ms" }}
shell = '''
echo $$ >> {starts}
i=0
while [ ! -f {flag} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -f {flag} ]
'''
"#,
        starts = starts.display(),
        flag = flag.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let first = running_attempt(&cli, &id, "extract", 1, Duration::from_secs(20)).await;
    assert_eq!(first["agent"], doomed.name());
    eventually(
        "the first run to start",
        Duration::from_secs(10),
        || async { Ok(read_pids(&starts).ok().filter(|p| !p.is_empty()).map(drop)) },
    )
    .await
    .unwrap();

    // Only now does a second agent join: the first attempt could only go to the doomed one.
    let heir = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-heir").queue("etl"),
    )
    .await
    .unwrap();
    doomed.kill9().unwrap();

    let second = running_attempt(&cli, &id, "extract", 2, Duration::from_secs(20)).await;
    assert_eq!(
        second["agent"],
        heir.name(),
        "attempt 2 runs on the live agent"
    );
    std::fs::write(&flag, "go").unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();

    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(task_state(&done, "extract"), "succeeded", "{done:#}");
    let tries = attempts(&done, "extract");
    assert_eq!(tries.len(), 2, "{done:#}");
    assert_eq!(tries[0]["number"], 1, "{done:#}");
    assert_eq!(tries[0]["agent"], doomed.name(), "{done:#}");
    assert_eq!(state(&tries[0]), "lost", "{done:#}");
    assert_eq!(tries[1]["number"], 2, "{done:#}");
    assert_eq!(tries[1]["agent"], heir.name(), "{done:#}");
    assert_eq!(state(&tries[1]), "succeeded", "{done:#}");

    let listed = cli.agent(doomed.name()).await.unwrap();
    let listed = listed.unwrap_or_else(|| panic!("{} not in agents list", doomed.name()));
    assert_eq!(state(&listed), "dead", "{listed:#}");
    let heir_listed = cli.agent(heir.name()).await.unwrap().unwrap();
    assert_eq!(state(&heir_listed), "ready", "{heir_listed:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_agents_late_completion_is_refused() {
    let controller = Controller::start(ControllerOpts::default().agent_timeout(AGENT_TIMEOUT))
        .await
        .unwrap();
    let jobs = controller.job_client().await.unwrap();
    // A fake agent that claims the task, then goes silent.
    let fake = FakeAgent::register(
        controller.agent_client().await.unwrap(),
        "fake-agent",
        "etl",
    )
    .await
    .unwrap();
    let mut agents = fake.client.clone();
    let me = fake.identity.clone();
    let job = r#"
name = "fenced"

[[tasks]]
id = "only"
queue = "etl"
retry = { max_attempts = 3, initial_delay = "100ms" }
shell = "echo real run"
"#;
    let cli = controller.cli();
    let id = cli.submit(job).await.unwrap();

    let assignment = fake.claim_one(Duration::from_secs(10)).await.unwrap();
    let stale = assignment
        .attempt
        .clone()
        .expect("assignment names its attempt");
    assert_eq!(stale.job_id, id);
    assert_eq!(stale.task_id, "only");
    assert_eq!(stale.attempt, 1);

    // No heartbeat, no poll: the controller declares it dead after the agent timeout.
    fake.wait_until_dead(&jobs, Duration::from_secs(15))
        .await
        .unwrap();

    let complete = |outcome: Outcome| CompleteRequest {
        agent: Some(me.clone()),
        attempt: Some(stale.clone()),
        outcome: outcome as i32,
        exit_code: Some(0),
        error: String::new(),
        logs: vec![LogChunk {
            stream: LogStream::Stdout as i32,
            data: b"stale output\n".to_vec(),
        }],
        dropped_bytes: 0,
        want: 1,
        outputs: vec![],
        extract: None,
        ..CompleteRequest::default()
    };
    // Wrong codes are collected and reported at the end, so that the rest still runs.
    let mut wrong_codes = Vec::new();
    let refused = agents
        .complete(complete(Outcome::Succeeded))
        .await
        .expect_err("a lost attempt's completion must be refused");
    if refused.code() != tonic::Code::Aborted {
        wrong_codes.push(format!("Complete after death: {refused:?}"));
    }
    let refused = agents
        .append_logs(AppendLogsRequest {
            agent: Some(me.clone()),
            attempt: Some(stale.clone()),
            chunks: vec![LogChunk {
                stream: LogStream::Stdout as i32,
                data: b"stale log\n".to_vec(),
            }],
            dropped_bytes: 0,
        })
        .await
        .expect_err("a lost attempt's logs must be refused");
    if refused.code() != tonic::Code::Aborted {
        wrong_codes.push(format!("AppendLogs after death: {refused:?}"));
    }

    // The refused completion did not end the task: a real agent runs it again.
    let real = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-real").queue("etl"),
    )
    .await
    .unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    let tries = attempts(&done, "only");
    assert_eq!(tries.len(), 2, "{done:#}");
    assert_eq!(tries[0]["agent"], "fake-agent", "{done:#}");
    assert_eq!(state(&tries[0]), "lost", "{done:#}");
    assert_eq!(tries[1]["agent"], real.name(), "{done:#}");
    assert_eq!(state(&tries[1]), "succeeded", "{done:#}");

    // Still refused once the task has ended, and it changes nothing.
    let refused = agents
        .complete(complete(Outcome::Failed))
        .await
        .expect_err("a lost attempt's completion must be refused");
    if refused.code() != tonic::Code::Aborted {
        wrong_codes.push(format!("Complete after the re-run: {refused:?}"));
    }
    let after = cli.show(&id).await.unwrap();
    assert_eq!(state(&after), "succeeded", "{after:#}");
    assert_eq!(
        attempts(&after, "only")
            .iter()
            .map(|a| state(a).to_owned())
            .collect::<Vec<_>>(),
        ["lost", "succeeded"],
        "{after:#}"
    );
    let logs = cli
        .run(["logs", &id, "only", "--attempt", "1"])
        .await
        .unwrap();
    assert!(
        !logs.stdout.contains("stale"),
        "output of a refused attempt was recorded: {logs}"
    );
    assert!(
        wrong_codes.is_empty(),
        "a stale attempt is refused with ABORTED (ferry.proto):\n{}",
        wrong_codes.join("\n")
    );
}
