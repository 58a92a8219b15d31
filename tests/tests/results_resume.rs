//! An upload interrupted by `kill -9` of the controller resumes after the restart from what
//! the controller had kept, instead of starting over: the job succeeds and the file is whole.

use std::time::{Duration, Instant};

use ferry_tests::{
    job::state,
    results_fixture::{files_with_sizes, sha256_file, GIB},
    Agent, AgentOpts, Controller, ControllerOpts, TestDir,
};

/// Whether a log line says an upload resumed from a nonzero offset: it mentions "resum" and
/// carries a `key=N` field with N > 0 (`from=123456`).
fn resumed_from_nonzero(line: &str) -> bool {
    line.to_lowercase().contains("resum")
        && line.split_whitespace().any(|field| {
            field
                .split_once('=')
                .and_then(|(_, v)| v.trim_matches('"').parse::<u64>().ok())
                .is_some_and(|n| n > 0)
        })
}

#[test]
fn resume_lines_are_recognised() {
    assert!(resumed_from_nonzero(
        "2026-01-01T00:00:00Z DEBUG ferry_agent::upload: resuming upload output=big.bin from=4194304"
    ));
    assert!(!resumed_from_nonzero(
        "DEBUG resuming upload output=big.bin from=0"
    ));
    assert!(!resumed_from_nonzero("INFO output uploaded size=5"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_interrupted_by_a_controller_kill9_resumes_after_the_restart() {
    // A generous agent timeout: the restart must not be taken for the agent's death.
    let mut controller =
        Controller::start(ControllerOpts::default().agent_timeout(Duration::from_secs(10)))
            .await
            .unwrap();
    let agent = Agent::start(&controller.addr(), AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let scratch = TestDir::new("upload-resume").unwrap();
    let sums = scratch.path().join("big.sha256");
    let job = format!(
        r#"
name = "resume"

[[tasks]]
id = "produce"
queue = "etl"
retry = {{ max_attempts = 1 }}
outputs = ["big.bin"]
shell = '''
set -e
truncate -s {GIB} big.bin
head -c 64 /dev/urandom >> big.bin
sha256sum big.bin > {sums}
'''
"#,
        sums = sums.display()
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();

    // Watch the staging area closely: kill as soon as part of the file has arrived.
    let staging = controller.data_dir().join("artifacts").join("staging");
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let partial = files_with_sizes(&staging)
            .into_iter()
            .find(|(_, len)| *len > 0 && *len < GIB + 64);
        if let Some(found) = partial {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no partial upload appeared under {} within 60 s; job: {:#}",
            staging.display(),
            cli.show(&id).await.unwrap()
        );
        std::thread::sleep(Duration::from_millis(2));
    };
    controller.kill9().unwrap();
    eprintln!(
        "killed the controller with {} bytes of {} staged",
        partial.1,
        partial.0.display()
    );
    controller.restart().await.unwrap();

    let done = cli.wait_job(&id, Duration::from_secs(90)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    let tries = done["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(
        tries.len(),
        1,
        "the upload resumed within the attempt: {done:#}"
    );

    let expected = std::fs::read_to_string(&sums).unwrap()[..64].to_owned();
    let listed = cli.json(["results", "list", &id, "produce"]).await.unwrap();
    assert_eq!(listed[0]["name"], "big.bin", "{listed:#}");
    assert_eq!(listed[0]["size"], GIB + 64, "{listed:#}");
    assert_eq!(listed[0]["sha256"], expected.as_str(), "{listed:#}");
    let into = scratch.path().join("into");
    let out = cli
        .run([
            "results".as_ref(),
            "get".as_ref(),
            id.as_ref(),
            "produce".as_ref(),
            "-o".as_ref(),
            into.as_os_str(),
        ])
        .await
        .unwrap();
    assert_eq!(out.code, 0, "{out}");
    assert_eq!(sha256_file(&into.join("big.bin")), expected);

    let log = std::fs::read_to_string(agent.log_path()).unwrap();
    let resumed: Vec<&str> = log.lines().filter(|l| resumed_from_nonzero(l)).collect();
    assert!(
        !resumed.is_empty(),
        "the agent's log shows no upload resumed from a nonzero offset; lines with \"resum\":\n{}",
        log.lines()
            .filter(|l| l.to_lowercase().contains("resum"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}
