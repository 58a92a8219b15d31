//! `ferry logs`: a task's standard output, per attempt, and a bounded tail for huge output.

use std::time::Duration;

use ferry_proto::v1::GetJobRequest;
use ferry_tests::{job::state, Agent, AgentOpts, Controller, ControllerOpts, TestDir};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_return_the_tasks_output_per_attempt() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("logs").unwrap();
    let marker = scratch.path().join("ran-once");
    let job = format!(
        r#"
name = "chatty"

[[tasks]]
id = "hello"
queue = "etl"
shell = '''
echo "first line from the task"
echo "a warning" >&2
printf 'second line\nthird line\n'
'''

[[tasks]]
id = "twice"
queue = "etl"
retry = {{ max_attempts = 2, initial_delay = "100ms" }}
shell = '''
if [ -f {marker} ]; then echo "run two"; exit 0; fi
touch {marker}
echo "run one"
exit 1
'''
"#,
        marker = marker.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");

    let out = cli.run(["logs", &id, "hello"]).await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    let expected = "first line from the task\nsecond line\nthird line\n";
    let stdout_lines: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| !l.contains("a warning"))
        .collect();
    assert_eq!(
        stdout_lines.join("\n") + "\n",
        expected,
        "logs print the task's standard output: {out}"
    );

    let first = cli
        .run(["logs", &id, "twice", "--attempt", "1"])
        .await
        .unwrap();
    assert_eq!(first.code, 0, "{first}");
    assert!(first.stdout.contains("run one"), "{first}");
    assert!(!first.stdout.contains("run two"), "{first}");
    let latest = cli.run(["logs", &id, "twice"]).await.unwrap();
    assert!(
        latest.stdout.contains("run two"),
        "the latest attempt by default: {latest}"
    );
    assert!(!latest.stdout.contains("run one"), "{latest}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_output_is_kept_as_a_bounded_tail() {
    const PRINTED: usize = 20 * 1024 * 1024;
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    // 20 MiB of numbered lines, then a last line to find in the tail.
    let job = format!(
        r#"
name = "firehose"

[[tasks]]
id = "flood"
queue = "etl"
shell = '''
yes "ferry log line, ferry log line, ferry log line" | head -c {PRINTED}
echo
echo "the very end"
'''
"#
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(90)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");

    let out = cli.run(["logs", &id, "flood"]).await.unwrap();
    assert_eq!(out.code, 0, "exit code {}, stderr {}", out.code, out.stderr);
    assert!(
        out.stdout.len() < PRINTED,
        "logs are bounded: got {} bytes of {PRINTED}",
        out.stdout.len()
    );
    assert!(
        out.stdout.trim_end().ends_with("the very end"),
        "logs keep the tail; it ends with {:?}",
        &out.stdout[out.stdout.len().saturating_sub(200)..]
    );
    assert!(
        out.stdout.contains("ferry log line"),
        "the tail holds the output's last lines"
    );
    let note = out.stderr.to_lowercase();
    assert!(
        ["truncat", "cut", "dropped", "omitted"]
            .iter()
            .any(|word| note.contains(word)),
        "a note on standard error says older output was cut: {:?}",
        out.stderr
    );

    let mut jobs = controller.job_client().await.unwrap();
    let stored = jobs
        .get_job(GetJobRequest { job_id: id })
        .await
        .unwrap()
        .into_inner();
    let attempt = &stored.tasks[0].attempts[0];
    assert!(
        attempt.logs_truncated,
        "the attempt records the cut: {attempt:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_follow_streams_output_while_the_task_runs_and_ends_with_it() {
    use tokio::io::AsyncBufReadExt;

    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("follow").unwrap();
    let go = scratch.path().join("go");
    let job = format!(
        r#"
name = "follow"

[[tasks]]
id = "slow"
queue = "etl"
shell = '''
echo "before the flag"
while [ ! -f {go} ]; do sleep 0.05; done
echo "after the flag"
'''
"#,
        go = go.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    // The attempt exists once the task is claimed; `logs` needs one.
    let mut follower = loop {
        let out = cli.run(["logs", &id, "slow"]).await.unwrap();
        if out.code == 0 && out.stdout.contains("before the flag") {
            break cli.spawn(["logs", &id, "slow", "--follow"]).unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut lines = tokio::io::BufReader::new(follower.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("no line streamed")
        .unwrap();
    assert_eq!(first.as_deref(), Some("before the flag"));
    std::fs::write(&go, "").unwrap();
    let second = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("the line printed after the flag was not streamed")
        .unwrap();
    assert_eq!(second.as_deref(), Some("after the flag"));
    let status = tokio::time::timeout(Duration::from_secs(10), follower.wait())
        .await
        .expect("logs --follow did not end with the attempt")
        .unwrap();
    assert!(status.success(), "{status:?}");
    let done = cli.wait_job(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
}
