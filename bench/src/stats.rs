//! Medians, spreads and fairness: the arithmetic behind the report.
//!
//! Every figure in the report is the median of several rounds, shown with
//! its spread (the lowest and highest round), because one run on a shared
//! machine is an anecdote. Ratios between two servers are taken round by
//! round (both measured minutes apart in the same session) and then the
//! median of those ratios is reported.

use serde::Serialize;

/// The median of a sample; `None` when it is empty. An even-sized sample
/// gives the mean of the two middle values.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// A median with the range it came from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Spread {
    /// The median of the rounds.
    pub median: f64,
    /// The lowest round.
    pub min: f64,
    /// The highest round.
    pub max: f64,
    /// Rounds that contributed.
    pub n: usize,
}

impl Spread {
    /// The spread of a sample; `None` when it is empty.
    pub fn of(values: &[f64]) -> Option<Spread> {
        let median = median(values)?;
        let finite = values.iter().copied().filter(|x| x.is_finite());
        let min = finite.clone().fold(f64::INFINITY, f64::min);
        let max = finite.clone().fold(f64::NEG_INFINITY, f64::max);
        Some(Spread {
            median,
            min,
            max,
            n: finite.count(),
        })
    }

    /// Half the range relative to the median, in percent: `±3%` means the
    /// rounds stayed within about 3% of the median.
    pub fn relative_pct(&self) -> f64 {
        if self.median == 0.0 {
            0.0
        } else {
            (self.max - self.min) / 2.0 / self.median.abs() * 100.0
        }
    }
}

/// The median over rounds of `a[i] / b[i]`: each ratio comes from two runs
/// of the same round. Rounds where either side is missing or `b` is zero
/// are skipped.
pub fn paired_ratio(a: &[Option<f64>], b: &[Option<f64>]) -> Option<Spread> {
    let ratios: Vec<f64> = a
        .iter()
        .zip(b)
        .filter_map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) if *y != 0.0 => Some(x / y),
            _ => None,
        })
        .collect();
    Spread::of(&ratios)
}

/// How evenly work was shared among connections (or workers).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Fairness {
    /// Fewest requests completed by one connection.
    pub min: u64,
    /// Most requests completed by one connection.
    pub max: u64,
    /// Connections that completed nothing at all: starved.
    pub starved: usize,
    /// Jain's fairness index, `(Σx)² / (n·Σx²)`: 1 when all are equal,
    /// `1/n` when one connection got everything.
    pub jain: f64,
}

impl Fairness {
    /// The fairness of per-connection counts.
    pub fn of(counts: &[u64]) -> Fairness {
        if counts.is_empty() {
            return Fairness::default();
        }
        let sum: f64 = counts.iter().map(|&c| c as f64).sum();
        let sq: f64 = counts.iter().map(|&c| (c as f64) * (c as f64)).sum();
        Fairness {
            min: counts.iter().copied().min().unwrap_or(0),
            max: counts.iter().copied().max().unwrap_or(0),
            starved: counts.iter().filter(|&&c| c == 0).count(),
            jain: if sq == 0.0 {
                0.0
            } else {
                sum * sum / (counts.len() as f64 * sq)
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Odd and even samples, unsorted input, and the empty sample.
    #[test]
    fn medians() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[f64::NAN, 5.0]), Some(5.0));
    }

    /// The spread keeps the extremes; one wild round moves the range but
    /// not the median.
    #[test]
    fn spreads() {
        let s = Spread::of(&[100.0, 98.0, 102.0, 10.0, 101.0]).unwrap();
        assert_eq!(s.median, 100.0);
        assert_eq!(s.min, 10.0);
        assert_eq!(s.max, 102.0);
        assert_eq!(s.n, 5);
        let tight = Spread::of(&[97.0, 100.0, 103.0]).unwrap();
        assert!((tight.relative_pct() - 3.0).abs() < 1e-9);
        assert!(Spread::of(&[]).is_none());
    }

    /// Ratios pair rounds: a server twice as fast in every round is twice
    /// as fast, however much both drift between rounds.
    #[test]
    fn paired_ratios() {
        let a = [Some(200.0), Some(100.0), Some(400.0), None];
        let b = [Some(100.0), Some(50.0), Some(200.0), Some(7.0)];
        let r = paired_ratio(&a, &b).unwrap();
        assert_eq!((r.median, r.min, r.max, r.n), (2.0, 2.0, 2.0, 3));
        assert!(paired_ratio(&[Some(1.0)], &[Some(0.0)]).is_none());
    }

    /// Equal shares give 1; one connection taking all gives 1/n and the
    /// rest count as starved.
    #[test]
    fn fairness() {
        let even = Fairness::of(&[10, 10, 10, 10]);
        assert!((even.jain - 1.0).abs() < 1e-12);
        assert_eq!(even.starved, 0);
        let hog = Fairness::of(&[40, 0, 0, 0]);
        assert!((hog.jain - 0.25).abs() < 1e-12);
        assert_eq!((hog.min, hog.max, hog.starved), (0, 40, 3));
        assert_eq!(Fairness::of(&[]).starved, 0);
    }
}
