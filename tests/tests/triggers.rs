//! Webhook triggers (issue 17, item 3): `ferry triggers create` prints a secret once; `POST
//! /hooks/NAME` on the controller's `--http-listen` with a good bearer or a good HMAC starts a
//! run that a real agent completes, with the body's fields as its parameters; a bad secret,
//! a bad signature and an unknown trigger get 401 and start nothing (checked from `pipelines
//! history`); a replayed `Idempotency-Key` answers the same job; a body past the limit 413; a
//! missing or undeclared parameter 400 naming it; a paused pipeline 409. On SQLite, and on
//! PostgreSQL with `FERRY_TEST_STORE=postgres`.

use std::time::Duration;

use ferry_tests::{job::state, Agent, AgentOpts, Cli, Controller, ControllerOpts, TestDir};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WAIT: Duration = Duration::from_secs(60);

/// One HTTP/1.1 request on a connection of its own: the status and the JSON answer.
async fn post(port: u16, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Value) {
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    tcp.write_all(head.as_bytes()).await.unwrap();
    // A server may answer (413) before it reads the whole body, and close.
    let _ = tcp.write_all(body).await;
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer).await;
    let text = String::from_utf8_lossy(&answer);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let doc = serde_json::from_str(body).unwrap_or(Value::Null);
    (status, doc)
}

fn signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

