//! Controllers of one PostgreSQL database dying under load: an agent whose controller is
//! killed with -9 moves to another and keeps its running tasks (none lost, none run twice); a
//! dead agent's task is requeued even when the controller holding the reaper role was killed
//! just before.

use std::{collections::BTreeMap, path::Path, time::Duration};

use ferry_proto::v1::GetJobRequest;
use ferry_tests::{
    eventually,
    job::{attempts, state, task_state},
    job_client, now_ms, AgentOpts, Cluster, ControllerOpts, TestDir,
};

const JOB_TIMEOUT: Duration = Duration::from_secs(90);

/// Two chained tasks that each write `JOB TASK ATTEMPT` into `runs` when they start, then
/// sleep: a task run twice shows as two lines.
fn sleepy_job(n: usize, runs: &Path) -> String {
    let step = format!(
        r#"echo "$FERRY_JOB_ID $FERRY_TASK_ID $FERRY_ATTEMPT" >> {}; sleep 3"#,
        runs.display()
    );
    format!(
        r#"
name = "sleepy-{n}"

[[tasks]]
id = "first"
queue = "etl"
shell = '{step}'

[[tasks]]
id = "second"
depends_on = ["first"]
queue = "etl"
shell = '{step}'
"#
    )
}

/// The `runs` file's lines, counted.
fn runs(path: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut counts = BTreeMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        *counts.entry(line.trim().to_owned()).or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_whose_controller_is_killed_keeps_its_tasks_on_another() {
    // A generous agent timeout: moving to another controller is not a death.
    let mut cluster = Cluster::start(
        3,
        ControllerOpts::default().agent_timeout(Duration::from_secs(8)),
    )
    .await
    .unwrap();
    let mut agents = Vec::new();
    for (i, order) in [[0, 1, 2], [1, 2, 0]].iter().enumerate() {
        let opts = AgentOpts::new(format!("agent-{i}"))
            .queue("etl")
            .max_tasks(2);
        agents.push(cluster.agent(order, opts).await.unwrap());
    }
    let scratch = TestDir::new("controller-failover").unwrap();
    let runs_file = scratch.path().join("runs");
    let cli = cluster.cli();
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(cli.submit(&sleepy_job(n, &runs_file)).await.unwrap());
    }

    // agent-0's controller dies while agent-0 runs tasks (their processes have started).
    let watched = &agents[0];
    let victim = cluster
        .connected_controller(watched, Duration::from_secs(10))
        .await
        .unwrap();
    let running = eventually("agent-0 to run tasks", Duration::from_secs(30), || async {
        let started = runs(&runs_file);
        let mut running = Vec::new();
        for id in &ids {
            let doc = cli.show(id).await?;
            for task in ["first", "second"] {
                let on_it = attempts(&doc, task)
                    .iter()
                    .any(|a| a["agent"] == watched.name() && state(a) == "running");
                if on_it && started.contains_key(&format!("{id} {task} 1")) {
                    running.push(format!("{id} {task}"));
                }
            }
        }
        Ok((!running.is_empty()).then_some(running))
    })
    .await
    .unwrap();
    cluster.kill9(victim).unwrap();
    eprintln!("killed controller {victim} while agent-0 ran {running:?}");

    // The CLI given the dead controller first still answers, through the next.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != victim).collect();
    let via_dead = cluster.cli_via(&[victim, survivors[0], survivors[1]]);
    for id in &ids {
        let done = via_dead.wait_job(id, JOB_TIMEOUT).await.unwrap();
        assert_eq!(state(&done), "succeeded", "{done:#}");
        for task in ["first", "second"] {
            assert_eq!(task_state(&done, task), "succeeded", "{done:#}");
            let tries = attempts(&done, task);
            assert_eq!(
                tries.len(),
                1,
                "{id} {task}: one attempt, none lost to the controller's death \
                 (running on agent-0 when controller {victim} was killed: {running:?}): \
                 {done:#}"
            );
            assert_eq!(state(&tries[0]), "succeeded", "{done:#}");
        }
    }
    let counted = runs(&runs_file);
    let mut want = BTreeMap::new();
    for id in &ids {
        for task in ["first", "second"] {
            want.insert(format!("{id} {task} 1"), 1);
        }
    }
    assert_eq!(counted, want, "each task ran once, as attempt 1");

    // agent-0 carries on with a live controller.
    let now_on = cluster
        .connected_controller(watched, Duration::from_secs(10))
        .await
        .unwrap();
    assert_ne!(
        now_on, victim,
        "agent-0 is still connected to the dead controller"
    );
    let listed = cluster
        .cli_via(&[now_on])
        .agent(watched.name())
        .await
        .unwrap();
    let listed = listed.unwrap_or_else(|| panic!("{} not listed", watched.name()));
    assert_eq!(state(&listed), "ready", "{listed:#}");
}

