//! What `restore --sync` does with each row of the file, decided by comparing it, field by
//! field, with the row of the same id in the database: insert it (no such row), update it (a
//! field differs), move it (an artifact that changes table, latest ↔ older version, or
//! analysis), or leave it as it is. One window of records at a time, a few queries per
//! window. The dry-run plan and the sync run this same comparison, so they agree.
//!
//! An analysis is compared at its end: the extras a file puts after its chunks come with it.

use std::collections::HashMap;

use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

use crate::backup_file::record::{BackupAnalysisHead, BackupArtifact, BackupChunk, Extra};
use crate::backup_file::records::Record;
use crate::compare::same_extra;
use crate::db::QueryContext;
use crate::models::{Analysis, Artifact, ArtifactVersion, ChunkText};
use crate::schema::{analyses, artifact_versions, artifacts, chunks};

/// The tables a change is in (an artifact is in `artifacts` or `artifact_versions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Analysis,
    Chunk,
    Artifact,
}

impl Kind {
    /// The code of the kind in the sync's temp tables.
    pub fn code(self) -> &'static str {
        match self {
            Kind::Analysis => "a",
            Kind::Chunk => "c",
            Kind::Artifact => "r",
        }
    }
}

/// What happens to a row of the file that is not already as the file has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Insert,
    Update,
    /// An artifact whose table or analysis changes: deleted from where it is before the
    /// writes, inserted where the file puts it (counted as updated).
    Move,
}

impl Fate {
    pub fn code(self) -> &'static str {
        match self {
            Fate::Insert => "i",
            Fate::Update => "u",
            Fate::Move => "m",
        }
    }

    pub fn from_code(code: &str) -> Option<Fate> {
        match code {
            "i" => Some(Fate::Insert),
            "u" => Some(Fate::Update),
            "m" => Some(Fate::Move),
            _ => None,
        }
    }
}

/// A row of the file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: Kind,
    pub id: Uuid,
    pub fate: Fate,
    /// A chunk whose text changes: it needs a new vector.
    pub content_changed: bool,
    /// A chunk whose `(analysis_id, chunk_index)` changes.
    pub place_changed: bool,
    /// The analysis the database row belongs to now (`None` for an insert).
    pub db_analysis_id: Option<Uuid>,
}

/// A row of the file, as the sync's temp table of the file's ids keeps it.
#[derive(Debug, Clone)]
pub struct FileRow {
    pub kind: Kind,
    pub id: Uuid,
    pub analysis_id: Uuid,
    pub chunk_index: Option<i32>,
    pub latest: Option<bool>,
    pub status: Option<String>,
}

/// What one window of the file needs.
#[derive(Debug, Default)]
pub struct WindowDiff<'a> {
    pub changes: Vec<Change>,
    pub file_rows: Vec<FileRow>,
    /// The rows of the file already as the database has them, per table.
    pub unchanged: HashMap<&'static str, u64>,
    /// The texts of the chunks that need a vector (inserted, or their text changed).
    pub texts_to_embed: Vec<(Uuid, &'a str)>,
}

/// The comparison of the file with the database, carried from window to window: an
/// analysis begun in one window may end in another.
#[derive(Default)]
pub struct Differ {
    /// The analysis begun and not ended, with its database row (none: it is inserted).
    open: Option<(BackupAnalysisHead, Option<Analysis>)>,
}

/// The database rows of a window's ids.
struct DbRows {
    analyses: HashMap<Uuid, Analysis>,
    chunks: HashMap<Uuid, ChunkText>,
    /// By id, with whether the row is in `artifacts` (the latest) or `artifact_versions`.
    artifacts: HashMap<Uuid, (Artifact, bool)>,
}

impl Differ {
    /// Compares a window of records with the database.
    pub fn diff<'a>(
        &mut self,
        conn: &mut PgConnection,
        window: &'a [Record],
    ) -> Result<WindowDiff<'a>> {
        let db = DbRows::of(conn, window)?;
        let mut diff = WindowDiff::default();
        for record in window {
            match record {
                Record::Analysis(head) => {
                    let row = db.analyses.get(&head.id).cloned();
                    diff.file_rows.push(FileRow {
                        kind: Kind::Analysis,
                        id: head.id,
                        analysis_id: head.id,
                        chunk_index: None,
                        latest: None,
                        status: Some(head.status.clone()),
                    });
                    if row.is_none() {
                        diff.changes.push(Change {
                            kind: Kind::Analysis,
                            id: head.id,
                            fate: Fate::Insert,
                            content_changed: false,
                            place_changed: false,
                            db_analysis_id: None,
                        });
                    }
                    self.open = Some((head.clone(), row));
                }
                Record::Chunk { analysis_id, chunk } => {
                    diff.file_rows.push(FileRow {
                        kind: Kind::Chunk,
                        id: chunk.id,
                        analysis_id: *analysis_id,
                        chunk_index: Some(chunk.chunk_index),
                        latest: None,
                        status: None,
                    });
                    match chunk_change(*analysis_id, chunk, db.chunks.get(&chunk.id)) {
                        Some(change) => {
                            if change.fate == Fate::Insert || change.content_changed {
                                diff.texts_to_embed.push((chunk.id, chunk.content.as_str()));
                            }
                            diff.changes.push(change);
                        }
                        None => *diff.unchanged.entry("chunks").or_default() += 1,
                    }
                }
                Record::Artifact {
                    analysis_id,
                    artifact,
                    latest,
                } => {
                    diff.file_rows.push(FileRow {
                        kind: Kind::Artifact,
                        id: artifact.id,
                        analysis_id: *analysis_id,
                        chunk_index: None,
                        latest: Some(*latest),
                        status: None,
                    });
                    match artifact_change(
                        *analysis_id,
                        artifact,
                        *latest,
                        db.artifacts.get(&artifact.id),
                    ) {
                        Some(change) => diff.changes.push(change),
                        None => *diff.unchanged.entry("artifacts").or_default() += 1,
                    }
                }
                Record::End {
                    analysis_id,
                    late_extra,
                    ..
                } => {
                    let Some((head, row)) =
                        self.open.take().filter(|(head, _)| head.id == *analysis_id)
                    else {
                        color_eyre::eyre::bail!(
                            "internal error: the end of analysis {analysis_id} came without its head"
                        );
                    };
                    let Some(row) = row else { continue };
                    if analysis_differs(&head, late_extra, &row) {
                        diff.changes.push(Change {
                            kind: Kind::Analysis,
                            id: head.id,
                            fate: Fate::Update,
                            content_changed: false,
                            place_changed: false,
                            db_analysis_id: Some(row.id),
                        });
                    } else {
                        *diff.unchanged.entry("analyses").or_default() += 1;
                    }
                }
            }
        }
        Ok(diff)
    }
}

