//! Strategies for the job file's values: text of any characters, quoted every TOML way, and
//! values of each type (durations, integers, ids), right for a key or of any type.

use std::fmt::Write as _;

use proptest::prelude::*;

/// Text of any characters: NULs, controls, escapes, quotes, non-ASCII, newlines.
pub(crate) fn any_text() -> impl Strategy<Value = String> {
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
pub(crate) fn quoted(s: &str, style: u8) -> String {
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

pub(crate) fn string_value() -> impl Strategy<Value = String> {
    (any_text(), any::<u8>()).prop_map(|(s, style)| quoted(&s, style))
}

pub(crate) fn id_value() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(vec!["a", "b", "c", "d", "e"]).prop_map(|s| format!("\"{s}\"")),
        1 => prop::sample::select(vec![".", "..", "a/b", "", "é"]).prop_map(|s| format!("\"{s}\"")),
        1 => string_value(),
    ]
}

pub(crate) fn duration_value() -> impl Strategy<Value = String> {
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

pub(crate) fn integer_value() -> impl Strategy<Value = String> {
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
pub(crate) fn any_value() -> impl Strategy<Value = String> {
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
pub(crate) fn key() -> impl Strategy<Value = String> {
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
pub(crate) fn param_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z_][A-Za-z0-9_]{0,12}",
        1 => any_text().prop_map(|s| quoted(&s, 3)),
    ]
}

/// A value for `key`: usually of the right shape, sometimes any value at all.
pub(crate) fn value_for(name: &'static str) -> BoxedStrategy<String> {
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
