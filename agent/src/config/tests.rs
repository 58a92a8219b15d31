//! Unit tests of the agent's configuration: defaults, layering (file < env < flags),
//! validation messages, datasources and unknown keys.

use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
    pairs.iter().map(|(k, v)| (k.into(), v.into())).collect()
}

fn cli(args: &[&str]) -> Cli {
    let mut argv = vec!["ferry-agent"];
    argv.extend_from_slice(args);
    Cli::try_parse_from(argv).unwrap()
}

#[test]
fn defaults() {
    let c = Config::load_from(Cli::default(), env(&[])).unwrap();
    assert_eq!(c.controllers, ["http://127.0.0.1:7070"]);
    assert_eq!(c.name, c.hostname);
    assert_eq!(c.queues, ["default"]);
    assert!(c.labels.is_empty());
    assert_eq!(c.max_tasks, 4);
    assert_eq!(c.work_dir, PathBuf::from("./ferry-work"));
    assert_eq!(c.heartbeat_interval, Duration::from_secs(5));
    assert_eq!(c.drain_timeout, Duration::from_secs(30));
    assert_eq!(c.kill_grace, Duration::from_secs(5));
    assert_eq!(c.max_output_bytes, 10 << 30);
}

#[test]
fn output_limit_layers_and_units() {
    let c = Config::load_from(cli(&["--max-output-bytes", "512MiB"]), env(&[])).unwrap();
    assert_eq!(c.max_output_bytes, 512 << 20);
    let c = Config::load_from(Cli::default(), env(&[("FERRY_MAX_OUTPUT_BYTES", "4096")])).unwrap();
    assert_eq!(c.max_output_bytes, 4096);
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    writeln!(file, "max_output_bytes = 1000").unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let c = Config::load_from(cli(&["--config", &path]), env(&[])).unwrap();
    assert_eq!(c.max_output_bytes, 1000);
    let e = load_err(&[], &[("FERRY_MAX_OUTPUT_BYTES", "lots")]);
    assert!(e.contains("max_output_bytes") && e.contains("lots"), "{e}");
    let e = load_err(&["--max-output-bytes", "0"], &[]);
    assert!(e.contains("max_output_bytes"), "{e}");
    assert_eq!(parse_bytes("2G"), Some(2 << 30));
    assert_eq!(parse_bytes(" 7 kib"), Some(7 << 10));
    assert_eq!(parse_bytes("1.5G"), None);
    assert_eq!(parse_bytes("99999999999TiB"), None);
    assert_eq!(format_bytes(10 << 30), "10 GiB");
    assert_eq!(format_bytes(1536), "1536 bytes");
    assert_eq!(format_bytes(3 << 20), "3 MiB");
}

