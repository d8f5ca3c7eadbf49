//! Writing restored rows. Append mode inserts each batch (ten analyses, or fewer when they
//! hold many chunks) in a transaction of its own, skipping ids that exist; replace mode empties the tables, drops the vector
//! indexes, COPYs every batch and builds the indexes once at the end, all inside the one
//! transaction the caller holds, so a failure anywhere leaves the old data as it was.

use std::collections::HashMap;

use color_eyre::eyre::{bail, WrapErr};
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use pgvector::Vector;
use uuid::Uuid;

use super::existing::Fate;
use crate::backup_file::extras::{add_missing, sort_orphans, FileExtras, ORPHAN_ARTIFACTS_KEY};
use crate::backup_file::record::BackupQuery;
use crate::backup_file::records::Record;
use crate::db::{self, QueryContext};
use crate::models::{NewAnalysis, NewArtifact, NewArtifactVersion, NewChunk, NewQuery};
use crate::schema::{analyses, artifact_versions, artifacts, chunks, dataset_extras, queries};
use crate::validate::Counts;

/// libpq takes at most 65 535 bind parameters in one statement; a chunk row has nine.
const CHUNK_ROWS_PER_INSERT: usize = 5_000;
/// Memory for building the vector indexes once: far faster than the 64 MB default, with
/// which pgvector warns that the HNSW graph no longer fits.
const INDEX_BUILD_MEMORY: &str = "1GB";

/// A batch of records, each with what happens to its row, and the vectors of the chunks to
/// insert. An analysis's records may span batches (its chunks are cut by count), in order.
pub struct EmbeddedBatch {
    pub records: Vec<(Record, Fate)>,
    pub vectors: HashMap<Uuid, Vector>,
}

impl EmbeddedBatch {
    /// Splits the batch into its records and its vectors, for [`rows`] to move the vectors.
    fn split(self) -> (Self, HashMap<Uuid, Vector>) {
        let EmbeddedBatch { records, vectors } = self;
        (
            EmbeddedBatch {
                records,
                vectors: HashMap::new(),
            },
            vectors,
        )
    }
}

/// Rows inserted, rows the batch held, and rows skipped because their place was taken, per
/// table.
#[derive(Debug, Default, Clone, Copy)]
pub struct BatchCounts {
    pub inserted: Counts,
    pub total: Counts,
    pub place_taken: Counts,
}

impl std::ops::AddAssign for BatchCounts {
    fn add_assign(&mut self, other: Self) {
        for (mine, theirs) in [
            (&mut self.inserted, other.inserted),
            (&mut self.total, other.total),
            (&mut self.place_taken, other.place_taken),
        ] {
            mine.analyses += theirs.analyses;
            mine.chunks += theirs.chunks;
            mine.artifacts += theirs.artifacts;
            mine.queries += theirs.queries;
        }
    }
}

struct Rows<'a> {
    analyses: Vec<NewAnalysis<'a>>,
    /// Extras that came after their analysis's chunks, for analyses not inserted by this
    /// batch: (id, the extras its head had, the late ones), set with an UPDATE once the
    /// batch is written.
    late_extras: Vec<(Uuid, serde_json::Value, serde_json::Value)>,
    chunks: Vec<NewChunk<'a>>,
    artifacts: Vec<NewArtifact<'a>>,
    artifact_versions: Vec<NewArtifactVersion<'a>>,
    total: Counts,
    place_taken: Counts,
}

