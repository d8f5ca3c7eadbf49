//! `golden evaluate`: how well retrieval finds the expected chunks of the golden queries.
//! Recall@k, Precision@k, MRR, nDCG@k and hit rate at chunk and document level, overall, per
//! category and per difficulty, the worst queries with what came back instead, and thresholds
//! that make it a CI gate.
//!
//! With a candidate model (`--candidate-*`) or a saved run (`--baseline`) it also compares two
//! runs query by query, with paired significance tests, and `--max-drop`/`--fail-on-flip` gate
//! on the difference. The run can be saved (`--save-run`) and written for trec_eval
//! (`--trec-run`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::compare::embedding_column_dims;
use crate::db;
use crate::embed::cache::CachedEmbedder;
use crate::embed::{EmbedArgs, ProviderKind};
use crate::error::{invalid_input, Exit};
use crate::evaluate::comparison::{self, Comparison, MaxDrop, METRICS};
use crate::evaluate::judgments::Judgments;
use crate::evaluate::metrics::Summary;
use crate::evaluate::run_file::{self, Provenance, SavedRun};
use crate::evaluate::significance::Settings;
use crate::evaluate::trec::{self, Level};
use crate::evaluate::vectors::EmbeddingCost;
use crate::evaluate::{self, Evaluation, QueryResult, Search};
use crate::output::Output;
use crate::paths::{self, OutputPath};

/// Queries listed as the worst, before the table (which comes last, as a summary does).
const WORST: usize = 5;
/// Flipped queries listed in the text report (`--json` has all).
const FLIPS_SHOWN: usize = 20;
/// The seed of the tests when none is given: a fixed one, so reports reproduce.
const DEFAULT_SEED: u64 = 20_260_101;
/// `k` when neither `--k` nor a baseline says.
const DEFAULT_K: u32 = 5;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    golden evaluate --embed-provider voyage\n  \
    golden evaluate --embed-provider voyage --candidate-model voyage-3-large\n  \
    golden evaluate --embed-provider voyage --save-run eval/baseline.json\n  \
    golden evaluate --embed-provider voyage --baseline eval/baseline.json --max-drop ndcg=0.02 --fail-on-flip\n\n\
    Exit status: 0 passed, 3 below a threshold or past a gate, 2 a usage error, 1 a failure.")]
pub struct Args {
    /// How many chunks each query retrieves [default: 5, or the baseline's]
    #[arg(long, short, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub k: Option<u32>,

    /// Exit 3 when the mean Recall@k is below this
    #[arg(long, value_name = "R", value_parser = finite)]
    pub min_recall: Option<f64>,

    /// Exit 3 when the MRR is below this
    #[arg(long, value_name = "M", value_parser = finite)]
    pub min_mrr: Option<f64>,

    /// Compare every vector (in memory) instead of searching the HNSW index, to see the index's recall loss
    #[arg(long)]
    pub exact: bool,

    /// List, per query, the retrieved chunks that no golden query expects (where labels may be missing)
    #[arg(long)]
    pub show_unjudged: bool,

    #[command(flatten)]
    pub embed: EmbedArgs,

    #[command(flatten)]
    pub candidate: CandidateArgs,

    #[command(flatten)]
    pub runs: RunArgs,

    #[command(flatten)]
    pub tests: TestArgs,
}

/// A second model evaluated on the same chunks and queries, without touching
/// `chunks.embedding`. Unset options are the current model's when the provider is the same.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Candidate model (compared with the current one)")]
pub struct CandidateArgs {
    /// The candidate's provider [default: the current one]
    #[arg(long, env = "GOLDEN_CANDIDATE_PROVIDER", value_enum)]
    pub candidate_provider: Option<ProviderKind>,

    /// The candidate's server URL [default: the current one for the same provider, else the provider's]
    #[arg(
        long,
        env = "GOLDEN_CANDIDATE_URL",
        value_name = "URL",
        hide_env_values = true
    )]
    pub candidate_url: Option<String>,

    /// The candidate's model name
    #[arg(long, env = "GOLDEN_CANDIDATE_MODEL", value_name = "NAME")]
    pub candidate_model: Option<String>,

    /// The candidate's vector dimension
    #[arg(long, env = "GOLDEN_CANDIDATE_DIMS", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=16000))]
    pub candidate_dims: Option<u32>,

    /// Most inputs in one request to the candidate
    #[arg(long, env = "GOLDEN_CANDIDATE_BATCH_SIZE", value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub candidate_batch_size: Option<u32>,
}

