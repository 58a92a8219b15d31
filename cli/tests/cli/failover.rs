//! Several controllers: a call goes to the first that can be reached, exit 3 names every one
//! tried when none can, and `jobs watch` / `logs --follow` pick up on the next controller when
//! their stream breaks.

use ferry_proto::v1::JobState;

use crate::fake_controller::{start, Script};
use crate::support::{example, ferry};

/// The URLs of `n` loopback ports nothing listens on.
fn closed_urls(n: usize) -> Vec<String> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_first_controller_is_skipped() {
    let (url, fake) = start(Script::default()).await;
    let closed = closed_urls(1).remove(0);
    let hello = example("hello.toml");
    let run = ferry(&format!("{closed},{url}"), &["submit", &hello]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "job-1\n"),
        "{}",
        run.stderr
    );
    assert_eq!(fake.0.lock().unwrap().submits.len(), 1);

    // The same list from FERRY_CONTROLLER, and the flag repeated.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["jobs", "show", "job-1", "--output", "json"])
        .env("FERRY_CONTROLLER", format!("{closed}, {url}"))
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "--controller",
            &closed,
            "--controller",
            &url,
            "queues",
            "list",
        ])
        .env_remove("FERRY_CONTROLLER")
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn none_reachable_exits_3_naming_every_controller() {
    let urls = closed_urls(2);
    let run = ferry(&urls.join(","), &["jobs", "list"]).await;
    assert_eq!(run.code, 3);
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot reach any controller: {} (connection refused), {} (connection \
             refused)\n",
            urls[0], urls[1]
        )
    );
    let run = ferry(&format!("{},ftp://x", urls[0]), &["jobs", "list"]).await;
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("\"ftp://x\""), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_moves_to_the_next_controller_when_its_stream_breaks() {
    let (a_url, a) = start(Script {
        break_first_watch: true,
        ..Script::default()
    })
    .await;
    let (b_url, b) = start(Script {
        final_state: Some(JobState::Succeeded),
        ..Script::default()
    })
    .await;
    let run = ferry(&format!("{a_url},{b_url}"), &["jobs", "watch", "job-1"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr
            .contains(&format!("reconnected to the controller at {b_url}")),
        "{}",
        run.stderr
    );
    assert_eq!(a.0.lock().unwrap().watches, 1);
    assert_eq!(b.0.lock().unwrap().watches, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_follow_resumes_on_the_next_controller_without_repeating() {
    let (a_url, a) = start(Script {
        break_logs_after: Some(2),
        logs_whole: true,
        ..Script::default()
    })
    .await;
    let (b_url, b) = start(Script {
        logs_whole: true,
        ..Script::default()
    })
    .await;
    let run = ferry(
        &format!("{a_url},{b_url}"),
        &["logs", "job-1", "greet", "--follow"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout, "out 1\nout 2\n");
    assert_eq!(run.stderr.matches("err 1\n").count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("reconnecting"), "{}", run.stderr);
    assert_eq!(a.0.lock().unwrap().log_requests.len(), 1);
    let b = b.0.lock().unwrap();
    assert_eq!(b.log_requests.len(), 1);
    assert_eq!(
        b.log_requests[0].attempt, 1,
        "the attempt is pinned once known"
    );
}
