//! Change notifications per job, for `WatchJob` and `GetLogs --follow`: a version counter per
//! watched job that every transition touching the job bumps. Unwatched jobs cost nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::watch;

#[derive(Default)]
pub struct Watchers {
    jobs: Mutex<HashMap<String, watch::Sender<u64>>>,
}

impl Watchers {
    pub fn subscribe(&self, job_id: &str) -> watch::Receiver<u64> {
        let mut jobs = self.jobs.lock().expect("watchers poisoned");
        jobs.entry(job_id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Bumps every watched job (a notifier that may have lost a change).
    pub fn changed_all(&self) {
        let mut jobs = self.jobs.lock().expect("watchers poisoned");
        jobs.retain(|_, tx| tx.receiver_count() > 0);
        for tx in jobs.values() {
            tx.send_modify(|v| *v += 1);
        }
    }

    pub fn changed(&self, job_id: &str) {
        let mut jobs = self.jobs.lock().expect("watchers poisoned");
        if let Some(tx) = jobs.get(job_id) {
            if tx.receiver_count() == 0 {
                jobs.remove(job_id);
            } else {
                tx.send_modify(|v| *v += 1);
            }
        }
    }
}
