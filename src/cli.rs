//! The command line: global options, the subcommands, and the one place that turns a
//! command's result into an exit code. Each subcommand's own arguments live beside its code
//! in `commands/`.

use std::io::Write;
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands::{
    self, backup, cache, dump, evaluate, generate, load, migrate, regenerate, restore, verify,
};
use crate::error::{self, Exit};
use crate::output::Output;

#[derive(Debug, Parser)]
#[command(
    name = "golden",
    version,
    about = "Back up a PostgreSQL + pgvector golden dataset to a JSON file in git, verify it, restore it anywhere",
    long_about = None,
    propagate_version = true,
    after_help = "Options also come from the environment and from a .env file in the working folder.\n\
                  Exit codes: 0 success, 1 failed, 2 usage error or invalid input file, 3 problems found, 130 interrupted."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,

    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, clap::Args)]
pub struct GlobalArgs {
    /// PostgreSQL connection URL [default: the local database of `make db`,
    /// postgres://postgres@127.0.0.1:54329/golden]
    #[arg(long, env = "DATABASE_URL", global = true, hide_env_values = true)]
    pub database_url: Option<String>,

    /// Print one JSON object summarising the result on stdout; everything else goes to stderr
    #[arg(long, global = true)]
    pub json: bool,

    /// Log less (repeat for even less)
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,

    /// Log more (repeat for even more); RUST_LOG overrides both
    #[arg(short, long, action = ArgAction::Count, global = true)]
    pub verbose: u8,
}

/// The backup file a command reads: `--input F`, or the same as a positional FILE.
#[derive(Debug, clap::Args)]
pub struct InputFile {
    /// The backup file to read
    #[arg(long, short, value_name = "FILE", conflicts_with = "file")]
    pub input: Option<std::path::PathBuf>,

    /// The backup file to read (the same as --input) [default: data/golden_dataset_backup.json]
    #[arg(value_name = "FILE")]
    pub file: Option<std::path::PathBuf>,
}

impl InputFile {
    pub fn path(&self) -> std::path::PathBuf {
        self.input
            .clone()
            .or_else(|| self.file.clone())
            .unwrap_or_else(|| crate::backup_file::DEFAULT_BACKUP_PATH.into())
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending migrations (creates the tables on a new database)
    Migrate(migrate::Args),
    /// Write the dataset to a JSON backup file, without embedding vectors
    Backup(backup::Args),
    /// Load a backup file into the database, computing the embeddings
    Restore(restore::Args),
    /// Re-embed the chunks in the database (a new model, a new dimension, or missing vectors)
    RegenerateEmbeddings(regenerate::Args),
    /// Measure retrieval against the golden queries (Recall@k, MRR, nDCG, …)
    Evaluate(evaluate::Args),
    /// Inspect or trim the embedding cache
    Cache(cache::Args),
    /// Write an SQL snapshot of the data with its embeddings (pg_dump)
    Dump(dump::Args),
    /// Load an SQL snapshot of `golden dump` (psql, one transaction)
    Load(load::Args),
    /// Fill the database with a generated dataset shaped like the seed's (benchmarks)
    #[command(hide = true)]
    Generate(generate::Args),
    /// Check a backup file, and optionally compare it with the database
    Verify(verify::Args),
}

/// Runs the tool and returns the process exit code.
pub fn main() -> ExitCode {
    // Errors are reported as one message with its causes, never with a backtrace, so do not
    // pay for capturing one on every error when RUST_BACKTRACE is set (panics still show theirs).
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
    // The panic hook of color-eyre: a bug is reported readably, not as a raw panic dump.
    let _ = color_eyre::install();
    let dotenv_problem = load_dotenv();
    // Parsed in two steps (what `Cli::parse` does) to read --embed-url from whichever
    // subcommand has it, without knowing each command's arguments.
    let mut matches = Cli::command().get_matches();
    let embed_url = embed_url_of(&matches);
    let cli = match Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    // Before anything is logged or can fail: from now on no secret of this run, whether it
    // came from a flag, the environment or .env, is printed.
    crate::secrets::register_run_secrets(
        &crate::db::database_url(&cli.global),
        embed_url.as_deref(),
    );
    init_logging(&cli.global);
    if let Some(problem) = dotenv_problem {
        log::warn!("{problem}");
    }

    let output = Output {
        json: cli.global.json,
        quiet: cli.global.quiet > 0 || cli.global.json,
    };
    match commands::run(cli.command, &cli.global, output) {
        Ok(exit) => exit.into(),
        Err(report) if error::is_broken_pipe(&report) => Exit::Success.into(),
        Err(report) => {
            error::report(&report);
            error::exit_code_of(&report).into()
        }
    }
}

/// The `--embed-url` (or GOLDEN_EMBED_URL) of the subcommand that takes one.
fn embed_url_of(matches: &clap::ArgMatches) -> Option<String> {
    let mut current = matches;
    while let Some((_, sub)) = current.subcommand() {
        if let Ok(Some(url)) = sub.try_get_one::<String>("embed_url") {
            return Some(url.clone());
        }
        current = sub;
    }
    None
}

/// Reads `.env` from the working folder, as diesel_cli does; variables already set win.
fn load_dotenv() -> Option<String> {
    match dotenvy::dotenv() {
        Ok(_) => None,
        Err(e) if e.not_found() => None,
        Err(e) => Some(format!("ignoring .env: {e}")),
    }
}

fn init_logging(global: &GlobalArgs) {
    let default_filter = match (global.quiet, global.verbose) {
        (q, _) if q > 0 => "error",
        (_, 0) => "golden=info,warn",
        (_, 1) => "golden=debug,info",
        _ => "trace",
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or(default_filter))
        .format(|buf, record| {
            let message = record.args().to_string();
            let message = crate::secrets::redact(&message);
            match record.level() {
                log::Level::Info => writeln!(buf, "{message}"),
                log::Level::Warn => writeln!(buf, "warning: {message}"),
                log::Level::Error => writeln!(buf, "error: {message}"),
                level => writeln!(
                    buf,
                    "{}: {}: {message}",
                    level.as_str().to_lowercase(),
                    record.target(),
                ),
            }
        })
        .init();
}
