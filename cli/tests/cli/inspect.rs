//! Reading a job back: `jobs show --output json`, `logs` on their own streams, and controller
//! errors (refused or unreachable) exiting with code 3.

use crate::fake_controller::{start, Script};
use crate::support::ferry;

#[tokio::test(flavor = "multi_thread")]
async fn controller_errors_exit_3() {
    let (url, _) = start(Script::default()).await;
    let run = ferry(&url, &["jobs", "show", "nope"]).await;
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        format!("error: controller at {url} refused get job: not found: no job \"nope\"\n")
    );

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let run = ferry(&closed, &["queues", "list"]).await;
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        format!("error: cannot reach controller at {closed}: connection refused\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_show_json_is_one_document() {
    let (url, _) = start(Script::default()).await;
    let run = ferry(&url, &["jobs", "show", "job-1", "--output", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(json["state"], "succeeded");
    assert_eq!(json["tasks"][0]["attempts"][0]["agent"], "agent-a");
    assert_eq!(json["finished_at"], "2026-11-18T11:06:41.500Z");
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_go_to_their_own_streams() {
    let (url, _) = start(Script::default()).await;
    let run = ferry(&url, &["logs", "job-1", "greet"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "out 1\nout 2\n");
    assert!(
        run.stderr.starts_with("(earlier output was cut"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.ends_with("err 1\n"), "{}", run.stderr);
}
