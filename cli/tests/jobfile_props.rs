//! Property tests of job-file loading: arbitrary bytes, and TOML documents built from the job
//! file's own keys with values of every type, size and character, duplicate keys and cyclic
//! dependencies. Loading answers a spec or problems with their place; it never panics.

use std::collections::HashSet;
use std::fmt::Write as _;

use ferry_cli::exit::CliError;
use ferry_cli::jobfile::{load, parse};
use ferry_jobspec::check::{self, Chars};
use ferry_jobspec::limits as l;
use ferry_proto::v1::{task_spec::Kind, JobSpec};
use proptest::prelude::*;

const FILE: &str = "job.toml";

/// `Ok`, or every problem non-empty and placed as `FILE:LINE:COL: …`.
fn check_parsed(source: &str) -> Result<(), TestCaseError> {
    match parse(FILE, source) {
        Ok(spec) => {
            prop_assert!(!spec.tasks.is_empty());
            let refused = controller_problems(&spec);
            prop_assert!(
                refused.is_empty(),
                "accepted, but the controller refuses: {refused:?}"
            );
        }
        Err(err) => {
            prop_assert!(!err.problems.is_empty());
            prop_assert!(!err.to_string().is_empty());
            for problem in &err.problems {
                let rest = problem.strip_prefix("job.toml:");
                prop_assert!(rest.is_some(), "{problem:?}");
                let mut parts = rest.unwrap_or_default().splitn(3, ':');
                let (line, col, message) = (parts.next(), parts.next(), parts.next());
                prop_assert!(line.is_some_and(|l| l.parse::<usize>().is_ok_and(|l| l >= 1)));
                prop_assert!(col.is_some_and(|c| c.parse::<usize>().is_ok_and(|c| c >= 1)));
                prop_assert!(message.is_some_and(|m| !m.trim().is_empty()), "{problem:?}");
            }
        }
    }
    Ok(())
}

/// What the controller would refuse of an accepted file: the shared checks of
/// `ferry_jobspec`, field by field (the controller's `engine::validate`).
fn controller_problems(spec: &JobSpec) -> Vec<String> {
    let mut out = Vec::new();
    let mut note = |what: &str, problem: Option<String>| {
        if let Some(p) = problem {
            out.push(format!("{what} {p}"));
        }
    };
    note(
        "name",
        check::text(&spec.name, l::JOB_NAME_MAX, Chars::NoControl, true),
    );
    note(
        "tasks",
        check::count(spec.tasks.len(), l::TASKS_PER_JOB_MAX),
    );
    note("params", check::count(spec.params.len(), l::PARAMS_MAX));
    let mut params_bytes = 0;
    for (name, value) in &spec.params {
        params_bytes += name.len() + value.len();
        note("param name", check::param_name(name));
        note(
            "param",
            check::text(value, l::PARAM_VALUE_MAX, Chars::NoNul, false),
        );
    }
    note(
        "params bytes",
        check::count(params_bytes, l::PARAMS_TOTAL_MAX),
    );
    let mut ids = HashSet::new();
    for task in &spec.tasks {
        note("task id", check::task_id(&task.id));
        if !ids.insert(task.id.as_str()) {
            note("", Some(format!("duplicate task id {:?}", task.id)));
        }
        note(
            "queue",
            check::text(&task.queue, l::QUEUE_NAME_MAX, Chars::NoControl, true),
        );
        note("labels", check::count(task.labels.len(), l::LABELS_MAX));
        for (key, value) in &task.labels {
            note(
                "label key",
                check::text(key, l::LABEL_KEY_MAX, Chars::NoControl, true),
            );
            note(
                "label",
                check::text(value, l::LABEL_VALUE_MAX, Chars::NoControl, false),
            );
        }
        let mut deps = HashSet::new();
        for dep in &task.depends_on {
            if !deps.insert(dep) || dep == &task.id {
                note(
                    "",
                    Some(format!("dependency {dep:?} repeated or on itself")),
                );
            }
        }
        match &task.kind {
            Some(Kind::Shell(s)) => note(
                "shell",
                check::text(&s.command, l::SHELL_COMMAND_MAX, Chars::NoNul, true),
            ),
            Some(Kind::Sql(s)) => {
                note(
                    "datasource",
                    check::text(&s.datasource, l::SQL_NAME_MAX, Chars::NoControl, true),
                );
                note(
                    "query",
                    check::text(&s.query, l::SQL_QUERY_MAX, Chars::NoNul, true),
                );
                note(
                    "incremental column",
                    check::text(
                        &s.incremental_column,
                        l::SQL_NAME_MAX,
                        Chars::NoControl,
                        false,
                    ),
                );
            }
            None => note("", Some("no kind".to_owned())),
        }
        note("outputs", check::count(task.outputs.len(), l::OUTPUTS_MAX));
        for output in &task.outputs {
            note("output", check::output_path(output));
        }
        note(
            "timeout",
            check::duration_ms(task.timeout_ms, l::TIMEOUT_MAX_MS),
        );
        if let Some(retry) = &task.retry {
            note(
                "max_attempts",
                check::max_attempts(u64::from(retry.max_attempts)),
            );
            let initial = retry.initial_delay_ms.unwrap_or(0);
            note(
                "initial_delay",
                check::duration_ms(initial, l::RETRY_DELAY_MAX_MS),
            );
            let max = retry.max_delay_ms.unwrap_or(initial.max(60_000));
            note("max_delay", check::duration_ms(max, l::RETRY_DELAY_MAX_MS));
            if max < initial {
                note(
                    "",
                    Some("max_delay is shorter than initial_delay".to_owned()),
                );
            }
        }
    }
    for task in &spec.tasks {
        for dep in &task.depends_on {
            if !ids.contains(dep.as_str()) {
                note("", Some(format!("unknown dependency {dep:?}")));
            }
        }
    }
    out
}

