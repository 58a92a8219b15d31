//! Pipelines (issue 17, item 1): a job file applied as a named, versioned template (once per
//! content), run with typed parameters checked by the controller, its runs completed by a real
//! agent and listed by `history` and `jobs list --pipeline`, paused and resumed, kept across a
//! controller `kill -9`, deleted with its runs kept. On SQLite, and on PostgreSQL with
//! `FERRY_TEST_STORE=postgres`.

use std::path::Path;
use std::time::Duration;

use ferry_tests::{
    job::state, Agent, AgentOpts, Cli, CliOutput, Controller, ControllerOpts, TestDir,
};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

/// The pipeline file: a plain parameter, a required date and an int with a default; its task
/// writes the values it got to `out`.
fn pipeline_file(out: &Path, count_default: u32) -> String {
    format!(
        r#"
name = "nightly-etl"

[params]
region = "eu"
day = {{ type = "date", required = true }}
count = {{ type = "int", default = {count_default} }}

[[tasks]]
id = "extract"
queue = "etl"
shell = '''printf '%s %s %s' "$FERRY_PARAM_DAY" "$FERRY_PARAM_COUNT" "$FERRY_PARAM_REGION" > {out}'''
"#,
        out = out.display()
    )
}

async fn ok(cli: &Cli, args: &[&str]) -> CliOutput {
    let out = cli.run(args).await.unwrap();
    assert_eq!(out.code, 0, "ferry {args:?}: {out}");
    out
}

