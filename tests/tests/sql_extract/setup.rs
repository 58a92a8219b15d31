//! The shared scaffolding of the SQL extraction tests: a controller and one agent with the
//! `pg`, `my` and `lite` datasources (and their read-only twins), the one-task job they run,
//! and running it to success or failure.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use ferry_tests::{
    databases::{self, write_agent_config, DatasourceConfig},
    job::{attempts, state, task},
    Agent, AgentOpts, Cli, Controller, ControllerOpts, TestDir,
};
use serde_json::Value;

use crate::files::read_tree;

pub const JOB_TIMEOUT: Duration = Duration::from_secs(90);
pub const SECRET: &str = "s3cret-ferry-pw-5521";

/// A controller and one agent serving queue `sql` with datasources `pg`, `pg_ro`, `my`,
/// `my_ro`, `lite` and `lite_ro` (a fresh SQLite file); `pg` has [`SECRET`] as its password,
/// in its URL and in its `password_file`.
pub struct Setup {
    pub controller: Controller,
    pub agent: Agent,
    pub cli: Cli,
    pub scratch: TestDir,
    pub sqlite: PathBuf,
}

pub async fn setup(label: &str) -> Setup {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let scratch = TestDir::new(label).unwrap();
    let pw = scratch.path().join("pg.password");
    std::fs::write(&pw, format!("{SECRET}\n")).unwrap();
    let sqlite = scratch.path().join("lite.db");
    rusqlite::Connection::open(&sqlite).unwrap();
    let config = scratch.path().join("agent.toml");
    // Trust authentication on this machine: the password is configured and never needed,
    // which is what lets the test look for it everywhere.
    let pg = databases::postgres_url();
    let pg_with_secret = pg.replacen("postgres@", &format!("postgres:{SECRET}@"), 1);
    write_agent_config(
        &config,
        &[
            DatasourceConfig::new("pg", pg_with_secret).password_file(&pw),
            DatasourceConfig::new("pg_ro", &pg).read_only(),
            DatasourceConfig::new("my", databases::mysql_url()),
            DatasourceConfig::new("my_ro", databases::mysql_url()).read_only(),
            DatasourceConfig::new("lite", format!("sqlite://{}", sqlite.display())),
            DatasourceConfig::new("lite_ro", format!("sqlite://{}", sqlite.display())).read_only(),
        ],
    )
    .unwrap();
    let agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("sql-agent")
            .queue("sql")
            .arg("--config")
            .arg(config.display().to_string()),
    )
    .await
    .unwrap();
    let cli = controller.cli();
    Setup {
        controller,
        agent,
        cli,
        scratch,
        sqlite,
    }
}

/// A one-task job `name` whose task `extract` runs `sql` (the inside of the `sql = { … }`).
pub fn job(name: &str, sql: &str) -> String {
    format!(
        r#"
name = "{name}"

[[tasks]]
id = "extract"
queue = "sql"
retry = {{ max_attempts = 1 }}
sql = {{ {sql} }}
"#
    )
}

impl Setup {
    /// Submits, waits for the end, and returns the `jobs show` document.
    pub async fn run(&self, toml: &str, extra: &[&str]) -> (String, Value) {
        let id = self.cli.submit_with(toml, extra).await.unwrap();
        let done = self.cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
        (id, done)
    }

    /// Runs a job that must succeed and downloads task `extract`'s files.
    pub async fn extract(&self, toml: &str, extra: &[&str]) -> (Value, BTreeMap<String, Vec<u8>>) {
        let (id, done) = self.run(toml, extra).await;
        assert_eq!(
            state(&done),
            "succeeded",
            "{done:#}\nagent log:\n{}",
            self.agent.log_tail(30)
        );
        let dir = self.scratch.path().join(format!("results-{id}"));
        let out = self
            .cli
            .run([
                "results",
                "get",
                &id,
                "extract",
                "-o",
                &dir.display().to_string(),
            ])
            .await
            .unwrap();
        assert_eq!(out.code, 0, "{out}");
        (done, read_tree(&dir))
    }

    /// Runs a job that must fail and returns the last attempt's error.
    pub async fn failure(&self, toml: &str) -> String {
        let (_, done) = self.run(toml, &[]).await;
        assert_eq!(state(&done), "failed", "{done:#}");
        let tries = attempts(&done, "extract");
        tries.last().unwrap()["error"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// The extract metadata `jobs show` carries for task `extract`.
pub fn extract_info(done: &Value) -> Value {
    let t = task(done, "extract");
    t.get("extract")
        .cloned()
        .unwrap_or_else(|| panic!("no extract metadata on task extract: {done:#}"))
}
