//! Watermarks through the CLI against a real controller: an incremental sql attempt's success
//! (reported by an agent speaking the protocol) sets the watermark and the extract shows in
//! `jobs show`; `watermarks list | set | reset` with tables, JSON and exit codes; the next
//! claim starts past whatever is stored; `submit --backfill` hands out its explicit range;
//! bad input is named.

use std::time::Duration;

use ferry_proto::v1::{
    AttemptRef, CompleteRequest, CompleteResponse, ExtractColumn, ExtractInfo, ExtractRange,
    Outcome,
};
use ferry_tests::{job::task, Cli, Controller, ControllerOpts, FakeAgent};

const CLAIM: Duration = Duration::from_secs(20);
const JOB: &str = "wm-etl";

fn job_file() -> String {
    format!(
        r#"name = "{JOB}"
[[tasks]]
id = "extract"
queue = "wm"
sql = {{ datasource = "orders", query = "select * from orders", format = "csv", incremental = {{ column = "id" }} }}

[[tasks]]
id = "count"
queue = "nobody"
depends_on = ["extract"]
shell = "true"
"#
    )
}

async fn succeed(agent: &FakeAgent, attempt: AttemptRef, rows: u64, watermark: Option<&str>) {
    let answer = agent
        .client
        .clone()
        .complete(CompleteRequest {
            agent: Some(agent.identity.clone()),
            attempt: Some(attempt),
            outcome: Outcome::Succeeded as i32,
            exit_code: None,
            extract: Some(ExtractInfo {
                rows,
                bytes: rows * 12,
                files: vec![],
                columns: vec![ExtractColumn {
                    name: "id".into(),
                    source_type: "INTEGER".into(),
                    file_type: "int64".into(),
                    nullable: false,
                }],
                watermark: watermark.map(str::to_owned),
                incremental_column: "id".into(),
                backfill: false,
            }),
            ..CompleteRequest::default()
        })
        .await
        .unwrap();
    recorded(answer).await;
}

/// Reads a `Complete` answer to its end: the outcome is then recorded.
async fn recorded(answer: tonic::Response<tonic::Streaming<CompleteResponse>>) {
    let mut answer = answer.into_inner();
    while let Some(next) = answer.message().await.unwrap() {
        assert!(next.assignments.is_empty(), "{next:?}");
    }
}

async fn fail(agent: &FakeAgent, attempt: AttemptRef) {
    let answer = agent
        .client
        .clone()
        .complete(CompleteRequest {
            agent: Some(agent.identity.clone()),
            attempt: Some(attempt),
            outcome: Outcome::Failed as i32,
            error: "database unreachable".into(),
            extract: Some(ExtractInfo {
                watermark: Some("999".into()),
                ..ExtractInfo::default()
            }),
            ..CompleteRequest::default()
        })
        .await
        .unwrap();
    recorded(answer).await;
}

