//! Draining an agent (SIGTERM, or `ferry agents drain`): it takes no new work, hands its
//! running tasks back after `--drain-timeout`, and exits 0; the tasks restart elsewhere at once
//! rather than after the agent timeout.

use std::{path::PathBuf, time::Duration};

use ferry_proto::v1::GetJobRequest;
use ferry_tests::{
    eventually,
    job::{attempts, state, task_state},
    now_ms,
    procs::{pid_alive, read_pids},
    Agent, AgentOpts, Cli, Controller, ControllerOpts, TestDir,
};
use serde_json::Value;

/// Far longer than the drain, so that a hand-back cannot be mistaken for a death.
const AGENT_TIMEOUT: Duration = Duration::from_secs(8);
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

struct Setup {
    controller: Controller,
    cli: Cli,
    leaving: Agent,
    staying: Agent,
    job: String,
    pids: PathBuf,
    flag: PathBuf,
    _scratch: TestDir,
}

/// A job whose one task runs on `leaving` (the only agent when it starts) and waits for a flag
/// file; then `staying` joins.
async fn setup() -> Setup {
    let controller = Controller::start(ControllerOpts::default().agent_timeout(AGENT_TIMEOUT))
        .await
        .unwrap();
    let leaving = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-leaving")
            .queue("etl")
            .drain_timeout(DRAIN_TIMEOUT),
    )
    .await
    .unwrap();
    let scratch = TestDir::new("drain").unwrap();
    let pids = scratch.path().join("pids");
    let flag = scratch.path().join("flag");
    // No retry policy: handing an attempt back is not a failure and uses up no attempt.
    let job = format!(
        r#"
name = "handover"

[[tasks]]
id = "slow"
queue = "etl"
shell = '''
echo $$ >> {pids}
i=0
while [ ! -f {flag} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -f {flag} ]
'''
"#,
        pids = pids.display(),
        flag = flag.display()
    );
    let cli = controller.cli();
    let job = cli.submit(&job).await.unwrap();
    eventually(
        "the task to run on the leaving agent",
        Duration::from_secs(20),
        || async {
            let doc = cli.show(&job).await?;
            let running = attempts(&doc, "slow")
                .iter()
                .any(|a| a["number"] == 1 && a["state"] == "running");
            let started = read_pids(&pids).is_ok_and(|p| !p.is_empty());
            Ok((running && started).then_some(()))
        },
    )
    .await
    .unwrap();
    let staying = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-staying").queue("etl"),
    )
    .await
    .unwrap();
    Setup {
        controller,
        cli,
        leaving,
        staying,
        job,
        pids,
        flag,
        _scratch: scratch,
    }
}

/// Waits for attempt 2 of the task to run on the staying agent; returns its start (ms).
async fn second_attempt_start(s: &Setup) -> i64 {
    let jobs = s.controller.job_client().await.unwrap();
    let staying = s.staying.name().to_owned();
    eventually(
        "attempt 2 to start on the staying agent",
        Duration::from_secs(20),
        || {
            let mut jobs = jobs.clone();
            let (job, staying) = (s.job.clone(), staying.clone());
            async move {
                let job = jobs
                    .get_job(GetJobRequest { job_id: job })
                    .await?
                    .into_inner();
                let task = job
                    .tasks
                    .iter()
                    .find(|t| t.id == "slow")
                    .expect("task slow");
                Ok(task.attempts.iter().find(|a| a.number == 2).map(|a| {
                    assert_eq!(a.agent, staying, "attempt 2 ran elsewhere: {job:?}");
                    a.started_at_ms
                }))
            }
        },
    )
    .await
    .unwrap()
}

/// Lets the task end, then checks the hand-over in `jobs show`.
async fn finish(s: &Setup) -> Value {
    std::fs::write(&s.flag, "go").unwrap();
    let done = s
        .cli
        .wait_job(&s.job, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(task_state(&done, "slow"), "succeeded", "{done:#}");
    let tries = attempts(&done, "slow");
    assert_eq!(tries.len(), 2, "{done:#}");
    assert_eq!(tries[0]["agent"], s.leaving.name(), "{done:#}");
    assert_ne!(state(&tries[0]), "succeeded", "{done:#}");
    assert_ne!(state(&tries[0]), "running", "{done:#}");
    assert_eq!(tries[1]["agent"], s.staying.name(), "{done:#}");
    assert_eq!(state(&tries[1]), "succeeded", "{done:#}");
    done
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_running_tasks_back_after_the_drain_timeout() {
    let mut s = setup().await;
    let sigterm_at = now_ms();
    s.leaving.sigterm().unwrap();

    let status = s.leaving.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "a drained agent exits 0, got {status}");
    let first_pid = read_pids(&s.pids).unwrap()[0];
    assert!(
        !pid_alive(first_pid),
        "the handed-back run (pid {first_pid}) still runs"
    );

    let started = second_attempt_start(&s).await;
    let budget = DRAIN_TIMEOUT.as_millis() as i64 + 1500;
    assert!(
        started - sigterm_at <= budget,
        "attempt 2 started {} ms after SIGTERM, more than drain timeout + 1.5 s ({budget} ms); \
         the agent timeout is {AGENT_TIMEOUT:?}",
        started - sigterm_at
    );
    finish(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_drain_does_the_same_remotely() {
    let mut s = setup().await;
    let drain_at = now_ms();
    let out = s
        .cli
        .run(["agents", "drain", s.leaving.name()])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "agents drain: {out}");

    // Draining, or already gone: either way it takes no more work.
    let cli = &s.cli;
    let name = s.leaving.name().to_owned();
    let mut seen = Vec::new();
    loop {
        let listed = cli.agent(&name).await.unwrap();
        let listed_state = listed.as_ref().map(|a| state(a).to_owned());
        seen.push(listed_state.clone());
        if listed_state.as_deref() == Some("draining") || s.leaving.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            now_ms() - drain_at < 10_000,
            "agent neither draining nor exited 10 s after `agents drain`; seen {seen:?}"
        );
        tokio::time::sleep(ferry_tests::POLL_INTERVAL).await;
    }

    let status = s.leaving.wait_exit(Duration::from_secs(15)).await.unwrap();
    assert!(status.success(), "a drained agent exits 0, got {status}");
    let started = second_attempt_start(&s).await;
    // The order travels on a heartbeat or poll answer: allow one more heartbeat interval.
    let budget = DRAIN_TIMEOUT.as_millis() as i64 + 2000;
    assert!(
        started - drain_at <= budget,
        "attempt 2 started {} ms after `agents drain`, more than {budget} ms",
        started - drain_at
    );
    finish(&s).await;

    let listed = s.cli.agent(&name).await.unwrap();
    if let Some(agent) = listed {
        assert_ne!(
            state(&agent),
            "ready",
            "a drained agent is not ready: {agent:#}"
        );
    }
    let bad = s
        .cli
        .run(["agents", "drain", "no-such-agent"])
        .await
        .unwrap();
    assert_ne!(bad.code, 0, "draining an unknown agent: {bad}");
}