async fn history(cli: &Cli) -> Vec<String> {
    let runs = cli
        .json(["pipelines", "history", "orders-etl"])
        .await
        .unwrap();
    runs.as_array()
        .unwrap()
        .iter()
        .map(|r| r["job_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_start_runs_only_for_the_secrets_holder() {
    let port = ferry_tests::free_port().unwrap();
    let opts = ControllerOpts::default()
        .arg("--http-listen")
        .arg(format!("127.0.0.1:{port}"));
    let controller = Controller::start(opts).await.unwrap();
    let _agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("triggers").unwrap();
    let cli = controller.cli();
    let file = cli
        .write_job(&format!(
            r#"
name = "orders-etl"

[params]
day = {{ type = "date", required = true }}
count = {{ type = "int", default = 1 }}

[[tasks]]
id = "load"
queue = "etl"
shell = '''printf '%s' "$FERRY_PARAM_COUNT" > "{dir}/$FERRY_PARAM_DAY"'''
"#,
            dir = scratch.path().display()
        ))
        .unwrap();
    let out = cli
        .run(["pipelines", "apply", file.to_str().unwrap()])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");

    // A trigger of a pipeline that does not exist is refused by name.
    let out = cli
        .run(["triggers", "create", "x", "--pipeline", "nope"])
        .await
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(out.stderr.contains("\"nope\""), "{out}");

    let created = cli
        .json(["triggers", "create", "orders", "--pipeline", "orders-etl"])
        .await
        .unwrap();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(
        secret.starts_with("fwh_") && secret.len() == 68,
        "{created:#}"
    );
    assert_eq!(created["path"], "/hooks/orders");
    let listed = cli.json(["triggers", "list"]).await.unwrap();
    assert_eq!(listed[0]["name"], "orders", "{listed:#}");
    assert_eq!(listed[0]["pipeline"], "orders-etl");
    assert_eq!(listed[0]["fingerprint"], created["fingerprint"]);
    assert!(
        !listed.to_string().contains(&secret),
        "list shows no secret"
    );

    // A good bearer: 201 and a run with the body's parameters, completed by the agent.
    let bearer = format!("Bearer {secret}");
    let (status, doc) = post(
        port,
        "/hooks/orders",
        &[("Authorization", &bearer)],
        br#"{"day": "2026-12-07"}"#,
    )
    .await;
    assert_eq!(status, 201, "{doc:#}");
    let first = doc["job_id"].as_str().unwrap().to_owned();
    assert_eq!(doc["existing"], false);
    // A good HMAC of the body.
    let body = br#"{"day": "2026-12-08", "count": 5}"#;
    let signed = signature(&secret, body);
    let (status, doc) = post(
        port,
        "/hooks/orders",
        &[("X-Ferry-Signature", &signed)],
        body,
    )
    .await;
    assert_eq!(status, 201, "{doc:#}");
    let second = doc["job_id"].as_str().unwrap().to_owned();
    for id in [&first, &second] {
        let done = cli.wait_job(id, WAIT).await.unwrap();
        assert_eq!(state(&done), "succeeded", "{done:#}");
    }
    let read = |day: &str| std::fs::read_to_string(scratch.path().join(day)).unwrap();
    assert_eq!(read("2026-12-07"), "1", "the default");
    assert_eq!(read("2026-12-08"), "5", "the body's value");
    assert_eq!(history(&cli).await, [second.clone(), first.clone()]);

    // Wrong secrets, a signature of another body, no credentials, an unknown trigger: 401 and
    // nothing started.
    let wrong = format!("Bearer {secret}x");
    let resigned = signature(&secret, b"{}");
    let day = br#"{"day": "2026-12-09"}"#;
    for (path, headers) in [
        ("/hooks/orders", vec![("Authorization", wrong.as_str())]),
        (
            "/hooks/orders",
            vec![("X-Ferry-Signature", resigned.as_str())],
        ),
        ("/hooks/orders", vec![("X-Ferry-Signature", "sha256=00")]),
        ("/hooks/orders", vec![]),
        ("/hooks/nobody", vec![("Authorization", bearer.as_str())]),
    ] {
        let (status, doc) = post(port, path, &headers, day).await;
        assert_eq!(status, 401, "{path} {headers:?}: {doc:#}");
        assert!(!doc.to_string().contains("orders-etl"), "{doc:#}");
    }
    assert_eq!(history(&cli).await.len(), 2, "no run from a refused call");
    let log = controller.log_tail(400);
    assert!(log.contains("webhook refused"), "logged at warn");
    assert!(!log.contains(&secret), "no secret in the log");

    // A replayed idempotency key: the same job, 200.
    let keyed = [
        ("Authorization", bearer.as_str()),
        ("Idempotency-Key", "delivery-1"),
    ];
    let (status, doc) = post(port, "/hooks/orders", &keyed, br#"{"day": "2026-12-10"}"#).await;
    assert_eq!(status, 201, "{doc:#}");
    let third = doc["job_id"].as_str().unwrap().to_owned();
    let (status, doc) = post(port, "/hooks/orders", &keyed, br#"{"day": "2026-12-10"}"#).await;
    assert_eq!(
        (status, doc["job_id"].as_str()),
        (200, Some(third.as_str())),
        "{doc:#}"
    );
    assert_eq!(doc["existing"], true);

    // A body past 1 MiB: 413, named.
    let big = vec![b' '; (1 << 20) + 1];
    let (status, doc) = post(port, "/hooks/orders", &[("Authorization", &bearer)], &big).await;
    assert_eq!(status, 413, "{doc:#}");
    assert!(
        doc["error"].as_str().unwrap().contains("too large"),
        "{doc:#}"
    );
    // Missing, ill-typed and undeclared parameters: 400 naming each.
    for (body, words) in [
        (r#"{}"#, "\"day\""),
        (r#"{"day": "yesterday"}"#, "\"day\""),
        (r#"{"day": "2026-12-11", "colour": "red"}"#, "\"colour\""),
        (r#"{"day": null}"#, "\"day\" is null"),
        (r#"[1]"#, "JSON object"),
    ] {
        let (status, doc) = post(
            port,
            "/hooks/orders",
            &[("Authorization", &bearer)],
            body.as_bytes(),
        )
        .await;
        assert_eq!(status, 400, "{body}: {doc:#}");
        assert!(
            doc["error"].as_str().unwrap().contains(words),
            "{body}: {doc:#}"
        );
    }
    // Paused: 409 naming the pipeline; resumed: runs again.
    let out = cli.run(["pipelines", "pause", "orders-etl"]).await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    let (status, doc) = post(port, "/hooks/orders", &[("Authorization", &bearer)], day).await;
    assert_eq!(status, 409, "{doc:#}");
    assert!(
        doc["error"].as_str().unwrap().contains("orders-etl"),
        "{doc:#}"
    );
    assert_eq!(history(&cli).await.len(), 3, "nothing more started");
    let out = cli
        .run(["pipelines", "resume", "orders-etl"])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    let (status, doc) = post(port, "/hooks/orders", &[("Authorization", &bearer)], day).await;
    assert_eq!(status, 201, "{doc:#}");
    // Deleted, its secret opens nothing.
    let out = cli.run(["triggers", "delete", "orders"]).await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    let (status, _) = post(port, "/hooks/orders", &[("Authorization", &bearer)], day).await;
    assert_eq!(status, 401);
    assert_eq!(cli.json(["triggers", "list"]).await.unwrap(), json!([]));
}
