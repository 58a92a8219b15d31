//! Property tests: whatever a client sends, the checks and conversions a handler runs before
//! touching the store answer `Ok` or a `Status`, never a panic — a job's spec (`new_job`, then
//! `engine::validate::problems`, as `SubmitJob` does), the agents' requests (identity,
//! registration, polls, heartbeats, logs, completions, releases) and an upload's frames.

use std::collections::HashMap;

use bytes::Bytes;
use ferry_proto::v1 as pb;
use proptest::prelude::*;
use prost::Message;
use tonic::{Code, Status};

use super::{checks, convert, identity, upload_frames::Frames};
use crate::engine::validate;

/// A refusal names what is wrong: `INVALID_ARGUMENT` (or a code the call documents) with words.
fn refused(status: &Status, codes: &[Code]) -> Result<(), TestCaseError> {
    prop_assert!(codes.contains(&status.code()), "{status:?}");
    prop_assert!(!status.message().trim().is_empty(), "{status:?}");
    Ok(())
}

/// Text a hostile client sends: any characters, NULs and escapes, the edges of the limits and
/// far past them.
fn text() -> impl Strategy<Value = String> {
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
fn id() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(vec!["a", "b", "c", "d", "e", "f"]).prop_map(str::to_owned),
        1 => text(),
    ]
}

fn millis() -> impl Strategy<Value = u64> {
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

fn map(max: usize) -> impl Strategy<Value = HashMap<String, String>> {
    prop::collection::hash_map(text(), text(), 0..max)
}

fn retry() -> impl Strategy<Value = Option<pb::RetryPolicy>> {
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

fn kind() -> impl Strategy<Value = Option<pb::task_spec::Kind>> {
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

fn task() -> impl Strategy<Value = pb::TaskSpec> {
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
            },
        )
}

fn submit() -> impl Strategy<Value = pb::SubmitJobRequest> {
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
fn mostly(valid: &'static str) -> BoxedStrategy<String> {
    prop_oneof![
        9 => proptest::string::string_regex(valid).expect("regex"),
        1 => text(),
    ]
    .boxed()
}

fn plausible_millis(max: u64) -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0..=max, 1 => millis()]
}

/// A submission that is mostly valid, so that the checks' acceptance is exercised too.
fn plausible_submit() -> impl Strategy<Value = pb::SubmitJobRequest> {
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

/// What `SubmitJob` runs before the store: the conversion, then the engine's checks.
fn submit_checks(r: pb::SubmitJobRequest) -> Result<Vec<String>, TestCaseError> {
    match convert::new_job(r.spec, r.idempotency_key, r.backfill) {
        Ok(job) => {
            let problems = validate::problems(&job);
            for p in &problems {
                prop_assert!(!p.trim().is_empty());
            }
            if problems.is_empty() {
                accepted_is_sound(&job)?;
            }
            Ok(problems)
        }
        Err(status) => {
            refused(&status, &[Code::InvalidArgument])?;
            Ok(vec![status.message().to_owned()])
        }
    }
}

/// What an accepted job promises the store and the agents: the faults issue 16 found over
/// gRPC are gone (ids unique, dependencies unique, known and acyclic, deadlines that cannot
/// overflow, commands an `exec` takes).
fn accepted_is_sound(job: &crate::model::NewJob) -> Result<(), TestCaseError> {
    use crate::model::TaskKind;
    use ferry_jobspec::limits as l;
    let ids: std::collections::HashSet<&str> = job.tasks.iter().map(|t| t.id.as_str()).collect();
    prop_assert_eq!(ids.len(), job.tasks.len());
    prop_assert!((1..=l::TASKS_PER_JOB_MAX).contains(&job.tasks.len()));
    for t in &job.tasks {
        let deps: std::collections::HashSet<&str> =
            t.depends_on.iter().map(String::as_str).collect();
        prop_assert_eq!(deps.len(), t.depends_on.len(), "repeated dependency");
        prop_assert!(!deps.contains(t.id.as_str()));
        prop_assert!(deps.is_subset(&ids));
        prop_assert!(t.timeout_ms <= l::TIMEOUT_MAX_MS);
        prop_assert!(t.retry.initial_delay_ms <= t.retry.max_delay_ms);
        prop_assert!(t.retry.max_delay_ms <= l::RETRY_DELAY_MAX_MS);
        prop_assert!((1..=l::MAX_ATTEMPTS_MAX).contains(&t.retry.max_attempts));
        if let TaskKind::Shell { command } = &t.kind {
            prop_assert!(!command.trim().is_empty() && !command.contains('\0'));
            prop_assert!(command.len() <= l::SHELL_COMMAND_MAX);
        }
        prop_assert!(!t.queue.trim().is_empty());
    }
    for (name, value) in &job.params {
        prop_assert!(ferry_jobspec::check::is_param_name(name));
        prop_assert!(!value.contains('\0'));
    }
    // Kahn's algorithm: every task is released once its dependencies are.
    let mut left: std::collections::HashMap<&str, usize> = job
        .tasks
        .iter()
        .map(|t| (t.id.as_str(), t.depends_on.len()))
        .collect();
    let mut ready: Vec<&str> = left
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(id, _)| *id)
        .collect();
    let mut released = 0;
    while let Some(id) = ready.pop() {
        released += 1;
        for t in job
            .tasks
            .iter()
            .filter(|t| t.depends_on.iter().any(|d| d == id))
        {
            let n = left.get_mut(t.id.as_str()).expect("known task");
            *n -= 1;
            if *n == 0 {
                ready.push(t.id.as_str());
            }
        }
    }
    prop_assert_eq!(
        released,
        job.tasks.len(),
        "a task would stay blocked forever"
    );
    Ok(())
}

