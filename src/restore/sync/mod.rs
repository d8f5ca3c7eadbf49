//! `restore --sync`: makes the dataset equal to the file within the file's scope, in one
//! transaction. Rows of the file the database lacks are inserted, rows that differ are
//! updated in place, and rows of the scope that the file no longer holds are deleted; only
//! chunks whose text changed are embedded again (through the cache), and the vectors of the
//! others stay as they are.
//!
//! The scope is the file's `status_filter`: a file of `completed` analyses never deletes an
//! analysis of another status, nor a golden query expecting a chunk outside it. A file
//! without one is scoped to the statuses it holds; the safety backup of a sync lists its
//! analyses (`(listed)`) and deletes none it does not list when synced back.
//!
//! Three reads of the file: the validation, the comparison (which notes in temp tables what
//! to write and what the file no longer holds, so memory stays flat), and the writes. In
//! between come the confirmation, the safety backup of every analysis the sync deletes or
//! changes, and the deletions that free the places the writes take. A change small for the
//! table keeps the vector index and lets PostgreSQL update it; a large one drops it and
//! builds it once at the end, by the rule of [`super::bulk`].

pub mod apply;
pub mod diff;
pub mod tables;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use color_eyre::eyre::bail;
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use serde::Serialize;

use self::diff::Differ;
use super::{load, read_windows, Embedding, FileLevel, Input};
use crate::backup::{ALL_STATUSES, LISTED_ANALYSES};
use crate::backup_file::record::BackupQuery;
use crate::backup_file::records::Record;
use crate::compare::{same_extra, same_once_stored};
use crate::db::QueryContext;
use crate::embed::cache::CachedEmbedder;
use crate::interrupt;
use crate::models::{NewQuery, Query};
use crate::progress::Progress;
use crate::schema::{chunks, dataset_extras, queries};

/// Which analyses of the database a sync may delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every analysis (`status_filter: "all"`).
    All,
    /// The analyses of one status.
    Status(String),
    /// The statuses of the file's analyses (a file that names no `status_filter`).
    StatusesOfFile,
    /// Only the analyses the file lists (a sync's safety backup).
    Listed,
}

impl Scope {
    /// The scope of a file whose metadata says `status_filter`.
    pub fn of_file(status_filter: Option<&str>) -> Scope {
        match status_filter {
            None => Scope::StatusesOfFile,
            Some(ALL_STATUSES) => Scope::All,
            Some(LISTED_ANALYSES) => Scope::Listed,
            Some(status) => Scope::Status(status.to_string()),
        }
    }

    /// The scope in words, for the plan and the report.
    pub fn describe(&self) -> String {
        match self {
            Scope::All => "every analysis (status_filter \"all\")".into(),
            Scope::Status(status) => format!("the analyses of status {status:?}"),
            Scope::StatusesOfFile => {
                "the statuses the file's analyses have (the file names no status_filter)".into()
            }
            Scope::Listed => "only the analyses the file lists".into(),
        }
    }
}

/// Rows of one table: to insert, update, delete, and already as the file has them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TableChanges {
    pub insert: u64,
    pub update: u64,
    pub delete: u64,
    pub unchanged: u64,
}

impl TableChanges {
    fn changes(&self) -> u64 {
        self.insert + self.update + self.delete
    }
}

/// What a sync does; the dry run prints it, the sync does exactly it.
#[derive(Debug, Default, Serialize)]
pub struct SyncPlan {
    pub scope: String,
    pub analyses: TableChanges,
    pub chunks: TableChanges,
    /// Latest artifacts and older versions together; an artifact that moves between them
    /// (or to another analysis) is updated.
    pub artifacts: TableChanges,
    pub queries: TableChanges,
    /// The file-level keys (`dataset_extras`) set to the file's value or deleted.
    pub file_keys_to_change: Vec<String>,
    /// Chunks that need a vector: those inserted and those whose text changed.
    pub embeddings_needed: u64,
    /// Of those, what the provider computes and what the cache gives (`None`: not looked up,
    /// or no provider configured).
    pub embeddings_to_compute: Option<u64>,
    pub embeddings_reused: Option<u64>,
    pub embedding_requests_needed: Option<u64>,
    /// Whether the vector index is dropped and built again once (a large change), instead of
    /// updated row by row.
    pub index_rebuild: bool,
    /// Why the sync would refuse to run (the dry run with a provider configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

impl SyncPlan {
    /// Nothing to write: the database already equals the file within its scope.
    pub fn changes_nothing(&self) -> bool {
        self.analyses.changes()
            + self.chunks.changes()
            + self.artifacts.changes()
            + self.queries.changes()
            == 0
            && self.file_keys_to_change.is_empty()
    }

