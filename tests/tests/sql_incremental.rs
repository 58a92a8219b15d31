//! Incremental extraction end to end, with real processes and real databases: runs across
//! three submissions take exactly the rows that arrived since the last success — rows inserted
//! between runs and during a run (after its upper bound was fixed) are taken next time, never
//! lost, never twice; a failed attempt and a lost agent (kill -9 mid-extract) leave the
//! watermark where it was and the retry extracts the same range; a backfill extracts an
//! explicit range without moving the watermark; after `watermarks reset` the next run takes
//! everything; a controller killed with -9 keeps it. PostgreSQL (`FERRY_TEST_POSTGRES_URL`)
//! and an SQLite file.

use std::{path::Path, time::Duration};

use ferry_tests::{
    databases::{postgres, postgres_url, unique_table, write_agent_config, DatasourceConfig},
    eventually,
    job::{attempt_states, state, task},
    Agent, AgentOpts, Cli, Controller, ControllerOpts, TestDir,
};
use serde_json::Value;

const JOB_TIMEOUT: Duration = Duration::from_secs(90);

fn job_file(name: &str, datasource: &str, query: &str, max_attempts: u32) -> String {
    format!(
        r#"name = "{name}"
[[tasks]]
id = "extract"
queue = "sql"
timeout = "2m"
retry = {{ max_attempts = {max_attempts}, initial_delay = "0s", max_delay = "0s" }}
sql = {{ datasource = "{datasource}", query = '{query}', format = "csv", incremental = {{ column = "id" }} }}
"#
    )
}

async fn agent(controller: &Controller, name: &str, config: &Path) -> Agent {
    Agent::start(
        &controller.addr(),
        AgentOpts::new(name)
            .queue("sql")
            .arg("--config")
            .arg(config.display().to_string()),
    )
    .await
    .unwrap()
}

/// Submits `toml` (with `extra` flags) and waits for the job to end: (id, `jobs show`).
async fn run(cli: &Cli, toml: &str, extra: &[&str]) -> (String, Value) {
    let id = cli.submit_with(toml, extra).await.unwrap();
    let doc = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    (id, doc)
}

