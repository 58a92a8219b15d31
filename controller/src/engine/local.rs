//! Everything a controller keeps in memory, in one place: the sessions it has seen lately
//! (`liveness`), the long-polls parked on it (`parked`), the change counters of watched jobs
//! (`watchers`), the job watchers' change feeds (`feeds`) and the wake-up of polls waiting for
//! work. None of it is needed for correctness — the store
//! holds every session, lease and order, so any controller can answer any agent — it only
//! saves store reads and lets waiting parties wake at once. `Local` is the `WakeSink` the
//! notifier delivers to.

pub mod feeds;
pub mod liveness;
pub mod parked;
pub mod watchers;

use tokio::sync::Notify;

use crate::notify::{WakeSink, Wakes};
use feeds::JobFeeds;
use liveness::Liveness;
use parked::ParkedPolls;
use watchers::Watchers;

#[derive(Default)]
pub struct Local {
    pub liveness: Liveness,
    pub(crate) parked: ParkedPolls,
    pub watchers: Watchers,
    pub feeds: JobFeeds,
    /// Woken whenever tasks become queued.
    pub work: Notify,
}

impl WakeSink for Local {
    fn deliver(&self, wakes: &Wakes) {
        if wakes.work {
            self.work.notify_waiters();
        }
        for job in &wakes.jobs {
            self.watchers.changed(job);
        }
        for agent in &wakes.agents {
            self.liveness.recheck(agent);
        }
    }

    fn wake_all(&self) {
        self.work.notify_waiters();
        self.watchers.changed_all();
    }

    fn wake_watchers(&self) {
        self.watchers.changed_all();
    }
}
