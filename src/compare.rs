//! `verify --against-db`: compares a backup file with the database. Rows (golden queries too)
//! missing on either side, rows whose content differs, chunks without an embedding or with
//! one of the wrong dimension. The file is streamed and compared a window at a time (a few
//! queries per window of at most 500 analyses or 2000 chunks, never a query per row), so it
//! works on datasets of any size and shape.

use std::collections::{BTreeSet, HashMap, HashSet};

use color_eyre::eyre::bail;
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

use crate::backup_file::extras::{
    as_jsonb_returns, extras_as_jsonb_returns, METADATA_KEYS, METADATA_ROW,
};
use crate::backup_file::reader::Header;
use crate::backup_file::record::{
    extras_of, BackupAnalysisHead, BackupArtifact, BackupChunk, BackupQuery, Extra,
};
use crate::backup_file::records::Record;
use crate::backup_file::source::BackupSource;
use crate::backup_file::windows;
use crate::db::QueryContext;
use crate::models::chunk::vector_dims;
use crate::models::{
    query, Analysis, Artifact, ArtifactVersion, ChunkEmbeddingState, ChunkText, DatasetExtra,
};
use crate::schema::{analyses, artifact_versions, artifacts, chunks, dataset_extras};
use crate::validate::{Problem, Validation};

/// A window of the file compared at once: a few queries per window, whatever its shape.
const WINDOW_ANALYSES: usize = 500;
const WINDOW_CHUNKS: usize = 2_000;

/// Compares the valid records of the file `source` (as `validation` found it) with the
/// database; `status_filter` is the status the backup selected (`None`: every analysis), to
/// find rows missing from the file.
pub fn compare_with_database(
    conn: &mut PgConnection,
    source: &BackupSource,
    validation: &Validation,
    status_filter: Option<&str>,
) -> Result<Vec<Problem>> {
    // A `vector(N)` column cannot hold another size; an unsized `vector` column can, and then
    // the size most chunks have is the one the others are measured against.
    let expected_dims = match embedding_column_dims(conn)? {
        Some(dims) => Some(ExpectedDims {
            dims,
            source: "the column holds",
        }),
        None => most_common_dims(conn)?.map(|dims| ExpectedDims {
            dims,
            source: "most chunks have",
        }),
    };
    let mut comparison = Comparison {
        problems: Vec::new(),
        expected_dims,
        usual_model: most_common_model(conn)?,
        file_ids: HashSet::new(),
        open: HashMap::new(),
        missing: HashSet::new(),
    };
    // Only records that pass validation are compared; the others are reported by it.
    let shape = windows::Shape {
        target_chunks: WINDOW_CHUNKS,
        analyses_per_step: 1,
        most_analyses: WINDOW_ANALYSES,
        most_chunks: WINDOW_CHUNKS,
    };
    match &validation.file_sha256 {
        Some(validated) => windows::read_windows(
            source,
            validated,
            shape,
            |index| validation.invalid_analyses.contains(&index),
            |window| comparison.compare_window(conn, window),
        )?,
        None => bail!("internal error: the validation kept no digest of the file"),
    }
    comparison.find_rows_missing_from_file(conn, status_filter)?;
    comparison.compare_queries(conn, &validation.queries, status_filter)?;
    comparison.compare_file_extras(conn, &validation.header)?;
    Ok(comparison.problems)
}

struct Comparison {
    problems: Vec<Problem>,
    expected_dims: Option<ExpectedDims>,
    /// The model most chunks were embedded by; a vector of another model does not compare.
    usual_model: Option<String>,
    file_ids: HashSet<Uuid>,
    /// The analyses begun and not ended yet.
    open: HashMap<Uuid, OpenAnalysis>,
    /// The analyses of the file the database lacks: their chunks are not reported one by one.
    missing: HashSet<Uuid>,
}

/// An analysis of the file whose end has not been read yet.
struct OpenAnalysis {
    /// The ids of its chunks in the file.
    chunk_ids: HashSet<Uuid>,
    /// How many of those the database holds under the same analysis.
    held: u64,
    /// Its artifacts in the file so far.
    artifacts: Vec<BackupArtifact>,
    /// Its extras in the file (those after its chunks come with its end) and in the database.
    file_extra: Extra,
    db_extra: serde_json::Value,
}

#[derive(Clone, Copy)]
struct ExpectedDims {
    dims: i32,
    /// How the dimension was found, for the message.
    source: &'static str,
}

