//! When a guardian stops its task: the lease's kill window (shared with the agent's own
//! watchdog), the task's timeout, and a stop the agent asked for or that its death implies. Pure
//! logic over instants on the boot clock, so that it is tested without processes or sleeps.

use std::time::Duration;

/// The most a lease's kill window keeps back from the lease's end for the guardian's own
/// scheduling and the kernel's delivery of SIGKILL.
const MAX_MARGIN: Duration = Duration::from_secs(1);

/// When a task whose lease is not renewed gets SIGTERM (`term_at`) and SIGKILL (`kill_at`),
/// both before the lease ends, so that it is dead before the controller can reassign the
/// task: the controller counts `agent_timeout` from the last heartbeat it *received*, after
/// the agent sent it (DESIGN.md invariants 3, 4 and 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub term_at: Duration,
    pub kill_at: Duration,
}

impl Window {
    /// The window of a lease that ends at `lease_end` (the sending of the last acknowledged
    /// heartbeat + `agent_timeout`): a margin of a tenth of the timeout (at most a second)
    /// before the end, SIGKILL; the grace before it, at most another tenth, SIGTERM.
    pub fn of_lease(lease_end: Duration, agent_timeout: Duration, kill_grace: Duration) -> Self {
        let margin = (agent_timeout / 10).min(MAX_MARGIN);
        let grace = kill_grace.min(agent_timeout / 10);
        let kill_at = lease_end.saturating_sub(margin);
        Window {
            term_at: kill_at.saturating_sub(grace),
            kill_at,
        }
    }
}

/// Why a guardian stopped its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// The lease was not renewed in time.
    Lease,
    /// The agent's end of the control socket closed: it died.
    AgentGone,
    /// The task ran past its timeout.
    Timeout,
    /// The agent asked (stop order, fencing, drain, lost session), or a signal told the
    /// guardian itself to stop.
    Asked,
}

/// What the guardian does now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Term,
    Kill,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stopping {
    why: Why,
    kill_at: Duration,
    termed: bool,
    killed: bool,
}

/// A guardian's clock: every instant is time since boot (`CLOCK_BOOTTIME`).
#[derive(Debug, Clone)]
pub struct Plan {
    lease_end: Duration,
    agent_timeout: Duration,
    kill_grace: Duration,
    timeout_at: Option<Duration>,
    stopping: Option<Stopping>,
}

impl Plan {
    pub fn new(
        lease_end: Duration,
        agent_timeout: Duration,
        kill_grace: Duration,
        timeout_at: Option<Duration>,
    ) -> Self {
        Plan {
            lease_end,
            agent_timeout,
            kill_grace,
            timeout_at,
            stopping: None,
        }
    }

    pub fn window(&self) -> Window {
        Window::of_lease(self.lease_end, self.agent_timeout, self.kill_grace)
    }

    /// A renewal: the lease now ends at `lease_end`. It never moves back, and once a stop has
    /// begun it changes nothing (a stop is never taken back).
    pub fn renew(&mut self, lease_end: Duration) {
        if self.stopping.is_none() {
            self.lease_end = self.lease_end.max(lease_end);
        }
    }

    /// Begins a stop at `now` unless one has begun; SIGKILL follows after `grace`, and never
    /// later than the lease's own kill.
    pub fn stop(&mut self, why: Why, now: Duration, grace: Duration) {
        if let Some(s) = &mut self.stopping {
            // Asked to hurry: an earlier SIGKILL than planned.
            s.kill_at = s.kill_at.min(now + grace);
            return;
        }
        self.stopping = Some(Stopping {
            why,
            kill_at: (now + grace).min(self.window().kill_at),
            termed: false,
            killed: false,
        });
    }

    /// The agent died: stop at once, with the usual grace.
    pub fn agent_gone(&mut self, now: Duration) {
        self.stop(Why::AgentGone, now, self.kill_grace);
    }

    /// The agent asks for a stop; `force` skips the grace.
    pub fn asked(&mut self, now: Duration, force: bool) {
        let grace = if force {
            Duration::ZERO
        } else {
            self.kill_grace
        };
        self.stop(Why::Asked, now, grace);
    }

    /// Why the task is being stopped, if it is.
    pub fn why(&self) -> Option<Why> {
        self.stopping.map(|s| s.why)
    }

