//! Two evaluations of the same golden queries side by side: a reference (the current model,
//! or a saved baseline run) and a subject (a candidate model, or the current run against the
//! baseline). Queries are paired by id; every metric at chunk and document level gets its two
//! means, the difference, a paired test, and wins, losses and ties, overall and per category
//! and difficulty; the queries that flipped between hit and miss are listed; and `gate` turns
//! the largest drops a team accepts into an exit code.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::Serialize;

use super::metrics::Scores;
use super::significance::{paired_tests, PairedTest, Settings};
use super::{Evaluation, QueryResult, RunInfo};

/// A metric as named on the command line (`--max-drop ndcg=0.02`) and in the JSON.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    pub name: &'static str,
    pub document_level: bool,
    label: &'static str,
    at_k: bool,
    value: fn(&Scores) -> f64,
}

/// Metrics are the same when their names are (the name is unique in [`METRICS`]).
impl PartialEq for Metric {
    fn eq(&self, other: &Metric) -> bool {
        self.name == other.name
    }
}

impl Metric {
    /// How a table heads it: `recall@5`, `doc MRR`.
    pub fn label(&self, k: usize) -> String {
        let prefix = if self.document_level { "doc " } else { "" };
        if self.at_k {
            format!("{prefix}{}@{k}", self.label)
        } else {
            format!("{prefix}{}", self.label)
        }
    }
}

const fn metric(
    name: &'static str,
    document_level: bool,
    label: &'static str,
    at_k: bool,
    value: fn(&Scores) -> f64,
) -> Metric {
    Metric {
        name,
        document_level,
        label,
        at_k,
        value,
    }
}

/// Every metric compared, chunk level first.
pub const METRICS: [Metric; 10] = [
    metric("recall", false, "recall", true, |s| s.recall),
    metric("precision", false, "precision", true, |s| s.precision),
    metric("mrr", false, "MRR", false, |s| s.reciprocal_rank),
    metric("ndcg", false, "nDCG", true, |s| s.ndcg),
    metric("hit_rate", false, "hit rate", false, |s| s.hit),
    metric("doc_recall", true, "recall", true, |s| s.recall),
    metric("doc_precision", true, "precision", true, |s| s.precision),
    metric("doc_mrr", true, "MRR", false, |s| s.reciprocal_rank),
    metric("doc_ndcg", true, "nDCG", true, |s| s.ndcg),
    metric("doc_hit_rate", true, "hit rate", false, |s| s.hit),
];

impl Metric {
    fn of(&self, result: &QueryResult) -> Option<f64> {
        let scores = if self.document_level {
            result.document_scores.as_ref()
        } else {
            result.scores.as_ref()
        };
        scores.map(self.value)
    }
}

impl FromStr for Metric {
    type Err = String;

    fn from_str(name: &str) -> Result<Metric, String> {
        let wanted = name.trim().to_ascii_lowercase().replace('-', "_");
        METRICS
            .iter()
            .find(|m| m.name == wanted)
            .copied()
            .ok_or_else(|| {
                format!(
                    "unknown metric {name:?}; the metrics are {}",
                    METRICS.map(|m| m.name).join(", ")
                )
            })
    }
}

/// One metric of one group.
#[derive(Debug, Clone, Serialize)]
pub struct MetricComparison {
    pub metric: &'static str,
    pub reference: f64,
    pub subject: f64,
    #[serde(flatten)]
    pub test: PairedTest,
}

/// A group of paired queries: all of them, or those of a category or difficulty.
#[derive(Debug, Clone, Serialize)]
pub struct Group {
    pub queries: usize,
    pub metrics: Vec<MetricComparison>,
}

impl Group {
    pub fn metric(&self, name: &str) -> Option<&MetricComparison> {
        self.metrics.iter().find(|m| m.metric == name)
    }
}

/// A query whose top k held an expected chunk on one side and none on the other.
#[derive(Debug, Clone, Serialize)]
pub struct Flip {
    pub id: String,
    pub query: String,
    pub category: Option<String>,
    pub difficulty: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// What the two sides are called in a report: `current`/`candidate`, `baseline`/`current`.
    pub reference_name: &'static str,
    pub subject_name: &'static str,
    pub reference: RunInfo,
    pub subject: RunInfo,
    pub settings: Settings,
    /// Queries scored on both sides: those the tests are about.
    pub paired: usize,
    /// Scored on one side only (a query added since a saved run), left out of the tests.
    pub only_in_reference: Vec<String>,
    pub only_in_subject: Vec<String>,
    pub overall: Group,
    pub by_category: BTreeMap<String, Group>,
    pub by_difficulty: BTreeMap<String, Group>,
    pub hit_to_miss: Vec<Flip>,
    pub miss_to_hit: Vec<Flip>,
}

