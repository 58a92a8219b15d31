//! How a client puts a `WatchJob` stream back together: the tasks it holds are replaced by
//! each snapshot part (the first drops them all) and each delta (task by task, by id), the
//! job's own fields by every event's; the job is whole whenever an event says `complete`.
//! Part of the wire format's meaning, shared by the CLI, the tests and the benchmarks.

use std::collections::HashMap;

use crate::v1::{watch_job_event::Kind, Job, WatchJobEvent};

/// An event that does not fit the stream's rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WatchError {
    #[error("a watch event without the job")]
    NoJob,
    #[error("a watch event of no known kind")]
    NoKind,
    #[error("a watch event for job {got} on the watch of job {expected}")]
    OtherJob { expected: String, got: String },
    #[error("a delta or a later snapshot part before the first snapshot part")]
    NoSnapshot,
}

/// The job as the events so far make it.
#[derive(Debug, Default)]
pub struct JobView {
    job: Job,
    /// Index of each held task in `job.tasks`.
    index: HashMap<String, usize>,
    started: bool,
    resyncs: u64,
    events: u64,
}

impl JobView {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies one event; returns the whole job when the event completes it.
    pub fn apply(&mut self, event: WatchJobEvent) -> Result<Option<&Job>, WatchError> {
        let mut head = event.job.ok_or(WatchError::NoJob)?;
        let kind = event.kind.ok_or(WatchError::NoKind)?;
        if self.started && head.id != self.job.id {
            return Err(WatchError::OtherJob {
                expected: self.job.id.clone(),
                got: head.id,
            });
        }
        match kind {
            Kind::Snapshot(part) if part.first => {
                self.job.tasks.clear();
                self.index.clear();
                self.started = true;
                if part.resync {
                    self.resyncs += 1;
                }
            }
            Kind::Snapshot(_) | Kind::Delta(_) if !self.started => {
                return Err(WatchError::NoSnapshot)
            }
            Kind::Snapshot(_) | Kind::Delta(_) => {}
        }
        self.events += 1;
        for task in std::mem::take(&mut head.tasks) {
            match self.index.get(&task.id) {
                Some(&i) => self.job.tasks[i] = task,
                None => {
                    self.index.insert(task.id.clone(), self.job.tasks.len());
                    self.job.tasks.push(task);
                }
            }
        }
        head.tasks = std::mem::take(&mut self.job.tasks);
        self.job = head;
        Ok(event.complete.then_some(&self.job))
    }

    /// The job as held now (whole only after a `complete` event).
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// Fresh snapshots the controller sent because this watcher fell behind.
    pub fn resyncs(&self) -> u64 {
        self.resyncs
    }

    /// Events applied.
    pub fn events(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::{SnapshotPart, Task, TaskDelta, TaskState};

    fn task(id: &str, state: TaskState) -> Task {
        Task {
            id: id.into(),
            state: state as i32,
            ..Task::default()
        }
    }

    fn event(kind: Kind, tasks: Vec<Task>, complete: bool) -> WatchJobEvent {
        WatchJobEvent {
            job: Some(Job {
                id: "j".into(),
                tasks,
                ..Job::default()
            }),
            kind: Some(kind),
            complete,
        }
    }

    fn part(first: bool, resync: bool) -> Kind {
        Kind::Snapshot(SnapshotPart {
            first,
            resync,
            tasks_total: 3,
        })
    }

    fn states(job: &Job) -> Vec<(String, TaskState)> {
        job.tasks
            .iter()
            .map(|t| (t.id.clone(), t.state()))
            .collect()
    }

    #[test]
    fn parts_then_deltas_make_the_job() {
        let mut view = JobView::new();
        let e = event(part(true, false), vec![task("a", TaskState::Queued)], false);
        assert!(view.apply(e).unwrap().is_none());
        let e = event(
            part(false, false),
            vec![task("b", TaskState::Queued), task("c", TaskState::Blocked)],
            true,
        );
        assert_eq!(view.apply(e).unwrap().unwrap().tasks.len(), 3);
        let e = event(
            Kind::Delta(TaskDelta {}),
            vec![task("b", TaskState::Running)],
            true,
        );
        let job = view.apply(e).unwrap().unwrap();
        assert_eq!(
            states(job),
            [
                ("a".to_string(), TaskState::Queued),
                ("b".to_string(), TaskState::Running),
                ("c".to_string(), TaskState::Blocked)
            ]
        );
        // A resync replaces everything held.
        let e = event(
            part(true, true),
            vec![task("a", TaskState::Succeeded)],
            false,
        );
        view.apply(e).unwrap();
        assert_eq!(view.job().tasks.len(), 1);
        assert_eq!(view.resyncs(), 1);
    }

    #[test]
    fn broken_streams_are_named() {
        let mut view = JobView::new();
        let delta = event(Kind::Delta(TaskDelta {}), vec![], true);
        assert_eq!(view.apply(delta), Err(WatchError::NoSnapshot));
        let none = WatchJobEvent::default();
        assert_eq!(view.apply(none), Err(WatchError::NoJob));
        view.apply(event(part(true, false), vec![], true)).unwrap();
        let mut other = event(Kind::Delta(TaskDelta {}), vec![], true);
        other.job.as_mut().unwrap().id = "k".into();
        assert!(matches!(
            view.apply(other),
            Err(WatchError::OtherJob { .. })
        ));
    }
}
