//! `WatchJob`'s stream: the whole job first (in parts of at most `MESSAGE_BUDGET` bytes, far
//! below the gRPC message limit, so a job of any size can be watched), then the tasks that
//! changed, each whole, with the job's own fields. The engine merges what a watcher has not
//! taken yet (`engine::local::feeds`); this side turns each batch into a message and sends it
//! when the client takes the previous one, so a client that reads slowly gets fewer, larger
//! deltas and one that stops reading holds one message here.

use std::sync::Arc;

use ferry_proto::v1 as pb;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use super::convert;
use crate::engine::local::feeds::pending::Take;
use crate::engine::{Engine, JobWatch, WatchBatch};
use crate::model::TaskRecord;

/// Bytes of tasks one message carries at most (as `wire_size` estimates them; one task
/// always fits, whatever its size: the field limits keep it well below the 4 MiB limit).
pub const MESSAGE_BUDGET: usize = 256 * 1024;

/// Sends the watcher's messages until the job has ended and the client has the whole of it,
/// or the client goes away, or shutdown.
#[tracing::instrument(skip_all, fields(job_id = %job_id))]
pub(super) async fn feed(
    mut watch: JobWatch,
    job_id: String,
    tx: mpsc::Sender<Result<pb::WatchJobEvent, Status>>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            next = watch.next(MESSAGE_BUDGET, wire_size) => next,
            _ = tx.closed() => return,
            _ = shutdown.cancelled() => return,
        };
        let batch = match next {
            Ok(batch) => batch,
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                return;
            }
        };
        let ended = batch.take.complete() && batch.job.state.is_terminal();
        let message = event(&batch);
        drop(batch);
        // While the client does not read, changes merge in the engine.
        let sent = tokio::select! {
            sent = tx.send(Ok(message)) => sent.is_ok(),
            _ = shutdown.cancelled() => false,
        };
        if !sent {
            return;
        }
        if ended {
            tracing::debug!(resyncs = watch.resyncs(), "watch ended with the job");
            return;
        }
    }
}

/// Joins the job's feed and starts the stream's task on `tracker`.
pub(super) async fn start(
    engine: &Arc<Engine>,
    job_id: String,
    tracker: &tokio_util::task::TaskTracker,
    shutdown: CancellationToken,
) -> Result<mpsc::Receiver<Result<pb::WatchJobEvent, Status>>, Status> {
    // Fails fast on an unknown id, before the stream starts.
    let watch = engine.watch_job(&job_id).await?;
    let (tx, rx) = mpsc::channel(1);
    tracker.spawn(feed(watch, job_id, tx, shutdown));
    Ok(rx)
}

/// The message for one batch.
pub fn event(batch: &WatchBatch) -> pb::WatchJobEvent {
    let record = &batch.job;
    let mut job = convert::job_head(record);
    let (kind, complete) = match &batch.take {
        Take::Snapshot {
            first,
            resync,
            range,
            complete,
        } => {
            job.tasks = record.tasks[range.clone()]
                .iter()
                .map(convert::task)
                .collect();
            let part = pb::SnapshotPart {
                first: *first,
                resync: *resync,
                tasks_total: u32::try_from(record.tasks.len()).unwrap_or(u32::MAX),
            };
            (pb::watch_job_event::Kind::Snapshot(part), *complete)
        }
        Take::Delta { tasks, complete } => {
            job.tasks = tasks
                .iter()
                .filter_map(|&i| record.tasks.get(i))
                .map(convert::task)
                .collect();
            (
                pb::watch_job_event::Kind::Delta(pb::TaskDelta {}),
                *complete,
            )
        }
    };
    pb::WatchJobEvent {
        job: Some(job),
        kind: Some(kind),
        complete,
    }
}

/// A task's bytes on the wire, estimated from above (strings plus a few bytes of framing per
/// field).
pub fn wire_size(t: &TaskRecord) -> usize {
    const FIELD: usize = 12;
    let spec = &t.spec;
    let labels: usize = spec
        .labels
        .iter()
        .map(|(k, v)| k.len() + v.len() + 3 * FIELD)
        .sum();
    let deps: usize = spec.depends_on.iter().map(|d| d.len() + FIELD).sum();
    let attempts: usize = t
        .attempts
        .iter()
        .map(|a| a.agent.len() + a.error.len() + 8 * FIELD)
        .sum();
    let extract = t.extract.as_ref().map_or(0, |e| {
        let files: usize = e.files.iter().map(|f| f.len() + FIELD).sum();
        let columns: usize = e
            .columns
            .iter()
            .map(|c| c.name.len() + c.source_type.len() + c.file_type.len() + 4 * FIELD)
            .sum();
        files
            + columns
            + e.watermark.as_ref().map_or(0, String::len)
            + e.incremental_column.len()
            + 6 * FIELD
    });
    spec.id.len() + spec.queue.len() + labels + deps + attempts + extract + 8 * FIELD
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::model::{
        AttemptRecord, AttemptState, JobRecord, JobState, TaskKind, TaskSpec, TaskState,
    };

    fn task(i: usize, attempts: usize) -> TaskRecord {
        TaskRecord {
            spec: TaskSpec {
                id: format!("task-{i}"),
                queue: "default".into(),
                labels: [("site".to_string(), "dc1".to_string())].into(),
                depends_on: vec!["a".into(), "b".into()],
                kind: TaskKind::Shell {
                    command: "true".into(),
                },
                outputs: vec![],
                timeout_ms: 0,
                schedule_to_start_timeout_ms: 0,
                retry: Default::default(),
            },
            state: TaskState::Failed,
            ready_at: 1_700_000_000_000,
            attempts: (0..attempts)
                .map(|n| AttemptRecord {
                    number: n as u32 + 1,
                    agent: "agent-with-a-long-name".into(),
                    state: AttemptState::Failed,
                    exit_code: Some(-1),
                    error: "e".repeat(300),
                    started_at: 1_700_000_000_000,
                    finished_at: Some(1_700_000_000_001),
                    logs_truncated: true,
                })
                .collect(),
            extract: None,
            reason: String::new(),
        }
    }

    #[test]
    fn the_estimate_is_never_below_the_encoded_size() {
        for attempts in [0, 1, 5] {
            let t = task(123_456, attempts);
            let encoded = convert::task(&t).encoded_len();
            assert!(wire_size(&t) >= encoded, "{} < {encoded}", wire_size(&t));
        }
    }

    #[test]
    fn a_snapshot_part_carries_its_range_and_the_job_fields() {
        let job = Arc::new(JobRecord {
            id: "j".into(),
            name: "n".into(),
            state: JobState::Running,
            params: Default::default(),
            idempotency_key: None,
            created_at: 1,
            finished_at: None,
            tasks: (0..5).map(|i| task(i, 1)).collect(),
        });
        let e = event(&WatchBatch {
            job,
            take: Take::Snapshot {
                first: true,
                resync: false,
                range: 1..3,
                complete: false,
            },
        });
        let j = e.job.unwrap();
        assert_eq!(j.id, "j");
        let ids: Vec<&str> = j.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, ["task-1", "task-2"]);
        match e.kind {
            Some(pb::watch_job_event::Kind::Snapshot(p)) => {
                assert!(p.first);
                assert_eq!(p.tasks_total, 5);
            }
            other => panic!("{other:?}"),
        }
        assert!(!e.complete);
    }
}
