//! Writing the dataset to a backup file: one read-only snapshot, analyses read a page at a
//! time in (created_at, id) order (keyset pagination on an index), their chunks and artifacts
//! fetched per page (`belonging_to` + `grouped_by`: a few queries per 500 analyses, never one
//! per analysis), and every record written as it comes, so memory does not grow with the
//! dataset. Chunks are fetched a bounded window at a time, so neither does it grow with one
//! analysis: an analysis of a hundred thousand chunks is read and written in pieces.
//!
//! `golden backup` uses it, and so does `restore --replace` for its safety backup, inside its
//! own transaction.

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use diesel::dsl::sql;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Timestamptz, Uuid as SqlUuid};
use indicatif::ProgressBar;
use uuid::Uuid;

use crate::backup_file::extras::FileExtras;
use crate::backup_file::record::{latest_last, BackupArtifact, BackupChunk, BackupQuery};
use crate::backup_file::writer::{BackupWriter, Prepared, Totals};
use crate::db::{self, QueryContext};
use crate::interrupt;
use crate::models::{query, Analysis, Artifact, ArtifactVersion, ChunkText, DatasetExtra};
use crate::schema::{analyses, artifact_versions, artifacts, chunks, dataset_extras};
use crate::validate::{self, Problem};

/// The status filter value that selects every analysis.
pub const ALL_STATUSES: &str = "all";
/// The status filter of a backup holding only the analyses it lists (the safety backup of a
/// `restore --sync`): restoring it with `--sync` deletes no analysis it does not list.
pub const LISTED_ANALYSES: &str = "(listed)";

/// Which analyses a backup holds.
#[derive(Debug, Clone, Copy)]
pub enum Selection<'a> {
    /// Those of a status (`None`: every analysis).
    Status(Option<&'a str>),
    /// Those whose ids are in `table` (a table of the session with an `id` column), with the
    /// queries `queries` (those whose expected chunks they all hold).
    Listed {
        table: &'static str,
        queries: &'a [String],
    },
}

impl Selection<'_> {
    fn status(&self) -> Option<&str> {
        match self {
            Selection::Status(status) => *status,
            Selection::Listed { .. } => None,
        }
    }

    /// The SQL condition on `analyses` of a listed selection.
    fn listed(&self) -> Option<String> {
        match self {
            Selection::Status(_) => None,
            Selection::Listed { table, .. } => {
                Some(format!("analyses.id IN (SELECT id FROM {table})"))
            }
        }
    }

    fn status_filter(&self) -> &str {
        match self {
            Selection::Status(status) => status.unwrap_or(ALL_STATUSES),
            Selection::Listed { .. } => LISTED_ANALYSES,
        }
    }
}
/// The most chunks read by one query: about 1 MB of text a thousand chunks.
const CHUNKS_PER_QUERY: i64 = 2_000;

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
    write_selection_in(conn, dest, Selection::Status(status), page_size, progress)
}

/// [`write_backup_in`] of any [`Selection`].
pub fn write_selection_in(
    conn: &mut PgConnection,
    dest: &Path,
    selection: Selection,
    page_size: i64,
    progress: &ProgressBar,
) -> Result<BackedUp> {
    refuse_timestamps_a_file_cannot_hold(conn, selection)?;
    let queries = queries_to_back_up(conn, selection)?;
    let totals = count(conn, selection, queries.len() as u64)?;
    progress.set_length(totals.analyses);
    let extras = file_extras(conn)?;
    let mut writer = BackupWriter::create(
        dest,
        Utc::now(),
        totals,
        selection.status_filter(),
        &extras.metadata,
    )
    .wrap_err_with(|| format!("creating a temp file beside {}", dest.display()))?;
    let mut after: Option<(DateTime<Utc>, Uuid)> = None;
    let mut problems = Vec::new();
    loop {
        interrupt::check()?;
        let page = analyses_page(conn, selection, after, page_size)?;
        let Some(last) = page.last() else { break };
        after = Some((last.created_at, last.id));
        let page_len = page.len() as u64;
        write_page(conn, page, &mut writer, &mut problems)
            .wrap_err_with(|| format!("writing {}", dest.display()))?;
        progress.inc(page_len);
    }
    let prepared = writer.finish(&queries, &extras.top).wrap_err_with(|| {
        format!(
            "finishing {}; the previous file is untouched",
            dest.display()
        )
    })?;
    Ok(BackedUp { prepared, problems })
}