/// Text of any characters: NULs, controls, escapes, quotes, non-ASCII, newlines.
fn any_text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => "[\\x00-\\x1f\\x7f\"'\\\\ \\[\\]{}=.,#a-z0-9_-]{0,24}",
        1 => "[a-z]{1,8}",
        1 => Just(String::new()),
        1 => Just(" ".to_owned()),
        1 => (any::<char>(), prop::sample::select(vec![129usize, 257, 1_025, 65_537, 262_145]))
            .prop_map(|(c, n)| c.to_string().repeat(n)),
    ]
}

/// `s` as a TOML string: usually a valid basic string (every control character escaped, NUL
/// included), sometimes literal, multi-line, or raw (which is then a syntax error).
fn quoted(s: &str, style: u8) -> String {
    match style {
        0 => format!("'{s}'"),
        1 => format!("\"\"\"{s}\"\"\""),
        2 => format!("\"{s}\""),
        _ => {
            let mut out = String::from("\"");
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    c if c.is_control() => {
                        let _ = write!(out, "\\u{:04X}", c as u32);
                    }
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
    }
}

fn string_value() -> impl Strategy<Value = String> {
    (any_text(), any::<u8>()).prop_map(|(s, style)| quoted(&s, style))
}

fn id_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(|s| format!("\"{s}\"")),
        1 => prop::sample::select(vec![".", "..", "a/b", "", "é"]).prop_map(|s| format!("\"{s}\"")),
        1 => string_value(),
    ]
}

fn duration_value() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "10m",
            "1s",
            "0s",
            "1ns",
            "7d",
            "7d 1ms",
            "1d",
            "2d",
            "300000000y",
            "18446744073709551615s",
            "99999999999999999999999999h",
            "-1s",
            "1.5h",
            "",
            " ",
            "m",
            "1 fortnight",
        ])
        .prop_map(|d| format!("\"{d}\"")),
        (
            any::<u64>(),
            prop::sample::select(vec!["ns", "us", "ms", "s", "m", "h", "d", "w", "y"])
        )
            .prop_map(|(n, unit)| format!("\"{n}{unit}\"")),
        string_value(),
    ]
}

fn integer_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (-3i64..200).prop_map(|n| n.to_string()),
        prop::sample::select(vec![
            "0x7fffffffffffffff",
            "0xffffffffffffffff",
            "0o777",
            "0b101",
            "99999999999999999999",
            "-9223372036854775808",
            "+1",
            "1_000",
            "4294967296",
            "4294967297",
        ])
        .prop_map(str::to_owned),
    ]
}

/// Any TOML value, nested arrays and inline tables included.
fn any_value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        string_value(),
        integer_value(),
        prop::sample::select(vec![
            "true",
            "false",
            "1.5",
            "-0.0",
            "inf",
            "nan",
            "1e400",
            "1979-05-27T07:32:00Z",
            "1979-05-27",
            "07:32:00",
            "[]",
            "{}",
        ])
        .prop_map(str::to_owned),
        duration_value(),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(|v| format!("[{}]", v.join(", "))),
            prop::collection::btree_map(key(), inner, 0..6).prop_map(|kv| {
                let kv: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            }),
        ]
    })
}

