//! `golden export`: the golden queries as TREC qrels and the dataset as a BEIR folder, so
//! trec_eval, ranx, ir_measures or a BEIR/MTEB harness can check golden's figures or run
//! their own retrieval on the same judgments. The run itself comes from
//! `golden evaluate --trec-run`.

use std::path::PathBuf;

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use serde::Serialize;

use crate::atomic;
use crate::cli::GlobalArgs;
use crate::db;
use crate::error::{invalid_input, Exit};
use crate::evaluate::beir::{self, Exported};
use crate::evaluate::judgments::Judgments;
use crate::evaluate::trec::{self, Level};
use crate::interrupt;
use crate::output::Output;
use crate::paths;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    golden export --qrels eval/golden.qrels\n  \
    golden evaluate --embed-provider hash --trec-run eval/hash.run\n  \
    trec_eval -m recall.5 -m ndcg_cut.5 eval/golden.qrels eval/hash.run\n  \
    golden export --beir eval/beir    # corpus.jsonl, queries.jsonl, qrels/test.tsv")]
pub struct Args {
    /// Write the expected chunks of the scored queries as TREC qrels (query 0 item 1)
    #[arg(long, value_name = "FILE")]
    pub qrels: Option<PathBuf>,

    /// The items of the qrels: chunks, or their analyses (document level)
    #[arg(long, value_enum, default_value_t = Level::Chunk)]
    pub trec_level: Level,

    /// Write the dataset as a BEIR folder: corpus.jsonl (chunks), queries.jsonl, qrels/test.tsv
    #[arg(long, value_name = "DIR")]
    pub beir: Option<PathBuf>,
}

#[derive(Serialize)]
struct Summary {
    #[serde(skip_serializing_if = "Option::is_none")]
    qrels: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    beir: Option<Exported>,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    interrupt::install();
    if args.qrels.is_none() && args.beir.is_none() {
        return Err(invalid_input(
            "nothing to export: give --qrels FILE, --beir DIR, or both",
        ));
    }
    // Every path checked before anything is written, the qrels apart from the BEIR files.
    let qrels_path = args
        .qrels
        .as_deref()
        .map(|path| paths::output(path, "qrels file", &[]))
        .transpose()?;
    let folder = args.beir.as_deref().map(beir::Folder::check).transpose()?;
    if let (Some(qrels), Some(folder)) = (&qrels_path, &folder) {
        for (file, what) in folder.files() {
            paths::distinct(qrels, "qrels file", file, what)?;
        }
    }
    let mut conn = db::connect(global)?;
    let judgments = Judgments::read(&mut conn)?;
    let qrels_text = qrels_path
        .as_ref()
        .map(|_| trec::qrels(&judgments, args.trec_level))
        .transpose()?;
    if folder.is_some() {
        // Refused ids stop the export before the first file is written.
        beir::qrels(&judgments)?;
    }
    let mut summary = Summary {
        qrels: None,
        beir: None,
    };
    if let (Some(path), Some(text)) = (&qrels_path, &qrels_text) {
        let lines = text.lines().count() as u64;
        let temp = atomic::write_temp_beside(&path.target, text.as_bytes())
            .wrap_err_with(|| format!("writing the qrels file {}", path.shown.display()))?;
        interrupt::check()?;
        atomic::persist(temp, &path.target).wrap_err_with(|| {
            format!("putting the qrels file {} in place", path.shown.display())
        })?;
        output.line(format_args!(
            "wrote {} judgments of {} scored queries to {}",
            lines,
            judgments.scored().count(),
            path.shown.display()
        ))?;
        summary.qrels = Some(lines);
    }
    if let (Some(folder), Some(shown)) = (&folder, &args.beir) {
        let exported = beir::export(&mut conn, &judgments, folder)?;
        output.line(format_args!(
            "wrote a BEIR folder to {}: {} chunks, {} queries, {} judgments",
            shown.display(),
            exported.corpus,
            exported.queries,
            exported.qrels
        ))?;
        summary.beir = Some(exported);
    }
    let left_out = judgments.queries.len() - judgments.scored().count();
    if left_out > 0 {
        eprintln!(
            "note: {left_out} queries without a complete expected answer have no judgments (evaluate does not score them either)"
        );
    }
    output.summary(&summary)?;
    Ok(Exit::Success)
}
