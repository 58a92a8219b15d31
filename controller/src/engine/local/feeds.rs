//! Job watchers' change feeds: one per job watched on this controller, shared by its
//! watchers. The feed holds the job as last read from the store; each read is compared with
//! the one before, and the tasks that changed are marked in every watcher's merged backlog
//! (`pending`). A message is built from the snapshot when its watcher can take it, so a slow
//! watcher gets the latest state of each task once, however many changes it missed, and a
//! stalled one costs a bit per task. One read serves every watcher of the job.
//!
//! Memory: one snapshot per watched job, one bit per task per watcher, and at most
//! `MAX_WATCHES` watchers per controller.

pub mod pending;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Instant;

use crate::model::{JobRecord, TaskRecord};
use pending::{Pending, Take};

/// Most `WatchJob` streams one controller serves at once.
pub const MAX_WATCHES: usize = 1024;

/// A watch refused because the controller serves `MAX_WATCHES` already.
#[derive(Debug, thiserror::Error)]
#[error("this controller already serves {0} job watches, its limit; try again later")]
pub struct TooManyWatches(pub usize);

/// The feeds of the jobs watched on this controller.
#[derive(Default)]
pub struct JobFeeds {
    feeds: Mutex<HashMap<String, Weak<Feed>>>,
    open: Arc<AtomicUsize>,
}

impl JobFeeds {
    /// Joins the job's feed (made on first use) as a new watcher, which is sent the whole job
    /// first.
    pub fn join(&self, job_id: &str) -> Result<Member, TooManyWatches> {
        let open = self.open.fetch_add(1, Ordering::SeqCst);
        if open >= MAX_WATCHES {
            self.open.fetch_sub(1, Ordering::SeqCst);
            return Err(TooManyWatches(MAX_WATCHES));
        }
        let feed = {
            let mut feeds = self.feeds.lock().expect("feeds poisoned");
            match feeds.get(job_id).and_then(Weak::upgrade) {
                Some(feed) => feed,
                None => {
                    feeds.retain(|_, f| f.strong_count() > 0);
                    let feed = Arc::new(Feed::new(job_id));
                    feeds.insert(job_id.to_string(), Arc::downgrade(&feed));
                    feed
                }
            }
        };
        let id = feed.add();
        Ok(Member {
            feed,
            id,
            open: self.open.clone(),
        })
    }

    /// Watches open on this controller.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::SeqCst)
    }
}

/// Store reads of one job's feed: one at a time, paced by their cost.
#[derive(Debug, Default)]
pub struct Reads {
    /// The job's change counter as it was when the snapshot was read.
    pub version: Option<u64>,
    /// How far the feed's read budget is spent: each read spends a multiple of its duration,
    /// and reads wait while the budget is spent too far ahead, so that reads of a large job
    /// stay a small share of the controller's time.
    pub spent_until: Option<Instant>,
    /// Reads of the job so far, for all the feed's watchers.
    pub count: u64,
}

/// One job's change feed.
pub struct Feed {
    job_id: String,
    shared: Mutex<Shared>,
    /// Held across a read of the store, so that one read serves every watcher.
    pub reads: tokio::sync::Mutex<Reads>,
}

#[derive(Default)]
struct Shared {
    snapshot: Option<Arc<JobRecord>>,
    members: HashMap<u64, Pending>,
    next_id: u64,
}

impl Feed {
    fn new(job_id: &str) -> Self {
        Self {
            job_id: job_id.to_string(),
            shared: Mutex::default(),
            reads: tokio::sync::Mutex::default(),
        }
    }

    pub fn job_id(&self) -> &str {
        &self.job_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().expect("feed poisoned")
    }

    fn add(&self) -> u64 {
        let mut shared = self.lock();
        let id = shared.next_id;
        shared.next_id += 1;
        shared.members.insert(id, Pending::new());
        id
    }

    /// Takes a fresh read of the job: what changed since the previous one is marked in every
    /// watcher's backlog. Returns how many tasks changed.
    pub fn publish(&self, job: JobRecord) -> usize {
        let mut shared = self.lock();
        let (changed, job_changed) = match shared.snapshot.as_deref() {
            Some(old) => diff(old, &job),
            None => ((0..job.tasks.len()).collect(), true),
        };
        let tasks = job.tasks.len();
        for pending in shared.members.values_mut() {
            pending.mark(&changed, job_changed, tasks);
        }
        shared.snapshot = Some(Arc::new(job));
        changed.len()
    }
}

/// The tasks (by index) whose state, attempts or extract differ, and whether the job's own
/// fields do. Two reads with different task lists differ everywhere.
fn diff(old: &JobRecord, new: &JobRecord) -> (Vec<usize>, bool) {
    let job_changed = old.state != new.state
        || old.finished_at != new.finished_at
        || old.name != new.name
        || old.params != new.params
        || old.idempotency_key != new.idempotency_key
        || old.created_at != new.created_at;
    let same_tasks = old.tasks.len() == new.tasks.len()
        && old
            .tasks
            .iter()
            .zip(&new.tasks)
            .all(|(a, b)| a.spec.id == b.spec.id);
    if !same_tasks {
        return ((0..new.tasks.len()).collect(), true);
    }
    let changed = old
        .tasks
        .iter()
        .zip(&new.tasks)
        .enumerate()
        .filter(|(_, (a, b))| task_changed(a, b))
        .map(|(i, _)| i)
        .collect();
    (changed, job_changed)
}