fn attempt_ref() -> impl Strategy<Value = pb::AttemptRef> {
    (text(), id(), any::<u32>()).prop_map(|(job_id, task_id, attempt)| pb::AttemptRef {
        job_id,
        task_id,
        attempt,
    })
}

fn agent() -> impl Strategy<Value = Option<pb::AgentIdentity>> {
    prop::option::weighted(
        0.9,
        (text(), text()).prop_map(|(name, session)| pb::AgentIdentity { name, session }),
    )
}

fn log_chunks() -> impl Strategy<Value = Vec<pb::LogChunk>> {
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_submitted_job_is_checked_without_panicking(r in submit()) {
        submit_checks(r)?;
    }

    #[test]
    fn plausible_submitted_jobs_are_accepted_only_when_sound(r in plausible_submit()) {
        submit_checks(r)?;
    }

    #[test]
    fn any_bytes_decoded_as_a_submission_are_checked_without_panicking(
        bytes in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        if let Ok(r) = pb::SubmitJobRequest::decode(&bytes[..]) {
            submit_checks(r)?;
        }
    }

    #[test]
    fn registrations_are_checked_without_panicking(
        name in text(), hostname in text(), version in text(),
        queues in prop::collection::vec(text(), 0..4),
        labels in map(4),
        max_tasks in prop_oneof![0u32..3, 1_023u32..1_026, any::<u32>()],
    ) {
        let r = pb::RegisterRequest { name, queues, labels, max_tasks, hostname, version };
        match checks::registration(&r) {
            Ok(n) => prop_assert!((1..=ferry_jobspec::limits::AGENT_TASKS_MAX).contains(&n)),
            Err(status) => refused(&status, &[Code::InvalidArgument])?,
        }
    }

    #[test]
    fn agent_calls_are_checked_without_panicking(
        who in agent(),
        free_slots in any::<u32>(),
        running in prop::collection::vec(attempt_ref(), 0..4),
        attempt in prop::option::weighted(0.9, attempt_ref()),
        chunks in log_chunks(),
        outcome in prop_oneof![0i32..6, any::<i32>()],
        state in prop_oneof![0i32..7, any::<i32>()],
        limit in any::<u32>(),
        mut error in text(),
        value in text(),
        lookup in text(),
    ) {
        let results: Vec<Result<(), Status>> = vec![
            identity(who).map(drop),
            checks::free_slots(free_slots),
            checks::attempts("running", &running),
            convert::attempt_key(attempt).map(drop),
            checks::log_chunks(&chunks),
            convert::outcome(outcome).map(drop),
            convert::job_state_filter(state).map(drop),
            checks::list_limit(limit).map(drop),
            checks::lookup_id("job id", &lookup),
            checks::task_id("task id", &lookup),
            checks::job_name("job name", &lookup),
            checks::watermark_value(&value),
        ];
        for result in results {
            if let Err(status) = result {
                refused(&status, &[Code::InvalidArgument])?;
            }
        }
        let _ = convert::log_chunks(chunks);
        let _ = convert::attempt_keys(running);
        // A completion's error is cut and its NULs replaced, never refused (as `complete` does).
        if error.contains('\0') {
            error = error.replace('\0', "\u{FFFD}");
        }
        ferry_jobspec::check::truncate(&mut error, ferry_jobspec::limits::ERROR_MESSAGE_MAX);
        prop_assert!(error.len() <= ferry_jobspec::limits::ERROR_MESSAGE_MAX);
        prop_assert!(!error.contains('\0'));
    }

    #[test]
    fn completions_reports_are_converted_without_panicking(
        outputs in prop::collection::vec((text(), any::<u64>(), text()), 0..4),
        extract in prop::option::of((
            any::<u64>(), any::<u64>(), prop::collection::vec(text(), 0..3),
            prop::collection::vec((text(), text(), text(), any::<bool>()), 0..3),
            prop::option::of(text()), text(), any::<bool>(),
        )),
        metrics in prop::option::of((any::<f32>(), any::<u64>(), any::<u64>(), any::<f64>())),
    ) {
        let outputs = outputs
            .into_iter()
            .map(|(name, size, sha256)| pb::OutputFile { name, size, sha256 })
            .collect();
        let _ = convert::output_files(outputs);
        let extract = extract.map(
            |(rows, bytes, files, columns, watermark, incremental_column, backfill)| {
                pb::ExtractInfo {
                    rows,
                    bytes,
                    files,
                    columns: columns
                        .into_iter()
                        .map(|(name, source_type, file_type, nullable)| pb::ExtractColumn {
                            name,
                            source_type,
                            file_type,
                            nullable,
                        })
                        .collect(),
                    watermark,
                    incremental_column,
                    backfill,
                }
            },
        );
        if let Some(e) = convert::extract_from_agent(extract) {
            prop_assert!(e.watermark.is_none_or(|w| !w.is_empty()));
        }
        let _ = convert::metrics(metrics.map(|(cpu, used, total, load)| pb::HostMetrics {
            cpu_percent: cpu,
            memory_used_bytes: used,
            memory_total_bytes: total,
            load1: load,
            load5: load,
            load15: load,
        }));
    }

    #[test]
    fn upload_frames_of_any_bytes_decode_or_are_refused(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(1usize..64, 1..8),
        max_message in prop_oneof![0usize..64, Just(4usize << 20)],
        valid_prefix in any::<bool>(),
    ) {
        let mut wire = Vec::new();
        if valid_prefix {
            // A well-formed prefix on a body of garbage: decoding reaches prost.
            wire.push(0);
            wire.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        }
        wire.extend_from_slice(&bytes);
        let mut pieces = Vec::new();
        let mut rest = &wire[..];
        for cut in cuts.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, tail) = rest.split_at((*cut).min(rest.len()));
            pieces.push(Ok::<_, Status>(http_body::Frame::data(Bytes::copy_from_slice(piece))));
            rest = tail;
        }
        let body = http_body_util::StreamBody::new(tokio_stream::iter(pieces));
        let mut frames = Frames::new(body, max_message);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        runtime.block_on(async {
            for _ in 0..=wire.len() {
                match frames.message().await {
                    Ok(Some(_)) => continue,
                    Ok(None) => break,
                    Err(status) => {
                        refused(&status, &[
                            Code::InvalidArgument,
                            Code::Internal,
                            Code::Unimplemented,
                            Code::OutOfRange,
                        ])?;
                        break;
                    }
                }
            }
            Ok::<_, TestCaseError>(())
        })?;
    }
}

