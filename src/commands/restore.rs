//! `golden restore`: loads a backup file into the database with freshly computed embeddings.
//!
//! The whole file is validated before anything is written. Without `--replace` it adds what
//! is missing and skips ids that exist (idempotent, resumable). With `--replace` it asks on a
//! terminal, writes a safety backup, and swaps the dataset in one transaction.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use color_eyre::eyre::eyre;
use color_eyre::Result;
use serde::Serialize;

use crate::backup_file::extras::FileExtras;
use crate::backup_file::reader::ReadError;
use crate::backup_file::record::BackupQuery;
use crate::backup_file::source::BackupSource;
use crate::cli::GlobalArgs;
use crate::compare::embedding_column_dims;
use crate::db;
use crate::embed::args::build_provider;
use crate::embed::cache::CachedEmbedder;
use crate::embed::{EmbedArgs, EmbeddingClient};
use crate::error::{invalid_input, Exit};
use crate::interrupt;
use crate::output::{counted, Output};
use crate::paths;
use crate::progress::Progress;
use crate::restore::{self, load, plan, Input, Mode};
use crate::validate::{self, Counts, Validation};

/// Where safety backups go unless `--safety-backup` says otherwise (git-ignored).
pub const SAFETY_BACKUP_FOLDER: &str = "data/safety";
/// The window of a dry run without a provider (its requests are not counted then).
const DRY_RUN_WINDOW_WITHOUT_PROVIDER: usize = 512;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub input: crate::cli::InputFile,

    /// Replace the whole dataset (all statuses) with the file's, in one transaction, after a
    /// safety backup of the current data
    #[arg(long)]
    pub replace: bool,

    /// Do not ask before --replace
    #[arg(long, short)]
    pub yes: bool,

    /// Validate and print what would be done; write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Where --replace writes the safety backup; never an existing file [default:
    /// data/safety/before-restore-<time>-<random>.json]
    #[arg(long, value_name = "FILE")]
    pub safety_backup: Option<PathBuf>,

    #[command(flatten)]
    pub embed: EmbedArgs,
}

#[derive(Serialize, Default)]
struct Summary {
    file: PathBuf,
    analyses_inserted: u64,
    analyses_skipped: u64,
    chunks_inserted: u64,
    chunks_skipped: u64,
    /// Of the chunks skipped, those whose (analysis_id, chunk_index) another chunk holds.
    chunks_skipped_place_taken: u64,
    artifacts_inserted: u64,
    artifacts_skipped: u64,
    /// Of the artifacts skipped, those whose analysis has another artifact.
    artifacts_skipped_place_taken: u64,
    /// Artifacts whose analysis is not in the file: kept with the file-level keys, not as rows.
    artifacts_left_out: u64,
    /// The dialect the file was read as.
    dialect: String,
    /// File-level values (by path, `fixtures.source`) where the file differs from the value
    /// the database keeps: an append adds what is missing and keeps what is there.
    file_keys_kept_from_database: Vec<String>,
    queries_inserted: u64,
    queries_skipped: u64,
    embedding_requests: u64,
    embeddings_computed: u64,
    embeddings_reused: u64,
    replaced: bool,
    /// Whether the rows went in by the bulk path (one transaction, the vector index built
    /// once): always for --replace, for an append when it pays (`restore::bulk`).
    bulk_load: bool,
    safety_backup: Option<PathBuf>,
    deleted: Option<Counts>,
    provider: String,
    model: String,
    dims: usize,
    seconds: f64,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    let started = Instant::now();
    if !args.dry_run {
        interrupt::install();
    }
    let path = args.input.path();
    let source = BackupSource::open(&path).map_err(ReadError::into_report)?;
    output.line(format_args!("read as {}", source.dialect_label()))?;
    let mode = if args.replace {
        Mode::Replace
    } else {
        Mode::Append
    };
    let safety_path = match (mode, args.dry_run) {
        (Mode::Replace, false) => Some(safety_backup_path(&args, &path)?),
        _ => None,
    };
    let mut validation = validate_whole_file(&source)?;
    let input = Input {
        source: &source,
        validated_sha256: validation
            .file_sha256
            .ok_or_else(|| eyre!("internal error: the validation kept no digest of the file"))?,
    };
    let file_extras = FileExtras::take_from(&mut validation.header);
    let (expected, queries) = (validation.counts, &validation.queries);
    if args.dry_run {
        let left_out = validation.orphan_artifacts as u64;
        return dry_run(&args, global, output, input, queries, mode, left_out);
    }
    let client = args.embed.client()?;
    let mut conn = db::connect(global)?;
    check_dimensions(&mut conn, &client)?;
    restore::encoding::check(&mut conn, &validation.non_ascii)?;
    db::lock_dataset(&mut conn)?;

