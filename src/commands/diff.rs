//! `golden diff OLD NEW` and `golden diff --git REV [FILE]`: what changed between two backup
//! files, by id (the comparison itself is `crate::diff`'s). Either side may be a file of any
//! dialect golden reads or a git revision's file (`REV:PATH`). The exit code follows diff(1):
//! 0 the same, 1 different, 2 trouble (an unreadable file, a revision git cannot read).

use std::path::PathBuf;

use color_eyre::Result;

use crate::backup_file::DEFAULT_BACKUP_PATH;
use crate::cli::GlobalArgs;
use crate::diff::{self, Input, InputFile};
use crate::error::{self, invalid_input, Exit};
use crate::git::revision;
use crate::output::Output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  \
    golden diff old.json data/golden_dataset_backup.json\n  \
    golden diff HEAD~1:data/golden_dataset_backup.json data/golden_dataset_backup.json\n  \
    golden diff --git main          # the default file at main against the working tree\n\n\
    Exit status: 0 the same, 1 different, 2 an error (as diff(1)).")]
pub struct Args {
    /// The old file, or a file at a git revision as REV:PATH (PATH from the repository's top,
    /// or ./PATH from the working folder, as git reads it)
    #[arg(value_name = "OLD")]
    pub old: Option<String>,

    /// The new file, or REV:PATH
    #[arg(value_name = "NEW")]
    pub new: Option<String>,

    /// Compare the file at revision REV with the working tree's: the file is the one
    /// positional argument [default: data/golden_dataset_backup.json]
    #[arg(long, value_name = "REV")]
    pub git: Option<String>,
}

pub fn run(args: Args, _global: &GlobalArgs, output: Output) -> Result<Exit> {
    // diff(1)'s convention: any trouble is 2, whatever failed.
    match compare(args, output) {
        Ok(exit) => Ok(exit),
        Err(report) if error::is_broken_pipe(&report) => Ok(Exit::Success),
        Err(report) => {
            error::report(&report);
            Ok(Exit::InvalidInput)
        }
    }
}

fn compare(args: Args, output: Output) -> Result<Exit> {
    let (old, new) =
        match (&args.git, &args.old, &args.new) {
            (Some(_), _, Some(_)) => return Err(invalid_input(
                "with --git REV, give at most one FILE (the file compared with its version at REV)",
            )),
            (Some(rev), file, None) => {
                let file = PathBuf::from(file.as_deref().unwrap_or(DEFAULT_BACKUP_PATH));
                let spec = revision::spec_of(rev, &file)?;
                let old = from_revision(&spec)?;
                let new = Input {
                    shown: file.display().to_string(),
                    file: InputFile::Path(file),
                };
                (old, new)
            }
            (None, Some(old), Some(new)) => (input_of(old)?, input_of(new)?),
            (None, _, _) => {
                return Err(invalid_input(
                    "give two files to compare (OLD NEW), or --git REV; see golden diff --help",
                ))
            }
        };
    let report = diff::diff(&old, &new, output.json)?;
    // diff(1)'s 1: the files differ (not a failure; CONTRACT.md).
    let exit = if report.same {
        Exit::Success
    } else {
        Exit::Failed
    };
    match print(&report, &output) {
        // A reader that stopped early (`golden diff a b | head`) still gets the answer the
        // comparison found: two files that differ are never reported the same.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(exit),
        Err(e) => Err(e.into()),
        Ok(()) => Ok(exit),
    }
}

fn print(report: &diff::report::Report, output: &Output) -> std::io::Result<()> {
    for line in report.lines() {
        output.line(line)?;
    }
    output.line(report.summary_line())?;
    output.summary(report)
}

/// A side given on the command line: a file, or `REV:PATH` read from git.
fn input_of(arg: &str) -> Result<Input> {
    if revision::is_revision_spec(arg) {
        from_revision(arg)
    } else {
        Ok(Input {
            file: InputFile::Path(PathBuf::from(arg)),
            shown: arg.to_string(),
        })
    }
}

fn from_revision(spec: &str) -> Result<Input> {
    Ok(Input {
        file: InputFile::Open(revision::read_blob(spec)?),
        shown: spec.to_string(),
    })
}
