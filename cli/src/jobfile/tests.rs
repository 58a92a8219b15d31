//! Tests of job file parsing and checking, with the exact messages people read.

use std::collections::HashMap;

use ferry_proto::v1::{task_spec::Kind, JobSpec, RetryPolicy, ShellTask, SqlTask, TaskSpec};

use super::{apply_params, load, parse};

/// The problems of an invalid file named `job.toml`.
#[track_caller]
fn problems(source: &str) -> Vec<String> {
    match parse("job.toml", source) {
        Ok(spec) => panic!("expected problems, parsed {spec:?}"),
        Err(invalid) => invalid.problems,
    }
}

#[track_caller]
fn check(source: &str, expected: &[&str]) {
    assert_eq!(problems(source), expected);
}

fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const DESIGN_EXAMPLE: &str = r#"name = "orders-etl"

[params]
day = "2026-11-24"            # default; --param day=… overrides

[[tasks]]
id = "extract"
queue = "onprem"
labels = { site = "dc1" }
sql = { datasource = "orders", query = "select * from orders where day = :day", format = "csv" }
# incremental = { column = "updated_at" }   # sql tasks: take only rows past the stored watermark

[[tasks]]
id = "transform"
depends_on = ["extract"]
queue = "cloud"
shell = "./transform.sh \"$FERRY_INPUTS/extract\" > out.csv"
outputs = ["out.csv"]
timeout = "10m"
retry = { max_attempts = 3, initial_delay = "1s", max_delay = "1m" }
"#;

#[test]
fn design_example_parses_to_its_job_spec() {
    let spec = parse("orders.toml", DESIGN_EXAMPLE).unwrap();
    let expected = JobSpec {
        name: "orders-etl".into(),
        params: map(&[("day", "2026-11-24")]),
        tasks: vec![
            TaskSpec {
                id: "extract".into(),
                queue: "onprem".into(),
                labels: map(&[("site", "dc1")]),
                depends_on: vec![],
                kind: Some(Kind::Sql(SqlTask {
                    datasource: "orders".into(),
                    query: "select * from orders where day = :day".into(),
                    format: "csv".into(),
                    incremental_column: String::new(),
                    ..SqlTask::default()
                })),
                outputs: vec![],
                timeout_ms: 0,
                retry: None,
            },
            TaskSpec {
                id: "transform".into(),
                queue: "cloud".into(),
                labels: HashMap::new(),
                depends_on: vec!["extract".into()],
                kind: Some(Kind::Shell(ShellTask {
                    command: "./transform.sh \"$FERRY_INPUTS/extract\" > out.csv".into(),
                })),
                outputs: vec!["out.csv".into()],
                timeout_ms: 600_000,
                retry: Some(RetryPolicy {
                    max_attempts: 3,
                    initial_delay_ms: Some(1_000),
                    max_delay_ms: Some(60_000),
                }),
            },
        ],
    };
    assert_eq!(spec, expected);
}

#[test]
fn defaults_and_incremental_sql() {
    let spec = parse(
        "job.toml",
        r#"
name = "x"
[[tasks]]
id = "pull"
sql = { datasource = "db", query = "select 1", incremental = { column = "updated_at" } }
"#,
    )
    .unwrap();
    let task = &spec.tasks[0];
    assert_eq!(task.queue, "default");
    assert_eq!(
        task.kind,
        Some(Kind::Sql(SqlTask {
            datasource: "db".into(),
            query: "select 1".into(),
            format: "csv".into(),
            incremental_column: "updated_at".into(),
            ..SqlTask::default()
        }))
    );
}

