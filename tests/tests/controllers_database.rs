//! Controllers and their PostgreSQL server: a server restarted mid-run (down for a moment)
//! loses no accepted job (the controllers reconnect), and a controller refuses a database whose schema is newer
//! than it knows, naming both versions.

use std::{collections::BTreeMap, path::Path, time::Duration};

use ferry_tests::{
    eventually,
    job::{attempts, state, task_state},
    AgentOpts, Cli, CliOutput, Cluster, Controller, ControllerOpts, PgServer, TestDir,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the PostgreSQL server is down in the restart test (a `pg_ctl restart` takes well
/// under a second; this makes sure that calls meet the outage).
const OUTAGE: Duration = Duration::from_secs(2);

/// One task that writes `JOB ATTEMPT` into `runs` when it starts, then sleeps.
fn job(name: &str, runs: &Path) -> String {
    format!(
        r#"
name = "{name}"

[[tasks]]
id = "only"
queue = "etl"
shell = 'echo "$FERRY_JOB_ID $FERRY_ATTEMPT" >> {runs}; sleep 1'
"#,
        runs = runs.display()
    )
}

/// Submits jobs one after the other until `stop` says so: the ids of those accepted (the CLI
/// printed an id), and the refusals.
async fn submit_until(
    cli: &Cli,
    runs: &Path,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (Vec<String>, Vec<CliOutput>) {
    let mut accepted = Vec::new();
    let mut refused = Vec::new();
    let mut n = 0;
    // At most 30, so that the jobs left to run stay few.
    while !*stop.borrow() && n < 30 {
        let path = cli.write_job(&job(&format!("during-{n}"), runs)).unwrap();
        let out = cli
            .run(["submit".as_ref(), path.as_os_str()])
            .await
            .unwrap();
        if out.code == 0 {
            accepted.push(ferry_tests::job_id_of(&out).unwrap());
        } else {
            refused.push(out);
        }
        n += 1;
    }
    (accepted, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_jobs_survive_a_postgresql_restart() {
    let mut server = PgServer::start().await.unwrap();
    // A generous agent timeout: the restart must not be taken for the agents' death.
    let cluster = Cluster::start_on(
        &server.admin_url(),
        2,
        ControllerOpts::default().agent_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let _agents = [
        cluster
            .agent(&[0, 1], AgentOpts::new("agent-0").queue("etl").max_tasks(2))
            .await
            .unwrap(),
        cluster
            .agent(&[1, 0], AgentOpts::new("agent-1").queue("etl").max_tasks(2))
            .await
            .unwrap(),
    ];
    let scratch = TestDir::new("postgres-restart").unwrap();
    let runs_file = scratch.path().join("runs");
    let cli = cluster.cli();
    let mut ids = Vec::new();
    for n in 0..6 {
        ids.push(
            cli.submit(&job(&format!("before-{n}"), &runs_file))
                .await
                .unwrap(),
        );
    }
    // Mid-run: some task has started.
    eventually("a task to start", Duration::from_secs(30), || async {
        Ok(runs_file.exists().then_some(()))
    })
    .await
    .unwrap();

    // Jobs keep coming in through controller 1 while the server restarts.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let during_cli = cluster.cli_via(&[1]);
    let during = submit_until(&during_cli, &runs_file, stopped);
    let restart = async {
        server.stop().await.unwrap();
        // How long the database stays down: the scenario, not a wait for something.
        tokio::time::sleep(OUTAGE).await;
        server.start_again().await.unwrap();
        stop.send(true).unwrap();
    };
    let ((accepted, refused), ()) = tokio::join!(during, restart);
    eprintln!(
        "during the restart: {} submits accepted, {} refused",
        accepted.len(),
        refused.len()
    );
    for out in &refused {
        assert_eq!(
            out.code, 3,
            "a submit refused for the outage exits 3: {out}"
        );
    }
    ids.extend(accepted);
    for n in 0..3 {
        ids.push(
            cli.submit(&job(&format!("after-{n}"), &runs_file))
                .await
                .unwrap(),
        );
    }

    let listed = cli.jobs().await.unwrap();
    for id in &ids {
        assert!(
            listed.iter().any(|j| j["id"] == id.as_str()),
            "accepted job {id} missing after the restart: {listed:#?}"
        );
    }
    let mut want = BTreeMap::new();
    for id in &ids {
        let done = cli.wait_job(id, JOB_TIMEOUT).await.unwrap();
        assert_eq!(state(&done), "succeeded", "job {id}: {done:#}");
        assert_eq!(task_state(&done, "only"), "succeeded", "{done:#}");
        let tries = attempts(&done, "only");
        assert_eq!(tries.len(), 1, "job {id} ran once: {done:#}");
        want.insert(format!("{id} 1"), 1);
    }
    let text = std::fs::read_to_string(&runs_file).unwrap();
    let mut counted = BTreeMap::new();
    for line in text.lines() {
        *counted.entry(line.to_owned()).or_insert(0) += 1;
    }
    assert_eq!(counted, want, "each accepted job's task ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_refuses_a_schema_newer_than_it_knows() {
    let cluster = Cluster::start(1, ControllerOpts::default()).await.unwrap();
    let db = cluster.database().client().await.unwrap();
    let known: i64 = db
        .query_one("SELECT max(version) FROM ferry_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert!(known < 999, "the schema is already at {known}");
    db.execute(
        "INSERT INTO ferry_schema_migrations (version, name, applied_at) \
         VALUES (999, 'from_the_future', 0)",
        &[],
    )
    .await
    .unwrap();

    let (status, log) = Controller::start_refused(
        ControllerOpts::default().store(cluster.database().url()),
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert!(
        !status.success(),
        "a newer schema must stop the start: {status}\n{log}"
    );
    // The line that names the database's version must name the controller's too.
    let named_both = log.lines().skip(1).any(|line| {
        let numbers: Vec<&str> = line
            .split(|c: char| !c.is_ascii_digit())
            .filter(|s| !s.is_empty())
            .collect();
        numbers.contains(&"999") && numbers.contains(&known.to_string().as_str())
    });
    assert!(
        named_both,
        "the refusal names the database's version (999) and the controller's ({known}):\n{log}"
    );
    // Nothing was changed: the database still says 999, and the running controller serves.
    let newest: i64 = db
        .query_one("SELECT max(version) FROM ferry_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(newest, 999);
    cluster.cli().jobs().await.unwrap();
}
