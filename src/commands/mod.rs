//! One module per subcommand, each with its arguments beside its code.

pub mod backup;
pub mod cache;
pub mod convert;
pub mod diff;
pub mod dump;
pub mod evaluate;
pub mod export;
pub mod generate;
pub mod git_setup;
pub mod load;
pub mod merge;
pub mod migrate;
pub mod regenerate;
pub mod restore;
pub mod show;
pub mod verify;

use color_eyre::Result;

use crate::cli::{Command, GlobalArgs};
use crate::error::Exit;
use crate::output::Output;

/// Runs one subcommand and returns the exit code it ended with.
pub fn run(command: Command, global: &GlobalArgs, output: Output) -> Result<Exit> {
    match command {
        Command::Migrate(args) => migrate::run(args, global, output),
        Command::Backup(args) => backup::run(args, global, output),
        Command::Verify(args) => verify::run(args, global, output),
        Command::Restore(args) => restore::run(args, global, output),
        Command::RegenerateEmbeddings(args) => regenerate::run(args, global, output),
        Command::Cache(args) => cache::run(args, global, output),
        Command::Dump(args) => dump::run(args, global, output),
        Command::Convert(args) => convert::run(args, global, output),
        Command::Diff(args) => diff::run(args, global, output),
        Command::Evaluate(args) => evaluate::run(args, global, output),
        Command::Export(args) => export::run(args, global, output),
        Command::Generate(args) => generate::run(args, global, output),
        Command::Load(args) => load::run(args, global, output),
        Command::Show(args) => show::run(args, global, output),
        Command::Merge(args) => merge::run(args, global, output),
        Command::GitSetup(args) => git_setup::run(args, global, output),
    }
}
