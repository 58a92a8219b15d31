//! What confines a task (issue 16, class 4): run as another user (`run_as`), it cannot read the
//! agent's config or token, nor its guardian's environment, its working directory and inputs
//! are its own for the run, and it publishes only its own files; an agent running as root refuses to start without `run_as`
//! (unless `allow_root_tasks`), on a `run_as` user that does not exist, on a secret file that
//! user could read, and on a work directory that user cannot reach; per-process rlimits stop a
//! task past them, the attempt's error naming the limit; a memory hog is stopped by its cgroup's
//! `memory.max` where the memory controller is delegated, else by its address-space rlimit.

use std::{
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ferry_tests::{
    bin_path,
    job::{state, task_state},
    results_fixture::last_error,
    Agent, AgentOpts, Controller, ControllerOpts, TestDir, AGENT_BIN,
};

/// The agent's token.
const TOKEN: &str = "agent-tok3n-c0nf1ne";

/// `id -u nobody` and `id -g nobody`; `None` when this host has no such user or the tests do
/// not run as root (only root can switch users).
fn nobody() -> Option<(u32, u32)> {
    let id = |args: &[&str]| -> Option<u32> {
        let out = Command::new("id").args(args).output().ok()?;
        String::from_utf8(out.stdout).ok()?.trim().parse().ok()
    };
    if id(&["-u"]) != Some(0) {
        eprintln!("skipped: run_as needs the tests to run as root");
        return None;
    }
    Some((id(&["-u", "nobody"])?, id(&["-g", "nobody"])?))
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A directory every user may enter.
fn open_dir(label: &str) -> TestDir {
    let dir = TestDir::new(label).unwrap();
    chmod(dir.path(), 0o755);
    dir
}

/// The `ferry logs` of `task`, standard output then standard error.
async fn logs(controller: &Controller, job: &str, task: &str) -> String {
    let out = controller.cli().run(["logs", job, task]).await.unwrap();
    assert_eq!(out.code, 0, "{out}");
    format!("{}{}", out.stdout, out.stderr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_runs_as_run_as_and_cannot_read_the_agents_secrets() {
    let Some((uid, gid)) = nobody() else { return };
    let dir = open_dir("confine-user");
    let token = dir.path().join("agent.token");
    std::fs::write(&token, format!("{TOKEN}\n")).unwrap();
    chmod(&token, 0o600);
    let config = dir.path().join("agent.toml");
    std::fs::write(&config, "run_as = \"nobody\"\n").unwrap();
    chmod(&config, 0o600);
    let controller = Controller::start(
        ControllerOpts::default()
            .arg("--agent-token-file")
            .arg(token.display().to_string()),
    )
    .await
    .unwrap();
    let agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-nobody")
            .arg("--config")
            .arg(config.display().to_string())
            .arg("--token-file")
            .arg(token.display().to_string()),
    )
    .await
    .unwrap();

    let job = format!(
        r#"
name = "confined"

[[tasks]]
id = "a"
outputs = ["out.txt"]
shell = '''
echo "uid=$(id -u) gid=$(id -g) home=$HOME dir=$(stat -c %u .)"
cat {token} >/dev/null 2>&1 && echo "token: readable" || echo "token: unreadable"
cat {config} >/dev/null 2>&1 && echo "config: readable" || echo "config: unreadable"
cat /proc/$PPID/environ >/dev/null 2>&1 && echo "guardian: readable" || echo "guardian: unreadable"
echo data > out.txt
'''

[[tasks]]
id = "b"
depends_on = ["a"]
shell = '''
cat "$FERRY_INPUTS/a/out.txt"
echo more >> "$FERRY_INPUTS/a/out.txt" && echo "input: writable"
echo "uid=$(id -u)"
'''
"#,
        token = token.display(),
        config = config.display(),
    );
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");

    let a = logs(&controller, &id, "a").await;
    let home = String::from_utf8(
        Command::new("sh")
            .args(["-c", "getent passwd nobody | cut -d: -f6"])
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert!(
        a.contains(&format!(
            "uid={uid} gid={gid} home={} dir={uid}\n",
            home.trim()
        )),
        "{a}"
    );
    for line in [
        "token: unreadable",
        "config: unreadable",
        "guardian: unreadable",
    ] {
        assert!(a.contains(line), "{line:?} missing:\n{a}");
    }
    let b = logs(&controller, &id, "b").await;
    assert!(
        b.contains("data\ninput: writable\n") && b.contains(&format!("uid={uid}\n")),
        "{b}"
    );
    // A file of another user's that the task may write, hard-linked as its output: refused,
    // the agent publishes only the task's own files.
    let shared = dir.path().join("shared.txt");
    std::fs::write(&shared, "root's\n").unwrap();
    chmod(&shared, 0o666);
    let linked = format!(
        "name = \"linked\"\n[[tasks]]\nid = \"l\"\noutputs = [\"out.txt\"]\n\
         retry = {{ max_attempts = 1 }}\nshell = 'ln {} out.txt'\n",
        shared.display()
    );
    let id = cli.submit(&linked).await.unwrap();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert_eq!(state(&done), "failed", "{done:#}");
    let error = last_error(&done, "l");
    assert!(
        error.contains(&format!(
            "output out.txt is not the task's own file (owner uid 0, the task ran as uid {uid})"
        )),
        "{error}"
    );

    // Between runs the attempts' directories are the agent's again, for its eyes only.
    for entry in std::fs::read_dir(agent.work_dir()).unwrap().flatten() {
        if entry.file_name().to_string_lossy().starts_with("attempt-") {
            let meta = entry.metadata().unwrap();
            assert_eq!(
                (meta.uid(), meta.mode() & 0o7777),
                (0, 0o700),
                "{}",
                entry.path().display()
            );
        }
    }
}

/// Runs `ferry-agent ARGS` (root tasks not allowed by the environment) until it exits; its
/// exit code and what it printed.
fn refused(args: &[&str]) -> (Option<i32>, String) {
    let dir = TestDir::new("confine-refused").unwrap();
    let log = dir.path().join("agent.log");
    let mut child = Command::new(bin_path(AGENT_BIN))
        .args(["--controller", "http://127.0.0.1:1", "--name", "refused"])
        .args(args)
        .env_remove("FERRY_ALLOW_ROOT_TASKS")
        .env_remove("FERRY_RUN_AS")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "ferry-agent {args:?} did not refuse to start:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status.code(), std::fs::read_to_string(&log).unwrap())
}

#[test]
fn a_root_agent_refuses_what_would_expose_it() {
    let Some(_) = nobody() else { return };
    let dir = open_dir("confine-refusals");
    let work = dir.path().join("work");
    let work = work.to_str().unwrap();

    // As root, no run_as and no allow_root_tasks: no task would run as root.
    let (code, log) = refused(&["--work-dir", work]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains("runs as root and would run its tasks as root")
            && log.contains("run_as = \"USER[:GROUP]\"")
            && log.contains("allow_root_tasks = true"),
        "{log}"
    );
    // run_as root needs allow_root_tasks too.
    let (code, log) = refused(&["--work-dir", work, "--run-as", "root"]);
    assert_eq!(code, Some(1), "{log}");
    assert!(log.contains("names root"), "{log}");

    // A user that does not exist: a configuration error naming it.
    let (code, log) = refused(&["--work-dir", work, "--run-as", "ferry-no-such-user"]);
    assert_eq!(code, Some(2), "{log}");
    assert!(
        log.contains("invalid run_as: no user named \"ferry-no-such-user\""),
        "{log}"
    );

    // A token the tasks' user could read.
    let token = dir.path().join("agent.token");
    std::fs::write(&token, TOKEN).unwrap();
    chmod(&token, 0o644);
    let token = token.to_str().unwrap();
    let (code, log) = refused(&[
        "--work-dir",
        work,
        "--run-as",
        "nobody",
        "--token-file",
        token,
    ]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "tasks run as nobody could read token_file {token} (readable by every user, mode 644)"
        )) && log.contains(&format!("chmod 600 {token}")),
        "{log}"
    );
    assert!(!log.contains(TOKEN), "{log}");

    // A work directory the tasks' user cannot reach.
    let private = TestDir::new("confine-private").unwrap();
    chmod(private.path(), 0o700);
    let hidden = private.path().join("work");
    let (code, log) = refused(&["--work-dir", hidden.to_str().unwrap(), "--run-as", "nobody"]);
    assert_eq!(code, Some(1), "{log}");
    assert!(
        log.contains(&format!(
            "cannot reach the work directory: {} is not searchable by them",
            private.path().display()
        )),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_stop_a_task_and_its_error_names_the_limit() {
    let dir = TestDir::new("confine-limits").unwrap();
    let config = dir.path().join("agent.toml");
    std::fs::write(
        &config,
        "[rlimits]\nfile_size = \"1MiB\"\ncpu = \"1s\"\naddress_space = \"512MiB\"\nopen_files = 64\n\
         [cgroup]\nmemory_max = \"64MiB\"\n",
    )
    .unwrap();
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let agent = Agent::start(
        &controller.addr(),
        AgentOpts::new("agent-limits")
            .max_tasks(4)
            .arg("--config")
            .arg(config.display().to_string()),
    )
    .await
    .unwrap();
    let task = |id: &str, shell: &str| {
        format!(
            "[[tasks]]\nid = \"{id}\"\nshell = '{shell}'\ntimeout = \"20s\"\n\
             retry = {{ max_attempts = 1 }}\n"
        )
    };
    let job = [
        "name = \"limits\"\n".to_owned(),
        task("big", "head -c 2097152 /dev/zero > big.bin"),
        task("spin", "while :; do :; done"),
        task("hog", "tail /dev/zero"),
        task("fine", "echo fine > small.txt; cat small.txt; ulimit -n"),
    ]
    .join("\n");
    let cli = controller.cli();
    let id = cli.submit(&job).await.unwrap();
    let started = Instant::now();
    let done = cli.wait_job(&id, Duration::from_secs(30)).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(state(&done), "failed", "{done:#}");
    assert_eq!(task_state(&done, "fine"), "succeeded", "{done:#}");
    let fine = logs(&controller, &id, "fine").await;
    assert!(fine.contains("fine\n64\n"), "{fine}");

    let big = last_error(&done, "big");
    assert!(
        big.contains("wrote past the file-size limit (rlimits.file_size = 1 MiB)"),
        "{big}"
    );
    let spin = last_error(&done, "spin");
    assert!(
        spin.contains("used up its CPU time (rlimits.cpu = 1s)"),
        "{spin}"
    );

    // The memory hog: stopped by the cgroup where its memory controller is delegated, else by
    // the address-space limit (allocations fail; tail says so and exits).
    let log = std::fs::read_to_string(agent.log_path()).unwrap();
    let hog = last_error(&done, "hog");
    if log.contains("each attempt's cgroup is limited") {
        assert!(
            hog.contains("out of memory: the attempt's cgroup reached its memory limit (cgroup.memory_max = 64 MiB)"),
            "{hog}"
        );
    } else {
        let said = log
            .matches(
                "the cgroup limits cannot be applied here and are left out; rlimits still apply",
            )
            .count();
        assert_eq!(said, 1, "{log}");
        assert!(hog.contains("rlimits.address_space = 512 MiB"), "{hog}");
        let hog_logs = logs(&controller, &id, "hog").await;
        assert!(hog_logs.contains("memory exhausted"), "{hog_logs}");
    }
}
