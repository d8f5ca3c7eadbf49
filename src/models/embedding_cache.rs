//! `embedding_cache`: vectors already computed, by provider, model, dimension and the
//! SHA-256 of the exact text.

use diesel::prelude::*;
use pgvector::Vector;

use crate::schema::embedding_cache;

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = embedding_cache)]
pub struct NewCacheEntry<'a> {
    pub provider: &'a str,
    pub model: &'a str,
    pub dims: i32,
    pub text_sha256: &'a [u8],
    pub embedding: &'a Vector,
}