impl CandidateArgs {
    fn given(&self) -> bool {
        self.candidate_provider.is_some()
            || self.candidate_url.is_some()
            || self.candidate_model.is_some()
            || self.candidate_dims.is_some()
            || self.candidate_batch_size.is_some()
    }

    /// The candidate's embedding options: its own, else the current model's where the
    /// provider is the same, else the provider's defaults; the request settings are shared.
    fn embed_args(&self, current: &EmbedArgs) -> EmbedArgs {
        let provider = self.candidate_provider.or(current.embed_provider);
        let same = provider == current.embed_provider;
        fn inherit<T>(same: bool, mine: Option<T>, theirs: Option<T>) -> Option<T> {
            mine.or(if same { theirs } else { None })
        }
        EmbedArgs {
            embed_provider: provider,
            embed_url: inherit(same, self.candidate_url.clone(), current.embed_url.clone()),
            embed_model: inherit(
                same,
                self.candidate_model.clone(),
                current.embed_model.clone(),
            ),
            embed_dims: inherit(same, self.candidate_dims, current.embed_dims),
            embed_batch_size: inherit(same, self.candidate_batch_size, current.embed_batch_size),
            ..current.clone()
        }
    }
}

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Saved runs and the gate")]
pub struct RunArgs {
    /// Write this run (every query's ranked results, scores and provenance) to FILE, to commit as a baseline
    #[arg(long, value_name = "FILE")]
    pub save_run: Option<PathBuf>,

    /// Write the candidate's run to FILE
    #[arg(long, value_name = "FILE")]
    pub save_candidate_run: Option<PathBuf>,

    /// Compare this run with one saved by --save-run
    #[arg(long, value_name = "FILE", conflicts_with_all = ["candidate_provider", "candidate_url", "candidate_model", "candidate_dims", "candidate_batch_size"])]
    pub baseline: Option<PathBuf>,

    /// Exit 3 when METRIC drops by more than DROP against the baseline or candidate's reference (repeatable; recall, precision, mrr, ndcg, hit_rate, and doc_ of each)
    #[arg(long = "max-drop", value_name = "METRIC=DROP")]
    pub max_drop: Vec<MaxDrop>,

    /// Exit 3 when a query that found an expected chunk finds none
    #[arg(long)]
    pub fail_on_flip: bool,

    /// Write this run as a TREC run file (query Q0 item rank score tag), for trec_eval, ranx or ir_measures
    #[arg(long, value_name = "FILE")]
    pub trec_run: Option<PathBuf>,

    /// The items of the TREC run: chunks, or their analyses
    #[arg(long, value_enum, default_value_t = Level::Chunk)]
    pub trec_level: Level,
}

#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Significance tests")]
pub struct TestArgs {
    /// Seed of the randomization test and the bootstrap (the same seed gives the same figures)
    #[arg(long, default_value_t = DEFAULT_SEED)]
    pub seed: u64,

    /// Random sign flips of the paired randomization test (0: no test)
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub permutations: u32,

    /// Bootstrap resamples of the confidence interval (0: no interval)
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(0..=10_000_000))]
    pub bootstrap: u32,

    /// Confidence of the interval of each difference
    #[arg(long, value_name = "C", default_value_t = 0.95, value_parser = confidence)]
    pub confidence: f64,
}

/// A threshold: a number (NaN would pass every comparison, so the gate would never close).
fn finite(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(value) if value.is_finite() => Ok(value),
        _ => Err(format!("{text:?} is not a number")),
    }
}

fn confidence(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number"))?;
    if value > 0.0 && value < 1.0 {
        Ok(value)
    } else {
        Err("the confidence is between 0 and 1, such as 0.95".into())
    }
}

