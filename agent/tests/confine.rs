//! A guardian confines its task (the real `ferry-agent` binary as guardian): the task runs as
//! the spec's user and groups under its rlimits, set in the child before exec, and a start that
//! fails as that user says which step failed. Needs root (skipped otherwise).

use std::{
    fs::File,
    os::{fd::OwnedFd, unix::fs::PermissionsExt},
    path::{Path, PathBuf},
    time::Duration,
};

use ferry_agent::{
    clock::boot_now,
    guard::{
        confine::{Confine, Creds, Resource, Rlimit},
        protocol::{Ending, FromGuard, Spec},
        Guards,
    },
};

const FAR: Duration = Duration::from_secs(600);

fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        eprintln!("skipped: switching users needs root");
    }
    root
}

fn confined(dir: &Path, command: &str) -> Spec {
    Spec {
        label: "j/t/1".into(),
        lease_end: boot_now() + FAR,
        agent_timeout: FAR,
        kill_grace: Duration::from_secs(5),
        timeout: None,
        cgroup_parent: None,
        records: None,
        cwd: dir.to_owned(),
        argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
        env: vec![("PATH".into(), "/usr/bin:/bin".into())],
        confine: Confine {
            user: Some(Creds {
                uid: 54321,
                gid: 54322,
                groups: vec![54322, 54323],
            }),
            rlimits: vec![
                Rlimit::new(Resource::OpenFiles, 32),
                Rlimit::new(Resource::FileSize, 1 << 20),
            ],
            ..Confine::default()
        },
    }
}

/// Runs `spec` to its end under a fresh guardian; what the guardian said last, and what the
/// task wrote to its standard output.
async fn run(spec: Spec, out: &Path) -> (FromGuard, String) {
    let guards = Guards::new(
        PathBuf::from(env!("CARGO_BIN_EXE_ferry-agent")),
        1,
        None,
        None,
        None,
    )
    // The guards set every spec's confinement.
    .confining(spec.confine.clone());
    let stdout: OwnedFd = File::create(out).unwrap().into();
    let stderr: OwnedFd = File::options()
        .write(true)
        .open("/dev/null")
        .unwrap()
        .into();
    let mut guarded = guards.spawn(spec, stdout, stderr).await.unwrap();
    let (mut rx, _tx) = guarded.split();
    let last = loop {
        match rx.recv().await.unwrap() {
            Some(FromGuard::Started { .. }) => {}
            Some(msg) => break msg,
            None => panic!("the guardian ended without a word"),
        }
    };
    (last, std::fs::read_to_string(out).unwrap_or_default())
}

#[tokio::test]
async fn a_task_runs_as_its_user_under_its_rlimits() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    std::os::unix::fs::chown(&work, Some(54321), Some(54322)).unwrap();
    let command = "id -u; id -g; id -G; ulimit -n; touch mine; stat -c %u:%g mine";
    let (last, out) = run(confined(&work, command), &tmp.path().join("out")).await;
    assert_eq!(last, FromGuard::Ended(Ending::Exited(0)), "{out}");
    assert_eq!(out, "54321\n54322\n54322 54323\n32\n54321:54322\n");
}

#[tokio::test]
async fn a_start_that_fails_as_the_tasks_user_says_which_step() {
    if !is_root() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let private = tmp.path().join("private");
    std::fs::create_dir(&private).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let (last, _) = run(confined(&private, "true"), &tmp.path().join("out")).await;
    let FromGuard::Failed(error) = last else {
        panic!("expected a failed start, got {last:?}");
    };
    assert!(
        error.contains(&format!(
            "cannot enter the working directory {} as uid 54321: Permission denied",
            private.display()
        )),
        "{error}"
    );
}
