//! Restoring a backup file: the file is read again after validation (the same open file,
//! proven unchanged before every commit), its chunks are embedded a window at a time on a
//! second thread (so the provider works while the database writes), and the batches are
//! written in order. A window is bounded by chunks, not by analyses, so memory stays flat
//! whatever the file's shape: an analysis of a hundred thousand chunks is loaded in pieces.
//!
//! Append mode commits each batch, skipping ids that exist, so an interrupted restore
//! finishes when run again and embeds only what is missing. Replace mode runs the deletion
//! and the whole load in one transaction: a failure at any point leaves the old data.

pub mod bulk;
pub mod encoding;
pub mod existing;
pub mod load;
pub mod plan;
pub mod sync;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use color_eyre::eyre::{bail, WrapErr};
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::RunQueryDsl;
use pgvector::Vector;
use uuid::Uuid;

use self::existing::{Existing, Fate};
use self::load::{BatchCounts, EmbeddedBatch};
use crate::backup_file::extras::FileExtras;
use crate::backup_file::record::BackupQuery;
use crate::backup_file::records::Record;
use crate::backup_file::source::BackupSource;
use crate::backup_file::windows;
use crate::db::QueryContext;
use crate::embed::cache::CachedEmbedder;
use crate::embed::InputKind;
use crate::interrupt;
use crate::pipeline::{self, Feed};
use crate::progress::Progress;
use crate::validate::Counts;

/// Analyses written per transaction in append mode (fewer when they hold many chunks).
pub const BATCH_ANALYSES: usize = 10;
/// The most analyses a window holds whatever its chunks, so that a file of analyses without
/// chunks stays bounded too.
const WINDOW_ANALYSES: usize = 500;
/// The most chunks of a window whatever the analyses (one may hold a hundred thousand):
/// with 1024-dimension vectors, about 5 MB of text and vectors.
const MOST_CHUNKS: usize = 1024;
/// The most chunks of a batch (a transaction of append mode, a COPY of replace mode).
const BATCH_CHUNKS: usize = 256;

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

/// The validated file that the load reads again, and the digest of the bytes validated.
#[derive(Clone, Copy)]
pub struct Input<'a> {
    pub source: &'a BackupSource,
    pub validated_sha256: [u8; 32],
}

/// What a file holds besides its analyses: its golden queries and its file-level keys.
#[derive(Clone, Copy)]
pub struct FileLevel<'a> {
    pub queries: &'a [BackupQuery],
    pub extras: &'a FileExtras,
}

/// Appends the file's rows that the database lacks, one committed batch at a time.
pub fn append(
    conn: &mut PgConnection,
    input: Input,
    embedding: Embedding,
    progress: &Progress,
) -> Result<Loaded> {
    load_file(conn, input, Mode::Append, embedding, progress)
}

/// Replaces the whole dataset with the file's, in one transaction: lock, safety backup of
/// the rows about to go, clear, bulk load, index build, checks. Any failure (an interruption
/// included) rolls it all back.
pub fn replace(
    conn: &mut PgConnection,
    input: Input,
    expected: Counts,
    file_level: FileLevel,
    safety_path: &Path,
    embedding: Embedding,
    progress: &Progress,
) -> Result<Replaced> {
    let dims = embedding.embedder.client.info().dims;
    let rolled_back = "the replace was rolled back: the database holds what it held before";
    interrupt::set_outcome(rolled_back);
    crate::db::in_final_transaction(conn, |conn| {
        progress.step("locking the dataset's tables");
        diesel::sql_query(
            "LOCK TABLE analyses, chunks, artifacts, artifact_versions, queries, dataset_extras \
             IN ACCESS EXCLUSIVE MODE",
        )
        .execute(conn)
        .step("locking the tables")?;
        let deleted = load::table_counts(conn)?;
        let safety_backup =
            if deleted.analyses + deleted.chunks + deleted.artifacts + deleted.queries > 0 {
                progress.step("writing the safety backup");
                let backed_up = crate::backup::write_backup_in(
                    conn,
                    safety_path,
                    None,
                    500,
                    &indicatif::ProgressBar::hidden(),
                )?;
                backed_up.warn_if_not_restorable(safety_path);
                backed_up.prepared.persist_new().wrap_err_with(|| {
                    format!(
                        "writing the safety backup {}; nothing was changed",
                        safety_path.display()
                    )
                })?;
                log::info!(
                    "safety backup of the current data: {}",
                    safety_path.display()
                );
                interrupt::set_outcome(format!(
                    "{rolled_back} (the safety backup {} was written all the same)",
                    safety_path.display()
                ));
                Some(safety_path.to_path_buf())
            } else {
                None
            };
        let index_definitions = load::clear_for_replace(conn)?;
        let mut loaded = load_file(conn, input, Mode::Replace, embedding, progress)?;
        loaded.queries_inserted = load::insert_queries(conn, file_level.queries, true)?;
        load::write_file_extras(conn, file_level.extras, true)?;
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
        input.source.check_unchanged()?;
        Ok(Replaced {
            loaded,
            deleted,
            safety_backup,
        })
    })
}

