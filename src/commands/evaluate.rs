//! `golden evaluate`: how well retrieval finds the expected chunks of the golden queries.
//! Recall@k, Precision@k, MRR, nDCG@k and hit rate, overall, per category and per difficulty,
//! the worst queries with what came back instead, and thresholds that make it a CI gate.

use color_eyre::Result;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::compare::embedding_column_dims;
use crate::db;
use crate::embed::EmbedArgs;
use crate::error::{invalid_input, Exit};
use crate::evaluate::metrics::Summary;
use crate::evaluate::{self, Evaluation, QueryResult};
use crate::output::Output;

/// Queries listed as the worst, before the table (which comes last, as a summary does).
const WORST: usize = 5;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// How many chunks each query retrieves
    #[arg(long, short, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub k: u32,

    /// Exit 3 when the mean Recall@k is below this
    #[arg(long, value_name = "R")]
    pub min_recall: Option<f64>,

    /// Exit 3 when the MRR is below this
    #[arg(long, value_name = "M")]
    pub min_mrr: Option<f64>,

    /// Search by a sequential scan (exact) instead of the HNSW index, to see the index's recall loss
    #[arg(long)]
    pub exact: bool,

    #[command(flatten)]
    pub embed: EmbedArgs,
}

#[derive(Serialize)]
struct Report<'a> {
    k: usize,
    exact: bool,
    provider: String,
    model: String,
    dims: usize,
    queries: usize,
    scored: usize,
    overall: Summary,
    by_category: &'a std::collections::BTreeMap<String, Summary>,
    by_difficulty: &'a std::collections::BTreeMap<String, Summary>,
    worst: Vec<&'a QueryResult>,
    /// The queries left out of the figures, and why.
    not_scored: Vec<NotScored<'a>>,
    min_recall: Option<f64>,
    min_mrr: Option<f64>,
    passed: bool,
}

#[derive(Serialize)]
struct NotScored<'a> {
    id: &'a str,
    reason: &'a str,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    let client = args.embed.client()?;
    let mut conn = db::connect(global)?;
    if let Some(column) = embedding_column_dims(&mut conn)? {
        if column as usize != client.info().dims {
            return Err(invalid_input(format!(
                "chunks.embedding holds {column}-dimension vectors but the configured {} makes {}; \
                 evaluate with the model the chunks were embedded by (pass --embed-dims {column})",
                client.info(),
                client.info().dims
            )));
        }
    }
    let evaluation = evaluate::evaluate(&mut conn, &client, args.k as usize, args.exact)?;
    if evaluation.results.is_empty() {
        return Err(invalid_input(
            "there are no golden queries in the database: add a \"queries\" list to the backup file and restore it",
        ));
    }
    let overall = evaluation.overall;
    let passed = args.min_recall.is_none_or(|min| overall.recall >= min)
        && args.min_mrr.is_none_or(|min| overall.mrr >= min);
    let worst = worst(&evaluation);
    print_table(&evaluation, &worst, &client.info().to_string(), output)?;
    if !passed {
        let mut failed = Vec::new();
        if let Some(min) = args.min_recall.filter(|&min| overall.recall < min) {
            failed.push(format!(
                "Recall@{} {:.3} is below {min}",
                evaluation.k, overall.recall
            ));
        }
        if let Some(min) = args.min_mrr.filter(|&min| overall.mrr < min) {
            failed.push(format!("MRR {:.3} is below {min}", overall.mrr));
        }
        eprintln!("evaluation below the thresholds: {}", failed.join("; "));
    }
    let info = client.info();
    output.summary(&Report {
        k: evaluation.k,
        exact: evaluation.exact,
        provider: info.provider.to_string(),
        model: info.model.clone(),
        dims: info.dims,
        queries: evaluation.results.len(),
        scored: overall.queries,
        overall,
        by_category: &evaluation.by_category,
        by_difficulty: &evaluation.by_difficulty,
        worst,
        not_scored: evaluation
            .results
            .iter()
            .filter_map(|result| {
                result.not_scored.as_deref().map(|reason| NotScored {
                    id: &result.id,
                    reason,
                })
            })
            .collect(),
        min_recall: args.min_recall,
        min_mrr: args.min_mrr,
        passed,
    })?;
    Ok(if passed {
        Exit::Success
    } else {
        Exit::ProblemsFound
    })
}

