//! TREC qrels and run files, the formats trec_eval, ir_measures and ranx read, so a team can
//! check golden's figures with the tools its field trusts.
//!
//! - qrels: `query 0 item 1`, one line per expected chunk (or analysis) of each scored query.
//! - run: `query Q0 item rank score tag`, the top k in rank order.
//!
//! trec_eval orders a run by score and breaks ties by item name, not by the rank column, so
//! equal similarities would come out in another order than golden's. The scores written are
//! therefore the cosine similarities in steps of 1e-9, each lowered where needed to stay
//! strictly below the one before: every tool then sees golden's ranking, and no score moves by
//! more than k × 1e-9.

use std::collections::HashSet;
use std::fmt::Write as _;

use color_eyre::Result;
use uuid::Uuid;

use super::judgments::Judgments;
use super::metrics::documents_of;
use super::Evaluation;
use crate::error::invalid_input;

/// What the items of a TREC file are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Level {
    /// Chunk ids
    Chunk,
    /// Analysis ids: a hit on any chunk of the expected analysis
    Document,
}

/// TREC fields are separated by white space: an id holding some cannot be written.
pub fn checked_id(id: &str) -> Result<&str> {
    // Tools split TREC lines on white space as their language sees it (Python's split() also
    // at \x1c-\x1f), so every control character is refused with it.
    if id.is_empty() || id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid_input(format!(
            "the query id {id:?} is empty or holds white space or a control character, which TREC \
             files cannot carry; rename the query in the backup file"
        )));
    }
    Ok(id)
}

/// The qrels of the scored queries.
pub fn qrels(judgments: &Judgments, level: Level) -> Result<String> {
    let mut out = String::new();
    for query in judgments.scored() {
        let id = checked_id(&query.id)?;
        let items = match level {
            Level::Chunk => &query.expected,
            Level::Document => &query.expected_analyses,
        };
        for item in items {
            writeln!(out, "{id} 0 {item} 1")?;
        }
    }
    Ok(out)
}

/// The run of `evaluation`, named `tag` in its last column.
pub fn run(evaluation: &Evaluation, level: Level, tag: &str) -> Result<String> {
    let tag: String = tag
        .chars()
        .map(|c| if c.is_whitespace() { '_' } else { c })
        .collect();
    let mut out = String::new();
    for result in &evaluation.results {
        let id = checked_id(&result.id)?;
        let ranked: Vec<(Uuid, Option<f64>)> = match level {
            Level::Chunk => result
                .retrieved
                .iter()
                .map(|got| (got.id, got.distance))
                .collect(),
            Level::Document => {
                let order = documents_of(result.retrieved.iter().map(|got| got.analysis_id));
                let mut seen = HashSet::new();
                let best: Vec<Option<f64>> = result
                    .retrieved
                    .iter()
                    .filter(|got| seen.insert(got.analysis_id))
                    .map(|got| got.distance)
                    .collect();
                order.into_iter().zip(best).collect()
            }
        };
        let mut previous: Option<i64> = None;
        for (rank, (item, distance)) in ranked.into_iter().enumerate() {
            // Similarity in units of 1e-9; a missing distance counts as -2, below any cosine.
            let units = distance
                .map(|d| ((1.0 - d) * 1e9).round() as i64)
                .unwrap_or(-2_000_000_000);
            let units = match previous {
                Some(before) if units >= before => before - 1,
                _ => units,
            };
            previous = Some(units);
            let sign = if units < 0 { "-" } else { "" };
            let magnitude = units.unsigned_abs();
            writeln!(
                out,
                "{id} Q0 {item} {} {sign}{}.{:09} {tag}",
                rank + 1,
                magnitude / 1_000_000_000,
                magnitude % 1_000_000_000
            )?;
        }
    }
    Ok(out)
}