    /// Whether the sync deletes or overwrites something (then a safety backup comes first).
    pub fn loses_something(&self) -> bool {
        [self.analyses, self.chunks, self.artifacts, self.queries]
            .iter()
            .any(|table| table.update + table.delete > 0)
            || !self.file_keys_to_change.is_empty()
    }
}

/// What a sync did.
#[derive(Debug)]
pub struct Synced {
    pub plan: SyncPlan,
    pub embeddings_computed: u64,
    pub embeddings_reused: u64,
    pub safety_backup: Option<PathBuf>,
}

/// The queries the sync writes and deletes.
#[derive(Default)]
struct QueryWrites<'a> {
    insert: Vec<&'a BackupQuery>,
    update: Vec<&'a BackupQuery>,
    delete: Vec<String>,
}

/// The comparison of the whole file with the database.
struct Survey<'a> {
    plan: SyncPlan,
    queries: QueryWrites<'a>,
    file_keys_delete: Vec<String>,
    /// The chunks the table holds, and the statements that build its vector indexes.
    chunks_in_table: u64,
}

/// The dry run: the plan of syncing `input`, computed in a transaction that is rolled back.
pub fn plan(
    conn: &mut PgConnection,
    input: Input,
    file_level: FileLevel,
    scope: &Scope,
    embedder: Option<&CachedEmbedder>,
    window_chunks: usize,
) -> Result<(SyncPlan, tables::Listing)> {
    let mut outcome = None;
    let rolled_back = conn.transaction::<(), diesel::result::Error, _>(|conn| {
        outcome = Some((|| {
            tables::create(conn, scope)?;
            let mut survey = survey(conn, input, file_level, scope, window_chunks)?;
            if let Some(embedder) = embedder {
                count_embedding(conn, input, embedder, window_chunks, &mut survey.plan)?;
                let model = &embedder.client.info().model;
                if survey.plan.embeddings_needed > 0 {
                    if let Err(refused) = refuse_another_model(conn, model) {
                        survey.plan.refused = Some(refused.to_string());
                    }
                }
            }
            let mut listing = Vec::new();
            if log::log_enabled!(log::Level::Debug) {
                listing = tables::listing(conn)?;
                let queries = &survey.queries;
                for (what, ids) in [
                    (
                        "insert",
                        queries
                            .insert
                            .iter()
                            .map(|q| q.id.clone())
                            .collect::<Vec<_>>(),
                    ),
                    (
                        "update",
                        queries.update.iter().map(|q| q.id.clone()).collect(),
                    ),
                    ("delete", queries.delete.clone()),
                ] {
                    listing.extend(
                        ids.into_iter()
                            .map(|id| (what.to_string(), "query".to_string(), id)),
                    );
                }
            }
            Ok((survey.plan, listing))
        })());
        Err(diesel::result::Error::RollbackTransaction)
    });
    match (outcome, rolled_back) {
        (Some(outcome), Err(diesel::result::Error::RollbackTransaction)) => outcome,
        (_, Err(e)) => Err(e).step("rolling back the dry run"),
        _ => bail!("internal error: the dry run was not rolled back"),
    }
}

