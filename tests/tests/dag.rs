//! DAG order across agents and queues, label routing, and what a failed task does downstream.

use std::{path::Path, time::Duration};

use ferry_proto::v1::{AttemptRef, CompleteRequest, CompleteResponse, Outcome};
use ferry_tests::{
    job::{attempts, last_agent, state, task_state},
    job_id_of, Agent, AgentOpts, Controller, ControllerOpts, FakeAgent, TestDir,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// A shell step that logs its start and end (`NANOS start|end ID`) into `log`.
fn step(log: &Path, id: &str) -> String {
    let log = log.display();
    format!(
        r#"echo "$(date +%s%N) start {id}" >> {log}; sleep 0.5; echo "$(date +%s%N) end {id}" >> {log}"#
    )
}

/// (nanos, event, task) lines of the order log.
fn read_events(log: &Path) -> Vec<(u128, String, String)> {
    std::fs::read_to_string(log)
        .unwrap()
        .lines()
        .map(|line| {
            let mut parts = line.split_whitespace();
            let nanos = parts.next().unwrap().parse().unwrap();
            let event = parts.next().unwrap().to_owned();
            let task = parts.next().unwrap().to_owned();
            (nanos, event, task)
        })
        .collect()
}

fn at(events: &[(u128, String, String)], event: &str, task: &str) -> u128 {
    events
        .iter()
        .find(|(_, e, t)| e == event && t == task)
        .unwrap_or_else(|| panic!("no `{event} {task}` in {events:?}"))
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_runs_in_dependency_order_across_queues() {
    dag_in_order(ControllerOpts::default()).await;
}

/// The same on a controller whose services run on a multi-threaded runtime (the default is
/// one thread).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dag_runs_in_order_on_a_controller_with_several_async_threads() {
    dag_in_order(ControllerOpts::default().arg("--async-threads").arg("2")).await;
}

/// Two agents on two queues run an extract → validate, transform → load DAG in order.
async fn dag_in_order(opts: ControllerOpts) {
    let controller = Controller::start(opts).await.unwrap();
    let onprem = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-onprem").queue("onprem"),
    )
    .await
    .unwrap();
    let cloud = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-cloud").queue("cloud").max_tasks(2),
    )
    .await
    .unwrap();
    let scratch = TestDir::new("dag").unwrap();
    let log = scratch.path().join("order.log");
    let job = format!(
        r#"
name = "etl"

[[tasks]]
id = "extract"
queue = "onprem"
shell = '''{extract}'''

[[tasks]]
id = "validate"
depends_on = ["extract"]
queue = "cloud"
shell = '''{validate}'''

[[tasks]]
id = "transform"
depends_on = ["extract"]
queue = "cloud"
shell = '''{transform}'''

[[tasks]]
id = "load"
depends_on = ["validate", "transform"]
queue = "onprem"
shell = '''{load}'''
"#,
        extract = step(&log, "extract"),
        validate = step(&log, "validate"),
        transform = step(&log, "transform"),
        load = step(&log, "load"),
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");

    let events = read_events(&log);
    assert_eq!(
        events.len(),
        8,
        "each task starts and ends once: {events:?}"
    );
    for middle in ["validate", "transform"] {
        assert!(
            at(&events, "end", "extract") <= at(&events, "start", middle),
            "{middle} started before extract ended: {events:?}"
        );
        assert!(
            at(&events, "end", middle) <= at(&events, "start", "load"),
            "load started before {middle} ended: {events:?}"
        );
    }
    // validate and transform are independent and the cloud agent has two slots: they overlap.
    assert!(
        at(&events, "start", "validate") < at(&events, "end", "transform")
            && at(&events, "start", "transform") < at(&events, "end", "validate"),
        "validate and transform did not run in parallel: {events:?}"
    );

    for (task, agent) in [
        ("extract", onprem.name()),
        ("validate", cloud.name()),
        ("transform", cloud.name()),
        ("load", onprem.name()),
    ] {
        assert_eq!(task_state(&done, task), "succeeded", "{done:#}");
        let tries = attempts(&done, task);
        assert_eq!(tries.len(), 1, "{task}: {done:#}");
        assert_eq!(tries[0]["number"], 1, "{task}: {done:#}");
        assert_eq!(tries[0]["exit_code"], 0, "{task}: {done:#}");
        assert_eq!(
            last_agent(&done, task),
            agent,
            "{task} ran on the wrong agent: {done:#}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_tasks_run_only_on_agents_carrying_the_labels() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    // The unlabelled agent joins first and has room for everything: only the labels keep the
    // tasks away from it.
    let anywhere = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-anywhere").queue("etl").max_tasks(4),
    )
    .await
    .unwrap();
    let dc1 = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-dc1")
            .queue("etl")
            .label("site", "dc1")
            .max_tasks(1),
    )
    .await
    .unwrap();
    let mut job = String::from("name = \"near-the-data\"\n");
    for n in 0..4 {
        job.push_str(&format!(
            r#"
[[tasks]]
id = "extract-{n}"
queue = "etl"
labels = {{ site = "dc1" }}
shell = "true"
"#
        ));
    }
    let cli = controller.cli();
    let path = cli.write_job(&job).unwrap();
    let out = cli
        .run(["submit".as_ref(), path.as_os_str(), "--wait".as_ref()])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "submit --wait of a succeeding job: {out}");
    // With --wait, progress goes to standard error and the id stays alone on standard output.
    let id = job_id_of(&out).unwrap();
    let done = cli.show(&id).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    for n in 0..4 {
        let task = format!("extract-{n}");
        for attempt in attempts(&done, &task) {
            assert_eq!(
                attempt["agent"],
                dc1.name(),
                "{task} ran on {} without label site=dc1: {done:#}",
                anywhere.name()
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_task_skips_its_downstream_and_fails_the_job() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let job = r#"
name = "broken-etl"

[[tasks]]
id = "extract"
queue = "etl"
retry = { max_attempts = 1 }
shell = "exit 3"

[[tasks]]
id = "transform"
depends_on = ["extract"]
queue = "etl"
shell = "true"

[[tasks]]
id = "load"
depends_on = ["transform"]
queue = "etl"
shell = "true"
"#;
    let cli = controller.cli();
    let path = cli.write_job(job).unwrap();
    let out = cli
        .run(["submit".as_ref(), path.as_os_str(), "--wait".as_ref()])
        .await
        .unwrap();
    assert_eq!(out.code, 1, "submit --wait of a failing job: {out}");
    let id = job_id_of(&out).unwrap();

    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    assert_eq!(task_state(&done, "extract"), "failed", "{done:#}");
    let tries = attempts(&done, "extract");
    assert_eq!(tries.len(), 1, "{done:#}");
    assert_eq!(state(&tries[0]), "failed", "{done:#}");
    assert_eq!(tries[0]["exit_code"], 3, "{done:#}");
    for downstream in ["transform", "load"] {
        assert_eq!(task_state(&done, downstream), "skipped", "{done:#}");
        assert!(
            attempts(&done, downstream).is_empty(),
            "{downstream} ran: {done:#}"
        );
    }
}

/// Two tasks, the second released by the first, both on the fake agents' queue.
const HANDOVER: &str = r#"
name = "handover"

[[tasks]]
id = "extract"
queue = "etl"
shell = "true"

[[tasks]]
id = "load"
queue = "etl"
depends_on = ["extract"]
shell = "true"
"#;

/// A completion's answer brings the next task (released by this success, claimed in the same
/// transaction) as its one message, then ends once the outcome is recorded; an answer that
/// claims nothing brings a message naming none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_completion_hands_over_the_next_task_before_it_ends() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let fake = FakeAgent::register(controller.agent_client().await.unwrap(), "fake", "etl")
        .await
        .unwrap();
    let id = cli.submit(HANDOVER).await.unwrap();
    let extract = fake.claim_one(JOB_TIMEOUT).await.unwrap().attempt.unwrap();
    assert_eq!(extract.task_id, "extract");

    let answers = complete(&fake, extract, 1).await;
    assert_eq!(answers.len(), 1, "one message: the next task");
    let load = answers[0].assignments[0].attempt.clone().unwrap();
    assert_eq!(
        (load.job_id.as_str(), load.task_id.as_str()),
        (id.as_str(), "load")
    );
    let job = cli.show(&id).await.unwrap();
    assert_eq!(task_state(&job, "extract"), "succeeded", "{job:#}");
    assert_eq!(task_state(&job, "load"), "running", "{job:#}");

    // Nothing left to claim: a message naming none, and the job has ended when the answer
    // does.
    let answers = complete(&fake, load, 1).await;
    assert_eq!(answers.len(), 1, "{answers:?}");
    assert!(answers[0].assignments.is_empty(), "{answers:?}");
    let job = cli.show(&id).await.unwrap();
    assert_eq!(state(&job), "succeeded", "{job:#}");
}

/// An agent built when `Complete` was a unary call (one answer, taken at the call's end) still
/// reports its outcomes and gets its next task.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_calling_complete_as_a_unary_call_still_works() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let fake = FakeAgent::register(controller.agent_client().await.unwrap(), "old", "etl")
        .await
        .unwrap();
    let id = cli.submit(HANDOVER).await.unwrap();
    let extract = fake.claim_one(JOB_TIMEOUT).await.unwrap().attempt.unwrap();
    let mut unary =
        tonic::client::Grpc::new(ferry_tests::connect(&controller.addr()).await.unwrap());
    let answer = complete_unary(&mut unary, &fake, extract).await;
    let load = answer.assignments[0].attempt.clone().unwrap();
    assert_eq!(load.task_id, "load");
    let answer = complete_unary(&mut unary, &fake, load).await;
    assert!(answer.assignments.is_empty(), "{answer:?}");
    let job = cli.show(&id).await.unwrap();
    assert_eq!(state(&job), "succeeded", "{job:#}");
}

