//! The saved run (`evaluate --save-run`): every golden query's ranked results with their
//! provenance, meant to be committed beside the backup and read back as a `--baseline`.
//!
//! Deterministic and diff-friendly: no timestamp, queries in byte order of their ids, one
//! retrieved chunk per line, distances and scores rounded to 6 decimals (what a ranking needs,
//! and no float noise between machines). The same dataset, model and revision give the same
//! bytes. A baseline is re-scored against the judgments of today, so relabelled queries are
//! compared fairly; the figures saved beside the results are for people reading the file.

use std::fmt::Write as _;
use std::io::Read;
use std::path::Path;

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{Evaluation, Ranked, Run, RunInfo};
use crate::atomic;
use crate::error::invalid_input;
use crate::paths::{self, OutputPath};

/// The format of the file; a reader refuses a newer one.
pub const FORMAT: u32 = 1;
/// The largest k `evaluate` takes (`--k`), and so the largest a run file may hold.
pub const MAX_K: usize = 1_000;

/// Where a run came from, beside what made it ([`RunInfo`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Provenance {
    /// `metadata.checksum` a backup of the database would carry: which committed backup the
    /// run was made against.
    pub dataset_checksum: Option<String>,
    /// `HEAD` of the git repository golden ran in, if any.
    pub git_revision: Option<String>,
    pub golden_version: String,
}

/// A run read back from a file.
#[derive(Debug, Clone)]
pub struct SavedRun {
    pub run: Run,
    pub provenance: Provenance,
}

/// Rounded to 6 decimals, so the file does not change with the last bits of a float.
fn rounded(value: f64) -> f64 {
    // `+ 0.0` turns a negative zero into zero, which JSON would otherwise print as -0.0.
    (value * 1e6).round() / 1e6 + 0.0
}

fn rounded_scores(scores: &Option<super::metrics::Scores>) -> serde_json::Value {
    match scores {
        None => serde_json::Value::Null,
        Some(s) => json!({
            "recall": rounded(s.recall),
            "precision": rounded(s.precision),
            "reciprocal_rank": rounded(s.reciprocal_rank),
            "ndcg": rounded(s.ndcg),
            "hit": rounded(s.hit),
        }),
    }
}

fn rounded_summary(s: &super::metrics::Summary) -> serde_json::Value {
    json!({
        "queries": s.queries,
        "recall": rounded(s.recall),
        "precision": rounded(s.precision),
        "mrr": rounded(s.mrr),
        "ndcg": rounded(s.ndcg),
        "hit_rate": rounded(s.hit_rate),
    })
}

/// The text of the file for `evaluation` (whose results are the run's, in order).
pub fn render(evaluation: &Evaluation, provenance: &Provenance) -> Result<String> {
    let compact = |value: &serde_json::Value| serde_json::to_string(value);
    let info = &evaluation.info;
    let mut out = String::new();
    out.push_str("{\n");
    let header = [
        ("golden_run", json!(FORMAT)),
        ("golden_version", json!(provenance.golden_version)),
        ("dataset_checksum", json!(provenance.dataset_checksum)),
        ("git_revision", json!(provenance.git_revision)),
        ("provider", json!(info.provider)),
        ("model", json!(info.model)),
        ("dims", json!(info.dims)),
        ("k", json!(info.k)),
        ("search", serde_json::to_value(info.search)?),
        ("overall", rounded_summary(&evaluation.chunk_level.overall)),
        (
            "document_level",
            rounded_summary(&evaluation.document_level.overall),
        ),
    ];
    for (key, value) in &header {
        writeln!(out, "  {}: {},", compact(&json!(key))?, compact(value)?)?;
    }
    out.push_str("  \"queries\": [");
    for (i, result) in evaluation.results.iter().enumerate() {
        out.push_str(if i == 0 { "\n" } else { ",\n" });
        out.push_str("    {\n");
        let fields = [
            ("id", json!(result.id)),
            ("query", json!(result.query)),
            ("category", json!(result.category)),
            ("difficulty", json!(result.difficulty)),
            ("expected_chunks", json!(result.expected)),
            ("expected_analyses", json!(result.expected_analyses)),
            ("scores", rounded_scores(&result.scores)),
            ("document_scores", rounded_scores(&result.document_scores)),
        ];
        for (key, value) in &fields {
            writeln!(out, "      {}: {},", compact(&json!(key))?, compact(value)?)?;
        }
        out.push_str("      \"results\": [");
        for (rank, got) in result.retrieved.iter().enumerate() {
            out.push_str(if rank == 0 { "\n" } else { ",\n" });
            let line = json!({
                "chunk": got.id,
                "analysis": got.analysis_id,
                "distance": got.distance.map(rounded),
            });
            write!(out, "        {}", compact(&line)?)?;
        }
        out.push_str(if result.retrieved.is_empty() {
            "]\n"
        } else {
            "\n      ]\n"
        });
        out.push_str("    }");
    }
    out.push_str(if evaluation.results.is_empty() {
        "]\n}\n"
    } else {
        "\n  ]\n}\n"
    });
    Ok(out)
}

