//! `Engine::watch_job`: a watcher's place in its job's change feed (`local::feeds`). The
//! watcher waits for the job's change counter, has the feed read the job again — one read at a
//! time per job, skipped when another watcher's read already covers the change, and paced so
//! that reads take at most a twentieth of the time (after a burst of `READ_BURST`, so that
//! small jobs are never held back) — then takes its next message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::local::feeds::pending::Take;
use super::local::feeds::Member;
use super::{Engine, EngineError};
use crate::model::{JobRecord, TaskRecord};
use crate::store::Store;

/// Each read of the job costs this many times its duration of the feed's read budget.
const READ_SPACING: u32 = 20;
/// A read never costs more than this (a slow store must not freeze progress).
const MAX_READ_PAUSE: Duration = Duration::from_secs(1);
/// How far ahead of time the budget may be spent: reads within it are not held back.
const READ_BURST: Duration = Duration::from_millis(100);

/// One message's worth for a watcher: what to send, taken from this read of the job.
pub struct WatchBatch {
    pub job: Arc<JobRecord>,
    pub take: Take,
}

/// A watcher of one job (see the module doc).
pub struct JobWatch {
    member: Member,
    changes: watch::Receiver<u64>,
    store: Arc<dyn Store>,
}

impl Engine {
    /// Joins the job's change feed; fails at once for an unknown job or when the controller
    /// serves as many watchers as it may.
    #[tracing::instrument(skip(self))]
    pub async fn watch_job(&self, job_id: &str) -> Result<JobWatch, EngineError> {
        // Subscribed before the first read, so that no change falls between the two.
        let changes = self.local.watchers.subscribe(job_id);
        let member = self.local.feeds.join(job_id)?;
        let mut watch = JobWatch {
            member,
            changes,
            store: self.store.clone(),
        };
        watch.refresh(true).await?;
        Ok(watch)
    }
}

impl JobWatch {
    /// The next message: at once when something is waiting, else after the job changes.
    /// A message holds tasks up to `budget` bytes as `size` estimates them.
    pub async fn next(
        &mut self,
        budget: usize,
        size: impl Fn(&TaskRecord) -> usize,
    ) -> Result<WatchBatch, EngineError> {
        loop {
            if let Some((job, take)) = self.member.take(budget, &size) {
                return Ok(WatchBatch { job, take });
            }
            if self.changes.changed().await.is_err() {
                // The controller is shutting down; the caller stops on its token.
                std::future::pending::<()>().await;
            }
            self.refresh(false).await?;
        }
    }

    /// Times this watcher fell behind and was sent a fresh snapshot.
    pub fn resyncs(&self) -> u64 {
        self.member.resyncs()
    }

    /// Reads the job into the feed unless a read since the last change did (`force`: always).
    async fn refresh(&mut self, force: bool) -> Result<(), EngineError> {
        let feed = self.member.feed().clone();
        let mut reads = feed.reads.lock().await;
        let version = *self.changes.borrow_and_update();
        if !force && reads.version.is_some_and(|read| read >= version) {
            return Ok(());
        }
        if let (false, Some(spent)) = (force, reads.spent_until) {
            if let Some(wait_until) = spent.checked_sub(READ_BURST) {
                tokio::time::sleep_until(wait_until.into()).await;
            }
        }
        let version = *self.changes.borrow_and_update();
        let started = Instant::now();
        let job = self.store.get_job(feed.job_id()).await?;
        let took = started.elapsed();
        reads.version = Some(version);
        reads.count += 1;
        let spent = reads.spent_until.map_or(started, |s| s.max(started));
        reads.spent_until = Some(spent + (took * READ_SPACING).min(MAX_READ_PAUSE));
        let changed = feed.publish(job);
        tracing::trace!(
            job_id = feed.job_id(),
            changed,
            took_us = took.as_micros() as u64,
            "job read for watchers"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use tokio_util::sync::CancellationToken;

    use super::*;
    use crate::artifacts::Artifacts;
    use crate::engine::EngineConfig;
    use crate::model::{JobState, NewJob, RetryPolicy, TaskKind, TaskSpec, TaskState};

    async fn engine(dir: &std::path::Path) -> Arc<Engine> {
        let store: Arc<dyn Store> = Arc::new(
            crate::store::sqlite::SqliteStore::open(&dir.join("ferry.db"))
                .await
                .unwrap(),
        );
        let artifacts = Arc::new(Artifacts::open(&dir.join("artifacts"), 1 << 30).unwrap());
        let config = EngineConfig {
            agent_timeout: Duration::from_secs(15),
            log_limit: 1 << 20,
            timeout_grace: Duration::from_secs(10),
            max_poll_wait: Duration::from_millis(200),
        };
        Arc::new(
            Engine::new(
                config,
                crate::clock::Clock::system(),
                store,
                artifacts,
                CancellationToken::new(),
            )
            .await
            .unwrap(),
        )
    }

    fn job(tasks: usize) -> NewJob {
        NewJob {
            name: "watched".into(),
            params: BTreeMap::new(),
            tasks: (0..tasks)
                .map(|i| TaskSpec {
                    id: format!("t{i}"),
                    queue: "q".into(),
                    labels: BTreeMap::new(),
                    depends_on: vec![],
                    kind: TaskKind::Shell {
                        command: "true".into(),
                    },
                    outputs: vec![],
                    timeout_ms: 0,
                    schedule_to_start_timeout_ms: 0,
                    retry: RetryPolicy::default(),
                })
                .collect(),
            idempotency_key: None,
            backfill: BTreeMap::new(),
        }
    }

    fn unit(_: &TaskRecord) -> usize {
        1
    }

    #[tokio::test]
    async fn watchers_of_a_job_share_one_read_per_change_and_end_with_it() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        let id = engine.submit(job(3)).await.unwrap().job_id;
        let mut a = engine.watch_job(&id).await.unwrap();
        let mut b = engine.watch_job(&id).await.unwrap();
        assert!(Arc::ptr_eq(a.member.feed(), b.member.feed()));
        for w in [&mut a, &mut b] {
            let first = w.next(100, unit).await.unwrap();
            assert!(matches!(
                first.take,
                Take::Snapshot {
                    first: true,
                    complete: true,
                    ..
                }
            ));
            assert_eq!(first.job.tasks.len(), 3);
        }
        let joined = a.member.feed().reads.lock().await.count;
        engine.cancel(&id).await.unwrap();
        for w in [&mut a, &mut b] {
            let change = tokio::time::timeout(Duration::from_secs(5), w.next(100, unit))
                .await
                .expect("the cancel reached the watcher")
                .unwrap();
            let Take::Delta { tasks, complete } = &change.take else {
                panic!("{:?}", change.take);
            };
            assert_eq!(tasks, &[0, 1, 2]);
            assert!(complete);
            assert_eq!(change.job.state, JobState::Cancelled);
            assert!(change
                .job
                .tasks
                .iter()
                .all(|t| t.state == TaskState::Cancelled));
        }
        let after = a.member.feed().reads.lock().await.count;
        assert_eq!(after - joined, 1, "one read served both watchers");
    }

    #[tokio::test]
    async fn an_unknown_job_is_refused_before_any_stream() {
        let dir = tempfile::tempdir().unwrap();
        let engine = engine(dir.path()).await;
        let refused = engine.watch_job("0123456789abcdef0123456789abcdef").await;
        assert!(matches!(
            refused,
            Err(EngineError::Store(_)) | Err(EngineError::NotFound(_))
        ));
        assert_eq!(engine.local.feeds.open(), 0, "its place is given back");
    }
}