/// Compares the file with the database and notes in the temp tables what to write and what
/// to delete.
fn survey<'a>(
    conn: &mut PgConnection,
    input: Input,
    file_level: FileLevel<'a>,
    scope: &Scope,
    window_chunks: usize,
) -> Result<Survey<'a>> {
    let mut plan = SyncPlan {
        scope: scope.describe(),
        ..SyncPlan::default()
    };
    let chunks_in_table: i64 = chunks::table
        .count()
        .get_result(conn)
        .step("counting the chunks")?;

    let mut differ = Differ::default();
    each_window(input, window_chunks, |records| {
        let diff = differ.diff(conn, &records)?;
        tables::add_file_rows(conn, &diff.file_rows)?;
        tables::add_changes(conn, &diff.changes)?;
        for change in &diff.changes {
            let table = match change.kind {
                diff::Kind::Analysis => &mut plan.analyses,
                diff::Kind::Chunk => &mut plan.chunks,
                diff::Kind::Artifact => &mut plan.artifacts,
            };
            match change.fate {
                diff::Fate::Insert => table.insert += 1,
                diff::Fate::Update | diff::Fate::Move => table.update += 1,
            }
        }
        for (table, unchanged) in &diff.unchanged {
            match *table {
                "analyses" => plan.analyses.unchanged += unchanged,
                "chunks" => plan.chunks.unchanged += unchanged,
                _ => plan.artifacts.unchanged += unchanged,
            }
        }
        plan.embeddings_needed += diff.texts_to_embed.len() as u64;
        Ok(())
    })?;
    let gone = tables::find_gone(conn, scope)?;
    // The queries of the scope (nothing is written before the survey ends).
    let queries_in_scope = tables::queries_in_scope(conn, scope)?;
    plan.analyses.delete = gone.analyses;
    plan.chunks.delete = gone.chunks;
    plan.artifacts.delete = gone.artifacts;

    let queries = survey_queries(conn, file_level.queries, &queries_in_scope, &mut plan)?;
    let (to_change, file_keys_delete) = survey_file_keys(conn, file_level)?;
    plan.file_keys_to_change = to_change;
    plan.file_keys_to_change
        .extend(file_keys_delete.iter().cloned());
    plan.file_keys_to_change.sort();

    let index_rows = plan.chunks.insert + plan.chunks.update;
    plan.index_rebuild = !load::vector_indexes(conn)?.is_empty()
        && load::may_rebuild_vector_indexes(conn)?
        && super::bulk::bulk_pays(index_rows, chunks_in_table as u64);
    Ok(Survey {
        plan,
        queries,
        file_keys_delete,
        chunks_in_table: chunks_in_table as u64,
    })
}

/// Adds to the plan what embedding takes: the records are gathered as the writes gather them
/// (the same writer, counting instead of writing), so the requests are the writes' requests.
fn count_embedding(
    conn: &mut PgConnection,
    input: Input,
    embedder: &CachedEmbedder,
    window_chunks: usize,
    plan: &mut SyncPlan,
) -> Result<()> {
    let model = embedder.client.info().model.clone();
    let counted = write_or_count(conn, input, embedder, None, &model, window_chunks)?;
    plan.embeddings_to_compute = Some(counted.embeddings_computed);
    plan.embeddings_reused = Some(counted.embeddings_reused);
    plan.embedding_requests_needed = Some(counted.embedding_requests);
    Ok(())
}

/// The golden queries: the file's are inserted or updated, those of the scope the file lacks
/// are deleted.
fn survey_queries<'a>(
    conn: &mut PgConnection,
    file: &'a [BackupQuery],
    in_scope: &[String],
    plan: &mut SyncPlan,
) -> Result<QueryWrites<'a>> {
    let ids: Vec<&str> = file.iter().map(|query| query.id.as_str()).collect();
    let rows: HashMap<String, Query> = queries::table
        .filter(queries::id.eq_any(&ids))
        .select(Query::as_select())
        .load(conn)
        .step("reading the golden queries to compare with the file")?
        .into_iter()
        .map(|row| (row.id.clone(), row))
        .collect();
    let mut writes = QueryWrites::default();
    for query in file {
        match rows.get(&query.id) {
            None => writes.insert.push(query),
            Some(row) if query_differs(query, row) => writes.update.push(query),
            Some(_) => plan.queries.unchanged += 1,
        }
    }
    let in_file: HashSet<&str> = ids.into_iter().collect();
    writes.delete = in_scope
        .iter()
        .filter(|id| !in_file.contains(id.as_str()))
        .cloned()
        .collect();
    writes.delete.sort();
    plan.queries.insert = writes.insert.len() as u64;
    plan.queries.update = writes.update.len() as u64;
    plan.queries.delete = writes.delete.len() as u64;
    Ok(writes)
}