/// Runs `args`, which must fail with exit code `code` and name `words` on standard error.
async fn refused(cli: &Cli, args: &[&str], code: i32, words: &str) {
    let out = cli.run(args).await.unwrap();
    assert_eq!(out.code, code, "ferry {args:?}: {out}");
    assert!(
        out.stderr.contains(words),
        "ferry {args:?} should say {words:?}: {out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

/// The job id `pipelines run` printed: its one line.
fn job_id(out: &CliOutput) -> String {
    let id = out.stdout.trim_end_matches('\n');
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "run prints the job id alone: {out}"
    );
    id.to_owned()
}

fn ids(list: &Value, key: &str) -> Vec<String> {
    list.as_array()
        .unwrap_or_else(|| panic!("a list: {list:#}"))
        .iter()
        .map(|r| r[key].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_is_versioned_run_with_typed_parameters_and_survives_a_kill9() {
    let opts = ControllerOpts::default().agent_timeout(Duration::from_secs(30));
    let mut controller = Controller::start(opts).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("pipelines").unwrap();
    let out = scratch.path().join("out");
    let cli = controller.cli();
    let file = cli.write_job(&pipeline_file(&out, 2)).unwrap();
    let file = file.to_str().unwrap();

    // Apply twice: one version.
    let applied = ok(&cli, &["pipelines", "apply", file]).await;
    assert_eq!(
        applied.stdout,
        "pipeline nightly-etl: version 1 applied (changed)\n"
    );
    let again = ok(&cli, &["pipelines", "apply", file]).await;
    assert_eq!(
        again.stdout,
        "pipeline nightly-etl: unchanged, still version 1\n"
    );
    let doc = cli.json(["pipelines", "apply", file]).await.unwrap();
    assert_eq!(
        doc,
        serde_json::json!({"name": "nightly-etl", "version": 1, "changed": false})
    );

    // Missing, ill-typed and unknown parameters are refused by the controller, named.
    let run = ["pipelines", "run", "nightly-etl"];
    refused(
        &cli,
        &run,
        2,
        "missing required parameter \"day\" (a date (YYYY-MM-DD))",
    )
    .await;
    let mut bad_int = run.to_vec();
    bad_int.extend(["--param", "day=2026-11-24", "--param", "count=many"]);
    refused(
        &cli,
        &bad_int,
        2,
        "parameter \"count\" is \"many\", which is not an int (a whole number such as 42)",
    )
    .await;
    let mut bad_date = run.to_vec();
    bad_date.extend(["--param", "day=2026-13-01"]);
    refused(
        &cli,
        &bad_date,
        2,
        "parameter \"day\" is \"2026-13-01\", which is not a date",
    )
    .await;
    let mut unknown = run.to_vec();
    unknown.extend(["--param", "day=2026-11-24", "--param", "colour=red"]);
    refused(
        &cli,
        &unknown,
        2,
        "unknown parameter \"colour\": it declares count, day, region",
    )
    .await;
    assert!(
        cli.jobs().await.unwrap().is_empty(),
        "no refused run made a job"
    );

    // A typed run, waited for: the agent gets the values, the default and the plain one.
    let mut first = run.to_vec();
    first.extend(["--param", "day=2026-11-24", "--wait"]);
    let first = job_id(&ok(&cli, &first).await);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "2026-11-24 2 eu");

    // A changed file: version 2, whose default the next run takes.
    let changed = cli.write_job(&pipeline_file(&out, 5)).unwrap();
    let changed = ok(&cli, &["pipelines", "apply", changed.to_str().unwrap()]).await;
    assert_eq!(
        changed.stdout,
        "pipeline nightly-etl: version 2 applied (changed)\n"
    );
    let mut second = run.to_vec();
    second.extend(["--param", "day=2026-11-25"]);
    let second = job_id(&ok(&cli, &second).await);
    let done = cli.wait_job(&second, WAIT).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "2026-11-25 5 eu");

    // A job of the same name submitted outside the pipeline is not one of its runs.
    let outside = cli
        .submit_with(&pipeline_file(&out, 1), &["--param", "day=2026-01-01"])
        .await
        .unwrap();
    cli.wait_job(&outside, WAIT).await.unwrap();

    let history = cli
        .json(["pipelines", "history", "nightly-etl"])
        .await
        .unwrap();
    assert_eq!(
        ids(&history, "job_id"),
        [second.clone(), first.clone()],
        "{history:#}"
    );
    assert_eq!(history[0]["version"], 2);
    assert_eq!(history[1]["version"], 1);
    assert_eq!(history[1]["state"], "succeeded");
    assert!(history[1]["finished_at"].is_string(), "{history:#}");
    let table = ok(&cli, &["pipelines", "history", "nightly-etl"])
        .await
        .stdout;
    assert!(table.starts_with("JOB"), "{table}");
    assert!(
        table.contains(&first) && table.contains("succeeded"),
        "{table}"
    );
    let listed = cli
        .json(["jobs", "list", "--pipeline", "nightly-etl"])
        .await
        .unwrap();
    assert_eq!(
        ids(&listed, "id"),
        [second.clone(), first.clone()],
        "{listed:#}"
    );

    let shown = cli
        .json(["pipelines", "show", "nightly-etl"])
        .await
        .unwrap();
    assert_eq!(shown["version"], 2, "{shown:#}");
    assert_eq!(shown["paused"], false);
    assert_eq!(shown["schedule"], Value::Null);
    assert_eq!(shown["versions"].as_array().unwrap().len(), 2);
    let day = shown["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "day")
        .unwrap();
    assert_eq!(
        (day["type"].as_str(), day["required"].as_bool()),
        (Some("date"), Some(true))
    );
    assert_eq!(
        ids(&shown["last_runs"], "job_id"),
        [second.clone(), first.clone()]
    );
    let text = ok(&cli, &["pipelines", "show", "nightly-etl"]).await.stdout;
    assert!(
        text.contains("pipeline:  nightly-etl\nversion:   2\nstate:     active\n"),
        "{text}"
    );
    let pipelines = cli.json(["pipelines", "list"]).await.unwrap();
    assert_eq!(ids(&pipelines, "name"), ["nightly-etl"]);
    assert_eq!(pipelines[0]["last_run"]["job_id"], second.as_str());

    // Paused: said so, shown so; a run by hand still starts. Resumed.
    let paused = ok(&cli, &["pipelines", "pause", "nightly-etl"]).await;
    assert_eq!(
        paused.stdout,
        "paused pipeline nightly-etl: its schedule and triggers start no run until resumed\n"
    );
    let twice = ok(&cli, &["pipelines", "pause", "nightly-etl"]).await;
    assert_eq!(twice.stdout, "pipeline nightly-etl was already paused\n");
    let shown = cli
        .json(["pipelines", "show", "nightly-etl"])
        .await
        .unwrap();
    assert_eq!(shown["paused"], true);
    let mut by_hand = run.to_vec();
    by_hand.extend(["--param", "day=2026-11-26"]);
    let third = job_id(&ok(&cli, &by_hand).await);
    let resumed = ok(&cli, &["pipelines", "resume", "nightly-etl"]).await;
    assert_eq!(resumed.stdout, "resumed pipeline nightly-etl\n");
    cli.wait_job(&third, WAIT).await.unwrap();

    // kill -9 and a restart: versions, runs and the content hash are all in the store.
    controller.kill9().unwrap();
    controller.restart().await.unwrap();
    let again = ok(&cli, &["pipelines", "apply", file]).await;
    assert_eq!(
        again.stdout, "pipeline nightly-etl: version 3 applied (changed)\n",
        "version 1's content is not the latest (2)"
    );
    let history = cli
        .json(["pipelines", "history", "nightly-etl"])
        .await
        .unwrap();
    assert_eq!(
        ids(&history, "job_id"),
        [third.clone(), second.clone(), first.clone()]
    );
    let mut after = run.to_vec();
    after.extend(["--param", "day=2026-11-27", "--wait"]);
    let fourth = job_id(&ok(&cli, &after).await);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "2026-11-27 2 eu");

    // With --output json, one object; the same idempotency key, the same run.
    let keyed = [
        "pipelines",
        "run",
        "nightly-etl",
        "--param",
        "day=2026-11-28",
        "--idempotency-key",
        "k1",
    ];
    let fifth = cli.json(keyed).await.unwrap();
    assert_eq!(
        (fifth["version"].as_u64(), fifth["existing"].as_bool()),
        (Some(3), Some(false))
    );
    let replay = cli
        .run(["--output", "json"].iter().chain(&keyed))
        .await
        .unwrap();
    let replayed: Value = serde_json::from_str(&replay.stdout).unwrap();
    assert_eq!(replayed["job_id"], fifth["job_id"], "{replay}");
    assert_eq!(replayed["existing"], true);
    let fifth = fifth["job_id"].as_str().unwrap().to_owned();
    assert!(
        replay.stderr.contains(&format!(
            "note: idempotency key \"k1\" already named run {fifth} of pipeline nightly-etl; nothing new was started"
        )),
        "{replay}"
    );
    cli.wait_job(&fifth, WAIT).await.unwrap();

    // Deleted: gone from show, list and run; its runs stay jobs.
    let deleted = ok(&cli, &["pipelines", "delete", "nightly-etl"]).await;
    assert_eq!(
        deleted.stdout,
        "deleted pipeline nightly-etl; its runs stay jobs\n"
    );
    refused(
        &cli,
        &["pipelines", "show", "nightly-etl"],
        3,
        "pipeline \"nightly-etl\" not found",
    )
    .await;
    refused(&cli, &by_hand, 3, "pipeline \"nightly-etl\" not found").await;
    assert_eq!(
        cli.json(["pipelines", "list"]).await.unwrap(),
        serde_json::json!([])
    );
    let listed = cli
        .json(["jobs", "list", "--pipeline", "nightly-etl"])
        .await
        .unwrap();
    assert_eq!(ids(&listed, "id"), [fifth, fourth, third, second, first]);
    let back = ok(&cli, &["pipelines", "apply", file]).await;
    assert_eq!(
        back.stdout, "pipeline nightly-etl: version 4 applied (changed)\n",
        "a deleted pipeline's name continues its versions"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_pipeline_files_and_names_are_refused_with_their_place() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let file = cli
        .write_job(
            "name = \"etl\"\n[params]\nday = { type = \"dat\" }\n[[tasks]]\nid = \"t\"\nshell = \"true\"\n",
        )
        .unwrap();
    let out = cli
        .run(["pipelines", "apply", file.to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!(out.code, 2, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "{}:3:16: params.day.type \"dat\" is not a type: use string, int, date, timestamp or bool",
            file.display()
        )),
        "{out}"
    );
    // A job name that cannot be a pipeline's is refused by the controller.
    let spaced = cli
        .write_job("name = \"nightly etl\"\n[[tasks]]\nid = \"t\"\nshell = \"true\"\n")
        .unwrap();
    refused(
        &cli,
        &["pipelines", "apply", spaced.to_str().unwrap()],
        2,
        "pipeline name \"nightly etl\" is not a pipeline name: use letters, digits, '_', '.' and '-'",
    )
    .await;
    refused(
        &cli,
        &["pipelines", "history", "nope"],
        3,
        "pipeline \"nope\" not found",
    )
    .await;
    assert_eq!(
        cli.json(["pipelines", "list"]).await.unwrap(),
        serde_json::json!([])
    );
}
