//! What a task gets for what its request leaves out, applied in one place: the controller's
//! domain model is built with these (the CLI sends only what the job file names).

/// The queue of a task that names none.
pub const QUEUE: &str = "default";
/// Attempts of a task whose retry policy names none (0 on the wire).
pub const MAX_ATTEMPTS: u32 = 3;
/// The first retry's delay, in milliseconds, when none is named.
pub const INITIAL_DELAY_MS: u64 = 1_000;
/// The longest retry delay, in milliseconds, when none is named (never below the initial
/// delay).
pub const MAX_DELAY_MS: u64 = 60_000;

/// A task's queue: `default` when it names none.
pub fn queue(queue: String) -> String {
    if queue.is_empty() {
        QUEUE.to_owned()
    } else {
        queue
    }
}

/// A task's retry policy, `(max_attempts, initial_delay_ms, max_delay_ms)`, from what its
/// request names (`None` for no policy at all): three attempts, the first retry after 1 s,
/// none more than 60 s apart (nor less than the initial delay, when only that is named).
pub fn retry(named: Option<(u32, Option<u64>, Option<u64>)>) -> (u32, u64, u64) {
    let Some((max_attempts, initial_delay_ms, max_delay_ms)) = named else {
        return (MAX_ATTEMPTS, INITIAL_DELAY_MS, MAX_DELAY_MS);
    };
    let initial_delay_ms = initial_delay_ms.unwrap_or(INITIAL_DELAY_MS);
    (
        if max_attempts == 0 {
            MAX_ATTEMPTS
        } else {
            max_attempts
        },
        initial_delay_ms,
        max_delay_ms.unwrap_or(MAX_DELAY_MS.max(initial_delay_ms)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_is_left_out_gets_its_default() {
        assert_eq!(queue(String::new()), "default");
        assert_eq!(queue("gpu".into()), "gpu");
        assert_eq!(retry(None), (3, 1_000, 60_000));
        assert_eq!(retry(Some((0, None, None))), (3, 1_000, 60_000));
        assert_eq!(retry(Some((5, Some(90_000), None))), (5, 90_000, 90_000));
        assert_eq!(retry(Some((1, Some(0), Some(0)))), (1, 0, 0));
    }
}