/// A key: one the job file knows, another, or a quoted one of any characters.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec![
            "name", "params", "tasks", "id", "queue", "shell", "sql", "datasource", "query",
            "format", "compression", "max_rows_per_file", "incremental", "column", "depends_on",
            "outputs", "timeout", "retry", "max_attempts", "initial_delay", "max_delay", "labels",
        ])
        .prop_map(str::to_owned),
        1 => "[A-Za-z_][A-Za-z0-9_-]{0,10}",
        1 => any_text().prop_map(|s| quoted(&s, 3)),
    ]
}

/// A parameter's name: usually an identifier, sometimes anything (quoted).
fn param_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z_][A-Za-z0-9_]{0,12}",
        1 => any_text().prop_map(|s| quoted(&s, 3)),
    ]
}

/// A value for `key`: usually of the right shape, sometimes any value at all.
fn value_for(name: &'static str) -> BoxedStrategy<String> {
    let right: BoxedStrategy<String> = match name {
        "name" | "queue" | "shell" => string_value().boxed(),
        "id" => id_value().boxed(),
        "depends_on" => prop::collection::vec(id_value(), 0..5)
            .prop_map(|v| format!("[{}]", v.join(", ")))
            .boxed(),
        "outputs" => prop::collection::vec(
            prop_oneof![
                string_value(),
                prop::sample::select(vec!["\"out/a.csv\"", "\"/etc/passwd\"", "\"../x\"", "\"\""])
                    .prop_map(str::to_owned),
            ],
            0..5,
        )
        .prop_map(|v| format!("[{}]", v.join(", ")))
        .boxed(),
        "timeout" => duration_value().boxed(),
        "retry" => (
            prop::option::of(integer_value()),
            prop::option::of(duration_value()),
            prop::option::of(duration_value()),
            prop::option::of((key(), any_value())),
        )
            .prop_map(|(n, initial, max, extra)| {
                let mut kv = Vec::new();
                if let Some(n) = n {
                    kv.push(format!("max_attempts = {n}"));
                }
                if let Some(d) = initial {
                    kv.push(format!("initial_delay = {d}"));
                }
                if let Some(d) = max {
                    kv.push(format!("max_delay = {d}"));
                }
                if let Some((k, v)) = extra {
                    kv.push(format!("{k} = {v}"));
                }
                format!("{{ {} }}", kv.join(", "))
            })
            .boxed(),
        "labels" | "params" => prop::collection::btree_map(key(), any_value(), 0..5)
            .prop_map(|kv| {
                let kv: Vec<String> = kv.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                format!("{{ {} }}", kv.join(", "))
            })
            .boxed(),
        "sql" => (
            prop::option::of(string_value()),
            prop::option::of(string_value()),
            prop::option::of(prop_oneof![
                prop::sample::select(vec!["\"csv\"", "\"jsonl\"", "\"parquet\"", "\"xml\""])
                    .prop_map(str::to_owned),
                string_value(),
            ]),
            prop::option::of(
                prop::sample::select(vec![
                    "\"none\"",
                    "\"gzip\"",
                    "\"zstd\"",
                    "\"snappy\"",
                    "\"\"",
                ])
                .prop_map(str::to_owned),
            ),
            prop::option::of(integer_value()),
            prop::option::of(prop_oneof![
                string_value().prop_map(|c| format!("{{ column = {c} }}")),
                any_value(),
            ]),
        )
            .prop_map(|(ds, q, format, compression, rows, incremental)| {
                let mut kv = Vec::new();
                for (k, v) in [
                    ("datasource", ds),
                    ("query", q),
                    ("format", format),
                    ("compression", compression),
                    ("max_rows_per_file", rows),
                    ("incremental", incremental),
                ] {
                    if let Some(v) = v {
                        kv.push(format!("{k} = {v}"));
                    }
                }
                format!("{{ {} }}", kv.join(", "))
            })
            .boxed(),
        _ => any_value().boxed(),
    };
    prop_oneof![4 => right, 1 => any_value()].boxed()
}

const TASK_KEYS: &[&str] = &[
    "id",
    "queue",
    "shell",
    "sql",
    "depends_on",
    "outputs",
    "timeout",
    "retry",
    "labels",
    "incremental",
];