fn query_differs(file: &BackupQuery, row: &Query) -> bool {
    let expected: Vec<Option<uuid::Uuid>> =
        file.expected_chunk_ids.iter().copied().map(Some).collect();
    let unresolved: Vec<Option<String>> = file
        .unresolved_expected_chunks
        .iter()
        .cloned()
        .map(Some)
        .collect();
    !(file.query == row.query
        && expected == row.expected_chunk_ids
        && file.category == row.category
        && file.difficulty == row.difficulty
        && unresolved == row.unresolved_expected_chunks
        && same_extra(&file.extra, &row.extra))
}

/// The file-level keys to set (new or with another value) and to delete.
fn survey_file_keys(
    conn: &mut PgConnection,
    file_level: FileLevel,
) -> Result<(Vec<String>, Vec<String>)> {
    let kept: HashMap<String, serde_json::Value> = dataset_extras::table
        .select((dataset_extras::key, dataset_extras::value))
        .load::<(String, serde_json::Value)>(conn)
        .step("reading the file-level keys kept")?
        .into_iter()
        .collect();
    let mut to_set = Vec::new();
    let mut in_file = HashSet::new();
    for (key, value) in file_level.extras.rows() {
        in_file.insert(key.to_string());
        match kept.get(key) {
            Some(kept) if same_once_stored(&value, kept) => {}
            _ => to_set.push(key.to_string()),
        }
    }
    let mut to_delete: Vec<String> = kept
        .into_keys()
        .filter(|key| !in_file.contains(key))
        .collect();
    to_delete.sort();
    Ok((to_set, to_delete))
}

