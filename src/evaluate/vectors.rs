//! Exact nearest-neighbour search in memory: every chunk's vector, normalised once, in one
//! matrix, and the cosine similarities of a block of queries with all of them as one matrix
//! product.
//!
//! Why in memory and not a temporary table scanned by pgvector: a golden dataset is curated,
//! so it is small (the 10 000-analysis benchmark holds 42 000 chunks, 172 MB at 1024
//! dimensions), and a matrix product of 64 queries at a time reads each vector once per block
//! instead of once per query, as a sequential scan in PostgreSQL does (BENCHMARKS.md has the
//! figures). It also fixes the order of equal distances (by chunk
//! id), so the same vectors give the same ranking everywhere, which a paired comparison and a
//! committed run file need.
//!
//! The vectors of the model in `chunks.embedding` come from that column; those of a candidate
//! model come through the embedding cache, so a second comparison asks the provider nothing.

use std::cmp::Ordering;

use color_eyre::eyre::eyre;
use color_eyre::Result;
use diesel::pg::{PgConnection, PgRowByRowLoadingMode};
use diesel::prelude::*;
use ndarray::{Array2, ArrayView2, Axis};
use pgvector::Vector;
use rayon::prelude::*;
use uuid::Uuid;

use super::Ranked;
use crate::db::QueryContext;
use crate::embed::cache::CachedEmbedder;
use crate::embed::InputKind;
use crate::interrupt;
use crate::schema::chunks;

/// Queries multiplied against the chunk matrix at once: each chunk vector is read once per
/// block, and a block's similarities (64 × chunks) stay a few MB.
const QUERIES_PER_BLOCK: usize = 64;
/// Chunk texts embedded (and read from the cache) per call, so progress and interruptions
/// are seen and the provider's answers do not pile up.
const TEXTS_PER_CALL: usize = 4_096;

/// The chunks and their unit vectors, in chunk id order.
pub struct ChunkVectors {
    chunks: Vec<Uuid>,
    analyses: Vec<Uuid>,
    /// One row per chunk, each of length 1.
    matrix: Array2<f32>,
    /// Chunks left out: no vector, or a vector of length 0 (no cosine to speak of).
    pub left_out: usize,
}

/// What the cache saved while embedding the chunks of a candidate.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub struct EmbeddingCost {
    pub computed: u64,
    pub reused: u64,
}

impl ChunkVectors {
    /// The vectors in `chunks.embedding`.
    pub fn of_column(conn: &mut PgConnection) -> Result<ChunkVectors> {
        // Row by row from the server: only the matrix being built is held, not every vector
        // twice.
        let rows = chunks::table
            .select((chunks::id, chunks::analysis_id, chunks::embedding))
            .order(chunks::id)
            .load_iter::<(Uuid, Uuid, Option<Vector>), PgRowByRowLoadingMode>(conn)
            .step("reading the chunks' vectors")?;
        let mut builder = Builder::default();
        for row in rows {
            let (chunk, analysis, vector) = row.step("reading the chunks' vectors")?;
            match vector {
                Some(vector) => builder.push(chunk, analysis, vector.as_slice())?,
                None => builder.left_out += 1,
            }
        }
        Ok(builder.finish())
    }

    /// Vectors of every chunk's text by `embedder`'s model, through its cache.
    pub fn embedded(
        conn: &mut PgConnection,
        embedder: &CachedEmbedder,
    ) -> Result<(ChunkVectors, EmbeddingCost)> {
        let rows: Vec<(Uuid, Uuid, String)> = chunks::table
            .select((chunks::id, chunks::analysis_id, chunks::content))
            .order(chunks::id)
            .load(conn)
            .step("reading the chunks' texts")?;
        let mut builder = Builder::default();
        let mut cost = EmbeddingCost::default();
        for part in rows.chunks(TEXTS_PER_CALL) {
            interrupt::check()?;
            let texts: Vec<&str> = part.iter().map(|row| row.2.as_str()).collect();
            let embedded = embedder.embed(conn, &texts, InputKind::Document)?;
            cost.computed += embedded.computed;
            cost.reused += embedded.reused;
            for ((chunk, analysis, _), vector) in part.iter().zip(embedded.vectors) {
                builder.push(*chunk, *analysis, vector.as_slice())?;
            }
        }
        Ok((builder.finish(), cost))
    }

    pub fn len(&self) -> usize {
        self.chunks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.chunks.is_empty()
    }

    /// The `k` chunks nearest each query by cosine distance, best first; equal distances in
    /// chunk id order.
    pub fn search(&self, queries: &[Vec<f32>], k: usize) -> Result<Vec<Vec<Ranked>>> {
        if self.is_empty() {
            return Ok(vec![Vec::new(); queries.len()]);
        }
        let dims = self.matrix.ncols();
        if let Some(other) = queries.iter().find(|query| query.len() != dims) {
            return Err(eyre!(
                "a query vector has {} dimensions but the chunks' have {dims}",
                other.len()
            ));
        }
        let blocks: Vec<Vec<Vec<Ranked>>> = queries
            .par_chunks(QUERIES_PER_BLOCK)
            .map(|block| {
                interrupt::check()?;
                let mut flat = Vec::with_capacity(block.len() * dims);
                for query in block {
                    flat.extend(unit(query));
                }
                let block_matrix = ArrayView2::from_shape((block.len(), dims), &flat)
                    .map_err(|e| eyre!("shaping the query vectors: {e}"))?;
                let similarities = block_matrix.dot(&self.matrix.t());
                Ok(similarities
                    .axis_iter(Axis(0))
                    .map(|row| self.top(row.as_slice(), k))
                    .collect())
            })
            .collect::<Result<_>>()?;
        Ok(blocks.into_iter().flatten().collect())
    }