/// The rows of `batch`; the vectors move from `vectors` into them (a batch's vectors are a few
/// megabytes: never copied).
fn rows<'a>(
    batch: &'a EmbeddedBatch,
    vectors: &mut HashMap<Uuid, Vector>,
    model: &'a str,
) -> Result<Rows<'a>> {
    let mut rows = Rows {
        analyses: Vec::new(),
        late_extras: Vec::new(),
        chunks: Vec::new(),
        artifacts: Vec::new(),
        artifact_versions: Vec::new(),
        total: Counts::default(),
        place_taken: Counts::default(),
    };
    for (record, fate) in &batch.records {
        let fate = *fate;
        match record {
            Record::Analysis(head) => {
                rows.total.analyses += 1;
                if fate == Fate::Insert {
                    rows.analyses.push(NewAnalysis::from(head));
                }
            }
            Record::Chunk { analysis_id, chunk } => {
                rows.total.chunks += 1;
                rows.place_taken.chunks += u64::from(fate == Fate::PlaceTaken);
                if fate != Fate::Insert {
                    continue;
                }
                let Some(vector) = vectors.remove(&chunk.id) else {
                    bail!("internal error: chunk {} has no vector to insert", chunk.id);
                };
                rows.chunks.push(NewChunk::from_backup(
                    chunk,
                    *analysis_id,
                    Some(vector),
                    Some(model),
                ));
            }
            Record::Artifact {
                analysis_id,
                artifact,
                latest,
            } => {
                rows.total.artifacts += 1;
                rows.place_taken.artifacts += u64::from(fate == Fate::PlaceTaken);
                if fate != Fate::Insert {
                    continue;
                }
                if *latest {
                    rows.artifacts
                        .push(NewArtifact::from_backup(artifact, *analysis_id));
                } else {
                    rows.artifact_versions
                        .push(NewArtifactVersion::from_backup(artifact, *analysis_id));
                }
            }
            Record::End {
                analysis_id,
                late_extra,
                head_extra,
            } => {
                if late_extra.is_empty() {
                    continue;
                }
                match rows.analyses.iter_mut().find(|row| row.id == *analysis_id) {
                    Some(row) => {
                        if let serde_json::Value::Object(extra) = &mut row.extra {
                            extra.extend(late_extra.clone());
                        }
                    }
                    None => rows.late_extras.push((
                        *analysis_id,
                        serde_json::Value::Object(head_extra.clone()),
                        serde_json::Value::Object(late_extra.clone()),
                    )),
                }
            }
        }
    }
    Ok(rows)
}

/// Adds the extras that came after an analysis's chunks to its row, when its head was in an
/// earlier batch, and only to the row this file's head wrote (its extra is exactly the head's):
/// a row an append skipped stays as it was, and a restore stopped between the two batches
/// adds them when run again.
fn set_late_extras(
    conn: &mut PgConnection,
    late: &[(Uuid, serde_json::Value, serde_json::Value)],
) -> Result<()> {
    use diesel::sql_types::{Jsonb, Uuid as SqlUuid};
    for (id, head, extra) in late {
        diesel::sql_query("UPDATE analyses SET extra = extra || $1 WHERE id = $2 AND extra = $3")
            .bind::<Jsonb, _>(extra)
            .bind::<SqlUuid, _>(id)
            .bind::<Jsonb, _>(head)
            .execute(conn)
            .step("adding an analysis's extra fields")?;
    }
    Ok(())
}

fn describe(batch: &EmbeddedBatch) -> String {
    let analysis_of = Record::analysis_id;
    let first = batch.records.first().map(|(record, _)| analysis_of(record));
    let last = batch.records.last().map(|(record, _)| analysis_of(record));
    match (first, last) {
        (Some(first), Some(last)) if first != last => {
            format!("the batch of analyses {first} … {last}")
        }
        (Some(only), _) => format!("the batch of analysis {only}"),
        _ => "an empty batch".into(),
    }
}