/// The `metadata.checksum` a backup of the whole database would carry now, from one
/// snapshot, without keeping the file: what a saved evaluation run records, so a reader can
/// tell which committed backup it was made against.
pub fn dataset_checksum(conn: &mut PgConnection) -> Result<String> {
    let folder = tempfile::tempdir().wrap_err("creating a temp folder for the checksum")?;
    let dest = folder.path().join("checksum.json");
    let backed_up = write_backup(conn, &dest, None, 500, &ProgressBar::hidden())?;
    Ok(backed_up.prepared.written.checksum.clone())
}

/// A backup ready to be put in place, and what in it `verify` would reject.
pub struct BackedUp {
    pub prepared: Prepared,
    pub problems: Vec<Problem>,
}

/// Writes the safety backup of a restore to `path` from inside the restore's transaction: the
/// rows of `selection` as they are before the restore changes them. It never replaces a file.
pub fn write_safety_backup(
    conn: &mut PgConnection,
    path: &Path,
    selection: Selection,
) -> Result<()> {
    let backed_up = write_selection_in(conn, path, selection, 500, &ProgressBar::hidden())?;
    backed_up.warn_if_not_restorable(path);
    backed_up.prepared.persist_new().wrap_err_with(|| {
        format!(
            "writing the safety backup {}; nothing was changed",
            path.display()
        )
    })?;
    Ok(())
}

impl BackedUp {
    /// Warns that the safety backup `path` keeps values `verify` rejects (rows another
    /// program wrote): restoring it needs them fixed first.
    fn warn_if_not_restorable(&self, path: &Path) {
        let Some(first) = self.problems.first() else {
            return;
        };
        log::warn!(
            "the safety backup {} keeps {} value{} `golden verify` rejects, as the database held \
             them (first: {}: {}); restoring that file needs them fixed first",
            path.display(),
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" },
            first.location,
            first.problem
        );
    }
}

/// PostgreSQL holds timestamps a backup file cannot: `infinity`, and years past chrono's
/// 262143 (PostgreSQL's run to 294276). Name the rows, rather than fail in the middle of the
/// read with a bare decoding error.
fn refuse_timestamps_a_file_cannot_hold(
    conn: &mut PgConnection,
    selection: Selection,
) -> Result<()> {
    use diesel::sql_types::{Nullable, Text};
    #[derive(QueryableByName)]
    struct Unwritable {
        #[diesel(sql_type = Text)]
        place: String,
        #[diesel(sql_type = Text)]
        value: String,
    }
    let listed = selection.listed().unwrap_or_else(|| "TRUE".into());
    let rows: Vec<Unwritable> = diesel::sql_query(format!(
        "WITH selected AS (SELECT * FROM analyses WHERE ($1::text IS NULL OR status = $1) AND {listed}), \
         times AS ( \
           SELECT 'analysis ' || id || ', created_at' AS place, created_at AS at FROM selected \
           UNION ALL SELECT 'analysis ' || id || ', updated_at', updated_at FROM selected \
           UNION ALL SELECT 'analysis ' || a.analysis_id || ', artifact ' || a.id || ', created_at', a.created_at \
             FROM artifacts a JOIN selected s ON s.id = a.analysis_id \
           UNION ALL SELECT 'analysis ' || a.analysis_id || ', artifact ' || a.id || ', created_at', a.created_at \
             FROM artifact_versions a JOIN selected s ON s.id = a.analysis_id) \
         SELECT place, at::text AS value FROM times \
         WHERE NOT isfinite(at) OR at >= '262143-01-01 00:00:00+00' LIMIT 10"
    ))
    .bind::<Nullable<Text>, _>(selection.status())
    .load(conn)
    .step("checking the timestamps to back up")?;
    if rows.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = rows
        .iter()
        .map(|row| format!("{} is {}", row.place, row.value))
        .collect();
    Err(color_eyre::eyre::eyre!(
        "the database holds timestamps a backup file cannot hold (infinity, or a year after 262142): {}; \
         set them to real times and back up again; nothing was written",
        named.join("; ")
    ))
}

