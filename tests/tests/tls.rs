//! TLS on the gRPC port: an agent and the CLI that trust the controller's CA run a job whose
//! output crosses to a downstream task and back to the CLI; plaintext and untrusting clients
//! are refused; with client certificates required, only callers holding one from the CA get
//! in, and an agent only under a name its certificate holds; TLS files that cannot be used stop
//! the start, naming the file; a peer that stalls in the handshake is dropped.

use std::{process::Command, time::Duration};

use ferry_tests::{
    bin_path,
    results_fixture::{results_by_name, results_get, run_to_success, sha256_file},
    Agent, AgentOpts, Cli, Controller, ControllerOpts, DevCerts, RefusedAgent, TestDir, AGENT_BIN,
    CONTROLLER_BIN,
};

const HANDOFF_JOB: &str = r#"
name = "tls-handoff"

[[tasks]]
id = "make"
shell = "head -c 3000000 /dev/urandom > data.bin"
outputs = ["data.bin"]

[[tasks]]
id = "check"
depends_on = ["make"]
shell = "test $(wc -c < \"$FERRY_INPUTS/make/data.bin\") -eq 3000000"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_results_cross_tls_and_untrusting_clients_are_refused() {
    let certs = DevCerts::generate().unwrap();
    let controller = Controller::start(ControllerOpts::default().tls(&certs, false))
        .await
        .unwrap();
    assert!(controller.addr().starts_with("https://"));
    let _agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("tls-agent")
            .arg("--tls-ca")
            .arg(certs.ca().display().to_string()),
    )
    .await
    .unwrap();

    // Upload (agent → controller), input staging (controller → agent) and download (CLI).
    let cli = controller.cli();
    let (job, _) = run_to_success(&cli, HANDOFF_JOB, Duration::from_secs(60)).await;
    let listed = results_by_name(&cli, &job, Some("make")).await;
    let out = TestDir::new("tls-results").unwrap();
    results_get(&cli, &job, "make", out.path(), &[]).await;
    assert_eq!(
        sha256_file(&out.path().join("data.bin")),
        listed["data.bin"]["sha256"].as_str().unwrap()
    );

    // Plain HTTP/2 to the TLS port.
    let plain = Cli::new(controller.addr().replace("https://", "http://")).unwrap();
    let out = plain.run(["jobs", "list"]).await.unwrap();
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("use an https:// URL"), "{out}");

    // TLS without the private CA: the system's trust store does not know it.
    let untrusting = Cli::new(controller.addr()).unwrap();
    let out = untrusting.run(["jobs", "list"]).await.unwrap();
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("certificate"), "{out}");
    // A watch does not keep reconnecting to a controller it cannot trust.
    let out = untrusting.run(["jobs", "watch", &job]).await.unwrap();
    assert_eq!(out.code, 3, "{out}");
    assert!(out.stderr.contains("--tls-ca"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_client_certificates_required_only_holders_of_one_from_the_ca_get_in() {
    let certs = DevCerts::generate_with_agents(&["member"]).unwrap();
    let strangers = DevCerts::generate().unwrap();
    let controller = Controller::start(ControllerOpts::default().tls(&certs, true))
        .await
        .unwrap();

    // An agent that trusts the controller but has no certificate of its own.
    let intruder = RefusedAgent::spawn(
        &controller.addr(),
        "intruder",
        &["--tls-ca".to_owned(), certs.ca().display().to_string()],
    )
    .unwrap();

    let _member = Agent::start(
        &controller.addr(),
        AgentOpts::new("member")
            .arg("--tls-ca")
            .arg(certs.ca().display().to_string())
            .arg("--tls-cert")
            .arg(certs.file("agent-member.pem").display().to_string())
            .arg("--tls-key")
            .arg(certs.file("agent-member.key").display().to_string()),
    )
    .await
    .unwrap();
    let cli = controller.cli();
    run_to_success(
        &cli,
        "name = \"mtls\"\n[[tasks]]\nid = \"t\"\nshell = \"echo ok\"\n",
        Duration::from_secs(30),
    )
    .await;

    intruder
        .log_once_it_says("certificate", Duration::from_secs(10))
        .await;
    assert!(
        cli.agent("intruder").await.unwrap().is_none(),
        "an agent without a certificate was listed"
    );
    drop(intruder);

    // The member's certificate does not make its holder another agent.
    let impostor = RefusedAgent::spawn(
        &controller.addr(),
        "impostor",
        &certs.client(Some("agent-member")).flags(),
    )
    .unwrap();
    impostor
        .log_once_it_says(
            "is not in this agent's certificate",
            Duration::from_secs(10),
        )
        .await;
    assert!(
        cli.agent("impostor").await.unwrap().is_none(),
        "an agent registered under a name its certificate does not hold"
    );
    drop(impostor);

    // A client without a certificate, and one whose certificate another CA signed.
    let without = Cli::new(controller.addr())
        .unwrap()
        .with_global_args(certs.client(None).flags());
    let foreign = certs.client(None).flags().into_iter().chain([
        "--tls-cert".to_owned(),
        strangers.file("client.pem").display().to_string(),
        "--tls-key".to_owned(),
        strangers.file("client.key").display().to_string(),
    ]);
    let stranger = Cli::new(controller.addr())
        .unwrap()
        .with_global_args(foreign);
    for (who, cli) in [("no certificate", without), ("a foreign one", stranger)] {
        let out = cli.run(["jobs", "list"]).await.unwrap();
        assert_eq!(out.code, 3, "a client with {who}: {out}");
        assert!(
            out.stderr.contains("cannot reach controller"),
            "a client with {who}: {out}"
        );
    }
}

#[test]
fn tls_files_that_cannot_be_used_stop_the_start_naming_the_file() {
    let certs = DevCerts::generate().unwrap();
    let scratch = TestDir::new("tls-bad").unwrap();
    let empty = scratch.path().join("empty.pem");
    std::fs::write(&empty, "").unwrap();
    let path = |p: &std::path::Path| p.display().to_string();
    let cert = path(&certs.file("controller.pem"));
    let key = path(&certs.file("controller.key"));
    // A key where a certificate belongs.
    let key_as_cert = scratch.path().join("key-as-cert.pem");
    std::fs::copy(certs.file("controller.key"), &key_as_cert).unwrap();
    let key_as_cert = path(&key_as_cert);
    let cases: Vec<(&str, Vec<String>, String)> = vec![
        (
            CONTROLLER_BIN,
            vec!["--tls-cert".into(), cert.clone()],
            "a certificate and its key go together: tls_cert is set but tls_key is not".into(),
        ),
        (
            CONTROLLER_BIN,
            vec![
                "--tls-cert".into(),
                key_as_cert.clone(),
                "--tls-key".into(),
                key,
            ],
            format!("tls_cert: {key_as_cert}: holds no certificate"),
        ),
        (
            CONTROLLER_BIN,
            vec![
                "--tls-cert".into(),
                cert.clone(),
                "--tls-key".into(),
                cert.clone(),
            ],
            format!("tls_key: {cert}: holds no usable private key"),
        ),
        (
            CONTROLLER_BIN,
            vec!["--tls-client-ca".into(), path(&certs.ca())],
            "tls_client_ca: client certificates need TLS".into(),
        ),
        (
            AGENT_BIN,
            vec![
                "--controller".into(),
                "https://127.0.0.1:9".into(),
                "--tls-ca".into(),
                path(&empty),
            ],
            format!("invalid tls_ca: {}: holds no certificate", path(&empty)),
        ),
        (
            AGENT_BIN,
            vec![
                "--controller".into(),
                "http://127.0.0.1:9".into(),
                "--tls-ca".into(),
                path(&certs.ca()),
            ],
            "invalid tls_ca: TLS settings need an https:// controller".into(),
        ),
    ];
    for (bin, args, expected) in cases {
        // Each stops at its config: the controller never opens a store, the agent never dials.
        let out = Command::new(bin_path(bin))
            .args(&args)
            .current_dir(scratch.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bin} {args:?}: {stderr}");
        assert!(
            stderr.contains(&expected),
            "{bin} {args:?}: expected {expected:?} in:\n{stderr}"
        );
    }

    // No CA file, and a system trust store without any CA (as in a bare container image).
    let out = Command::new(bin_path(AGENT_BIN))
        .args(["--controller", "https://127.0.0.1:9"])
        .env("SSL_CERT_FILE", &empty)
        .env("SSL_CERT_DIR", scratch.path().join("no-certs"))
        .current_dir(scratch.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("invalid tls_ca: the system's trust store holds no CA certificate"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_stalling_in_the_handshake_is_dropped_and_blocks_no_one() {
    use tokio::io::AsyncReadExt;

    let certs = DevCerts::generate().unwrap();
    let controller = Controller::start(ControllerOpts::default().tls(&certs, false))
        .await
        .unwrap();
    let mut stalled = tokio::net::TcpStream::connect(("127.0.0.1", controller.port()))
        .await
        .unwrap();
    let opened = std::time::Instant::now();

    let out = controller.cli().run(["jobs", "list"]).await.unwrap();
    assert_eq!(
        out.code, 0,
        "a stalled handshake held up another client: {out}"
    );

    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(30), stalled.read(&mut buf))
        .await
        .expect("the controller kept a stalled handshake open for 30 s");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let held = opened.elapsed();
    assert!(
        held >= Duration::from_secs(5) && held < Duration::from_secs(20),
        "closed after {held:?}"
    );
}

/// `https://` against a controller without TLS: the CLI and the agent say the controller does
/// not speak TLS on that port (not a rustls `InvalidContentType`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_against_a_plaintext_port_says_the_controller_does_not_speak_tls() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let url = controller.addr().replace("http://", "https://");
    let out = Cli::new(url.clone())
        .unwrap()
        .run(["jobs", "list"])
        .await
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr
            .contains("the controller does not speak TLS on this port")
            && !out.stderr.contains("InvalidContentType"),
        "{out}"
    );
    let agent =
        ferry_tests::RefusedAgent::spawn(&url, "tls-mismatch", &["--queue".into(), "q".into()])
            .unwrap();
    agent
        .log_once_it_says(
            "the controller does not speak TLS on this port",
            Duration::from_secs(20),
        )
        .await;
}
