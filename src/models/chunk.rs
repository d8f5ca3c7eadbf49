//! `chunks`: the pieces of text of an analysis, each with an embedding.
//!
//! Reading the text and reading the embedding are different jobs: a backup never transfers
//! the 4 KB vectors, so [`ChunkText`] leaves them out and [`ChunkEmbeddingState`] only asks
//! whether one is there and of which dimension.

use diesel::prelude::*;
use pgvector::Vector;
use uuid::Uuid;

use super::Analysis;
use crate::backup_file::record::BackupChunk;
use crate::schema::chunks;

/// A chunk without its vector: what the backup file holds.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Associations)]
#[diesel(table_name = chunks)]
#[diesel(belongs_to(Analysis))]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ChunkText {
    pub id: Uuid,
    pub analysis_id: Uuid,
    pub content: String,
    pub section_title: Option<String>,
    pub section_path: Option<String>,
    pub content_type: String,
    pub chunk_index: i32,
    /// The keys of the chunk's record that golden maps to no column (a JSON object).
    pub extra: serde_json::Value,
}

diesel::define_sql_function! {
    /// pgvector's `vector_dims(vector)`: the dimension of a stored vector.
    fn vector_dims(v: diesel::sql_types::Nullable<pgvector::sql_types::Vector>) -> diesel::sql_types::Nullable<diesel::sql_types::Integer>;
}

/// Whether a chunk has an embedding, of which dimension and from which model.
#[derive(Debug, Clone, PartialEq, Queryable)]
pub struct ChunkEmbeddingState {
    pub id: Uuid,
    pub dims: Option<i32>,
    pub model: Option<String>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = chunks)]
// Binary COPY (`copy_from`) needs every column given, NULL included.
#[diesel(treat_none_as_default_value = false)]
pub struct NewChunk<'a> {
    pub id: Uuid,
    pub analysis_id: Uuid,
    pub content: &'a str,
    pub section_title: Option<&'a str>,
    pub section_path: Option<&'a str>,
    pub content_type: &'a str,
    pub chunk_index: i32,
    pub embedding: Option<Vector>,
    pub embedding_model: Option<&'a str>,
    pub extra: serde_json::Value,
}

impl<'a> NewChunk<'a> {
    /// The row of a backup file's chunk of analysis `analysis_id`, with its vector.
    pub fn from_backup(
        chunk: &'a BackupChunk,
        analysis_id: Uuid,
        embedding: Option<Vector>,
        embedding_model: Option<&'a str>,
    ) -> Self {
        NewChunk {
            id: chunk.id,
            analysis_id,
            content: &chunk.content,
            section_title: chunk.section_title.as_deref(),
            section_path: chunk.section_path.as_deref(),
            content_type: &chunk.content_type,
            chunk_index: chunk.chunk_index,
            embedding,
            embedding_model,
            extra: serde_json::Value::Object(chunk.extra.clone()),
        }
    }
}
