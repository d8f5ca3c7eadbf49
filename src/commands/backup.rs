//! `golden backup`: writes the dataset to the JSON backup file and its metadata sidecar.
//!
//! One read-only REPEATABLE READ snapshot; analyses read page by page in (created_at, id)
//! order with their chunks and artifacts fetched per page (`belonging_to` + `grouped_by`,
//! never a query per analysis); each record written as it comes, so memory does not grow
//! with the dataset. The file is replaced atomically and only when its content changed.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Timestamptz, Uuid as SqlUuid};
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;
use uuid::Uuid;

use crate::backup_file::record::{BackupAnalysis, BackupQuery};
use crate::backup_file::writer::{BackupWriter, Prepared, Totals};
use crate::backup_file::{sidecar, DEFAULT_BACKUP_PATH, DEFAULT_METADATA_PATH};
use crate::cli::GlobalArgs;
use crate::db::{self, QueryContext};
use crate::error::Exit;
use crate::interrupt;
use crate::models::{query, Analysis, Artifact, ChunkText};
use crate::output::Output;
use crate::schema::{analyses, artifacts, chunks};
use crate::{atomic, paths};

/// The status filter value that selects every analysis.
pub const ALL_STATUSES: &str = "all";

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file to write
    #[arg(long, short, default_value = DEFAULT_BACKUP_PATH)]
    pub output: PathBuf,

    /// The metadata sidecar to write
    #[arg(long, default_value = DEFAULT_METADATA_PATH)]
    pub metadata: PathBuf,

    /// Back up analyses with this status; `all` backs up every analysis
    #[arg(long, default_value = "completed")]
    pub status: String,

    /// Analyses read per query (memory use grows with it)
    #[arg(long, default_value_t = 500, hide = true, value_parser = clap::value_parser!(i64).range(1..))]
    pub page_size: i64,
}

#[derive(Serialize)]
struct Summary<'a> {
    analyses: u64,
    chunks: u64,
    artifacts: u64,
    queries: u64,
    file: &'a Path,
    changed: bool,
    metadata_file: &'a Path,
    created_at: &'a str,
    checksum: &'a str,
    status_filter: &'a str,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    interrupt::install();
    interrupt::set_outcome("the previous backup file is untouched");
    let backup_path = paths::output(&args.output, "backup file", &[])?;
    let metadata_path = paths::output(&args.metadata, "metadata file", &[])?;
    paths::distinct(&backup_path, "backup file", &metadata_path, "metadata file")?;
    let mut conn = db::connect(global)?;
    let status = (args.status != ALL_STATUSES).then_some(args.status.as_str());
    let progress = progress_bar(output);
    let BackedUp { prepared, problems } = write_backup(
        &mut conn,
        &backup_path.target,
        status,
        args.page_size,
        &progress,
    )?;
    progress.finish_and_clear();
    // Both files are complete before either is put in place: a sidecar that cannot be
    // written leaves the backup as it was too.
    let sidecar = sidecar::prepare(
        &metadata_path.target,
        &args.output,
        &prepared.written,
        &args.status,
    )
    .wrap_err_with(|| {
        format!(
            "writing the metadata file {}; neither file was changed",
            args.metadata.display()
        )
    })?;
    interrupt::commit_point()?;
    let written = prepared.persist().wrap_err_with(|| {
        format!(
            "putting {} in place; neither file was changed",
            args.output.display()
        )
    });
    let written = match written {
        Ok(written) => written,
        Err(report) => {
            interrupt::after_commit(false, true);
            return Err(report);
        }
    };
    if let Some(sidecar) = sidecar {
        let persisted = atomic::persist(sidecar, &metadata_path.target);
        interrupt::after_commit(true, true);
        persisted.wrap_err_with(|| {
            format!(
                "{} was written, but its metadata file {} could not be replaced and still describes \
                 the previous backup; run the backup again",
                args.output.display(),
                args.metadata.display()
            )
        })?;
    } else {
        interrupt::after_commit(true, true);
    }

    warn_about_problems(&problems);
    if written.totals.analyses == 0 {
        if let Some(status) = status {
            warn_when_other_statuses_exist(&mut conn, status);
        }
    }
    let t = &written.totals;
    output.line(format_args!(
        "{} analyses, {} chunks, {} artifacts{} → {}{}",
        t.analyses,
        t.chunks,
        t.artifacts,
        if t.queries > 0 {
            format!(", {} queries", t.queries)
        } else {
            String::new()
        },
        args.output.display(),
        if written.changed { "" } else { " (unchanged)" }
    ))?;
    output.summary(&Summary {
        analyses: t.analyses,
        chunks: t.chunks,
        artifacts: t.artifacts,
        queries: t.queries,
        file: &args.output,
        changed: written.changed,
        metadata_file: &args.metadata,
        created_at: &written.created_at,
        checksum: &written.checksum,
        status_filter: &args.status,
    })?;
    Ok(Exit::Success)
}

