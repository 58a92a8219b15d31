//! Retry rules: whether a failed attempt earns another, and after what backoff. Pure functions,
//! shared by every store backend so that all apply the same policy.

use crate::model::RetryPolicy;

/// Why an attempt ended without success; decides whether it counts and whether to wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The task's own failure (exit code, timeout): counted, retried after a backoff.
    Task,
    /// The agent died or lost its assignment: counted, retried at once on another agent.
    Lost,
}

/// What happens to the task after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Queue again, eligible after `delay_ms`.
    Retry { delay_ms: u64 },
    /// The attempts are spent: the task fails.
    GiveUp,
}

/// `failures` counts this failure too. `jitter` in `[0, 1)` spreads retries of many tasks
/// ("equal jitter": half the delay fixed, half random).
pub fn decide(policy: &RetryPolicy, failures: u32, kind: Failure, jitter: f64) -> Decision {
    if failures >= policy.max_attempts.max(1) {
        return Decision::GiveUp;
    }
    if kind == Failure::Lost {
        return Decision::Retry { delay_ms: 0 };
    }
    let exponent = failures.saturating_sub(1).min(32);
    let base = policy
        .initial_delay_ms
        .saturating_mul(1u64 << exponent)
        .min(policy.max_delay_ms.max(policy.initial_delay_ms));
    let half = base / 2;
    let delay_ms = half + ((base - half) as f64 * jitter.clamp(0.0, 1.0)) as u64;
    Decision::Retry { delay_ms }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 5,
            initial_delay_ms: 1_000,
            max_delay_ms: 5_000,
        }
    }

    #[test]
    fn backoff_doubles_within_jitter_bounds_and_caps() {
        assert_eq!(
            decide(&policy(), 1, Failure::Task, 0.0),
            Decision::Retry { delay_ms: 500 }
        );
        assert_eq!(
            decide(&policy(), 1, Failure::Task, 1.0),
            Decision::Retry { delay_ms: 1_000 }
        );
        assert_eq!(
            decide(&policy(), 2, Failure::Task, 1.0),
            Decision::Retry { delay_ms: 2_000 }
        );
        assert_eq!(
            decide(&policy(), 4, Failure::Task, 1.0),
            Decision::Retry { delay_ms: 5_000 }
        );
    }

    #[test]
    fn gives_up_when_attempts_are_spent() {
        assert_eq!(decide(&policy(), 5, Failure::Task, 0.5), Decision::GiveUp);
        let once = RetryPolicy {
            max_attempts: 1,
            ..policy()
        };
        assert_eq!(decide(&once, 1, Failure::Lost, 0.5), Decision::GiveUp);
    }

    #[test]
    fn lost_attempts_retry_at_once() {
        assert_eq!(
            decide(&policy(), 1, Failure::Lost, 0.9),
            Decision::Retry { delay_ms: 0 }
        );
    }
}
