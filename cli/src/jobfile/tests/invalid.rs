//! Tests of invalid job files: every problem listed, in file order, with its place and the
//! exact message people read.

use super::super::parse;
use super::check;

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
            "job.toml:1:1: unknown key \"nme\" at the top level; allowed: name, params, tasks, schedule",
            "job.toml:5:1: unknown key \"comand\" in task \"a\"; allowed: id, queue, labels, \
             depends_on, shell, sql, outputs, timeout, retry, schedule_to_start_timeout",
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
