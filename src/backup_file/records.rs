//! Typed records of a backup file, piece by piece, for the passes that follow its validation:
//! restore's load, the dry-run plan, the comparison with a database.
//!
//! An analysis comes as its head (its own fields), then its chunks one by one, then its end
//! (with its artifact), so one analysis of a million chunks never sits in memory whole. That
//! needs the analysis's fields before its `chunks` list, as golden and the original tool
//! write them; when a file puts some after it (a writer that sorts keys), that analysis's
//! chunks are held until its end, on disk past a few megabytes (`spill`).

use std::io::{BufRead, Read};

use color_eyre::eyre::eyre;
use serde_json::Value;
use uuid::Uuid;

use super::reader::{read_pieces_keeping, Extras, Header, Piece, ReadError};
use super::record::{
    extras_of, BackupAnalysis, BackupAnalysisHead, BackupArtifact, BackupChunk, Extra,
    ANALYSIS_KEYS, HEAD_KEYS,
};
use crate::spill::Spill;

/// A typed piece of the `analyses` list.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An analysis's own fields (and the extras read before its chunks); its chunks, its
    /// artifacts and its end follow.
    Analysis(BackupAnalysisHead),
    /// A chunk of the analysis begun last.
    Chunk {
        analysis_id: Uuid,
        chunk: BackupChunk,
    },
    /// An artifact of the analysis begun last: its older versions first, its latest
    /// (`latest`, the file's `artifact`) last.
    Artifact {
        analysis_id: Uuid,
        artifact: BackupArtifact,
        latest: bool,
    },
    /// The end of the analysis begun last, with the extras that came after its chunks in the
    /// file, or were repeated there with another value (none in a file golden wrote), and the
    /// extras its head had.
    End {
        analysis_id: Uuid,
        late_extra: Extra,
        head_extra: Extra,
    },
}

impl Record {
    /// The analysis the record belongs to.
    pub fn analysis_id(&self) -> Uuid {
        match self {
            Record::Analysis(head) => head.id,
            Record::Chunk { analysis_id, .. }
            | Record::Artifact { analysis_id, .. }
            | Record::End { analysis_id, .. } => *analysis_id,
        }
    }
}

enum Current {
    None,
    /// The head was handed out when the chunks began, with these extras.
    Streaming(Uuid, Extra),
    /// Chunks read before the analysis's fields were all known (one JSON line each).
    Holding(Spill),
    Skipped,
}

/// Reads the records of `source` (named `shown`), skipping the analyses at the positions
/// `skip` accepts (those validation rejected, say).
pub fn read_records<R: Read>(
    source: R,
    shown: &str,
    skip: impl Fn(usize) -> bool,
    on_record: impl FnMut(Record) -> color_eyre::Result<()>,
) -> Result<Header, ReadError> {
    // The validation has the file-level keys; the passes after it need none of them.
    records_of(source, shown, Checked::Already, skip, |_| Ok(()), on_record)
}

/// Reads the records of a file nobody validated first (`diff`, `show`), with its file-level
/// keys in the header: a record that does not read is named as such, not as a file changed
/// since its check. `on_start` gets the top-level keys read before `analyses` (version and
/// metadata, in a file golden wrote) before the first record.
pub fn read_unchecked_records<R: Read>(
    source: R,
    shown: &str,
    on_start: impl FnMut(&Header) -> color_eyre::Result<()>,
    on_record: impl FnMut(Record) -> color_eyre::Result<()>,
) -> Result<Header, ReadError> {
    records_of(source, shown, Checked::Not, |_| false, on_start, on_record)
}

/// Whether the file was validated before this read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Checked {
    Already,
    Not,
}

