//! Where a controller's last claim of a queue ended, per queue and set of agent labels, so
//! that the next claim reads the queued-tasks index from there instead of from its start.
//!
//! A claimed task leaves a dead entry in the index until PostgreSQL can remove it, which a
//! transaction open anywhere in the database (a report, a forgotten `psql` session) postpones
//! for as long as it stays open: read from its start, each claim would step over every task
//! dispatched since that transaction began (measured in
//! `docs/decisions/0008-postgres-combiner-and-claim-cursors.md`). Claims go in index order, so
//! what lies behind the cursor is claimed, or not for these labels, or locked by another claim
//! that may yet roll back, or queued with an older `ready_at` since (a clock behind, the same
//! millisecond): once a second, a claim looks behind the cursor first, so such a task waits
//! about a second at worst — the bound a lost wake-up has too — and is never starved by work
//! ahead of it.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A position in the index of queued tasks: (`ready_at`, `job_id`, `seq`).
pub(super) type Key = (i64, String, i64);

/// How often a claim may look behind its cursor.
const SWEEP_EVERY: Duration = Duration::from_secs(1);
/// Cursors kept at most (queues times the label sets agents carry); all are forgotten beyond.
const MAX_CURSORS: usize = 4096;

/// A queue and the labels of the agents claiming from it.
type Claimants = (String, BTreeMap<String, String>);

struct Mark {
    key: Key,
    swept_at: Instant,
}

#[derive(Default)]
pub(super) struct Cursors {
    marks: Mutex<HashMap<Claimants, Mark>>,
}

impl Cursors {
    /// Where a claim of `queue` by agents carrying `labels` starts (none: the index's start).
    pub(super) fn start(&self, queue: &str, labels: &BTreeMap<String, String>) -> Option<Key> {
        let marks = self.marks.lock().unwrap();
        marks
            .get(&(queue.to_owned(), labels.clone()))
            .map(|m| m.key.clone())
    }

    /// Whether a claim should look behind its cursor now (and, if so, notes that it did).
    pub(super) fn sweep_due(&self, queue: &str, labels: &BTreeMap<String, String>) -> bool {
        let mut marks = self.marks.lock().unwrap();
        match marks.get_mut(&(queue.to_owned(), labels.clone())) {
            Some(mark) if mark.swept_at.elapsed() >= SWEEP_EVERY => {
                mark.swept_at = Instant::now();
                true
            }
            Some(_) => false,
            None => true,
        }
    }

    /// The claim read up to `key`: the next starts after it. A cursor only moves forward.
    pub(super) fn advance(&self, queue: &str, labels: &BTreeMap<String, String>, key: Key) {
        let mut marks = self.marks.lock().unwrap();
        if marks.len() >= MAX_CURSORS {
            marks.clear();
        }
        let mark = marks
            .entry((queue.to_owned(), labels.clone()))
            .or_insert_with(|| Mark {
                key: key.clone(),
                swept_at: Instant::now(),
            });
        if key > mark.key {
            mark.key = key;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_move_forward_per_queue_and_labels_and_sweep_once_a_second() {
        let cursors = Cursors::default();
        let none = BTreeMap::new();
        let gpu: BTreeMap<String, String> = [("gpu".to_owned(), "yes".to_owned())].into();
        assert_eq!(cursors.start("q", &none), None);
        assert!(cursors.sweep_due("q", &none), "nothing to skip yet");
        cursors.advance("q", &none, (5, "b".into(), 2));
        cursors.advance("q", &none, (5, "a".into(), 9));
        assert_eq!(cursors.start("q", &none), Some((5, "b".into(), 2)));
        assert_eq!(cursors.start("q", &gpu), None);
        assert_eq!(cursors.start("other", &none), None);
        assert!(
            !cursors.sweep_due("q", &none),
            "swept less than a second ago"
        );
    }
}
