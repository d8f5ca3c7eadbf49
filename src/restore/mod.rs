//! Restoring a backup file: the file is streamed again after validation, its chunks are
//! embedded a window of batches at a time on a second thread (so the provider works while
//! the database writes), and the batches of ten analyses are written in order.
//!
//! Append mode commits each batch, skipping ids that exist, so an interrupted restore
//! finishes when run again and embeds only what is missing. Replace mode runs the deletion
//! and the whole load in one transaction: a failure at any point leaves the old data.

pub mod existing;
pub mod load;
pub mod plan;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use color_eyre::eyre::{bail, eyre};
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::RunQueryDsl;
use pgvector::Vector;
use uuid::Uuid;

use self::load::{BatchCounts, EmbeddedBatch};
use crate::backup_file::reader::{read_backup, ReadError};
use crate::backup_file::record::{BackupAnalysis, BackupQuery};
use crate::db::QueryContext;
use crate::embed::cache::CachedEmbedder;
use crate::embed::InputKind;
use crate::interrupt;
use crate::pipeline::{self, Feed};
use crate::progress::Progress;
use crate::validate::Counts;

/// Analyses written per transaction in append mode.
pub const BATCH_ANALYSES: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Append,
    Replace,
}

/// What a load did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Loaded {
    pub counts: BatchCounts,
    pub embeddings_computed: u64,
    pub embeddings_reused: u64,
    pub queries_inserted: u64,
}

/// What a replace did besides loading.
#[derive(Debug)]
pub struct Replaced {
    pub loaded: Loaded,
    pub deleted: Counts,
    pub safety_backup: Option<std::path::PathBuf>,
}

/// How the chunks get their vectors: the client, with or without the cache, through a
/// second connection (which also finds the rows that already exist in append mode).
pub struct Embedding<'a> {
    pub embedder: CachedEmbedder<'a>,
    pub side: PgConnection,
}

/// Appends the file's rows that the database lacks, one committed batch at a time.
pub fn append(
    conn: &mut PgConnection,
    path: &Path,
    embedding: Embedding,
    progress: &Progress,
) -> Result<Loaded> {
    load_file(conn, path, Mode::Append, embedding, progress)
}

/// Replaces the whole dataset with the file's, in one transaction: lock, safety backup of
/// the rows about to go, clear, bulk load, index build, checks. Any failure rolls it all back.
pub fn replace(
    conn: &mut PgConnection,
    path: &Path,
    expected: Counts,
    queries: &[BackupQuery],
    safety_path: &Path,
    embedding: Embedding,
    progress: &Progress,
) -> Result<Replaced> {
    let dims = embedding.embedder.client.info().dims;
    crate::db::in_transaction(conn, |conn| {
        diesel::sql_query("LOCK TABLE analyses, chunks, artifacts IN ACCESS EXCLUSIVE MODE")
            .execute(conn)
            .step("locking the tables")?;
        let deleted = load::table_counts(conn)?;
        let safety_backup =
            if deleted.analyses + deleted.chunks + deleted.artifacts + deleted.queries > 0 {
                progress.step("writing the safety backup");
                crate::commands::backup::write_backup_in(
                    conn,
                    safety_path,
                    None,
                    500,
                    &indicatif::ProgressBar::hidden(),
                )?;
                log::info!(
                    "safety backup of the current data: {}",
                    safety_path.display()
                );
                Some(safety_path.to_path_buf())
            } else {
                None
            };
        let index_definitions = load::clear_for_replace(conn)?;
        let mut loaded = load_file(conn, path, Mode::Replace, embedding, progress)?;
        loaded.queries_inserted = load::insert_queries(conn, queries, true)?;
        interrupt::check()?;
        progress.step("building the vector index");
        load::build_indexes(conn, &index_definitions)?;

        let after = load::table_counts(conn)?;
        if after != expected {
            bail!(
                "after the load the tables hold {} analyses, {} chunks, {} artifacts, {} queries but the file has \
                 {}, {}, {}, {}; rolled back",
                after.analyses,
                after.chunks,
                after.artifacts,
                after.queries,
                expected.analyses,
                expected.chunks,
                expected.artifacts,
                expected.queries
            );
        }
        let bad = load::chunks_with_bad_embeddings(conn, None, dims)?;
        if bad > 0 {
            bail!(
                "{bad} chunks have no embedding of {dims} dimensions after the load; rolled back"
            );
        }
        Ok(Replaced {
            loaded,
            deleted,
            safety_backup,
        })
    })
}

