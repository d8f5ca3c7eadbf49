//! Restoring a backup file: the file is read again after validation (the same open file,
//! proven unchanged before every commit), its chunks are embedded a window at a time on a
//! second thread (so the provider works while the database writes), and the batches are
//! written in order. A window is bounded by chunks, not by analyses, so memory stays flat
//! whatever the file's shape: an analysis of a hundred thousand chunks is loaded in pieces.
//!
//! Append mode skips ids that exist. When it writes few rows next to what `chunks` holds it
//! commits each batch, so an interrupted restore finishes when run again and embeds only what
//! is missing; when it writes many (an empty database above all) it loads in one transaction
//! with the vector index dropped and built once ([`bulk`] says when and why), all or nothing.
//! Replace mode runs the deletion and the whole load in one transaction: a failure at any
//! point leaves the old data.

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

/// What an append did.
#[derive(Debug)]
pub struct Appended {
    pub loaded: Loaded,
    /// File-level values where the file differs from the value the database keeps.
    pub file_keys_kept_from_database: Vec<String>,
    /// Whether it took the bulk path (one transaction, the vector index built once).
    pub bulk: bool,
}

/// Appends the file's rows that the database lacks, then its golden queries and file-level
/// keys the database lacks. `expected` holds the file's counts. The path is chosen by
/// [`bulk::choose`]: one committed batch at a time, or in one transaction with the vector
/// index dropped and built once.
pub fn append(
    conn: &mut PgConnection,
    input: Input,
    expected: Counts,
    file_level: FileLevel,
    embedding: Embedding,
    progress: &Progress,
) -> Result<Appended> {
    let client = embedding.embedder.client;
    let window = window_chunks(client.batch_size(), client.concurrency());
    let choice = bulk::choose(
        conn,
        expected.chunks,
        embedding.embedder.use_cache,
        |conn| Ok(plan::plan(conn, input, &[], Mode::Append, None, window)?.chunks_to_insert),
    )?;
    log::info!("append {}", choice.describe());
    if choice.bulk {
        return bulk_append(conn, input, expected, file_level, embedding, progress);
    }
    let mut loaded = load_file(conn, input, How::Batches, embedding, progress)?;
    interrupt::set_outcome(format!(
        "every analysis, chunk and artifact is committed, the golden queries and the \
         file-level keys are not: run the same restore again to finish ({} analyses, {} \
         chunks added)",
        loaded.counts.inserted.analyses, loaded.counts.inserted.chunks
    ));
    let (inserted, differing) = crate::db::in_final_transaction(conn, |conn| {
        let inserted = load::insert_queries(conn, file_level.queries, false)?;
        let differing = load::write_file_extras(conn, file_level.extras, false)?;
        input.source.check_unchanged()?;
        Ok((inserted, differing))
    })?;
    loaded.queries_inserted = inserted;
    Ok(Appended {
        loaded,
        file_keys_kept_from_database: differing,
        bulk: false,
    })
}

