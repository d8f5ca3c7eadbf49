//! Whether a difference between two runs on the same queries is more than noise: paired tests
//! on the per-query differences of several metrics at once.
//!
//! - Fisher's randomization test (the sign-flip permutation test of ranx and of IR practice):
//!   under "no difference" each query's difference is as likely negative as positive, so the
//!   signs are flipped at random and the p-value is the share of flips whose mean difference is
//!   at least as far from 0 as the observed one, (count + 1) / (permutations + 1). With few
//!   queries every sign pattern is enumerated instead and the p-value is exact.
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

/// Signs are enumerated rather than drawn when there are at most 2^this patterns (and no more
/// than the permutations asked for).
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
    if n == 0 {
        return Some(vec![1.0; differences.len()]);
    }
    // Sums rather than means (the same test), compared with a margin for the rounding of sums
    // taken in another order.
    let targets: Vec<f64> = observed
        .iter()
        .map(|mean| (mean * n as f64).abs() - 1e-9)
        .collect();
    let mut at_least = vec![0u64; differences.len()];
    let mut count = |signs: &mut dyn FnMut(usize) -> bool| {
        let mut sums = vec![0.0f64; differences.len()];
        for query in 0..n {
            let positive = signs(query);
            for (sum, values) in sums.iter_mut().zip(differences) {
                if positive {
                    *sum += values[query];
                } else {
                    *sum -= values[query];
                }
            }
        }
        for ((hits, sum), target) in at_least.iter_mut().zip(&sums).zip(&targets) {
            if sum.abs() >= *target {
                *hits += 1;
            }
        }
    };
    if n <= MAX_ENUMERATED_QUERIES && (1u64 << n) <= u64::from(settings.permutations) {
        let patterns = 1u64 << n;
        for pattern in 0..patterns {
            count(&mut |query| pattern >> query & 1 == 1);
        }
        return Some(
            at_least
                .into_iter()
                .map(|hits| hits as f64 / patterns as f64)
                .collect(),
        );
    }
    let mut rng = generator(settings, stream, "randomization");
    let mut bits = vec![0u64; n.div_ceil(64)];
    for _ in 0..settings.permutations {
        for word in bits.iter_mut() {
            *word = rng.next_u64();
        }
        count(&mut |query| bits[query / 64] >> (query % 64) & 1 == 1);
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
    let mut rng = generator(settings, stream, "bootstrap");
    let mut means: Vec<Vec<f64>> =
        vec![Vec::with_capacity(settings.resamples as usize); differences.len()];
    let mut sums = vec![0.0f64; differences.len()];
    for _ in 0..settings.resamples {
        sums.iter_mut().for_each(|sum| *sum = 0.0);
        for _ in 0..n {
            let query = rng.random_range(0..n);
            for (sum, values) in sums.iter_mut().zip(differences) {
                *sum += values[query];
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