/// Writes the run file atomically (a temp file beside it, then a rename).
pub fn save(path: &OutputPath, evaluation: &Evaluation, provenance: &Provenance) -> Result<()> {
    let text = render(evaluation, provenance)?;
    let temp = atomic::write_temp_beside(&path.target, text.as_bytes())
        .wrap_err_with(|| format!("writing the run file {}", path.shown.display()))?;
    atomic::persist(temp, &path.target)
        .wrap_err_with(|| format!("putting the run file {} in place", path.shown.display()))
}

#[derive(Deserialize)]
struct FileQuery {
    id: String,
    results: Vec<Ranked>,
}

#[derive(Deserialize)]
struct File {
    #[serde(flatten)]
    provenance: Provenance,
    provider: String,
    model: String,
    dims: usize,
    k: usize,
    search: super::Search,
    queries: Vec<FileQuery>,
}

/// Reads a run file written by [`save`] (exit 2 when it is not one).
pub fn read(path: &Path) -> Result<SavedRun> {
    let shown = path.display();
    let mut text = String::new();
    paths::open_regular(path, "run file")?
        .read_to_string(&mut text)
        .map_err(|e| invalid_input(format!("cannot read the run file {shown}: {e}")))?;
    let not_a_run = |e: serde_json::Error| {
        invalid_input(format!(
            "{shown} is not a run file written by `golden evaluate --save-run`: {e}"
        ))
    };
    // The format first: a newer file may have changed fields, and should say so.
    #[derive(Deserialize)]
    struct Format {
        golden_run: u32,
    }
    let format: Format = serde_json::from_str(&text).map_err(not_a_run)?;
    if format.golden_run == 0 || format.golden_run > FORMAT {
        return Err(invalid_input(format!(
            "{shown} is a run file of format {} and this golden reads format {FORMAT}{}",
            format.golden_run,
            if format.golden_run > FORMAT {
                ": upgrade golden"
            } else {
                ""
            }
        )));
    }
    let file: File = serde_json::from_str(&text).map_err(not_a_run)?;
    if !(1..=MAX_K).contains(&file.k) {
        return Err(invalid_input(format!(
            "{shown}: the run's k is {}, outside 1..={MAX_K}",
            file.k
        )));
    }
    let mut rankings = std::collections::BTreeMap::new();
    for query in file.queries {
        if query.results.len() > file.k {
            return Err(invalid_input(format!(
                "{shown}: query {:?} has {} results but the run's k is {}",
                query.id,
                query.results.len(),
                file.k
            )));
        }
        let mut seen = std::collections::HashSet::new();
        if let Some(twice) = query.results.iter().find(|r| !seen.insert(r.chunk)) {
            return Err(invalid_input(format!(
                "{shown}: query {:?} lists chunk {} twice in its results",
                query.id, twice.chunk
            )));
        }
        let id = query.id.clone();
        if rankings.insert(query.id, query.results).is_some() {
            return Err(invalid_input(format!(
                "{shown}: query {id:?} is in the run twice"
            )));
        }
    }
    Ok(SavedRun {
        run: Run {
            info: RunInfo {
                provider: file.provider,
                model: file.model,
                dims: file.dims,
                k: file.k,
                search: file.search,
            },
            rankings,
            unsearchable: 0,
        },
        provenance: file.provenance,
    })
}
