//! `PipelineService` called straight over gRPC, as a client without the CLI would: every field
//! is checked by the controller, each refusal `INVALID_ARGUMENT` (or `NOT_FOUND`) naming the
//! field, the problem and the limit; a run's idempotency key returns the first run's job.

use std::collections::HashMap;

use ferry_proto::v1::{
    pipeline_service_client::PipelineServiceClient, task_spec::Kind, ApplyPipelineRequest,
    GetPipelineRequest, JobSpec, ParamDecl, PipelineHistoryRequest, RunPipelineRequest,
    SetPipelinePausedRequest, ShellTask, TaskSpec,
};
use ferry_tests::{connect, Controller, ControllerOpts};
use tonic::{transport::Channel, Code};

fn spec(name: &str, params: &[(&str, &str)]) -> JobSpec {
    JobSpec {
        name: name.into(),
        params: params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        tasks: vec![TaskSpec {
            id: "t".into(),
            kind: Some(Kind::Shell(ShellTask {
                command: "true".into(),
            })),
            ..TaskSpec::default()
        }],
    }
}

fn decl(name: &str, ty: &str, default: Option<&str>, required: bool) -> ParamDecl {
    ParamDecl {
        name: name.into(),
        r#type: ty.into(),
        default: default.map(Into::into),
        required,
    }
}

fn apply(name: &str, params: Vec<ParamDecl>) -> ApplyPipelineRequest {
    ApplyPipelineRequest {
        spec: Some(spec(name, &[("plain", "x")])),
        params,
        schedule: None,
    }
}

async fn refused_apply(
    client: &mut PipelineServiceClient<Channel>,
    req: ApplyPipelineRequest,
    words: &str,
) {
    let status = client.apply_pipeline(req).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains(words),
        "should say {words:?}: {status:?}"
    );
}

fn run(name: &str, params: HashMap<String, String>, key: &str) -> RunPipelineRequest {
    RunPipelineRequest {
        name: name.into(),
        params,
        idempotency_key: key.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_field_of_a_pipeline_request_is_checked_by_the_controller() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let mut client = PipelineServiceClient::new(connect(&controller.addr()).await.unwrap());

    let mut no_spec = apply("etl", vec![]);
    no_spec.spec = None;
    refused_apply(&mut client, no_spec, "job spec is missing").await;
    refused_apply(
        &mut client,
        apply("a/b", vec![]),
        "pipeline name \"a/b\" is not a pipeline name",
    )
    .await;
    let long = "p".repeat(129);
    refused_apply(
        &mut client,
        apply(&long, vec![]),
        "is 129 bytes long; the limit is 128",
    )
    .await;
    refused_apply(
        &mut client,
        apply("etl", vec![decl("x", "float", None, false)]),
        "parameter \"x\" has type \"float\": use string, int, date, timestamp or bool",
    )
    .await;
    refused_apply(
        &mut client,
        apply("etl", vec![decl("n", "int", Some("x"), false)]),
        "parameter \"n\" default \"x\" is not an int",
    )
    .await;
    refused_apply(
        &mut client,
        apply("etl", vec![decl("1bad", "string", None, false)]),
        "parameter name \"1bad\" is not an identifier",
    )
    .await;
    refused_apply(
        &mut client,
        apply(
            "etl",
            vec![decl("d", "date", None, true), decl("d", "date", None, true)],
        ),
        "parameter \"d\" is declared twice",
    )
    .await;
    refused_apply(
        &mut client,
        apply("etl", vec![decl("plain", "string", None, false)]),
        "parameter \"plain\" is both a plain parameter and a typed one",
    )
    .await;
    let many = (0..300)
        .map(|i| decl(&format!("p{i}"), "int", None, false))
        .collect();
    refused_apply(
        &mut client,
        apply("etl", many),
        "301 parameters declared; the limit is 256",
    )
    .await;

    let applied = client
        .apply_pipeline(apply("etl", vec![decl("day", "date", None, true)]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (applied.name.as_str(), applied.version, applied.changed),
        ("etl", 1, true)
    );

    let too_many: HashMap<String, String> = (0..300)
        .map(|i| (format!("p{i}"), "1".to_string()))
        .collect();
    let status = client
        .run_pipeline(run("etl", too_many, ""))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("300 parameters given; the limit is 256"),
        "{status:?}"
    );
    let bad_name = HashMap::from([("no-dash".to_string(), "1".to_string())]);
    let status = client
        .run_pipeline(run("etl", bad_name, ""))
        .await
        .unwrap_err();
    assert!(
        status
            .message()
            .contains("parameter name \"no-dash\" is not an identifier"),
        "{status:?}"
    );
    let day = HashMap::from([("day".to_string(), "2026-11-24".to_string())]);
    let status = client
        .run_pipeline(run("etl", day.clone(), &"k".repeat(300)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("idempotency key"), "{status:?}");
    let status = client
        .pipeline_history(PipelineHistoryRequest {
            name: "etl".into(),
            limit: 10_001,
        })
        .await
        .unwrap_err();
    assert!(
        status
            .message()
            .contains("limit 10001 is above the maximum of 10000"),
        "{status:?}"
    );

    // The same key, the same run.
    let first = client
        .run_pipeline(run("etl", day.clone(), "delivery-7"))
        .await
        .unwrap()
        .into_inner();
    let again = client
        .run_pipeline(run("etl", day, "delivery-7"))
        .await
        .unwrap()
        .into_inner();
    assert!(!first.existing && again.existing, "{first:?} {again:?}");
    assert_eq!(first.job_id, again.job_id);
    let history = client
        .pipeline_history(PipelineHistoryRequest {
            name: "etl".into(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(history.runs.len(), 1, "{history:?}");

    for status in [
        client
            .get_pipeline(GetPipelineRequest {
                name: "nope".into(),
            })
            .await
            .unwrap_err(),
        client
            .set_pipeline_paused(SetPipelinePausedRequest {
                name: "nope".into(),
                paused: true,
            })
            .await
            .unwrap_err(),
    ] {
        assert_eq!(status.code(), Code::NotFound, "{status:?}");
        assert_eq!(status.message(), "pipeline \"nope\" not found");
    }
}
