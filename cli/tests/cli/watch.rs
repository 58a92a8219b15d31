//! `submit --wait` and `jobs watch`: progress on stderr, the exit code by outcome, and
//! reconnecting when the stream breaks.

use ferry_proto::v1::JobState;

use crate::fake_controller::{start, Script};
use crate::support::{example, ferry};

#[tokio::test(flavor = "multi_thread")]
async fn submit_wait_reports_progress_on_stderr_and_exits_by_outcome() {
    let (url, _) = start(Script::default()).await;
    let hello = example("hello.toml");
    let run = ferry(&url, &["--output", "json", "submit", &hello, "--wait"]).await;
    // With --output json, standard output is one document: the job id with the submit's
    // warnings (none here); progress stays on standard error.
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (
            0,
            "{\"job_id\":\"job-1\",\"existing\":false,\"warnings\":[]}\n"
        ),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("0/1 done · running: greet@agent-a (attempt 1)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("job hello job-1 succeeded in 1.5s"),
        "{}",
        run.stderr
    );

    let (url, _) = start(Script {
        final_state: Some(JobState::Failed),
        ..Script::default()
    })
    .await;
    let run = ferry(&url, &["jobs", "watch", "job-1"]).await;
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("task greet failed after 1 attempt: exit code 2"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_reconnects_when_the_stream_breaks() {
    let (url, fake) = start(Script {
        break_first_watch: true,
        ..Script::default()
    })
    .await;
    let run = ferry(&url, &["jobs", "watch", "job-1"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("reconnecting"), "{}", run.stderr);
    assert_eq!(fake.0.lock().unwrap().watches, 2);
}
