//! Who may call: with tokens configured, an agent must present the agent token to join (and
//! to upload) and a client the client token to submit or read; the secret never shows in any
//! log.

use std::time::Duration;

use ferry_tests::{
    job::state, Agent, AgentOpts, Controller, ControllerOpts, RefusedAgent, TestDir,
};

const AGENT_SECRET: &str = "agent-s3cret-7f1c";
const CLIENT_SECRET: &str = "client-s3cret-93ab";

fn token_file(dir: &TestDir, name: &str, secret: &str) -> String {
    let path = dir.path().join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path.display().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_agents_with_the_agent_token_join() {
    let secrets = TestDir::new("auth-agent").unwrap();
    let good = token_file(&secrets, "agent.token", AGENT_SECRET);
    let bad = token_file(&secrets, "wrong.token", "not-the-token");
    let controller = Controller::start(
        ControllerOpts::default()
            .arg("--agent-token-file")
            .arg(&good),
    )
    .await
    .unwrap();

    let intruder = RefusedAgent::spawn(
        &controller.addr(),
        "intruder",
        &["--token-file".to_owned(), bad.clone()],
    )
    .unwrap();

    let agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("member").arg("--token-file").arg(&good),
    )
    .await
    .unwrap();
    let cli = controller.cli();
    let id = cli
        .submit("name = \"auth\"\n[[tasks]]\nid = \"t\"\nshell = \"echo ok\"\n")
        .await
        .unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");

    let refused = intruder
        .log_once_it_says(
            "agent token presented is not valid",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        refused.contains("--token-file") && refused.contains("FERRY_TOKEN_FILE"),
        "the refused agent is told the remedy:\n{refused}"
    );
    assert!(
        cli.agent("intruder").await.unwrap().is_none(),
        "the intruder was listed"
    );
    drop(intruder);
    // The controller says it refused, with the remedy, at a low rate.
    let log = controller.log_tail(10_000);
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("refused a call"))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("agent token presented is not valid")
                && l.contains("--token-file")
                && l.contains("FERRY_TOKEN_FILE")),
        "the controller logs the refusal with the remedy:\n{log}"
    );
    assert!(
        lines.len() <= 3,
        "refusals are rate-limited ({} lines):\n{log}",
        lines.len()
    );
    // The token files were written readable by others (umask 022): the controller and the
    // agent say so, with the remedy.
    assert!(
        log.contains("agent_token_file")
            && log.contains("readable by other users")
            && log.contains("chmod 600"),
        "{log}"
    );
    let member_log = agent.log_tail(10_000);
    assert!(
        member_log.contains("readable by other users") && member_log.contains("chmod 600"),
        "{member_log}"
    );

    // Uploads (decoded by the controller from the frames themselves) are checked too.
    let mut raw = controller.agent_client().await.unwrap();
    let chunk = ferry_proto::v1::UploadChunk {
        data: vec![1u8; 1000].into(),
        ..Default::default()
    };
    let err = raw
        .upload_output(tonic::codegen::tokio_stream::iter(vec![chunk]))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unauthenticated, "{err}");

    for (who, text) in [
        ("intruder", refused),
        ("controller", controller.log_tail(10_000)),
        ("member", agent.log_tail(10_000)),
    ] {
        assert!(
            !text.contains(AGENT_SECRET),
            "the agent token shows in the {who} log"
        );
        assert!(
            !text.contains("not-the-token"),
            "a token shows in the {who} log"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_clients_with_the_client_token_are_served() {
    let secrets = TestDir::new("auth-client").unwrap();
    let good = token_file(&secrets, "client.token", CLIENT_SECRET);
    let bad = token_file(&secrets, "wrong.token", "guess");
    // From the environment, as a service manager would set it.
    let controller =
        Controller::start(ControllerOpts::default().env("FERRY_CLIENT_TOKEN_FILE", &good))
            .await
            .unwrap();
    let cli = controller.cli();

    let anonymous = cli.run(["jobs", "list"]).await.unwrap();
    assert_eq!(anonymous.code, 3, "{anonymous:?}");
    assert!(
        anonymous.stderr.contains("requires a client token")
            && anonymous.stderr.contains("--token-file")
            && anonymous.stderr.contains("FERRY_TOKEN_FILE"),
        "{}",
        anonymous.stderr
    );

    let wrong = cli
        .run(["--token-file", &bad, "jobs", "list"])
        .await
        .unwrap();
    assert_eq!(wrong.code, 3, "{wrong:?}");
    assert!(
        wrong.stderr.contains("client token presented is not valid"),
        "{}",
        wrong.stderr
    );
    assert!(
        wrong.stderr.contains("readable by other users"),
        "a token file others can read is warned about: {}",
        wrong.stderr
    );

    let file = cli
        .write_job("name = \"auth\"\n[[tasks]]\nid = \"t\"\nshell = \"true\"\n")
        .unwrap();
    let file = file.display().to_string();
    let refused = cli.run(["submit", &file]).await.unwrap();
    assert_eq!(refused.code, 3, "{refused:?}");
    let listed = cli
        .run(["--token-file", &good, "--output", "json", "jobs", "list"])
        .await
        .unwrap();
    assert_eq!(listed.code, 0, "{listed:?}");
    assert_eq!(
        listed.stdout.trim(),
        "[]",
        "the refused submit queued nothing"
    );
    assert!(!controller.log_tail(10_000).contains(CLIENT_SECRET));
}