/// `attempt` succeeded, asking for `want` more.
fn succeeded(fake: &FakeAgent, attempt: AttemptRef, want: u32) -> CompleteRequest {
    CompleteRequest {
        agent: Some(fake.identity.clone()),
        attempt: Some(attempt),
        outcome: Outcome::Succeeded as i32,
        exit_code: Some(0),
        want,
        ..CompleteRequest::default()
    }
}

/// Reports `attempt` succeeded asking for one more, as a unary call: its one answer.
async fn complete_unary(
    unary: &mut tonic::client::Grpc<tonic::transport::Channel>,
    fake: &FakeAgent,
    attempt: AttemptRef,
) -> CompleteResponse {
    let req = succeeded(fake, attempt, 1);
    unary.ready().await.unwrap();
    unary
        .unary::<_, CompleteResponse, _>(
            tonic::Request::new(req),
            tonic::codegen::http::uri::PathAndQuery::from_static("/ferry.v1.AgentService/Complete"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap()
        .into_inner()
}

/// Reports `attempt` succeeded asking for `want` more; every message of the answer, read to
/// its end (an error fails the test).
async fn complete(fake: &FakeAgent, attempt: AttemptRef, want: u32) -> Vec<CompleteResponse> {
    let mut answer = fake
        .client
        .clone()
        .complete(succeeded(fake, attempt, want))
        .await
        .unwrap()
        .into_inner();
    let mut messages = Vec::new();
    while let Some(message) = answer.message().await.unwrap() {
        messages.push(message);
    }
    messages
}
