//! `embedding_cache`: vectors already computed, by provider, model, dimension and the
//! SHA-256 of the exact text, and whether it was embedded as a document or as a query.

use diesel::prelude::*;
use pgvector::Vector;

use crate::schema::embedding_cache;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = embedding_cache)]
pub struct NewCacheEntry<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub dims: i32,
    /// `document` or `query` ([`crate::embed::InputKind::cache_key`]).
    pub input_type: &'a str,
    pub text_sha256: &'a [u8],
    pub embedding: &'a Vector,
}