/// The golden queries to back up: those whose expected chunks are all in this backup. A
/// query expecting a chunk that is left out (another status, or deleted) would make the file
/// fail its own checks, so it is left out, with a warning.
fn queries_to_back_up(conn: &mut PgConnection, selection: Selection) -> Result<Vec<BackupQuery>> {
    let selected = match selection {
        Selection::Status(status) => query::for_backup(conn, status)?,
        Selection::Listed { table, queries } => query::for_listed_backup(conn, table, queries)?,
    };
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

fn count(conn: &mut PgConnection, selection: Selection, queries: u64) -> Result<Totals> {
    let (analyses, chunks, artifacts) = match selection.listed() {
        None => count_rows(conn, selection.status()),
        Some(listed) => count_listed(conn, &listed),
    }
    .step("counting the rows to back up")?;
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
            artifacts::table.count().get_result::<i64>(conn)?
                + artifact_versions::table.count().get_result::<i64>(conn)?,
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
        .get_result::<i64>(conn)?
        + artifact_versions::table
            .inner_join(analyses::table)
            .filter(analyses::status.eq(status))
            .count()
            .get_result::<i64>(conn)?;
    Ok((analyses, chunks, artifacts))
}

fn count_listed(conn: &mut PgConnection, listed: &str) -> QueryResult<(i64, i64, i64)> {
    let analyses = analyses::table
        .filter(sql::<Bool>(listed))
        .count()
        .get_result(conn)?;
    let chunks = chunks::table
        .inner_join(analyses::table)
        .filter(sql::<Bool>(listed))
        .count()
        .get_result(conn)?;
    let artifacts = artifacts::table
        .inner_join(analyses::table)
        .filter(sql::<Bool>(listed))
        .count()
        .get_result::<i64>(conn)?
        + artifact_versions::table
            .inner_join(analyses::table)
            .filter(sql::<Bool>(listed))
            .count()
            .get_result::<i64>(conn)?;
    Ok((analyses, chunks, artifacts))
}

/// The next page of analyses after `after`, in (created_at, id) order (keyset pagination).
fn analyses_page(
    conn: &mut PgConnection,
    selection: Selection,
    after: Option<(DateTime<Utc>, Uuid)>,
    page_size: i64,
) -> Result<Vec<Analysis>> {
    let mut query = analyses::table
        .select(Analysis::as_select())
        .order((analyses::created_at, analyses::id))
        .limit(page_size)
        .into_boxed();
    if let Some(status) = selection.status() {
        query = query.filter(analyses::status.eq(status));
    }
    if let Some(listed) = selection.listed() {
        query = query.filter(sql::<Bool>(&listed));
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

/// Writes a page of analyses with their chunks and artifacts: the artifacts in one query,
/// the chunks in queries of at most [`CHUNKS_PER_QUERY`] (several analyses per query, or one
/// analysis in several), noting what `verify` would reject.
fn write_page(
    conn: &mut PgConnection,
    page: Vec<Analysis>,
    writer: &mut BackupWriter,
    problems: &mut Vec<Problem>,
) -> Result<()> {
    let mut artifacts_by_analysis: HashMap<Uuid, Artifacts> = HashMap::new();
    for artifact in Artifact::belonging_to(&page)
        .select(Artifact::as_select())
        .load(conn)
        .step("reading artifacts")?
    {
        let analysis_id = artifact.analysis_id;
        artifacts_by_analysis.entry(analysis_id).or_default().latest = Some(artifact);
    }
    for version in ArtifactVersion::belonging_to(&page)
        .select(ArtifactVersion::as_select())
        .load(conn)
        .step("reading older artifact versions")?
    {
        artifacts_by_analysis
            .entry(version.analysis_id)
            .or_default()
            .older
            .push(Artifact::from(version));
    }
    let ids: Vec<Uuid> = page.iter().map(|analysis| analysis.id).collect();
    let counts: HashMap<Uuid, i64> = chunks::table
        .filter(chunks::analysis_id.eq_any(&ids))
        .group_by(chunks::analysis_id)
        .select((chunks::analysis_id, diesel::dsl::count_star()))
        .load::<(Uuid, i64)>(conn)
        .step("counting chunks")?
        .into_iter()
        .collect();
    let mut rest = page.as_slice();
    while !rest.is_empty() {
        // The next analyses whose chunks fit one query together (at least one analysis).
        let mut take = 0;
        let mut total = 0;
        while take < rest.len() {
            let chunks = counts.get(&rest[take].id).copied().unwrap_or(0);
            if take > 0 && total + chunks > CHUNKS_PER_QUERY {
                break;
            }
            total += chunks;
            take += 1;
        }
        let (group, next) = rest.split_at(take);
        rest = next;
        if total > CHUNKS_PER_QUERY {
            // One analysis larger than a query: its chunks a window at a time.
            let analysis = &group[0];
            begin(writer, analysis, problems)?;
            let mut after = -1;
            loop {
                interrupt::check()?;
                let window: Vec<ChunkText> = chunks::table
                    .filter(chunks::analysis_id.eq(analysis.id))
                    .filter(chunks::chunk_index.gt(after))
                    .select(ChunkText::as_select())
                    .order(chunks::chunk_index)
                    .limit(CHUNKS_PER_QUERY)
                    .load(conn)
                    .step("reading chunks")?;
                let Some(last) = window.last() else { break };
                after = last.chunk_index;
                for chunk in window {
                    write_chunk(writer, analysis, chunk, problems)?;
                }
            }
            end(
                writer,
                analysis,
                artifacts_by_analysis.remove(&analysis.id),
                problems,
            )?;
            continue;
        }
        let chunks_by_analysis = ChunkText::belonging_to(group)
            .select(ChunkText::as_select())
            .order((chunks::analysis_id, chunks::chunk_index))
            .load(conn)
            .step("reading chunks")?
            .grouped_by(group);
        for (analysis, chunks) in group.iter().zip(chunks_by_analysis) {
            begin(writer, analysis, problems)?;
            for chunk in chunks {
                write_chunk(writer, analysis, chunk, problems)?;
            }
            end(
                writer,
                analysis,
                artifacts_by_analysis.remove(&analysis.id),
                problems,
            )?;
        }
    }
    Ok(())
}

fn begin(
    writer: &mut BackupWriter,
    analysis: &Analysis,
    problems: &mut Vec<Problem>,
) -> Result<()> {
    let head = crate::backup_file::record::BackupAnalysisHead::from(analysis.clone());
    problems.extend(validate::database_head_problems(&head));
    writer
        .begin_analysis(&head)
        .wrap_err_with(|| format!("writing analysis {}", analysis.id))
}

fn write_chunk(
    writer: &mut BackupWriter,
    analysis: &Analysis,
    chunk: ChunkText,
    problems: &mut Vec<Problem>,
) -> Result<()> {
    let chunk = BackupChunk::from(chunk);
    problems.extend(validate::database_chunk_problems(analysis.id, &chunk));
    writer
        .write_chunk(&chunk)
        .wrap_err_with(|| format!("writing chunk {} of analysis {}", chunk.id, analysis.id))
}

/// An analysis's artifact (the row of `artifacts`) and its older versions.
#[derive(Default)]
struct Artifacts {
    latest: Option<Artifact>,
    older: Vec<Artifact>,
}

/// Ends an analysis with its artifacts: the row of `artifacts` as `artifact`, those of
/// `artifact_versions` as `artifact_versions`, oldest first.
fn end(
    writer: &mut BackupWriter,
    analysis: &Analysis,
    artifacts: Option<Artifacts>,
    problems: &mut Vec<Problem>,
) -> Result<()> {
    let artifacts = artifacts.unwrap_or_default();
    let latest = artifacts.latest.map(BackupArtifact::from);
    let mut older: Vec<BackupArtifact> = artifacts
        .older
        .into_iter()
        .map(BackupArtifact::from)
        .collect();
    latest_last(&mut older);
    for artifact in older.iter().chain(&latest) {
        problems.extend(validate::database_artifact_problems(analysis.id, artifact));
    }
    writer
        .end_analysis(latest.as_ref(), &older)
        .wrap_err_with(|| format!("writing analysis {}", analysis.id))
}

/// The file-level keys kept from the files restored (`dataset_extras`).
fn file_extras(conn: &mut PgConnection) -> Result<FileExtras> {
    let rows: Vec<DatasetExtra> = dataset_extras::table
        .select(DatasetExtra::as_select())
        .load(conn)
        .step("reading the file-level keys")?;
    Ok(FileExtras::from_rows(
        rows.into_iter().map(|row| (row.key, row.value)),
    ))
}