/// Makes the database equal to the file within `scope`, all or nothing. `confirm` sees the
/// plan before anything is written (and may refuse); a safety backup of every analysis whose
/// rows are deleted or changed is written to `safety_path` first.
#[allow(clippy::too_many_arguments)]
pub fn sync(
    conn: &mut PgConnection,
    input: Input,
    file_level: FileLevel,
    scope: &Scope,
    safety_path: &Path,
    embedding: Embedding,
    progress: &Progress,
    confirm: &dyn Fn(&SyncPlan) -> Result<()>,
) -> Result<Synced> {
    let client = embedding.embedder.client;
    let (model, dims) = (client.info().model.clone(), client.info().dims);
    let window_chunks = super::window_chunks(client.batch_size(), client.concurrency());
    let rolled_back = "the sync was rolled back: the database holds what it held before";
    interrupt::set_outcome(rolled_back);
    let Embedding { embedder, mut side } = embedding;
    let safety_written = std::cell::Cell::new(false);
    let synced = crate::db::in_final_transaction(conn, |conn| {
        progress.step("locking the dataset's tables");
        diesel::sql_query(
            "LOCK TABLE analyses, chunks, artifacts, artifact_versions, queries, dataset_extras \
             IN EXCLUSIVE MODE",
        )
        .execute(conn)
        .step("locking the tables")?;
        tables::create(conn, scope)?;
        progress.step("comparing the file with the database");
        let survey = survey(conn, input, file_level, scope, window_chunks)?;
        let mut synced = Synced {
            plan: SyncPlan::default(),
            embeddings_computed: 0,
            embeddings_reused: 0,
            safety_backup: None,
        };
        if survey.plan.changes_nothing() {
            input.source.check_unchanged()?;
            synced.plan = survey.plan;
            return Ok(synced);
        }
        if survey.plan.embeddings_needed > 0 {
            refuse_another_model(conn, &model)?;
        }
        confirm(&survey.plan)?;
        if survey.plan.loses_something() {
            progress.step("writing the safety backup");
            let mut queries: Vec<String> = survey
                .queries
                .update
                .iter()
                .map(|query| query.id.clone())
                .chain(survey.queries.delete.iter().cloned())
                .collect();
            queries.sort();
            tables::find_affected(conn, &queries)?;
            crate::backup::write_safety_backup(
                conn,
                safety_path,
                crate::backup::Selection::Listed {
                    table: tables::AFFECTED,
                    queries: &queries,
                },
            )?;
            log::info!(
                "safety backup of the rows the sync changes or deletes: {}",
                safety_path.display()
            );
            interrupt::set_outcome(format!(
                "{rolled_back} (the safety backup {} was written all the same)",
                safety_path.display()
            ));
            synced.safety_backup = Some(safety_path.to_path_buf());
            safety_written.set(true);
        }

        progress.step("deleting what the file no longer holds");
        tables::delete_gone_rows(conn)?;
        tables::park_moving_chunks(conn)?;
        let index_definitions = if survey.plan.index_rebuild {
            log::info!(
                "{} chunks to write into a table of {}: the vector index is built again once, after the writes",
                survey.plan.chunks.insert + survey.plan.chunks.update,
                survey.chunks_in_table
            );
            load::drop_vector_indexes(conn)?
        } else {
            Vec::new()
        };
        progress.step("writing the changes");
        let written = write_or_count(
            conn,
            input,
            &embedder,
            Some(&mut side),
            &model,
            window_chunks,
        )?;
        tables::drop_pending_vectors_of_old_texts(conn)?;
        let deleted_analyses = tables::delete_gone_analyses(conn)?;
        write_queries(conn, &survey.queries)?;
        write_file_keys(
            conn,
            file_level,
            &survey.plan.file_keys_to_change,
            &survey.file_keys_delete,
        )?;
        interrupt::check()?;
        if !index_definitions.is_empty() {
            progress.step("building the vector index");
            load::build_indexes(conn, &index_definitions)?;
        }

        let plan = &survey.plan;
        let planned = [
            (
                "analyses inserted",
                plan.analyses.insert,
                written.inserted.analyses,
            ),
            (
                "analyses updated",
                plan.analyses.update,
                written.updated.analyses,
            ),
            ("analyses deleted", plan.analyses.delete, deleted_analyses),
            (
                "chunks inserted",
                plan.chunks.insert,
                written.inserted.chunks,
            ),
            ("chunks updated", plan.chunks.update, written.updated.chunks),
            (
                "artifacts inserted",
                plan.artifacts.insert,
                written.inserted.artifacts,
            ),
            (
                "artifacts updated",
                plan.artifacts.update,
                written.updated.artifacts,
            ),
        ];
        for (what, planned, done) in planned {
            if planned != done {
                bail!("internal error: the sync planned {planned} {what} but wrote {done}; rolled back");
            }
        }
        let bad = written_chunks_with_bad_embeddings(conn, dims)?;
        if bad > 0 {
            bail!("{bad} chunks written have no embedding of {dims} dimensions; rolled back");
        }
        input.source.check_unchanged()?;
        synced.plan = survey.plan;
        synced.embeddings_computed = written.embeddings_computed;
        synced.embeddings_reused = written.embeddings_reused;
        Ok(synced)
    });
    synced.map_err(|e| {
        if crate::error::exit_code_of(&e) == crate::error::Exit::Interrupted {
            return e;
        }
        let kept = if safety_written.get() {
            format!(
                " (the safety backup {} was written all the same)",
                safety_path.display()
            )
        } else {
            String::new()
        };
        e.wrap_err(format!("{rolled_back}{kept}"))
    })
}

/// Runs the file's records through the writer: written (`side`: the connection the embedding
/// cache goes through), or only counted (`None`: the dry run).
fn write_or_count(
    conn: &mut PgConnection,
    input: Input,
    embedder: &CachedEmbedder,
    side: Option<&mut PgConnection>,
    model: &str,
    window_chunks: usize,
) -> Result<apply::Written> {
    let mut writer = apply::Writer {
        embedder,
        side,
        model,
        written: apply::Written::default(),
        head: None,
        target_texts: window_chunks,
        pending: apply::Pending::default(),
    };
    each_window(input, window_chunks, |records| {
        writer.add_window(conn, records)
    })?;
    writer.flush(conn)?;
    Ok(writer.written)
}