/// Compares `subject` with `reference` query by query.
pub fn compare(
    (reference_name, reference): (&'static str, &Evaluation),
    (subject_name, subject): (&'static str, &Evaluation),
    settings: &Settings,
) -> Comparison {
    let subject_by_id: HashMap<&str, &QueryResult> =
        subject.results.iter().map(|r| (r.id.as_str(), r)).collect();
    let reference_ids: std::collections::HashSet<&str> = reference
        .results
        .iter()
        .filter(|r| r.scores.is_some())
        .map(|r| r.id.as_str())
        .collect();
    // In the reference's order: the judgments' byte order of ids.
    let pairs: Vec<(&QueryResult, &QueryResult)> = reference
        .results
        .iter()
        .filter(|r| r.scores.is_some())
        .filter_map(|r| {
            subject_by_id
                .get(r.id.as_str())
                .filter(|s| s.scores.is_some())
                .map(|s| (r, *s))
        })
        .collect();
    let only_in_reference = reference
        .results
        .iter()
        .filter(|r| r.scores.is_some())
        .filter(|r| {
            subject_by_id
                .get(r.id.as_str())
                .is_none_or(|s| s.scores.is_none())
        })
        .map(|r| r.id.clone())
        .collect();
    let only_in_subject = subject
        .results
        .iter()
        .filter(|s| s.scores.is_some() && !reference_ids.contains(s.id.as_str()))
        .map(|s| s.id.clone())
        .collect();
    let grouped = |key: fn(&QueryResult) -> Option<&String>, prefix: &str| {
        let mut groups: BTreeMap<String, Vec<(&QueryResult, &QueryResult)>> = BTreeMap::new();
        for pair in &pairs {
            let name = key(pair.0).cloned().unwrap_or_else(|| "(none)".into());
            groups.entry(name).or_default().push(*pair);
        }
        groups
            .into_iter()
            .map(|(name, members)| {
                let group = group_of(&members, settings, &format!("{prefix} {name}"));
                (name, group)
            })
            .collect()
    };
    let flip = |r: &QueryResult| Flip {
        id: r.id.clone(),
        query: r.query.clone(),
        category: r.category.clone(),
        difficulty: r.difficulty.clone(),
    };
    Comparison {
        reference_name,
        subject_name,
        reference: reference.info.clone(),
        subject: subject.info.clone(),
        settings: *settings,
        paired: pairs.len(),
        only_in_reference,
        only_in_subject,
        overall: group_of(&pairs, settings, "overall"),
        by_category: grouped(|r| r.category.as_ref(), "category"),
        by_difficulty: grouped(|r| r.difficulty.as_ref(), "difficulty"),
        hit_to_miss: pairs
            .iter()
            .filter(|(r, s)| r.hit() == Some(true) && s.hit() == Some(false))
            .map(|(r, _)| flip(r))
            .collect(),
        miss_to_hit: pairs
            .iter()
            .filter(|(r, s)| r.hit() == Some(false) && s.hit() == Some(true))
            .map(|(r, _)| flip(r))
            .collect(),
    }
}

fn group_of(pairs: &[(&QueryResult, &QueryResult)], settings: &Settings, stream: &str) -> Group {
    let value = |metric: &Metric, result: &QueryResult| metric.of(result).unwrap_or(0.0);
    let differences: Vec<Vec<f64>> = METRICS
        .iter()
        .map(|metric| {
            pairs
                .iter()
                .map(|(r, s)| value(metric, s) - value(metric, r))
                .collect()
        })
        .collect();
    let tests = paired_tests(&differences, settings, stream);
    let mean = |values: &mut dyn Iterator<Item = f64>| {
        if pairs.is_empty() {
            0.0
        } else {
            values.sum::<f64>() / pairs.len() as f64
        }
    };
    Group {
        queries: pairs.len(),
        metrics: METRICS
            .iter()
            .zip(tests)
            .map(|(metric, test)| MetricComparison {
                metric: metric.name,
                reference: mean(&mut pairs.iter().map(|(r, _)| value(metric, r))),
                subject: mean(&mut pairs.iter().map(|(_, s)| value(metric, s))),
                test,
            })
            .collect(),
    }
}

/// The largest drop of a metric that a gate accepts: `ndcg=0.02`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaxDrop {
    pub metric: Metric,
    pub drop: f64,
}

impl FromStr for MaxDrop {
    type Err = String;

    fn from_str(text: &str) -> Result<MaxDrop, String> {
        let (name, drop) = text
            .split_once('=')
            .ok_or_else(|| format!("{text:?} is not METRIC=DROP, such as recall=0.02"))?;
        let metric: Metric = name.parse()?;
        let drop: f64 = drop
            .trim()
            .parse()
            .map_err(|_| format!("{drop:?} is not a number (the largest drop, such as 0.02)"))?;
        if !(drop.is_finite() && drop >= 0.0) {
            return Err(format!("the drop {drop} must be a number of 0 or more"));
        }
        Ok(MaxDrop { metric, drop })
    }
}

impl fmt::Display for MaxDrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.metric.name, self.drop)
    }
}

/// Why a comparison fails the gate (empty: it passes): a metric that dropped by more than
/// allowed, or (`fail_on_flip`) a query that went from hit to miss.
pub fn gate(comparison: &Comparison, max_drops: &[MaxDrop], fail_on_flip: bool) -> Vec<String> {
    let k = comparison.subject.k;
    let mut failures = Vec::new();
    for limit in max_drops {
        let Some(figures) = comparison.overall.metric(limit.metric.name) else {
            continue;
        };
        let drop = figures.reference - figures.subject;
        // A margin for floating-point rounding of means of the same ratios.
        if drop > limit.drop + 1e-12 {
            failures.push(format!(
                "{} dropped by {drop:.3} ({:.3} → {:.3}), more than {}",
                limit.metric.label(k),
                figures.reference,
                figures.subject,
                limit.drop
            ));
        }
    }
    if fail_on_flip && !comparison.hit_to_miss.is_empty() {
        failures.push(format!(
            "{} went from hit to miss: {}",
            crate::output::counted(comparison.hit_to_miss.len() as u64, "query", "queries"),
            comparison
                .hit_to_miss
                .iter()
                .map(|flip| flip.id.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_drop_parses_and_refuses() {
        let parsed: MaxDrop = "nDCG=0.02".parse().unwrap();
        assert_eq!((parsed.metric.name, parsed.drop), ("ndcg", 0.02));
        assert_eq!(
            "doc-recall=0".parse::<MaxDrop>().unwrap().metric.name,
            "doc_recall"
        );
        for bad in ["recall", "recall=x", "recall=-0.1", "f1=0.1", "recall=inf"] {
            assert!(bad.parse::<MaxDrop>().is_err(), "{bad}");
        }
    }
}