#[derive(Serialize)]
struct Report<'a> {
    k: usize,
    exact: bool,
    search: Search,
    provider: &'a str,
    model: &'a str,
    dims: usize,
    queries: usize,
    scored: usize,
    overall: Summary,
    by_category: &'a BTreeMap<String, Summary>,
    by_difficulty: &'a BTreeMap<String, Summary>,
    document_level: &'a evaluate::Figures,
    judged_at_k: f64,
    worst: Vec<&'a QueryResult>,
    /// The queries left out of the figures, and why.
    not_scored: Vec<NotScored<'a>>,
    results: &'a [QueryResult],
    #[serde(skip_serializing_if = "Option::is_none")]
    candidate: Option<CandidateReport<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline: Option<BaselineReport<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    comparison: Option<&'a Comparison>,
    min_recall: Option<f64>,
    min_mrr: Option<f64>,
    max_drop: Vec<String>,
    fail_on_flip: bool,
    failures: &'a [String],
    passed: bool,
}

#[derive(Serialize)]
struct CandidateReport<'a> {
    provider: &'a str,
    model: &'a str,
    dims: usize,
    overall: Summary,
    document_level: &'a evaluate::Figures,
    /// Chunk vectors computed by the provider and taken from the cache.
    chunk_vectors: EmbeddingCost,
}

#[derive(Serialize)]
struct BaselineReport<'a> {
    file: String,
    provider: &'a str,
    model: &'a str,
    dims: usize,
    k: usize,
    search: Search,
    #[serde(flatten)]
    provenance: &'a Provenance,
    /// Whether the dataset is the one the baseline was made against (by checksum).
    same_dataset: Option<bool>,
}

#[derive(Serialize)]
struct NotScored<'a> {
    id: &'a str,
    reason: &'a str,
}

/// The files the command writes, checked before anything runs.
struct Outputs {
    run: Option<OutputPath>,
    candidate_run: Option<OutputPath>,
    trec_run: Option<OutputPath>,
}

impl Outputs {
    fn check(args: &RunArgs) -> Result<Outputs> {
        // The baseline is an input: no output goes over it (save the new baseline beside it,
        // or run again with --save-run alone once the comparison is accepted).
        let inputs: Vec<&std::path::Path> = args.baseline.as_deref().into_iter().collect();
        let check = |path: &Option<PathBuf>, what: &str| {
            path.as_deref()
                .map(|path| paths::output(path, what, &inputs))
                .transpose()
        };
        let outputs = Outputs {
            run: check(&args.save_run, "run file")?,
            candidate_run: check(&args.save_candidate_run, "candidate's run file")?,
            trec_run: check(&args.trec_run, "TREC run file")?,
        };
        let named = [
            (&outputs.run, "run file"),
            (&outputs.candidate_run, "candidate's run file"),
            (&outputs.trec_run, "TREC run file"),
        ];
        for (i, (a, a_what)) in named.iter().enumerate() {
            for (b, b_what) in &named[i + 1..] {
                if let (Some(a), Some(b)) = (a, b) {
                    paths::distinct(a, a_what, b, b_what)?;
                }
            }
        }
        Ok(outputs)
    }
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    crate::interrupt::install();
    let comparing = args.candidate.given() || args.runs.baseline.is_some();
    if !comparing && (!args.runs.max_drop.is_empty() || args.runs.fail_on_flip) {
        return Err(invalid_input(
            "--max-drop and --fail-on-flip compare two runs: give --baseline FILE (a run saved by \
             --save-run) or a candidate model (--candidate-model, --candidate-provider, …)",
        ));
    }
    if args.runs.save_candidate_run.is_some() && !args.candidate.given() {
        return Err(invalid_input(
            "--save-candidate-run needs a candidate model (--candidate-model, --candidate-provider, …)",
        ));
    }
    let outputs = Outputs::check(&args.runs)?;
    let baseline = args
        .runs
        .baseline
        .as_deref()
        .map(run_file::read)
        .transpose()?;
    let k = match (&baseline, args.k) {
        (Some(saved), Some(k)) if (k as usize) > saved.run.info.k => {
            return Err(invalid_input(format!(
                "the baseline holds the top {} of each query, fewer than --k {k}: evaluate with --k {} \
                 (or less), or save a new baseline",
                saved.run.info.k, saved.run.info.k
            )))
        }
        (_, Some(k)) => k as usize,
        (Some(saved), None) => saved.run.info.k,
        (None, None) => DEFAULT_K as usize,
    };
    // A comparison searches both sides alike: a candidate is searched exactly (its vectors
    // are in no index), so the current model is too; against a baseline, as the baseline was.
    let search = if args.exact
        || args.candidate.given()
        || baseline
            .as_ref()
            .is_some_and(|saved| saved.run.info.search == Search::Exact)
    {
        Search::Exact
    } else {
        Search::Hnsw
    };
    let settings = Settings {
        seed: args.tests.seed,
        permutations: args.tests.permutations,
        resamples: args.tests.bootstrap,
        confidence: args.tests.confidence,
    };

