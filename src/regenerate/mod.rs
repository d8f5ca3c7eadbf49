//! Re-embedding the chunks already in the database, for a model change or to fill gaps.
//!
//! The full mode never touches `chunks` until the end: new vectors are computed a window at
//! a time (in parallel, through the cache) and committed every few dozen chunks into
//! `pending_embeddings`, which is the resumable progress of the run (`pending.rs`). When every
//! chunk has one, a single transaction swaps them in (`swap.rs`): the rows are written back with
//! their new vectors, the column's dimension changes if it must, the index is built once.
//! Until that commit the old vectors and the old index are untouched, whatever happens.
//!
//! `--only-missing` fills chunks without an embedding in place, a committed step at a time.

use color_eyre::eyre::{bail, WrapErr};
use color_eyre::Result;
use diesel::pg::{Pg, PgConnection};
use diesel::prelude::*;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use pgvector::Vector;
use uuid::Uuid;

mod pending;
mod swap;

use crate::db::{self, QueryContext};
use crate::embed::cache::CachedEmbedder;
use crate::embed::InputKind;
use crate::interrupt;
use crate::progress::Progress;
use crate::schema::{chunks, pending_embeddings};

/// Which chunks to re-embed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selection {
    /// Chunks not embedded by the target model at the target dimension (resumable default).
    NotByTarget,
    /// Every chunk.
    All,
    /// Chunks without an embedding, filled in place.
    Missing,
}

#[derive(Debug, Default)]
pub struct Outcome {
    pub chunks_embedded: u64,
    pub chunks_skipped: u64,
    pub embeddings_computed: u64,
    pub embeddings_reused: u64,
    /// The column's dimension before, when this run changed it.
    pub dims_changed_from: Option<i32>,
}

pub struct Regeneration<'a> {
    pub embedder: CachedEmbedder<'a>,
    pub selection: Selection,
    pub commit_every: usize,
    /// The dimension of `chunks.embedding` now (`None`: an unsized column).
    pub column_dims: Option<i32>,
}

