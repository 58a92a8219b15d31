//! Schedules (issue 17, item 2) on a real controller and agent: an `every = "2s"` pipeline
//! starts runs on its ticks, each with its scheduled time and interval as parameters, which
//! the agent runs; paused, it starts none; resumed, it starts them again; `show` tells the
//! schedule and its next fire times; a schedule the rules refuse is named at its place. On
//! SQLite, and on PostgreSQL with `FERRY_TEST_STORE=postgres`.

use std::time::{Duration, Instant};

use ferry_tests::{Agent, AgentOpts, Cli, CliOutput, Controller, ControllerOpts, TestDir};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(60);

async fn ok(cli: &Cli, args: &[&str]) -> CliOutput {
    let out = cli.run(args).await.unwrap();
    assert_eq!(out.code, 0, "ferry {args:?}: {out}");
    out
}

async fn history(cli: &Cli) -> Vec<Value> {
    let runs = cli
        .json(["pipelines", "history", "ticker", "--limit", "1000"])
        .await
        .unwrap();
    runs.as_array().unwrap().clone()
}

/// Waits until the pipeline has recorded more than `n` runs, and answers them.
async fn more_than(cli: &Cli, n: usize) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let runs = history(cli).await;
        if runs.len() > n {
            return runs;
        }
        assert!(start.elapsed() < WAIT, "no run after {n}: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_every_2s_pipeline_runs_pauses_and_resumes() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("schedules").unwrap();
    let out = scratch.path().join("windows");
    let cli = controller.cli();
    let file = cli
        .write_job(&format!(
            r#"
name = "ticker"

[schedule]
every = "2s"
overlap = "allow"

[[tasks]]
id = "extract"
queue = "etl"
shell = '''echo "$FERRY_PARAM_SCHEDULED_TIME $FERRY_PARAM_INTERVAL_START $FERRY_PARAM_INTERVAL_END" >> {out}'''
"#,
            out = out.display()
        ))
        .unwrap();
    ok(&cli, &["pipelines", "apply", file.to_str().unwrap()]).await;

    // Runs start on the ticks, 2 s apart, and the agent runs them with their windows.
    let runs = more_than(&cli, 2).await;
    let mut times: Vec<i64> = runs
        .iter()
        .map(|r| {
            let t = r["scheduled_time"].as_str().unwrap();
            humantime::parse_rfc3339(t)
                .unwrap()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis() as i64
        })
        .collect();
    times.sort_unstable();
    assert!(times.iter().all(|t| t % 2_000 == 0), "{times:?}");
    assert!(times.windows(2).all(|w| w[1] - w[0] == 2_000), "{times:?}");
    let start = Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if text.lines().count() >= 2 {
            break text;
        }
        assert!(start.elapsed() < WAIT, "the runs did not run: {runs:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for line in lines.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        let at = |i: usize| humantime::parse_rfc3339(fields[i]).unwrap();
        assert_eq!(
            fields[0], fields[2],
            "interval_end is the scheduled time: {line}"
        );
        assert_eq!(
            at(2).duration_since(at(1)).unwrap(),
            Duration::from_secs(2),
            "{line}"
        );
        assert!(fields[0].ends_with('Z'), "UTC: {line}");
    }

    // show tells the schedule and its next fire times.
    let shown = cli.json(["pipelines", "show", "ticker"]).await.unwrap();
    let schedule = shown["schedule"].as_str().unwrap();
    assert!(
        schedule.starts_with("every 2.0s; overlap allow"),
        "{shown:#}"
    );
    assert_eq!(
        shown["next_fire_times"].as_array().unwrap().len(),
        5,
        "{shown:#}"
    );

    // Paused: no new run (one at the pause's instant may still land).
    ok(&cli, &["pipelines", "pause", "ticker"]).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paused = history(&cli).await.len();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        history(&cli).await.len(),
        paused,
        "a paused schedule started a run"
    );

    // Resumed: runs again, and no catch-up of the paused ticks (at most the one on time).
    ok(&cli, &["pipelines", "resume", "ticker"]).await;
    let resumed = more_than(&cli, paused).await;
    assert!(resumed.len() <= paused + 2, "{resumed:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_the_rules_refuse_is_named_at_its_place() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let file = cli
        .write_job(
            r#"
name = "bad"

[schedule]
cron = "61 2 * * *"
timezone = "Europe/Nowhere"

[[tasks]]
id = "t"
shell = "true"
"#,
        )
        .unwrap();
    let out = cli
        .run(&["pipelines", "apply", file.to_str().unwrap()])
        .await
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains(":4:1: schedule cron minute value \"61\""),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("\"Europe/Nowhere\" is not in the tz database"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_runs_each_past_tick_once() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("backfill").unwrap();
    let out = scratch.path().join("windows");
    let cli = controller.cli();
    let file = cli
        .write_job(&format!(
            r#"
name = "nightly"

[schedule]
cron = "0 2 * * *"
timezone = "Europe/Berlin"

[[tasks]]
id = "extract"
queue = "etl"
shell = '''echo "$FERRY_PARAM_INTERVAL_START $FERRY_PARAM_INTERVAL_END" >> {out}'''
"#,
            out = out.display()
        ))
        .unwrap();
    ok(&cli, &["pipelines", "apply", file.to_str().unwrap()]).await;
    let args = [
        "pipelines",
        "backfill",
        "nightly",
        "--from",
        "2026-03-27T00:00:00Z",
        "--to",
        "2026-03-30T12:00:00Z",
        "--max-concurrent",
        "2",
    ];
    let first = ok(&cli, &args).await;
    assert_eq!(first.stdout.lines().count(), 4, "{first}");
    // The windows: 02:00 in Berlin, which 2026-03-29 skips: shifted to the jump (03:00 CEST).
    let mut lines: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            "2026-03-26T01:00:00Z 2026-03-27T01:00:00Z",
            "2026-03-27T01:00:00Z 2026-03-28T01:00:00Z",
            "2026-03-28T01:00:00Z 2026-03-29T01:00:00Z",
            "2026-03-29T01:00:00Z 2026-03-30T00:00:00Z",
        ]
    );
    // Again: the same jobs, nothing new.
    let again = cli.json(args).await.unwrap();
    let again = again.as_array().unwrap();
    assert_eq!(again.len(), 4);
    assert!(again.iter().all(|r| r["existing"] == true), "{again:#?}");
    assert_eq!(
        first.stdout.lines().collect::<Vec<_>>(),
        again
            .iter()
            .map(|r| r["job_id"].as_str().unwrap())
            .collect::<Vec<_>>()
    );
}