fn load_file(
    conn: &mut PgConnection,
    input: Input,
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
        input,
        mode,
        embedding,
        window_chunks: window_chunks(client.batch_size(), client.concurrency()),
        computed: &computed,
        reused: &reused,
        progress,
    };
    let mut counts = BatchCounts::default();
    let unchanged = || input.source.check_unchanged();
    let loaded = pipeline::run(
        |feed| producer.run(feed),
        |batch| {
            interrupt::check()?;
            let written = match mode {
                Mode::Append => load::append_batch(conn, batch, &model, dims, &unchanged)?,
                Mode::Replace => load::copy_batch(conn, batch, &model)?,
            };
            progress.written(written.total.analyses, written.total.chunks);
            counts += written;
            if mode == Mode::Append {
                interrupt::set_outcome(format!(
                    "the batch in progress was rolled back; the {} analyses and {} chunks committed \
                     before it are kept: run the same restore again to finish",
                    counts.inserted.analyses, counts.inserted.chunks
                ));
            }
            Ok(())
        },
    );
    let committed = (counts.inserted.analyses, counts.inserted.chunks);
    if mode == Mode::Append && committed != (0, 0) {
        loaded.wrap_err_with(|| {
            format!(
                "the restore stopped after committing {} analyses and {} chunks, which are kept \
                 (run it again to finish)",
                committed.0, committed.1
            )
        })?;
    } else {
        loaded?;
    }
    Ok(Loaded {
        counts,
        embeddings_computed: computed.into_inner(),
        embeddings_reused: reused.into_inner(),
        queries_inserted: 0,
    })
}

/// Reads the file and embeds a window of records at a time, on its own thread.
struct Producer<'a> {
    input: Input<'a>,
    mode: Mode,
    embedding: Embedding<'a>,
    /// The chunks of a window ([`read_windows`]).
    window_chunks: usize,
    computed: &'a AtomicU64,
    reused: &'a AtomicU64,
    progress: &'a Progress,
}

impl Producer<'_> {
    fn run(mut self, feed: &Feed<'_, EmbeddedBatch>) -> Result<()> {
        let input = self.input;
        let target = self.window_chunks;
        read_windows(input, target, |records| {
            if feed.stopped() {
                bail!("stopped");
            }
            self.flush(records, feed)
        })
    }

    /// Embeds the chunks of `records` to insert and sends them as batches.
    fn flush(&mut self, records: Vec<Record>, feed: &Feed<'_, EmbeddedBatch>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let existing = match self.mode {
            Mode::Append => Existing::lookup(&mut self.embedding.side, &records)
                .step("looking up the rows that already exist")?,
            // The tables were emptied in the restore's own transaction.
            Mode::Replace => Existing::none(),
        };
        let fates: Vec<Fate> = records.iter().map(|record| existing.fate(record)).collect();
        let to_embed = chunks_to_embed(&records, &fates);
        let texts: Vec<&str> = to_embed.iter().map(|(_, text)| *text).collect();
        let embedded =
            self.embedding
                .embedder
                .embed(&mut self.embedding.side, &texts, InputKind::Document)?;
        self.computed
            .fetch_add(embedded.computed, Ordering::Relaxed);
        self.reused.fetch_add(embedded.reused, Ordering::Relaxed);
        self.progress.embedded(embedded.computed + embedded.reused);
        let mut vectors: HashMap<Uuid, Vector> = to_embed
            .iter()
            .map(|(id, _)| *id)
            .zip(embedded.vectors)
            .collect();

        let mut batch = Vec::new();
        let (mut ends, mut chunks) = (0, 0);
        for (record, fate) in records.into_iter().zip(fates) {
            match &record {
                Record::End { .. } => ends += 1,
                Record::Chunk { .. } => chunks += 1,
                Record::Analysis(_) | Record::Artifact { .. } => {}
            }
            batch.push((record, fate));
            if ends == BATCH_ANALYSES || chunks >= BATCH_CHUNKS {
                self.send(std::mem::take(&mut batch), &mut vectors, feed)?;
                (ends, chunks) = (0, 0);
            }
        }
        self.send(batch, &mut vectors, feed)
    }

    fn send(
        &self,
        records: Vec<(Record, Fate)>,
        vectors: &mut HashMap<Uuid, Vector>,
        feed: &Feed<'_, EmbeddedBatch>,
    ) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let vectors = records
            .iter()
            .filter_map(|(record, _)| match record {
                Record::Chunk { chunk, .. } => vectors.remove_entry(&chunk.id),
                _ => None,
            })
            .collect();
        feed.send(EmbeddedBatch { records, vectors })
    }
}

/// Reads `input` again in the restore's windows of `target_chunks` (ending at a batch
/// boundary), handing each to `on_window`: the restore and its dry-run plan cut the file into
/// the same windows, so the plan's requests are the restore's.
pub(crate) fn read_windows(
    input: Input,
    target_chunks: usize,
    on_window: impl FnMut(Vec<Record>) -> Result<()>,
) -> Result<()> {
    let shape = windows::Shape {
        target_chunks: target_chunks.max(1),
        analyses_per_step: BATCH_ANALYSES,
        most_analyses: WINDOW_ANALYSES,
        most_chunks: target_chunks.max(MOST_CHUNKS),
    };
    windows::read_windows(
        input.source,
        &input.validated_sha256,
        shape,
        |_| false,
        on_window,
    )
}

/// The chunks of `records` whose fate is to be inserted: those that need a vector.
pub(crate) fn chunks_to_embed<'a>(records: &'a [Record], fates: &[Fate]) -> Vec<(Uuid, &'a str)> {
    records
        .iter()
        .zip(fates)
        .filter_map(|(record, fate)| match (record, fate) {
            (Record::Chunk { chunk, .. }, Fate::Insert) => Some((chunk.id, chunk.content.as_str())),
            _ => None,
        })
        .collect()
}

/// The chunks a window gathers for a provider of `batch_size` and `concurrency`.
pub fn window_chunks(batch_size: usize, concurrency: usize) -> usize {
    (batch_size * concurrency).max(1)
}