/// Many tasks at the limit, each depending on the one before (and, once, a cycle through all):
/// checked on a stack the size of a runtime worker's (2 MiB) without overflowing it.
#[test]
fn long_dependency_chains_are_checked_on_a_workers_stack() {
    for cyclic in [false, true] {
        let n = ferry_jobspec::limits::TASKS_PER_JOB_MAX;
        let tasks = (0..n)
            .map(|i| pb::TaskSpec {
                id: format!("t{i}"),
                depends_on: match (i, cyclic) {
                    (0, false) => vec![],
                    (0, true) => vec![format!("t{}", n - 1)],
                    _ => vec![format!("t{}", i - 1)],
                },
                kind: Some(pb::task_spec::Kind::Shell(pb::ShellTask {
                    command: "true".into(),
                })),
                ..Default::default()
            })
            .collect();
        let r = pb::SubmitJobRequest {
            spec: Some(pb::JobSpec {
                name: "chain".into(),
                params: HashMap::new(),
                tasks,
            }),
            ..Default::default()
        };
        let problems = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || {
                let job = convert::new_job(r.spec, r.idempotency_key, r.backfill).unwrap();
                validate::problems(&job)
            })
            .unwrap()
            .join()
            .expect("no panic, no overflow");
        if cyclic {
            assert_eq!(
                problems.len(),
                1,
                "{:?}",
                &problems[..problems.len().min(2)]
            );
            assert!(problems[0].starts_with("dependency cycle: t0 -> t9999 -> t9998"));
        } else {
            assert!(problems.is_empty(), "{problems:?}");
        }
    }
}