/// Inserts one batch in its own transaction, skipping ids that exist; checks that every
/// analysis of the batch is now there and every inserted chunk has a vector of `dims`.
/// `before_commit` runs last, inside the transaction (it proves the input file unchanged).
pub fn append_batch(
    conn: &mut PgConnection,
    batch: EmbeddedBatch,
    model: &str,
    dims: usize,
    before_commit: &dyn Fn() -> Result<()>,
) -> Result<BatchCounts> {
    let (batch, mut vectors) = batch.split();
    let batch = &batch;
    let rows = rows(batch, &mut vectors, model)?;
    crate::db::in_transaction(conn, |conn| {
        let analyses_inserted = diesel::insert_into(analyses::table)
            .values(&rows.analyses)
            .on_conflict_do_nothing()
            .execute(conn)
            .step("inserting analyses")?;
        let mut chunks_inserted = 0;
        for part in rows.chunks.chunks(CHUNK_ROWS_PER_INSERT) {
            chunks_inserted += diesel::insert_into(chunks::table)
                .values(part)
                // Any unique key: a row another program wrote since the window was looked
                // up is skipped too, and counted as skipped.
                .on_conflict_do_nothing()
                .execute(conn)
                .step("inserting chunks")?;
        }
        let artifacts_inserted = diesel::insert_into(artifacts::table)
            .values(&rows.artifacts)
            .on_conflict_do_nothing()
            .execute(conn)
            .step("inserting artifacts")?
            + diesel::insert_into(artifact_versions::table)
                .values(&rows.artifact_versions)
                .on_conflict_do_nothing()
                .execute(conn)
                .step("inserting older artifact versions")?;
        set_late_extras(conn, &rows.late_extras)?;

        let ids: Vec<Uuid> = batch
            .records
            .iter()
            .filter_map(|(record, _)| match record {
                Record::Analysis(head) => Some(head.id),
                _ => None,
            })
            .collect();
        let present: i64 = analyses::table
            .filter(analyses::id.eq_any(&ids))
            .count()
            .get_result(conn)
            .step("checking the batch")?;
        if present != ids.len() as i64 {
            bail!(
                "after the insert {present} of the batch's {} analyses are in the database",
                ids.len()
            );
        }
        let chunk_ids: Vec<Uuid> = rows.chunks.iter().map(|row| row.id).collect();
        let bad = chunks_with_bad_embeddings(conn, Some(&chunk_ids), dims)?;
        if bad > 0 {
            bail!("{bad} restored chunks have no embedding of {dims} dimensions");
        }
        before_commit()?;
        Ok(BatchCounts {
            inserted: Counts {
                analyses: analyses_inserted as u64,
                chunks: chunks_inserted as u64,
                artifacts: artifacts_inserted as u64,
                queries: 0,
            },
            total: rows.total,
            place_taken: rows.place_taken,
        })
    })
    .wrap_err_with(|| format!("restoring {}; that batch was rolled back", describe(batch)))
}

/// COPYs one batch into the emptied tables (replace mode, inside the caller's transaction).
pub fn copy_batch(
    conn: &mut PgConnection,
    batch: EmbeddedBatch,
    model: &str,
) -> Result<BatchCounts> {
    let (batch, mut vectors) = batch.split();
    let rows = rows(&batch, &mut vectors, model)?;
    let analyses_copied = diesel::copy_from(analyses::table)
        .from_insertable(&rows.analyses)
        .execute(conn)
        .step("copying analyses")?;
    let chunks_copied = diesel::copy_from(chunks::table)
        .from_insertable(&rows.chunks)
        .execute(conn)
        .step("copying chunks")?;
    let artifacts_copied = diesel::copy_from(artifacts::table)
        .from_insertable(&rows.artifacts)
        .execute(conn)
        .step("copying artifacts")?
        + diesel::copy_from(artifact_versions::table)
            .from_insertable(&rows.artifact_versions)
            .execute(conn)
            .step("copying older artifact versions")?;
    set_late_extras(conn, &rows.late_extras)?;
    let inserted = Counts {
        analyses: analyses_copied as u64,
        chunks: chunks_copied as u64,
        artifacts: artifacts_copied as u64,
        queries: 0,
    };
    Ok(BatchCounts {
        inserted,
        total: rows.total,
        place_taken: rows.place_taken,
    })
}

/// Inserts the golden queries, skipping ids that exist; returns how many were inserted.
/// With `replace`, the old queries are deleted first (inside the caller's transaction).
pub fn insert_queries(
    conn: &mut PgConnection,
    queries: &[BackupQuery],
    replace: bool,
) -> Result<u64> {
    if replace {
        diesel::delete(queries::table)
            .execute(conn)
            .step("deleting the old queries")?;
    }
    let rows: Vec<NewQuery> = queries.iter().map(NewQuery::from_backup).collect();
    let mut inserted = 0;
    for part in rows.chunks(1_000) {
        inserted += diesel::insert_into(queries::table)
            .values(part)
            .on_conflict(queries::id)
            .do_nothing()
            .execute(conn)
            .step("inserting the golden queries")?;
    }
    Ok(inserted as u64)
}