async fn marks(cli: &Cli, job: Option<&str>) -> Vec<serde_json::Value> {
    let mut args = vec!["watermarks", "list"];
    args.extend(job);
    let doc = cli.json(&args).await.unwrap();
    doc.as_array()
        .unwrap_or_else(|| panic!("watermarks list --output json is a list: {doc:#}"))
        .clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watermarks_are_listed_set_and_reset_with_the_cli() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let agent = FakeAgent::register_with_datasources(
        controller.agent_client().await.unwrap(),
        "wm-agent",
        "wm",
        &["orders"],
    )
    .await
    .unwrap();

    // Nothing yet: an empty list, and an unknown job name is named.
    assert!(marks(&cli, None).await.is_empty());
    let unknown = cli
        .run(["watermarks", "list", "no-such-job"])
        .await
        .unwrap();
    assert_eq!(unknown.code, 3, "{unknown}");
    assert!(
        unknown.stderr.contains("not found") && unknown.stderr.contains("no-such-job"),
        "{unknown}"
    );

    // First run: from the start. A failure that reports a watermark moves nothing; the retry
    // gets the same range; its success sets the watermark.
    let first = cli.submit(&job_file()).await.unwrap();
    let a = agent.claim_one(CLAIM).await.unwrap();
    assert_eq!(a.extract_range, Some(ExtractRange::default()), "{a:?}");
    fail(&agent, a.attempt.clone().unwrap()).await;
    assert!(marks(&cli, Some(JOB)).await.is_empty());
    let a = agent.claim_one(CLAIM).await.unwrap();
    assert_eq!(a.attempt.as_ref().unwrap().attempt, 2);
    assert_eq!(a.extract_range, Some(ExtractRange::default()), "{a:?}");
    succeed(&agent, a.attempt.clone().unwrap(), 3, Some("100")).await;

    let listed = marks(&cli, Some(JOB)).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let m = &listed[0];
    assert_eq!(
        (&m["job_name"], &m["task"], &m["column"], &m["value"]),
        (&JOB.into(), &"extract".into(), &"id".into(), &"100".into()),
        "{m:#}"
    );
    assert_eq!(m["job_id"], first.as_str(), "{m:#}");
    assert_eq!(m["attempt"], 2, "{m:#}");
    assert!(m["updated_at"].is_string(), "{m:#}");
    assert_eq!(marks(&cli, None).await, listed);
    let table = cli.run(["watermarks", "list"]).await.unwrap();
    assert_eq!(table.code, 0, "{table}");
    let header = table.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("JOB") && header.contains("VALUE"),
        "{table}"
    );
    assert!(
        table.stdout.contains(&format!("{first}#2")) && table.stdout.contains("100"),
        "{table}"
    );

    // The extract shows on the task.
    let shown = cli.show(&first).await.unwrap();
    let extract = &task(&shown, "extract")["extract"];
    assert_eq!(extract["rows"], 3, "{shown:#}");
    assert_eq!(extract["watermark"], "100", "{shown:#}");
    assert_eq!(extract["columns"][0]["name"], "id", "{shown:#}");
    assert!(task(&shown, "count").get("extract").is_none(), "{shown:#}");
    let table = cli.run(["jobs", "show", &first]).await.unwrap();
    assert!(
        table.stdout.contains("WATERMARK") && table.stdout.contains("id INTEGER→int64"),
        "{table}"
    );
    cli.run(["jobs", "cancel", &first]).await.unwrap();

    // The next run starts past it.
    let second = cli.submit(&job_file()).await.unwrap();
    let a = agent.claim_one(CLAIM).await.unwrap();
    assert_eq!(a.attempt.as_ref().unwrap().job_id, second);
    assert_eq!(
        a.extract_range.as_ref().unwrap().after.as_deref(),
        Some("100")
    );
    succeed(&agent, a.attempt.clone().unwrap(), 0, None).await;
    assert_eq!(
        marks(&cli, Some(JOB)).await[0]["value"],
        "100",
        "no rows, no move"
    );
    cli.run(["jobs", "cancel", &second]).await.unwrap();

    // Set by hand.
    let set = cli
        .json(["watermarks", "set", JOB, "extract", "50"])
        .await
        .unwrap();
    assert_eq!(set["value"], "50", "{set:#}");
    assert_eq!(set["job_id"], serde_json::Value::Null, "{set:#}");
    let table = cli
        .run(["watermarks", "set", JOB, "extract", "60"])
        .await
        .unwrap();
    assert_eq!(table.code, 0, "{table}");
    assert!(table.stdout.contains("set"), "{table}");
    let listed = cli.run(["watermarks", "list", JOB]).await.unwrap();
    assert!(
        listed.stdout.contains("by hand") && listed.stdout.contains("60"),
        "{listed}"
    );
    let third = cli.submit(&job_file()).await.unwrap();
    let a = agent.claim_one(CLAIM).await.unwrap();
    assert_eq!(a.attempt.as_ref().unwrap().job_id, third);
    assert_eq!(
        a.extract_range.as_ref().unwrap().after.as_deref(),
        Some("60")
    );
    cli.run(["jobs", "cancel", &third]).await.unwrap();

    // Bad input is named.
    let not_task = cli
        .run(["watermarks", "set", JOB, "nope", "1"])
        .await
        .unwrap();
    assert_eq!(not_task.code, 3, "{not_task}");
    assert!(
        not_task.stderr.contains("\"nope\"")
            && not_task.stderr.contains(JOB)
            && not_task.stderr.contains("extract"),
        "{not_task}"
    );
    let shell = cli
        .run(["watermarks", "set", JOB, "count", "1"])
        .await
        .unwrap();
    assert_eq!(shell.code, 2, "{shell}");
    assert!(
        shell.stderr.contains("not an incremental sql task"),
        "{shell}"
    );
    let empty = cli
        .run(["watermarks", "set", JOB, "extract", ""])
        .await
        .unwrap();
    assert_eq!(empty.code, 2, "{empty}");
    let no_job = cli
        .run(["watermarks", "reset", "no-such-job", "extract"])
        .await
        .unwrap();
    assert_eq!(no_job.code, 3, "{no_job}");
    assert!(no_job.stderr.contains("no-such-job"), "{no_job}");
    let usage = cli.run(["watermarks", "set", JOB]).await.unwrap();
    assert_eq!(usage.code, 2, "{usage}");

    // Reset: the next run extracts from the start.
    let reset = cli
        .run(["watermarks", "reset", JOB, "extract"])
        .await
        .unwrap();
    assert_eq!(reset.code, 0, "{reset}");
    assert!(reset.stdout.contains("from the start"), "{reset}");
    let again = cli
        .json(["watermarks", "reset", JOB, "extract"])
        .await
        .unwrap();
    assert_eq!(again["existed"], false, "{again:#}");
    assert!(marks(&cli, Some(JOB)).await.is_empty());
    let fourth = cli.submit(&job_file()).await.unwrap();
    let a = agent.claim_one(CLAIM).await.unwrap();
    assert_eq!(a.attempt.as_ref().unwrap().job_id, fourth);
    assert_eq!(a.extract_range, Some(ExtractRange::default()));
    cli.run(["jobs", "cancel", &fourth]).await.unwrap();

    // A backfill hands out its range, and its success does not move the watermark.
    cli.run(["watermarks", "set", JOB, "extract", "70"])
        .await
        .unwrap();
    let path = cli.write_job(&job_file()).unwrap();
    let path = path.to_str().unwrap();
    let out = cli
        .run(["submit", path, "--backfill", "extract=10..30"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    let a = agent.claim_one(CLAIM).await.unwrap();
    assert_eq!(
        a.extract_range,
        Some(ExtractRange {
            after: Some("10".into()),
            until: Some("30".into()),
            backfill: true,
        })
    );
    succeed(&agent, a.attempt.clone().unwrap(), 20, Some("30")).await;
    assert_eq!(marks(&cli, Some(JOB)).await[0]["value"], "70");
    for (flag, named) in [("count=..5", "\"count\""), ("missing=1..5", "\"missing\"")] {
        let out = cli.run(["submit", path, "--backfill", flag]).await.unwrap();
        assert_eq!(out.code, 2, "{out}");
        assert!(out.stderr.contains(named), "{flag}: {out}");
        assert_eq!(out.stdout, "", "{out}");
    }
    let out = cli
        .run(["submit", path, "--backfill", "extract=5"])
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("--backfill"), "{out}");
}
