//! Latency histograms and their summary.
//!
//! Latencies are recorded in microseconds into an HdrHistogram: constant
//! memory, constant-time recording, and percentiles accurate to three
//! significant digits from 1 µs to 60 s. The summary keeps the percentiles
//! the report shows.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency recorded, in microseconds (60 s); longer ones are clamped.
pub const MAX_MICROS: u64 = 60_000_000;

/// A new, empty latency histogram (microseconds, 3 significant digits).
pub fn histogram() -> Histogram<u64> {
    // The bounds are constants that satisfy the crate's rules (low >= 1,
    // high >= 2 * low, sigfig <= 5), so this cannot fail.
    Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds")
}

/// Records one latency, clamping it into the histogram's range.
pub fn record(h: &mut Histogram<u64>, micros: u64) {
    h.saturating_record(micros.clamp(1, MAX_MICROS));
}

/// The percentiles the report shows, in microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct LatencySummary {
    /// Responses recorded.
    pub count: u64,
    /// Arithmetic mean.
    pub mean: f64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest latency seen.
    pub max: u64,
}

impl LatencySummary {
    /// Summarises a histogram; all zeros when it is empty.
    pub fn of(h: &Histogram<u64>) -> LatencySummary {
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            mean: h.mean(),
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
        }
    }

    /// The percentiles as `(label, microseconds)`, in order, for charts.
    pub fn percentiles(&self) -> [(&'static str, u64); 5] {
        [
            ("p50", self.p50),
            ("p90", self.p90),
            ("p99", self.p99),
            ("p99.9", self.p999),
            ("max", self.max),
        ]
    }
}

/// Formats microseconds for a table: `850µs`, `12.3ms`, `1.20s`.
pub fn fmt_micros(us: u64) -> String {
    if us < 1_000 {
        format!("{us}µs")
    } else if us < 1_000_000 {
        format!("{:.1}ms", us as f64 / 1e3)
    } else {
        format!("{:.2}s", us as f64 / 1e6)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Percentiles of 1..=1000 µs land where they should, within the
    /// histogram's three significant digits.
    #[test]
    fn percentiles_of_a_uniform_sequence() {
        let mut h = histogram();
        for us in 1..=1000 {
            record(&mut h, us);
        }
        let s = LatencySummary::of(&h);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50, 500);
        assert_eq!(s.p90, 900);
        assert_eq!(s.p99, 990);
        assert_eq!(s.p999, 999);
        assert_eq!(s.max, 1000);
        assert!((s.mean - 500.5).abs() < 1.0);
    }

    /// One slow outlier among many fast responses shows in p99.9 and max
    /// only: the tail is where it belongs.
    #[test]
    fn an_outlier_shows_only_in_the_tail() {
        let mut h = histogram();
        for _ in 0..999 {
            record(&mut h, 100);
        }
        record(&mut h, 2_000_000);
        let s = LatencySummary::of(&h);
        assert_eq!(s.p50, 100);
        assert_eq!(s.p99, 100);
        assert!(s.max >= 1_999_000, "max {}", s.max);
    }

    /// Zero and absurd latencies are clamped, not errors; an empty
    /// histogram summarises to zeros.
    #[test]
    fn clamping_and_empty() {
        let mut h = histogram();
        record(&mut h, 0);
        record(&mut h, u64::MAX);
        assert_eq!(h.len(), 2);
        assert!(h.max() >= MAX_MICROS - MAX_MICROS / 1000);
        assert_eq!(LatencySummary::of(&histogram()), LatencySummary::default());
    }

    /// Histograms recorded on different threads merge by `add`.
    #[test]
    fn merging() {
        let mut a = histogram();
        let mut b = histogram();
        record(&mut a, 10);
        record(&mut b, 1000);
        a.add(&b).unwrap();
        assert_eq!(LatencySummary::of(&a).count, 2);
        assert_eq!(fmt_micros(850), "850µs");
        assert_eq!(fmt_micros(12_345), "12.3ms");
        assert_eq!(fmt_micros(1_200_000), "1.20s");
    }
}
