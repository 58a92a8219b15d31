//! Tests of job file parsing and checking, with the exact messages people read.

use std::collections::HashMap;

use ferry_proto::v1::{task_spec::Kind, JobSpec, RetryPolicy, ShellTask, SqlTask, TaskSpec};

use super::{apply_params, load, parse};
mod invalid;

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
schedule_to_start_timeout = "30m"
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
                schedule_to_start_timeout_ms: 0,
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
                schedule_to_start_timeout_ms: 1_800_000,
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
    assert_eq!(crate::exit::CliError::from(err).exit_code(), 2);
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