/// Reads the file's windows on a thread of its own (parsing the file while the database
/// works) and hands each to `on_window` here.
fn each_window(
    input: Input,
    window_chunks: usize,
    mut on_window: impl FnMut(Vec<Record>) -> Result<()>,
) -> Result<()> {
    crate::pipeline::run(
        |feed| {
            read_windows(input, window_chunks, |records| {
                if feed.stopped() {
                    bail!("stopped");
                }
                feed.send(records)
            })
        },
        |records| {
            interrupt::check()?;
            on_window(records)
        },
    )
}

/// The vectors a sync writes must come from the model of the vectors it keeps: a mix would
/// make the search compare vectors of two models.
fn refuse_another_model(conn: &mut PgConnection, model: &str) -> Result<()> {
    match crate::compare::most_common_model(conn)? {
        Some(usual) if usual != model => Err(crate::error::invalid_input(format!(
            "the chunks of the database are embedded by {usual} but the configured provider makes \
             {model}: the sync would mix vectors of two models; pass the provider options the \
             database was restored with, or move every chunk to {model} first with \
             `golden regenerate-embeddings` and the same options"
        ))),
        _ => Ok(()),
    }
}

fn write_queries(conn: &mut PgConnection, writes: &QueryWrites) -> Result<()> {
    diesel::delete(queries::table.filter(queries::id.eq_any(&writes.delete)))
        .execute(conn)
        .step("deleting the golden queries the file no longer holds")?;
    for query in &writes.update {
        let row = NewQuery::from_backup(query);
        diesel::update(queries::table.find(&query.id))
            .set((
                queries::query.eq(row.query),
                queries::expected_chunk_ids.eq(&row.expected_chunk_ids),
                queries::category.eq(row.category),
                queries::difficulty.eq(row.difficulty),
                queries::extra.eq(&row.extra),
                queries::unresolved_expected_chunks.eq(&row.unresolved_expected_chunks),
            ))
            .execute(conn)
            .step("updating a golden query")?;
    }
    let rows: Vec<NewQuery> = writes
        .insert
        .iter()
        .map(|query| NewQuery::from_backup(query))
        .collect();
    for part in rows.chunks(1_000) {
        diesel::insert_into(queries::table)
            .values(part)
            .execute(conn)
            .step("inserting the golden queries")?;
    }
    Ok(())
}

fn write_file_keys(
    conn: &mut PgConnection,
    file_level: FileLevel,
    changed: &[String],
    delete: &[String],
) -> Result<()> {
    diesel::delete(dataset_extras::table.filter(dataset_extras::key.eq_any(delete)))
        .execute(conn)
        .step("deleting the file-level keys the file no longer holds")?;
    for (key, value) in file_level.extras.rows() {
        if !changed.iter().any(|changed| changed == key) {
            continue;
        }
        diesel::insert_into(dataset_extras::table)
            .values((
                dataset_extras::key.eq(key),
                dataset_extras::value.eq(value.as_ref()),
            ))
            .on_conflict(dataset_extras::key)
            .do_update()
            .set(dataset_extras::value.eq(value.as_ref()))
            .execute(conn)
            .step("keeping the file-level keys")?;
    }
    Ok(())
}

/// The chunks the sync inserted or gave a new text that have no vector of `dims`.
fn written_chunks_with_bad_embeddings(conn: &mut PgConnection, dims: usize) -> Result<i64> {
    #[derive(QueryableByName)]
    struct Bad {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        bad: i64,
    }
    let bad: Bad = diesel::sql_query(
        "SELECT count(*) AS bad FROM chunks c JOIN sync_todo t ON t.kind = 'c' AND t.id = c.id \
         WHERE (t.fate = 'i' OR t.content_changed) \
         AND (c.embedding IS NULL OR vector_dims(c.embedding) <> $1)",
    )
    .bind::<diesel::sql_types::Integer, _>(dims as i32)
    .get_result(conn)
    .step("checking the written embeddings")?;
    Ok(bad.bad)
}