/// Keeps the file's keys beyond golden's (`dataset_extras`): with `replace`, instead of the
/// old ones; otherwise adding what the database lacks of them ([`add_missing`]: another
/// file's orphan artifacts and fixtures join the ones kept). Returns the places where the
/// file's value differs from the one kept.
pub fn write_file_extras(
    conn: &mut PgConnection,
    extras: &FileExtras,
    replace: bool,
) -> Result<Vec<String>> {
    if replace {
        diesel::delete(dataset_extras::table)
            .execute(conn)
            .step("deleting the old file-level keys")?;
    }
    let mut differing = Vec::new();
    for (key, value) in extras.rows() {
        let kept: Option<serde_json::Value> = if replace {
            None
        } else {
            dataset_extras::table
                .find(key)
                .select(dataset_extras::value)
                .first(conn)
                .optional()
                .step("reading the file-level keys kept")?
        };
        let value = match kept {
            None => value.into_owned(),
            Some(mut kept) => {
                let before = kept.clone();
                add_missing(&mut kept, value.as_ref(), key, &mut differing);
                if key == ORPHAN_ARTIFACTS_KEY {
                    sort_orphans(&mut kept);
                }
                if kept == before {
                    continue;
                }
                kept
            }
        };
        diesel::insert_into(dataset_extras::table)
            .values((
                dataset_extras::key.eq(key),
                dataset_extras::value.eq(&value),
            ))
            .on_conflict(dataset_extras::key)
            .do_update()
            .set(dataset_extras::value.eq(&value))
            .execute(conn)
            .step("keeping the file-level keys")?;
    }
    Ok(differing)
}

/// The rows of the dataset's tables.
pub fn table_counts(conn: &mut PgConnection) -> Result<Counts> {
    let queries: i64 = queries::table
        .count()
        .get_result(conn)
        .step("counting queries")?;
    let analyses: i64 = analyses::table
        .count()
        .get_result(conn)
        .step("counting analyses")?;
    let chunks: i64 = chunks::table
        .count()
        .get_result(conn)
        .step("counting chunks")?;
    let artifacts: i64 = artifacts::table
        .count()
        .get_result::<i64>(conn)
        .step("counting artifacts")?
        + artifact_versions::table
            .count()
            .get_result::<i64>(conn)
            .step("counting older artifact versions")?;
    Ok(Counts {
        analyses: analyses as u64,
        chunks: chunks as u64,
        artifacts: artifacts as u64,
        queries: queries as u64,
    })
}

/// Empties the dataset's row tables and drops the vector indexes on `chunks` (inside the caller's
/// transaction). Returns the statements that build the indexes again.
pub fn clear_for_replace(conn: &mut PgConnection) -> Result<Vec<String>> {
    // TRUNCATE is instant, but refuses when another table references these; then DELETE,
    // whose cascades and restrictions the schema decides.
    let truncated = conn.transaction(|conn| {
        diesel::sql_query(
            "TRUNCATE chunks, artifacts, artifact_versions, analyses, pending_embeddings",
        )
        .execute(conn)
    });
    if let Err(e) = truncated {
        log::debug!("TRUNCATE refused ({e}); deleting instead");
        for table in ["chunks", "artifacts", "artifact_versions", "analyses"] {
            diesel::sql_query(format!("DELETE FROM {table}"))
                .execute(conn)
                .step(&format!("deleting the old {table}"))?;
        }
    }
    if !may_rebuild_vector_indexes(conn)? {
        log::warn!(
            "this role does not own chunks, so it may not drop and build its vector index: the \
             index is kept and updated row by row, which is much slower (run the replace as the \
             table's owner to have it built once)"
        );
        return Ok(Vec::new());
    }
    drop_vector_indexes(conn)
}

