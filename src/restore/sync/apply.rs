//! The writes of `restore --sync`, a window of the file at a time, inside the sync's
//! transaction: the rows its comparison noted (`sync_todo`) are inserted or updated in place
//! (an updated chunk keeps its id, so rows of other tables that reference it stay valid), and
//! only the chunks whose text changed get a new vector; the others keep theirs untouched.

use std::collections::HashMap;

use color_eyre::eyre::bail;
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use pgvector::Vector;
use uuid::Uuid;

use super::diff::{Fate, Kind};
use super::tables;
use crate::backup_file::record::BackupAnalysisHead;
use crate::backup_file::records::Record;
use crate::db::QueryContext;
use crate::embed::cache::CachedEmbedder;
use crate::embed::InputKind;
use crate::models::{NewAnalysis, NewArtifact, NewArtifactVersion, NewChunk};
use crate::schema::{analyses, artifact_versions, artifacts, chunks};
use crate::validate::Counts;

/// libpq takes at most 65 535 bind parameters in one statement; a chunk row has ten.
const CHUNK_ROWS_PER_INSERT: usize = 5_000;

/// The most records gathered before they are written, whatever their texts: an edit of
/// fields alone (no new vector) stays bounded too.
const MOST_PENDING: usize = 4_096;

/// What the writes did.
#[derive(Debug, Default, Clone, Copy)]
pub struct Written {
    pub inserted: Counts,
    pub updated: Counts,
    pub embeddings_computed: u64,
    pub embeddings_reused: u64,
    /// Requests the embedding takes (counted by the dry run).
    pub embedding_requests: u64,
}

/// Writes the file's records that the comparison noted, gathering them until enough texts
/// need a vector to fill the provider's requests (a window of a one-percent edit holds a few),
/// so that an edit spread over the file takes as few requests as the same edit gathered.
/// Only the records to write are held: memory stays bounded.
pub struct Writer<'a> {
    pub embedder: &'a CachedEmbedder<'a>,
    /// The connection the embedding cache is read and written through (outside the sync's
    /// transaction: vectors computed before a rollback are kept for the next run). `None`:
    /// the dry run, which gathers as the writes gather but only counts what embedding takes.
    pub side: Option<&'a mut PgConnection>,
    pub model: &'a str,
    pub written: Written,
    /// The head of the analysis begun last, for an analysis that ends in a later window.
    pub head: Option<BackupAnalysisHead>,
    /// Texts to gather before writing (the provider's batch size times its concurrency).
    pub target_texts: usize,
    pub pending: Pending,
}

/// The records gathered to write, with what happens to each.
#[derive(Default)]
pub struct Pending {
    records: Vec<Record>,
    todo: Todo,
    texts: usize,
}

type Todo = HashMap<(Kind, Uuid), (Fate, bool)>;

/// Chunks updated per statement.
const CHUNK_ROWS_PER_UPDATE: usize = 1_000;

/// The new fields of a chunk updated in place, and its new vector (pgvector's text form) when
/// its text changed.
struct ChunkUpdate<'a> {
    id: Uuid,
    analysis_id: Uuid,
    content: &'a str,
    section_title: Option<&'a str>,
    section_path: Option<&'a str>,
    content_type: &'a str,
    chunk_index: i32,
    extra: serde_json::Value,
    embedding: Option<String>,
}