#[test]
fn sql_formats_compressions_and_file_sizes() {
    let spec = parse(
        "job.toml",
        r#"
name = "x"
[[tasks]]
id = "a"
sql = { datasource = "db", query = "q", format = "parquet", compression = "snappy", max_rows_per_file = 1_000_000 }
[[tasks]]
id = "b"
sql = { compression = "gzip", datasource = "db", query = "q", format = "jsonl" }
[[tasks]]
id = "c"
sql = { datasource = "db", query = "q", compression = "none" }
[[tasks]]
id = "d"
sql = { datasource = "db", query = "q", format = "parquet", compression = "none" }
"#,
    )
    .unwrap();
    let sql = |i: usize| match &spec.tasks[i].kind {
        Some(Kind::Sql(sql)) => sql.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (
            sql(0).format.as_str(),
            sql(0).compression.as_str(),
            sql(0).max_rows_per_file
        ),
        ("parquet", "snappy", 1_000_000)
    );
    assert_eq!(
        (
            sql(1).format.as_str(),
            sql(1).compression.as_str(),
            sql(1).max_rows_per_file
        ),
        ("jsonl", "gzip", 0)
    );
    // csv and jsonl say "none" with the empty compression; parquet's default is zstd.
    assert_eq!(
        (sql(2).format.as_str(), sql(2).compression.as_str()),
        ("csv", "")
    );
    assert_eq!(
        (sql(3).format.as_str(), sql(3).compression.as_str()),
        ("parquet", "none")
    );
}

#[test]
fn bad_sql_formats_compressions_file_sizes_and_outputs_are_named() {
    check(
        r#"name = "x"
[[tasks]]
id = "a"
sql = { datasource = "d", query = "q", format = "xml" }
[[tasks]]
id = "b"
sql = { datasource = "d", query = "q", compression = "zstd" }
[[tasks]]
id = "c"
sql = { datasource = "d", query = "q", format = "parquet", compression = "gzip" }
[[tasks]]
id = "d"
sql = { datasource = "d", query = "q", max_rows_per_file = 0 }
[[tasks]]
id = "e"
sql = { datasource = "d", query = "q", max_rows_per_file = "10" }
[[tasks]]
id = "f"
sql = { datasource = "d", query = "q" }
outputs = ["x.csv"]
"#,
        &[
            "job.toml:4:49: unknown sql.format \"xml\" in task \"a\"; use csv, jsonl, parquet",
            "job.toml:7:54: sql.compression \"zstd\" does not apply to format csv in task \"b\"; \
             use none, gzip",
            "job.toml:10:74: sql.compression \"gzip\" does not apply to format parquet in task \
             \"c\"; use zstd, snappy, none",
            "job.toml:13:60: sql.max_rows_per_file must be a positive integer",
            "job.toml:16:60: wrong type for sql.max_rows_per_file: expected a positive integer, \
             found string",
            "job.toml:20:11: task \"f\" is an sql task: its extract files are its outputs; \
             remove \"outputs\"",
        ],
    );
}

#[test]
fn params_accept_scalars_and_are_overridden() {
    let mut spec = parse(
        "job.toml",
        r#"
name = "x"
[params]
day = "2026-11-24"
rows = 0x10
ratio = 1.5
dry_run = true
when = 2026-11-24
[[tasks]]
id = "a"
shell = "true"
labels = { gpu = true, site = "dc1" }
"#,
    )
    .unwrap();
    assert_eq!(
        spec.params,
        map(&[
            ("day", "2026-11-24"),
            ("rows", "16"),
            ("ratio", "1.5"),
            ("dry_run", "true"),
            ("when", "2026-11-24"),
        ])
    );
    assert_eq!(
        spec.tasks[0].labels,
        map(&[("gpu", "true"), ("site", "dc1")])
    );
    apply_params(
        &mut spec,
        &[
            ("day".into(), "2026-12-01".into()),
            ("extra".into(), "yes".into()),
        ],
    );
    assert_eq!(spec.params["day"], "2026-12-01");
    assert_eq!(spec.params["extra"], "yes");
    assert_eq!(spec.params.len(), 6);
}

#[test]
fn bad_toml_syntax() {
    check(
        "name = \"x\"\n[[tasks]\nid = \"a\"\n",
        &["job.toml:2:9: toml syntax error: unclosed array table, expected `]`"],
    );
}

#[test]
fn every_syntax_error_is_listed() {
    check(
        "name = \"x\n[[tasks]]\nid = = \"a\"\nshell = \"true\"\nfoo bar\n",
        &[
            "job.toml:1:10: toml syntax error: invalid basic string, expected `\"`",
            "job.toml:3:6: toml syntax error: extra `=`, expected nothing",
            "job.toml:3:8: toml syntax error: unexpected key or value, expected newline, `#`",
            "job.toml:5:5: toml syntax error: key with no value, expected `=`",
        ],
    );
}

