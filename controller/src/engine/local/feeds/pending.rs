//! What one job watcher has yet to be sent, merged: a bit per task that changed since it was
//! last sent (the latest state is read from the feed's snapshot when the message is built, so
//! any number of changes to a task cost one bit), whether the job's own fields changed, or —
//! for a new watcher, or one that fell behind — how far through a snapshot it is. Its size is
//! fixed by the job's task count, whatever the rate of changes or the watcher's pace.

use crate::model::JobRecord;

/// Most tasks in one message, whatever their size.
pub const MAX_TASKS_PER_MESSAGE: usize = 4096;

/// Changed tasks waiting past which a watcher is dropped from the change feed and gets a
/// fresh snapshot instead: at least this many, or half the job (a snapshot then costs less
/// than twice the delta it replaces).
pub const MIN_RESYNC_BOUND: usize = 1024;

fn resync_bound(tasks: usize) -> usize {
    MIN_RESYNC_BOUND.max(tasks / 2)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Sending the whole job from task `next`; `resync` when not the watcher's first.
    Snapshot { next: usize, resync: bool },
    /// The watcher has had the whole job: only changes are sent.
    Live,
}

/// What one message carries, built from the feed's snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Take {
    /// Tasks `range` of the job, in order.
    Snapshot {
        first: bool,
        resync: bool,
        range: std::ops::Range<usize>,
        complete: bool,
    },
    /// Tasks at these indices changed (possibly none: only the job's fields did).
    Delta { tasks: Vec<usize>, complete: bool },
}

impl Take {
    /// After this message, the watcher holds the whole job as of one moment.
    pub fn complete(&self) -> bool {
        match self {
            Take::Snapshot { complete, .. } | Take::Delta { complete, .. } => *complete,
        }
    }
}

/// A watcher's merged backlog.
#[derive(Debug)]
pub struct Pending {
    mode: Mode,
    /// One bit per task; empty while no change is tracked (a snapshot has none yet to send).
    dirty: Vec<u64>,
    dirty_count: usize,
    job_changed: bool,
    /// Times this watcher fell behind and was moved to a fresh snapshot.
    resyncs: u64,
}

impl Default for Pending {
    fn default() -> Self {
        Self::new()
    }
}

impl Pending {
    /// A new watcher: it gets the whole job first.
    pub fn new() -> Self {
        Self {
            mode: Mode::Snapshot {
                next: 0,
                resync: false,
            },
            dirty: Vec::new(),
            dirty_count: 0,
            job_changed: false,
            resyncs: 0,
        }
    }

    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Heap bytes this backlog holds (at most one bit per task).
    pub fn heap_bytes(&self) -> usize {
        self.dirty.capacity() * 8
    }

    fn set(&mut self, index: usize, tasks: usize) {
        if self.dirty.is_empty() {
            self.dirty = vec![0; tasks.div_ceil(64)];
        }
        let (word, bit) = (index / 64, 1u64 << (index % 64));
        if let Some(w) = self.dirty.get_mut(word) {
            if *w & bit == 0 {
                *w |= bit;
                self.dirty_count += 1;
            }
        }
    }

    fn clear(&mut self) {
        self.dirty = Vec::new();
        self.dirty_count = 0;
    }

    /// Records that the tasks at `changed` (indices into a job of `tasks` tasks) and maybe the
    /// job's own fields changed. A watcher past the bound is dropped from the feed: its backlog
    /// is freed and it will be sent a fresh snapshot.
    pub fn mark(&mut self, changed: &[usize], job_changed: bool, tasks: usize) {
        self.job_changed |= job_changed;
        let sent_up_to = match self.mode {
            // Tasks not sent yet go out in their part, as they are then.
            Mode::Snapshot { next, .. } => next,
            Mode::Live => tasks,
        };
        for &index in changed.iter().filter(|&&i| i < sent_up_to) {
            self.set(index, tasks);
        }
        if self.dirty_count > resync_bound(tasks) {
            self.clear();
            self.mode = Mode::Snapshot {
                next: 0,
                resync: true,
            };
            self.resyncs += 1;
        }
    }