/// The bulk append: like [`replace`] but deleting nothing, in one transaction. The tables
/// are locked against other writers, the keys of every row read once ([`Existing::all`]:
/// the second connection must not read `chunks` once the vector index is dropped, it would
/// wait for this transaction forever), the vector indexes dropped, the missing rows COPYed
/// (the rules of the batch path: ids that exist and places taken are skipped), the golden
/// queries and the file-level keys the database lacks added, the indexes built once, the
/// counts and vectors checked. Any failure, an interruption included, rolls it all back; the
/// vectors computed stay in the embedding cache (committed through the second connection as
/// they come), so a rerun does not compute them again.
fn bulk_append(
    conn: &mut PgConnection,
    input: Input,
    file: Counts,
    file_level: FileLevel,
    embedding: Embedding,
    progress: &Progress,
) -> Result<Appended> {
    let dims = embedding.embedder.client.info().dims;
    interrupt::set_outcome(
        "the append was rolled back (it ran in one transaction): the database holds what it held \
         before; the embeddings computed are kept in the embedding cache, so running the same \
         restore again does not compute them again",
    );
    let appended = crate::db::in_final_transaction(conn, |conn| {
        progress.step("locking the dataset's tables");
        // Other writers wait; readers of `chunks` wait from the DROP INDEX on, as for a replace.
        for statement in [
            "LOCK TABLE analyses IN SHARE ROW EXCLUSIVE MODE",
            "LOCK TABLE chunks IN ACCESS EXCLUSIVE MODE",
            "LOCK TABLE artifacts, artifact_versions, queries, dataset_extras \
             IN SHARE ROW EXCLUSIVE MODE",
        ] {
            diesel::sql_query(statement)
                .execute(conn)
                .step("locking the tables")?;
        }
        let before = load::table_counts(conn)?;
        let bad_before = load::chunks_with_bad_embeddings(conn, None, dims)?;
        let existing = Existing::all(conn).step("reading the keys of the rows that exist")?;
        let index_definitions = load::drop_vector_indexes(conn)?;
        let mut loaded = load_file(conn, input, How::Copy(&existing), embedding, progress)?;
        drop(existing);
        loaded.queries_inserted = load::insert_queries(conn, file_level.queries, false)?;
        let differing = load::write_file_extras(conn, file_level.extras, false)?;
        interrupt::check()?;
        progress.step("building the vector index");
        load::build_indexes(conn, &index_definitions)?;

        let read = loaded.counts.total;
        if (read.analyses, read.chunks, read.artifacts)
            != (file.analyses, file.chunks, file.artifacts)
        {
            bail!(
                "the load read {} analyses, {} chunks, {} artifacts but the file has {}, {}, {}; \
                 rolled back",
                read.analyses,
                read.chunks,
                read.artifacts,
                file.analyses,
                file.chunks,
                file.artifacts
            );
        }
        let after = load::table_counts(conn)?;
        let inserted = loaded.counts.inserted;
        let expected = Counts {
            analyses: before.analyses + inserted.analyses,
            chunks: before.chunks + inserted.chunks,
            artifacts: before.artifacts + inserted.artifacts,
            queries: before.queries + loaded.queries_inserted,
        };
        if after != expected {
            bail!(
                "after the load the tables hold {} analyses, {} chunks, {} artifacts, {} queries but \
                 {}, {}, {}, {} were expected (the rows before and those inserted); rolled back",
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
        // Rows other programs wrote without a vector are theirs; the restored ones add none.
        let bad = load::chunks_with_bad_embeddings(conn, None, dims)? - bad_before;
        if bad != 0 {
            bail!(
                "{bad} restored chunks have no embedding of {dims} dimensions after the load; rolled back"
            );
        }
        input.source.check_unchanged()?;
        Ok(Appended {
            loaded,
            file_keys_kept_from_database: differing,
            bulk: true,
        })
    });
    appended.wrap_err(
        "the append ran in one transaction, which was rolled back: the database holds what it held \
         before (run it again: the embeddings computed are in the embedding cache)",
    )
}

/// Replaces the whole dataset with the file's, in one transaction: lock, safety backup of
/// the rows about to go, clear, bulk load, index build, checks. Any failure (an interruption
/// included) rolls it all back.
/// Where a replace writes its safety backup, and whether it moves the vector column to the
/// provider's size.
pub struct Replacement<'a> {
    pub safety_path: &'a Path,
    pub resize_column: bool,
}

pub fn replace(
    conn: &mut PgConnection,
    input: Input,
    expected: Counts,
    file_level: FileLevel,
    how: Replacement,
    embedding: Embedding,
    progress: &Progress,
) -> Result<Replaced> {
    let Replacement {
        safety_path,
        resize_column,
    } = how;
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
                crate::backup::write_safety_backup(
                    conn,
                    safety_path,
                    crate::backup::Selection::Status(None),
                )?;
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
        if resize_column {
            // On the emptied table the new size costs nothing; the index is built at it below.
            progress.step("moving chunks.embedding to the provider's vector size");
            diesel::sql_query(format!(
                "ALTER TABLE chunks ALTER COLUMN embedding TYPE vector({dims}) USING NULL"
            ))
            .execute(conn)
            .step("changing the dimension of chunks.embedding")?;
        }
        // The tables were emptied in this transaction: every row is to insert.
        let nothing = Existing::none();
        let mut loaded = load_file(conn, input, How::Copy(&nothing), embedding, progress)?;
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

/// How [`load_file`] writes.
#[derive(Clone, Copy)]
enum How<'a> {
    /// Append batch by batch: each in a committed transaction of its own, the rows that exist
    /// looked up a window at a time through the second connection.
    Batches,
    /// COPY inside the caller's transaction, each row's fate decided from a snapshot of the
    /// rows that exist (none for a replace, whose tables were emptied).
    Copy(&'a Existing),
}

fn load_file(
    conn: &mut PgConnection,
    input: Input,
    how: How,
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
        how,
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
            let written = match how {
                How::Batches => load::append_batch(conn, batch, &model, dims, &unchanged)?,
                How::Copy(_) => load::copy_batch(conn, batch, &model)?,
            };
            progress.written(written.total.analyses, written.total.chunks);
            counts += written;
            if let How::Batches = how {
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
    if matches!(how, How::Batches) && committed != (0, 0) {
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
    how: How<'a>,
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
        let fates: Vec<Fate> = match self.how {
            How::Batches => {
                let existing = Existing::lookup(&mut self.embedding.side, &records)
                    .step("looking up the rows that already exist")?;
                records.iter().map(|record| existing.fate(record)).collect()
            }
            // Never a read of the dataset's tables through the second connection here: the
            // main one holds them locked (and `chunks` without its index) until it commits.
            How::Copy(existing) => records.iter().map(|record| existing.fate(record)).collect(),
        };
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