/// Writes a backup of the analyses with `status` (every analysis for `None`) beside `dest`,
/// from one read-only snapshot, ready to be put in place.
pub fn write_backup(
    conn: &mut PgConnection,
    dest: &Path,
    status: Option<&str>,
    page_size: i64,
    progress: &ProgressBar,
) -> Result<BackedUp> {
    db::in_snapshot(conn, |conn| {
        write_backup_in(conn, dest, status, page_size, progress)
    })
}

/// [`write_backup`] inside a transaction the caller holds: the safety backup of a restore
/// reads exactly the rows its own transaction is about to replace.
pub fn write_backup_in(
    conn: &mut PgConnection,
    dest: &Path,
    status: Option<&str>,
    page_size: i64,
    progress: &ProgressBar,
) -> Result<BackedUp> {
    let queries = queries_to_back_up(conn, status)?;
    let totals = count(conn, status, queries.len() as u64)?;
    progress.set_length(totals.analyses);
    let mut writer = BackupWriter::create(dest, Utc::now(), totals, status.unwrap_or(ALL_STATUSES))
        .wrap_err_with(|| format!("creating a temp file beside {}", dest.display()))?;
    let mut after: Option<(DateTime<Utc>, Uuid)> = None;
    let mut problems = Vec::new();
    loop {
        interrupt::check()?;
        let page = analyses_page(conn, status, after, page_size)?;
        let Some(last) = page.last() else { break };
        after = Some((last.created_at, last.id));
        let page_len = page.len() as u64;
        for record in assemble(conn, page)? {
            problems.extend(crate::validate::database_record_problems(&record));
            writer.write(&record).wrap_err_with(|| {
                format!("writing analysis {} to {}", record.id, dest.display())
            })?;
        }
        progress.inc(page_len);
    }
    let prepared = writer.finish(&queries).wrap_err_with(|| {
        format!(
            "finishing {}; the previous file is untouched",
            dest.display()
        )
    })?;
    Ok(BackedUp { prepared, problems })
}

/// A backup ready to be put in place, and what in it `verify` would reject.
pub struct BackedUp {
    pub prepared: Prepared,
    pub problems: Vec<crate::validate::Problem>,
}

/// The golden queries to back up: those whose expected chunks are all in this backup. A
/// query expecting a chunk that is left out (another status, or deleted) would make the file
/// fail its own checks, so it is left out, with a warning.
fn queries_to_back_up(conn: &mut PgConnection, status: Option<&str>) -> Result<Vec<BackupQuery>> {
    let selected = query::for_backup(conn, status)?;
    if !selected.left_out.is_empty() {
        let ids: Vec<&str> = selected.left_out.iter().map(|q| q.id.as_str()).collect();
        log::warn!(
            "left out {} queries whose expected chunks are not in this backup (another status, or deleted): {}",
            ids.len(),
            ids.join(", ")
        );
    }
    Ok(selected.queries)
}

fn count(conn: &mut PgConnection, status: Option<&str>, queries: u64) -> Result<Totals> {
    let (analyses, chunks, artifacts) =
        count_rows(conn, status).step("counting the rows to back up")?;
    Ok(Totals {
        analyses: analyses as u64,
        chunks: chunks as u64,
        artifacts: artifacts as u64,
        queries,
    })
}