    /// The next message for a watcher, or `None` when nothing is waiting. `size` estimates a
    /// task's bytes on the wire: a message holds tasks up to `budget` bytes (at least one).
    pub fn take(
        &mut self,
        job: &JobRecord,
        budget: usize,
        size: impl Fn(&crate::model::TaskRecord) -> usize,
    ) -> Option<Take> {
        let tasks = job.tasks.len();
        match self.mode {
            Mode::Snapshot { next, resync } => {
                let mut end = next;
                let mut used = 0;
                while end < tasks && end - next < MAX_TASKS_PER_MESSAGE {
                    used += size(&job.tasks[end]);
                    if end > next && used > budget {
                        break;
                    }
                    end += 1;
                }
                let done = end >= tasks;
                self.mode = if done {
                    Mode::Live
                } else {
                    Mode::Snapshot { next: end, resync }
                };
                self.job_changed = false;
                Some(Take::Snapshot {
                    first: next == 0,
                    resync,
                    range: next..end,
                    complete: done && self.dirty_count == 0,
                })
            }
            Mode::Live => {
                if self.dirty_count == 0 && !self.job_changed {
                    return None;
                }
                let mut picked = Vec::new();
                let mut used = 0;
                'words: for (w, word) in self.dirty.iter_mut().enumerate() {
                    while *word != 0 {
                        let bit = word.trailing_zeros() as usize;
                        let index = w * 64 + bit;
                        let Some(task) = job.tasks.get(index) else {
                            // A bit past the job's end cannot be sent; forget it.
                            *word &= *word - 1;
                            self.dirty_count -= 1;
                            continue;
                        };
                        let cost = size(task);
                        if !picked.is_empty()
                            && (used + cost > budget || picked.len() >= MAX_TASKS_PER_MESSAGE)
                        {
                            break 'words;
                        }
                        used += cost;
                        picked.push(index);
                        *word &= *word - 1;
                        self.dirty_count -= 1;
                    }
                }
                if self.dirty_count == 0 {
                    self.clear();
                }
                self.job_changed = false;
                Some(Take::Delta {
                    tasks: picked,
                    complete: self.dirty_count == 0,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TaskRecord;

    use super::super::test_job as job;

    fn unit(_: &TaskRecord) -> usize {
        1
    }

    /// Takes everything waiting, in messages of `budget` tasks.
    fn drain(p: &mut Pending, job: &JobRecord, budget: usize) -> Vec<Take> {
        std::iter::from_fn(|| p.take(job, budget, unit)).collect()
    }

    #[test]
    fn a_new_watcher_gets_the_job_in_parts_then_nothing() {
        let job = job(10);
        let mut p = Pending::new();
        let takes = drain(&mut p, &job, 4);
        assert_eq!(
            takes,
            [
                Take::Snapshot {
                    first: true,
                    resync: false,
                    range: 0..4,
                    complete: false
                },
                Take::Snapshot {
                    first: false,
                    resync: false,
                    range: 4..8,
                    complete: false
                },
                Take::Snapshot {
                    first: false,
                    resync: false,
                    range: 8..10,
                    complete: true
                },
            ]
        );
    }

    #[test]
    fn many_changes_to_one_task_are_merged_into_one() {
        let job = job(10);
        let mut p = Pending::new();
        drain(&mut p, &job, 100);
        for _ in 0..1000 {
            p.mark(&[3, 7], false, 10);
        }
        p.mark(&[3], true, 10);
        assert_eq!(
            drain(&mut p, &job, 100),
            [Take::Delta {
                tasks: vec![3, 7],
                complete: true
            }]
        );
        assert_eq!(p.heap_bytes(), 0, "an empty backlog holds nothing");
    }

    #[test]
    fn a_change_of_the_job_alone_is_a_delta_without_tasks() {
        let job = job(2);
        let mut p = Pending::new();
        drain(&mut p, &job, 100);
        p.mark(&[], true, 2);
        assert_eq!(
            drain(&mut p, &job, 100),
            [Take::Delta {
                tasks: vec![],
                complete: true
            }]
        );
    }

    #[test]
    fn changes_during_a_snapshot_follow_it_and_only_then_is_it_complete() {
        let job = job(10);
        let mut p = Pending::new();
        assert_eq!(
            p.take(&job, 5, unit),
            Some(Take::Snapshot {
                first: true,
                resync: false,
                range: 0..5,
                complete: false
            })
        );
        // Task 2 was sent already; task 8 will be sent as it is then.
        p.mark(&[2, 8], false, 10);
        assert_eq!(
            drain(&mut p, &job, 5),
            [
                Take::Snapshot {
                    first: false,
                    resync: false,
                    range: 5..10,
                    complete: false
                },
                Take::Delta {
                    tasks: vec![2],
                    complete: true
                },
            ]
        );
    }

    #[test]
    fn large_deltas_are_split_and_complete_only_at_the_end() {
        let job = job(3000);
        let mut p = Pending::new();
        drain(&mut p, &job, 10_000);
        let changed: Vec<usize> = (0..1000).collect();
        p.mark(&changed, false, 3000);
        let takes = drain(&mut p, &job, 300);
        assert_eq!(takes.len(), 4);
        assert!(takes[..3].iter().all(|t| !t.complete()));
        assert!(takes[3].complete());
        let sent: Vec<usize> = takes
            .iter()
            .flat_map(|t| match t {
                Take::Delta { tasks, .. } => tasks.clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(sent, changed);
    }

    #[test]
    fn a_watcher_past_the_bound_is_dropped_and_resynced() {
        let tasks = 5000;
        let job = job(tasks);
        let mut p = Pending::new();
        drain(&mut p, &job, usize::MAX);
        // A stalled watcher: changes keep coming, nothing is taken.
        for round in 0..100 {
            let changed: Vec<usize> = (0..tasks).filter(|i| i % 100 == round).collect();
            p.mark(&changed, true, tasks);
            assert!(p.heap_bytes() <= tasks.div_ceil(64) * 8, "bounded backlog");
        }
        assert_eq!(p.resyncs(), 1);
        let takes = drain(&mut p, &job, 2000);
        assert_eq!(
            takes[0],
            Take::Snapshot {
                first: true,
                resync: true,
                range: 0..2000,
                complete: false
            }
        );
        assert!(takes.last().unwrap().complete());
        // What changed after the drop and before the snapshot was taken is in the snapshot.
        assert_eq!(takes.len(), 3);
    }

    #[test]
    fn a_small_job_is_never_resynced_below_the_minimum_bound() {
        let job = job(100);
        let mut p = Pending::new();
        drain(&mut p, &job, 1000);
        for _ in 0..50 {
            let all: Vec<usize> = (0..100).collect();
            p.mark(&all, true, 100);
        }
        assert_eq!(p.resyncs(), 0);
        assert_eq!(
            drain(&mut p, &job, 1000),
            [Take::Delta {
                tasks: (0..100).collect(),
                complete: true
            }]
        );
    }

    #[test]
    fn a_job_without_tasks_is_one_complete_snapshot() {
        let job = job(0);
        let mut p = Pending::new();
        assert_eq!(
            drain(&mut p, &job, 10),
            [Take::Snapshot {
                first: true,
                resync: false,
                range: 0..0,
                complete: true
            }]
        );
    }
}
