//! The command line: global options, the subcommands, and the one place that turns a
//! command's result into an exit code. Each subcommand's own arguments live beside its code
//! in `commands/`.

use std::io::Write;
use std::process::ExitCode;

use clap::{ArgAction, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::commands::{
    self, backup, cache, convert, diff, dump, evaluate, export, generate, git_setup, load, merge,
    migrate, regenerate, restore, show, verify,
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
    /// PostgreSQL connection URL or key/value string [default: the local database of `make db`,
    /// postgres://postgres@127.0.0.1:$GOLDEN_PGPORT/$GOLDEN_PGDATABASE, port 54329 and database
    /// golden when unset]
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
    /// Measure retrieval against the golden queries (Recall@k, MRR, nDCG, …); compare a candidate model or a saved baseline
    Evaluate(evaluate::Args),
    /// Write the golden queries as TREC qrels, or the dataset as a BEIR folder (for trec_eval, ranx, BEIR)
    Export(export::Args),
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
    /// Write a backup file of any dialect golden reads in golden's own format, every field kept
    Convert(convert::Args),
    /// What changed between two backup files (or a file and its version at a git revision), by id
    Diff(diff::Args),
    /// Print a backup file as stable text, one block per record (git's textconv for diffs)
    Show(show::Args),
    /// Merge two backups with their common ancestor by id, field by field (a git merge driver)
    Merge(merge::Args),
    /// Register show and merge as this repository's diff and merge drivers of the backup
    GitSetup(git_setup::Args),
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
    let dotenv_problems = load_dotenv();
    // Parsed in two steps (what `Cli::parse` does) to read --embed-url from whichever
    // subcommand has it, without knowing each command's arguments.
    let mut matches = Cli::command().get_matches();
    let embed_urls = embed_urls_of(&matches);
    let cli = match Cli::from_arg_matches_mut(&mut matches) {
        Ok(cli) => cli,
        Err(e) => e.format(&mut Cli::command()).exit(),
    };
    // Before anything is logged or can fail: from now on no secret of this run, whether it
    // came from a flag, the environment or .env, is printed.
    crate::secrets::register_run_secrets(&crate::db::database_url(&cli.global), &embed_urls);
    init_logging(&cli.global);
    // A line of .env that does not parse may have swallowed the lines after it (an unclosed
    // quote runs to the end of the file): running on would use whatever default stands in
    // for them, another database say. Stop, and say which lines.
    if !dotenv_problems.is_empty() {
        for problem in &dotenv_problems {
            eprintln!("error: {}", crate::secrets::redact(problem));
        }
        eprintln!("error: .env does not parse; fix those lines (or remove .env); nothing was done");
        return Exit::InvalidInput.into();
    }

    let output = Output {
        json: cli.global.json,
        quiet: cli.global.quiet > 0 || cli.global.json,
    };
    match commands::run(cli.command, &cli.global, output) {
        Ok(exit) => exit.into(),
        Err(report) if error::is_broken_pipe(&report) => Exit::Success.into(),
        Err(report) if crate::interrupt::stopped_by().is_some() => {
            error::report_interrupted(&report);
            Exit::Interrupted.into()
        }
        Err(report) => {
            error::report(&report);
            error::exit_code_of(&report).into()
        }
    }
}

/// The `--embed-url` (or GOLDEN_EMBED_URL) and `--candidate-url` of the subcommand that
/// takes them: either may carry a password.
fn embed_urls_of(matches: &clap::ArgMatches) -> Vec<String> {
    let mut urls = Vec::new();
    let mut current = matches;
    while let Some((_, sub)) = current.subcommand() {
        for name in ["embed_url", "candidate_url"] {
            if let Ok(Some(url)) = sub.try_get_one::<String>(name) {
                urls.push(url.clone());
            }
        }
        current = sub;
    }
    urls
}

/// Reads `.env` from the working folder (or the nearest parent that has one), as diesel_cli
/// does; variables already set win. A line that does not parse is skipped, the others are
/// loaded, and each problem says which line and which variable, never the line itself: it
/// may hold a key or a password.
fn load_dotenv() -> Vec<String> {
    let Some(path) = find_dotenv() else {
        return Vec::new();
    };
    let shown = path.display();
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) => return vec![format!("{shown} cannot be read: {e}")],
    };
    let content = match String::from_utf8(bytes) {
        Ok(content) => content,
        Err(_) => return vec![format!("{shown} is not UTF-8 text")],
    };
    let content = content.strip_prefix('\u{feff}').unwrap_or(&content);
    let mut problems = Vec::new();
    // Where the next logical line starts, to give each problem its line number.
    let mut cursor = 0;
    for item in dotenvy::from_read_iter(content.as_bytes()) {
        match item {
            Ok((key, value)) => {
                // The iterator hands out values, not lines: follow the key in the text.
                if let Some(found) = find_line_starting_with(content, cursor, &format!("{key}=")) {
                    cursor = content[found..]
                        .find('\n')
                        .map_or(content.len(), |i| found + i + 1);
                }
                if std::env::var_os(&key).is_none() {
                    std::env::set_var(&key, value);
                }
            }
            Err(dotenvy::Error::LineParse(text, _)) => {
                // `text` is the line, or only its value: find the line that holds it.
                let found = content
                    .get(cursor..)
                    .and_then(|rest| rest.find(text.trim()))
                    .map_or(cursor, |i| cursor + i);
                let start = content.as_bytes()[..found.min(content.len())]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |i| i + 1);
                cursor = found + text.trim().len().max(1);
                let number = line_number_at(content, start);
                problems.push(match dotenv_key_of(&content[start..]) {
                    Some(key) => format!(
                        "line {number} of {shown} ({key}) does not parse (an unclosed quote, or a \
                         space in an unquoted value?); an unclosed quote takes the lines after it too"
                    ),
                    None => format!("line {number} of {shown} is not KEY=VALUE"),
                });
            }
            Err(e) => {
                // An I/O error reading from memory, or an environment lookup: no content.
                problems.push(format!("{shown} cannot be read past a point: {e}"));
                break;
            }
        }
    }
    problems
}

