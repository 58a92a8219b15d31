//! Three controllers on one PostgreSQL database serve one workload: agents spread over them,
//! DAG jobs submitted through different controllers all run once each, and what one
//! controller received is downloaded through another; a submit on one controller wakes a poll
//! parked on another.

use std::time::Duration;

use ferry_proto::v1::GetJobRequest;
use ferry_tests::{
    job::{attempts, state, task_state},
    job_client, AgentOpts, Cluster, ControllerOpts, TestDir,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(90);
const TASKS: [&str; 3] = ["extract", "transform", "load"];

/// extract → transform → load, each task's output the next one's input; `load` ends with the
/// job's own number, so that each job's result can be told from the others'.
fn etl_job(n: usize) -> String {
    format!(
        r#"
name = "spread-{n}"

[params]
n = "{n}"

[[tasks]]
id = "extract"
queue = "etl"
outputs = ["raw.csv"]
shell = 'printf "id,name\n$FERRY_PARAM_N,row-$FERRY_PARAM_N\n" > raw.csv'

[[tasks]]
id = "transform"
depends_on = ["extract"]
queue = "etl"
outputs = ["clean.csv"]
shell = 'tr a-z A-Z < "$FERRY_INPUTS/extract/raw.csv" > clean.csv'

[[tasks]]
id = "load"
depends_on = ["transform"]
queue = "etl"
outputs = ["loaded.txt"]
shell = '(cat "$FERRY_INPUTS/transform/clean.csv"; echo "loaded $FERRY_PARAM_N") > loaded.txt'
"#
    )
}

/// What `load` of job `n` publishes.
fn loaded(n: usize) -> String {
    format!("ID,NAME\n{n},ROW-{n}\nloaded {n}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_spread_over_three_controllers_run_each_task_once() {
    let cluster = Cluster::start(
        3,
        ControllerOpts::default().agent_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    // Each agent lists the controllers in another order; one is connected to each.
    let agents = cluster
        .agent_per_controller(|k| AgentOpts::new(format!("agent-{k}")).queue("etl"))
        .await
        .unwrap();

    // Job n goes in through controller n % 3.
    let mut ids = Vec::new();
    for n in 0..6 {
        let first = n % 3;
        let cli = cluster.cli_via(&[first, (first + 1) % 3, (first + 2) % 3]);
        ids.push((n, cli.submit(&etl_job(n)).await.unwrap()));
    }

    let cli = cluster.cli();
    for (n, id) in &ids {
        let done = cli.wait_job(id, JOB_TIMEOUT).await.unwrap();
        assert_eq!(state(&done), "succeeded", "job {n}: {done:#}");
        for task in TASKS {
            assert_eq!(task_state(&done, task), "succeeded", "job {n}: {done:#}");
            let tries = attempts(&done, task);
            assert_eq!(tries.len(), 1, "job {n} {task} ran once: {done:#}");
            assert_eq!(state(&tries[0]), "succeeded", "job {n} {task}: {done:#}");
        }
    }

    // Every controller lists every job: one record.
    for i in 0..3 {
        let listed = cluster.cli_via(&[i]).jobs().await.unwrap();
        for (n, id) in &ids {
            assert!(
                listed.iter().any(|j| j["id"] == id.as_str()),
                "controller {i} does not list job {n} ({id}): {listed:#?}"
            );
        }
    }

    // Which controller each agent sent its uploads to: the one it is connected to, where it
    // has been from the start.
    let mut uploaded_to = std::collections::BTreeMap::new();
    for (i, agent) in agents.iter().enumerate() {
        let at = cluster
            .connected_controller(agent, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(at, i, "{} moved to another controller", agent.name());
        uploaded_to.insert(agent.name().to_owned(), at);
    }
    let scratch = TestDir::new("spread-results").unwrap();
    for (n, id) in &ids {
        let done = cli.show(id).await.unwrap();
        let agent = attempts(&done, "load")[0]["agent"]
            .as_str()
            .unwrap()
            .to_owned();
        let other = (uploaded_to[&agent] + 1) % 3;
        let dir = scratch.path().join(format!("job-{n}"));
        let out = cluster
            .cli_via(&[other])
            .run([
                "results",
                "get",
                id,
                "load",
                "-o",
                &dir.display().to_string(),
            ])
            .await
            .unwrap();
        assert_eq!(
            out.code, 0,
            "job {n}: results get through controller {other}, not {} that {agent} uploaded \
             to: {out}",
            uploaded_to[&agent]
        );
        let got = std::fs::read_to_string(dir.join("loaded.txt")).unwrap();
        assert_eq!(
            got,
            loaded(*n),
            "job {n}'s result through controller {other}"
        );
    }
}

/// How long after its submit the job's task may start on an agent whose poll is parked on
/// another controller (a poll that is not woken waits 20 s).
const WAKE_BOUND_MS: i64 = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_on_one_controller_wakes_a_poll_parked_on_another() {
    let cluster = Cluster::start(2, ControllerOpts::default()).await.unwrap();
    // Knows only controller 1; its poll parks there.
    let agent = cluster
        .agent(&[1], AgentOpts::new("idle-on-b").queue("etl"))
        .await
        .unwrap();
    let submit_cli = cluster.cli_via(&[0]);
    let mut record = job_client(&cluster.addr(0)).await.unwrap();
    let job = r#"
name = "wake-up"

[[tasks]]
id = "only"
queue = "etl"
shell = "true"
"#;
    // Several rounds: each parks a fresh poll on controller 1 (the agent polls again after
    // each task).
    for round in 0..3 {
        let id = submit_cli.submit(job).await.unwrap();
        let done = cluster
            .cli_via(&[1])
            .wait_job(&id, Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(state(&done), "succeeded", "round {round}: {done:#}");
        let job = record
            .get_job(GetJobRequest { job_id: id.clone() })
            .await
            .unwrap()
            .into_inner();
        let attempt = &job.tasks[0].attempts[0];
        assert_eq!(attempt.agent, agent.name(), "round {round}: {job:#?}");
        let waited = attempt.started_at_ms - job.created_at_ms;
        eprintln!("round {round}: started {waited} ms after the submit");
        assert!(
            waited <= WAKE_BOUND_MS,
            "round {round}: the task started {waited} ms after its submit on controller 0; a \
             parked poll on controller 1 should be woken at once: {job:#?}"
        );
    }
}
