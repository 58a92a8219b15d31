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

mod strategies;

use strategies::*;

/// A refusal names what is wrong: `INVALID_ARGUMENT` (or a code the call documents) with words.
fn refused(status: &Status, codes: &[Code]) -> Result<(), TestCaseError> {
    prop_assert!(codes.contains(&status.code()), "{status:?}");
    prop_assert!(!status.message().trim().is_empty(), "{status:?}");
    Ok(())
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
        let r = pb::RegisterRequest {
            name, queues, labels, max_tasks, hostname, version, ..Default::default()
        };
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