    let progress = Progress::new("restore", expected.analyses, "analyses", output);
    let mut summary = Summary {
        file: path.clone(),
        provider: client.info().provider.to_string(),
        model: client.info().model.clone(),
        dims: client.info().dims,
        replaced: args.replace,
        bulk_load: args.replace,
        artifacts_left_out: validation.orphan_artifacts as u64,
        dialect: source.dialect_label(),
        ..Summary::default()
    };
    let embedding = restore::Embedding {
        embedder: CachedEmbedder {
            client: &client,
            use_cache: !args.embed.embed_no_cache,
        },
        side: db::connect(global)?,
    };
    let loaded = match (mode, safety_path) {
        (Mode::Replace, Some(safety_path)) => {
            let current = load::table_counts(&mut conn)?;
            confirm_replace(
                &args,
                &current,
                &db::mask_password(&db::database_url(global)),
            )?;
            let replaced = restore::replace(
                &mut conn,
                input,
                expected,
                restore::FileLevel {
                    queries,
                    extras: &file_extras,
                },
                &safety_path,
                embedding,
                &progress,
            )?;
            summary.safety_backup = replaced.safety_backup;
            summary.deleted = Some(replaced.deleted);
            replaced.loaded
        }
        _ => {
            let file_level = restore::FileLevel {
                queries,
                extras: &file_extras,
            };
            let appended =
                restore::append(&mut conn, input, expected, file_level, embedding, &progress)?;
            summary.file_keys_kept_from_database = appended.file_keys_kept_from_database;
            summary.bulk_load = appended.bulk;
            appended.loaded
        }
    };
    progress.finish();

    let (inserted, total) = (loaded.counts.inserted, loaded.counts.total);
    summary.analyses_inserted = inserted.analyses;
    summary.analyses_skipped = total.analyses - inserted.analyses;
    summary.chunks_inserted = inserted.chunks;
    summary.chunks_skipped = total.chunks - inserted.chunks;
    summary.chunks_skipped_place_taken = loaded.counts.place_taken.chunks;
    summary.artifacts_inserted = inserted.artifacts;
    summary.artifacts_skipped = total.artifacts - inserted.artifacts;
    summary.artifacts_skipped_place_taken = loaded.counts.place_taken.artifacts;
    summary.queries_inserted = loaded.queries_inserted;
    summary.queries_skipped = expected.queries - loaded.queries_inserted;
    summary.embedding_requests = client.requests();
    summary.embeddings_computed = loaded.embeddings_computed;
    summary.embeddings_reused = loaded.embeddings_reused;
    summary.seconds = started.elapsed().as_secs_f64();
    report(&summary, &client, output)?;
    Ok(Exit::Success)
}

/// Every check of `verify`, before anything is written; problems are exit 2. The file must
/// not change while it is checked.
fn validate_whole_file(source: &BackupSource) -> Result<Validation> {
    let path = source.path();
    let validation = validate::validate_source(source).map_err(|e| e.into_report())?;
    if !validation.is_ok() {
        for problem in &validation.problems {
            eprintln!("problem: {problem}");
        }
        return Err(invalid_input(format!(
            "{} is not a valid backup ({} problem{} above); nothing was written",
            path.display(),
            validation.problems.len(),
            if validation.problems.len() == 1 {
                ""
            } else {
                "s"
            }
        )));
    }
    source.check_unchanged()?;
    Ok(validation)
}

/// Where `--replace` writes its safety backup, checked before anything is written: never
/// the input, never a file that exists (a safety backup replaces nothing), never anything but
/// a regular file. The default name is unique (time and a random part).
fn safety_backup_path(args: &Args, input: &Path) -> Result<PathBuf> {
    let chosen = args.safety_backup.clone();
    let path = chosen.clone().unwrap_or_else(default_safety_path);
    let checked = paths::output(&path, "safety backup", &[input])?;
    if chosen.is_some() && std::fs::symlink_metadata(&path).is_ok() {
        return Err(invalid_input(format!(
            "the safety backup {} exists; a safety backup never replaces a file: choose another path \
             or remove it; nothing was written",
            path.display()
        )));
    }
    Ok(checked.target)
}

