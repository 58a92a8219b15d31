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
