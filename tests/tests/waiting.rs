//! Jobs that cannot run, told early (issue 19, items 1 and 2): a submit no agent seen lately
//! may run is warned about (standard error and `--output json`), `jobs show` says why a queued
//! task waits (its queue, its labels, its datasource, all agents busy), an sql task goes only to
//! an agent with its datasource, and a failure no retry can fix uses one attempt.

use std::time::Duration;

use ferry_tests::{
    databases::{self, write_agent_config, DatasourceConfig},
    eventually,
    job::{attempt_states, attempts, last_agent, state, task, task_state},
    Agent, AgentOpts, Cli, Controller, ControllerOpts, TestDir,
};
use serde_json::Value;

const TIMEOUT: Duration = Duration::from_secs(60);

fn shell_job(name: &str, queue: &str, labels: &str, command: &str) -> String {
    format!(
        r#"
name = "{name}"

[[tasks]]
id = "extract"
queue = "{queue}"
labels = {{ {labels} }}
shell = "{command}"
"#
    )
}

/// `ferry submit FILE`: the id, and what it printed on standard error.
async fn submit(cli: &Cli, toml: &str) -> (String, String) {
    let path = cli.write_job(toml).unwrap();
    let out = cli
        .run([std::ffi::OsString::from("submit"), path.into()])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    (out.stdout.trim().to_owned(), out.stderr)
}

