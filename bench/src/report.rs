//! Output of the benchmarks: one JSON line per figure on standard output, and the summary
//! statistics (mean, percentiles) the figures are made of.

use std::io::Write;

use serde_json::Value;

/// What a figure should reach, as the issue states it.
#[derive(Clone, Copy, Debug)]
pub enum Target {
    /// The value must stay below this.
    Below(f64),
    /// The value must reach at least this.
    AtLeast(f64),
}

impl Target {
    fn text(self) -> String {
        match self {
            Self::Below(v) => format!("< {v}"),
            Self::AtLeast(v) => format!(">= {v}"),
        }
    }

    fn met(self, value: f64) -> bool {
        match self {
            Self::Below(v) => value < v,
            Self::AtLeast(v) => value >= v,
        }
    }
}

/// Prints one figure as a JSON line, keys in this order:
/// `{"bench","figure","value","target","unit","n","met"}`. `target` and `met` (whether the
/// value reaches the target) are `null` for a figure without a target.
pub fn emit(bench: &str, figure: &str, value: f64, unit: &str, n: usize, target: Option<Target>) {
    let line = line(bench, figure, value, unit, n, target);
    let mut out = std::io::stdout().lock();
    // A closed stdout (`| head`) is no reason to stop a benchmark half way.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn line(
    bench: &str,
    figure: &str,
    value: f64,
    unit: &str,
    n: usize,
    target: Option<Target>,
) -> String {
    // Built by hand: `serde_json::Map` would sort the keys.
    format!(
        "{{\"bench\":{},\"figure\":{},\"value\":{},\"target\":{},\"unit\":{},\"n\":{n},\"met\":{}}}",
        Value::from(bench),
        Value::from(figure),
        Value::from(round(value)),
        target.map_or(Value::Null, |t| Value::from(t.text())),
        Value::from(unit),
        target.map_or(Value::Null, |t| Value::from(t.met(value))),
    )
}

/// Three decimals are plenty for milliseconds, seconds and rates alike.
fn round(value: f64) -> f64 {
    if value.is_finite() {
        (value * 1000.0).round() / 1000.0
    } else {
        value
    }
}

/// Summary of a sample of measurements.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    pub n: usize,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Stats {
    /// Sorts `samples` in place; `None` when there are none.
    pub fn of(samples: &mut [f64]) -> Option<Self> {
        if samples.is_empty() {
            return None;
        }
        samples.sort_by(f64::total_cmp);
        Some(Self {
            n: samples.len(),
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
            p50: percentile(samples, 50.0),
            p90: percentile(samples, 90.0),
            p99: percentile(samples, 99.0),
            max: samples[samples.len() - 1],
        })
    }
}

/// Nearest-rank percentile `p` (0–100] of an ascending, non-empty sample.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = Stats::of(&mut v).unwrap();
        assert_eq!((s.p50, s.p90, s.p99, s.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn json_line() {
        let l = line(
            "latency",
            "p50_ms",
            1.23456,
            "ms",
            10,
            Some(Target::Below(2.0)),
        );
        assert_eq!(
            l,
            r#"{"bench":"latency","figure":"p50_ms","value":1.235,"target":"< 2","unit":"ms","n":10,"met":true}"#
        );
        let v: Value = serde_json::from_str(&line("b", "f", f64::NAN, "s", 0, None)).unwrap();
        assert!(v["value"].is_null() && v["met"].is_null());
    }

    #[test]
    fn targets() {
        assert!(Target::Below(2.0).met(1.9));
        assert!(!Target::Below(2.0).met(2.0));
        assert!(Target::AtLeast(1500.0).met(1500.0));
    }
}
