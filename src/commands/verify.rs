//! `golden verify`: checks a backup file (no database needed) and, with `--against-db`,
//! compares it with the database. Reports every problem with where it is. Exit 0 when clean,
//! 3 when problems were found, 2 when the file is unreadable or not a backup.

use color_eyre::Result;
use serde::Serialize;

use crate::backup::ALL_STATUSES;
use crate::backup_file::reader::ReadError;
use crate::backup_file::source::BackupSource;
use crate::cli::GlobalArgs;
use crate::compare;
use crate::db;
use crate::error::Exit;
use crate::output::Output;
use crate::validate::{self, Counts, Problem};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: crate::cli::InputFile,

    /// Also compare the file with the database: missing or differing rows, missing or
    /// wrong-sized embeddings
    #[arg(long)]
    pub against_db: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    ok: bool,
    problems: &'a [Problem],
    warnings: &'a [Problem],
    file: &'a std::path::Path,
    dialect: &'a str,
    #[serde(flatten)]
    counts: Counts,
    orphan_artifacts: usize,
    against_db: bool,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    let path = args.input.path();
    let source = BackupSource::open(&path).map_err(ReadError::into_report)?;
    output.line(format_args!("read as {}", source.dialect_label()))?;
    let validation = validate::validate_source(&source).map_err(|e| e.into_report())?;
    let mut problems = validation.problems.clone();
    if args.against_db {
        let status_filter = validation
            .header
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.get("status_filter"))
            .and_then(|status| status.as_str())
            .unwrap_or("completed");
        let status = (status_filter != ALL_STATUSES).then_some(status_filter);
        let mut conn = db::connect(global)?;
        problems.extend(compare::compare_with_database(
            &mut conn,
            &source,
            &validation,
            status,
        )?);
    }

    print_capped(output, "warning", &validation.warnings)?;
    print_capped(output, "problem", &problems)?;
    let counts = validation.counts;
    let checked = if args.against_db {
        "and the database agree"
    } else {
        "is a valid backup"
    };
    if problems.is_empty() {
        output.line(format_args!(
            "ok: {} {checked} ({} analyses, {} chunks, {} artifacts{})",
            path.display(),
            counts.analyses,
            counts.chunks,
            counts.artifacts,
            if counts.queries > 0 {
                format!(", {} queries", counts.queries)
            } else {
                String::new()
            }
        ))?;
    } else {
        output.line(format_args!(
            "{} problem{} found in {}",
            problems.len(),
            if problems.len() == 1 { "" } else { "s" },
            path.display()
        ))?;
    }
    output.summary(&Summary {
        ok: problems.is_empty(),
        problems: &problems,
        warnings: &validation.warnings,
        file: &path,
        dialect: &source.dialect_label(),
        counts,
        orphan_artifacts: validation.orphan_artifacts,
        against_db: args.against_db,
    })?;
    Ok(if problems.is_empty() {
        Exit::Success
    } else {
        Exit::ProblemsFound
    })
}

/// The most problems (and warnings) printed one a line: a database of 150 000 chunks without
/// embeddings is better told in a count; `--json` lists every one.
const MOST_LINES: usize = 200;

fn print_capped(output: Output, kind: &str, problems: &[Problem]) -> Result<()> {
    for problem in problems.iter().take(MOST_LINES) {
        output.line(format_args!("{kind}: {problem}"))?;
    }
    if problems.len() > MOST_LINES {
        output.line(format_args!(
            "… and {} more {kind}s (--json lists every one)",
            problems.len() - MOST_LINES
        ))?;
    }
    Ok(())
}
