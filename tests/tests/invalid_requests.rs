//! Requests no CLI would send, over raw gRPC: the controller refuses each with
//! `INVALID_ARGUMENT` naming the field and its limit, accepts nothing, and keeps serving.

use ferry_proto::v1::{
    self as pb, task_spec::Kind, AgentIdentity, GetJobRequest, ListJobsRequest, PollRequest,
    RegisterRequest, RetryPolicy, ShellTask, SubmitJobRequest, TaskSpec,
};
use ferry_tests::{agent_client, job_client, Controller, ControllerOpts};
use tonic::Code;

fn shell(id: &str, command: &str) -> TaskSpec {
    TaskSpec {
        id: id.into(),
        queue: "nobody".into(),
        kind: Some(Kind::Shell(ShellTask {
            command: command.into(),
        })),
        ..TaskSpec::default()
    }
}

fn submit(name: &str, tasks: Vec<TaskSpec>) -> SubmitJobRequest {
    SubmitJobRequest {
        spec: Some(pb::JobSpec {
            name: name.into(),
            params: Default::default(),
            tasks,
        }),
        ..SubmitJobRequest::default()
    }
}

/// Bad jobs, each with the words its refusal must hold.
fn bad_jobs() -> Vec<(&'static str, SubmitJobRequest, &'static str)> {
    let mut dup = shell("b", "true");
    dup.depends_on = vec!["a".into(), "a".into()];
    let mut timeout = shell("a", "true");
    timeout.timeout_ms = 9_467_280_000_000_000_000; // 300000000y
    let mut delay = shell("a", "true");
    delay.retry = Some(RetryPolicy {
        max_attempts: 3,
        initial_delay_ms: Some(9_467_280_000_000_000_000),
        max_delay_ms: None,
    });
    let mut attempts = shell("a", "true");
    attempts.retry = Some(RetryPolicy {
        max_attempts: 1_000,
        ..RetryPolicy::default()
    });
    let mut params = submit("params", vec![shell("a", "true")]);
    if let Some(spec) = params.spec.as_mut() {
        spec.params.insert("not-an-id".into(), "x".into());
    }
    let many: Vec<_> = (0..10_001)
        .map(|i| shell(&format!("t{i}"), "true"))
        .collect();
    vec![
        (
            "duplicate depends_on",
            submit("dup", vec![shell("a", "true"), dup]),
            "task \"b\" depends_on names \"a\" twice",
        ),
        (
            "timeout of 300000000y",
            submit("timeout", vec![timeout]),
            "task \"a\" timeout 109575000000d is above the limit of 7d",
        ),
        (
            "retry delay of 300000000y",
            submit("delay", vec![delay]),
            "retry initial_delay 109575000000d is above the limit of 1d",
        ),
        (
            "max_attempts 1000",
            submit("attempts", vec![attempts]),
            "retry max_attempts 1000 is above the limit of 100",
        ),
        (
            "empty command",
            submit("empty", vec![shell("a", "  ")]),
            "task \"a\" shell command must not be empty",
        ),
        (
            "NUL in a command",
            submit("nul", vec![shell("a", "echo \0")]),
            "task \"a\" shell command holds a NUL byte",
        ),
        (
            "128 KiB command",
            submit("big", vec![shell("a", &"x".repeat(128 << 10))]),
            "task \"a\" shell command is 131072 bytes long; the limit is 65536",
        ),
        (
            "1 MB name",
            submit(&"n".repeat(1 << 20), vec![shell("a", "true")]),
            "job name is 1048576 bytes long; the limit is 256",
        ),
        (
            "1 MB task id",
            submit("id", vec![shell(&"a".repeat(1 << 20), "true")]),
            "is 1048576 bytes long; the limit is 128",
        ),
        (
            "parameter name not an identifier",
            params,
            "param name \"not-an-id\" is not an identifier",
        ),
        (
            "10,001 tasks",
            submit("many", many),
            "tasks 10001 are given; the limit is 10000",
        ),
    ]
}

