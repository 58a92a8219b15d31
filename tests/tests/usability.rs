//! Mistakes a user makes, caught before anything is queued, each with one message that names
//! the problem and what to do (issue 19, items 3 and 9), asserted on the real CLI's words and,
//! for the same request without a CLI, on the controller's.

use ferry_proto::v1::{
    self as pb, task_spec::Kind, SetWatermarkRequest, SqlTask, SubmitJobRequest, TaskSpec,
};
use ferry_tests::{job_client, Controller, ControllerOpts};
use tonic::Code;

const EXTRACT: &str = "name = \"etl\"\n\
[params]\n\
day = \"2026-12-07\"\n\
[[tasks]]\n\
id = \"extract\"\n\
queue = \"nobody\"\n\
[tasks.sql]\n\
datasource = \"sales\"\n\
query = \"select * from s where d = :day and r = :region\"\n";

#[tokio::test]
async fn a_query_parameter_the_job_lacks_is_refused_by_the_cli_and_the_controller() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let path = cli.write_job(EXTRACT).unwrap();
    let out = cli.run(["submit", path.to_str().unwrap()]).await.unwrap();
    assert_eq!(out.code, 2, "{out}");
    let place = format!("{}:9:49:", path.display());
    assert!(
        out.stderr.contains(&format!(
            "{place} the query of task \"extract\" uses :region, which is not a parameter of \
             the job; declare it in [params] (or pass --param region=VALUE), or fix the name"
        )),
        "{out}"
    );
    // Declared by --param with --allow-extra-params, it is a parameter the query may use.
    let out = cli
        .run([
            "submit",
            path.to_str().unwrap(),
            "--param",
            "region=eu",
            "--allow-extra-params",
        ])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("warning: --param region: job file")
            && out.stderr.contains("declares no parameter \"region\""),
        "{out}"
    );

    // The same job without a CLI.
    let request = SubmitJobRequest {
        spec: Some(pb::JobSpec {
            name: "etl".into(),
            params: [("day".to_string(), "2026-12-07".to_string())].into(),
            tasks: vec![TaskSpec {
                id: "extract".into(),
                queue: "nobody".into(),
                kind: Some(Kind::Sql(SqlTask {
                    datasource: "sales".into(),
                    query: "select * from s where d = :day and r = :region".into(),
                    format: "csv".into(),
                    ..SqlTask::default()
                })),
                ..TaskSpec::default()
            }],
        }),
        ..SubmitJobRequest::default()
    };
    let mut client = job_client(&controller.addr()).await.unwrap();
    let status = client.submit_job(request).await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("the query of task \"extract\" uses :region, which is not a parameter"),
        "{status:?}"
    );
}

#[tokio::test]
async fn a_param_the_job_does_not_declare_is_refused_naming_the_declared_ones() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let job = EXTRACT.replace(":region", "'eu'");
    let path = cli.write_job(&job).unwrap();
    let out = cli
        .run([
            "submit",
            path.to_str().unwrap(),
            "--param",
            "dya=2026-12-08",
        ])
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr
            .contains("unknown parameter \"dya\": it declares day")
            && out.stderr.contains("or pass --allow-extra-params"),
        "{out}"
    );
    assert!(cli.jobs().await.unwrap().is_empty(), "nothing was queued");
}

#[tokio::test]
async fn a_watermark_of_the_wrong_type_is_refused_by_the_cli_and_the_controller() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    // An incremental extract no agent runs (queue nobody): its watermark is set by hand.
    let job = EXTRACT.replace(" and r = :region", "")
        + "[tasks.sql.incremental]\ncolumn = \"updated_at\"\n";
    cli.submit(&job).await.unwrap();
    let set = |value: &'static str| {
        let cli = &cli;
        async move {
            cli.run(["watermarks", "set", "etl", "extract", value])
                .await
                .unwrap()
        }
    };
    let out = set("2026-12-07 10:00:00+00").await;
    assert_eq!(out.code, 0, "{out}");
    let out = set("yesterday").await;
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains(
            "error: watermark \"yesterday\" does not look like the stored one of column"
        ) && out
            .stderr
            .contains("give a timestamp such as 2026-12-07 10:00:00+00, or `ferry watermarks reset etl extract` first"),
        "{out}"
    );
    assert_eq!(set("2026-12-08").await.code, 0);
    let mut client = job_client(&controller.addr()).await.unwrap();
    let status = client
        .set_watermark(SetWatermarkRequest {
            job_name: "etl".into(),
            task_id: "extract".into(),
            value: "42x".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status
            .message()
            .contains("watermark \"42x\" does not look like the stored one"),
        "{status:?}"
    );
}

#[tokio::test]
async fn an_unknown_format_is_one_error() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let job =
        EXTRACT.replace(":region", "'eu'") + "format = \"parket\"\ncompression = \"snappy\"\n";
    let path = cli.write_job(&job).unwrap();
    let out = cli.run(["submit", path.to_str().unwrap()]).await.unwrap();
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("(1 problem)"), "{out}");
    assert!(
        out.stderr
            .contains("unknown sql.format \"parket\" in task \"extract\"; use csv, jsonl, parquet"),
        "{out}"
    );
}

#[tokio::test]
async fn byte_sizes_take_units_and_a_bad_one_is_named_as_its_flag() {
    let controller = Controller::start(ControllerOpts::default().arg("--log-limit").arg("1MiB"))
        .await
        .unwrap();
    drop(controller);
    let bin = ferry_tests::bin_path(ferry_tests::CONTROLLER_BIN);
    let out = std::process::Command::new(&bin)
        .args(["--log-limit", "1x"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with(
            "error: invalid value '1x' for '--log-limit <BYTES>': bad size \"1x\"; use a number \
             of bytes or e.g. 500MiB, 10GiB"
        ),
        "{stderr}"
    );
    // The same mistake in the environment is named as its variable's flag too.
    let out = std::process::Command::new(&bin)
        .env("FERRY_MAX_OUTPUT_BYTES", "lots")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("for '--max-output-bytes <BYTES>'"),
        "{stderr}"
    );
}

/// The agent's bad flag values are named as their flags, from the command line or from their
/// FERRY_* variable, before it connects anywhere (issue 19, item 9).
#[test]
fn the_agents_bad_flag_values_are_named_as_their_flags() {
    let bin = ferry_tests::bin_path(ferry_tests::AGENT_BIN);
    for (args, env, said) in [
        (
            ["--max-tasks", "x"].as_slice(),
            None,
            "error: invalid value 'x' for '--max-tasks <N>'",
        ),
        (
            &["--drain-timeout", "soon"],
            None,
            "error: invalid value 'soon' for '--drain-timeout <DURATION>': bad duration \"soon\"",
        ),
        (
            &["--max-output-bytes", "1x"],
            None,
            "error: invalid value '1x' for '--max-output-bytes <BYTES>': bad size \"1x\"",
        ),
        (
            &[],
            Some(("FERRY_MAX_TASKS", "0")),
            "error: invalid value '0' for '--max-tasks <N>'",
        ),
    ] {
        let mut cmd = std::process::Command::new(&bin);
        cmd.args(args).env_remove("FERRY_MAX_TASKS");
        if let Some((key, value)) = env {
            cmd.env(key, value);
        }
        let out = cmd.output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?} {env:?}: {stderr}");
        assert!(stderr.starts_with(said), "{args:?} {env:?}: {stderr}");
    }
}
