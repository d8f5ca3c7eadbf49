//! `restore --dry-run`: what a restore would do, computed without writing: rows to insert
//! and to skip per table (golden queries too) and why, embeddings to compute (after the
//! cache and identical texts) and the requests they take. It reads the file in the restore's
//! own windows and decides each row with the restore's own rules (`existing`), so the plan
//! and the restore agree.

use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use serde::Serialize;

use super::existing::{Existing, Fate};
use super::{chunks_to_embed, load, read_windows, Input, Mode};
use crate::backup_file::record::BackupQuery;
use crate::backup_file::records::Record;
use crate::db::QueryContext;
use crate::embed::cache::CachedEmbedder;
use crate::embed::InputKind;
use crate::schema::queries;
use crate::validate::Counts;

#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub analyses_to_insert: u64,
    pub analyses_to_skip: u64,
    pub chunks_to_insert: u64,
    /// Chunks whose id the database has, or whose place another chunk holds.
    pub chunks_to_skip: u64,
    /// Of those, the chunks whose (analysis_id, chunk_index) another chunk holds.
    pub chunks_to_skip_place_taken: u64,
    pub artifacts_to_insert: u64,
    pub artifacts_to_skip: u64,
    /// Of those, the artifacts whose analysis has another artifact already.
    pub artifacts_to_skip_place_taken: u64,
    pub queries_to_insert: u64,
    /// Golden queries whose id the database already has (append keeps those).
    pub queries_to_skip: u64,
    /// Chunks that need a vector: the chunks to insert.
    pub embeddings_needed: u64,
    /// Of those, the vectors the provider computes (`None`: no provider configured).
    pub embeddings_to_compute: Option<u64>,
    /// And those taken from the cache or shared by identical texts.
    pub embeddings_reused: Option<u64>,
    /// Requests to the provider (`None` when no provider is configured).
    pub embedding_requests_needed: Option<u64>,
    /// The rows a replace would delete (after a safety backup).
    pub rows_to_delete: Option<Counts>,
    /// Artifacts whose analysis is not in the file: not restored as rows (kept with the
    /// file-level keys).
    pub artifacts_left_out: u64,
    /// The dialect the file was read as.
    pub dialect: String,
    /// Whether the restore would take the bulk path (one transaction, the vector index built
    /// once): always for a replace, for an append when `bulk::choose` says so.
    pub bulk: bool,
}

/// The plan of restoring `input` in `mode`, windows of `window_chunks` as the restore
/// would, through `embedder` when a provider is configured.
pub fn plan(
    conn: &mut PgConnection,
    input: Input,
    queries: &[BackupQuery],
    mode: Mode,
    embedder: Option<&CachedEmbedder>,
    window_chunks: usize,
) -> Result<Plan> {
    let mut plan = Plan::default();
    if mode == Mode::Replace {
        plan.rows_to_delete = Some(load::table_counts(conn)?);
    }
    if embedder.is_some() {
        plan.embeddings_to_compute = Some(0);
        plan.embeddings_reused = Some(0);
        plan.embedding_requests_needed = Some(0);
    }
    read_windows(input, window_chunks, |records| {
        count(conn, &records, mode, embedder, &mut plan)
    })?;
    count_queries(conn, queries, mode, &mut plan)?;
    Ok(plan)
}

fn count(
    conn: &mut PgConnection,
    records: &[Record],
    mode: Mode,
    embedder: Option<&CachedEmbedder>,
    plan: &mut Plan,
) -> Result<()> {
    if records.is_empty() {
        return Ok(());
    }
    let existing = match mode {
        Mode::Append => {
            Existing::lookup(conn, records).step("looking up the rows that already exist")?
        }
        Mode::Replace => Existing::none(),
    };
    let fates: Vec<Fate> = records.iter().map(|record| existing.fate(record)).collect();
    for (record, fate) in records.iter().zip(&fates) {
        let (insert, skip, place_taken) = match record {
            Record::Analysis(_) => (
                &mut plan.analyses_to_insert,
                &mut plan.analyses_to_skip,
                None,
            ),
            Record::Chunk { .. } => (
                &mut plan.chunks_to_insert,
                &mut plan.chunks_to_skip,
                Some(&mut plan.chunks_to_skip_place_taken),
            ),
            Record::Artifact { .. } => (
                &mut plan.artifacts_to_insert,
                &mut plan.artifacts_to_skip,
                Some(&mut plan.artifacts_to_skip_place_taken),
            ),
            Record::End { .. } => continue,
        };
        match fate {
            Fate::Insert => *insert += 1,
            Fate::Exists => *skip += 1,
            Fate::PlaceTaken => {
                *skip += 1;
                if let Some(place_taken) = place_taken {
                    *place_taken += 1;
                }
            }
        }
    }
    let to_embed = chunks_to_embed(records, &fates);
    plan.embeddings_needed += to_embed.len() as u64;
    if let Some(embedder) = embedder {
        let texts: Vec<&str> = to_embed.iter().map(|(_, text)| *text).collect();
        let (computed, reused) = embedder.plan(conn, &texts, InputKind::Document)?;
        for (total, add) in [
            (&mut plan.embeddings_to_compute, computed),
            (&mut plan.embeddings_reused, reused),
            (
                &mut plan.embedding_requests_needed,
                embedder.requests_for(computed),
            ),
        ] {
            *total = Some(total.unwrap_or(0) + add);
        }
    }
    Ok(())
}

/// Append inserts the queries whose id is new; replace inserts every one.
fn count_queries(
    conn: &mut PgConnection,
    queries: &[BackupQuery],
    mode: Mode,
    plan: &mut Plan,
) -> Result<()> {
    let ids: Vec<&str> = queries.iter().map(|query| query.id.as_str()).collect();
    let existing: i64 = match mode {
        Mode::Append => queries::table
            .filter(queries::id.eq_any(&ids))
            .count()
            .get_result(conn)
            .step("looking up the queries that already exist")?,
        Mode::Replace => 0,
    };
    plan.queries_to_skip = existing as u64;
    plan.queries_to_insert = (queries.len() as u64).saturating_sub(existing as u64);
    Ok(())
}