impl Comparison {
    /// Compares a window of records: the analyses, chunks and artifacts it holds, looked up
    /// by id in a few queries.
    fn compare_window(&mut self, conn: &mut PgConnection, window: Vec<Record>) -> Result<()> {
        if window.is_empty() {
            return Ok(());
        }
        let mut head_ids = Vec::new();
        let mut chunk_ids = Vec::new();
        let mut ended = Vec::new();
        for record in &window {
            match record {
                Record::Analysis(head) => head_ids.push(head.id),
                Record::Chunk { chunk, .. } => chunk_ids.push(chunk.id),
                Record::End { analysis_id, .. } => ended.push(*analysis_id),
                Record::Artifact { .. } => {}
            }
        }
        let mut db_analyses: HashMap<Uuid, Analysis> = analyses::table
            .filter(analyses::id.eq_any(&head_ids))
            .select(Analysis::as_select())
            .load(conn)
            .step("reading analyses to compare")?
            .into_iter()
            .map(|analysis| (analysis.id, analysis))
            .collect();
        let mut db_chunks: HashMap<Uuid, ChunkText> = chunks::table
            .filter(chunks::id.eq_any(&chunk_ids))
            .select(ChunkText::as_select())
            .load(conn)
            .step("reading chunks to compare")?
            .into_iter()
            .map(|chunk| (chunk.id, chunk))
            .collect();
        let embeddings: HashMap<Uuid, ChunkEmbeddingState> = chunks::table
            .filter(chunks::id.eq_any(&chunk_ids))
            .select((
                chunks::id,
                vector_dims(chunks::embedding),
                chunks::embedding_model,
            ))
            .load::<ChunkEmbeddingState>(conn)
            .step("reading embedding states")?
            .into_iter()
            .map(|state| (state.id, state))
            .collect();
        let mut db_artifacts: HashMap<Uuid, Vec<Artifact>> = HashMap::new();
        for artifact in artifacts::table
            .filter(artifacts::analysis_id.eq_any(&ended))
            .select(Artifact::as_select())
            .load(conn)
            .step("reading artifacts to compare")?
        {
            db_artifacts
                .entry(artifact.analysis_id)
                .or_default()
                .push(artifact);
        }
        for version in artifact_versions::table
            .filter(artifact_versions::analysis_id.eq_any(&ended))
            .select(ArtifactVersion::as_select())
            .load(conn)
            .step("reading older artifact versions to compare")?
        {
            db_artifacts
                .entry(version.analysis_id)
                .or_default()
                .push(Artifact::from(version));
        }
        let db_chunk_counts: HashMap<Uuid, i64> = chunks::table
            .filter(chunks::analysis_id.eq_any(&ended))
            .group_by(chunks::analysis_id)
            .select((chunks::analysis_id, diesel::dsl::count_star()))
            .load::<(Uuid, i64)>(conn)
            .step("counting the chunks to compare")?
            .into_iter()
            .collect();

        for record in window {
            match record {
                Record::Analysis(head) => {
                    self.file_ids.insert(head.id);
                    let at = format!("analysis {}", head.id);
                    match db_analyses.remove(&head.id) {
                        None => {
                            self.problem(&at, "is in the file but not in the database");
                            self.missing.insert(head.id);
                        }
                        Some(row) => {
                            self.compare_analysis(&at, &head, &row);
                            self.open.insert(
                                head.id,
                                OpenAnalysis {
                                    chunk_ids: HashSet::new(),
                                    held: 0,
                                    artifacts: Vec::new(),
                                    file_extra: head.extra,
                                    db_extra: row.extra,
                                },
                            );
                        }
                    }
                }
                Record::Chunk { analysis_id, chunk } => {
                    let Some(open) = self.open.get_mut(&analysis_id) else {
                        continue; // Its analysis is missing: reported once, above.
                    };
                    open.chunk_ids.insert(chunk.id);
                    let row = db_chunks.remove(&chunk.id);
                    if row
                        .as_ref()
                        .is_some_and(|row| row.analysis_id == analysis_id)
                    {
                        open.held += 1;
                    }
                    let at = format!("analysis {analysis_id}, chunk {}", chunk.id);
                    self.compare_chunk(&at, analysis_id, &chunk, row, embeddings.get(&chunk.id));
                }
                Record::Artifact {
                    analysis_id,
                    artifact,
                    ..
                } => {
                    if let Some(open) = self.open.get_mut(&analysis_id) {
                        open.artifacts.push(artifact);
                    }
                }
                Record::End {
                    analysis_id,
                    late_extra,
                    ..
                } => {
                    if self.missing.remove(&analysis_id) {
                        continue;
                    }
                    let at = format!("analysis {analysis_id}");
                    let Some(mut open) = self.open.remove(&analysis_id) else {
                        continue;
                    };
                    let in_db = db_chunk_counts.get(&analysis_id).copied().unwrap_or(0);
                    if in_db as u64 > open.held {
                        self.report_extra_chunks(conn, &at, analysis_id, &open.chunk_ids)?;
                    }
                    open.file_extra.extend(late_extra);
                    let same = same_extra(&open.file_extra, &open.db_extra);
                    self.report_differences(&at, &[("extra fields", same)]);
                    self.compare_artifacts(
                        &at,
                        open.artifacts,
                        db_artifacts.remove(&analysis_id).unwrap_or_default(),
                    );
                }
            }
        }
        Ok(())
    }