/// One `[[tasks]]` entry: an id and a kind (usually), a subset of its other keys, rarely both
/// kinds or a key twice, with values.
fn task() -> impl Strategy<Value = String> {
    let entries: Vec<_> = TASK_KEYS
        .iter()
        .filter(|k| !matches!(**k, "id" | "shell" | "sql"))
        .map(|&k| prop::option::weighted(0.4, value_for(k).prop_map(move |v| format!("{k} = {v}"))))
        .collect();
    let id = prop::option::weighted(0.95, value_for("id").prop_map(|v| format!("id = {v}")));
    let kind = prop_oneof![
        8 => value_for("shell").prop_map(|v| vec![format!("shell = {v}")]),
        4 => value_for("sql").prop_map(|v| vec![format!("sql = {v}")]),
        1 => Just(vec![]),
        1 => (value_for("shell"), value_for("sql"))
            .prop_map(|(a, b)| vec![format!("shell = {a}"), format!("sql = {b}")]),
    ];
    let twice = prop::option::weighted(0.05, prop::sample::select(TASK_KEYS));
    (id, kind, entries, twice, any::<prop::sample::Index>()).prop_map(
        |(id, kind, entries, twice, at)| {
            let mut lines: Vec<String> = id
                .into_iter()
                .chain(kind)
                .chain(entries.into_iter().flatten())
                .collect();
            if let Some(k) = twice {
                lines.insert(at.index(lines.len() + 1), format!("{k} = \"again\""));
                lines.push(format!("{k} = \"again\""));
            }
            let mut out = String::from("[[tasks]]\n");
            for line in lines {
                out.push_str(&line);
                out.push('\n');
            }
            out
        },
    )
}

/// A job file: a name, parameters, tasks, stray keys and stray lines, in any order.
fn document() -> impl Strategy<Value = String> {
    (
        prop::option::weighted(0.9, value_for("name")),
        prop::option::of(prop::collection::btree_map(param_key(), any_value(), 0..6)),
        prop::collection::vec(task(), 0..8),
        prop::option::weighted(0.1, (key(), any_value())),
        prop::option::weighted(0.1, any_text()),
    )
        .prop_map(|(name, params, tasks, stray, junk)| {
            let mut out = String::new();
            if let Some((k, v)) = stray {
                let _ = writeln!(out, "{k} = {v}");
            }
            if let Some(name) = name {
                let _ = writeln!(out, "name = {name}");
            }
            if let Some(params) = params {
                out.push_str("[params]\n");
                for (k, v) in params {
                    let _ = writeln!(out, "{k} = {v}");
                }
            }
            for task in tasks {
                out.push_str(&task);
            }
            if let Some(junk) = junk {
                out.push_str(&junk);
            }
            out
        })
}

/// A file that is nearly valid: a real job's lines, each kept, repeated or cut at a random
/// byte, so parsing fails (or passes) at every place.
fn mangled() -> impl Strategy<Value = String> {
    const JOB: &str = "name = \"nightly\"\n[params]\nday = \"2026-01-01\"\n[[tasks]]\nid = \"a\"\n\
                       shell = \"echo $FERRY_PARAM_day\"\noutputs = [\"out/a.csv\"]\n\
                       retry = { max_attempts = 3, initial_delay = \"1s\", max_delay = \"1m\" }\n\
                       [[tasks]]\nid = \"b\"\ndepends_on = [\"a\"]\nqueue = \"db\"\n\
                       labels = { site = \"x\" }\ntimeout = \"10m\"\n\
                       sql = { datasource = \"pg\", query = \"select 1\", format = \"parquet\", \
                       compression = \"zstd\", incremental = { column = \"id\" } }\n";
    let lines: Vec<&'static str> = JOB.lines().collect();
    let n = lines.len();
    prop::collection::vec((0u8..48, any::<prop::sample::Index>()), n).prop_map(move |edits| {
        let mut out = String::new();
        for (line, (how, at)) in lines.iter().zip(edits) {
            match how {
                0 => {}
                1 => {
                    let mut cut = at.index(line.len() + 1);
                    while !line.is_char_boundary(cut) {
                        cut -= 1;
                    }
                    out.push_str(&line[..cut]);
                    out.push('\n');
                }
                2 => {
                    out.push_str(line);
                    out.push('\n');
                    out.push_str(line);
                    out.push('\n');
                }
                _ => {
                    out.push_str(line);
                    out.push('\n');
                }
            }
        }
        out
    })
}