    /// What to do at `now`, in order, and when to look again (`None`: only on an event).
    pub fn step(&mut self, now: Duration) -> (Vec<Action>, Option<Duration>) {
        if self.stopping.is_none() {
            let window = self.window();
            if now >= window.term_at {
                self.stopping = Some(Stopping {
                    why: Why::Lease,
                    kill_at: window.kill_at,
                    termed: false,
                    killed: false,
                });
            } else if self.timeout_at.is_some_and(|t| now >= t) {
                self.stop(Why::Timeout, now, self.kill_grace);
            } else {
                let wake = match self.timeout_at {
                    Some(t) => t.min(window.term_at),
                    None => window.term_at,
                };
                return (Vec::new(), Some(wake));
            }
        }
        let Some(s) = &mut self.stopping else {
            unreachable!("a stop has begun above");
        };
        let mut actions = Vec::new();
        if !s.termed {
            s.termed = true;
            // Woken too late for a grace (a suspend, a stopped guardian): straight to SIGKILL.
            if now < s.kill_at {
                actions.push(Action::Term);
            }
        }
        if !s.killed && now >= s.kill_at {
            s.killed = true;
            actions.push(Action::Kill);
        }
        let wake = (!s.killed).then_some(s.kill_at);
        (actions, wake)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);
    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_window_closes_before_the_lease_ends() {
        // Tests' timeout: 2 s → margin 200 ms, grace 200 ms.
        assert_eq!(
            Window::of_lease(100 * S, 2 * S, 5 * S),
            Window {
                term_at: 100 * S - 400 * MS,
                kill_at: 100 * S - 200 * MS
            }
        );
        // Default timeout 15 s: margin capped at 1 s, grace 1.5 s of the 5 s kill grace.
        assert_eq!(
            Window::of_lease(100 * S, 15 * S, 5 * S),
            Window {
                term_at: 100 * S - 2500 * MS,
                kill_at: 99 * S
            }
        );
        // A short kill grace is kept whole.
        let w = Window::of_lease(100 * S, 60 * S, 100 * MS);
        assert_eq!((w.term_at, w.kill_at), (99 * S - 100 * MS, 99 * S));
        // Never before boot.
        assert_eq!(Window::of_lease(MS, 2 * S, S).term_at, Duration::ZERO);
    }

    #[test]
    fn an_unrenewed_lease_terms_then_kills_inside_its_window() {
        let mut plan = Plan::new(10 * S, 2 * S, 5 * S, None);
        assert_eq!(plan.step(5 * S), (vec![], Some(9600 * MS)));
        // Renewed: the window moves with the lease, never back.
        plan.renew(12 * S);
        plan.renew(11 * S);
        assert_eq!(plan.step(9600 * MS), (vec![], Some(11600 * MS)));
        assert_eq!(
            plan.step(11600 * MS),
            (vec![Action::Term], Some(11800 * MS))
        );
        assert_eq!(plan.why(), Some(Why::Lease));
        // A renewal once the stop has begun is too late.
        plan.renew(20 * S);
        assert_eq!(plan.step(11700 * MS), (vec![], Some(11800 * MS)));
        assert_eq!(plan.step(11800 * MS), (vec![Action::Kill], None));
        assert_eq!(plan.step(12 * S), (vec![], None));
    }

    #[test]
    fn waking_after_the_window_kills_at_once() {
        // A suspend or a stopped guardian: no SIGTERM grace is left.
        let mut plan = Plan::new(10 * S, 2 * S, 5 * S, None);
        assert_eq!(plan.step(30 * S), (vec![Action::Kill], None));
        assert_eq!(plan.why(), Some(Why::Lease));
    }

    #[test]
    fn the_agents_death_stops_the_task_at_once() {
        let mut plan = Plan::new(10 * S, 2 * S, 5 * S, None);
        plan.agent_gone(5 * S);
        // SIGKILL after the grace, but within the lease's window.
        assert_eq!(plan.step(5 * S), (vec![Action::Term], Some(9800 * MS)));
        assert_eq!(plan.step(9800 * MS), (vec![Action::Kill], None));
        assert_eq!(plan.why(), Some(Why::AgentGone));

        let mut plan = Plan::new(100 * S, 2 * S, 300 * MS, None);
        plan.agent_gone(5 * S);
        assert_eq!(plan.step(5 * S), (vec![Action::Term], Some(5300 * MS)));
    }

    #[test]
    fn a_timeout_stops_the_task_with_the_full_grace() {
        let mut plan = Plan::new(100 * S, 15 * S, 5 * S, Some(10 * S));
        assert_eq!(plan.step(S), (vec![], Some(10 * S)));
        assert_eq!(plan.step(10 * S), (vec![Action::Term], Some(15 * S)));
        assert_eq!(plan.why(), Some(Why::Timeout));
        assert_eq!(plan.step(15 * S), (vec![Action::Kill], None));
    }

    #[test]
    fn a_forced_stop_hurries_one_under_way() {
        let mut plan = Plan::new(100 * S, 15 * S, 5 * S, None);
        plan.asked(S, false);
        assert_eq!(plan.step(S), (vec![Action::Term], Some(6 * S)));
        plan.asked(2 * S, true);
        assert_eq!(plan.step(2 * S), (vec![Action::Kill], None));
        assert_eq!(plan.why(), Some(Why::Asked));
    }
}
