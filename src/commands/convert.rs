//! `golden convert`: writes a backup file of any dialect golden reads (its own, the seed
//! template's, SkillForge's flat 1.0 and 2.0) in golden's own format, every field kept, as
//! `backup` would write the same data (the conversion itself is `crate::convert`'s). A file
//! with problems is refused (exit 2) and nothing is written.

use std::path::{Path, PathBuf};

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use serde::Serialize;

use crate::backup_file::reader::ReadError;
use crate::backup_file::source::BackupSource;
use crate::backup_file::DEFAULT_BACKUP_PATH;
use crate::cli::GlobalArgs;
use crate::error::{invalid_input, Exit};
use crate::output::Output;
use crate::validate::{self, Counts};
use crate::{interrupt, paths};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The file to convert (any dialect golden reads)
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Where to write golden's format [default: data/golden_dataset_backup.json]
    #[arg(long, short, value_name = "FILE", conflicts_with = "in_place")]
    pub output: Option<PathBuf>,

    /// Replace IN with its conversion (atomically, once all of it was read and checked)
    #[arg(long)]
    pub in_place: bool,
}

#[derive(Serialize)]
struct Summary<'a> {
    dialect: &'a str,
    input: &'a Path,
    file: &'a Path,
    changed: bool,
    #[serde(flatten)]
    counts: Counts,
    orphan_artifacts: usize,
    warnings: usize,
}

pub fn run(args: Args, _global: &GlobalArgs, output: Output) -> Result<Exit> {
    interrupt::install();
    interrupt::set_outcome("nothing was written");
    let dest = match (&args.output, args.in_place) {
        (_, true) => args.input.clone(),
        (Some(dest), false) => dest.clone(),
        (None, false) => PathBuf::from(DEFAULT_BACKUP_PATH),
    };
    let inputs: Vec<&Path> = if args.in_place {
        Vec::new()
    } else {
        vec![args.input.as_path()]
    };
    let dest_path = paths::output(&dest, "converted file", &inputs).map_err(|report| {
        if !args.in_place && paths::same_file(&args.input, &dest) {
            invalid_input(format!(
                "{} is the input: give --output another path, or --in-place to convert the file where it is",
                dest.display()
            ))
        } else {
            report
        }
    })?;
    let source = BackupSource::open(&args.input).map_err(ReadError::into_report)?;
    output.line(format_args!("read as {}", source.dialect_label()))?;
    let validation = validate::validate_source(&source).map_err(ReadError::into_report)?;
    for warning in &validation.warnings {
        log::warn!("{warning}");
    }
    if !validation.is_ok() {
        for problem in &validation.problems {
            output.line(format_args!("problem: {problem}"))?;
        }
        return Err(invalid_input(format!(
            "{} has {} problem{}: fix them, then convert it; nothing was written",
            args.input.display(),
            validation.problems.len(),
            if validation.problems.len() == 1 {
                ""
            } else {
                "s"
            }
        )));
    }
    let counts = validation.counts;
    let (orphan_artifacts, warnings) = (validation.orphan_artifacts, validation.warnings.len());
    let prepared = crate::convert::convert(&source, validation, &dest_path.target)?;
    // Written from the bytes checked: a file changed meanwhile is not put in place.
    source.check_unchanged()?;
    interrupt::commit_point()?;
    let written = prepared
        .persist()
        .wrap_err_with(|| format!("putting {} in place; it was not changed", dest.display()));
    interrupt::after_commit(written.is_ok(), true);
    let written = written?;
    output.line(format_args!(
        "converted {} ({} analyses, {} chunks, {} artifacts, {} queries{}) → {}{}",
        args.input.display(),
        counts.analyses,
        counts.chunks,
        counts.artifacts,
        counts.queries,
        match orphan_artifacts {
            0 => String::new(),
            n => format!(", {n} artifacts without their analysis kept as they are"),
        },
        dest.display(),
        if written.changed { "" } else { " (unchanged)" }
    ))?;
    output.summary(&Summary {
        dialect: &source.dialect_label(),
        input: &args.input,
        file: &dest,
        changed: written.changed,
        counts,
        orphan_artifacts,
        warnings,
    })?;
    Ok(Exit::Success)
}