    fn compare_analysis(&mut self, at: &str, file: &BackupAnalysisHead, db: &Analysis) {
        self.report_differences(
            at,
            &[
                ("url", file.url == db.url),
                ("title", file.title == db.title),
                ("content_type", file.content_type == db.content_type),
                ("status", file.status == db.status),
                ("created_at", file.created_at == db.created_at),
                ("updated_at", file.updated_at == db.updated_at),
            ],
        );
    }

    fn compare_chunk(
        &mut self,
        at: &str,
        analysis_id: Uuid,
        chunk: &BackupChunk,
        row: Option<ChunkText>,
        embedding: Option<&ChunkEmbeddingState>,
    ) {
        let Some(row) = row else {
            self.problem(at, "is in the file but not in the database");
            return;
        };
        self.report_differences(
            at,
            &[
                ("analysis_id", analysis_id == row.analysis_id),
                ("content", chunk.content == row.content),
                ("section_title", chunk.section_title == row.section_title),
                ("section_path", chunk.section_path == row.section_path),
                ("content_type", chunk.content_type == row.content_type),
                ("chunk_index", chunk.chunk_index == row.chunk_index),
                ("extra fields", same_extra(&chunk.extra, &row.extra)),
            ],
        );
        self.check_embedding(at, embedding);
    }

    /// The chunks the database holds for the analysis and the file does not (`ids`: the
    /// file's), in chunk_index order.
    fn report_extra_chunks(
        &mut self,
        conn: &mut PgConnection,
        at: &str,
        analysis_id: Uuid,
        ids: &HashSet<Uuid>,
    ) -> Result<()> {
        let in_db: Vec<(Uuid, i32)> = chunks::table
            .filter(chunks::analysis_id.eq(analysis_id))
            .select((chunks::id, chunks::chunk_index))
            .order(chunks::chunk_index)
            .load(conn)
            .step("reading the chunks of an analysis")?;
        for (id, _) in in_db.into_iter().filter(|(id, _)| !ids.contains(id)) {
            self.problem(
                format!("{at}, chunk {id}"),
                "is in the database but not in the file",
            );
        }
        Ok(())
    }

    fn check_embedding(&mut self, at: &str, state: Option<&ChunkEmbeddingState>) {
        match state.and_then(|state| state.dims) {
            None => self.problem(at, "has no embedding in the database (run `golden regenerate-embeddings --only-missing`)"),
            Some(dims) => {
                if let Some(expected) = self.expected_dims.filter(|expected| expected.dims != dims) {
                    let ExpectedDims { dims: want, source } = expected;
                    self.problem(at, format!("embedding has {dims} dimensions, {source} {want}"));
                }
                let model = state.and_then(|state| state.model.as_deref());
                if let Some(usual) = self.usual_model.as_deref().filter(|usual| model != Some(*usual)) {
                    self.problem(
                        at,
                        format!(
                            "embedded by model {} while most chunks are embedded by {usual} \
                             (run `golden regenerate-embeddings` to align them)",
                            model.unwrap_or("(unknown)")
                        ),
                    );
                }
            }
        }
    }