/// A plausible value: usually a valid one of `valid`, sometimes an edge (controls, NULs,
/// huge, blank), always well-formed TOML.
fn plausible(valid: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        8 => proptest::string::string_regex(valid).expect("regex").prop_map(|s| quoted(&s, 3)),
        1 => prop::sample::select(vec![
            "", " ", "\0", "a\0b", "\u{1b}[2J", "\n", "\u{7f}", "\u{85}", "/abs", "../up",
            "a/../../b", ".", "..", "é",
        ])
        .prop_map(|s| quoted(s, 3)),
        1 => (any::<char>(), prop::sample::select(vec![129usize, 257, 1_025, 32_769, 65_537]))
            .prop_map(|(c, n)| quoted(&c.to_string().repeat(n.div_ceil(c.len_utf8())), 3)),
    ]
}

/// A job file of the right shape whose values are mostly valid: what the CLI accepts, the
/// controller must accept too.
fn plausible_document() -> impl Strategy<Value = String> {
    let task = (
        prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g"]),
        prop::option::weighted(0.3, plausible("[a-z]{1,8}")),
        prop::collection::btree_map("[a-z]{1,6}", plausible("[ -~]{0,12}"), 0..3),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g"]), 0..3),
        prop_oneof![
            3 => plausible("[ -~]{1,30}").prop_map(|c| format!("shell = {c}")),
            1 => (plausible("[a-z]{1,8}"), plausible("[ -~]{1,30}"), prop::option::of(plausible("[a-z_]{1,8}")))
                .prop_map(|(ds, q, inc)| match inc {
                    Some(col) => format!("sql = {{ datasource = {ds}, query = {q}, incremental = {{ column = {col} }} }}"),
                    None => format!("sql = {{ datasource = {ds}, query = {q} }}"),
                }),
        ],
        prop::collection::vec(plausible("[a-z]{1,6}(/[a-z]{1,6}){0,2}"), 0..3),
        prop::option::weighted(0.3, duration_value()),
        prop::option::weighted(0.3, value_for("retry")),
    )
        .prop_map(|(id, queue, labels, deps, kind, outputs, timeout, retry)| {
            let mut out = format!("[[tasks]]\nid = \"{id}\"\n{kind}\n");
            if let Some(q) = queue {
                let _ = writeln!(out, "queue = {q}");
            }
            if !labels.is_empty() {
                let kv: Vec<String> = labels.into_iter().map(|(k, v)| format!("{k} = {v}")).collect();
                let _ = writeln!(out, "labels = {{ {} }}", kv.join(", "));
            }
            if !deps.is_empty() {
                let d: Vec<String> = deps.iter().map(|d| format!("\"{d}\"")).collect();
                let _ = writeln!(out, "depends_on = [{}]", d.join(", "));
            }
            if !outputs.is_empty() && kind.starts_with("shell") {
                let _ = writeln!(out, "outputs = [{}]", outputs.join(", "));
            }
            if let Some(t) = timeout {
                let _ = writeln!(out, "timeout = {t}");
            }
            if let Some(r) = retry {
                let _ = writeln!(out, "retry = {r}");
            }
            out
        });
    (
        plausible("[a-z][a-z -]{0,20}"),
        prop::collection::btree_map(
            prop_oneof![8 => "[A-Za-z_][A-Za-z0-9_]{0,8}", 1 => "[a-z0-9-]{1,8}"],
            plausible("[ -~]{0,20}"),
            0..4,
        ),
        prop::collection::vec(task, 1..6),
    )
        .prop_map(|(name, params, tasks)| {
            let mut out = format!("name = {name}\n");
            if !params.is_empty() {
                out.push_str("[params]\n");
                for (k, v) in params {
                    let _ = writeln!(out, "{k} = {v}");
                }
            }
            for task in tasks {
                out.push_str(&task);
            }
            out
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn arbitrary_text_never_panics(source in any::<String>()) {
        check_parsed(&source)?;
    }

    #[test]
    fn job_files_of_the_real_keys_never_panic(source in document()) {
        check_parsed(&source)?;
    }

    #[test]
    fn plausible_job_files_are_accepted_only_when_the_controller_would(source in plausible_document()) {
        check_parsed(&source)?;
    }

    #[test]
    fn mangled_job_files_never_panic(source in mangled()) {
        check_parsed(&source)?;
    }

    #[test]
    fn arbitrary_bytes_from_a_file_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        overrides in prop::collection::vec((any::<String>(), any::<String>()), 0..3),
    ) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let path = dir.path().join("job.toml");
        std::fs::write(&path, &bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        match load(&path, &overrides) {
            Ok(spec) => prop_assert!(!spec.tasks.is_empty()),
            Err(err) => {
                prop_assert!(matches!(err, CliError::BadInput(_) | CliError::InvalidJobFile(_)));
                prop_assert!(!err.to_string().trim().is_empty());
            }
        }
    }
}

/// A long chain of dependencies (each task on the one before it), and a cycle through all of
/// them: checked without recursing once per task.
#[test]
fn long_dependency_chains_and_cycles_are_checked() {
    for cyclic in [false, true] {
        let n = 50_000;
        let mut source = String::from("name = \"chain\"\n");
        for i in 0..n {
            let dep = if i > 0 {
                format!("t{}", i - 1)
            } else if cyclic {
                format!("t{}", n - 1)
            } else {
                String::new()
            };
            let _ = write!(source, "[[tasks]]\nid = \"t{i}\"\nshell = \"true\"\n");
            if !dep.is_empty() {
                let _ = writeln!(source, "depends_on = [\"{dep}\"]");
            }
        }
        // The test harness's threads have 2 MiB stacks; the CLI's main thread has more.
        let problems = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || parse(FILE, &source).map(|_| ()).map_err(|e| e.problems))
            .expect("spawn")
            .join()
            .expect("parse did not panic")
            .unwrap_err();
        assert!(
            problems[0].contains("tasks 50000 are given; the limit is 10000"),
            "{problems:?}"
        );
        assert_eq!(
            problems.iter().any(|p| p.contains("dependency cycle")),
            cyclic,
            "{:?}",
            &problems[..problems.len().min(3)]
        );
    }
}

