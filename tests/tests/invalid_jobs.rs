//! Invalid job files are refused whole, before anything is queued, with exit code 2 and a
//! message naming each problem and its line; an unreachable controller gives exit code 3.

use ferry_proto::v1::ListJobsRequest;
use ferry_tests::{free_port, Cli, Controller, ControllerOpts};

/// One invalid job file. Lines ending in `# here` are where the problem may be reported; every
/// group of `names` must have one of its words in the message (case-insensitive).
struct Case {
    what: &'static str,
    toml: &'static str,
    names: &'static [&'static [&'static str]],
}

const CASES: &[Case] = &[
    Case {
        what: "bad TOML syntax",
        toml: r#"name = "bad-syntax"

[[tasks]]
id = "extract  # here
queue = "etl"
shell = "true"
"#,
        names: &[&[
            "string",
            "syntax",
            "parse",
            "invalid",
            "expected",
            "unterminated",
        ]],
    },
    Case {
        what: "unknown key",
        toml: r#"name = "unknown-key"

[[tasks]]
id = "extract"
queue = "etl"
colour = "blue"  # here
shell = "true"
"#,
        names: &[&["colour"]],
    },
    Case {
        what: "duplicate task id",
        toml: r#"name = "duplicate"

[[tasks]]
id = "extract"  # here
queue = "etl"
shell = "true"

[[tasks]]  # here
id = "extract"  # here
queue = "etl"
shell = "true"
"#,
        names: &[&["duplicate"], &["extract"]],
    },
    Case {
        what: "unknown dependency",
        toml: r#"name = "unknown-dependency"

[[tasks]]  # here
id = "load"  # here
queue = "etl"
depends_on = ["ghost"]  # here
shell = "true"
"#,
        names: &[&["ghost"]],
    },
    Case {
        what: "cycle",
        toml: r#"name = "cycle"

[[tasks]]
id = "start"
queue = "etl"
shell = "true"

[[tasks]]  # here
id = "ping"  # here
queue = "etl"
depends_on = ["start", "pong"]  # here
shell = "true"

[[tasks]]  # here
id = "pong"  # here
queue = "etl"
depends_on = ["ping"]  # here
shell = "true"
"#,
        names: &[&["cycle", "circular"], &["ping", "pong"]],
    },
    Case {
        what: "task with no kind",
        toml: r#"name = "no-kind"

[[tasks]]
id = "fine"
queue = "etl"
shell = "true"

[[tasks]]  # here
id = "kindless"  # here
queue = "etl"  # here
"#,
        names: &[&["kindless"], &["kind", "shell"]],
    },
    Case {
        what: "task with two kinds",
        toml: r#"name = "two-kinds"

[[tasks]]  # here
id = "greedy"  # here
queue = "etl"
shell = "true"  # here
sql = { datasource = "orders", query = "select 1", format = "csv" }  # here
"#,
        names: &[&["greedy"], &["kind", "both", "sql", "shell", "one of"]],
    },
    Case {
        what: "bad duration",
        toml: r#"name = "bad-duration"

[[tasks]]
id = "slow"
queue = "etl"
shell = "true"
timeout = "ten minutes"  # here
"#,
        names: &[&["ten minutes", "duration"]],
    },
];

/// 1-based numbers of the lines where the problem may be reported.
fn marked_lines(case: &Case) -> Vec<usize> {
    let lines: Vec<usize> = case
        .toml
        .lines()
        .enumerate()
        .filter(|(_, l)| l.ends_with("# here"))
        .map(|(i, _)| i + 1)
        .collect();
    assert!(!lines.is_empty(), "case {} marks no line", case.what);
    lines
}

/// Line numbers a message mentions: `line 7`, `lines 7`, `line: 7`, `job.toml:7:3` (the
/// column is not a line).
fn mentioned_lines(message: &str) -> Vec<usize> {
    let lower = message.to_lowercase();
    let number = |rest: &str| -> Option<usize> {
        let len = rest.chars().take_while(char::is_ascii_digit).count();
        rest[..len].parse().ok()
    };
    let mut found = Vec::new();
    for (i, word) in lower.match_indices("line") {
        let rest = lower[i + word.len()..].trim_start_matches(['s', ':', ' ']);
        found.extend(number(rest));
    }
    for (i, ext) in lower.match_indices(".toml:") {
        found.extend(number(&lower[i + ext.len()..]));
    }
    found
}

/// Everything wrong with how `ferry submit` answered `case`, if anything.
async fn check(cli: &Cli, case: &Case) -> Option<String> {
    let path = cli.write_job(case.toml).unwrap();
    let out = cli
        .run(["submit".as_ref(), path.as_os_str()])
        .await
        .unwrap();
    let mut problems = Vec::new();
    if out.code != 2 {
        problems.push(format!("exit code {} instead of 2", out.code));
    }
    if !out.stdout.trim().is_empty() {
        problems.push("printed something on standard output (a job id?)".to_owned());
    }
    let message = out.stderr.to_lowercase();
    for group in case.names {
        if !group
            .iter()
            .any(|word| message.contains(&word.to_lowercase()))
        {
            problems.push(format!("message names none of {group:?}"));
        }
    }
    let expected = marked_lines(case);
    let mentioned = mentioned_lines(&out.stderr);
    if !mentioned.iter().any(|n| expected.contains(n)) {
        problems.push(format!(
            "message mentions lines {mentioned:?}, expected one of {expected:?}"
        ));
    }
    (!problems.is_empty()).then(|| format!("{}: {}\n{out}", case.what, problems.join("; ")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_job_files_are_refused_with_exit_2_and_nothing_is_queued() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let mut failures = Vec::new();
    for case in CASES {
        failures.extend(check(&cli, case).await);
    }

    // Every problem of a file is named, each with its line.
    let several = Case {
        what: "several problems",
        toml: r#"name = "several"

[[tasks]]
id = "one"
queue = "etl"
shell = "true"
flavour = "mint"  # here

[[tasks]]
id = "two"
queue = "etl"
depends_on = ["nowhere"]  # here
shell = "true"
"#,
        names: &[&["flavour"], &["nowhere"]],
    };
    failures.extend(check(&cli, &several).await);
    let out = cli
        .run([
            "submit".as_ref(),
            cli.write_job(several.toml).unwrap().as_os_str(),
        ])
        .await
        .unwrap();
    let mentioned = mentioned_lines(&out.stderr);
    for line in marked_lines(&several) {
        if !mentioned.contains(&line) {
            failures.push(format!(
                "several problems: line {line} not mentioned\n{out}"
            ));
        }
    }

    let listed = cli.jobs().await.unwrap();
    if !listed.is_empty() {
        failures.push(format!("jobs were queued: {listed:#?}"));
    }
    let mut jobs = controller.job_client().await.unwrap();
    let stored = jobs
        .list_jobs(ListJobsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .jobs;
    if !stored.is_empty() {
        failures.push(format!("the controller holds jobs: {stored:?}"));
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gives_exit_2() {
    let controller = Controller::start(ControllerOpts::default()).await.unwrap();
    let cli = controller.cli();
    let missing = cli.run(["submit", "/nonexistent/job.toml"]).await.unwrap();
    assert_eq!(missing.code, 2, "unreadable job file: {missing}");
    assert!(
        missing.stderr.contains("/nonexistent/job.toml"),
        "the message names the file: {missing}"
    );
    let flag = cli.run(["jobs", "list", "--no-such-flag"]).await.unwrap();
    assert_eq!(flag.code, 2, "unknown flag: {flag}");
    let param = cli
        .write_job("name = \"p\"\n\n[[tasks]]\nid = \"a\"\nqueue = \"etl\"\nshell = \"true\"\n")
        .unwrap();
    let bad_param = cli
        .run([
            "submit".as_ref(),
            param.as_os_str(),
            "--param".as_ref(),
            "no-equals-sign".as_ref(),
        ])
        .await
        .unwrap();
    assert_eq!(bad_param.code, 2, "--param without `=`: {bad_param}");
    assert!(cli.jobs().await.unwrap().is_empty(), "nothing queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_controller_gives_exit_3() {
    // Nothing listens there.
    let cli = Cli::new(format!("http://127.0.0.1:{}", free_port().unwrap())).unwrap();
    let list = cli.run(["jobs", "list"]).await.unwrap();
    assert_eq!(list.code, 3, "jobs list: {list}");
    assert!(!list.stderr.trim().is_empty(), "says why: {list}");
    let job = cli
        .write_job("name = \"ok\"\n\n[[tasks]]\nid = \"a\"\nqueue = \"etl\"\nshell = \"true\"\n")
        .unwrap();
    let submit = cli.run(["submit".as_ref(), job.as_os_str()]).await.unwrap();
    assert_eq!(submit.code, 3, "submit: {submit}");
    assert!(submit.stdout.trim().is_empty(), "no id printed: {submit}");
}

#[test]
fn line_numbers_are_found_in_the_usual_message_shapes() {
    assert_eq!(mentioned_lines("job.toml:7:3: unknown key"), [7]);
    assert_eq!(mentioned_lines("TOML parse error at line 4, column 6"), [4]);
    assert_eq!(mentioned_lines("cycle (lines 9 and 15)"), [9]);
    assert_eq!(mentioned_lines("Line: 12 bad duration"), [12]);
    assert!(mentioned_lines("took 3 attempts").is_empty());
}