fn records_of<R: Read>(
    source: R,
    shown: &str,
    checked: Checked,
    skip: impl Fn(usize) -> bool,
    mut on_start: impl FnMut(&Header) -> color_eyre::Result<()>,
    mut on_record: impl FnMut(Record) -> color_eyre::Result<()>,
) -> Result<Header, ReadError> {
    let mut current = Current::None;
    let unreadable = |analysis: usize, e: serde_json::Error| {
        eyre!(crate::error::InvalidInput(match checked {
            Checked::Already => format!(
                "analysis #{} of {shown} no longer reads ({e}): was the file changed after it was checked?",
                analysis + 1
            ),
            Checked::Not => format!(
                "analysis #{} of {shown} is not a backup record ({e}); `golden verify {shown}` lists every problem",
                analysis + 1
            ),
        }))
    };
    let extras = match checked {
        Checked::Already => Extras::Skip,
        Checked::Not => Extras::Keep,
    };
    read_pieces_keeping(source, shown, extras, |piece| {
        match piece {
            Piece::AnalysesStart { header } => on_start(header)?,
            Piece::NotAnObject { analysis, .. } => {
                if !skip(analysis) {
                    return Err(eyre!(crate::error::InvalidInput(format!(
                        "analysis #{} of {shown} is not a JSON object",
                        analysis + 1
                    ))));
                }
            }
            Piece::ChunksStart { analysis, fields } => {
                current = if skip(analysis) {
                    Current::Skipped
                } else if HEAD_KEYS.iter().all(|key| fields.contains_key(*key)) {
                    let head = BackupAnalysisHead::from_fields(fields)
                        .map_err(|e| unreadable(analysis, e))?;
                    let (id, head_extra) = (head.id, head.extra.clone());
                    on_record(Record::Analysis(head))?;
                    Current::Streaming(id, head_extra)
                } else {
                    Current::Holding(Spill::new())
                };
            }
            Piece::Chunk {
                analysis, value, ..
            } => match &mut current {
                Current::Skipped => {}
                Current::Streaming(analysis_id, _) => {
                    let chunk =
                        serde_json::from_value(value).map_err(|e| unreadable(analysis, e))?;
                    on_record(Record::Chunk {
                        analysis_id: *analysis_id,
                        chunk,
                    })?;
                }
                Current::Holding(held) => {
                    let chunk: BackupChunk =
                        serde_json::from_value(value).map_err(|e| unreadable(analysis, e))?;
                    let mut line = serde_json::to_vec(&chunk)?;
                    line.push(b'\n');
                    held.write(&line)?;
                }
                Current::None => unreachable_piece()?,
            },
            Piece::AnalysisEnd {
                analysis, fields, ..
            } => {
                let was = std::mem::replace(&mut current, Current::None);
                if skip(analysis) {
                    return Ok(());
                }
                let (analysis_id, late_extra, head_extra) = match was {
                    Current::Streaming(id, head_extra) => {
                        // A key repeated after the chunks keeps its last value, as a parser
                        // of the whole object would.
                        let mut late = extras_of(&fields, &ANALYSIS_KEYS);
                        late.retain(|key, value| head_extra.get(key) != Some(value));
                        (id, late, head_extra)
                    }
                    Current::Holding(_) | Current::None => {
                        let head = BackupAnalysisHead::from_fields(&fields)
                            .map_err(|e| unreadable(analysis, e))?;
                        let id = head.id;
                        on_record(Record::Analysis(head))?;
                        if let Current::Holding(held) = was {
                            // JSON text never holds a raw newline: one chunk per line.
                            for line in held.into_reader()?.lines() {
                                let chunk = serde_json::from_str(&line?)?;
                                on_record(Record::Chunk {
                                    analysis_id: id,
                                    chunk,
                                })?;
                            }
                        }
                        (id, Extra::new(), Extra::new())
                    }
                    Current::Skipped => return Ok(()),
                };
                let (versions, latest) =
                    artifacts_of(&fields).map_err(|e| unreadable(analysis, e))?;
                let latest = latest.map(|artifact| (artifact, true));
                for (artifact, latest) in versions
                    .into_iter()
                    .map(|artifact| (artifact, false))
                    .chain(latest)
                {
                    on_record(Record::Artifact {
                        analysis_id,
                        artifact,
                        latest,
                    })?;
                }
                on_record(Record::End {
                    analysis_id,
                    late_extra,
                    head_extra,
                })?;
            }
        }
        Ok(())
    })
}

/// The artifacts of an analysis, from its keys: its older versions, and its latest.
pub fn artifacts_of(
    fields: &serde_json::Map<String, Value>,
) -> Result<(Vec<BackupArtifact>, Option<BackupArtifact>), serde_json::Error> {
    let versions = match fields.get("artifact_versions") {
        None | Some(Value::Null) => Vec::new(),
        Some(value) => serde_json::from_value(value.clone())?,
    };
    let latest = match fields.get("artifact") {
        None | Some(Value::Null) => None,
        Some(value) => Some(serde_json::from_value(value.clone())?),
    };
    Ok((versions, latest))
}

/// Reads whole analyses: for the passes that compare a record at a time (memory per
/// analysis, not per file).
pub fn read_analyses<R: Read>(
    source: R,
    shown: &str,
    skip: impl Fn(usize) -> bool,
    mut on_analysis: impl FnMut(BackupAnalysis) -> color_eyre::Result<()>,
) -> Result<Header, ReadError> {
    type Building = (BackupAnalysisHead, Vec<BackupChunk>, Vec<BackupArtifact>);
    let mut building: Option<Building> = None;
    read_records(source, shown, skip, |record| {
        match record {
            Record::Analysis(head) => building = Some((head, Vec::new(), Vec::new())),
            Record::Chunk { chunk, .. } => match building.as_mut() {
                Some((_, chunks, _)) => chunks.push(chunk),
                None => unreachable_piece()?,
            },
            Record::Artifact { artifact, .. } => match building.as_mut() {
                Some((_, _, artifacts)) => artifacts.push(artifact),
                None => unreachable_piece()?,
            },
            Record::End { late_extra, .. } => match building.take() {
                Some((head, chunks, artifacts)) => on_analysis(BackupAnalysis::from_parts(
                    head, chunks, artifacts, late_extra,
                ))?,
                None => unreachable_piece()?,
            },
        }
        Ok(())
    })
}

/// Reads whole analyses from the file at `path` (tests, tools).
pub fn read_analyses_at(
    path: &std::path::Path,
    on_analysis: impl FnMut(BackupAnalysis) -> color_eyre::Result<()>,
) -> Result<Header, ReadError> {
    let source = super::source::BackupSource::open(path)?;
    read_analyses(
        source.pass(),
        &path.display().to_string(),
        |_| false,
        on_analysis,
    )
}

/// The reader hands out chunks only between a `ChunksStart` and its `AnalysisEnd`.
fn unreachable_piece() -> color_eyre::Result<()> {
    Err(eyre!("internal error: a chunk outside of an analysis"))
}