fn count_rows(conn: &mut PgConnection, status: Option<&str>) -> QueryResult<(i64, i64, i64)> {
    let Some(status) = status else {
        return Ok((
            analyses::table.count().get_result(conn)?,
            chunks::table.count().get_result(conn)?,
            artifacts::table.count().get_result(conn)?,
        ));
    };
    let analyses = analyses::table
        .filter(analyses::status.eq(status))
        .count()
        .get_result(conn)?;
    let chunks = chunks::table
        .inner_join(analyses::table)
        .filter(analyses::status.eq(status))
        .count()
        .get_result(conn)?;
    let artifacts = artifacts::table
        .inner_join(analyses::table)
        .filter(analyses::status.eq(status))
        .count()
        .get_result(conn)?;
    Ok((analyses, chunks, artifacts))
}

/// The next page of analyses after `after`, in (created_at, id) order (keyset pagination).
fn analyses_page(
    conn: &mut PgConnection,
    status: Option<&str>,
    after: Option<(DateTime<Utc>, Uuid)>,
    page_size: i64,
) -> Result<Vec<Analysis>> {
    let mut query = analyses::table
        .select(Analysis::as_select())
        .order((analyses::created_at, analyses::id))
        .limit(page_size)
        .into_boxed();
    if let Some(status) = status {
        query = query.filter(analyses::status.eq(status));
    }
    if let Some((created_at, id)) = after {
        // A row comparison, so PostgreSQL walks the (created_at, id) index.
        query = query.filter(
            sql::<Bool>("(analyses.created_at, analyses.id) > (")
                .bind::<Timestamptz, _>(created_at)
                .sql(", ")
                .bind::<SqlUuid, _>(id)
                .sql(")"),
        );
    }
    query.load(conn).step("reading analyses")
}

/// Joins a page of analyses with their chunks and artifacts: two queries per page.
fn assemble(conn: &mut PgConnection, page: Vec<Analysis>) -> Result<Vec<BackupAnalysis>> {
    let chunks_by_analysis = ChunkText::belonging_to(&page)
        .select(ChunkText::as_select())
        .order((chunks::analysis_id, chunks::chunk_index))
        .load(conn)
        .step("reading chunks")?
        .grouped_by(&page);
    let artifacts_by_analysis = Artifact::belonging_to(&page)
        .select(Artifact::as_select())
        .load(conn)
        .step("reading artifacts")?
        .grouped_by(&page);
    Ok(page
        .into_iter()
        .zip(chunks_by_analysis)
        .zip(artifacts_by_analysis)
        .map(|((analysis, chunks), artifacts)| {
            BackupAnalysis::from_rows(analysis, chunks, artifacts.into_iter().next())
        })
        .collect())
}

fn progress_bar(output: Output) -> ProgressBar {
    if !output.progress_allowed() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("backup {bar:40} {pos}/{len} analyses ({eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// The database may hold what the file checks reject (another tool wrote a localhost URL, an
/// empty field): say so now, since `verify` will fail and `restore` will refuse the file.
fn warn_about_problems(problems: &[crate::validate::Problem]) {
    if problems.is_empty() {
        return;
    }
    log::warn!(
        "the database holds {} thing(s) that `golden verify` rejects and `golden restore` refuses; \
         fix them in the database and back up again:",
        problems.len()
    );
    for problem in problems.iter().take(20) {
        log::warn!("  {problem}");
    }
    if problems.len() > 20 {
        log::warn!("  … and {} more", problems.len() - 20);
    }
}

fn warn_when_other_statuses_exist(conn: &mut PgConnection, status: &str) {
    let others: QueryResult<i64> = analyses::table
        .filter(analyses::status.ne(status))
        .count()
        .get_result(conn);
    if let Ok(others) = others.map(|n| n as u64) {
        if others > 0 {
            log::warn!(
                "no analysis has status {status:?}, but {others} have another status; \
                 back them up with --status <STATUS> or --status all"
            );
        }
    }
}
