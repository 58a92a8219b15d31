//! The strategies of the property tests: what a hostile or careless client sends — text and ids
//! at and past the limits, submissions of any shape and plausible ones, agents' identities,
//! attempt references and log chunks.

use std::collections::HashMap;

use ferry_proto::v1 as pb;
use proptest::prelude::*;

/// Text a hostile client sends: any characters, NULs and escapes, the edges of the limits and
/// far past them.
pub(super) fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        2 => "[\\x00-\\x1f\\x7f\\u{80}-\\u{9f} ./a-z0-9_-]{0,16}",
        3 => prop::sample::select(vec![
            "", " ", "a", "b", "c", "default", ".", "..", "../x", "/abs", "csv", "jsonl",
            "parquet", "gzip", "zstd", "snappy", "none", "id", "x\0y", "\u{1b}[2J",
        ])
        .prop_map(str::to_owned),
        1 => (any::<char>(), prop::sample::select(vec![
            129usize, 257, 1_025, 4_097, 32 << 10, (64 << 10) + 1, (256 << 10) + 1,
        ]))
            .prop_map(|(c, n)| c.to_string().repeat(n.div_ceil(c.len_utf8()))),
    ]
}

/// Task ids from a small pool, so that duplicates, self-dependencies and cycles are common.
pub(super) fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["a", "b", "c", "d", "e", "f"]).prop_map(str::to_owned),
        1 => text(),
    ]
}

pub(super) fn millis() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0),
        any::<u64>(),
        prop::sample::select(vec![
            1,
            86_400_000,
            86_400_001,
            604_800_000,
            604_800_001,
            9_467_280_000_000_000_000,
            i64::MAX as u64,
            i64::MAX as u64 + 1,
            u64::MAX,
        ]),
    ]
}

pub(super) fn map(max: usize) -> impl Strategy<Value = HashMap<String, String>> {
    prop::collection::hash_map(text(), text(), 0..max)
}

pub(super) fn retry() -> impl Strategy<Value = Option<pb::RetryPolicy>> {
    prop::option::of(
        (
            prop_oneof![0u32..5, 99u32..102, any::<u32>()],
            prop::option::of(millis()),
            prop::option::of(millis()),
        )
            .prop_map(
                |(max_attempts, initial_delay_ms, max_delay_ms)| pb::RetryPolicy {
                    max_attempts,
                    initial_delay_ms,
                    max_delay_ms,
                },
            ),
    )
}

pub(super) fn kind() -> impl Strategy<Value = Option<pb::task_spec::Kind>> {
    prop_oneof![
        1 => Just(None),
        3 => text().prop_map(|command| Some(pb::task_spec::Kind::Shell(pb::ShellTask { command }))),
        2 => (text(), text(), text(), text(), text(), any::<u64>()).prop_map(
            |(datasource, query, format, incremental_column, compression, max_rows_per_file)| {
                Some(pb::task_spec::Kind::Sql(pb::SqlTask {
                    datasource,
                    query,
                    format,
                    incremental_column,
                    compression,
                    max_rows_per_file,
                }))
            }
        ),
    ]
}

pub(super) fn task() -> impl Strategy<Value = pb::TaskSpec> {
    (
        id(),
        text(),
        map(4),
        prop::collection::vec(id(), 0..6),
        kind(),
        prop::collection::vec(text(), 0..4),
        millis(),
        retry(),
    )
        .prop_map(
            |(id, queue, labels, depends_on, kind, outputs, timeout_ms, retry)| pb::TaskSpec {
                id,
                queue,
                labels,
                depends_on,
                kind,
                outputs,
                timeout_ms,
                retry,
                schedule_to_start_timeout_ms: 0,
            },
        )
}

pub(super) fn submit() -> impl Strategy<Value = pb::SubmitJobRequest> {
    let spec =
        (text(), map(5), prop::collection::vec(task(), 0..10)).prop_map(|(name, params, tasks)| {
            pb::JobSpec {
                name,
                params,
                tasks,
            }
        });
    let range = (prop::option::of(text()), text())
        .prop_map(|(from, until)| pb::BackfillRange { from, until });
    (
        prop::option::weighted(0.95, spec),
        text(),
        prop::collection::hash_map(id(), range, 0..3),
    )
        .prop_map(|(spec, idempotency_key, backfill)| pb::SubmitJobRequest {
            spec,
            idempotency_key,
            backfill,
        })
}

/// A plausible value: usually `valid`, sometimes any text (`text()`).
pub(super) fn mostly(valid: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        9 => proptest::string::string_regex(valid).expect("regex"),
        1 => text(),
    ]
    .boxed()
}

pub(super) fn plausible_millis(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0..=max, 1 => millis()]
}

