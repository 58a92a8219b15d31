//! A controller killed with -9 while work is in flight through it: in the middle of a flow of
//! short tasks (some claim, upload or completion is likely under way); in the middle of an
//! upload (which goes on through another controller, into the shared data dir); and, made
//! certain, while a completion's transaction waits on the database after the attempt's outputs
//! were moved to the published area (also with one controller, started again). Every job succeeds and no task runs twice; an attempt may be lost only
//! if it never started (its assignment died with the controller, see "Orphaned assignments" in
//! ARCHITECTURE.md).

use std::{collections::BTreeMap, path::Path, time::Duration};

use ferry_tests::{
    eventually,
    job::{attempts, state, task_state},
    results_fixture::files_with_sizes,
    AgentOpts, Cluster, ControllerOpts, TestDir,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(120);
const TASKS: [&str; 3] = ["extract", "transform", "load"];
const JOBS: usize = 12;

/// extract → transform → load, each writing `JOB TASK ATTEMPT` into `runs` when it starts and
/// passing a small output downstream.
fn short_job(n: usize, runs: &Path) -> String {
    let mark = format!(
        r#"echo "$FERRY_JOB_ID $FERRY_TASK_ID $FERRY_ATTEMPT" >> {}"#,
        runs.display()
    );
    format!(
        r#"
name = "flow-{n}"

[[tasks]]
id = "extract"
queue = "etl"
outputs = ["out.txt"]
shell = '{mark}; echo {n} > out.txt; sleep 0.2'

[[tasks]]
id = "transform"
depends_on = ["extract"]
queue = "etl"
outputs = ["out.txt"]
shell = '{mark}; cat "$FERRY_INPUTS/extract/out.txt" > out.txt; sleep 0.2'

[[tasks]]
id = "load"
depends_on = ["transform"]
queue = "etl"
shell = '{mark}; grep -qx {n} "$FERRY_INPUTS/transform/out.txt"'
"#
    )
}

/// `JOB TASK` → the attempt numbers that started, in the order written.
fn started(path: &Path) -> BTreeMap<String, Vec<u64>> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut runs: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (task, attempt) = line.trim().rsplit_once(' ').unwrap();
        runs.entry(task.to_owned())
            .or_default()
            .push(attempt.parse().unwrap());
    }
    runs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_mid_flow_runs_no_task_twice() {
    let mut cluster = Cluster::start(
        3,
        ControllerOpts::default().agent_timeout(Duration::from_secs(3)),
    )
    .await
    .unwrap();
    let _agents = cluster
        .agent_per_controller(|k| {
            AgentOpts::new(format!("agent-{k}"))
                .queue("etl")
                .max_tasks(3)
        })
        .await
        .unwrap();
    let scratch = TestDir::new("controller-flow").unwrap();
    let runs_file = scratch.path().join("runs");
    let mut ids = Vec::new();
    for n in 0..JOBS {
        let cli = cluster.cli_via(&[n % 3, (n + 1) % 3, (n + 2) % 3]);
        ids.push(cli.submit(&short_job(n, &runs_file)).await.unwrap());
    }
    // Mid-flow: a third of the tasks have started.
    eventually(
        "the flow to be under way",
        Duration::from_secs(60),
        || async {
            let count: usize = started(&runs_file).values().map(Vec::len).sum();
            Ok((count >= JOBS).then_some(()))
        },
    )
    .await
    .unwrap();
    let victim = 1;
    cluster.kill9(victim).unwrap();
    let at_kill: usize = started(&runs_file).values().map(Vec::len).sum();
    eprintln!("killed controller {victim} after {at_kill} task starts");

    let cli = cluster.cli_via(&[0, 2]);
    let mut retried = Vec::new();
    let runs = {
        let mut docs = Vec::new();
        for id in &ids {
            docs.push(cli.wait_job(id, JOB_TIMEOUT).await.unwrap());
        }
        let runs = started(&runs_file);
        for done in &docs {
            assert_eq!(state(done), "succeeded", "{done:#}");
            let id = done["id"].as_str().unwrap();
            for task in TASKS {
                assert_eq!(task_state(done, task), "succeeded", "{done:#}");
                let tries = attempts(done, task);
                let ran = runs
                    .get(&format!("{id} {task}"))
                    .cloned()
                    .unwrap_or_default();
                let last = tries.last().unwrap();
                assert_eq!(
                    ran,
                    [last["number"].as_u64().unwrap()],
                    "{id} {task} started once, as its last attempt: {done:#}"
                );
                if tries.len() > 1 {
                    retried.push(format!("{id} {task}: {} attempts", tries.len()));
                }
                for earlier in &tries[..tries.len() - 1] {
                    assert_eq!(state(earlier), "lost", "{id} {task}: {done:#}");
                }
            }
        }
        runs
    };
    assert_eq!(runs.len(), JOBS * TASKS.len(), "{runs:#?}");
    eprintln!("tasks run again after a lost assignment: {retried:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_killed_inside_a_completion_loses_neither_the_attempt_nor_its_outputs() {
    completion_cut(2).await;
}

/// The same with one controller, started again after its death: the agent sends its
/// completion again to the new process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_restarted_after_dying_inside_a_completion_records_the_attempt() {
    completion_cut(1).await;
}