#[test]
fn unknown_keys_at_every_level() {
    check(
        r#"nme = "x"
name = "x"
[[tasks]]
id = "a"
comand = "true"
shell = "true"
retry = { max_attempts = 2, delay = "1s" }
[[tasks]]
id = "b"
sql = { datasource = "d", query = "q", fmt = "csv", incremental = { col = "c" } }
"#,
        &[
            "job.toml:1:1: unknown key \"nme\" at the top level; allowed: name, params, tasks",
            "job.toml:5:1: unknown key \"comand\" in task \"a\"; allowed: id, queue, labels, \
             depends_on, shell, sql, outputs, timeout, retry",
            "job.toml:7:29: unknown key \"delay\" in retry of task \"a\"; allowed: \
             max_attempts, initial_delay, max_delay",
            "job.toml:10:40: unknown key \"fmt\" in sql of task \"b\"; allowed: datasource, \
             query, format, compression, max_rows_per_file, incremental",
            "job.toml:10:67: missing \"column\" in sql.incremental of task \"b\"",
            "job.toml:10:69: unknown key \"col\" in sql.incremental of task \"b\"; allowed: \
             column",
        ],
    );
}

#[test]
fn missing_name_and_no_tasks() {
    check(
        "[params]\nday = \"1\"\n",
        &[
            "job.toml:1:1: missing \"name\": every job needs a name",
            "job.toml:1:1: no tasks: a job needs at least one [[tasks]] entry",
        ],
    );
    check(
        "name = \"\"\ntasks = []\n",
        &[
            "job.toml:1:8: name must not be empty",
            "job.toml:2:9: no tasks: a job needs at least one [[tasks]] entry",
        ],
    );
}

#[test]
fn task_ids() {
    check(
        r#"name = "x"
[[tasks]]
shell = "true"
[[tasks]]
id = ""
shell = "true"
[[tasks]]
id = "a b"
shell = "true"
[[tasks]]
id = "a"
shell = "true"
[[tasks]]
id = "a"
shell = "true"
"#,
        &[
            "job.toml:2:1: task #1 has no id",
            "job.toml:5:6: task #2 has an empty id",
            "job.toml:8:6: bad task id \"a b\": use only letters, digits, '_', '.' and '-'",
            "job.toml:14:6: duplicate task id \"a\" (first used at 11:6)",
        ],
    );
}

#[test]
fn dependencies() {
    check(
        r#"name = "x"
[[tasks]]
id = "a"
shell = "true"
depends_on = ["a", "nope"]
"#,
        &[
            "job.toml:5:15: task \"a\" depends on itself",
            "job.toml:5:20: task \"a\" depends on unknown task \"nope\"",
        ],
    );
}

#[test]
fn cycles_name_their_tasks() {
    check(
        r#"name = "x"
[[tasks]]
id = "a"
shell = "true"
depends_on = ["c"]
[[tasks]]
id = "b"
shell = "true"
depends_on = ["a"]
[[tasks]]
id = "c"
shell = "true"
depends_on = ["b"]
[[tasks]]
id = "d"
shell = "true"
depends_on = ["e"]
[[tasks]]
id = "e"
shell = "true"
depends_on = ["d", "a"]
"#,
        &[
            "job.toml:2:1: dependency cycle: a -> c -> b -> a",
            "job.toml:14:1: dependency cycle: d -> e -> d",
        ],
    );
}

#[test]
fn task_kinds() {
    check(
        r#"name = "x"
[[tasks]]
id = "none"
[[tasks]]
id = "both"
shell = "true"
sql = { datasource = "d", query = "q" }
[[tasks]]
id = "half"
sql = { query = "q" }
"#,
        &[
            "job.toml:2:1: task \"none\" has no kind: give it shell = \"…\" or sql = { … }",
            "job.toml:4:1: task \"both\" has both shell and sql: give it exactly one",
            "job.toml:10:7: missing \"datasource\" in sql of task \"half\"",
        ],
    );
}

#[test]
fn bad_durations() {
    check(
        r#"name = "x"
[[tasks]]
id = "a"
shell = "true"
timeout = "10 parsecs"
retry = { initial_delay = "1m", max_delay = "1s" }
"#,
        &[
            "job.toml:5:11: bad duration \"10 parsecs\" for timeout: unknown time unit \
             \"parsecs\", supported units: ns, us/µs, ms, sec, min, hours, days, weeks, months, \
             years (and few variations)",
            "job.toml:6:45: retry.max_delay is shorter than retry.initial_delay",
        ],
    );
}