/// Moves `chunks.embedding` to `dims` dimensions if the table holds no row, checked under a
/// lock so no writer adds one in between; returns whether it did.
pub fn resize_empty_column(conn: &mut PgConnection, dims: usize) -> Result<bool> {
    db::in_transaction(conn, |conn| {
        diesel::sql_query("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
            .execute(conn)
            .step("locking chunks to move its vector column")?;
        let any: bool = diesel::select(diesel::dsl::exists(chunks::table.select(chunks::id)))
            .get_result(conn)
            .step("checking whether chunks is empty")?;
        if any {
            return Ok(false);
        }
        diesel::sql_query(format!(
            "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dims}) USING NULL"
        ))
        .execute(conn)
        .step("changing the dimension of the empty chunks.embedding")?;
        Ok(true)
    })
}

/// Drops the vector indexes on `chunks` (inside the caller's transaction) before a bulk
/// write, and returns the statements that build them again.
pub fn drop_vector_indexes(conn: &mut PgConnection) -> Result<Vec<String>> {
    let indexes = vector_indexes(conn)?;
    for index in &indexes {
        diesel::sql_query(format!("DROP INDEX {}", db::quote_identifier(&index.name)))
            .execute(conn)
            .step("dropping the vector index before the bulk write")?;
    }
    // Each index's statement, then the one that gives it its comment back.
    Ok(indexes
        .into_iter()
        .flat_map(|index| std::iter::once(index.definition).chain(index.comment))
        .collect())
}

/// Builds the vector indexes again, once, with memory to do it fast.
pub fn build_indexes(conn: &mut PgConnection, definitions: &[String]) -> Result<()> {
    diesel::sql_query(format!(
        "SET LOCAL maintenance_work_mem = '{INDEX_BUILD_MEMORY}'"
    ))
    .execute(conn)
    .step("raising maintenance_work_mem for the index build")?;
    for definition in definitions {
        // In a savepoint (diesel nests the transaction), so that one failure can be retried.
        let built = conn.transaction(|conn| diesel::sql_query(definition.as_str()).execute(conn));
        match built {
            Ok(_) => {}
            // Rarely (twice in a day of test runs here), pgvector's parallel build of rows
            // written in the same transaction fails to read a vector stored out of line. The
            // leader alone reads them: build it again without parallel workers.
            Err(e) if e.to_string().contains("missing chunk number") => {
                log::warn!(
                    "the parallel build of the vector index failed ({e}); building it again without parallel workers"
                );
                conn.transaction(|conn| {
                    diesel::sql_query("SET LOCAL max_parallel_maintenance_workers = 0")
                        .execute(conn)?;
                    diesel::sql_query(definition.as_str()).execute(conn)
                })
                .step("building the vector index without parallel workers")?;
            }
            Err(e) => return Err(e).step("building the vector index"),
        }
    }
    Ok(())
}

/// Chunks (of `ids`, or all) whose embedding is missing or not of `dims` dimensions.
pub fn chunks_with_bad_embeddings(
    conn: &mut PgConnection,
    ids: Option<&[Uuid]>,
    dims: usize,
) -> Result<i64> {
    use crate::models::chunk::vector_dims;
    let bad = chunks::embedding
        .is_null()
        .or(vector_dims(chunks::embedding).ne(dims as i32));
    let count = match ids {
        Some(ids) => chunks::table
            .filter(chunks::id.eq_any(ids))
            .filter(bad)
            .count()
            .get_result(conn),
        None => chunks::table.filter(bad).count().get_result(conn),
    };
    count.step("checking the restored embeddings")
}

/// A vector index on `chunks` and the statement that builds it again.
pub struct VectorIndex {
    pub name: String,
    pub definition: String,
    /// The statement that sets its comment again, if it has one.
    pub comment: Option<String>,
}

pub fn vector_indexes(conn: &mut PgConnection) -> Result<Vec<VectorIndex>> {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        indexname: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        indexdef: String,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Text>)]
        comment: Option<String>,
    }
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT indexname, indexdef, \
           (SELECT format('COMMENT ON INDEX %I IS %L', indexname, d) \
            FROM obj_description(format('%I.%I', schemaname, indexname)::regclass, 'pg_class') AS d \
            WHERE d IS NOT NULL) AS comment \
         FROM pg_indexes \
         WHERE schemaname = current_schema() AND tablename = 'chunks' AND indexdef ~* 'USING (hnsw|ivfflat)'",
    )
    .load(conn)
    .step("listing the vector indexes")?;
    Ok(rows
        .into_iter()
        .map(|row| VectorIndex {
            name: row.indexname,
            definition: row.indexdef,
            comment: row.comment,
        })
        .collect())
}

/// Whether this session may drop the vector indexes of `chunks` and build them again: only
/// the table's owner (or a member of its role) may. Another role keeps them as they are.
pub fn may_rebuild_vector_indexes(conn: &mut PgConnection) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Owner {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        owner: bool,
    }
    let owner: Owner = diesel::sql_query(
        "SELECT pg_has_role(relowner, 'USAGE') AS owner FROM pg_class WHERE oid = 'chunks'::regclass",
    )
    .get_result(conn)
    .step("checking who owns the chunks table")?;
    Ok(owner.owner)
}