async fn job_count(
    jobs: &mut pb::job_service_client::JobServiceClient<tonic::transport::Channel>,
) -> usize {
    jobs.list_jobs(ListJobsRequest {
        limit: 10_000,
        ..ListJobsRequest::default()
    })
    .await
    .unwrap()
    .into_inner()
    .jobs
    .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_a_limit_are_refused_naming_it_and_nothing_is_accepted() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let mut jobs = job_client(&controller.addr()).await.unwrap();
    jobs.submit_job(submit("baseline", vec![shell("a", "true")]))
        .await
        .unwrap();
    assert_eq!(job_count(&mut jobs).await, 1);

    let mut failures = Vec::new();
    for (what, request, words) in bad_jobs() {
        match jobs.submit_job(request).await {
            Ok(_) => failures.push(format!("{what}: accepted")),
            Err(s) if s.code() != Code::InvalidArgument || !s.message().contains(words) => {
                failures.push(format!("{what}: {:?} {:.300}", s.code(), s.message()))
            }
            Err(_) => {}
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(job_count(&mut jobs).await, 1, "a refused job was stored");

    let refused = jobs
        .list_jobs(ListJobsRequest {
            limit: 10_001,
            ..ListJobsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert_eq!(
        refused.message(),
        "limit 10001 is above the maximum of 10000"
    );
    let refused = jobs
        .get_job(GetJobRequest {
            job_id: "j".repeat(1 << 20),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(refused.message().contains("limit is 128"), "{refused:?}");

    // Agents: a name with terminal escapes, too many slots, oversized log chunks.
    let mut agents = agent_client(&controller.addr()).await.unwrap();
    let register = |name: &str, max_tasks| RegisterRequest {
        name: name.into(),
        queues: vec!["clamp".into()],
        max_tasks,
        hostname: "host".into(),
        version: "0".into(),
        ..RegisterRequest::default()
    };
    let refused = agents
        .register(register("evil\u{1b}[2J", 1))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::InvalidArgument);
    assert!(
        refused.message().starts_with("agent name holds"),
        "{refused:?}"
    );
    let refused = agents.register(register("big", 5_000)).await.unwrap_err();
    assert_eq!(
        refused.message(),
        "agent max_tasks 5000 is above the limit of 1024"
    );
    let session = agents
        .register(register("one-slot", 1))
        .await
        .unwrap()
        .into_inner()
        .session;
    let identity = AgentIdentity {
        name: "one-slot".into(),
        session,
    };
    let poll = |free_slots| PollRequest {
        agent: Some(identity.clone()),
        free_slots,
        ..PollRequest::default()
    };
    let refused = agents.poll(poll(5_000)).await.unwrap_err();
    assert_eq!(
        refused.message(),
        "free_slots 5000 is above the limit of 1024"
    );

    // Free slots past the registered max_tasks are cut to it: one task of three.
    let mut three: Vec<_> = (0..3).map(|i| shell(&format!("t{i}"), "true")).collect();
    for t in &mut three {
        t.queue = "clamp".into();
    }
    jobs.submit_job(submit("clamp", three)).await.unwrap();
    let answer = agents.poll(poll(100)).await.unwrap().into_inner();
    assert_eq!(answer.assignments.len(), 1, "{answer:?}");
    let attempt = answer.assignments[0].attempt.clone();
    let refused = agents
        .append_logs(pb::AppendLogsRequest {
            agent: Some(identity.clone()),
            attempt,
            chunks: vec![pb::LogChunk {
                data: vec![b'x'; 2 << 20],
                ..pb::LogChunk::default()
            }],
            ..pb::AppendLogsRequest::default()
        })
        .await
        .unwrap_err();
    assert_eq!(
        refused.message(),
        "log chunk is 2097152 bytes long; the limit is 1048576"
    );

    // Still serving.
    assert_eq!(job_count(&mut jobs).await, 2);
}