/// `jobs show ID` as text, once task `extract` is queued with a reason.
async fn shown_reason(cli: &Cli, id: &str) -> (String, Value) {
    let doc = eventually("a reason for the queued task", TIMEOUT, || async {
        let doc = cli.show(id).await?;
        Ok(task(&doc, "extract")["reason"].is_string().then_some(doc))
    })
    .await
    .unwrap();
    let text = cli.run(["jobs", "show", id]).await.unwrap();
    assert_eq!(text.code, 0, "{text}");
    (text.stdout, doc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_agent_can_run_is_warned_at_submit_and_shown_why_it_waits() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let mut agents = Vec::new();
    for name in ["agent-a", "agent-b"] {
        let opts = AgentOpts::new(name)
            .queue("onprem")
            .label("site", "dc1")
            .max_tasks(1);
        agents.push(Agent::start(&controller.addr(), opts).await.unwrap());
    }
    let cli = controller.cli();

    // A typo'd queue: warned at submit, on standard error and in the JSON answer.
    let typo = shell_job("typo", "onperm", "", "true");
    let (id, stderr) = submit(&cli, &typo).await;
    assert!(
        stderr.contains("warning: task extract: no agent on queue onperm"),
        "{stderr}"
    );
    let (text, doc) = shown_reason(&cli, &id).await;
    assert_eq!(task(&doc, "extract")["reason"], "no agent on queue onperm");
    assert!(
        text.contains("task extract is queued: no agent on queue onperm"),
        "{text}"
    );
    let path = cli.write_job(&typo).unwrap();
    let json = cli
        .json([std::ffi::OsString::from("submit"), path.into()])
        .await
        .unwrap();
    assert!(json["job_id"].is_string(), "{json}");
    let warnings = json["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{json}");
    assert!(
        warnings[0]
            .as_str()
            .unwrap()
            .starts_with("task extract: no agent on queue onperm"),
        "{json}"
    );

    // A label no agent of the queue carries.
    let (id, stderr) = submit(
        &cli,
        &shell_job("label", "onprem", r#"site = "dc2""#, "true"),
    )
    .await;
    assert!(
        stderr.contains("task extract: 2 agents on queue onprem, none with site=dc2"),
        "{stderr}"
    );
    let (text, _) = shown_reason(&cli, &id).await;
    assert!(
        text.contains("task extract is queued: 2 agents on queue onprem, none with site=dc2"),
        "{text}"
    );

    // Runnable work submits without a word.
    let busy = shell_job("busy", "onprem", "", "sleep 60");
    let mut sleepers = Vec::new();
    for _ in 0..2 {
        let (id, stderr) = submit(&cli, &busy).await;
        assert!(!stderr.contains("warning"), "{stderr}");
        sleepers.push(id);
    }
    for id in &sleepers {
        eventually("the sleeper to run", TIMEOUT, || async {
            let doc = cli.show(id).await?;
            Ok((task_state(&doc, "extract") == "running").then_some(()))
        })
        .await
        .unwrap();
    }
    // Both agents run all they may: the next waits, and says so.
    let (id, stderr) = submit(&cli, &busy).await;
    assert!(!stderr.contains("warning"), "{stderr}");
    let (text, _) = shown_reason(&cli, &id).await;
    assert!(
        text.contains("task extract is queued: all 2 busy"),
        "{text}"
    );
    for id in sleepers.iter().chain([&id]) {
        let out = cli.run(["jobs", "cancel", id]).await.unwrap();
        assert_eq!(out.code, 0, "{out}");
    }
}

/// An agent serving queue `sql` with `datasources`.
async fn sql_agent(
    controller: &Controller,
    scratch: &TestDir,
    name: &str,
    datasources: &[DatasourceConfig],
) -> Agent {
    let config = scratch.path().join(format!("{name}.toml"));
    write_agent_config(&config, datasources).unwrap();
    let opts = AgentOpts::new(name)
        .queue("sql")
        .arg("--config")
        .arg(config.display().to_string());
    Agent::start(&controller.addr(), opts).await.unwrap()
}

fn sql_job(name: &str, datasource: &str, query: &str) -> String {
    format!(
        r#"
name = "{name}"

[[tasks]]
id = "extract"
queue = "sql"
retry = {{ max_attempts = 3, initial_delay = "100ms" }}
sql = {{ datasource = "{datasource}", query = "{query}" }}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sql_task_goes_only_to_an_agent_with_its_datasource() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let scratch = TestDir::new("waiting-sql").unwrap();
    let lite = scratch.path().join("lite.db");
    rusqlite::Connection::open(&lite).unwrap();
    let lite_url = format!("sqlite://{}", lite.display());
    // The first agent has another datasource; only the second has `lite`.
    let _first = sql_agent(
        &controller,
        &scratch,
        "agent-1",
        &[DatasourceConfig::new("other", &lite_url)],
    )
    .await;
    let _second = sql_agent(
        &controller,
        &scratch,
        "agent-2",
        &[DatasourceConfig::new("lite", &lite_url)],
    )
    .await;
    let cli = controller.cli();
    let agents = cli.agents().await.unwrap();
    let second = agents.iter().find(|a| a["name"] == "agent-2").unwrap();
    assert_eq!(
        second["datasources"],
        serde_json::json!(["lite"]),
        "{second}"
    );

    for n in 0..4 {
        let (id, stderr) =
            submit(&cli, &sql_job(&format!("ds-{n}"), "lite", "select 1 as x")).await;
        assert!(!stderr.contains("warning"), "{stderr}");
        let done = cli.wait_job(&id, TIMEOUT).await.unwrap();
        assert_eq!(state(&done), "succeeded", "{done:#}");
        assert_eq!(attempt_states(&done, "extract"), ["succeeded"], "{done:#}");
        assert_eq!(last_agent(&done, "extract"), "agent-2", "{done:#}");
    }

    // A datasource no agent has: warned at submit, and shown while it waits.
    let (id, stderr) = submit(&cli, &sql_job("typo", "sale", "select 1")).await;
    assert!(
        stderr.contains("warning: task extract: 2 agents on queue sql, none with datasource sale"),
        "{stderr}"
    );
    let (text, doc) = shown_reason(&cli, &id).await;
    assert!(attempts(&doc, "extract").is_empty(), "{doc:#}");
    assert!(
        text.contains("task extract is queued: 2 agents on queue sql, none with datasource sale"),
        "{text}"
    );
    let out = cli.run(["jobs", "cancel", &id]).await.unwrap();
    assert_eq!(out.code, 0, "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_no_retry_can_fix_uses_one_attempt_of_three() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let scratch = TestDir::new("waiting-final").unwrap();
    let wrong = scratch.path().join("wrong.password");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let _agent = sql_agent(
        &controller,
        &scratch,
        "agent-1",
        &[DatasourceConfig::new("my", databases::mysql_url()).password_file(&wrong)],
    )
    .await;
    let cli = controller.cli();
    let toml = format!(
        "{}\n[[tasks]]\nid = \"load\"\nqueue = \"sql\"\ndepends_on = [\"extract\"]\nshell = \"true\"\n",
        sql_job("refused", "my", "select 1")
    );
    let (id, _) = submit(&cli, &toml).await;
    let done = cli.wait_job(&id, TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    assert_eq!(attempt_states(&done, "extract"), ["failed"], "{done:#}");
    assert_eq!(task_state(&done, "load"), "skipped", "{done:#}");
    let error = attempts(&done, "extract")[0]["error"].as_str().unwrap();
    assert!(
        error.starts_with("datasource my: cannot connect")
            && error.ends_with("(not retryable)")
            && !error.contains("not-the-password"),
        "{error}"
    );
    let text = cli.run(["jobs", "show", &id]).await.unwrap();
    assert!(text.stdout.contains("(not retryable)"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_not_started_within_its_schedule_to_start_timeout_fails_with_why() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-a").queue("onprem"),
    )
    .await
    .unwrap();
    let cli = controller.cli();
    let toml = r#"
name = "late"

[[tasks]]
id = "extract"
queue = "onperm"
schedule_to_start_timeout = "1s"
retry = { max_attempts = 3 }
shell = "true"

[[tasks]]
id = "load"
queue = "onprem"
depends_on = ["extract"]
shell = "true"
"#;
    let (id, stderr) = submit(&cli, toml).await;
    assert!(
        stderr.contains("task extract: no agent on queue onperm"),
        "{stderr}"
    );
    let done = cli.wait_job(&id, TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let extract = task(&done, "extract");
    assert_eq!(extract["state"], "failed", "{done:#}");
    assert_eq!(
        extract["reason"], "not started within 1s: no agent on queue onperm",
        "{done:#}"
    );
    assert!(attempts(&done, "extract").is_empty(), "{done:#}");
    assert_eq!(task_state(&done, "load"), "skipped", "{done:#}");
    let text = cli.run(["jobs", "show", &id]).await.unwrap();
    assert!(
        text.stdout
            .contains("task extract is failed: not started within 1s: no agent on queue onperm"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controllers_schedule_to_start_timeout_applies_to_tasks_without_their_own() {
    let opts = ControllerOpts::default()
        .arg("--schedule-to-start-timeout")
        .arg("1s");
    let controller = Controller::start(opts).await.unwrap();
    let cli = controller.cli();
    let (id, _) = submit(&cli, &shell_job("default", "onperm", "", "true")).await;
    let done = cli.wait_job(&id, TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    assert_eq!(
        task(&done, "extract")["reason"],
        "not started within 1s: no agent on queue onperm",
        "{done:#}"
    );
}
