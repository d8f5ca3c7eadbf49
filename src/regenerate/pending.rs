//! Filling `pending_embeddings`, the resumable progress of a full regeneration, as a pipeline
//! (`crate::pipeline`): one thread reads the next window of chunks and has it embedded (on its
//! own connection, which the cache also uses) while this one commits the previous window's
//! vectors. The provider and the database work at the same time instead of taking turns.

use std::sync::atomic::{AtomicU64, Ordering};

use color_eyre::Result;
use diesel::dsl::{exists, not};
use diesel::pg::PgConnection;
use diesel::prelude::*;
use pgvector::Vector;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Regeneration, Selection};
use crate::db::QueryContext;
use crate::embed::InputKind;
use crate::interrupt;
use crate::models::chunk::vector_dims;
use crate::models::NewPendingEmbedding;
use crate::pipeline::{self, Feed};
use crate::progress::Progress;
use crate::schema::{chunks, pending_embeddings};

/// A chunk's new vector and the hash of the text it was made from.
struct NewVector {
    chunk_id: Uuid,
    vector: Vector,
    text_sha256: [u8; 32],
}

/// Embeddings computed by the provider and taken from the cache.
#[derive(Default)]
pub(super) struct Embedded {
    pub computed: u64,
    pub reused: u64,
}

impl Regeneration<'_> {
    /// Embeds every chunk that needs it and has no pending vector, committing the vectors
    /// into `pending_embeddings` `commit_every` at a time. `side` is the embedding thread's
    /// connection.
    pub(super) fn fill_pending(
        &self,
        conn: &mut PgConnection,
        side: &mut PgConnection,
        progress: &Progress,
    ) -> Result<Embedded> {
        let computed = AtomicU64::new(0);
        let reused = AtomicU64::new(0);
        pipeline::run(
            |feed| self.produce(side, &computed, &reused, feed),
            |window: Vec<NewVector>| {
                interrupt::check()?;
                self.save(conn, &window)?;
                progress.written(0, window.len() as u64);
                Ok(())
            },
        )?;
        Ok(Embedded {
            computed: computed.into_inner(),
            reused: reused.into_inner(),
        })
    }

    /// The embedding thread: walks the chunks by id, a window at a time.
    fn produce(
        &self,
        side: &mut PgConnection,
        computed: &AtomicU64,
        reused: &AtomicU64,
        feed: &Feed<'_, Vec<NewVector>>,
    ) -> Result<()> {
        let mut after = None;
        loop {
            if feed.stopped() {
                return Ok(());
            }
            interrupt::check()?;
            let work = self.next_work(side, after)?;
            let Some((last, _)) = work.last() else {
                return Ok(());
            };
            after = Some(*last);
            let texts: Vec<&str> = work.iter().map(|(_, text)| text.as_str()).collect();
            let embedded = self.embedder.embed(side, &texts, InputKind::Document)?;
            computed.fetch_add(embedded.computed, Ordering::Relaxed);
            reused.fetch_add(embedded.reused, Ordering::Relaxed);
            let window = work
                .iter()
                .zip(embedded.vectors)
                .map(|((chunk_id, text), vector)| NewVector {
                    chunk_id: *chunk_id,
                    vector,
                    text_sha256: Sha256::digest(text.as_bytes()).into(),
                })
                .collect();
            feed.send(window)?;
        }
    }

    /// The next chunks after `after` (by id; `None`: from the first) that need a vector and
    /// have no pending one.
    fn next_work(
        &self,
        conn: &mut PgConnection,
        after: Option<Uuid>,
    ) -> Result<Vec<(Uuid, String)>> {
        let pending = pending_embeddings::table.filter(pending_embeddings::chunk_id.eq(chunks::id));
        let mut query = self.chunk_window(after).filter(not(exists(pending)));
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

    /// Commits a window's vectors, `commit_every` at a time: each step is its own COPY, so
    /// the most an interruption loses is one step.
    fn save(&self, conn: &mut PgConnection, window: &[NewVector]) -> Result<()> {
        let model = self.model();
        let dims = self.dims() as i32;
        for step in window.chunks(self.commit_every.max(1)) {
            let rows: Vec<NewPendingEmbedding> = step
                .iter()
                .map(|new| NewPendingEmbedding {
                    chunk_id: new.chunk_id,
                    embedding: &new.vector,
                    model,
                    dims,
                    text_sha256: new.text_sha256.to_vec(),
                })
                .collect();
            diesel::copy_from(pending_embeddings::table)
                .from_insertable(&rows)
                .execute(conn)
                .step("saving new vectors")?;
        }
        Ok(())
    }
}