/// A submission that is mostly valid, so that the checks' acceptance is exercised too.
pub(super) fn plausible_submit() -> impl Strategy<Value = pb::SubmitJobRequest> {
    let ids = || prop::sample::select(vec!["a", "b", "c", "d", "e", "f", "g", "h"]);
    let task = (
        prop::option::weighted(0.05, ids()),
        prop_oneof![Just(String::new()), mostly("[a-z]{1,8}")],
        prop::collection::hash_map(mostly("[a-z]{1,6}"), mostly("[ -~]{0,12}"), 0..3),
        prop::collection::vec(
            prop::option::weighted(0.03, ids().prop_map(str::to_owned)),
            0..3,
        ),
        prop_oneof![
            6 => mostly("[ -~]{1,20}").prop_map(|command| Some(pb::task_spec::Kind::Shell(
                pb::ShellTask { command }
            ))),
            2 => (mostly("[a-z]{1,8}"), mostly("[ -~]{1,20}"), prop::sample::select(vec![
                "", "csv", "jsonl", "parquet", "xml",
            ]), prop::sample::select(vec!["", "none", "gzip", "zstd", "snappy"]),
            prop_oneof![Just(String::new()), mostly("[a-z_]{1,8}")])
                .prop_map(|(datasource, query, format, compression, incremental_column)| {
                    Some(pb::task_spec::Kind::Sql(pb::SqlTask {
                        datasource,
                        query,
                        format: format.into(),
                        incremental_column,
                        compression: compression.into(),
                        max_rows_per_file: 0,
                    }))
                }),
            1 => Just(None),
        ],
        prop::collection::vec(mostly("[a-z]{1,6}(/[a-z]{1,6}){0,2}"), 0..2),
        plausible_millis(ferry_jobspec::limits::TIMEOUT_MAX_MS),
        prop::option::of((
            prop_oneof![8 => 0u32..=100, 1 => any::<u32>()],
            prop::option::weighted(
                0.3,
                plausible_millis(ferry_jobspec::limits::RETRY_DELAY_MAX_MS),
            ),
            prop::option::weighted(
                0.3,
                plausible_millis(ferry_jobspec::limits::RETRY_DELAY_MAX_MS),
            ),
        )),
    )
        .prop_map(
            |(id, queue, labels, depends_on, kind, outputs, timeout_ms, retry)| {
                let sql = matches!(kind, Some(pb::task_spec::Kind::Sql(_)));
                pb::TaskSpec {
                    // An id and dependencies of the task's place (see below), or wild ones.
                    id: id.unwrap_or_default().into(),
                    queue,
                    labels,
                    depends_on: depends_on
                        .into_iter()
                        .map(Option::unwrap_or_default)
                        .collect(),
                    kind,
                    outputs: if sql { vec![] } else { outputs },
                    timeout_ms,
                    schedule_to_start_timeout_ms: 0,
                    retry: retry.map(|(max_attempts, initial_delay_ms, max_delay_ms)| {
                        pb::RetryPolicy {
                            max_attempts,
                            initial_delay_ms,
                            max_delay_ms,
                        }
                    }),
                }
            },
        );
    (
        mostly("[a-z][a-z -]{0,12}"),
        prop::collection::hash_map(
            mostly("[A-Za-z_][A-Za-z0-9_]{0,8}"),
            mostly("[ -~]{0,16}"),
            0..3,
        ),
        prop::collection::vec((task, any::<prop::sample::Index>()), 1..8),
        prop_oneof![Just(String::new()), mostly("[a-z0-9-]{1,16}")],
        prop::option::weighted(
            0.1,
            (
                prop_oneof![ids().prop_map(str::to_owned), "t[0-7]"],
                prop::option::of(mostly("[0-9]{1,4}")),
                mostly("[0-9]{1,4}"),
            ),
        )
        .prop_map(|range| {
            range
                .map(|(task, from, until)| (task, pb::BackfillRange { from, until }))
                .into_iter()
                .collect::<HashMap<_, _>>()
        }),
    )
        .prop_map(|(name, params, tasks, idempotency_key, backfill)| {
            // Task i is "t<i>" and depends on earlier tasks: a DAG, unless a wild id or
            // dependency was drawn.
            let tasks = tasks
                .into_iter()
                .enumerate()
                .map(|(i, (mut t, pick))| {
                    if t.id.is_empty() {
                        t.id = format!("t{i}");
                    }
                    for dep in &mut t.depends_on {
                        if dep.is_empty() && i > 0 {
                            *dep = format!("t{}", pick.index(i));
                        }
                    }
                    t.depends_on.retain(|d| !d.is_empty());
                    t.depends_on.dedup();
                    t
                })
                .collect();
            pb::SubmitJobRequest {
                spec: Some(pb::JobSpec {
                    name,
                    params,
                    tasks,
                }),
                idempotency_key,
                backfill,
            }
        })
}

pub(super) fn attempt_ref() -> impl Strategy<Value = pb::AttemptRef> {
    (text(), id(), any::<u32>()).prop_map(|(job_id, task_id, attempt)| pb::AttemptRef {
        job_id,
        task_id,
        attempt,
    })
}

pub(super) fn agent() -> impl Strategy<Value = Option<pb::AgentIdentity>> {
    prop::option::weighted(
        0.9,
        (text(), text()).prop_map(|(name, session)| pb::AgentIdentity { name, session }),
    )
}

pub(super) fn log_chunks() -> impl Strategy<Value = Vec<pb::LogChunk>> {
    prop::collection::vec(
        (
            any::<i32>(),
            prop_oneof![
                4 => prop::collection::vec(any::<u8>(), 0..64),
                1 => prop::sample::select(vec![(1usize << 20) + 1, 1 << 20])
                    .prop_map(|n| vec![b'x'; n]),
            ],
        )
            .prop_map(|(stream, data)| pb::LogChunk { stream, data }),
        0..6,
    )
}