impl Regeneration<'_> {
    fn model(&self) -> &str {
        &self.embedder.client.info().model
    }

    fn dims(&self) -> usize {
        self.embedder.client.info().dims
    }

    fn changes_dims(&self) -> bool {
        self.column_dims
            .is_some_and(|dims| dims as usize != self.dims())
    }

    /// Chunks to embed per round: enough to keep every request slot busy.
    fn window(&self) -> i64 {
        let client = self.embedder.client;
        (client.batch_size() * client.concurrency()).max(self.commit_every) as i64
    }

    /// The next window of chunks (id, text) after `after` by id (`None`: from the first);
    /// callers add what they select by. Walking forward by id keeps each query short.
    fn chunk_window<'a>(&self, after: Option<Uuid>) -> chunks::BoxedQuery<'a, Pg, (SqlUuid, Text)> {
        let mut query = chunks::table
            .select((chunks::id, chunks::content))
            .order(chunks::id)
            .limit(self.window())
            .into_boxed();
        if let Some(after) = after {
            query = query.filter(chunks::id.gt(after));
        }
        query
    }

    /// Runs the regeneration; `side` is a second connection, for the embedding thread.
    pub fn run(
        &self,
        conn: &mut PgConnection,
        side: &mut PgConnection,
        progress: &Progress,
    ) -> Result<Outcome> {
        if self.selection == Selection::Missing {
            if self.changes_dims() {
                bail!(crate::error::InvalidInput(format!(
                    "--only-missing cannot change chunks.embedding from {} to {} dimensions; \
                     run without it to re-embed every chunk",
                    self.column_dims.unwrap_or_default(),
                    self.dims()
                )));
            }
            return self.fill_missing(conn, progress);
        }
        check_indexes_fit(conn, self.dims())?;
        let total: i64 = chunks::table
            .count()
            .get_result(conn)
            .step("counting chunks")?;
        interrupt::set_outcome(
            "the vectors computed so far are kept in pending_embeddings, and chunks still hold \
             their old vectors: run the same command again to continue",
        );
        self.discard_stale_pending(conn)?;
        let embedded = self.fill_pending(conn, side, progress)?;
        let mut outcome = Outcome {
            embeddings_computed: embedded.computed,
            embeddings_reused: embedded.reused,
            ..Outcome::default()
        };
        interrupt::check()?;
        progress.step("swapping the new vectors in and building the vector index");
        interrupt::set_outcome(
            "the swap was rolled back: chunks hold their old vectors and index; the new vectors \
             are kept in pending_embeddings: run the same command again to swap them in",
        );
        let swapped = swap::swap_in(conn, self.dims(), self.changes_dims())?;
        outcome.chunks_embedded = swapped;
        outcome.chunks_skipped = (total as u64).saturating_sub(swapped);
        outcome.dims_changed_from = self.column_dims.filter(|_| self.changes_dims());
        Ok(outcome)
    }

    /// Pending vectors of another model or size, from an earlier run with other options, or
    /// made from a text that has been edited since, cannot be used: drop them.
    fn discard_stale_pending(&self, conn: &mut PgConnection) -> Result<()> {
        let stale = diesel::delete(
            pending_embeddings::table.filter(
                pending_embeddings::model
                    .ne(self.model())
                    .or(pending_embeddings::dims.ne(self.dims() as i32)),
            ),
        )
        .execute(conn)
        .step("dropping pending vectors of another model")?;
        if stale > 0 {
            log::warn!(
                "dropped {stale} pending vectors of an earlier run with another model or dimension"
            );
        }
        let edited = diesel::sql_query(
            "DELETE FROM pending_embeddings p USING chunks c WHERE p.chunk_id = c.id \
             AND p.text_sha256 <> sha256(convert_to(c.content, 'UTF8'))",
        )
        .execute(conn)
        .step("dropping pending vectors of chunks edited since")?;
        if edited > 0 {
            log::info!("{edited} chunks were edited since an earlier run embedded them: embedding them again");
        }
        let resumed: i64 = pending_embeddings::table
            .count()
            .get_result(conn)
            .step("counting pending vectors")?;
        if resumed > 0 {
            log::info!("resuming: {resumed} chunks were embedded by an earlier run");
        }
        Ok(())
    }

    /// `--only-missing`: fill chunks without an embedding, committing every step.
    fn fill_missing(&self, conn: &mut PgConnection, progress: &Progress) -> Result<Outcome> {
        interrupt::set_outcome(
            "the step in progress was rolled back; the chunks filled before it keep their new \
             vectors: run the same command again to fill the rest",
        );
        let total: i64 = chunks::table
            .count()
            .get_result(conn)
            .step("counting chunks")?;
        let mut outcome = Outcome::default();
        let mut after: Option<Uuid> = None;
        loop {
            interrupt::check()?;
            let work: Vec<(Uuid, String)> = self
                .chunk_window(after)
                .filter(chunks::embedding.is_null())
                .load(conn)
                .step("choosing the chunks without an embedding")?;
            let Some((last, _)) = work.last() else { break };
            after = Some(*last);
            let texts: Vec<&str> = work.iter().map(|(_, text)| text.as_str()).collect();
            let embedded = self.embedder.embed(conn, &texts, InputKind::Document)?;
            outcome.embeddings_computed += embedded.computed;
            outcome.embeddings_reused += embedded.reused;
            let pairs: Vec<(Uuid, Vector)> = work
                .iter()
                .map(|(id, _)| *id)
                .zip(embedded.vectors)
                .collect();
            for step in pairs.chunks(self.commit_every.max(1)) {
                outcome.chunks_embedded += db::in_transaction(conn, |conn| {
                    let mut updated = 0;
                    for (id, vector) in step {
                        updated += diesel::update(
                            chunks::table.find(id).filter(chunks::embedding.is_null()),
                        )
                        .set((
                            chunks::embedding.eq(vector),
                            chunks::embedding_model.eq(self.model()),
                        ))
                        .execute(conn)
                        .step("storing a vector")?;
                    }
                    Ok(updated as u64)
                })
                .wrap_err("saving a step of new vectors; earlier steps are kept")?;
                interrupt::set_outcome(format!(
                    "the step in progress was rolled back; the {} chunks filled before it keep their \
                     new vectors: run the same command again to fill the rest",
                    outcome.chunks_embedded
                ));
            }
            progress.written(0, work.len() as u64);
        }
        outcome.chunks_skipped = (total as u64).saturating_sub(outcome.chunks_embedded);
        Ok(outcome)
    }
}

/// The most dimensions pgvector indexes, by the operator class's type (pgvector 0.8: HNSW and
/// IVFFlat index `vector` up to 2000 dimensions, `halfvec` up to 4000, `bit` up to 64000).
fn index_dims_limit(definition: &str) -> Option<usize> {
    let lower = definition.to_ascii_lowercase();
    if lower.contains("halfvec_") {
        Some(4000)
    } else if lower.contains("bit_") {
        Some(64_000)
    } else if lower.contains("sparsevec_") {
        None
    } else {
        Some(2000)
    }
}

/// Fails (exit 2) before anything is embedded when a vector index on `chunks` cannot hold
/// vectors of `dims`: otherwise every vector would be paid for, and the swap's index build
/// would refuse them at the end.
fn check_indexes_fit(conn: &mut PgConnection, dims: usize) -> Result<()> {
    for index in crate::restore::load::vector_indexes(conn)? {
        if let Some(limit) = index_dims_limit(&index.definition).filter(|limit| dims > *limit) {
            bail!(crate::error::InvalidInput(format!(
                "the vector index {} ({}) holds vectors of at most {limit} dimensions, and \
                 --embed-dims is {dims}; nothing was embedded. Choose --embed-dims {limit} or fewer \
                 (Voyage and OpenAI's text-embedding-3 models shorten their vectors), or index \
                 half-precision vectors (halfvec, up to 4000 dimensions) instead",
                index.name, index.definition
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn index_limits_by_operator_class() {
        use super::index_dims_limit;
        let hnsw = "CREATE INDEX i ON public.chunks USING hnsw (embedding vector_cosine_ops)";
        assert_eq!(index_dims_limit(hnsw), Some(2000));
        let half = "CREATE INDEX i ON public.chunks USING hnsw (((embedding)::halfvec(3072)) halfvec_cosine_ops)";
        assert_eq!(index_dims_limit(half), Some(4000));
    }
}