#[test]
fn layering_file_env_flags() {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    writeln!(
        file,
        r#"
controller = "http://file:1"
name = "from-file"
max_tasks = 2
queues = ["a", "b"]
heartbeat_interval = "2s"
[labels]
site = "dc1"
"#
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_owned();

    let c = Config::load_from(cli(&["--config", &path]), env(&[])).unwrap();
    assert_eq!(c.controllers, ["http://file:1"]);
    assert_eq!(c.name, "from-file");
    assert_eq!(c.max_tasks, 2);
    assert_eq!(c.queues, ["a", "b"]);
    assert_eq!(c.labels.get("site").map(String::as_str), Some("dc1"));
    assert_eq!(c.heartbeat_interval, Duration::from_secs(2));

    let vars = env(&[
        ("FERRY_NAME", "from-env"),
        ("FERRY_MAX_TASKS", "3"),
        ("FERRY_QUEUES", "x, y"),
        ("FERRY_HEARTBEAT_INTERVAL", "750ms"),
        // Not ours: must be ignored, not refused.
        ("FERRY_LISTEN", "0.0.0.0:1"),
        ("FERRY_JOB_ID", "j1"),
    ]);
    let c = Config::load_from(cli(&["--config", &path]), vars.clone()).unwrap();
    assert_eq!(c.controllers, ["http://file:1"]);
    assert_eq!(c.name, "from-env");
    assert_eq!(c.max_tasks, 3);
    assert_eq!(c.queues, ["x", "y"]);
    assert_eq!(c.heartbeat_interval, Duration::from_millis(750));

    let c = Config::load_from(
        cli(&[
            "--config",
            &path,
            "--name",
            "from-flag",
            "--max-tasks",
            "9",
            "--queue",
            "q1",
            "--queue",
            "q2",
            "--label",
            "zone=z",
            "--kill-grace",
            "1s",
        ]),
        vars,
    )
    .unwrap();
    assert_eq!(c.name, "from-flag");
    assert_eq!(c.max_tasks, 9);
    assert_eq!(c.queues, ["q1", "q2"]);
    assert_eq!(c.labels.len(), 1);
    assert_eq!(c.labels.get("zone").map(String::as_str), Some("z"));
    assert_eq!(c.kill_grace, Duration::from_secs(1));
}

fn load_err(args: &[&str], vars: &[(&str, &str)]) -> String {
    Config::load_from(cli(args), env(vars))
        .unwrap_err()
        .to_string()
}

#[test]
fn validation_names_the_problem() {
    let e = load_err(&[], &[("FERRY_MAX_TASKS", "0")]);
    assert!(e.contains("max_tasks"), "{e}");
    let e = load_err(&["--label", "nope"], &[]);
    assert!(e.contains("labels") && e.contains("k=v"), "{e}");
    let e = load_err(&[], &[("FERRY_HEARTBEAT_INTERVAL", "soon")]);
    assert!(
        e.contains("heartbeat_interval") && e.contains("soon"),
        "{e}"
    );
    let e = load_err(&["--controller", "ftp://x"], &[]);
    assert!(e.contains("controller"), "{e}");
    let e = load_err(&[], &[("FERRY_MAX_TASKS", "many")]);
    assert!(e.contains("max_tasks"), "{e}");
}

#[test]
fn bad_flag_values_are_named_as_their_flags() {
    for (args, named) in [
        (
            ["--max-tasks", "x"],
            "invalid value 'x' for '--max-tasks <N>'",
        ),
        (
            ["--max-tasks", "0"],
            "invalid value '0' for '--max-tasks <N>'",
        ),
        (
            ["--drain-timeout", "soon"],
            "invalid value 'soon' for '--drain-timeout <DURATION>'",
        ),
        (
            ["--max-output-bytes", "1x"],
            "invalid value '1x' for '--max-output-bytes <BYTES>'",
        ),
    ] {
        let e = Cli::try_parse_from(["ferry-agent", args[0], args[1]])
            .unwrap_err()
            .to_string();
        assert!(e.contains(named), "{e}");
    }
    let c = cli(&["--max-output-bytes", "500MiB", "--kill-grace", "2s"]);
    let c = Config::load_from(c, env(&[])).unwrap();
    assert_eq!(c.max_output_bytes, 500 << 20);
    assert_eq!(c.kill_grace, Duration::from_secs(2));
}

#[test]
fn datasources_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "from-file\n").unwrap();
    let path = dir.path().join("agent.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[datasources.Orders]
url = "postgres://app@db/orders"
password_file = "{}"
read_only = true

[datasources.local]
url = "sqlite:///tmp/x.db"
"#,
            pw.display()
        ),
    )
    .unwrap();
    let c = Config::load_from(cli(&["--config", path.to_str().unwrap()]), env(&[])).unwrap();
    let names: Vec<_> = c.datasources.keys().map(String::as_str).collect();
    assert_eq!(names, ["Orders", "local"]);
    let orders = &c.datasources["Orders"];
    assert!(orders.read_only);
    assert_eq!(orders.password.as_ref().unwrap().0, "from-file");
    assert!(!format!("{c:?}").contains("from-file"));
    assert!(!format!("{c:?}").contains("app@db"));

    std::fs::write(&path, "[datasources.x]\nurl = \"ftp://h\"\n").unwrap();
    let e = load_err(&["--config", path.to_str().unwrap()], &[]);
    assert!(e.contains("datasources.x") && e.contains("ftp"), "{e}");
    std::fs::write(
        &path,
        "[datasources.x]\nurl = \"postgres://h/d\"\npasword = 1\n",
    )
    .unwrap();
    let e = load_err(&["--config", path.to_str().unwrap()], &[]);
    assert!(e.contains("pasword"), "{e}");
}