/// Arrays and inline tables nested deeper than anyone writes.
#[test]
fn deep_nesting_is_refused_not_overflowed() {
    for depth in [100, 1_000, 100_000] {
        for (open, close) in [("[", "]"), ("{ a = ", " }")] {
            let value = format!("{}1{}", open.repeat(depth), close.repeat(depth));
            for source in [
                format!("name = {value}\n[[tasks]]\nid = \"a\"\nshell = \"x\"\n"),
                format!("name = \"j\"\n[[tasks]]\nid = \"a\"\nshell = \"x\"\nlabels = {value}\n"),
            ] {
                let outcome = std::thread::Builder::new()
                    .stack_size(2 << 20)
                    .spawn(move || parse(FILE, &source).map(|_| ()).map_err(|e| e.problems))
                    .expect("spawn")
                    .join()
                    .expect("parse did not panic");
                let problems = outcome.unwrap_err();
                assert!(!problems.is_empty());
            }
        }
    }
}

/// What the properties found accepted by the CLI and refused by the controller: each field
/// is checked against the limits the controller applies, with its place.
#[test]
fn every_limit_the_controller_applies_is_checked_in_the_file() {
    let source = format!(
        "name = \"j\"\n[params]\nbig = \"{}\"\nnul = \"a\\u0000b\"\n[[tasks]]\nid = \"a\"\n\
         shell = \"x\"\nqueue = \"q\\u001b\"\nlabels = {{ site = \"a\\nb\" }}\n\
         outputs = [\"a\\nb\"]\n[[tasks]]\nid = \"b\"\n\
         sql = {{ datasource = \"{}\", query = \"select\\u0000\", incremental = {{ column = \"c\\t\" }} }}\n",
        "v".repeat((32 << 10) + 1),
        "d".repeat(129),
    );
    let problems = parse(FILE, &source).unwrap_err().problems;
    assert_eq!(
        problems,
        vec![
            "job.toml:3:7: params.big is 32769 bytes long; the limit is 32768",
            "job.toml:4:7: params.nul holds a NUL byte ('\\0')",
            "job.toml:8:9: queue holds a control character ('\\u{1b}')",
            "job.toml:9:19: labels.\"site\" holds a control character ('\\n')",
            "job.toml:10:12: output \"a\\nb\" holds a control character ('\\n')",
            "job.toml:13:22: sql.datasource is 129 bytes long; the limit is 128",
            "job.toml:13:163: sql.query holds a NUL byte ('\\0')",
            "job.toml:13:204: sql.incremental.column holds a control character ('\\t')",
        ]
    );
}
