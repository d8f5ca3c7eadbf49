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
use crate::restore::sync::{Scope, SyncPlan, Synced, TableChanges};
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

    /// Make the dataset equal to the file within the file's scope (its status_filter): insert
    /// what is new, update what changed, delete what the file no longer holds, in one
    /// transaction, after a safety backup of every row it changes or deletes
    #[arg(long, conflicts_with = "replace")]
    pub sync: bool,

    /// Do not ask before --replace or --sync
    #[arg(long, short)]
    pub yes: bool,

    /// With --replace: move chunks.embedding to the provider's vector size (the table is emptied
    /// anyway), in the same transaction; the vector index is built at the new size
    #[arg(long, requires = "replace", conflicts_with = "sync")]
    pub resize_column: bool,

    /// Validate and print what would be done; write nothing
    #[arg(long)]
    pub dry_run: bool,

    /// Where --replace and --sync write the safety backup; never an existing file [default:
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
    /// `--sync`: the rows updated in place and deleted, per table, and the scope.
    synced: bool,
    analyses_updated: u64,
    analyses_deleted: u64,
    chunks_updated: u64,
    chunks_deleted: u64,
    artifacts_updated: u64,
    artifacts_deleted: u64,
    queries_updated: u64,
    queries_deleted: u64,
    /// File-level keys set to the file's value or deleted (`--sync`).
    file_keys_changed: Vec<String>,
    /// Whether the vector index was dropped and built again once (a large change).
    index_rebuilt: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
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
        _ if args.sync && !args.dry_run => Some(safety_backup_path(&args, &path)?),
        _ => None,
    };
    let mut validation = validate_whole_file(&source)?;
    let input = Input {
        source: &source,
        validated_sha256: validation
            .file_sha256
            .ok_or_else(|| eyre!("internal error: the validation kept no digest of the file"))?,
    };
    let scope = Scope::of_file(
        validation
            .header
            .metadata
            .as_ref()
            .and_then(|metadata| metadata.get("status_filter"))
            .and_then(|status| status.as_str()),
    );
    let file_extras = FileExtras::take_from(&mut validation.header);
    let (expected, queries) = (validation.counts, &validation.queries);
    let file_level = restore::FileLevel {
        queries,
        extras: &file_extras,
    };
    if args.sync && args.dry_run {
        return sync_dry_run(&args, global, output, input, file_level, &scope);
    }
    if args.dry_run {
        let left_out = validation.orphan_artifacts as u64;
        return dry_run(&args, global, output, input, queries, mode, left_out);
    }
    let client = args.embed.client()?;
    let mut conn = db::connect(global)?;
    restore::encoding::check(&mut conn, &validation.non_ascii)?;
    db::lock_dataset(&mut conn)?;
    if !(args.resize_column && args.replace) {
        check_dimensions(&mut conn, &client)?;
    }

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
    if let (true, Some(safety_path)) = (args.sync, &safety_path) {
        let database = db::mask_password(&db::database_url(global));
        // Asked before the sync locks the tables (the team's other programs go on writing
        // while the question waits); the sync then checks that its plan is the one agreed to.
        let asked = if interactive(&args) {
            let window = restore::window_chunks(client.batch_size(), client.concurrency());
            let (plan, _) =
                restore::sync::plan(&mut conn, input, file_level, &scope, None, window)?;
            confirm_sync(&plan, &database)?;
            Some(plan)
        } else {
            None
        };
        let synced = restore::sync::sync(
            &mut conn,
            input,
            file_level,
            &scope,
            safety_path,
            embedding,
            &progress,
            &|plan| same_plan(asked.as_ref(), plan),
        )?;
        progress.finish();
        summary.synced = true;
        summary.scope = Some(synced.plan.scope.clone());
        fill_synced(&mut summary, &synced);
        summary.embedding_requests = client.requests();
        summary.seconds = started.elapsed().as_secs_f64();
        return report_sync(&summary, &client, output);
    }
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
                file_level,
                restore::Replacement {
                    safety_path: &safety_path,
                    resize_column: args.resize_column,
                },
                embedding,
                &progress,
            )?;
            summary.safety_backup = replaced.safety_backup;
            summary.deleted = Some(replaced.deleted);
            replaced.loaded
        }
        _ => {
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

/// The provider must make vectors of the column's size; say how to get there if not. A column
/// with no row yet (a new database) simply takes the provider's size: there is nothing to lose.
fn check_dimensions(conn: &mut diesel::PgConnection, client: &EmbeddingClient) -> Result<()> {
    let info = client.info();
    match embedding_column_dims(conn)? {
        Some(column) if column as usize != info.dims && load::resize_empty_column(conn, info.dims)? => {
            log::warn!(
                "chunks.embedding held no vector yet: moved it from {column} to {} dimensions for {info}",
                info.dims
            );
            Ok(())
        }
        Some(column) if column as usize != info.dims => Err(invalid_input(format!(
            "chunks.embedding holds vectors of {column} dimensions but the configured {info} makes {}: \
             pass --embed-dims {column} if the model can produce that size, or move the column to {} \
             dimensions: with --replace --resize-column (the dataset is replaced anyway), or first with \
             `golden regenerate-embeddings --embed-dims {}` and the same provider options; nothing was \
             written",
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
    ask(&format!(
        "This replaces {} analyses, {} chunks and {} artifacts in {database} with the contents of the file \
         (a safety backup is written first). Continue?",
        current.analyses, current.chunks, current.artifacts
    ))
}

/// Asks `question` on the terminal; anything but yes refuses (exit 2).
fn ask(question: &str) -> Result<()> {
    eprint!("{question} [y/N] ");
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
    let client = dry_run_client(args)?;
    let mut conn = db::connect(global)?;
    let embedder = client.as_ref().map(|client| CachedEmbedder {
        client,
        use_cache: !args.embed.embed_no_cache,
    });
    let window = dry_run_window(client.as_ref());
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
    embed_line(
        output,
        client.as_ref(),
        plan.embeddings_needed,
        plan.embeddings_to_compute
            .zip(plan.embedding_requests_needed),
        plan.embeddings_reused.unwrap_or(0),
        "restore",
    )?;
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

/// The plan's line about embedding: what the provider computes in how many requests, or
/// that none is configured (then `verb` needs one).
fn embed_line(
    output: Output,
    client: Option<&EmbeddingClient>,
    needed: u64,
    compute_and_requests: Option<(u64, u64)>,
    reused: u64,
    verb: &str,
) -> std::io::Result<()> {
    match (client, compute_and_requests) {
        (Some(client), Some((compute, requests))) => output.line(format_args!(
            "  embed     {needed} chunks: {compute} to compute in {} of up to {}, {reused} from the cache or identical texts ({})",
            counted(requests, "request", "requests"),
            client.batch_size(),
            client.info()
        )),
        _ => output.line(format_args!(
            "  embed     {needed} chunks (no provider configured: set --embed-provider to {verb})"
        )),
    }
}

/// The provider of a dry run, when one is configured (the plan then counts its requests).
fn dry_run_client(args: &Args) -> Result<Option<EmbeddingClient>> {
    match args.embed.config()? {
        Some(config) => Ok(Some(EmbeddingClient::new(
            build_provider(&config)?,
            &config,
        )?)),
        None => Ok(None),
    }
}

/// The windows a dry run reads the file in: the restore's, for its provider.
fn dry_run_window(client: Option<&EmbeddingClient>) -> usize {
    client.map_or(DRY_RUN_WINDOW_WITHOUT_PROVIDER, |client| {
        restore::window_chunks(client.batch_size(), client.concurrency())
    })
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

/// Whether to ask before writing: on a terminal, unless --yes.
fn interactive(args: &Args) -> bool {
    !args.yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// The sync's plan must be the one the user agreed to (another program may have written in
/// between).
fn same_plan(asked: Option<&SyncPlan>, plan: &SyncPlan) -> Result<()> {
    let Some(asked) = asked else { return Ok(()) };
    let counts = |plan: &SyncPlan| {
        (
            plan.analyses,
            plan.chunks,
            plan.artifacts,
            plan.queries,
            plan.file_keys_to_change.clone(),
        )
    };
    if !asked.loses_something() || counts(asked) == counts(plan) {
        return Ok(());
    }
    Err(invalid_input(
        "the database changed while the question waited: the sync would now do something else \
         than what was agreed to; nothing was written: run it again",
    ))
}

/// A sync that deletes or overwrites rows asks first.
fn confirm_sync(plan: &SyncPlan, database: &str) -> Result<()> {
    if !plan.loses_something() {
        return Ok(());
    }
    let table = |name: &str, rows: &TableChanges| {
        format!(
            "{name}: {} to insert, {} to update, {} to delete",
            rows.insert, rows.update, rows.delete
        )
    };
    let question = format!(
        "This makes {database} equal to the file within {}: {}; {}; {}; {} (a safety backup of \
         what changes is written first). Continue?",
        plan.scope,
        table("analyses", &plan.analyses),
        table("chunks", &plan.chunks),
        table("artifacts", &plan.artifacts),
        table("queries", &plan.queries)
    );
    ask(&question)
}

fn fill_synced(summary: &mut Summary, synced: &Synced) {
    let plan = &synced.plan;
    summary.analyses_inserted = plan.analyses.insert;
    summary.analyses_updated = plan.analyses.update;
    summary.analyses_deleted = plan.analyses.delete;
    summary.analyses_skipped = plan.analyses.unchanged;
    summary.chunks_inserted = plan.chunks.insert;
    summary.chunks_updated = plan.chunks.update;
    summary.chunks_deleted = plan.chunks.delete;
    summary.chunks_skipped = plan.chunks.unchanged;
    summary.artifacts_inserted = plan.artifacts.insert;
    summary.artifacts_updated = plan.artifacts.update;
    summary.artifacts_deleted = plan.artifacts.delete;
    summary.artifacts_skipped = plan.artifacts.unchanged;
    summary.queries_inserted = plan.queries.insert;
    summary.queries_updated = plan.queries.update;
    summary.queries_deleted = plan.queries.delete;
    summary.queries_skipped = plan.queries.unchanged;
    summary.file_keys_changed = plan.file_keys_to_change.clone();
    summary.index_rebuilt = plan.index_rebuild && !plan.changes_nothing();
    summary.bulk_load = summary.index_rebuilt;
    summary.embeddings_computed = synced.embeddings_computed;
    summary.embeddings_reused = synced.embeddings_reused;
    summary.safety_backup = synced.safety_backup.clone();
}

fn report_sync(summary: &Summary, client: &EmbeddingClient, output: Output) -> Result<Exit> {
    let unchanged = summary.analyses_skipped
        + summary.chunks_skipped
        + summary.artifacts_skipped
        + summary.queries_skipped;
    let changes = [
        (
            "analyses",
            summary.analyses_inserted,
            summary.analyses_updated,
            summary.analyses_deleted,
        ),
        (
            "chunks",
            summary.chunks_inserted,
            summary.chunks_updated,
            summary.chunks_deleted,
        ),
        (
            "artifacts",
            summary.artifacts_inserted,
            summary.artifacts_updated,
            summary.artifacts_deleted,
        ),
        (
            "queries",
            summary.queries_inserted,
            summary.queries_updated,
            summary.queries_deleted,
        ),
    ];
    if changes.iter().all(|(_, i, u, d)| i + u + d == 0) && summary.file_keys_changed.is_empty() {
        output.line(format_args!(
            "in sync: the database already holds {} as it is, within {} ({unchanged} rows); nothing was written",
            summary.file.display(),
            summary.scope.as_deref().unwrap_or_default()
        ))?;
        output.summary(summary)?;
        return Ok(Exit::Success);
    }
    let described: Vec<String> = changes
        .iter()
        .map(|(table, inserted, updated, deleted)| {
            format!("{table} +{inserted} ~{updated} -{deleted}")
        })
        .collect();
    output.line(format_args!(
        "synced {} within {}: {} (+ inserted, ~ updated, - deleted; {unchanged} rows unchanged){}; \
         {} computed in {} to {}, {} from the cache or identical texts{}, in {:.1} s",
        summary.file.display(),
        summary.scope.as_deref().unwrap_or_default(),
        described.join(", "),
        if summary.file_keys_changed.is_empty() {
            String::new()
        } else {
            format!("; file-level keys set or deleted: {}", summary.file_keys_changed.join(", "))
        },
        counted(summary.embeddings_computed, "embedding", "embeddings"),
        counted(summary.embedding_requests, "request", "requests"),
        client.info(),
        summary.embeddings_reused,
        if summary.index_rebuilt {
            "; the vector index was built again once"
        } else {
            ""
        },
        summary.seconds
    ))?;
    if let Some(path) = &summary.safety_backup {
        output.line(format_args!(
            "safety backup of the rows changed or deleted: {} (`golden restore --sync` of it puts them back)",
            path.display()
        ))?;
    }
    output.summary(summary)?;
    Ok(Exit::Success)
}

fn sync_dry_run(
    args: &Args,
    global: &GlobalArgs,
    output: Output,
    input: Input,
    file_level: restore::FileLevel,
    scope: &Scope,
) -> Result<Exit> {
    let client = dry_run_client(args)?;
    let mut conn = db::connect(global)?;
    let embedder = client.as_ref().map(|client| CachedEmbedder {
        client,
        use_cache: !args.embed.embed_no_cache,
    });
    let window = dry_run_window(client.as_ref());
    let (plan, listing) = restore::sync::plan(
        &mut conn,
        input,
        file_level,
        scope,
        embedder.as_ref(),
        window,
    )?;
    let path = input.source.path();
    output.line(format_args!(
        "plan for syncing {} (within {}):",
        path.display(),
        plan.scope
    ))?;
    for (table, rows) in [
        ("analyses", &plan.analyses),
        ("chunks", &plan.chunks),
        ("artifacts", &plan.artifacts),
        ("queries", &plan.queries),
    ] {
        output.line(format_args!(
            "  {table:<9} {} to insert, {} to update, {} to delete, {} unchanged",
            rows.insert, rows.update, rows.delete, rows.unchanged
        ))?;
    }
    if !plan.file_keys_to_change.is_empty() {
        output.line(format_args!(
            "  file keys {} to set or delete",
            plan.file_keys_to_change.join(", ")
        ))?;
    }
    embed_line(
        output,
        client.as_ref(),
        plan.embeddings_needed,
        plan.embeddings_to_compute
            .zip(plan.embedding_requests_needed),
        plan.embeddings_reused.unwrap_or(0),
        "sync",
    )?;
    output.line(format_args!(
        "  index     {}",
        if plan.index_rebuild {
            "dropped and built again once, after the writes (a large change)"
        } else {
            "kept, and updated row by row"
        }
    ))?;
    if plan.loses_something() {
        output.line(
            "  safety    a backup of every analysis whose rows change or go is written first",
        )?;
    }
    if let Some(refused) = &plan.refused {
        output.line(format_args!("  refused   {refused}"))?;
    }
    for (what, table, id) in &listing {
        log::debug!("{what} {table} {id}");
    }
    output.line("nothing was written (--dry-run)")?;
    #[derive(Serialize)]
    struct DryRun<'a> {
        dry_run: bool,
        file: &'a Path,
        replace: bool,
        sync: bool,
        #[serde(flatten)]
        plan: &'a SyncPlan,
    }
    output.summary(&DryRun {
        dry_run: true,
        file: path,
        replace: false,
        sync: true,
        plan: &plan,
    })?;
    Ok(Exit::Success)
}
