//! A submit whose answer is lost: the controller it went to froze (SIGSTOP) before answering.
//! The CLI sends it again to the next controller with the same idempotency key (one of its
//! own, as none was given), and once the first thaws and handles whatever it received, the
//! job exists once.

use std::time::Duration;

use ferry_tests::{eventually, job_id_of, Cluster, ControllerOpts};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const JOB: &str = r#"
name = "lost-answer"

[[tasks]]
id = "only"
shell = "true"
"#;

/// Thaws the frozen controller even when the test fails.
struct Frozen(Pid);

impl Drop for Frozen {
    fn drop(&mut self) {
        let _ = kill(self.0, Signal::SIGCONT);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submit_whose_answer_is_lost_is_accepted_once_through_the_next_controller() {
    let cluster = Cluster::start(2, ControllerOpts::default()).await.unwrap();
    let cli = cluster.cli_via(&[0, 1]);
    let path = cli.write_job(JOB).unwrap();
    let pid = Pid::from_raw(cluster.controller(0).pid().unwrap() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    let frozen = Frozen(pid);
    let out = cli
        .run([
            "submit".as_ref(),
            path.as_os_str(),
            "--answer-timeout".as_ref(),
            "2s".as_ref(),
        ])
        .await
        .unwrap();
    drop(frozen);
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stderr.contains("was lost") && out.stderr.contains("idempotency key"),
        "the CLI says it sent the job again: {out}"
    );
    let id = job_id_of(&out).unwrap();

    // Controller 0 answers again, having handled (or dropped) the copy it was sent.
    let first = cluster.cli_via(&[0]);
    eventually(
        "controller 0 to answer",
        Duration::from_secs(20),
        || async { Ok(first.jobs().await.ok()) },
    )
    .await
    .unwrap();
    let jobs = first.jobs().await.unwrap();
    let named: Vec<&serde_json::Value> =
        jobs.iter().filter(|j| j["name"] == "lost-answer").collect();
    assert_eq!(named.len(), 1, "accepted once: {jobs:#?}");
    assert_eq!(named[0]["id"], id.as_str());
}
