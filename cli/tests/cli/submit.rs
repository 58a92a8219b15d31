//! `ferry submit`: what it prints and sends (params, backfills), and invalid input refused
//! with exit code 2 before any call.

use tonic::Status;

use crate::fake_controller::{start, Script};
use crate::support::{example, ferry};

#[tokio::test(flavor = "multi_thread")]
async fn submit_prints_only_the_id_and_sends_overridden_params() {
    let (url, fake) = start(Script::default()).await;
    let hello = example("hello.toml");
    let run = ferry(&url, &["submit", &hello, "--param", "who=ferry"]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "job-1\n"),
        "{}",
        run.stderr
    );
    let script = fake.0.lock().unwrap();
    let spec = script.submits[0].spec.as_ref().unwrap();
    assert_eq!(spec.name, "hello");
    assert_eq!(spec.params["who"], "ferry");
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_sends_backfills_and_refuses_bad_ones_before_any_call() {
    let (url, fake) = start(Script::default()).await;
    let hello = example("hello.toml");
    let run = ferry(
        &url,
        &[
            "submit",
            &hello,
            "--backfill",
            "greet=2026-01-01..2026-02-01",
            "--backfill",
            "other=..7",
        ],
    )
    .await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (0, "job-1\n"),
        "{}",
        run.stderr
    );
    {
        let script = fake.0.lock().unwrap();
        let backfill = &script.submits[0].backfill;
        assert_eq!(backfill.len(), 2);
        assert_eq!(backfill["greet"].from.as_deref(), Some("2026-01-01"));
        assert_eq!(backfill["greet"].until, "2026-02-01");
        assert_eq!(backfill["other"].from, None);
        assert_eq!(backfill["other"].until, "7");
    }
    for bad in [
        "greet",
        "greet=5",
        "greet=5..",
        "greet=1..2 --backfill greet=3..4",
    ] {
        let mut args = vec!["submit", hello.as_str()];
        for part in format!("--backfill {bad}").split(' ') {
            args.push(Box::leak(part.to_owned().into_boxed_str()));
        }
        let run = ferry(&url, &args).await;
        assert_eq!(run.code, 2, "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--backfill"), "{bad}: {}", run.stderr);
        assert_eq!(run.stdout, "");
    }
    assert_eq!(fake.0.lock().unwrap().submits.len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_input_exits_2_before_any_call() {
    let (url, fake) = start(Script {
        submit_error: Some(Status::invalid_argument("queue \"gpu\" has no agents")),
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "name = \"x\"\n[[tasks]]\nid = \"a\"\ntimeout = \"10 parsecs\"\n",
    )
    .unwrap();
    let bad = bad.display().to_string();
    let run = ferry(&url, &["submit", &bad]).await;
    assert_eq!(run.code, 2);
    assert_eq!(run.stdout, "");
    assert!(
        run.stderr.starts_with("error: invalid job file"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(&format!(
            "{bad}:4:11: bad duration \"10 parsecs\" for timeout"
        )),
        "{}",
        run.stderr
    );
    assert!(fake.0.lock().unwrap().submits.is_empty());

    let run = ferry(&url, &["submit", &example("hello.toml"), "--param", "who"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);

    let run = ferry(&url, &["submit", &example("hello.toml")]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert_eq!(
        run.stderr,
        format!("error: controller at {url} rejected submit job: queue \"gpu\" has no agents\n")
    );
}
