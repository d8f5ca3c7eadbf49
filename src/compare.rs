//! `verify --against-db`: compares a backup file with the database. Rows (golden queries too)
//! missing on either side, rows whose content differs, chunks without an embedding or with
//! one of the wrong dimension. The file is streamed and compared in batches (a few queries per batch, never a
//! query per row), so it works on datasets of any size.

use std::collections::{BTreeSet, HashMap, HashSet};

use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

use crate::backup_file::reader::ReadError;
use crate::backup_file::record::{BackupAnalysis, BackupArtifact, BackupChunk, BackupQuery};
use crate::backup_file::records::read_analyses;
use crate::backup_file::source::BackupSource;
use crate::db::QueryContext;
use crate::models::chunk::vector_dims;
use crate::models::{query, Analysis, Artifact, ChunkEmbeddingState, ChunkText};
use crate::schema::{analyses, chunks};
use crate::validate::{Problem, Validation};

const BATCH: usize = 500;

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
    };
    let mut batch = Vec::with_capacity(BATCH);
    // Only records that pass validation are compared; the others are reported by it.
    let mut pass = source.pass();
    read_analyses(
        &mut pass,
        &source.path().display().to_string(),
        |index| validation.invalid_analyses.contains(&index),
        |record| {
            comparison.file_ids.insert(record.id);
            batch.push(record);
            if batch.len() == BATCH {
                comparison.compare_batch(conn, std::mem::take(&mut batch))?;
            }
            Ok(())
        },
    )
    .map_err(ReadError::into_report)?;
    if let Some(validated) = &validation.file_sha256 {
        source.check_same_bytes(validated, &pass.digest())?;
    }
    comparison.compare_batch(conn, batch)?;
    comparison.find_rows_missing_from_file(conn, status_filter)?;
    comparison.compare_queries(conn, &validation.queries, status_filter)?;
    Ok(comparison.problems)
}

struct Comparison {
    problems: Vec<Problem>,
    expected_dims: Option<ExpectedDims>,
    /// The model most chunks were embedded by; a vector of another model does not compare.
    usual_model: Option<String>,
    file_ids: HashSet<Uuid>,
}

#[derive(Clone, Copy)]
struct ExpectedDims {
    dims: i32,
    /// How the dimension was found, for the message.
    source: &'static str,
}

impl Comparison {
    fn compare_batch(&mut self, conn: &mut PgConnection, batch: Vec<BackupAnalysis>) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = batch.iter().map(|record| record.id).collect();
        let rows: Vec<Analysis> = analyses::table
            .filter(analyses::id.eq_any(&ids))
            .select(Analysis::as_select())
            .load(conn)
            .step("reading analyses to compare")?;
        let db_chunks = ChunkText::belonging_to(&rows)
            .select(ChunkText::as_select())
            .load(conn)
            .step("reading chunks to compare")?
            .grouped_by(&rows);
        let db_artifacts = Artifact::belonging_to(&rows)
            .select(Artifact::as_select())
            .load(conn)
            .step("reading artifacts to compare")?
            .grouped_by(&rows);
        let embeddings: HashMap<Uuid, ChunkEmbeddingState> = chunks::table
            .filter(chunks::analysis_id.eq_any(&ids))
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

        let mut in_db: HashMap<Uuid, (Analysis, Vec<ChunkText>, Option<Artifact>)> = rows
            .into_iter()
            .zip(db_chunks)
            .zip(db_artifacts)
            .map(|((analysis, chunks), artifacts)| {
                (
                    analysis.id,
                    (analysis, chunks, artifacts.into_iter().next()),
                )
            })
            .collect();
        for record in batch {
            let at = format!("analysis {}", record.id);
            match in_db.remove(&record.id) {
                None => self.problem(&at, "is in the file but not in the database"),
                Some((analysis, chunks, artifact)) => {
                    self.compare_analysis(&at, &record, &analysis);
                    self.compare_chunks(&at, &record.chunks, chunks, &embeddings);
                    self.compare_artifact(&at, record.artifact.as_ref(), artifact);
                }
            }
        }
        Ok(())
    }

    fn compare_analysis(&mut self, at: &str, file: &BackupAnalysis, db: &Analysis) {
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

    fn compare_chunks(
        &mut self,
        at: &str,
        file: &[BackupChunk],
        db: Vec<ChunkText>,
        embeddings: &HashMap<Uuid, ChunkEmbeddingState>,
    ) {
        let mut db_by_id: HashMap<Uuid, ChunkText> =
            db.into_iter().map(|chunk| (chunk.id, chunk)).collect();
        for chunk in file {
            let chunk_at = format!("{at}, chunk {}", chunk.id);
            let Some(row) = db_by_id.remove(&chunk.id) else {
                self.problem(&chunk_at, "is in the file but not in the database");
                continue;
            };
            self.report_differences(
                &chunk_at,
                &[
                    ("content", chunk.content == row.content),
                    ("section_title", chunk.section_title == row.section_title),
                    ("section_path", chunk.section_path == row.section_path),
                    ("content_type", chunk.content_type == row.content_type),
                    ("chunk_index", chunk.chunk_index == row.chunk_index),
                ],
            );
            self.check_embedding(&chunk_at, embeddings.get(&chunk.id));
        }
        let mut extra: Vec<_> = db_by_id.into_values().collect();
        extra.sort_by_key(|chunk| chunk.chunk_index);
        for chunk in extra {
            self.problem(
                format!("{at}, chunk {}", chunk.id),
                "is in the database but not in the file",
            );
        }
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

    fn compare_artifact(&mut self, at: &str, file: Option<&BackupArtifact>, db: Option<Artifact>) {
        match (file, db) {
            (None, None) => {}
            (Some(artifact), None) => self.problem(
                format!("{at}, artifact {}", artifact.id),
                "is in the file but not in the database",
            ),
            (None, Some(row)) => self.problem(
                format!("{at}, artifact {}", row.id),
                "is in the database but not in the file",
            ),
            (Some(artifact), Some(row)) => {
                self.report_differences(
                    &format!("{at}, artifact {}", artifact.id),
                    &[
                        ("id", artifact.id == row.id),
                        ("summary", artifact.summary == row.summary),
                        ("created_at", artifact.created_at == row.created_at),
                    ],
                );
            }
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
fn most_common_model(conn: &mut PgConnection) -> Result<Option<String>> {
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