/// The provider must make vectors of the column's size; say how to get there if not.
fn check_dimensions(conn: &mut diesel::PgConnection, client: &EmbeddingClient) -> Result<()> {
    let info = client.info();
    match embedding_column_dims(conn)? {
        Some(column) if column as usize != info.dims => Err(invalid_input(format!(
            "chunks.embedding holds vectors of {column} dimensions but the configured {info} makes {}: \
             pass --embed-dims {column} if the model can produce that size, or move the column to {} \
             dimensions first with `golden regenerate-embeddings --embed-dims {}` and the same provider \
             options; nothing was written",
            info.dims, info.dims, info.dims
        ))),
        _ => Ok(()),
    }
}

/// On a terminal, --replace asks first (unless --yes); scripts are not asked.
fn confirm_replace(args: &Args, current: &Counts, database: &str) -> Result<()> {
    if args.yes || !std::io::stdin().is_terminal() || !std::io::stderr().is_terminal() {
        return Ok(());
    }
    eprint!(
        "This replaces {} analyses, {} chunks and {} artifacts in {database} with the contents of the file \
         (a safety backup is written first). Continue? [y/N] ",
        current.analyses, current.chunks, current.artifacts
    );
    std::io::stderr().flush()?;
    // Read on a thread of its own, so that Ctrl-C at the question quits (exit 130).
    let (send, answer) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = send.send(std::io::stdin().read_line(&mut line).map(|_| line));
    });
    let answer = loop {
        interrupt::check()?;
        match answer.recv_timeout(std::time::Duration::from_millis(50)) {
            Ok(answer) => break answer?,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break String::new(),
        }
    };
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(invalid_input(
            "not confirmed; nothing was written (pass --yes to skip the question)",
        ))
    }
}

fn default_safety_path() -> PathBuf {
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let unique = &uuid::Uuid::new_v4().simple().to_string()[..8];
    Path::new(SAFETY_BACKUP_FOLDER).join(format!("before-restore-{stamp}-{unique}.json"))
}

fn dry_run(
    args: &Args,
    global: &GlobalArgs,
    output: Output,
    input: Input,
    queries: &[BackupQuery],
    mode: Mode,
    artifacts_left_out: u64,
) -> Result<Exit> {
    let client = match args.embed.config()? {
        Some(config) => Some(EmbeddingClient::new(build_provider(&config)?, &config)?),
        None => None,
    };
    let mut conn = db::connect(global)?;
    let embedder = client.as_ref().map(|client| CachedEmbedder {
        client,
        use_cache: !args.embed.embed_no_cache,
    });
    let window = client
        .as_ref()
        .map_or(DRY_RUN_WINDOW_WITHOUT_PROVIDER, |client| {
            restore::window_chunks(client.batch_size(), client.concurrency())
        });
    let mut plan = plan::plan(&mut conn, input, queries, mode, embedder.as_ref(), window)?;
    plan.artifacts_left_out = artifacts_left_out;
    plan.dialect = input.source.dialect_label();
    let path_line = match mode {
        Mode::Replace => {
            plan.bulk = true;
            None
        }
        Mode::Append => {
            let (to_insert, file_chunks) = (
                plan.chunks_to_insert,
                plan.chunks_to_insert + plan.chunks_to_skip,
            );
            let use_cache = !args.embed.embed_no_cache;
            let choice =
                restore::bulk::choose(&mut conn, file_chunks, use_cache, |_| Ok(to_insert))?;
            plan.bulk = choice.bulk;
            Some(choice.describe())
        }
    };
    let path = input.source.path();
    output.line(format_args!(
        "plan for restoring {} ({}):",
        path.display(),
        if args.replace { "replace" } else { "append" }
    ))?;
    if let Some(delete) = &plan.rows_to_delete {
        output.line(format_args!(
            "  delete    {} analyses, {} chunks, {} artifacts, {} queries now in the database (after a safety backup)",
            delete.analyses, delete.chunks, delete.artifacts, delete.queries
        ))?;
    }
    for (table, insert, skip, place_taken) in [
        (
            "analyses",
            plan.analyses_to_insert,
            plan.analyses_to_skip,
            0,
        ),
        (
            "chunks",
            plan.chunks_to_insert,
            plan.chunks_to_skip,
            plan.chunks_to_skip_place_taken,
        ),
        (
            "artifacts",
            plan.artifacts_to_insert,
            plan.artifacts_to_skip,
            plan.artifacts_to_skip_place_taken,
        ),
        ("queries", plan.queries_to_insert, plan.queries_to_skip, 0),
    ] {
        let why = match (skip, place_taken) {
            (0, _) => String::new(),
            (_, 0) => " (their ids exist)".to_string(),
            (_, taken) if taken == skip => format!(
                " (another row of the database holds their place: {})",
                place_taken_reason(table)
            ),
            (_, taken) => format!(
                " ({} because their ids exist, {taken} because another row holds their place: {})",
                skip - taken,
                place_taken_reason(table)
            ),
        };
        output.line(format_args!(
            "  {table:<9} {insert} to insert, {skip} to skip{why}"
        ))?;
    }
    if artifacts_left_out > 0 {
        output.line(format_args!(
            "  left out  {artifacts_left_out} artifacts whose analysis is not in the file (kept as they \
             are with the file-level keys, and written back by backup; `golden verify` lists them)"
        ))?;
    }
    match (&client, plan.embeddings_to_compute, plan.embedding_requests_needed) {
        (Some(client), Some(compute), Some(requests)) => output.line(format_args!(
            "  embed     {} chunks: {compute} to compute in {} of up to {}, {} from the cache or identical texts ({})",
            plan.embeddings_needed,
            counted(requests, "request", "requests"),
            client.batch_size(),
            plan.embeddings_reused.unwrap_or(0),
            client.info()
        ))?,
        _ => output.line(format_args!(
            "  embed     {} chunks (no provider configured: set --embed-provider to restore)",
            plan.embeddings_needed
        ))?,
    }
    if let Some(path_line) = path_line {
        output.line(format_args!("  path      {path_line}"))?;
    }
    output.line("nothing was written (--dry-run)")?;
    #[derive(Serialize)]
    struct DryRun<'a> {
        dry_run: bool,
        file: &'a Path,
        replace: bool,
        #[serde(flatten)]
        plan: &'a plan::Plan,
    }
    output.summary(&DryRun {
        dry_run: true,
        file: path,
        replace: args.replace,
        plan: &plan,
    })?;
    Ok(Exit::Success)
}

