//! `pending_embeddings`: vectors regenerate-embeddings computed and has not yet swapped into
//! `chunks`; its progress, kept across interruptions.

use diesel::prelude::*;
use pgvector::Vector;
use uuid::Uuid;

use crate::schema::pending_embeddings;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = pending_embeddings)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewPendingEmbedding<'a> {
    pub chunk_id: Uuid,
    pub embedding: &'a Vector,
    pub model: &'a str,
    pub dims: i32,
    pub text_sha256: Vec<u8>,
}