/// The scored queries that did worst: lowest recall, then lowest reciprocal rank.
fn worst(evaluation: &Evaluation) -> Vec<&QueryResult> {
    let mut scored: Vec<&QueryResult> = evaluation
        .results
        .iter()
        .filter(|r| r.scores.is_some())
        .collect();
    scored.sort_by(|a, b| {
        let (a, b) = (a.scores.unwrap_or_default(), b.scores.unwrap_or_default());
        (a.recall, a.reciprocal_rank)
            .partial_cmp(&(b.recall, b.reciprocal_rank))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    scored
        .into_iter()
        .filter(|r| {
            r.scores
                .is_some_and(|s| s.recall < 1.0 || s.reciprocal_rank < 1.0)
        })
        .take(WORST)
        .collect()
}

fn print_table(
    evaluation: &Evaluation,
    worst: &[&QueryResult],
    model: &str,
    output: Output,
) -> Result<()> {
    let k = evaluation.k;
    if !worst.is_empty() {
        output.line("worst queries (what came back instead; * marks an expected chunk):")?;
    }
    for result in worst {
        let scores = result.scores.unwrap_or_default();
        output.line(format_args!(
            "  {} ({}, {}) recall {:.2}, MRR {:.2}: {:?}",
            result.id,
            result.category.as_deref().unwrap_or("-"),
            result.difficulty.as_deref().unwrap_or("-"),
            scores.recall,
            scores.reciprocal_rank,
            result.query
        ))?;
        output.line(format_args!(
            "      expected {}",
            result
                .expected
                .iter()
                .map(|id| id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ))?;
        for (rank, got) in result.retrieved.iter().enumerate() {
            let mark = if result.expected.contains(&got.id) {
                "*"
            } else {
                " "
            };
            output.line(format_args!(
                "    {mark}{}. {} · {} ({})",
                rank + 1,
                got.analysis_title.as_deref().unwrap_or("(untitled)"),
                got.section_title.as_deref().unwrap_or("(no section)"),
                got.id
            ))?;
        }
    }
    let unresolved: Vec<&QueryResult> = evaluation
        .results
        .iter()
        .filter(|r| !r.unresolved_expected_chunks.is_empty())
        .collect();
    if !unresolved.is_empty() {
        if !worst.is_empty() {
            output.line("")?;
        }
        output.line("not scored (an incomplete answer would overstate recall):")?;
        for result in &unresolved {
            output.line(format_args!(
                "  {} {:?}: {}",
                result.id,
                result.query,
                result.not_scored.as_deref().unwrap_or("not scored")
            ))?;
        }
    }
    let without_answer = evaluation.results.len() - evaluation.overall.queries - unresolved.len();
    if !worst.is_empty() || !unresolved.is_empty() {
        output.line("")?;
    }
    output.line(format_args!(
        "evaluation of {} queries ({} scored, {without_answer} without an expected answer{}) at k = {k}, {model}, {}",
        evaluation.results.len(),
        evaluation.overall.queries,
        if unresolved.is_empty() {
            String::new()
        } else {
            format!(", {} with unresolved expected chunks", unresolved.len())
        },
        if evaluation.exact { "exact search" } else { "HNSW index" }
    ))?;
    output.line("")?;
    output.line(format_args!(
        "{:<28} {:>7} {:>9} {:>12} {:>7} {:>8} {:>9}",
        "",
        "queries",
        format!("recall@{k}"),
        format!("precision@{k}"),
        "MRR",
        format!("nDCG@{k}"),
        "hit rate"
    ))?;
    let row = |label: String, s: &Summary| {
        format!(
            "{label:<28} {:>7} {:>9.3} {:>12.3} {:>7.3} {:>8.3} {:>9.3}",
            s.queries, s.recall, s.precision, s.mrr, s.ndcg, s.hit_rate
        )
    };
    output.line(row("overall".into(), &evaluation.overall))?;
    for (category, summary) in &evaluation.by_category {
        output.line(row(format!("category {category}"), summary))?;
    }
    for (difficulty, summary) in &evaluation.by_difficulty {
        output.line(row(format!("difficulty {difficulty}"), summary))?;
    }
    Ok(())
}