    let client = args.embed.client()?;
    let candidate_client = if args.candidate.given() {
        Some(args.candidate.embed_args(&args.embed).client()?)
    } else {
        None
    };
    let mut conn = db::connect(global)?;
    if let Some(column) = embedding_column_dims(&mut conn)? {
        if column as usize != client.info().dims {
            return Err(invalid_input(format!(
                "chunks.embedding holds {column}-dimension vectors but the configured {} makes {}; \
                 evaluate with the model the chunks were embedded by (pass --embed-dims {column}); \
                 to try another model, give it as the candidate (--candidate-dims …)",
                client.info(),
                client.info().dims
            )));
        }
    }
    let judgments = Judgments::read(&mut conn)?;
    if judgments.queries.is_empty() {
        return Err(invalid_input(
            "there are no golden queries in the database: add a \"queries\" list to the backup file and restore it",
        ));
    }
    let use_cache = !args.embed.embed_no_cache;
    let embedder = CachedEmbedder {
        client: &client,
        use_cache,
    };
    let current_run = evaluate::run_of_column(&mut conn, &embedder, &judgments, k, search)?;
    let current_run_unsearchable = current_run.unsearchable;
    let mut current = Evaluation::of(&current_run, &judgments);
    evaluate::describe(&mut conn, &mut current)?;

    let mut candidate_unsearchable = 0;
    let candidate = match &candidate_client {
        Some(candidate_client) => {
            let embedder = CachedEmbedder {
                client: candidate_client,
                use_cache,
            };
            let (run, cost) = evaluate::run_of_candidate(&mut conn, &embedder, &judgments, k)?;
            candidate_unsearchable = run.unsearchable;
            let mut evaluation = Evaluation::of(&run, &judgments);
            evaluate::describe(&mut conn, &mut evaluation)?;
            Some((evaluation, cost))
        }
        None => None,
    };
    // Scored at this run's k: a baseline of a deeper top is cut to it.
    let baseline_evaluation = baseline
        .as_ref()
        .map(|saved| Evaluation::of(&saved.run.clone().cut_to(k), &judgments));
    let dropped_since_baseline: Vec<&str> = baseline
        .as_ref()
        .map(|saved| {
            let current: std::collections::HashSet<&str> =
                judgments.queries.iter().map(|q| q.id.as_str()).collect();
            saved
                .run
                .rankings
                .keys()
                .map(String::as_str)
                .filter(|id| !current.contains(id))
                .collect()
        })
        .unwrap_or_default();

    let comparison = match (&candidate, &baseline_evaluation) {
        (Some((candidate, _)), _) => Some(comparison::compare(
            ("current", &current),
            ("candidate", candidate),
            &settings,
        )),
        (None, Some(baseline)) => Some(comparison::compare(
            ("baseline", baseline),
            ("current", &current),
            &settings,
        )),
        (None, None) => None,
    };