    fn top(&self, similarities: Option<&[f32]>, k: usize) -> Vec<Ranked> {
        let Some(similarities) = similarities else {
            // A row of a fresh product is contiguous; were it not, nothing is found.
            return Vec::new();
        };
        // Chunks are in id order, so the index breaks ties by chunk id.
        let better = |a: &usize, b: &usize| {
            similarities[*b]
                .partial_cmp(&similarities[*a])
                .unwrap_or(Ordering::Equal)
                .then(a.cmp(b))
        };
        let mut order: Vec<usize> = (0..similarities.len()).collect();
        let k = k.min(order.len());
        if k < order.len() {
            order.select_nth_unstable_by(k, better);
            order.truncate(k);
        }
        order.sort_unstable_by(better);
        order
            .into_iter()
            .map(|i| Ranked {
                chunk: self.chunks[i],
                analysis: self.analyses[i],
                distance: Some(1.0 - f64::from(similarities[i])),
            })
            .collect()
    }
}

/// `vector` scaled to length 1 (a zero vector stays zero: it is near nothing).
fn unit(vector: &[f32]) -> impl Iterator<Item = f32> + '_ {
    let norm = vector
        .iter()
        .map(|x| f64::from(*x) * f64::from(*x))
        .sum::<f64>()
        .sqrt();
    let scale = if norm > 0.0 { (1.0 / norm) as f32 } else { 0.0 };
    vector.iter().map(move |x| x * scale)
}

#[derive(Default)]
struct Builder {
    chunks: Vec<Uuid>,
    analyses: Vec<Uuid>,
    flat: Vec<f32>,
    dims: Option<usize>,
    left_out: usize,
}

impl Builder {
    fn push(&mut self, chunk: Uuid, analysis: Uuid, vector: &[f32]) -> Result<()> {
        let dims = *self.dims.get_or_insert(vector.len());
        if vector.len() != dims {
            return Err(eyre!(
                "chunk {chunk} has a {}-dimension vector, the others {dims}: re-embed the dataset \
                 (golden regenerate-embeddings)",
                vector.len()
            ));
        }
        if vector.iter().all(|x| *x == 0.0) {
            self.left_out += 1;
            return Ok(());
        }
        self.chunks.push(chunk);
        self.analyses.push(analysis);
        self.flat.extend(unit(vector));
        Ok(())
    }

    fn finish(self) -> ChunkVectors {
        let dims = self.dims.unwrap_or(0);
        let rows = self.chunks.len();
        // The invariant `flat.len() == rows * dims` holds by construction (each push adds one
        // row of `dims`); a zero-row matrix is built from an empty buffer.
        let matrix = Array2::from_shape_vec((rows, dims), self.flat)
            .unwrap_or_else(|_| Array2::zeros((0, dims)));
        ChunkVectors {
            chunks: self.chunks,
            analyses: self.analyses,
            matrix,
            left_out: self.left_out,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vectors(rows: &[[f32; 2]]) -> ChunkVectors {
        let mut builder = Builder::default();
        for (i, row) in rows.iter().enumerate() {
            builder
                .push(Uuid::from_u128(i as u128 + 1), Uuid::from_u128(100), row)
                .unwrap();
        }
        builder.finish()
    }

    #[test]
    fn nearest_first_and_ties_by_chunk_id() {
        // Chunks 1 and 3 point the same way; 2 is orthogonal to the query.
        let index = vectors(&[[1.0, 0.0], [0.0, 5.0], [3.0, 0.0], [1.0, 1.0]]);
        let found = index.search(&[vec![2.0, 0.0]], 3).unwrap();
        let ids: Vec<u128> = found[0].iter().map(|r| r.chunk.as_u128()).collect();
        assert_eq!(ids, vec![1, 3, 4]);
        assert!(found[0][0].distance.unwrap().abs() < 1e-6);
        let half = 1.0 - std::f64::consts::FRAC_1_SQRT_2;
        assert!((found[0][2].distance.unwrap() - half).abs() < 1e-6);
        // More than there are: all of them.
        assert_eq!(index.search(&[vec![0.0, 1.0]], 10).unwrap()[0].len(), 4);
        assert!(index.search(&[vec![1.0, 0.0, 0.0]], 1).is_err());
    }

    #[test]
    fn zero_vectors_are_left_out() {
        let index = vectors(&[[0.0, 0.0], [1.0, 0.0]]);
        assert_eq!((index.len(), index.left_out), (1, 1));
    }
}