/// The ids (first column) of the rows a job's extract published, in file order.
async fn extracted(cli: &Cli, job: &str) -> Vec<i64> {
    let listed = cli.json(["results", "list", job, "extract"]).await.unwrap();
    let files = listed.as_array().unwrap();
    assert!(
        !files.is_empty(),
        "job {job} published no extract: {listed:#}"
    );
    let dir = TestDir::new("extract").unwrap();
    let out = cli
        .run([
            "results",
            "get",
            job,
            "extract",
            "-o",
            dir.path().to_str().unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    let mut ids = Vec::new();
    for file in files {
        let name = file["name"].as_str().unwrap();
        let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,note"), "{name}: {text}");
        for line in lines {
            let id = line.split(',').next().unwrap();
            ids.push(id.parse().unwrap_or_else(|_| panic!("{name}: {line}")));
        }
    }
    ids
}

/// The stored watermark of the job name's task `extract`.
async fn mark(cli: &Cli, name: &str) -> Option<String> {
    let marks = cli.json(["watermarks", "list", name]).await.unwrap();
    marks
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["task"] == "extract")
        .map(|m| m["value"].as_str().unwrap().to_owned())
}

fn range(ids: std::ops::RangeInclusive<i64>) -> Vec<i64> {
    ids.collect()
}

#[track_caller]
fn succeeded(doc: &Value) {
    assert_eq!(state(doc), "succeeded", "{doc:#}");
}

/// Waits until PostgreSQL runs the agent's extract of `table` (its transaction, and so its
/// snapshot and upper bound, are fixed by then).
async fn wait_for_extract(db: &tokio_postgres::Client, table: &str) {
    let pattern = format!("%pg_sleep%{table}%");
    eventually("the extract to run in PostgreSQL", JOB_TIMEOUT, || async {
        let row = db
            .query_one(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE state = 'active' AND pid <> pg_backend_pid() AND query LIKE $1",
                &[&pattern],
            )
            .await?;
        Ok((row.get::<_, i64>(0) > 0).then_some(()))
    })
    .await
    .unwrap();
}

async fn insert(db: &tokio_postgres::Client, table: &str, ids: std::ops::RangeInclusive<i64>) {
    for id in ids {
        db.execute(
            &format!("INSERT INTO {table} (id, note) VALUES ($1, $2)"),
            &[&id, &format!("row {id}")],
        )
        .await
        .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_incremental_runs_failures_lost_agents_backfill_and_reset() {
    let db = postgres().await.unwrap();
    let table = unique_table("ferry_inc");
    let ctl = format!("{table}_ctl");
    db.batch_execute(&format!(
        "DROP TABLE IF EXISTS {table}; DROP TABLE IF EXISTS {ctl};
         CREATE TABLE {table} (id bigint PRIMARY KEY, note text NOT NULL);
         CREATE TABLE {ctl} (secs float8 NOT NULL, ok int NOT NULL);
         INSERT INTO {ctl} VALUES (0, 1);"
    ))
    .await
    .unwrap();
    // `secs` makes the extract slow (the upper-bound query and the extract each sleep once);
    // `ok = 0` makes it fail (division by zero).
    let query = format!(
        "select id, note from {table} where (select pg_sleep(secs) from {ctl}) is not null \
         and (select 1 / ok from {ctl}) = 1"
    );
    let name = format!("inc-{table}");
    let job = job_file(&name, "pg", &query, 1);
    let retried = job_file(&name, "pg", &query, 3);

    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let dir = TestDir::new("pg-config").unwrap();
    let config = dir.path().join("agent.toml");
    write_agent_config(&config, &[DatasourceConfig::new("pg", postgres_url())]).unwrap();
    let mut first_agent = agent(&controller, "pg-a", &config).await;

    // Run 1: everything so far.
    insert(&db, &table, 1..=5).await;
    let (one, doc) = run(&cli, &job, &[]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &one).await, range(1..=5));
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("5"));
    let extract = &task(&doc, "extract")["extract"];
    assert_eq!(extract["rows"], 5, "{doc:#}");
    assert_eq!(extract["watermark"], "5", "{doc:#}");
    assert_eq!(extract["incremental_column"], "id", "{doc:#}");

    // Run 2: rows inserted between runs are taken; rows inserted while it runs (after its
    // upper bound was fixed) are not.
    insert(&db, &table, 6..=8).await;
    db.execute(&format!("UPDATE {ctl} SET secs = 1.5"), &[])
        .await
        .unwrap();
    let two = cli.submit(&job).await.unwrap();
    wait_for_extract(&db, &table).await;
    insert(&db, &table, 9..=10).await;
    succeeded(&cli.wait_job(&two, JOB_TIMEOUT).await.unwrap());
    assert_eq!(extracted(&cli, &two).await, range(6..=8));
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("8"));

    // Run 3: the rows that arrived during run 2, once.
    db.execute(&format!("UPDATE {ctl} SET secs = 0"), &[])
        .await
        .unwrap();
    let (three, doc) = run(&cli, &job, &[]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &three).await, range(9..=10));
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("10"));

    // A failed attempt leaves the watermark; the next run extracts the same range.
    insert(&db, &table, 11..=12).await;
    db.execute(&format!("UPDATE {ctl} SET ok = 0"), &[])
        .await
        .unwrap();
    let (_, doc) = run(&cli, &job, &[]).await;
    assert_eq!(state(&doc), "failed", "{doc:#}");
    let error = task(&doc, "extract")["attempts"][0]["error"]
        .as_str()
        .unwrap_or_default();
    assert!(
        error.contains("pg") && error.contains("division by zero"),
        "the error names the datasource and the server's message: {doc:#}"
    );
    assert!(
        !error.contains(&postgres_url()),
        "no datasource url in errors: {error}"
    );
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("10"));
    db.execute(&format!("UPDATE {ctl} SET ok = 1"), &[])
        .await
        .unwrap();

    // A lost agent mid-extract leaves the watermark; the retry, on another agent, extracts
    // the same range.
    db.execute(&format!("UPDATE {ctl} SET secs = 20"), &[])
        .await
        .unwrap();
    let lost = cli.submit(&retried).await.unwrap();
    wait_for_extract(&db, &table).await;
    first_agent.kill9().unwrap();
    // Its host is gone: so is its connection.
    db.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE pid <> pg_backend_pid() AND query LIKE $1",
        &[&format!("%pg_sleep%{table}%")],
    )
    .await
    .unwrap();
    db.execute(&format!("UPDATE {ctl} SET secs = 0"), &[])
        .await
        .unwrap();
    eventually(
        "the killed agent's attempt to be lost",
        JOB_TIMEOUT,
        || async {
            let doc = cli.show(&lost).await?;
            Ok(attempt_states(&doc, "extract")
                .first()
                .filter(|s| **s == "lost")
                .map(drop))
        },
    )
    .await
    .unwrap();
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("10"));
    let _second_agent = agent(&controller, "pg-b", &config).await;
    let doc = cli.wait_job(&lost, JOB_TIMEOUT).await.unwrap();
    succeeded(&doc);
    assert_eq!(attempt_states(&doc, "extract"), ["lost", "succeeded"]);
    assert_eq!(extracted(&cli, &lost).await, range(11..=12));
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("12"));

    // A backfill extracts its range and leaves the watermark.
    let (back, doc) = run(&cli, &job, &["--backfill", "extract=2..4"]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &back).await, range(3..=4));
    assert_eq!(
        task(&doc, "extract")["extract"]["backfill"],
        true,
        "{doc:#}"
    );
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("12"));
    let (back, doc) = run(&cli, &job, &["--backfill", "extract=..2"]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &back).await, range(1..=2));
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("12"));

    // After a reset the next run takes everything.
    let out = cli
        .run(["watermarks", "reset", &name, "extract"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(mark(&cli, &name).await, None);
    let (all, doc) = run(&cli, &job, &[]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &all).await, range(1..=12));
    assert_eq!(mark(&cli, &name).await.as_deref(), Some("12"));

    db.batch_execute(&format!("DROP TABLE {table}; DROP TABLE {ctl};"))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_incremental_runs_take_each_row_once() {
    let dir = TestDir::new("sqlite-source").unwrap();
    let file = dir.path().join("orders.db");
    let db = rusqlite::Connection::open(&file).unwrap();
    db.execute_batch("CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT NOT NULL);")
        .unwrap();
    let add = |ids: std::ops::RangeInclusive<i64>| {
        for id in ids {
            db.execute(
                "INSERT INTO orders (id, note) VALUES (?1, ?2)",
                rusqlite::params![id, format!("row {id}")],
            )
            .unwrap();
        }
    };
    let config = dir.path().join("agent.toml");
    write_agent_config(
        &config,
        &[DatasourceConfig::new("lite", format!("sqlite://{}", file.display())).read_only()],
    )
    .unwrap();
    let mut controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let _agent = agent(&controller, "lite-a", &config).await;
    let name = "lite-orders";
    let job = job_file(name, "lite", "select id, note from orders", 1);

    add(1..=3);
    let (one, doc) = run(&cli, &job, &[]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &one).await, range(1..=3));
    assert_eq!(mark(&cli, name).await.as_deref(), Some("3"));

    add(4..=6);
    let (two, doc) = run(&cli, &job, &[]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &two).await, range(4..=6));
    assert_eq!(mark(&cli, name).await.as_deref(), Some("6"));

    // The watermark was on disk with the success: a kill -9 of the controller keeps it.
    controller.restart().await.unwrap();
    assert_eq!(mark(&cli, name).await.as_deref(), Some("6"));

    // Nothing new: no rows, and the watermark stays.
    let (three, doc) = run(&cli, &job, &[]).await;
    succeeded(&doc);
    assert_eq!(task(&doc, "extract")["extract"]["rows"], 0, "{doc:#}");
    let listed = cli
        .json(["results", "list", &three, "extract"])
        .await
        .unwrap();
    if !listed.as_array().unwrap().is_empty() {
        assert!(extracted(&cli, &three).await.is_empty());
    }
    assert_eq!(mark(&cli, name).await.as_deref(), Some("6"));

    add(7..=7);
    let (back, doc) = run(&cli, &job, &["--backfill", "extract=..2"]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &back).await, range(1..=2));
    assert_eq!(mark(&cli, name).await.as_deref(), Some("6"));
    let (four, doc) = run(&cli, &job, &[]).await;
    succeeded(&doc);
    assert_eq!(extracted(&cli, &four).await, range(7..=7));
    assert_eq!(mark(&cli, name).await.as_deref(), Some("7"));
}