    // A Ctrl-C during the searches writes no file: what was asked for did not finish.
    crate::interrupt::check()?;
    let wants_provenance =
        outputs.run.is_some() || outputs.candidate_run.is_some() || baseline.is_some();
    let provenance = if wants_provenance {
        provenance_of(&mut conn)
    } else {
        Provenance::default()
    };
    crate::interrupt::check()?;
    // Every file's text first (a refused query id stops here), then every file written beside
    // its place, then all renamed into place: an error leaves no output half written.
    let mut texts: Vec<(&OutputPath, &str, String)> = Vec::new();
    if let Some(path) = &outputs.run {
        texts.push((path, "run file", run_file::render(&current, &provenance)?));
    }
    if let (Some(path), Some((candidate, _))) = (&outputs.candidate_run, &candidate) {
        texts.push((
            path,
            "candidate's run file",
            run_file::render(candidate, &provenance)?,
        ));
    }
    if let Some(path) = &outputs.trec_run {
        let tag = format!("golden-{}-{}", current.info.provider, current.info.model);
        texts.push((
            path,
            "TREC run file",
            trec::run(&current, args.runs.trec_level, &tag)?,
        ));
    }
    let mut written = Vec::new();
    for (path, what, text) in texts {
        let temp = crate::atomic::write_temp_beside(&path.target, text.as_bytes())
            .wrap_err_with(|| format!("writing the {what} {}", path.shown.display()))?;
        written.push((path, what, temp));
    }
    crate::interrupt::check()?;
    for (path, what, temp) in written {
        crate::atomic::persist(temp, &path.target)
            .wrap_err_with(|| format!("putting the {what} {} in place", path.shown.display()))?;
    }

    let overall = current.chunk_level.overall;
    let mut failures = Vec::new();
    if let Some(min) = args.min_recall.filter(|&min| overall.recall < min) {
        failures.push(format!("Recall@{k} {:.3} is below {min}", overall.recall));
    }
    if let Some(min) = args.min_mrr.filter(|&min| overall.mrr < min) {
        failures.push(format!("MRR {:.3} is below {min}", overall.mrr));
    }
    if let Some(comparison) = &comparison {
        if comparison.paired == 0 && (!args.runs.max_drop.is_empty() || args.runs.fail_on_flip) {
            failures.push(format!(
                "no query is scored in both the {} and the {} run: there is nothing to compare",
                comparison.reference_name, comparison.subject_name
            ));
        }
        failures.extend(comparison::gate(
            comparison,
            &args.runs.max_drop,
            args.runs.fail_on_flip,
        ));
    }
    let passed = failures.is_empty();