#[test]
fn unknown_file_key_is_refused() {
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    writeln!(file, "max_taks = 3").unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let e = load_err(&["--config", &path], &[]);
    assert!(e.contains("max_taks"), "{e}");
}

#[test]
fn tls_settings_need_https_and_usable_files() {
    // https:// without files: the system's trust store.
    let c = Config::load_from(
        cli(&["--controller", "https://ferry.example:7070"]),
        env(&[]),
    )
    .unwrap();
    assert!(c.tls.is_some());
    let c = Config::load_from(Cli::default(), env(&[])).unwrap();
    assert!(c.tls.is_none());

    let mut ca = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
    writeln!(ca, "not a certificate").unwrap();
    let ca_path = ca.path().to_str().unwrap().to_owned();
    let e = load_err(&["--controller", "http://c:1", "--tls-ca", &ca_path], &[]);
    assert!(
        e.contains("invalid tls_ca: TLS settings need an https:// controller"),
        "{e}"
    );
    let e = load_err(
        &["--controller", "https://c:1"],
        &[("FERRY_TLS_CA", ca_path.as_str())],
    );
    assert!(
        e.contains("invalid tls_ca") && e.contains("holds no certificate"),
        "{e}"
    );
    let e = load_err(&["--controller", "https://c:1", "--tls-key", &ca_path], &[]);
    assert!(e.contains("tls_key is set but tls_cert is not"), "{e}");
    let e = load_err(&["--controller", "ftp://c:1"], &[]);
    assert!(e.contains("must start with http:// or https://"), "{e}");
}

#[test]
fn several_controllers_from_each_layer() {
    // Flags: repeated, or separated by commas.
    let c = Config::load_from(
        cli(&["--controller", "http://a:1", "--controller", "http://b:1"]),
        env(&[]),
    )
    .unwrap();
    assert_eq!(c.controllers, ["http://a:1", "http://b:1"]);
    let c = Config::load_from(cli(&["--controller", "http://a:1,http://b:1"]), env(&[])).unwrap();
    assert_eq!(c.controllers, ["http://a:1", "http://b:1"]);
    // The environment: a comma-separated list.
    let vars = [("FERRY_CONTROLLER", " http://e1:1 , http://e2:1,")];
    let c = Config::load_from(Cli::default(), env(&vars)).unwrap();
    assert_eq!(c.controllers, ["http://e1:1", "http://e2:1"]);
    // The file: a list under `controllers`, or the single `controller`.
    let mut file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    writeln!(
        file,
        r#"controllers = ["https://f1:7070", "https://f2:7070"]"#
    )
    .unwrap();
    let path = file.path().to_str().unwrap().to_owned();
    let c = Config::load_from(cli(&["--config", &path]), env(&[])).unwrap();
    assert_eq!(c.controllers, ["https://f1:7070", "https://f2:7070"]);
    assert!(c.tls.is_some());
    // Env over file (either key), flags over env.
    let c = Config::load_from(cli(&["--config", &path]), env(&vars)).unwrap();
    assert_eq!(c.controllers, ["http://e1:1", "http://e2:1"]);
    assert!(c.tls.is_none());
    let c = Config::load_from(
        cli(&["--config", &path, "--controller", "http://x:1"]),
        env(&vars),
    )
    .unwrap();
    assert_eq!(c.controllers, ["http://x:1"]);

    std::fs::write(
        file.path(),
        "controller = \"http://one:1\"\ncontrollers = [\"http://two:1\"]\n",
    )
    .unwrap();
    let e = load_err(&["--config", &path], &[]);
    assert!(e.contains("controller or controllers, not both"), "{e}");
    // Either key is replaced by a higher layer without complaint.
    let c = Config::load_from(
        cli(&["--config", &path, "--controller", "http://x:1"]),
        env(&[]),
    )
    .unwrap();
    assert_eq!(c.controllers, ["http://x:1"]);
    std::fs::write(file.path(), "controllers = []\n").unwrap();
    let e = load_err(&["--config", &path], &[]);
    assert!(e.contains("at least one controller"), "{e}");
}