impl DbRows {
    fn of(conn: &mut PgConnection, window: &[Record]) -> Result<DbRows> {
        let (mut analysis_ids, mut chunk_ids, mut artifact_ids) =
            (Vec::new(), Vec::new(), Vec::new());
        for record in window {
            match record {
                Record::Analysis(head) => analysis_ids.push(head.id),
                Record::Chunk { chunk, .. } => chunk_ids.push(chunk.id),
                Record::Artifact { artifact, .. } => artifact_ids.push(artifact.id),
                Record::End { .. } => {}
            }
        }
        let analyses = analyses::table
            .filter(analyses::id.eq_any(&analysis_ids))
            .select(Analysis::as_select())
            .load(conn)
            .step("reading the analyses to compare with the file")?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        let chunks = chunks::table
            .filter(chunks::id.eq_any(&chunk_ids))
            .select(ChunkText::as_select())
            .load(conn)
            .step("reading the chunks to compare with the file")?
            .into_iter()
            .map(|row| (row.id, row))
            .collect();
        let mut artifacts: HashMap<Uuid, (Artifact, bool)> = artifacts::table
            .filter(artifacts::id.eq_any(&artifact_ids))
            .select(Artifact::as_select())
            .load(conn)
            .step("reading the artifacts to compare with the file")?
            .into_iter()
            .map(|row| (row.id, (row, true)))
            .collect();
        for version in artifact_versions::table
            .filter(artifact_versions::id.eq_any(&artifact_ids))
            .select(ArtifactVersion::as_select())
            .load(conn)
            .step("reading the older artifact versions to compare with the file")?
        {
            artifacts.insert(version.id, (Artifact::from(version), false));
        }
        Ok(DbRows {
            analyses,
            chunks,
            artifacts,
        })
    }
}

/// Whether the analysis of the file (its head and the extras after its chunks) differs from
/// its row.
fn analysis_differs(head: &BackupAnalysisHead, late_extra: &Extra, row: &Analysis) -> bool {
    let same_extra_fields = if late_extra.is_empty() {
        same_extra(&head.extra, &row.extra)
    } else {
        let mut extra = head.extra.clone();
        extra.extend(late_extra.clone());
        same_extra(&extra, &row.extra)
    };
    !(head.url == row.url
        && head.title == row.title
        && head.content_type == row.content_type
        && head.status == row.status
        && head.created_at == row.created_at
        && head.updated_at == row.updated_at
        && same_extra_fields)
}

/// The change a chunk of the file makes to its row (`None`: none).
fn chunk_change(analysis_id: Uuid, chunk: &BackupChunk, row: Option<&ChunkText>) -> Option<Change> {
    let Some(row) = row else {
        return Some(Change {
            kind: Kind::Chunk,
            id: chunk.id,
            fate: Fate::Insert,
            content_changed: true,
            place_changed: false,
            db_analysis_id: None,
        });
    };
    let content_changed = chunk.content != row.content;
    let place_changed = analysis_id != row.analysis_id || chunk.chunk_index != row.chunk_index;
    let same = !content_changed
        && !place_changed
        && chunk.section_title == row.section_title
        && chunk.section_path == row.section_path
        && chunk.content_type == row.content_type
        && same_extra(&chunk.extra, &row.extra);
    (!same).then_some(Change {
        kind: Kind::Chunk,
        id: chunk.id,
        fate: Fate::Update,
        content_changed,
        place_changed,
        db_analysis_id: Some(row.analysis_id),
    })
}

/// The change an artifact of the file makes (`latest`: the analysis's `artifact`, else an
/// older version) to the row of its id in either table.
fn artifact_change(
    analysis_id: Uuid,
    artifact: &BackupArtifact,
    latest: bool,
    row: Option<&(Artifact, bool)>,
) -> Option<Change> {
    let change = |fate, db_analysis_id| Change {
        kind: Kind::Artifact,
        id: artifact.id,
        fate,
        content_changed: false,
        place_changed: false,
        db_analysis_id,
    };
    let Some((row, row_latest)) = row else {
        return Some(change(Fate::Insert, None));
    };
    if *row_latest != latest || row.analysis_id != analysis_id {
        return Some(change(Fate::Move, Some(row.analysis_id)));
    }
    let same = artifact.summary == row.summary
        && artifact.created_at == row.created_at
        && artifact.version == row.version
        && same_extra(&artifact.extra, &row.extra);
    (!same).then(|| change(Fate::Update, Some(row.analysis_id)))
}
