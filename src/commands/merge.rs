//! `golden merge BASE OURS THEIRS`: the git merge driver of backup files (the merge itself is
//! `crate::merge`'s), and `golden merge --finish FILE`, which ends a conflicted merge once the
//! conflict blocks are resolved. Exit 0: merged cleanly; 1: conflicts, written into the
//! result between markers; 2: an input that is not a backup (OURS left untouched).

use std::path::{Path, PathBuf};

use color_eyre::Result;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::error::Exit;
use crate::merge;
use crate::output::Output;
use crate::validate::Counts;
use crate::{interrupt, paths};

/// The most conflicts described on stderr one by one.
const MOST_CONFLICTS_SHOWN: usize = 200;

#[derive(Debug, clap::Args)]
#[command(after_help = "As a git merge driver:\n  \
    .gitattributes:  data/golden_dataset_backup.json merge=golden\n  \
    git config merge.golden.driver \"golden merge %O %A %B --name %P\"\n\
    On a conflict: resolve the blocks in an editor, then `golden merge --finish FILE` and `git add FILE`.")]
pub struct Args {
    /// The common ancestor (git's %O); an empty file stands for none (a file added on both sides)
    #[arg(value_name = "BASE", required_unless_present = "finish")]
    pub base: Option<PathBuf>,

    /// This side (git's %A); the result is written over it unless --output is given
    #[arg(value_name = "OURS", required_unless_present = "finish")]
    pub ours: Option<PathBuf>,

    /// The other side (git's %B)
    #[arg(value_name = "THEIRS", required_unless_present = "finish")]
    pub theirs: Option<PathBuf>,

    /// After the conflict blocks of FILE were resolved: check FILE and rewrite it with a fresh
    /// header (totals, checksum), in place
    #[arg(long, value_name = "FILE", conflicts_with_all = ["base", "ours", "theirs", "output", "name"])]
    pub finish: Option<PathBuf>,

    /// Write the result to FILE instead of OURS (OURS is then left as it is)
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,

    /// The merged file's path in the working tree (git's %P), named in the messages
    #[arg(long, value_name = "PATH")]
    pub name: Option<String>,
}

#[derive(Serialize)]
struct MergeSummary<'a> {
    merged: bool,
    conflicts: usize,
    blocks: usize,
    file: &'a Path,
    /// Each conflict as stderr describes it, its lines joined.
    conflict_reports: Vec<String>,
    #[serde(flatten)]
    counts: Counts,
}

#[derive(Serialize)]
struct FinishSummary<'a> {
    file: &'a Path,
    changed: bool,
    #[serde(flatten)]
    counts: Counts,
}

pub fn run(args: Args, _global: &GlobalArgs, output: Output) -> Result<Exit> {
    interrupt::install();
    if let Some(file) = &args.finish {
        return finish(file, output);
    }
    let (Some(base), Some(ours), Some(theirs)) = (&args.base, &args.ours, &args.theirs) else {
        return Err(crate::error::invalid_input(
            "golden merge needs BASE OURS THEIRS (git's %O %A %B), or --finish FILE",
        ));
    };
    let dest = args.output.clone().unwrap_or_else(|| ours.clone());
    let mut inputs: Vec<&Path> = vec![base.as_path(), theirs.as_path()];
    if args.output.is_some() {
        inputs.push(ours.as_path());
    }
    let dest_path = paths::output(&dest, "merge result", &inputs)?;
    interrupt::set_outcome(format!(
        "nothing was merged: {} was left as it was",
        dest.display()
    ));
    let report = merge::merge_files(base, ours, theirs, &dest_path.target, ("ours", "theirs"))?;
    // What the user edits: git's %P when given; OURS is then a temp file of git's, which git
    // copies into the work tree and removes, so it is not named.
    let named = match &args.name {
        Some(name) => Some(name.clone()),
        None if args.output.is_none() && is_git_temp_file(ours) => None,
        None => Some(dest.display().to_string()),
    };
    let file = named.clone().unwrap_or_else(|| "FILE".to_string());
    let counts = report.counts;
    if report.conflicts.is_empty() {
        output.line(format_args!(
            "merged cleanly{} ({} analyses, {} chunks, {} artifacts, {} queries)",
            named
                .as_ref()
                .map_or(String::new(), |file| format!(": {file}")),
            counts.analyses,
            counts.chunks,
            counts.artifacts,
            counts.queries
        ))?;
    } else {
        // A merge of two rewrites can conflict on every chunk: the first ones tell what
        // happened, `--json` lists every one.
        for conflict in report.described.iter().take(MOST_CONFLICTS_SHOWN) {
            for line in conflict {
                eprintln!("{}", crate::secrets::redact(line));
            }
        }
        if report.described.len() > MOST_CONFLICTS_SHOWN {
            eprintln!(
                "… and {} more conflicts (`--json` lists every one in `conflict_reports`)",
                report.described.len() - MOST_CONFLICTS_SHOWN
            );
        }
        let n = report.conflicts.len();
        // The commands to copy, with the path as one shell word (a path with a space).
        let word = match &named {
            Some(name) => crate::git::setup::shell_word(name).into_owned(),
            None => file.clone(),
        };
        eprintln!(
            "{n} conflict{}: {file} holds both sides of each between `<<<<<<< ours` and \
             `>>>>>>> theirs` ({} block{}), and `golden verify` refuses it until it is resolved:\n  \
             in each block keep the ours lines or the theirs lines (or edit them), delete the marker \
             lines, then\n    golden merge --finish {word}\n    git add {word}{}",
            if n == 1 { "" } else { "s" },
            report.blocks,
            if report.blocks == 1 { "" } else { "s" },
            if named.is_none() {
                "\n  (FILE: the path git names in its CONFLICT line; `golden merge %O %A %B --name %P` \
                 as the driver names it here)"
            } else {
                ""
            },
        );
    }
    output.summary(&MergeSummary {
        merged: report.conflicts.is_empty(),
        conflicts: report.conflicts.len(),
        blocks: report.blocks,
        file: &dest,
        conflict_reports: report
            .described
            .iter()
            .map(|lines| crate::secrets::redact(&lines.join("\n")).into_owned())
            .collect(),
        counts,
    })?;
    Ok(if report.conflicts.is_empty() {
        Exit::Success
    } else {
        Exit::Failed
    })
}

fn finish(file: &Path, output: Output) -> Result<Exit> {
    interrupt::set_outcome(format!("{} was left as it was", file.display()));
    let mut problems = Vec::new();
    let finished = merge::finish(file, &mut problems);
    for problem in &problems {
        output.line(format_args!("problem: {problem}"))?;
    }
    let report = finished?;
    let counts = report.counts;
    output.line(format_args!(
        "merge finished: {} ({} analyses, {} chunks, {} artifacts, {} queries) is a valid backup; \
         now `git add {}`",
        file.display(),
        counts.analyses,
        counts.chunks,
        counts.artifacts,
        counts.queries,
        crate::git::setup::shell_word(&file.display().to_string())
    ))?;
    output.summary(&FinishSummary {
        file,
        changed: report.changed,
        counts,
    })?;
    Ok(Exit::Success)
}

/// Git hands a merge driver OURS as `.merge_file_XXXXXX` in the work tree.
fn is_git_temp_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name.to_string_lossy().starts_with(".merge_file_"))
}
