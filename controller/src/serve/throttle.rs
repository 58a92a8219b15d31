//! One log line per period for events that can come by the thousand (connections refused at the
//! cap, accept failing for lack of descriptors, handshakes that timed out): the first is logged
//! at once, the rest of the period counted and reported with the next line.

use std::time::{Duration, Instant};

/// How often a throttled line may be logged.
pub const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    /// Events since the last line, that line's own included.
    count: u64,
}

impl Throttle {
    pub fn new(every: Duration) -> Self {
        Self {
            every,
            last: None,
            count: 0,
        }
    }

    /// Counts an event; `Some(n)` when a line is due, `n` the events it stands for.
    pub fn event(&mut self, now: Instant) -> Option<u64> {
        self.count += 1;
        let due = self
            .last
            .is_none_or(|last| now.duration_since(last) >= self.every);
        if !due {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_reporting_the_events_between() {
        let start = Instant::now();
        let mut throttle = Throttle::new(Duration::from_secs(10));
        assert_eq!(throttle.event(start), Some(1));
        for i in 1..100 {
            assert_eq!(throttle.event(start + Duration::from_millis(i)), None);
        }
        assert_eq!(throttle.event(start + Duration::from_secs(10)), Some(100));
        assert_eq!(throttle.event(start + Duration::from_secs(11)), None);
    }
}
