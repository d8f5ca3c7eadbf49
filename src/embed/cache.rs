//! The embedding cache in the database: before a provider is asked, vectors are looked up by
//! (provider, model, dimension, input type, SHA-256 of the exact text); what the provider computes is
//! stored (and committed at once, so even a run that fails later leaves it for the next).
//! A repeated local reset of unchanged content thus makes no request; changed text or
//! another model misses. Identical texts in one call are embedded once.

use std::collections::HashMap;

use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use pgvector::Vector;
use sha2::{Digest, Sha256};

use super::{EmbeddingClient, InputKind};
use crate::db::QueryContext;
use crate::models::NewCacheEntry;
use crate::schema::embedding_cache;

/// Keys looked up or rows stored per statement.
const ROWS_PER_STATEMENT: usize = 1_000;

type TextHash = [u8; 32];

/// Vectors for a list of texts and where they came from: `computed + reused` is the number
/// of texts.
pub struct Embedded {
    pub vectors: Vec<Vector>,
    /// Taken from the cache, or shared with an identical text computed in the same call.
    pub reused: u64,
    /// Computed by the provider.
    pub computed: u64,
}

/// A client with the cache in front of it; `use_cache: false` always asks the provider.
pub struct CachedEmbedder<'a> {
    pub client: &'a EmbeddingClient,
    pub use_cache: bool,
}

impl CachedEmbedder<'_> {
    /// Vectors for `texts`, in order, from the cache where possible.
    pub fn embed(
        &self,
        conn: &mut PgConnection,
        texts: &[&str],
        kind: InputKind,
    ) -> Result<Embedded> {
        if !self.use_cache {
            let vectors = self.client.embed_all(texts, kind)?;
            let computed = vectors.len() as u64;
            return Ok(Embedded {
                vectors: vectors.into_iter().map(Vector::from).collect(),
                reused: 0,
                computed,
            });
        }
        let hashes: Vec<TextHash> = texts
            .iter()
            .map(|text| Sha256::digest(text.as_bytes()).into())
            .collect();
        let mut found = self.lookup(conn, &hashes, kind)?;

        // Each distinct missing text once.
        let mut queued = std::collections::HashSet::new();
        let missing: Vec<(TextHash, &str)> = hashes
            .iter()
            .zip(texts)
            .filter(|(hash, _)| !found.contains_key(*hash) && queued.insert(**hash))
            .map(|(hash, text)| (*hash, *text))
            .collect();
        let missing_texts: Vec<&str> = missing.iter().map(|(_, text)| *text).collect();
        let computed: Vec<Vector> = self
            .client
            .embed_all(&missing_texts, kind)?
            .into_iter()
            .map(Vector::from)
            .collect();
        self.store(conn, &missing, &computed, kind)?;
        let computed_count = computed.len() as u64;
        for ((hash, _), vector) in missing.into_iter().zip(computed) {
            found.insert(hash, vector);
        }
        // Each vector moves to its text's place; only a text that appears again takes a copy.
        let mut uses: HashMap<TextHash, usize> = HashMap::new();
        for hash in &hashes {
            *uses.entry(*hash).or_default() += 1;
        }
        let vectors = hashes
            .iter()
            .map(|hash| {
                let left = uses.get_mut(hash)?;
                *left -= 1;
                if *left == 0 {
                    found.remove(hash)
                } else {
                    found.get(hash).cloned()
                }
            })
            .collect::<Option<Vec<Vector>>>()
            .ok_or_else(|| {
                color_eyre::eyre::eyre!("a vector went missing between the cache and the provider")
            })?;
        Ok(Embedded {
            vectors,
            // From the cache, or the vector of an identical text of this call: with the
            // computed ones, one per text.
            reused: texts.len() as u64 - computed_count,
            computed: computed_count,
        })
    }

    /// What [`CachedEmbedder::embed`] of `texts` would compute and reuse, without computing
    /// anything (the dry-run plan): `(computed, reused)`.
    pub fn plan(
        &self,
        conn: &mut PgConnection,
        texts: &[&str],
        kind: InputKind,
    ) -> Result<(u64, u64)> {
        if !self.use_cache {
            return Ok((texts.len() as u64, 0));
        }
        let hashes: Vec<TextHash> = texts
            .iter()
            .map(|text| Sha256::digest(text.as_bytes()).into())
            .collect();
        let found = self.lookup(conn, &hashes, kind)?;
        let mut queued = std::collections::HashSet::new();
        let computed = hashes
            .iter()
            .filter(|hash| !found.contains_key(*hash) && queued.insert(**hash))
            .count() as u64;
        Ok((computed, texts.len() as u64 - computed))
    }

    /// Requests of [`EmbeddingClient`] for `computed` texts in one call.
    pub fn requests_for(&self, computed: u64) -> u64 {
        computed.div_ceil(self.client.batch_size() as u64)
    }

    fn lookup(
        &self,
        conn: &mut PgConnection,
        hashes: &[TextHash],
        kind: InputKind,
    ) -> Result<HashMap<TextHash, Vector>> {
        let info = self.client.info();
        let mut found = HashMap::new();
        for part in hashes.chunks(ROWS_PER_STATEMENT) {
            let keys: Vec<&[u8]> = part.iter().map(|hash| hash.as_slice()).collect();
            let rows: Vec<(Vec<u8>, Vector)> = embedding_cache::table
                .filter(embedding_cache::provider.eq(info.provider.to_string()))
                .filter(embedding_cache::model.eq(&info.model))
                .filter(embedding_cache::dims.eq(info.dims as i32))
                .filter(embedding_cache::input_type.eq(kind.cache_key()))
                .filter(embedding_cache::text_sha256.eq_any(keys))
                .select((embedding_cache::text_sha256, embedding_cache::embedding))
                .load(conn)
                .step("reading the embedding cache")?;
            for (key, vector) in rows {
                if let Ok(hash) = TextHash::try_from(key.as_slice()) {
                    found.insert(hash, vector);
                }
            }
        }
        Ok(found)
    }

    fn store(
        &self,
        conn: &mut PgConnection,
        keys: &[(TextHash, &str)],
        vectors: &[Vector],
        kind: InputKind,
    ) -> Result<()> {
        let info = self.client.info();
        let provider = info.provider.to_string();
        let rows: Vec<NewCacheEntry> = keys
            .iter()
            .zip(vectors)
            .map(|((hash, _), vector)| NewCacheEntry {
                provider: &provider,
                model: &info.model,
                dims: info.dims as i32,
                input_type: kind.cache_key(),
                text_sha256: hash.as_slice(),
                embedding: vector,
            })
            .collect();
        for part in rows.chunks(ROWS_PER_STATEMENT) {
            diesel::insert_into(embedding_cache::table)
                .values(part)
                .on_conflict_do_nothing()
                .execute(conn)
                .step("storing vectors in the embedding cache")?;
        }
        Ok(())
    }
}
