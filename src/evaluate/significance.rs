//! Whether a difference between two runs on the same queries is more than noise: paired tests
//! on the per-query differences of several metrics at once.
//!
//! - Fisher's randomization test (the sign-flip permutation test of ranx and of IR practice):
//!   under "no difference" each query's difference is as likely negative as positive, so the
//!   signs are flipped at random and the p-value is the share of flips whose mean difference is
//!   at least as far from 0 as the observed one, (count + 1) / (permutations + 1). Queries
//!   scored the same by both sides add nothing whatever their sign; when few queries differ,
//!   every sign pattern of those is enumerated instead and the p-value is exact.
//! - A percentile bootstrap confidence interval of the mean difference: queries resampled with
//!   replacement.
//!
//! One sign pattern (one resample) serves every metric, so the cost does not grow with their
//! number. The generator is ChaCha8 seeded from the seed and the group's name: the same seed
//! gives the same p-values and intervals on every machine, whatever groups come before.

use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Signs are enumerated rather than drawn when at most this many queries differ (and 2^that
/// is no more than the permutations asked for).
const MAX_ENUMERATED_QUERIES: usize = 20;

/// How the tests run.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Settings {
    pub seed: u64,
    /// Random sign patterns of the randomization test (0: no test).
    pub permutations: u32,
    /// Bootstrap resamples (0: no interval).
    pub resamples: u32,
    /// The confidence of the interval, such as 0.95.
    pub confidence: f64,
}

/// The paired test of one metric.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedTest {
    /// Mean of subject − reference.
    pub difference: f64,
    pub p_value: Option<f64>,
    pub interval: Option<(f64, f64)>,
    /// Queries where the subject did better, worse, the same.
    pub wins: usize,
    pub losses: usize,
    pub ties: usize,
}

/// Tests each metric's per-query differences (`differences[metric][query]`, every inner list
/// of one length), with random streams named by `stream`.
pub fn paired_tests(
    differences: &[Vec<f64>],
    settings: &Settings,
    stream: &str,
) -> Vec<PairedTest> {
    let n = differences.first().map_or(0, Vec::len);
    let mean = |values: &[f64]| {
        if values.is_empty() {
            0.0
        } else {
            values.iter().sum::<f64>() / values.len() as f64
        }
    };
    let observed: Vec<f64> = differences.iter().map(|d| mean(d)).collect();
    let p_values = randomization(differences, &observed, n, settings, stream);
    let intervals = bootstrap(differences, n, settings, stream);
    differences
        .iter()
        .enumerate()
        .map(|(metric, values)| {
            // A difference below this is rounding, not a win: the metrics are ratios of small
            // integers, computed in the same way on both sides.
            let tie = |d: f64| d.abs() <= 1e-12;
            PairedTest {
                difference: observed[metric],
                p_value: p_values.as_ref().map(|p| p[metric]),
                interval: intervals.as_ref().map(|i| i[metric]),
                wins: values.iter().filter(|d| !tie(**d) && **d > 0.0).count(),
                losses: values.iter().filter(|d| !tie(**d) && **d < 0.0).count(),
                ties: values.iter().filter(|d| tie(**d)).count(),
            }
        })
        .collect()
}

fn generator(settings: &Settings, stream: &str, purpose: &str) -> ChaCha8Rng {
    let digest = Sha256::new()
        .chain_update(settings.seed.to_le_bytes())
        .chain_update(purpose.as_bytes())
        .chain_update([0])
        .chain_update(stream.as_bytes())
        .finalize();
    let mut seed = [0u8; 32];
    seed.copy_from_slice(&digest);
    ChaCha8Rng::from_seed(seed)
}

/// The queries whose differences are not all zero, each as its row of differences (one per
/// metric), and for every query the index of its row. A query where both sides scored the same
/// on every metric adds nothing to a sum whatever its sign, so only these rows are touched.
struct Rows {
    metrics: usize,
    /// `metrics` values per row, row after row.
    values: Vec<f64>,
    row_of: Vec<Option<usize>>,
}

impl Rows {
    fn new(differences: &[Vec<f64>], n: usize) -> Rows {
        let metrics = differences.len();
        let mut values = Vec::new();
        let mut row_of = Vec::with_capacity(n);
        let mut rows = 0;
        for query in 0..n {
            if differences.iter().all(|d| d[query] == 0.0) {
                row_of.push(None);
            } else {
                values.extend(differences.iter().map(|d| d[query]));
                row_of.push(Some(rows));
                rows += 1;
            }
        }
        Rows {
            metrics,
            values,
            row_of,
        }
    }

    fn len(&self) -> usize {
        self.values.len() / self.metrics.max(1)
    }

    fn row(&self, row: usize) -> &[f64] {
        &self.values[row * self.metrics..(row + 1) * self.metrics]
    }
}