#[test]
fn wrong_types() {
    check(
        r#"name = 3
params = { list = [1], "bad-name" = "x" }
[[tasks]]
id = 7
shell = ["true"]
[[tasks]]
id = "b"
shell = "true"
queue = 1
labels = "site=dc1"
depends_on = "a"
outputs = [1]
timeout = 10
retry = 3
"#,
        &[
            "job.toml:1:8: wrong type for name: expected a string, found integer",
            "job.toml:2:19: wrong type for params.list: expected a string, number or boolean, \
             found array",
            "job.toml:2:24: bad parameter name \"bad-name\": use letters, digits and '_', not \
             starting with a digit",
            "job.toml:4:6: wrong type for id: expected a string, found integer",
            "job.toml:5:9: wrong type for shell: expected a string, found array",
            "job.toml:9:9: wrong type for queue: expected a string, found integer",
            "job.toml:10:10: wrong type for labels: expected a table, found string",
            "job.toml:11:14: wrong type for depends_on: expected an array of strings, found \
             string",
            "job.toml:12:12: wrong type for outputs[0]: expected a string, found integer",
            "job.toml:13:11: wrong type for timeout: expected a duration string such as \
             \"10m\", found integer",
            "job.toml:14:9: wrong type for retry: expected a table, found integer",
        ],
    );
}

#[test]
fn max_attempts_must_be_positive() {
    check(
        r#"name = "x"
[[tasks]]
id = "a"
shell = "true"
retry = { max_attempts = 0 }
"#,
        &["job.toml:5:26: retry.max_attempts must be at least 1"],
    );
}

#[test]
fn outputs_stay_in_the_working_directory() {
    check(
        r#"name = "x"
[[tasks]]
id = "a"
shell = "true"
outputs = ["ok.csv", "/etc/passwd", "../up", ""]
"#,
        &[
            "job.toml:5:22: output \"/etc/passwd\" must be a path inside the task's working \
             directory",
            "job.toml:5:37: output \"../up\" must be a path inside the task's working directory",
            "job.toml:5:46: outputs: a path must not be empty",
        ],
    );
}

#[test]
fn every_problem_is_listed_in_file_order() {
    let invalid = parse(
        "etl.toml",
        r#"name = "x"
[[tasks]]
id = "a"
shell = "true"
timeout = "soon"
depends_on = ["b"]
[[tasks]]
id = "b"
depends_on = ["a"]
"#,
    )
    .unwrap_err();
    assert_eq!(
        invalid.to_string(),
        "invalid job file etl.toml (3 problems)
  etl.toml:2:1: dependency cycle: a -> b -> a
  etl.toml:5:11: bad duration \"soon\" for timeout: expected number at 0
  etl.toml:7:1: task \"b\" has no kind: give it shell = \"…\" or sql = { … }"
    );
}

#[test]
fn examples_are_valid() {
    for (file, source) in [
        ("hello.toml", include_str!("../../../examples/hello.toml")),
        ("etl.toml", include_str!("../../../examples/etl.toml")),
    ] {
        let spec = parse(file, source).unwrap_or_else(|err| panic!("{err}"));
        assert!(!spec.tasks.is_empty(), "{file}");
    }
    let etl = parse("etl.toml", include_str!("../../../examples/etl.toml")).unwrap();
    let ids: Vec<&str> = etl.tasks.iter().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, ["extract", "validate", "transform", "load"]);
    assert!(etl.tasks.iter().all(|t| t.queue == "default"));
    assert_eq!(etl.params["data_dir"], "/tmp/ferry-example");
}

#[test]
fn unreadable_file_is_bad_input() {
    let err = load(std::path::Path::new("/nonexistent/job.toml"), &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot read job file /nonexistent/job.toml: no such file or directory"
    );
    assert_eq!(err.exit_code(), 2);
}

#[test]
fn load_applies_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("job.toml");
    std::fs::write(
        &path,
        "name = \"x\"\n[params]\nday = \"1\"\n[[tasks]]\nid = \"a\"\nshell = \"true\"\n",
    )
    .unwrap();
    let spec = load(&path, &[("day".into(), "2".into())]).unwrap();
    assert_eq!(spec.params["day"], "2");
}
