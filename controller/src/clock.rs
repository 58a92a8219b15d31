//! The controller's clock, handed to the engine at construction (decision 0015): wall time in
//! UTC for what is stored and compared in the store (signs of life, leases, attempt deadlines,
//! `ready_at`), and tokio's monotonic `Instant` for waits. `Clock::system()` in production;
//! `Clock::starting_at` in tests, a wall clock that advances with tokio's time, so that
//! `tokio::time::pause()` and `advance()` move both together.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use crate::model::Millis;

/// Later than any wait a controller could mean (about 30 years).
const FAR_FUTURE: Duration = Duration::from_secs(86_400 * 365 * 30);

/// What time it is, for the engine and whatever else decides by time (the reaper, a scheduler).
/// Cheap to copy; every copy reads the same time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: Wall,
}

#[derive(Debug, Clone, Copy)]
enum Wall {
    /// The host's clock (`SystemTime`).
    System,
    /// `at` milliseconds since the Unix epoch when tokio's clock read `origin`, and as much
    /// later since as tokio's clock has advanced.
    Tokio { origin: Instant, at: Millis },
}

impl Clock {
    /// The host's wall clock and tokio's monotonic one: the clock a controller runs by.
    pub fn system() -> Self {
        Self { wall: Wall::System }
    }

    /// A clock whose wall time reads `at` (milliseconds since the Unix epoch, UTC) now and then
    /// advances only with tokio's time: under `tokio::time::pause()` it stands still until the
    /// test advances it.
    pub fn starting_at(at: Millis) -> Self {
        Self {
            wall: Wall::Tokio {
                origin: Instant::now(),
                at,
            },
        }
    }

    /// Milliseconds since the Unix epoch (UTC): the time written to and compared in the store.
    pub fn now_ms(&self) -> Millis {
        match self.wall {
            Wall::System => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as Millis),
            Wall::Tokio { origin, at } => {
                at.saturating_add(self.instant().duration_since(origin).as_millis() as Millis)
            }
        }
    }

    /// The wall time (UTC) as a `SystemTime`, for calendars (a schedule's next firing).
    pub fn now(&self) -> SystemTime {
        match self.wall {
            Wall::System => SystemTime::now(),
            Wall::Tokio { .. } => UNIX_EPOCH + Duration::from_millis(self.now_ms().max(0) as u64),
        }
    }

    /// The monotonic time waits are measured in: it never jumps with the wall clock.
    pub fn instant(&self) -> Instant {
        Instant::now()
    }

    /// Sleeps until `deadline` on the monotonic clock.
    pub async fn sleep_until(&self, deadline: Instant) {
        tokio::time::sleep_until(deadline).await;
    }

    /// The monotonic instant at which the wall clock should read `at`, were it not stepped
    /// meanwhile (now, for a time already past). Whoever sleeps until it reads `now_ms` again
    /// on waking, as an NTP step may have moved the wall clock.
    pub fn instant_at(&self, at: Millis) -> Instant {
        let ahead = Duration::from_millis(at.saturating_sub(self.now_ms()).max(0) as u64);
        let now = self.instant();
        // A time past what an `Instant` can hold is as good as never.
        now.checked_add(ahead).unwrap_or(now + FAR_FUTURE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_test_clock_moves_only_with_tokio_time() {
        let clock = Clock::starting_at(1_000_000);
        let start = clock.instant();
        assert_eq!(clock.now_ms(), 1_000_000);
        tokio::time::advance(Duration::from_millis(1_500)).await;
        assert_eq!(clock.now_ms(), 1_001_500);
        assert_eq!(clock.instant() - start, Duration::from_millis(1_500));
        assert_eq!(clock.now(), UNIX_EPOCH + Duration::from_millis(1_001_500));
        // A copy reads the same time.
        let copy = clock;
        assert_eq!(copy.now_ms(), clock.now_ms());
    }

    #[tokio::test(start_paused = true)]
    async fn sleeping_until_a_wall_time_wakes_exactly_then() {
        let clock = Clock::starting_at(5_000);
        clock.sleep_until(clock.instant_at(65_000)).await;
        assert_eq!(clock.now_ms(), 65_000);
        // A time already past is now; one no `Instant` can hold, far away but no panic.
        assert_eq!(clock.instant_at(1_000), clock.instant());
        assert!(clock.instant_at(Millis::MAX) >= clock.instant() + FAR_FUTURE);
    }

    #[test]
    fn the_system_clock_reads_the_host_clock() {
        let clock = Clock::system();
        let host = crate::model::now_ms();
        assert!((clock.now_ms() - host).abs() < 60_000);
    }
}