/// `.env` in the working folder or its nearest parent, as dotenvy looks for it.
fn find_dotenv() -> Option<std::path::PathBuf> {
    let mut folder = std::env::current_dir().ok()?;
    loop {
        let candidate = folder.join(".env");
        if candidate.is_file() {
            return Some(candidate);
        }
        if !folder.pop() {
            return None;
        }
    }
}

/// The byte offset, at or after `from`, of the first line of `content` whose text (leading
/// blanks and `export ` aside) starts with `prefix`.
fn find_line_starting_with(content: &str, from: usize, prefix: &str) -> Option<usize> {
    let bytes = content.as_bytes();
    let mut start = from.min(bytes.len());
    // Forward to the start of a line (always a character boundary: right after a '\n').
    if start > 0 && bytes[start - 1] != b'\n' {
        start += bytes[start..].iter().position(|&b| b == b'\n')? + 1;
    }
    loop {
        let line = &content[start..];
        let text = line.trim_start_matches([' ', '\t']);
        let text = text.strip_prefix("export ").unwrap_or(text);
        if !prefix.is_empty() && text.starts_with(prefix) {
            return Some(start);
        }
        start += line.find('\n')? + 1;
    }
}

/// The 1-based number of the line that starts at byte `offset`.
fn line_number_at(content: &str, offset: usize) -> usize {
    let offset = offset.min(content.len());
    content.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// The variable a `.env` line sets, if it has the shape `KEY=…`.
fn dotenv_key_of(line: &str) -> Option<&str> {
    let text = line.trim_start();
    let text = text.strip_prefix("export ").unwrap_or(text).trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
        .unwrap_or(text.len());
    let key = &text[..end];
    let rest = text[end..].trim_start();
    (!key.is_empty() && rest.starts_with('=')).then_some(key)
}

/// Crates whose log records are never printed, at any level a user may ask for: ureq-proto
/// hex-dumps every request and answer at trace level in 16-byte rows, so a key's
/// `Authorization` header is split across lines where no substring redaction can find it.
const SUPPRESSED_LOG_TARGETS: [&str; 1] = ["ureq_proto::util"];

/// The default filter for -q / -v: golden's own records at the level asked, every other
/// crate at info at most (their debug output is for their developers, and may carry
/// secrets).
fn default_log_filter(global: &GlobalArgs) -> String {
    match (global.quiet, global.verbose) {
        (q, _) if q > 0 => "error".into(),
        (_, 0) => "golden=info,warn".into(),
        (_, 1) => "golden=debug,info".into(),
        _ => "golden=trace,info".into(),
    }
}

/// RUST_LOG with its bare levels confined: `trace` means golden at trace and other crates at
/// info; crates named (`ureq=debug`) get what is asked.
fn confine_rust_log(spec: &str) -> String {
    let (directives, regex) = match spec.split_once('/') {
        Some((directives, regex)) => (directives, Some(regex)),
        None => (spec, None),
    };
    let names_golden = directives.split(',').any(|directive| {
        let name = directive.split('=').next().unwrap_or_default().trim();
        name == "golden" || name.starts_with("golden::")
    });
    let mut out = Vec::new();
    for directive in directives.split(',').map(str::trim) {
        match directive.parse::<log::LevelFilter>() {
            Ok(level) if !directive.contains('=') => {
                out.push(level.min(log::LevelFilter::Info).to_string().to_lowercase());
                if !names_golden {
                    out.push(format!("golden={}", level.to_string().to_lowercase()));
                }
            }
            _ if directive.is_empty() => {}
            _ => out.push(directive.to_string()),
        }
    }
    let mut confined = out.join(",");
    if let Some(regex) = regex {
        confined.push('/');
        confined.push_str(regex);
    }
    confined
}

/// The logger: env_logger with the filter above, every message passed through the secrets'
/// redaction, and the records of [`SUPPRESSED_LOG_TARGETS`] dropped.
struct SecretSafeLogger {
    inner: env_logger::Logger,
}

impl log::Log for SecretSafeLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        !SUPPRESSED_LOG_TARGETS
            .iter()
            .any(|target| metadata.target().starts_with(target))
            && self.inner.enabled(metadata)
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            self.inner.log(record);
        }
    }

    fn flush(&self) {
        self.inner.flush();
    }
}

