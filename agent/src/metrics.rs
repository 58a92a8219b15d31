//! Host metrics for heartbeats: CPU and memory only, from one `sysinfo::System` kept across ticks.

use ferry_proto::v1::HostMetrics;
use sysinfo::System;

/// Samples whole-host CPU and memory; never lists processes, so a sample stays cheap.
pub struct Metrics {
    sys: System,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut sys = System::new();
        // CPU use is a difference between two refreshes: take the first reading now.
        sys.refresh_cpu_usage();
        Metrics { sys }
    }
}

impl Metrics {
    pub fn sample(&mut self) -> HostMetrics {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        let load = System::load_average();
        let cpu = self.sys.global_cpu_usage();
        HostMetrics {
            cpu_percent: if cpu.is_finite() {
                cpu.clamp(0.0, 100.0)
            } else {
                0.0
            },
            memory_used_bytes: self.sys.used_memory(),
            memory_total_bytes: self.sys.total_memory(),
            load1: load.one,
            load5: load.five,
            load15: load.fifteen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_plausible() {
        let mut m = Metrics::default();
        let s = m.sample();
        assert!(s.memory_total_bytes > 0);
        assert!(s.memory_used_bytes <= s.memory_total_bytes);
        assert!((0.0..=100.0).contains(&s.cpu_percent));
    }
}
