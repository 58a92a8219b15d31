//! The engine's rules that every store backend applies inside its transactions, written once
//! and free of SQL: whether a failed attempt is retried and when (`retry`), which agents may
//! take a task (`labels`, and `placement`: an sql task's datasource, and why none takes a task),
//! and how a job ends (`job_end`). Backends store; these decide.

pub mod placement;
pub mod retry;

use std::collections::BTreeMap;

use crate::model::JobState;

/// Whether an agent carrying `carried` labels may run a task requiring `required`: every
/// required label must be carried with the same value.
pub fn labels_match(
    required: &BTreeMap<String, String>,
    carried: &BTreeMap<String, String>,
) -> bool {
    required.iter().all(|(k, v)| carried.get(k) == Some(v))
}

/// The state a job ends in once `done` of its `total` tasks are finished (succeeded, failed,
/// skipped or cancelled), `failed` of them without success; `None` while tasks remain.
pub fn job_end(total: i64, done: i64, failed: i64) -> Option<JobState> {
    (done >= total).then_some(if failed > 0 {
        JobState::Failed
    } else {
        JobState::Succeeded
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_must_all_match() {
        let carried: BTreeMap<_, _> = [
            ("site".to_string(), "dc1".to_string()),
            ("gpu".into(), "no".into()),
        ]
        .into();
        let one = |k: &str, v: &str| [(k.to_string(), v.to_string())].into();
        assert!(labels_match(&BTreeMap::new(), &carried));
        assert!(labels_match(&one("site", "dc1"), &carried));
        assert!(!labels_match(&one("site", "dc2"), &carried));
        assert!(!labels_match(&one("zone", "a"), &carried));
    }

    #[test]
    fn a_job_ends_when_every_task_is_done() {
        assert_eq!(job_end(3, 2, 0), None);
        assert_eq!(job_end(3, 3, 0), Some(JobState::Succeeded));
        assert_eq!(job_end(3, 3, 1), Some(JobState::Failed));
    }
}