    let worst = worst(&current);
    print_table(&current, &worst, args.show_unjudged, output)?;
    let same_dataset = baseline.as_ref().and_then(|saved| {
        Some(saved.provenance.dataset_checksum.as_ref()? == provenance.dataset_checksum.as_ref()?)
    });
    for (run, name) in [
        (&current_run_unsearchable, "current model"),
        (&candidate_unsearchable, "candidate"),
    ] {
        if *run > 0 {
            eprintln!(
                "warning: {} of the {name} have no vector or a vector of length 0, and no search finds them",
                crate::output::counted(*run as u64, "chunk", "chunks")
            );
        }
    }
    if let Some(saved) = &baseline {
        print_baseline_notes(saved, &current, same_dataset, output)?;
        if !dropped_since_baseline.is_empty() {
            output.line(format_args!(
                "in the baseline but no longer golden queries, left out: {}",
                dropped_since_baseline
                    .iter()
                    .map(|id| shown(id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
        }
    }
    if comparison.as_ref().is_some_and(|c| c.paired == 0) {
        eprintln!("warning: no query is scored on both sides of the comparison");
    }
    if let Some(comparison) = &comparison {
        print_comparison(comparison, output)?;
    }
    if !passed {
        eprintln!(
            "evaluation failed the gate: {}",
            shown(&failures.join("; "))
        );
    }

    output.summary(&Report {
        k,
        exact: search == Search::Exact,
        search,
        provider: &current.info.provider,
        model: &current.info.model,
        dims: current.info.dims,
        queries: current.results.len(),
        scored: current.scored(),
        overall,
        by_category: &current.chunk_level.by_category,
        by_difficulty: &current.chunk_level.by_difficulty,
        document_level: &current.document_level,
        judged_at_k: current.judged_at_k,
        worst,
        not_scored: current
            .results
            .iter()
            .filter_map(|result| {
                result.not_scored.as_deref().map(|reason| NotScored {
                    id: &result.id,
                    reason,
                })
            })
            .collect(),
        results: &current.results,
        candidate: candidate
            .as_ref()
            .map(|(evaluation, cost)| CandidateReport {
                provider: &evaluation.info.provider,
                model: &evaluation.info.model,
                dims: evaluation.info.dims,
                overall: evaluation.chunk_level.overall,
                document_level: &evaluation.document_level,
                chunk_vectors: *cost,
            }),
        baseline: baseline.as_ref().map(|saved| BaselineReport {
            file: args
                .runs
                .baseline
                .as_deref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            provider: &saved.run.info.provider,
            model: &saved.run.info.model,
            dims: saved.run.info.dims,
            k: saved.run.info.k,
            search: saved.run.info.search,
            provenance: &saved.provenance,
            same_dataset,
        }),
        comparison: comparison.as_ref(),
        min_recall: args.min_recall,
        min_mrr: args.min_mrr,
        max_drop: args.runs.max_drop.iter().map(|m| m.to_string()).collect(),
        fail_on_flip: args.runs.fail_on_flip,
        failures: &failures,
        passed,
    })?;
    Ok(if passed {
        Exit::Success
    } else {
        Exit::ProblemsFound
    })
}

/// Where this run comes from: the checksum a backup of the database would carry now, and the
/// revision of the repository golden runs in. Either is left out, with a warning, when it
/// cannot be had.
fn provenance_of(conn: &mut diesel::PgConnection) -> Provenance {
    let dataset_checksum = match crate::backup::dataset_checksum(conn) {
        Ok(checksum) => Some(checksum),
        Err(e) => {
            log::warn!("the run file gets no dataset checksum: {e}");
            None
        }
    };
    let git_revision = crate::git::Git::in_folder(".")
        .output(
            "reading the git revision",
            ["rev-parse", "--verify", "-q", "HEAD"],
        )
        .ok()
        .filter(|(_, out)| out.status.success())
        .map(|(text, _)| text.trim().to_string())
        .filter(|revision| !revision.is_empty());
    Provenance {
        dataset_checksum,
        git_revision,
        golden_version: env!("CARGO_PKG_VERSION").to_string(),
    }
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

/// One retrieved chunk under a query: its mark, rank, analysis, section and id.
fn retrieved_line(mark: &str, rank: usize, got: &evaluate::Retrieved) -> String {
    format!(
        "    {mark}{}. {} · {} ({})",
        rank + 1,
        got.analysis_title.as_deref().unwrap_or("(untitled)"),
        got.section_title.as_deref().unwrap_or("(no section)"),
        got.id
    )
}

fn print_results(result: &QueryResult, output: Output) -> Result<()> {
    for (rank, got) in result.retrieved.iter().enumerate() {
        let mark = if result.expected.contains(&got.id) {
            "*"
        } else if !got.judged {
            "?"
        } else {
            " "
        };
        output.line(retrieved_line(mark, rank, got))?;
    }
    Ok(())
}

fn print_table(
    evaluation: &Evaluation,
    worst: &[&QueryResult],
    show_unjudged: bool,
    output: Output,
) -> Result<()> {
    let k = evaluation.k();
    if !worst.is_empty() {
        output.line(
            "worst queries (what came back instead; * marks an expected chunk, ? one no query expects):",
        )?;
    }
    for result in worst {
        let scores = result.scores.unwrap_or_default();
        output.line(format_args!(
            "  {} ({}, {}) recall {:.2}, MRR {:.2}: {:?}",
            shown(&result.id),
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
        print_results(result, output)?;
    }
    if show_unjudged {
        if !worst.is_empty() {
            output.line("")?;
        }
        let unjudged: Vec<&QueryResult> = evaluation
            .results
            .iter()
            .filter(|r| r.retrieved.iter().any(|got| !got.judged))
            .collect();
        output.line(format_args!(
            "unjudged results: chunks in the top {k} that no golden query expects (judged@{k} {:.3}); \
             label them, or they count as misses:",
            evaluation.judged_at_k
        ))?;
        if unjudged.is_empty() {
            output.line("  none")?;
        }
        for result in unjudged {
            output.line(format_args!(
                "  {} judged@{k} {:.2}: {:?}",
                shown(&result.id),
                result.judged_at_k,
                result.query
            ))?;
            for (rank, got) in result.retrieved.iter().enumerate() {
                if !got.judged {
                    output.line(retrieved_line("?", rank, got))?;
                }
            }
        }
    }
    let unresolved: Vec<&QueryResult> = evaluation
        .results
        .iter()
        .filter(|r| !r.unresolved_expected_chunks.is_empty())
        .collect();
    if !unresolved.is_empty() {
        if !worst.is_empty() || show_unjudged {
            output.line("")?;
        }
        output.line("not scored (an incomplete answer would overstate recall):")?;
        for result in &unresolved {
            output.line(format_args!(
                "  {} {:?}: {}",
                shown(&result.id),
                result.query,
                result.not_scored.as_deref().unwrap_or("not scored")
            ))?;
        }
    }
    let without_answer = evaluation.results.len() - evaluation.scored() - unresolved.len();
    if !worst.is_empty() || !unresolved.is_empty() || show_unjudged {
        output.line("")?;
    }
    output.line(format_args!(
        "evaluation of {} queries ({} scored, {without_answer} without an expected answer{}) at k = {k}, {}, {}",
        evaluation.results.len(),
        evaluation.scored(),
        if unresolved.is_empty() {
            String::new()
        } else {
            format!(", {} with unresolved expected chunks", unresolved.len())
        },
        evaluation.info.model_label(),
        evaluation.info.search
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
    output.line(row("overall".into(), &evaluation.chunk_level.overall))?;
    for (category, summary) in &evaluation.chunk_level.by_category {
        output.line(row(format!("category {category}"), summary))?;
    }
    for (difficulty, summary) in &evaluation.chunk_level.by_difficulty {
        output.line(row(format!("difficulty {difficulty}"), summary))?;
    }
    output.line(row(
        "documents (any chunk of it)".into(),
        &evaluation.document_level.overall,
    ))?;
    Ok(())
}

fn print_baseline_notes(
    saved: &SavedRun,
    current: &Evaluation,
    same_dataset: Option<bool>,
    output: Output,
) -> Result<()> {
    output.line("")?;
    output.line(format_args!(
        "baseline: {}, top {}, {}{}{}",
        saved.run.info.model_label(),
        saved.run.info.k,
        saved.run.info.search,
        saved
            .provenance
            .git_revision
            .as_deref()
            .map(|revision| format!(
                ", saved at revision {}",
                &revision[..revision.len().min(12)]
            ))
            .unwrap_or_default(),
        match same_dataset {
            Some(true) => ", same dataset",
            Some(false) => ", on another version of the dataset (its checksum differs)",
            None => "",
        }
    ))?;
    if saved.run.info.search != current.info.search {
        output.line(format_args!(
            "note: the baseline was made by {} and this run by {}: the difference includes the index's",
            saved.run.info.search, current.info.search
        ))?;
    }
    Ok(())
}

/// A query id as a terminal should show it: control characters escaped, so an id cannot
/// colour the report or fake a line of it.
fn shown(id: &str) -> String {
    id.chars()
        .flat_map(|c| {
            let escaped: Vec<char> = if c.is_control() {
                c.escape_default().collect()
            } else {
                vec![c]
            };
            escaped
        })
        .collect()
}

fn format_p(p: Option<f64>) -> String {
    match p {
        None => "-".into(),
        Some(p) if p < 0.001 => "<0.001".into(),
        Some(p) => format!("{p:.3}"),
    }
}

fn print_comparison(comparison: &Comparison, output: Output) -> Result<()> {
    let k = comparison.subject.k;
    let settings = &comparison.settings;
    output.line("")?;
    output.line(format_args!(
        "{} {} against {} {}, {} paired queries at k = {k}",
        comparison.subject_name,
        comparison.subject.model_label(),
        comparison.reference_name,
        comparison.reference.model_label(),
        comparison.paired
    ))?;
    output.line(format_args!(
        "Δ = {} − {}; {:.0}% bootstrap interval ({} resamples); p: paired randomization test ({} permutations); seed {}",
        comparison.subject_name,
        comparison.reference_name,
        settings.confidence * 100.0,
        settings.resamples,
        settings.permutations,
        settings.seed
    ))?;
    for (side, ids) in [
        (comparison.reference_name, &comparison.only_in_reference),
        (comparison.subject_name, &comparison.only_in_subject),
    ] {
        if !ids.is_empty() {
            output.line(format_args!(
                "scored in the {side} run only, left out of the comparison: {}",
                ids.iter()
                    .map(|id| shown(id))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))?;
        }
    }
    output.line("")?;
    output.line(format_args!(
        "{:<20} {:>9} {:>9} {:>8} {:>18} {:>7} {:>5} {:>6} {:>5}",
        "",
        comparison.reference_name,
        comparison.subject_name,
        "Δ",
        "interval",
        "p",
        "wins",
        "losses",
        "ties"
    ))?;
    for (metric, figures) in METRICS.iter().zip(&comparison.overall.metrics) {
        let interval = figures
            .test
            .interval
            .map(|(low, high)| format!("[{low:+.3}, {high:+.3}]"))
            .unwrap_or_else(|| "-".into());
        output.line(format_args!(
            "{:<20} {:>9.3} {:>9.3} {:>+8.3} {:>18} {:>7} {:>5} {:>6} {:>5}",
            metric.label(k),
            figures.reference,
            figures.subject,
            figures.test.difference,
            interval,
            format_p(figures.test.p_value),
            figures.test.wins,
            figures.test.losses,
            figures.test.ties
        ))?;
    }
    let groups: Vec<(String, &comparison::Group)> = comparison
        .by_category
        .iter()
        .map(|(name, group)| (format!("category {name}"), group))
        .chain(
            comparison
                .by_difficulty
                .iter()
                .map(|(name, group)| (format!("difficulty {name}"), group)),
        )
        .collect();
    if !groups.is_empty() {
        output.line("")?;
        output.line(format_args!(
            "{:<28} {:>7} {:>22} {:>7} {:>22} {:>7}",
            "",
            "queries",
            format!("recall@{k}"),
            "p",
            format!("nDCG@{k}"),
            "p"
        ))?;
        for (name, group) in groups {
            let cell = |metric: &str| {
                group
                    .metric(metric)
                    .map(|m| {
                        (
                            format!(
                                "{:.3} → {:.3} ({:+.3})",
                                m.reference, m.subject, m.test.difference
                            ),
                            format_p(m.test.p_value),
                        )
                    })
                    .unwrap_or_default()
            };
            let (recall, recall_p) = cell("recall");
            let (ndcg, ndcg_p) = cell("ndcg");
            output.line(format_args!(
                "{name:<28} {:>7} {recall:>22} {recall_p:>7} {ndcg:>22} {ndcg_p:>7}",
                group.queries
            ))?;
        }
    }
    for (what, flips) in [
        ("from hit to miss", &comparison.hit_to_miss),
        ("from miss to hit", &comparison.miss_to_hit),
    ] {
        output.line("")?;
        if flips.is_empty() {
            output.line(format_args!("no query flipped {what}"))?;
            continue;
        }
        output.line(format_args!(
            "{} flipped {what} (an expected chunk in the top {k} for the {}, none for the {}):",
            crate::output::counted(flips.len() as u64, "query", "queries"),
            if what.starts_with("from hit") {
                comparison.reference_name
            } else {
                comparison.subject_name
            },
            if what.starts_with("from hit") {
                comparison.subject_name
            } else {
                comparison.reference_name
            },
        ))?;
        for flip in flips.iter().take(FLIPS_SHOWN) {
            output.line(format_args!(
                "  {} ({}, {}): {:?}",
                shown(&flip.id),
                flip.category.as_deref().unwrap_or("-"),
                flip.difficulty.as_deref().unwrap_or("-"),
                flip.query
            ))?;
        }
        if flips.len() > FLIPS_SHOWN {
            output.line(format_args!(
                "  … and {} more (--json lists every one)",
                flips.len() - FLIPS_SHOWN
            ))?;
        }
    }
    Ok(())
}
