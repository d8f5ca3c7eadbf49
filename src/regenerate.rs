//! Re-embedding the chunks already in the database, for a model change or to fill gaps.
//!
//! The full mode never touches `chunks` until the end: new vectors are computed a window at
//! a time (in parallel, through the cache) and committed every few dozen chunks into
//! `pending_embeddings`, which is the resumable progress of the run. When every chunk has
//! one, a single transaction swaps them in: drop the vector index, change the column's
//! dimension if it changes, copy the vectors over, build the index once. Until that commit
//! the old vectors and the old index are untouched, whatever happens.
//!
//! `--only-missing` fills chunks without an embedding in place, a committed step at a time.

use color_eyre::eyre::{bail, WrapErr};
use color_eyre::Result;
use diesel::dsl::{exists, not};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use pgvector::Vector;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::db::{self, QueryContext};
use crate::embed::cache::CachedEmbedder;
use crate::embed::InputKind;
use crate::interrupt;
use crate::models::chunk::vector_dims;
use crate::models::NewPendingEmbedding;
use crate::progress::Progress;
use crate::restore::load;
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

    pub fn run(&self, conn: &mut PgConnection, progress: &Progress) -> Result<Outcome> {
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
        let total: i64 = chunks::table
            .count()
            .get_result(conn)
            .step("counting chunks")?;
        self.discard_stale_pending(conn)?;
        let mut outcome = Outcome::default();
        loop {
            interrupt::check()?;
            let work = self.next_work(conn)?;
            if work.is_empty() {
                break;
            }
            let (computed, reused) = self.embed_into_pending(conn, &work)?;
            outcome.embeddings_computed += computed;
            outcome.embeddings_reused += reused;
            progress.written(0, work.len() as u64);
        }
        interrupt::check()?;
        progress.step("swapping the new vectors in and building the vector index");
        let swapped = self.swap_in(conn)?;
        outcome.chunks_embedded = swapped;
        outcome.chunks_skipped = (total as u64).saturating_sub(swapped);
        outcome.dims_changed_from = self.column_dims.filter(|_| self.changes_dims());
        Ok(outcome)
    }

    /// Pending vectors of another model or size, from an earlier run with other options,
    /// cannot be used: drop them.
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
        let resumed: i64 = pending_embeddings::table
            .count()
            .get_result(conn)
            .step("counting pending vectors")?;
        if resumed > 0 {
            log::info!("resuming: {resumed} chunks were embedded by an earlier run");
        }
        Ok(())
    }

    /// The next chunks (by id) that need a vector and have no pending one.
    fn next_work(&self, conn: &mut PgConnection) -> Result<Vec<(Uuid, String)>> {
        let pending = pending_embeddings::table.filter(pending_embeddings::chunk_id.eq(chunks::id));
        let mut query = chunks::table
            .filter(not(exists(pending)))
            .select((chunks::id, chunks::content))
            .order(chunks::id)
            .limit(self.window())
            .into_boxed();
        if self.selection == Selection::NotByTarget && !self.changes_dims() {
            query = query.filter(
                chunks::embedding
                    .is_null()
                    .or(chunks::embedding_model.is_distinct_from(self.model()))
                    .or(vector_dims(chunks::embedding).ne(self.dims() as i32)),
            );
        }
        query.load(conn).step("choosing the chunks to embed")
    }

    /// Embeds `work` and commits the vectors into `pending_embeddings`, `commit_every` at a time.
    fn embed_into_pending(
        &self,
        conn: &mut PgConnection,
        work: &[(Uuid, String)],
    ) -> Result<(u64, u64)> {
        let texts: Vec<&str> = work.iter().map(|(_, text)| text.as_str()).collect();
        let embedded = self.embedder.embed(conn, &texts, InputKind::Document)?;
        let model = self.model();
        let rows: Vec<NewPendingEmbedding> = work
            .iter()
            .zip(&embedded.vectors)
            .map(|((id, text), vector)| NewPendingEmbedding {
                chunk_id: *id,
                embedding: vector,
                model,
                dims: self.dims() as i32,
                text_sha256: Sha256::digest(text.as_bytes()).to_vec(),
            })
            .collect();
        // Each step is its own committed COPY: the most an interruption loses is one step.
        for step in rows.chunks(self.commit_every.max(1)) {
            diesel::copy_from(pending_embeddings::table)
                .from_insertable(step)
                .execute(conn)
                .step("saving new vectors")?;
        }
        Ok((embedded.computed, embedded.reused))
    }

    /// One transaction: the new vectors replace the old ones, the index is built once.
    fn swap_in(&self, conn: &mut PgConnection) -> Result<u64> {
        let dims = self.dims();
        db::in_transaction(conn, |conn| {
            diesel::sql_query("LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE")
                .execute(conn)
                .step("locking chunks")?;
            let pending: i64 = pending_embeddings::table
                .count()
                .get_result(conn)
                .step("counting pending vectors")?;
            if pending == 0 && !self.changes_dims() {
                return Ok(0);
            }
            let indexes = load::drop_vector_indexes(conn)?;
            if self.changes_dims() {
                diesel::sql_query(format!(
                    "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dims}) USING NULL"
                ))
                .execute(conn)
                .step("changing the dimension of chunks.embedding")?;
            }
            let swapped = diesel::sql_query(
                "UPDATE chunks SET embedding = p.embedding, embedding_model = p.model \
                 FROM pending_embeddings p WHERE chunks.id = p.chunk_id \
                 AND sha256(convert_to(chunks.content, 'UTF8')) = p.text_sha256",
            )
            .execute(conn)
            .step("copying the new vectors into chunks")?;
            diesel::delete(pending_embeddings::table)
                .execute(conn)
                .step("clearing the pending vectors")?;
            load::build_indexes(conn, &indexes)?;
            let without: i64 = chunks::table
                .filter(chunks::embedding.is_null())
                .count()
                .get_result(conn)
                .step("checking the new vectors")?;
            if self.changes_dims() && without > 0 {
                bail!("{without} chunks would be left without a vector of {dims} dimensions; nothing changed");
            }
            let bad = load::chunks_with_bad_embeddings(conn, None, dims)?;
            if bad > without {
                bail!(
                    "{} chunks hold a vector that is not of {dims} dimensions; nothing changed",
                    bad - without
                );
            }
            Ok(swapped as u64)
        })
    }

    /// `--only-missing`: fill chunks without an embedding, committing every step.
    fn fill_missing(&self, conn: &mut PgConnection, progress: &Progress) -> Result<Outcome> {
        let total: i64 = chunks::table
            .count()
            .get_result(conn)
            .step("counting chunks")?;
        let mut outcome = Outcome::default();
        let mut after = Uuid::nil();
        loop {
            interrupt::check()?;
            let work: Vec<(Uuid, String)> = chunks::table
                .filter(chunks::embedding.is_null())
                .filter(chunks::id.gt(after))
                .select((chunks::id, chunks::content))
                .order(chunks::id)
                .limit(self.window())
                .load(conn)
                .step("choosing the chunks without an embedding")?;
            let Some((last, _)) = work.last() else { break };
            after = *last;
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
            }
            progress.written(0, work.len() as u64);
        }
        outcome.chunks_skipped = (total as u64).saturating_sub(outcome.chunks_embedded);
        Ok(outcome)
    }
}
