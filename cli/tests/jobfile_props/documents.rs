//! Strategies for whole job files: the real keys with values of every kind, mangled documents,
//! and plausible ones that the controller might accept.

use std::fmt::Write as _;

use proptest::prelude::*;

use super::values::*;

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
pub(crate) fn document() -> impl Strategy<Value = String> {
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
pub(crate) fn mangled() -> impl Strategy<Value = String> {
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
pub(crate) fn plausible_document() -> impl Strategy<Value = String> {
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