/// Two-sided p-values of the randomization test, one per metric.
fn randomization(
    differences: &[Vec<f64>],
    observed: &[f64],
    n: usize,
    settings: &Settings,
    stream: &str,
) -> Option<Vec<f64>> {
    if settings.permutations == 0 {
        return None;
    }
    let rows = Rows::new(differences, n);
    let metrics = differences.len();
    // Sums rather than means (the same test), compared with a margin for the rounding of sums
    // taken in another order.
    let targets: Vec<f64> = observed
        .iter()
        .map(|mean| (mean * n as f64).abs() - 1e-9)
        .collect();
    let mut at_least = vec![0u64; metrics];
    let mut sums = vec![0.0f64; metrics];
    let varying = rows.len();
    let mut signs = vec![0.0f64; varying];
    // One sign pattern: the signed sums of every metric, and which reach the observed ones.
    let mut count = |signs: &[f64], at_least: &mut [u64]| {
        sums.iter_mut().for_each(|sum| *sum = 0.0);
        for (row, sign) in signs.iter().enumerate() {
            for (sum, value) in sums.iter_mut().zip(rows.row(row)) {
                *sum += sign * value;
            }
        }
        for ((hits, sum), target) in at_least.iter_mut().zip(&sums).zip(&targets) {
            if sum.abs() >= *target {
                *hits += 1;
            }
        }
    };
    let sign_of = |bit: u64| if bit & 1 == 1 { 1.0 } else { -1.0 };
    if varying <= MAX_ENUMERATED_QUERIES && (1u64 << varying) <= u64::from(settings.permutations) {
        let patterns = 1u64 << varying;
        for pattern in 0..patterns {
            for (row, sign) in signs.iter_mut().enumerate() {
                *sign = sign_of(pattern >> row);
            }
            count(&signs, &mut at_least);
        }
        return Some(
            at_least
                .into_iter()
                .map(|hits| hits as f64 / patterns as f64)
                .collect(),
        );
    }
    let mut rng = generator(settings, stream, "randomization");
    for _ in 0..settings.permutations {
        for block in signs.chunks_mut(64) {
            let bits = rng.next_u64();
            for (i, sign) in block.iter_mut().enumerate() {
                *sign = sign_of(bits >> i);
            }
        }
        count(&signs, &mut at_least);
    }
    let total = f64::from(settings.permutations) + 1.0;
    Some(
        at_least
            .into_iter()
            .map(|hits| (hits as f64 + 1.0) / total)
            .collect(),
    )
}

/// Percentile bootstrap intervals of the mean difference, one per metric.
fn bootstrap(
    differences: &[Vec<f64>],
    n: usize,
    settings: &Settings,
    stream: &str,
) -> Option<Vec<(f64, f64)>> {
    if settings.resamples == 0 {
        return None;
    }
    if n == 0 {
        return Some(vec![(0.0, 0.0); differences.len()]);
    }
    let rows = Rows::new(differences, n);
    let mut rng = generator(settings, stream, "bootstrap");
    let mut means: Vec<Vec<f64>> =
        vec![Vec::with_capacity(settings.resamples as usize); differences.len()];
    let mut sums = vec![0.0f64; differences.len()];
    for _ in 0..settings.resamples {
        sums.iter_mut().for_each(|sum| *sum = 0.0);
        for _ in 0..n {
            if let Some(row) = rows.row_of[rng.random_range(0..n)] {
                for (sum, value) in sums.iter_mut().zip(rows.row(row)) {
                    *sum += value;
                }
            }
        }
        for (metric_means, sum) in means.iter_mut().zip(&sums) {
            metric_means.push(sum / n as f64);
        }
    }
    let tail = (1.0 - settings.confidence) / 2.0;
    Some(
        means
            .into_iter()
            .map(|mut values| {
                values.sort_by(f64::total_cmp);
                (quantile(&values, tail), quantile(&values, 1.0 - tail))
            })
            .collect(),
    )
}

/// The `q` quantile of sorted `values`, interpolated between the nearest ranks.
fn quantile(values: &[f64], q: f64) -> f64 {
    let position = q.clamp(0.0, 1.0) * (values.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = position.ceil() as usize;
    let weight = position - below as f64;
    values[below] * (1.0 - weight) + values[above] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(seed: u64) -> Settings {
        Settings {
            seed,
            permutations: 10_000,
            resamples: 2_000,
            confidence: 0.95,
        }
    }

    #[test]
    fn no_difference_gives_p_one_and_a_zero_interval() {
        let tests = paired_tests(&[vec![0.0; 40]], &settings(1), "overall");
        assert_eq!(tests[0].p_value, Some(1.0));
        assert_eq!(tests[0].interval, Some((0.0, 0.0)));
        assert_eq!((tests[0].wins, tests[0].losses, tests[0].ties), (0, 0, 40));
    }

    #[test]
    fn a_consistent_difference_is_significant_and_reproducible() {
        // Differences of many values around 0.3, so intervals of other resamples differ.
        let differences = vec![(0..40)
            .map(|i| (f64::from(i) * 0.37).sin() * 0.5 + 0.3)
            .collect::<Vec<f64>>()];
        let first = paired_tests(&differences, &settings(7), "overall");
        assert!(first[0].p_value.unwrap() < 0.001, "{first:?}");
        let (low, high) = first[0].interval.unwrap();
        assert!(low > 0.0 && low < first[0].difference && high > first[0].difference);
        assert_eq!(paired_tests(&differences, &settings(7), "overall"), first);
        // Another seed draws other signs: close, but its own figures.
        let other = paired_tests(&differences, &settings(8), "overall");
        assert_ne!(other[0].interval, first[0].interval);
    }

    #[test]
    fn few_queries_are_enumerated_exactly() {
        // Three queries, one of them different: 8 sign patterns, and |sum| >= 1 for all of
        // them, so p = 1; two equal differences: |±1 ±1 + 0| >= 2 for 4 of 8 patterns.
        let one = paired_tests(&[vec![1.0, 0.0, 0.0]], &settings(1), "g");
        assert_eq!(one[0].p_value, Some(1.0));
        let two = paired_tests(&[vec![1.0, 1.0, 0.0]], &settings(1), "g");
        assert_eq!(two[0].p_value, Some(0.5));
    }
}
