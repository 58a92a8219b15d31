//! What a task's process sees of its agent (issue 16, class 4): not the agent's environment —
//! only PATH, HOME, the locale, its FERRY_* variables and what the agent's config passes — and
//! the agent's secrets (a datasource's password, its token) are redacted from the logs the
//! controller stores, even when a task prints them in two writes.

use std::time::Duration;

use ferry_tests::{job::state, Agent, AgentOpts, Controller, ControllerOpts, TestDir};

/// A datasource password the agent reads from its environment (`password_env`).
const PASSWORD: &str = "hunter2-secret";
/// The agent's token.
const TOKEN: &str = "agent-tok3n-5a1d";

/// The `ferry logs` of the job's task `t` (standard output, then standard error), once the
/// job has succeeded.
async fn logs_of_succeeded(controller: &Controller, job: &str) -> String {
    let cli = controller.cli();
    let id = cli.submit(job).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    let out = cli.run(["logs", &id, "t"]).await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains(&format!("FERRY_JOB_ID={id}\n")),
        "{}",
        out.stdout
    );
    format!("{}{}", out.stdout, out.stderr)
}

/// The value `env` printed for `name`.
fn var<'a>(logs: &'a str, name: &str) -> Option<&'a str> {
    logs.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix('=')))
}

fn has_var(logs: &str, name: &str) -> bool {
    var(logs, name).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_gets_a_scrubbed_environment_and_its_logs_no_secret() {
    let dir = TestDir::new("task-env").unwrap();
    let token = dir.path().join("agent.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[datasources.orders]\nurl = \"postgres://etl@127.0.0.1:1/sales\"\n\
         password_env = \"ORDERS_PASSWORD\"\n",
    )
    .unwrap();
    let controller = Controller::start(
        ControllerOpts::default()
            .arg("--agent-token-file")
            .arg(token.display().to_string()),
    )
    .await
    .unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-a")
            .arg("--config")
            .arg(config.display().to_string())
            .arg("--token-file")
            .arg(token.display().to_string())
            .env("ORDERS_PASSWORD", PASSWORD)
            .env("FERRY_TEST_SECRET_ENV", PASSWORD),
    )
    .await
    .unwrap();

    // `env`; the guardian's environment (the task's parent); then the secrets printed as a
    // task that found them would, the password in two writes a moment apart.
    let job = format!(
        r#"
name = "env"

[[tasks]]
id = "t"
shell = '''
env
tr '\0' '\n' < /proc/$PPID/environ | sed 's/^/guardian: /'
printf 'password: hunter2-'
sleep 0.4
printf 'secret\n'
echo "token: {TOKEN} and again {TOKEN}" >&2
'''
"#
    );
    let logs = logs_of_succeeded(&controller, &job).await;
    for name in [
        "PATH",
        "HOME",
        "FERRY_JOB_ID",
        "FERRY_TASK_ID",
        "FERRY_ATTEMPT",
    ] {
        assert!(has_var(&logs, name), "{name} missing:\n{logs}");
    }
    assert_eq!(
        var(&logs, "PATH"),
        Some("/usr/local/bin:/usr/bin:/bin"),
        "{logs}"
    );
    // Nothing of the agent's own environment: not its secrets, not what the harness set.
    for name in ["ORDERS_PASSWORD", "FERRY_TEST_SECRET_ENV", "RUST_LOG"] {
        assert!(!has_var(&logs, name), "{name} reached the task:\n{logs}");
    }
    let guardian: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.strip_prefix("guardian: "))
        .collect();
    assert_eq!(guardian, ["FERRY_AGENT_GUARDIAN=1"], "{logs}");
    assert!(!logs.contains("hunter2"), "{logs}");
    assert!(!logs.contains(TOKEN), "{logs}");
    assert!(logs.contains("password: [redacted]\n"), "{logs}");
    assert!(
        logs.contains("token: [redacted] and again [redacted]\n"),
        "{logs}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_config_passes_variables_and_sets_path() {
    let dir = TestDir::new("task-env-pass").unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "pass_env = [\"TEAM_PROXY\", \"NOT_SET_ANYWHERE\"]\ntask_path = \"/opt/none:/usr/bin:/bin\"\n",
    )
    .unwrap();
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-b")
            .arg("--config")
            .arg(config.display().to_string())
            .env("TEAM_PROXY", "http://proxy.test:3128")
            .env("FERRY_TEST_SECRET_ENV", PASSWORD),
    )
    .await
    .unwrap();
    let job = "name = \"env\"\n[[tasks]]\nid = \"t\"\nshell = \"env\"\n";
    let logs = logs_of_succeeded(&controller, job).await;
    assert_eq!(
        var(&logs, "TEAM_PROXY"),
        Some("http://proxy.test:3128"),
        "{logs}"
    );
    assert_eq!(
        var(&logs, "PATH"),
        Some("/opt/none:/usr/bin:/bin"),
        "{logs}"
    );
    assert!(!has_var(&logs, "NOT_SET_ANYWHERE"), "{logs}");
    assert!(!has_var(&logs, "FERRY_TEST_SECRET_ENV"), "{logs}");
}
