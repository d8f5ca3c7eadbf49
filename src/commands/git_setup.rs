//! `golden git-setup`: registers `golden show` and `golden merge` with the repository the
//! working folder is in (the work is `crate::git::setup`'s) and says what it changed.

use std::path::PathBuf;

use color_eyre::Result;

use crate::backup_file::DEFAULT_BACKUP_PATH;
use crate::cli::GlobalArgs;
use crate::error::{invalid_input, Exit};
use crate::git::setup;
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A backup file to register, relative to the working folder (repeat for several)
    /// [default: data/golden_dataset_backup.json]
    #[arg(long = "file", value_name = "PATH")]
    pub files: Vec<PathBuf>,

    /// Have the drivers run NAME (say `golden`, found on each user's PATH), written as given,
    /// instead of this executable's absolute path
    #[arg(long, value_name = "NAME")]
    pub command: Option<String>,
}

pub fn run(args: Args, _global: &GlobalArgs, output: Output) -> Result<Exit> {
    let command = match args.command {
        Some(name) if name.trim().is_empty() || name.contains(['\n', '\r']) => {
            return Err(invalid_input(
                "--command must be a command line on one line, such as `golden`",
            ))
        }
        Some(name) => name,
        None => setup::current_exe_command()?,
    };
    let files = if args.files.is_empty() {
        vec![PathBuf::from(DEFAULT_BACKUP_PATH)]
    } else {
        args.files
    };
    let folder = std::env::current_dir()
        .map_err(|e| invalid_input(format!("the working folder cannot be read: {e}")))?;
    let report = setup::set_up(&folder, &files, &command)?;
    for file in &files {
        if !folder.join(file).exists() {
            log::warn!(
                "{} does not exist (yet): git applies the drivers once it does",
                file.display()
            );
        }
    }
    for entry in report.config.iter().filter(|entry| entry.changed) {
        let was = match entry.was.as_slice() {
            [] => String::new(),
            [one] => format!(" (was {one})"),
            many => format!(" (replacing {} values)", many.len()),
        };
        output.line(format_args!(
            "repository config: {} = {}{was}",
            entry.key, entry.value
        ))?;
    }
    for line in report.attributes.iter().filter(|line| line.changed()) {
        match &line.was {
            None => output.line(format_args!(".gitattributes: added {}", line.line))?,
            Some(was) => output.line(format_args!(".gitattributes: {} (was {was})", line.line))?,
        }
    }
    let repository = report.repository.display();
    if report.changed {
        output.line(format_args!(
            "set up {repository}: git diff and git merge of {} now run {command}; commit \
             .gitattributes to share it (each clone runs golden git-setup once: git takes no \
             command from a committed file)",
            paths_of(&report)
        ))?;
    } else {
        output.line(format_args!(
            "already set up: {repository} runs {command} for {}; nothing changed",
            paths_of(&report)
        ))?;
    }
    output.summary(&report)?;
    Ok(Exit::Success)
}

fn paths_of(report: &setup::Report) -> String {
    report
        .attributes
        .iter()
        .map(|line| line.path.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