/// A task's spec never changes after submit; the rest may.
fn task_changed(a: &TaskRecord, b: &TaskRecord) -> bool {
    a.state != b.state
        || a.ready_at != b.ready_at
        || a.attempts != b.attempts
        || a.extract != b.extract
}

/// One watcher's place in a feed; leaves it when dropped.
pub struct Member {
    feed: Arc<Feed>,
    id: u64,
    open: Arc<AtomicUsize>,
}

impl Member {
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// The next message for this watcher from the feed's latest snapshot (see
    /// `Pending::take`), or `None` when nothing is waiting or nothing has been read yet.
    pub fn take(
        &self,
        budget: usize,
        size: impl Fn(&TaskRecord) -> usize,
    ) -> Option<(Arc<JobRecord>, Take)> {
        let mut shared = self.feed.lock();
        let snapshot = shared.snapshot.clone()?;
        let pending = shared.members.get_mut(&self.id)?;
        let take = pending.take(&snapshot, budget, size)?;
        Some((snapshot, take))
    }

    /// Times this watcher fell behind and was sent a fresh snapshot.
    pub fn resyncs(&self) -> u64 {
        let shared = self.feed.lock();
        shared.members.get(&self.id).map_or(0, Pending::resyncs)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.feed.lock().members.remove(&self.id);
        self.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A running job of `tasks` queued shell tasks, for the tests of the feed and of its backlog.
#[cfg(test)]
fn test_job(tasks: usize) -> JobRecord {
    use crate::model::{JobState, TaskKind, TaskSpec, TaskState};
    JobRecord {
        id: "j".into(),
        name: "n".into(),
        state: JobState::Running,
        params: Default::default(),
        idempotency_key: None,
        created_at: 1,
        finished_at: None,
        tasks: (0..tasks)
            .map(|i| TaskRecord {
                spec: TaskSpec {
                    id: format!("t{i}"),
                    queue: "q".into(),
                    labels: Default::default(),
                    depends_on: vec![],
                    kind: TaskKind::Shell {
                        command: "true".into(),
                    },
                    outputs: vec![],
                    timeout_ms: 0,
                    schedule_to_start_timeout_ms: 0,
                    retry: Default::default(),
                },
                state: TaskState::Queued,
                ready_at: 0,
                attempts: vec![],
                extract: None,
                reason: String::new(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttemptRecord, AttemptState, JobState, TaskState};

    use super::test_job as job;

    fn run(job: &mut JobRecord, i: usize, agent: &str) {
        job.tasks[i].state = TaskState::Running;
        job.tasks[i].attempts.push(AttemptRecord {
            number: 1,
            agent: agent.into(),
            state: AttemptState::Running,
            exit_code: None,
            error: String::new(),
            started_at: 5,
            finished_at: None,
            logs_truncated: false,
        });
    }

    fn unit(_: &TaskRecord) -> usize {
        1
    }

    #[test]
    fn the_diff_names_changed_tasks_and_job_fields() {
        let old = job(4);
        let mut new = old.clone();
        run(&mut new, 2, "a");
        assert_eq!(diff(&old, &new), (vec![2], false));
        new.state = JobState::Succeeded;
        assert!(diff(&old, &new).1);
        let other = job(3);
        assert_eq!(diff(&old, &other), (vec![0, 1, 2], true));
    }

    #[test]
    fn one_read_serves_every_watcher_with_the_latest_state() {
        let feeds = JobFeeds::default();
        let a = feeds.join("j").unwrap();
        let b = feeds.join("j").unwrap();
        assert!(Arc::ptr_eq(a.feed(), b.feed()));
        let mut j = job(3);
        a.feed().publish(j.clone());
        for m in [&a, &b] {
            let (_, take) = m.take(100, unit).unwrap();
            assert!(take.complete());
        }
        run(&mut j, 1, "x");
        a.feed().publish(j.clone());
        // a reads; b does not, and meanwhile the task changes again.
        let (snap, take) = a.take(100, unit).unwrap();
        assert_eq!(
            take,
            Take::Delta {
                tasks: vec![1],
                complete: true
            }
        );
        assert_eq!(snap.tasks[1].attempts[0].agent, "x");
        j.tasks[1].state = TaskState::Succeeded;
        a.feed().publish(j.clone());
        let (snap, take) = b.take(100, unit).unwrap();
        assert_eq!(
            take,
            Take::Delta {
                tasks: vec![1],
                complete: true
            }
        );
        assert_eq!(
            snap.tasks[1].state,
            TaskState::Succeeded,
            "the latest, merged"
        );
        assert!(b.take(100, unit).is_none());
    }

    #[test]
    fn watchers_are_counted_and_capped() {
        let feeds = JobFeeds::default();
        let members: Vec<Member> = (0..MAX_WATCHES)
            .map(|i| feeds.join(&format!("j{}", i % 7)).unwrap())
            .collect();
        assert!(feeds.join("j").is_err());
        drop(members);
        assert_eq!(feeds.open(), 0);
        let again = feeds.join("j").unwrap();
        assert_eq!(feeds.feeds.lock().unwrap().len(), 1, "dead feeds are swept");
        drop(again);
    }

    #[test]
    fn a_leaving_watcher_leaves_no_backlog() {
        let feeds = JobFeeds::default();
        let a = feeds.join("j").unwrap();
        let feed = a.feed().clone();
        drop(a);
        feed.publish(job(10));
        assert!(feed.lock().members.is_empty());
    }
}
