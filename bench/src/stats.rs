//! Percentiles and spreads.

use serde_json::{json, Value};

use crate::report::r3;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// From values in microseconds (sorted in place).
    pub fn from_us(v: &mut [u32]) -> Summary {
        v.sort_unstable();
        let n = v.len();
        if n == 0 {
            return Summary::default();
        }
        let at = |q: f64| {
            // Nearest rank: the smallest value with at least q of the samples at or below it.
            let rank = ((q * n as f64).ceil() as usize).clamp(1, n);
            f64::from(v[rank - 1]) / 1000.0
        };
        let sum: f64 = v.iter().map(|&x| f64::from(x)).sum();
        Summary {
            n,
            min: f64::from(v[0]) / 1000.0,
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: f64::from(v[n - 1]) / 1000.0,
            mean: sum / n as f64 / 1000.0,
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "n": self.n,
            "min_ms": r3(self.min),
            "p50_ms": r3(self.p50),
            "p90_ms": r3(self.p90),
            "p99_ms": r3(self.p99),
            "p999_ms": r3(self.p999),
            "max_ms": r3(self.max),
            "mean_ms": r3(self.mean),
        })
    }

    /// `p50 1.234 ms, p99 …` for summaries.
    pub fn line(&self) -> String {
        format!(
            "p50 {:.3} ms, p90 {:.3}, p99 {:.3}, p99.9 {:.3}, max {:.3} (n={})",
            self.p50, self.p90, self.p99, self.p999, self.max, self.n
        )
    }
}

/// Microseconds between two instants, saturating into a `u32`.
pub fn us(d: std::time::Duration) -> u32 {
    d.as_micros().min(u128::from(u32::MAX)) as u32
}