#[test]
fn a_bad_controller_url_is_named() {
    let e = load_err(
        &["--controller", "http://ok:1", "--controller", "ftp://bad:1"],
        &[],
    );
    assert!(
        e.contains("invalid controller") && e.contains("\"ftp://bad:1\" must start with http://"),
        "{e}"
    );
    let e = load_err(&[], &[("FERRY_CONTROLLER", "http://ok:1,not a url")]);
    assert!(e.contains("\"not a url\""), "{e}");
    let e = load_err(
        &["--controller", "http://a:1", "--controller", "https://b:1"],
        &[],
    );
    assert!(
        e.contains("\"https://b:1\" and \"http://a:1\" differ in scheme"),
        "{e}"
    );
    let e = load_err(&["--controller", "http://a:1,http://a:1"], &[]);
    assert!(e.contains("\"http://a:1\" is listed twice"), "{e}");
    let mut ca = tempfile::Builder::new().suffix(".pem").tempfile().unwrap();
    writeln!(ca, "x").unwrap();
    let ca_path = ca.path().to_str().unwrap().to_owned();
    let e = load_err(
        &[
            "--controller",
            "http://a:1,http://b:1",
            "--tls-ca",
            &ca_path,
        ],
        &[],
    );
    assert!(
        e.contains("invalid tls_ca: TLS settings need an https:// controller"),
        "{e}"
    );
}

#[test]
fn urls_in_logs_lose_their_credentials() {
    assert_eq!(redacted("http://u:secret@h:1/x"), "http://h:1/x");
    assert_eq!(redacted("https://h:1"), "https://h:1");
    assert_eq!(redacted("http://h:1/a@b"), "http://h:1/a@b");
}

#[test]
fn task_environment_settings() {
    let c = Config::load_from(Cli::default(), env(&[])).unwrap();
    assert!(c.pass_env.is_empty() && c.task_path.is_none());
    let c = Config::load_from(
        cli(&[
            "--pass-env",
            "HTTPS_PROXY,NO_PROXY",
            "--pass-env",
            "HTTPS_PROXY",
        ]),
        env(&[]),
    )
    .unwrap();
    assert_eq!(c.pass_env, ["HTTPS_PROXY", "NO_PROXY"]);
    let c = Config::load_from(
        Cli::default(),
        env(&[
            ("FERRY_PASS_ENV", "A,B"),
            ("FERRY_TASK_PATH", "/opt/bin:/bin"),
        ]),
    )
    .unwrap();
    assert_eq!(c.pass_env, ["A", "B"]);
    assert_eq!(c.task_path.as_deref(), Some("/opt/bin:/bin"));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("agent.toml");
    let file = path.to_str().unwrap();
    std::fs::write(
        &path,
        "pass_env = [\"JAVA_HOME\"]\ntask_path = \"/usr/bin\"\n",
    )
    .unwrap();
    let c = Config::load_from(cli(&["--config", file]), env(&[])).unwrap();
    assert_eq!(c.pass_env, ["JAVA_HOME"]);
    assert_eq!(c.task_path.as_deref(), Some("/usr/bin"));

    let e = load_err(&["--pass-env", "NOT-A-NAME"], &[]);
    assert!(
        e.contains("invalid pass_env") && e.contains("\"NOT-A-NAME\" is not a variable name"),
        "{e}"
    );
    let e = load_err(&["--pass-env", "9LIVES"], &[]);
    assert!(e.contains("9LIVES"), "{e}");
    let e = load_err(&["--pass-env", "ferry_token_file"], &[]);
    assert!(e.contains("FERRY_* variables"), "{e}");
    let e = load_err(&["--pass-env", "PATH", "--task-path", "/bin"], &[]);
    assert!(e.contains("PATH is passed and set by task_path"), "{e}");
    let e = load_err(&["--task-path", " "], &[]);
    assert!(e.contains("invalid task_path"), "{e}");
    std::fs::write(
        &path,
        "pass_env = [\"ORDERS_PW\"]\n[datasources.orders]\nurl = \"postgres://h/d\"\npassword_env = \"ORDERS_PW\"\n",
    )
    .unwrap();
    let e = load_err(&["--config", file], &[]);
    assert!(
        e.contains("ORDERS_PW holds the password of datasources.orders"),
        "{e}"
    );
}