    /// The artifacts (every version) of one analysis, by id.
    fn compare_artifacts(&mut self, at: &str, file: Vec<BackupArtifact>, db: Vec<Artifact>) {
        let mut db: HashMap<Uuid, Artifact> = db.into_iter().map(|row| (row.id, row)).collect();
        for artifact in file {
            let at = format!("{at}, artifact {}", artifact.id);
            match db.remove(&artifact.id) {
                None => self.problem(at, "is in the file but not in the database"),
                Some(row) => self.report_differences(
                    &at,
                    &[
                        ("summary", artifact.summary == row.summary),
                        ("created_at", artifact.created_at == row.created_at),
                        ("version", artifact.version == row.version),
                        ("extra fields", same_extra(&artifact.extra, &row.extra)),
                    ],
                ),
            }
        }
        let mut left: Vec<Uuid> = db.into_keys().collect();
        left.sort();
        for id in left {
            self.problem(
                format!("{at}, artifact {id}"),
                "is in the database but not in the file",
            );
        }
    }

    /// Reports analyses of the backed-up status that the database has and the file lacks.
    fn find_rows_missing_from_file(
        &mut self,
        conn: &mut PgConnection,
        status: Option<&str>,
    ) -> Result<()> {
        let mut after: Option<Uuid> = None;
        loop {
            let mut query = analyses::table
                .select(analyses::id)
                .order(analyses::id)
                .limit(10_000)
                .into_boxed();
            if let Some(status) = status {
                query = query.filter(analyses::status.eq(status));
            }
            if let Some(after) = after {
                query = query.filter(analyses::id.gt(after));
            }
            let ids: Vec<Uuid> = query
                .load(conn)
                .step("listing the analyses of the database")?;
            let Some(&last) = ids.last() else {
                return Ok(());
            };
            after = Some(last);
            for id in ids {
                if !self.file_ids.contains(&id) {
                    self.problem(
                        format!("analysis {id}"),
                        "is in the database but not in the file",
                    );
                }
            }
        }
    }

    /// The golden queries of the file against the database's. A database query the file
    /// lacks is reported only if a backup of this status would hold it (its expected chunks
    /// are all in it). Expected chunks compare as sets: their order means nothing to an
    /// evaluation.
    fn compare_queries(
        &mut self,
        conn: &mut PgConnection,
        file_queries: &[BackupQuery],
        status: Option<&str>,
    ) -> Result<()> {
        let in_db = query::for_backup(conn, status)?;
        let mut left_out: HashMap<String, BackupQuery> = in_db
            .left_out
            .into_iter()
            .map(|query| (query.id.clone(), query))
            .collect();
        let mut in_db: HashMap<String, BackupQuery> = in_db
            .queries
            .into_iter()
            .map(|query| (query.id.clone(), query))
            .collect();
        let expected = |query: &BackupQuery| -> BTreeSet<Uuid> {
            query.expected_chunk_ids.iter().copied().collect()
        };
        for file in file_queries {
            let at = format!("query {:?}", file.id);
            let Some(db) = in_db.remove(&file.id).or_else(|| left_out.remove(&file.id)) else {
                self.problem(at, "is in the file but not in the database");
                continue;
            };
            self.report_differences(
                &at,
                &[
                    ("query", file.query == db.query),
                    ("expected_chunk_ids", expected(file) == expected(&db)),
                    ("category", file.category == db.category),
                    ("difficulty", file.difficulty == db.difficulty),
                    (
                        "unresolved_expected_chunks",
                        file.unresolved_expected_chunks == db.unresolved_expected_chunks,
                    ),
                    ("extra fields", {
                        let mut file = file.extra.clone();
                        extras_as_jsonb_returns(&mut file);
                        file == db.extra
                    }),
                ],
            );
        }
        let mut extra: Vec<String> = in_db.into_keys().collect();
        extra.sort();
        for id in extra {
            self.problem(
                format!("query {id:?}"),
                "is in the database but not in the file",
            );
        }
        Ok(())
    }