const AGENT_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_agents_task_is_requeued_after_the_reaper_holder_is_killed() {
    let mut cluster = Cluster::start(3, ControllerOpts::default().agent_timeout(AGENT_TIMEOUT))
        .await
        .unwrap();
    let holder = eventually(
        "a controller to take the reaper role",
        Duration::from_secs(20),
        || async { Ok(cluster.role_holder("reaper")) },
    )
    .await
    .unwrap();
    let scratch = TestDir::new("reaper-failover").unwrap();
    let flag = scratch.path().join("flag");
    let starts = scratch.path().join("starts");
    // Waits (a minute at most, so that the killed agent's orphan ends too) for the flag.
    let job = format!(
        r#"
name = "orphaned"

[[tasks]]
id = "only"
queue = "etl"
retry = {{ max_attempts = 3, initial_delay = "100ms" }}
shell = '''
echo "$FERRY_ATTEMPT" >> {starts}
i=0
while [ ! -f {flag} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
[ -f {flag} ]
'''
"#,
        starts = starts.display(),
        flag = flag.display()
    );
    let order: Vec<usize> = (0..3).collect();
    let mut doomed = cluster
        .agent(&order, AgentOpts::new("agent-doomed").queue("etl"))
        .await
        .unwrap();
    let cli = cluster.cli();
    let id = cli.submit(&job).await.unwrap();
    eventually("attempt 1 to start", Duration::from_secs(20), || async {
        let doc = cli.show(&id).await?;
        let started = std::fs::read_to_string(&starts).unwrap_or_default();
        let running = attempts(&doc, "only")
            .iter()
            .any(|a| a["number"] == 1 && state(a) == "running");
        Ok((running && started.lines().any(|l| l == "1")).then_some(()))
    })
    .await
    .unwrap();
    // Only now does a second agent join: attempt 1 could only go to the doomed one.
    let heir_order: Vec<usize> = (0..3).rev().collect();
    let heir = cluster
        .agent(&heir_order, AgentOpts::new("agent-heir").queue("etl"))
        .await
        .unwrap();

    cluster.kill9(holder).unwrap();
    doomed.kill9().unwrap();
    let killed_at = now_ms();

    let survivor = (holder + 1) % 3;
    let record = job_client(&cluster.addr(survivor)).await.unwrap();
    let bound = AGENT_TIMEOUT + Duration::from_secs(5);
    let second = eventually(
        "attempt 2 to start",
        bound + Duration::from_secs(20),
        || async {
            let job = record
                .clone()
                .get_job(GetJobRequest { job_id: id.clone() })
                .await?
                .into_inner();
            Ok(job.tasks[0].attempts.get(1).cloned())
        },
    )
    .await
    .unwrap();
    let waited = second.started_at_ms - killed_at;
    eprintln!("killed reaper holder {holder}, then the agent; attempt 2 started {waited} ms later");
    assert!(
        waited <= bound.as_millis() as i64,
        "attempt 2 started {waited} ms after the agent's kill (reaper holder, controller \
         {holder}, killed just before): more than agent timeout + 5 s; {second:#?}"
    );
    assert_eq!(second.agent, heir.name(), "{second:#?}");

    std::fs::write(&flag, "go").unwrap();
    let done = cli.wait_job(&id, JOB_TIMEOUT).await.unwrap();
    assert_eq!(state(&done), "succeeded", "{done:#}");
    let tries = attempts(&done, "only");
    assert_eq!(tries.len(), 2, "{done:#}");
    assert_eq!(tries[0]["agent"], doomed.name(), "{done:#}");
    assert_eq!(state(&tries[0]), "lost", "{done:#}");
    assert_eq!(tries[1]["agent"], heir.name(), "{done:#}");
    assert_eq!(state(&tries[1]), "succeeded", "{done:#}");
}
