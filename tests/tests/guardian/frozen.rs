//! An agent frozen (SIGSTOP) past the agent timeout: its guardian stops the task while the
//! agent cannot run, so the first attempt's last side effect comes before the second attempt's
//! first; the agent, thawed, rejoins.

use std::time::Duration;

use ferry_proto::v1::AgentState;
use ferry_tests::{
    eventually,
    job::{attempt_states, state},
    Agent, AgentOpts, Controller, ControllerOpts, TestDir,
};
use nix::{
    sys::signal::{kill, Signal},
    unistd::Pid,
};

use crate::common::{seen_pids, stopped, AGENT_TIMEOUT};

/// The `attempt nanoseconds` lines a task appended, by attempt.
fn ticks(text: &str, attempt: u32) -> Vec<u128> {
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .filter(|(a, _)| a.parse() == Ok(attempt))
        .filter_map(|(_, t)| t.trim().parse().ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_agents_task_ends_before_its_next_attempt_starts() {
    let controller = Controller::start(ControllerOpts::default().agent_timeout(AGENT_TIMEOUT))
        .await
        .unwrap();
    let mut frozen = Agent::start(&controller.addr(), AgentOpts::new("frozen").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("guardian-frozen").unwrap();
    let pids = scratch.path().join("pids");
    let side = scratch.path().join("side-effects");
    let job = format!(
        r#"
name = "frozen"

[[tasks]]
id = "work"
queue = "etl"
retry = {{ max_attempts = 2, initial_delay = "0s" }}
shell = '''
if [ "$FERRY_ATTEMPT" = 1 ]; then
  echo "shell $$" >> {pids}
  while true; do echo "1 $(date +%s%N)" >> {side}; sleep 0.02; done
fi
echo "$FERRY_ATTEMPT $(date +%s%N)" >> {side}
'''
"#,
        pids = pids.display(),
        side = side.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let shell = seen_pids(&pids, &["shell"]).await[0];
    eventually(
        "attempt 1's first side effect",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&side).unwrap_or_default();
            Ok((!ticks(&text, 1).is_empty()).then_some(()))
        },
    )
    .await
    .unwrap();
    let _heir = Agent::start(&controller.addr(), AgentOpts::new("heir").queue("etl"))
        .await
        .unwrap();

    let agent = Pid::from_raw(frozen.pid().unwrap() as i32);
    kill(agent, Signal::SIGSTOP).unwrap();
    let second = eventually(
        "attempt 2's side effect",
        Duration::from_secs(30),
        || async {
            let text = std::fs::read_to_string(&side).unwrap_or_default();
            Ok(ticks(&text, 2).first().copied().map(|t| (t, text)))
        },
    )
    .await;
    // Checked while the agent is still stopped: nothing of it could have acted.
    let still_stopped = stopped(agent.as_raw());
    let shell_alive = shell.alive();
    kill(agent, Signal::SIGCONT).unwrap();
    let (started, text) = second.unwrap();
    assert!(
        still_stopped,
        "the agent ran while it should have been frozen"
    );
    assert!(!shell_alive, "attempt 1 still runs beside attempt 2");
    let last_of_first = *ticks(&text, 1).iter().max().unwrap();
    assert!(
        last_of_first < started,
        "attempt 1 wrote at {last_of_first}, after attempt 2 started at {started}:\n{text}"
    );

    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(
        attempt_states(&done, "work"),
        ["lost", "succeeded"],
        "{done:#}"
    );
    // Thawed, the agent is back.
    eventually(
        "the thawed agent to rejoin",
        Duration::from_secs(20),
        || async { Ok((frozen.listed_state().await? == Some(AgentState::Ready)).then_some(())) },
    )
    .await
    .unwrap();
    assert!(
        frozen.try_wait().unwrap().is_none(),
        "the thawed agent exited"
    );
}