/// The unique place a skipped row of `table` could not take.
fn place_taken_reason(table: &str) -> &'static str {
    match table {
        "chunks" => "the same (analysis, chunk_index)",
        _ => "the analysis's one artifact",
    }
}

fn report(summary: &Summary, client: &EmbeddingClient, output: Output) -> Result<()> {
    if let (Some(deleted), true) = (&summary.deleted, summary.replaced) {
        output.line(format_args!(
            "replaced {} analyses, {} chunks, {} artifacts{}",
            deleted.analyses,
            deleted.chunks,
            deleted.artifacts,
            summary
                .safety_backup
                .as_ref()
                .map(|path| format!(" (safety backup: {})", path.display()))
                .unwrap_or_default()
        ))?;
    }
    let place_taken = summary.chunks_skipped_place_taken + summary.artifacts_skipped_place_taken;
    if place_taken > 0 {
        log::warn!(
            "skipped {} chunks whose (analysis, chunk_index) and {} artifacts whose analysis another \
             row of the database already holds (written by another program); `golden verify --against-db` \
             shows the differences",
            summary.chunks_skipped_place_taken,
            summary.artifacts_skipped_place_taken
        );
    }
    output.line(format_args!(
        "restored {} analyses, {} chunks, {} artifacts from {} ({} already present, skipped); \
         {} computed in {} to {}, {} from the cache or identical texts, in {:.1} s",
        summary.analyses_inserted,
        summary.chunks_inserted,
        summary.artifacts_inserted,
        summary.file.display(),
        summary.analyses_skipped + summary.chunks_skipped + summary.artifacts_skipped,
        counted(summary.embeddings_computed, "embedding", "embeddings"),
        counted(summary.embedding_requests, "request", "requests"),
        client.info(),
        summary.embeddings_reused,
        summary.seconds
    ))?;
    if !summary.file_keys_kept_from_database.is_empty() {
        log::warn!(
            "kept the database's value of {} (the file's differs): an append adds the file-level \
             keys the database lacks and keeps those it has; `restore --replace` takes the file's",
            summary.file_keys_kept_from_database.join(", ")
        );
    }
    if summary.artifacts_left_out > 0 {
        output.line(format_args!(
            "left out {} artifacts whose analysis is not in the file: an artifact cannot be \
             restored without its analysis; they are kept as they are with the file-level keys, \
             and backup writes them back (`golden verify` lists their ids)",
            summary.artifacts_left_out
        ))?;
    }
    output.summary(summary)?;
    Ok(())
}