/// `n` controllers (1 or 2) on one database; the one the agent talks to dies while its
/// completion of `extract` (with an output) waits on the database, after the output was moved
/// to the published area. The completion is sent again to the other controller, or to the
/// same one started again: the attempt is recorded as it ran, once.
async fn completion_cut(n: usize) {
    let mut cluster = Cluster::start(
        n,
        ControllerOpts::default().agent_timeout(Duration::from_secs(5)),
    )
    .await
    .unwrap();
    let order: Vec<usize> = (0..n).collect();
    let agent = cluster
        .agent(&order, AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let victim = cluster
        .connected_controller(&agent, Duration::from_secs(10))
        .await
        .unwrap();
    let scratch = TestDir::new("controller-mid-completion").unwrap();
    let runs_file = scratch.path().join("runs");

    // Writing output rows waits while the test holds this lock: the victim's completion is
    // held inside its transaction (reads go on).
    let mut db = cluster.database().client().await.unwrap();
    let lock = db.transaction().await.unwrap();
    lock.batch_execute("LOCK TABLE outputs IN SHARE MODE")
        .await
        .unwrap();

    let job = format!(
        r#"
name = "mid-completion"

[[tasks]]
id = "extract"
queue = "etl"
outputs = ["out.txt"]
shell = 'echo "$FERRY_ATTEMPT" >> {runs}; echo payload > out.txt'

[[tasks]]
id = "load"
depends_on = ["extract"]
queue = "etl"
shell = 'grep -qx payload "$FERRY_INPUTS/extract/out.txt"'
"#,
        runs = runs_file.display()
    );
    // Another controller, or the victim once it runs again.
    let cli = cluster.cli_via(&[(victim + 1) % n]);
    let id = cli.submit(&job).await.unwrap();
    let probe = cluster.database().client().await.unwrap();
    eventually(
        "the completion to wait on the outputs lock",
        Duration::from_secs(30),
        || async {
            let waiting: i64 = probe
                .query_one(
                    "SELECT count(*) FROM pg_locks \
                     WHERE NOT granted AND relation = 'outputs'::regclass",
                    &[],
                )
                .await?
                .get(0);
            Ok((waiting > 0).then_some(()))
        },
    )
    .await
    .unwrap();
    cluster.kill9(victim).unwrap();
    lock.rollback().await.unwrap();
    if n == 1 {
        cluster.restart(victim).await.unwrap();
    }

    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    let tries = attempts(&done, "extract");
    assert_eq!(
        tries.len(),
        1,
        "the attempt whose completion was cut by the controller's death is recorded by \
         another controller, not failed and run again: {done:#}"
    );
    assert_eq!(state(&tries[0]), "succeeded", "{done:#}");
    let ran = std::fs::read_to_string(&runs_file).unwrap();
    assert_eq!(ran.lines().collect::<Vec<_>>(), ["1"], "extract ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cut_by_its_controllers_death_goes_on_through_another() {
    const SIZE: u64 = 512 << 20;
    let mut cluster = Cluster::start(
        2,
        ControllerOpts::default().agent_timeout(Duration::from_secs(10)),
    )
    .await
    .unwrap();
    let agent = cluster
        .agent(&[0, 1], AgentOpts::new("agent-a").queue("etl"))
        .await
        .unwrap();
    let victim = cluster
        .connected_controller(&agent, Duration::from_secs(10))
        .await
        .unwrap();
    let scratch = TestDir::new("controller-upload-cut").unwrap();
    let sums = scratch.path().join("big.sha256");
    let job = format!(
        r#"
name = "upload-cut"

[[tasks]]
id = "produce"
queue = "etl"
retry = {{ max_attempts = 1 }}
outputs = ["big.bin"]
shell = '''
set -e
truncate -s {SIZE} big.bin
head -c 64 /dev/urandom >> big.bin
sha256sum big.bin > {sums}
'''
"#,
        sums = sums.display()
    );
    let cli = cluster.cli_via(&[1 - victim]);
    let id = cli.submit(&job).await.unwrap();

    // Kill as soon as part of the file has arrived (the shared staging area shows it).
    let staging = cluster.data_dir().join("artifacts").join("staging");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let partial = files_with_sizes(&staging)
            .into_iter()
            .find(|(_, len)| *len > 0 && *len < SIZE + 64);
        if let Some(found) = partial {
            break found;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no partial upload appeared under {} within 60 s",
            staging.display()
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    cluster.kill9(victim).unwrap();
    eprintln!(
        "killed controller {victim} with {} bytes of {} staged",
        partial.1,
        partial.0.display()
    );

    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    assert_eq!(
        attempts(&done, "produce").len(),
        1,
        "the upload went on within the attempt: {done:#}"
    );
    let expected = std::fs::read_to_string(&sums).unwrap()[..64].to_owned();
    let listed = cli.json(["results", "list", &id, "produce"]).await.unwrap();
    assert_eq!(listed[0]["size"], SIZE + 64, "{listed:#}");
    assert_eq!(listed[0]["sha256"], expected.as_str(), "{listed:#}");
}