fn load_file(
    conn: &mut PgConnection,
    path: &Path,
    mode: Mode,
    embedding: Embedding,
    progress: &Progress,
) -> Result<Loaded> {
    let client = embedding.embedder.client;
    let model = client.info().model.clone();
    let dims = client.info().dims;
    let computed = AtomicU64::new(0);
    let reused = AtomicU64::new(0);
    let producer = Producer {
        path,
        mode,
        embedding,
        window_chunks: client.batch_size() * client.concurrency(),
        computed: &computed,
        reused: &reused,
        progress,
    };
    let mut counts = BatchCounts::default();
    pipeline::run(
        |feed| producer.run(feed),
        |batch| {
            interrupt::check()?;
            let written = match mode {
                Mode::Append => load::append_batch(conn, &batch, &model, dims)?,
                Mode::Replace => load::copy_batch(conn, &batch, &model)?,
            };
            progress.written(written.total.analyses, written.total.chunks);
            counts += written;
            Ok(())
        },
    )?;
    Ok(Loaded {
        counts,
        embeddings_computed: computed.into_inner(),
        embeddings_reused: reused.into_inner(),
        queries_inserted: 0,
    })
}

/// Reads the file and embeds a window of batches at a time, on its own thread.
struct Producer<'a> {
    path: &'a Path,
    mode: Mode,
    embedding: Embedding<'a>,
    window_chunks: usize,
    computed: &'a AtomicU64,
    reused: &'a AtomicU64,
    progress: &'a Progress,
}

impl Producer<'_> {
    fn run(mut self, feed: &Feed<'_, EmbeddedBatch>) -> Result<()> {
        let mut window: Vec<BackupAnalysis> = Vec::new();
        let mut window_chunks = 0;
        let path = self.path;
        let read = read_backup(path, |index, value| {
            if feed.stopped() {
                bail!("stopped");
            }
            // The whole file passed every check before this read; only the typed record is
            // needed now, not the validator's sets of every id (memory on large files).
            let record: BackupAnalysis = serde_json::from_value(value).map_err(|e| {
                eyre!("analysis #{} of {} no longer reads ({e}): was the file changed during the restore?", index + 1, path.display())
            })?;
            window_chunks += record.chunks.len();
            window.push(record);
            if window.len() % BATCH_ANALYSES == 0 && window_chunks >= self.window_chunks {
                self.flush(std::mem::take(&mut window), feed)?;
                window_chunks = 0;
            }
            Ok(())
        });
        read.map_err(ReadError::into_report)?;
        self.flush(std::mem::take(&mut window), feed)
    }

    /// Embeds the chunks of `records` that the database lacks and sends them as batches.
    fn flush(
        &mut self,
        records: Vec<BackupAnalysis>,
        feed: &Feed<'_, EmbeddedBatch>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let existing = match self.mode {
            Mode::Append => existing::existing_ids(&mut self.embedding.side, &records)
                .step("looking up the rows that already exist")?,
            // The tables were emptied in the restore's own transaction.
            Mode::Replace => existing::ExistingIds::default(),
        };
        let missing: Vec<(Uuid, &str)> = records
            .iter()
            .flat_map(|record| record.chunks.iter())
            .filter(|chunk| !existing.chunks.contains(&chunk.id))
            .map(|chunk| (chunk.id, chunk.content.as_str()))
            .collect();
        let texts: Vec<&str> = missing.iter().map(|(_, text)| *text).collect();
        let embedded =
            self.embedding
                .embedder
                .embed(&mut self.embedding.side, &texts, InputKind::Document)?;
        self.computed
            .fetch_add(embedded.computed, Ordering::Relaxed);
        self.reused.fetch_add(embedded.reused, Ordering::Relaxed);
        self.progress.embedded(embedded.computed + embedded.reused);
        let mut by_chunk: HashMap<Uuid, Vector> = missing
            .iter()
            .map(|(id, _)| *id)
            .zip(embedded.vectors)
            .collect();

        let mut records = records.into_iter().peekable();
        while records.peek().is_some() {
            let batch: Vec<BackupAnalysis> = records.by_ref().take(BATCH_ANALYSES).collect();
            let vectors = batch
                .iter()
                .flat_map(|record| record.chunks.iter())
                .filter_map(|chunk| by_chunk.remove_entry(&chunk.id))
                .collect();
            feed.send(EmbeddedBatch {
                records: batch,
                vectors,
            })?;
        }
        Ok(())
    }
}
