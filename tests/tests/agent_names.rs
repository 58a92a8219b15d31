//! Agents' names and departures (issue 19, items 4 and 5): a second agent under a live name
//! is refused, backs off and never disturbs the first; the default name is the hostname plus
//! an id kept in the work directory, under which a restarted agent takes its name back at
//! once; an agent that leaves is `draining`, then `drained` (not `dead`), dropped from the list
//! after the retention and forgotten on request — a live one is not.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use ferry_tests::{
    bin_path, eventually, job::attempts, Agent, AgentOpts, Controller, ControllerOpts,
    RefusedAgent, TestDir, AGENT_BIN,
};

/// A job whose one task runs on `queue` until `flag` exists.
fn waiting_job(queue: &str, flag: &Path) -> String {
    format!(
        r#"
name = "held"

[[tasks]]
id = "hold"
queue = "{queue}"
shell = '''
i=0
while [ ! -f {flag} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
'''
"#,
        flag = flag.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_agent_under_a_live_name_is_refused_and_never_disturbs_the_first() {
    let controller =
        Controller::start(ControllerOpts::default().agent_timeout(Duration::from_secs(3)))
            .await
            .unwrap();
    let first = Agent::start(&controller.addr(), AgentOpts::new("twin").queue("names"))
        .await
        .unwrap();
    let scratch = TestDir::new("names").unwrap();
    let flag = scratch.path().join("flag");
    let cli = controller.cli();
    let job = cli.submit(&waiting_job("names", &flag)).await.unwrap();
    eventually(
        "the task to run on the first agent",
        Duration::from_secs(20),
        || async {
            let doc = cli.show(&job).await?;
            Ok(attempts(&doc, "hold")
                .iter()
                .any(|a| a["state"] == "running")
                .then_some(()))
        },
    )
    .await
    .unwrap();

    let second = RefusedAgent::spawn(
        &controller.addr(),
        "twin",
        &["--queue".into(), "names".into()],
    )
    .unwrap();
    let log = second
        .log_once_it_says("is taken by a live agent", Duration::from_secs(20))
        .await;
    assert!(
        log.contains("\"twin\"") && log.contains("--name") && log.contains("FERRY_NAME"),
        "the refusal names the conflict and how to set the name:\n{log}"
    );
    // Several agent timeouts later: the first still holds its name, session and task.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let log = second
        .log_once_it_says("is taken by a live agent", Duration::from_secs(1))
        .await;
    let refusals = log.matches("refused by the controller").count();
    assert!(
        (1..=2).contains(&refusals),
        "the refusal is said at a low rate, not in a loop ({refusals} lines):\n{log}"
    );
    let doc = cli.show(&job).await.unwrap();
    let tries = attempts(&doc, "hold");
    assert_eq!(
        tries.len(),
        1,
        "the first agent's task was never disturbed: {doc:#}"
    );
    assert_eq!(tries[0]["state"], "running", "{doc:#}");
    assert_eq!(tries[0]["agent"], "twin", "{doc:#}");
    let first_log = first.log_tail(400);
    assert!(
        !first_log.contains("no longer knows this session"),
        "the first agent kept its session:\n{first_log}"
    );
    let controller_log = controller.log_tail(400);
    assert!(
        controller_log.contains("agent registration refused"),
        "the controller says it refused:\n{controller_log}"
    );
    std::fs::write(&flag, "").unwrap();
    let done = cli.wait_job(&job, Duration::from_secs(30)).await.unwrap();
    assert_eq!(ferry_tests::job::state(&done), "succeeded", "{done:#}");
}

/// `ferry-agent` without `--name`, on `work`, logging to `log`.
fn unnamed_agent(controller: &str, work: &Path, log: &Path) -> std::process::Child {
    Command::new(bin_path(AGENT_BIN))
        .args(["--controller", controller, "--queue", "unnamed"])
        .arg("--work-dir")
        .arg(work)
        .arg("--heartbeat-interval")
        .arg("300ms")
        .env("FERRY_ALLOW_ROOT_TASKS", "true")
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_name_is_the_hostname_plus_an_id_kept_across_restarts() {
    // A long timeout: the restarted agent must not have to wait for its old session to die.
    let controller =
        Controller::start(ControllerOpts::default().agent_timeout(Duration::from_secs(60)))
            .await
            .unwrap();
    let dir = TestDir::new("unnamed").unwrap();
    let work = dir.path().join("work");
    let cli = controller.cli();
    let mut agent = unnamed_agent(&controller.addr(), &work, &dir.path().join("1.log"));
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    let id = eventually("the agent's id file", Duration::from_secs(20), || async {
        Ok(std::fs::read_to_string(work.join("agent-id"))
            .ok()
            .map(|t| t.trim().to_owned())
            .filter(|t| t.len() == 16))
    })
    .await
    .unwrap();
    let name = format!("{host}-{}", &id[..6]);
    eventually(
        "the agent listed under its default name",
        Duration::from_secs(20),
        || async {
            Ok(cli
                .agent(&name)
                .await?
                .filter(|a| a["state"] == "ready")
                .map(drop))
        },
    )
    .await
    .unwrap();

    agent.kill().unwrap();
    agent.wait().unwrap();
    let started = std::time::Instant::now();
    let mut again = unnamed_agent(&controller.addr(), &work, &dir.path().join("2.log"));
    eventually(
        "the restarted agent registered again",
        Duration::from_secs(20),
        || async {
            let log = std::fs::read_to_string(dir.path().join("2.log")).unwrap_or_default();
            Ok(log.contains("registered").then_some(()))
        },
    )
    .await
    .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the same agent takes its name back at once, not after the timeout"
    );
    let log = std::fs::read_to_string(dir.path().join("2.log")).unwrap();
    assert!(!log.contains("is taken by a live agent"), "{log}");
    assert_eq!(
        std::fs::read_to_string(work.join("agent-id"))
            .unwrap()
            .trim(),
        id,
        "the id is kept across restarts"
    );
    let listed = cli.agents().await.unwrap();
    assert_eq!(
        listed.iter().filter(|a| a["name"] == name.as_str()).count(),
        1,
        "{listed:#?}"
    );
    again.kill().unwrap();
    again.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn departed_agents_are_draining_then_drained_dropped_after_the_retention_and_forgotten() {
    let controller = Controller::start(
        ControllerOpts::default()
            .agent_timeout(Duration::from_secs(5))
            .arg("--departed-agent-retention")
            .arg("3s"),
    )
    .await
    .unwrap();
    let mut leaving = Agent::start(
        &controller.addr(),
        AgentOpts::new("leaving")
            .queue("depart")
            .drain_timeout(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    let staying = Agent::start(&controller.addr(), AgentOpts::new("staying").queue("other"))
        .await
        .unwrap();
    let scratch = TestDir::new("depart").unwrap();
    let flag = scratch.path().join("flag");
    let cli = controller.cli();
    let job = cli.submit(&waiting_job("depart", &flag)).await.unwrap();
    eventually("the task to run", Duration::from_secs(20), || async {
        let doc = cli.show(&job).await?;
        Ok(attempts(&doc, "hold")
            .iter()
            .any(|a| a["state"] == "running")
            .then_some(()))
    })
    .await
    .unwrap();

    // SIGTERM: draining while its task finishes.
    leaving.sigterm().unwrap();
    eventually(
        "the agent listed as draining",
        Duration::from_secs(10),
        || async {
            Ok(cli
                .agent("leaving")
                .await?
                .filter(|a| a["state"] == "draining")
                .map(drop))
        },
    )
    .await
    .unwrap();
    let text = cli.run(["agents", "list"]).await.unwrap();
    assert!(text.stdout.contains("draining"), "{text}");
    std::fs::write(&flag, "").unwrap();
    leaving.wait_exit(Duration::from_secs(30)).await.unwrap();
    let gone = cli.agent("leaving").await.unwrap().expect("still listed");
    assert_eq!(
        gone["state"], "drained",
        "left on purpose, not dead: {gone:#}"
    );
    assert!(!gone["last_heartbeat"].is_null(), "{gone:#}");
    let text = cli.run(["agents", "list"]).await.unwrap();
    assert!(
        text.stdout
            .lines()
            .any(|l| l.starts_with("leaving") && l.contains("drained")),
        "{text}"
    );

    // A live agent is not forgotten, and the refusal says why and what to do.
    let refused = cli.run(["agents", "forget", "staying"]).await.unwrap();
    assert_ne!(refused.code, 0, "{refused}");
    assert!(
        refused.stderr.contains("staying is ready")
            && refused.stderr.contains("ferry agents drain staying"),
        "{refused}"
    );

    // Past the retention it leaves the list; --all still shows it; forget removes it.
    eventually(
        "the drained agent dropped from the list",
        Duration::from_secs(15),
        || async { Ok(cli.agent("leaving").await?.is_none().then_some(())) },
    )
    .await
    .unwrap();
    let all = cli.json(["agents", "list", "--all"]).await.unwrap();
    let listed = ferry_tests::job::items(&all, "agents").unwrap();
    assert!(
        listed
            .iter()
            .any(|a| a["name"] == "leaving" && a["state"] == "drained"),
        "{all:#}"
    );
    let forgot = cli.run(["agents", "forget", "leaving"]).await.unwrap();
    assert_eq!(forgot.code, 0, "{forgot}");
    assert!(forgot.stdout.contains("forgot agent leaving"), "{forgot}");
    let all = cli.json(["agents", "list", "--all"]).await.unwrap();
    let listed = ferry_tests::job::items(&all, "agents").unwrap();
    assert!(!listed.iter().any(|a| a["name"] == "leaving"), "{all:#}");
    drop(staying);
}