fn init_logging(global: &GlobalArgs) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.trim().is_empty() => confine_rust_log(&spec),
        _ => default_log_filter(global),
    };
    let mut builder = env_logger::Builder::new();
    builder.parse_filters(&filter);
    if let Ok(style) = std::env::var("RUST_LOG_STYLE") {
        builder.parse_write_style(&style);
    }
    let logger = builder
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
        .build();
    let max_level = logger.filter();
    if log::set_boxed_logger(Box::new(SecretSafeLogger { inner: logger })).is_ok() {
        log::set_max_level(max_level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_log_levels_stay_within_golden() {
        assert_eq!(confine_rust_log("trace"), "info,golden=trace");
        assert_eq!(confine_rust_log("debug"), "info,golden=debug");
        assert_eq!(confine_rust_log("warn"), "warn,golden=warn");
        assert_eq!(confine_rust_log("TRACE"), "info,golden=trace");
        assert_eq!(
            confine_rust_log("trace,ureq=debug"),
            "info,golden=trace,ureq=debug"
        );
        assert_eq!(confine_rust_log("debug,golden=info"), "info,golden=info");
        assert_eq!(confine_rust_log("ureq"), "ureq");
        assert_eq!(confine_rust_log("trace/retry"), "info,golden=trace/retry");
    }

    #[test]
    fn dotenv_problems_name_the_line_and_the_key() {
        assert_eq!(
            dotenv_key_of("OPENAI_API_KEY=\"sk-x"),
            Some("OPENAI_API_KEY")
        );
        assert_eq!(
            dotenv_key_of("  export DATABASE_URL = x y"),
            Some("DATABASE_URL")
        );
        assert_eq!(dotenv_key_of("sk-secret-on-its-own"), None);
        let content = "A=1\n# A=2\n\nB='x\n";
        assert_eq!(find_line_starting_with(content, 0, "A"), Some(0));
        assert_eq!(find_line_starting_with(content, 1, "B='x"), Some(11));
        assert_eq!(find_line_starting_with(content, 1, "C"), None);
    }
}
