//! Retrieval metrics of one query and their means: Recall@k, Precision@k, reciprocal rank,
//! nDCG@k (binary relevance) and hit rate, at chunk level and at document level. Pure
//! functions, so they are tested on cases worked out by hand.
//!
//! Document level scores the distinct analyses of the top-k chunks, each at the rank of its
//! best chunk, against the analyses of the expected chunks: a team that re-chunks a document
//! keeps comparable figures, since chunk ids do not survive that.

use serde::Serialize;
use uuid::Uuid;

/// The scores of one query's top-k.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Scores {
    pub recall: f64,
    pub precision: f64,
    pub reciprocal_rank: f64,
    pub ndcg: f64,
    pub hit: f64,
}

/// Scores `retrieved` (best first, at most k) against the `expected` chunks. `None` when
/// nothing is expected: such a query has no right answer to find and is not scored.
pub fn score(retrieved: &[Uuid], expected: &[Uuid], k: usize) -> Option<Scores> {
    if expected.is_empty() || k == 0 {
        return None;
    }
    let top = &retrieved[..retrieved.len().min(k)];
    let relevant_at: Vec<bool> = top.iter().map(|id| expected.contains(id)).collect();
    let found = relevant_at.iter().filter(|&&relevant| relevant).count();
    let first = relevant_at.iter().position(|&relevant| relevant);
    let dcg: f64 = relevant_at
        .iter()
        .enumerate()
        .filter(|(_, &relevant)| relevant)
        .map(|(rank, _)| discount(rank))
        .sum();
    let ideal: f64 = (0..expected.len().min(k)).map(discount).sum();
    Some(Scores {
        recall: found as f64 / expected.len() as f64,
        precision: found as f64 / k as f64,
        reciprocal_rank: first.map_or(0.0, |rank| 1.0 / (rank + 1) as f64),
        ndcg: dcg / ideal,
        hit: if found > 0 { 1.0 } else { 0.0 },
    })
}

/// The distinct analyses of a ranking of `(chunk, analysis)`, best first: each at the rank of
/// its best chunk.
pub fn documents_of(ranked: impl IntoIterator<Item = Uuid>) -> Vec<Uuid> {
    let mut seen = std::collections::HashSet::new();
    ranked.into_iter().filter(|id| seen.insert(*id)).collect()
}

/// 1 / log2(position + 1) for the zero-based `rank`.
fn discount(rank: usize) -> f64 {
    1.0 / ((rank + 2) as f64).log2()
}

/// The means of several queries' scores.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    pub queries: usize,
    pub recall: f64,
    pub precision: f64,
    pub mrr: f64,
    pub ndcg: f64,
    pub hit_rate: f64,
}

pub fn summarize<'a>(scores: impl IntoIterator<Item = &'a Scores>) -> Summary {
    let mut summary = Summary::default();
    for s in scores {
        summary.queries += 1;
        summary.recall += s.recall;
        summary.precision += s.precision;
        summary.mrr += s.reciprocal_rank;
        summary.ndcg += s.ndcg;
        summary.hit_rate += s.hit;
    }
    if summary.queries > 0 {
        let n = summary.queries as f64;
        summary.recall /= n;
        summary.precision /= n;
        summary.mrr /= n;
        summary.ndcg /= n;
        summary.hit_rate /= n;
    }
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: u128) -> Vec<Uuid> {
        (1..=n).map(Uuid::from_u128).collect()
    }

    #[test]
    fn worked_examples() {
        let [a, b, c, d, e] = ids(5)[..] else {
            unreachable!()
        };
        // Expected {b, d}; retrieved a, b, c, d, e at k = 5: both found, first at rank 2.
        let s = score(&[a, b, c, d, e], &[b, d], 5).unwrap();
        assert_eq!(s.recall, 1.0);
        assert_eq!(s.precision, 2.0 / 5.0);
        assert_eq!(s.reciprocal_rank, 0.5);
        // DCG = 1/log2(3) + 1/log2(5); IDCG = 1/log2(2) + 1/log2(3).
        let dcg = 1.0 / 3f64.log2() + 1.0 / 5f64.log2();
        let ideal = 1.0 + 1.0 / 3f64.log2();
        assert!((s.ndcg - dcg / ideal).abs() < 1e-12);
        assert_eq!(s.hit, 1.0);

        // The same at k = 2: only b is in the top two.
        let s = score(&[a, b, c, d, e], &[b, d], 2).unwrap();
        assert_eq!((s.recall, s.precision, s.reciprocal_rank), (0.5, 0.5, 0.5));
        assert!((s.ndcg - (1.0 / 3f64.log2()) / (1.0 + 1.0 / 3f64.log2())).abs() < 1e-12);

        // Nothing relevant retrieved.
        let s = score(&[a, c], &[e], 2).unwrap();
        assert_eq!(s, Scores::default());

        // A query with no expected chunk is not scored.
        assert_eq!(score(&[a], &[], 5), None);

        let summary = summarize(&[
            Scores {
                recall: 1.0,
                hit: 1.0,
                ..Scores::default()
            },
            Scores::default(),
        ]);
        assert_eq!(
            (summary.queries, summary.recall, summary.hit_rate),
            (2, 0.5, 0.5)
        );
    }

    #[test]
    fn documents_rank_at_their_best_chunk() {
        let [x, y, z] = ids(3)[..] else {
            unreachable!()
        };
        // Chunks of x, x, y, x, z: the documents x, y, z at ranks 1, 2, 3.
        assert_eq!(documents_of([x, x, y, x, z]), vec![x, y, z]);
        // Expected document y, found at rank 2 of the distinct documents.
        let s = score(&documents_of([x, x, y]), &[y], 3).unwrap();
        assert_eq!((s.recall, s.reciprocal_rank, s.hit), (1.0, 0.5, 1.0));
    }
}