/// Updates `rows` in place in one statement: each new version of a row is an entry of the
/// vector index, the costly part, and one statement saves a round trip and a plan per row.
/// Returns how many rows it changed.
fn update_chunks(conn: &mut PgConnection, rows: &[ChunkUpdate], model: &str) -> Result<usize> {
    use diesel::sql_types::{Array, Integer, Jsonb, Nullable, Text, Uuid as SqlUuid};
    diesel::sql_query(
        "UPDATE chunks c SET analysis_id = u.analysis_id, content = u.content, \
           section_title = u.section_title, section_path = u.section_path, \
           content_type = u.content_type, chunk_index = u.chunk_index, extra = u.extra, \
           embedding = CASE WHEN u.embedding IS NULL THEN c.embedding ELSE u.embedding::vector END, \
           embedding_model = CASE WHEN u.embedding IS NULL THEN c.embedding_model ELSE $10 END \
         FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], \
                     $7::int4[], $8::jsonb[], $9::text[]) \
           AS u(id, analysis_id, content, section_title, section_path, content_type, chunk_index, extra, embedding) \
         WHERE c.id = u.id",
    )
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|row| row.id).collect::<Vec<_>>())
    .bind::<Array<SqlUuid>, _>(rows.iter().map(|row| row.analysis_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|row| row.content).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|row| row.section_title).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|row| row.section_path).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(rows.iter().map(|row| row.content_type).collect::<Vec<_>>())
    .bind::<Array<Integer>, _>(rows.iter().map(|row| row.chunk_index).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(rows.iter().map(|row| row.extra.clone()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(rows.iter().map(|row| row.embedding.as_deref()).collect::<Vec<_>>())
    .bind::<Text, _>(model)
    .execute(conn)
    .step("updating chunks in place")
}

/// A vector in pgvector's text form (`[0.1,0.2]`), which casts to `vector` exactly (Rust
/// prints the shortest string that reads back as the same f32).
fn vector_text(vector: &Vector) -> String {
    let values: Vec<String> = vector.as_slice().iter().map(|v| v.to_string()).collect();
    format!("[{}]", values.join(","))
}

/// The id of the row a record writes (an analysis's end: the analysis).
fn record_id(record: &Record) -> Uuid {
    match record {
        Record::Analysis(head) => head.id,
        Record::Chunk { chunk, .. } => chunk.id,
        Record::Artifact { artifact, .. } => artifact.id,
        Record::End { analysis_id, .. } => *analysis_id,
    }
}

/// Whether a record with `todo` needs a vector.
fn needs_vector(record: &Record, todo: &Todo) -> bool {
    matches!(record, Record::Chunk { chunk, .. }
        if matches!(todo.get(&(Kind::Chunk, chunk.id)), Some((Fate::Insert, _)) | Some((_, true))))
}

impl Writer<'_> {
    /// Adds a window of the file: the records to write are gathered, and written once enough
    /// texts need a vector.
    pub fn add_window(&mut self, conn: &mut PgConnection, window: Vec<Record>) -> Result<()> {
        // The end of an analysis begun in an earlier window counts: its update or late
        // extras are written with it.
        let ids: Vec<Uuid> = window.iter().map(record_id).collect();
        let todo = tables::todo_of(conn, &ids)?;
        if todo.is_empty() {
            return Ok(());
        }
        for record in window {
            let key = match &record {
                Record::Analysis(head) => (Kind::Analysis, head.id),
                Record::Chunk { chunk, .. } => (Kind::Chunk, chunk.id),
                Record::Artifact { artifact, .. } => (Kind::Artifact, artifact.id),
                Record::End { analysis_id, .. } => (Kind::Analysis, *analysis_id),
            };
            if !todo.contains_key(&key) {
                continue;
            }
            if needs_vector(&record, &todo) {
                self.pending.texts += 1;
            }
            self.pending.records.push(record);
        }
        self.pending.todo.extend(todo);
        if self.pending.texts >= self.target_texts || self.pending.records.len() >= MOST_PENDING {
            self.flush(conn)?;
        }
        Ok(())
    }

    /// Writes what is gathered.
    pub fn flush(&mut self, conn: &mut PgConnection) -> Result<()> {
        let Pending { records, todo, .. } = std::mem::take(&mut self.pending);
        if records.is_empty() {
            return Ok(());
        }
        let window = &records[..];
        let carried = self.head.take();
        self.head = window
            .iter()
            .rev()
            .find_map(|record| match record {
                Record::Analysis(head) => Some(head.clone()),
                _ => None,
            })
            .or_else(|| carried.clone());
        let fate_of = |kind: Kind, id: Uuid| todo.get(&(kind, id)).copied();
        if self.side.is_none() {
            return self.count_embedding(conn, window, &fate_of);
        }
        let mut vectors = self.embed(window, &fate_of)?;

        // Analyses first (their chunks reference them), then chunks, then artifacts, then the
        // fields of updated analyses, known whole at their end.
        let new_analyses: Vec<NewAnalysis> = window
            .iter()
            .filter_map(|record| match record {
                Record::Analysis(head)
                    if fate_of(Kind::Analysis, head.id).map(|(fate, _)| fate)
                        == Some(Fate::Insert) =>
                {
                    Some(NewAnalysis::from(head))
                }
                _ => None,
            })
            .collect();
        let inserted = diesel::insert_into(analyses::table)
            .values(&new_analyses)
            .execute(conn)
            .step("inserting analyses")?;
        self.written.inserted.analyses += inserted as u64;

        let mut new_chunks = Vec::new();
        let mut updates = Vec::new();
        for record in window {
            let Record::Chunk { analysis_id, chunk } = record else {
                continue;
            };
            let Some((fate, content_changed)) = fate_of(Kind::Chunk, chunk.id) else {
                continue;
            };
            let vector = if fate == Fate::Insert || content_changed {
                match vectors.remove(&chunk.id) {
                    Some(vector) => Some(vector),
                    None => bail!("internal error: chunk {} has no vector to write", chunk.id),
                }
            } else {
                None
            };
            if fate == Fate::Insert {
                new_chunks.push(NewChunk::from_backup(
                    chunk,
                    *analysis_id,
                    vector,
                    Some(self.model),
                ));
                continue;
            }
            updates.push(ChunkUpdate {
                id: chunk.id,
                analysis_id: *analysis_id,
                content: &chunk.content,
                section_title: chunk.section_title.as_deref(),
                section_path: chunk.section_path.as_deref(),
                content_type: &chunk.content_type,
                chunk_index: chunk.chunk_index,
                extra: serde_json::Value::Object(chunk.extra.clone()),
                embedding: vector.map(|vector| vector_text(&vector)),
            });
        }
        for part in updates.chunks(CHUNK_ROWS_PER_UPDATE) {
            let updated = update_chunks(conn, part, self.model)?;
            if updated != part.len() {
                bail!(
                    "internal error: updating {} chunks changed {updated} rows",
                    part.len()
                );
            }
            self.written.updated.chunks += updated as u64;
        }
        for part in new_chunks.chunks(CHUNK_ROWS_PER_INSERT) {
            let inserted = diesel::insert_into(chunks::table)
                .values(part)
                .execute(conn)
                .step("inserting chunks")?;
            self.written.inserted.chunks += inserted as u64;
        }

        for record in window {
            match record {
                Record::Artifact {
                    analysis_id,
                    artifact,
                    latest,
                } => {
                    let Some((fate, _)) = fate_of(Kind::Artifact, artifact.id) else {
                        continue;
                    };
                    let written = match (fate, latest) {
                        (Fate::Insert | Fate::Move, true) => diesel::insert_into(artifacts::table)
                            .values(NewArtifact::from_backup(artifact, *analysis_id))
                            .execute(conn),
                        (Fate::Insert | Fate::Move, false) => {
                            diesel::insert_into(artifact_versions::table)
                                .values(NewArtifactVersion::from_backup(artifact, *analysis_id))
                                .execute(conn)
                        }
                        (Fate::Update, true) => diesel::update(artifacts::table.find(artifact.id))
                            .set((
                                artifacts::summary.eq(&artifact.summary),
                                artifacts::created_at.eq(artifact.created_at),
                                artifacts::version.eq(artifact.version),
                                artifacts::extra
                                    .eq(serde_json::Value::Object(artifact.extra.clone())),
                            ))
                            .execute(conn),
                        (Fate::Update, false) => {
                            diesel::update(artifact_versions::table.find(artifact.id))
                                .set((
                                    artifact_versions::summary.eq(&artifact.summary),
                                    artifact_versions::created_at.eq(artifact.created_at),
                                    artifact_versions::version.eq(artifact.version),
                                    artifact_versions::extra
                                        .eq(serde_json::Value::Object(artifact.extra.clone())),
                                ))
                                .execute(conn)
                        }
                    }
                    .step("writing an artifact")?;
                    self.count_one(written, "artifact", artifact.id)?;
                    match fate {
                        Fate::Insert => self.written.inserted.artifacts += 1,
                        Fate::Update | Fate::Move => self.written.updated.artifacts += 1,
                    }
                }
                Record::End {
                    analysis_id,
                    late_extra,
                    head_extra,
                } => {
                    let Some((fate, _)) = fate_of(Kind::Analysis, *analysis_id) else {
                        continue;
                    };
                    let mut extra = head_extra.clone();
                    extra.extend(late_extra.clone());
                    let extra = serde_json::Value::Object(extra);
                    if fate == Fate::Insert {
                        if !late_extra.is_empty() {
                            diesel::update(analyses::table.find(analysis_id))
                                .set(analyses::extra.eq(extra))
                                .execute(conn)
                                .step("adding an analysis's extra fields")?;
                        }
                        continue;
                    }
                    let head = window
                        .iter()
                        .find_map(|record| match record {
                            Record::Analysis(head) if head.id == *analysis_id => Some(head),
                            _ => None,
                        })
                        .or(carried.as_ref().filter(|head| head.id == *analysis_id));
                    let Some(head) = head else {
                        bail!("internal error: the end of analysis {analysis_id} came without its head");
                    };
                    let updated = diesel::update(analyses::table.find(analysis_id))
                        .set((
                            analyses::url.eq(&head.url),
                            analyses::title.eq(head.title.as_deref()),
                            analyses::content_type.eq(&head.content_type),
                            analyses::status.eq(&head.status),
                            analyses::created_at.eq(head.created_at),
                            analyses::updated_at.eq(head.updated_at),
                            analyses::extra.eq(extra),
                        ))
                        .execute(conn)
                        .step("updating an analysis")?;
                    self.count_one(updated, "analysis", *analysis_id)?;
                    self.written.updated.analyses += 1;
                }
                Record::Analysis(_) | Record::Chunk { .. } => {}
            }
        }
        Ok(())
    }

    /// What embedding the gathered records takes, without computing anything (the dry run).
    fn count_embedding(
        &mut self,
        conn: &mut PgConnection,
        window: &[Record],
        fate_of: &impl Fn(Kind, Uuid) -> Option<(Fate, bool)>,
    ) -> Result<()> {
        let texts: Vec<&str> = to_embed(window, fate_of)
            .into_iter()
            .map(|(_, text)| text)
            .collect();
        if texts.is_empty() {
            return Ok(());
        }
        let (computed, reused) = self.embedder.plan(conn, &texts, InputKind::Document)?;
        self.written.embeddings_computed += computed;
        self.written.embeddings_reused += reused;
        self.written.embedding_requests += self.embedder.requests_for(computed);
        Ok(())
    }

    /// Vectors for the window's chunks that need one, through the cache.
    fn embed(
        &mut self,
        window: &[Record],
        fate_of: &impl Fn(Kind, Uuid) -> Option<(Fate, bool)>,
    ) -> Result<HashMap<Uuid, Vector>> {
        let to_embed = to_embed(window, fate_of);
        // Gathered whole: one call, so the provider's batches are full.
        if to_embed.is_empty() {
            return Ok(HashMap::new());
        }
        let texts: Vec<&str> = to_embed.iter().map(|(_, text)| *text).collect();
        let Some(side) = self.side.as_deref_mut() else {
            bail!("internal error: the dry run has no connection to embed through");
        };
        let embedded = self.embedder.embed(side, &texts, InputKind::Document)?;
        self.written.embeddings_computed += embedded.computed;
        self.written.embeddings_reused += embedded.reused;
        Ok(to_embed
            .iter()
            .map(|(id, _)| *id)
            .zip(embedded.vectors)
            .collect())
    }

    fn count_one(&self, rows: usize, what: &str, id: Uuid) -> Result<()> {
        if rows != 1 {
            bail!("internal error: writing {what} {id} changed {rows} rows, not one");
        }
        Ok(())
    }
}

/// The chunks of `window` that need a vector: inserted, or with a new text.
fn to_embed<'r>(
    window: &'r [Record],
    fate_of: &impl Fn(Kind, Uuid) -> Option<(Fate, bool)>,
) -> Vec<(Uuid, &'r str)> {
    window
        .iter()
        .filter_map(|record| match record {
            Record::Chunk { chunk, .. } => match fate_of(Kind::Chunk, chunk.id) {
                Some((Fate::Insert, _)) | Some((_, true)) => {
                    Some((chunk.id, chunk.content.as_str()))
                }
                _ => None,
            },
            _ => None,
        })
        .collect()
}