    /// The file-level keys golden keeps (`dataset_extras`: SkillForge's `source`, `fixtures`,
    /// the artifacts whose analysis is not in the file, the file's own metadata keys).
    fn compare_file_extras(&mut self, conn: &mut PgConnection, header: &Header) -> Result<()> {
        // The file's keys by reference: `fixtures` may be large.
        let metadata: Extra = header
            .metadata
            .as_ref()
            .and_then(serde_json::Value::as_object)
            .map(|metadata| extras_of(metadata, &METADATA_KEYS))
            .unwrap_or_default();
        let mut file_rows: Vec<(&str, std::borrow::Cow<'_, serde_json::Value>)> = header
            .extras
            .iter()
            .map(|(key, value)| (key.as_str(), std::borrow::Cow::Borrowed(value)))
            .collect();
        if !metadata.is_empty() {
            file_rows.push((
                METADATA_ROW,
                std::borrow::Cow::Owned(serde_json::Value::Object(metadata)),
            ));
        }
        let rows: Vec<DatasetExtra> = dataset_extras::table
            .select(DatasetExtra::as_select())
            .load(conn)
            .step("reading the file-level keys to compare")?;
        let db_rows: HashMap<&str, &serde_json::Value> = rows
            .iter()
            .map(|row| (row.key.as_str(), &row.value))
            .collect();
        let mut file_keys = HashSet::new();
        for (key, value) in &file_rows {
            file_keys.insert(*key);
            let at = format!("file-level key {key:?}");
            match db_rows.get(key) {
                None => self.problem(at, "is in the file but not in the database"),
                Some(db) if **db != **value && !same_once_stored(value, db) => {
                    self.problem(at, "differs from the database")
                }
                Some(_) => {}
            }
        }
        let mut extra: Vec<&str> = db_rows
            .keys()
            .copied()
            .filter(|key| !file_keys.contains(key))
            .collect();
        extra.sort_unstable();
        for key in extra {
            self.problem(
                format!("file-level key {key:?}"),
                "is in the database but not in the file",
            );
        }
        Ok(())
    }

    /// Reports the fields whose values differ, given as (field, values are equal).
    fn report_differences(&mut self, at: &str, fields: &[(&str, bool)]) {
        let differing: Vec<&str> = fields
            .iter()
            .filter(|(_, same)| !same)
            .map(|(field, _)| *field)
            .collect();
        if !differing.is_empty() {
            self.problem(
                at,
                format!("differs from the database in {}", differing.join(", ")),
            );
        }
    }

    fn problem(&mut self, at: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem {
            location: at.into(),
            problem: problem.into(),
        });
    }
}

/// Whether `file` is `db` once jsonb has stored it (its numbers as jsonb gives them back).
pub(crate) fn same_once_stored(file: &serde_json::Value, db: &serde_json::Value) -> bool {
    let mut file = file.clone();
    as_jsonb_returns(&mut file);
    file == *db
}

/// Whether a record's extras are those of its row's `extra` column (numbers as jsonb gives
/// them back: `1e16` is stored as the integer it is).
pub(crate) fn same_extra(file: &Extra, db: &serde_json::Value) -> bool {
    let Some(db) = db.as_object() else {
        return false;
    };
    db == file || {
        let mut file = file.clone();
        extras_as_jsonb_returns(&mut file);
        *db == file
    }
}

/// The dimension of `chunks.embedding` as declared (`vector(1024)`), or `None` when the
/// column is an unsized `vector`.
pub fn embedding_column_dims(conn: &mut PgConnection) -> Result<Option<i32>> {
    #[derive(QueryableByName)]
    struct ColumnType {
        #[diesel(sql_type = diesel::sql_types::Text)]
        column_type: String,
    }
    let column: ColumnType = diesel::sql_query(
        "SELECT format_type(atttypid, atttypmod) AS column_type FROM pg_attribute \
         WHERE attrelid = 'chunks'::regclass AND attname = 'embedding' AND NOT attisdropped",
    )
    .get_result(conn)
    .step("reading the type of chunks.embedding")?;
    Ok(column
        .column_type
        .strip_prefix("vector(")
        .and_then(|rest| rest.strip_suffix(')'))
        .and_then(|dims| dims.parse().ok()))
}

/// The dimension most stored embeddings have, if any is stored.
fn most_common_dims(conn: &mut PgConnection) -> Result<Option<i32>> {
    #[derive(QueryableByName)]
    struct Dims {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        dims: i32,
    }
    let found: Option<Dims> = diesel::sql_query(
        "SELECT vector_dims(embedding) AS dims FROM chunks WHERE embedding IS NOT NULL \
         GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    )
    .get_result(conn)
    .optional()
    .step("finding the usual embedding dimension")?;
    Ok(found.map(|found| found.dims))
}

/// The embedding model most chunks record, if any does.
pub(crate) fn most_common_model(conn: &mut PgConnection) -> Result<Option<String>> {
    #[derive(QueryableByName)]
    struct Model {
        #[diesel(sql_type = diesel::sql_types::Text)]
        model: String,
    }
    let found: Option<Model> = diesel::sql_query(
        "SELECT embedding_model AS model FROM chunks WHERE embedding_model IS NOT NULL \
         GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 1",
    )
    .get_result(conn)
    .optional()
    .step("finding the usual embedding model")?;
    Ok(found.map(|found| found.model))
}
