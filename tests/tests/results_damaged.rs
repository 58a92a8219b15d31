//! Results are verified by their readers: bytes changed on the controller's disk after
//! publication are refused by `ferry results get` and by a downstream task's input staging.

use std::time::Duration;

use ferry_tests::{
    job::{state, task_state},
    results_fixture::{agent_on, files_under, last_error},
    Controller, ControllerOpts, TestDir,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

/// The controller records the SHA-256 the agent computed at the source and does not hash the
/// bytes again; every reader verifies it. Bytes damaged on the controller's disk after
/// publication are thus refused by `results get` (nothing left behind) and by the staging of a
/// downstream task's inputs (the attempt fails naming the input).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bytes_damaged_on_the_controllers_disk_are_refused_by_every_reader() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let _onprem = agent_on(&controller, "agent-onprem", "onprem").await;
    let job = r#"
name = "damaged"

[[tasks]]
id = "extract"
queue = "onprem"
retry = { max_attempts = 1 }
outputs = ["out.csv"]
shell = "printf 'id,city\n1,lyon\n' > out.csv"

[[tasks]]
id = "load"
depends_on = ["extract"]
queue = "cloud"
retry = { max_attempts = 1 }
shell = "cat \"$FERRY_INPUTS/extract/out.csv\""
"#;
    let cli = controller.cli();
    let id = cli.submit(job).await.unwrap();
    ferry_tests::eventually("extract to succeed", JOB_TIMEOUT, || async {
        let doc = cli.show(&id).await?;
        Ok((task_state(&doc, "extract") == "succeeded").then_some(()))
    })
    .await
    .unwrap();

    // Same size, one byte changed.
    let published = controller
        .data_dir()
        .join("artifacts/published")
        .join(&id)
        .join("extract/1/out.csv");
    let mut bytes = std::fs::read(&published).unwrap();
    assert_eq!(bytes, b"id,city\n1,lyon\n");
    bytes[0] = b'I';
    std::fs::write(&published, &bytes).unwrap();

    let scratch = TestDir::new("damaged").unwrap();
    let into = scratch.path().join("downloads");
    let dir = into.display().to_string();
    let out = cli
        .run(["results", "get", &id, "extract", "-o", &dir])
        .await
        .unwrap();
    assert_ne!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("checksum mismatch for out.csv"),
        "{out}"
    );
    assert!(
        !into.exists() || files_under(&into).is_empty(),
        "nothing left behind: {:?}",
        files_under(&into)
    );

    let _cloud = agent_on(&controller, "agent-cloud", "cloud").await;
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let error = last_error(&done, "load");
    assert!(
        error.contains("extract/out.csv") && error.contains("checksum mismatch"),
        "{error}"
    );
}
