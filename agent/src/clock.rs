//! The boot clock the lease is counted on: time since boot, read by the heartbeat loop, its
//! watchdog, the poller, the runner and the attempts' guardians alike.

use std::time::Duration;

/// Time since boot, suspended time included, so that a paused or suspended agent sees the
/// time it was away (unlike `Instant`, which stops with the machine on Linux).
pub fn boot_now() -> Duration {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let clock = nix::time::ClockId::CLOCK_BOOTTIME;
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    let clock = nix::time::ClockId::CLOCK_MONOTONIC;
    nix::time::clock_gettime(clock)
        .map(Duration::from)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_clock_moves_forward() {
        let a = boot_now();
        let b = boot_now();
        assert!(a > Duration::ZERO && b >= a);
    }
}
