//! Writing any readable backup file in golden's own format, exactly as `backup` would write
//! the same data after a restore: analyses by (created_at, id), chunks by chunk_index, the
//! latest artifact as `artifact` and the older ones by version, queries by id, every extra
//! field kept. `convert` → `restore` → `backup` therefore gives convert's bytes.
//!
//! The input may hold its analyses and chunks in any order, so the records are first copied,
//! one JSON line each, to an anonymous temp file, with an index of where each one is (a few
//! dozen bytes a chunk); then they are written from there in backup's order. Memory grows with
//! that index, not with the text.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use chrono::{DateTime, Utc};
use color_eyre::eyre::{eyre, WrapErr};
use color_eyre::Result;
use uuid::Uuid;

use crate::backup::ALL_STATUSES;
use crate::backup_file::extras::{extras_as_jsonb_returns, FileExtras};
use crate::backup_file::record::{
    latest_last, BackupAnalysisHead, BackupArtifact, BackupChunk, BackupQuery, Extra,
};
use crate::backup_file::records::{read_records, Record};
use crate::backup_file::source::BackupSource;
use crate::backup_file::timestamp;
use crate::backup_file::writer::{BackupWriter, Prepared, Totals};
use crate::validate::Validation;

/// Where one record's JSON line is in the temp file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    len: u32,
}

/// An analysis of the input, as indexed.
struct Indexed {
    created_at: DateTime<Utc>,
    id: Uuid,
    head: Span,
    /// Its chunks by chunk_index.
    chunks: Vec<(i32, Span)>,
    /// Its artifacts, and whether each is the latest.
    artifacts: Vec<(bool, Span)>,
    late_extra: Extra,
}

/// Converts the validated file `source` into golden's format beside `dest`, ready to be put
/// in place (a destination that already holds these bytes is left alone).
pub fn convert(source: &BackupSource, mut validation: Validation, dest: &Path) -> Result<Prepared> {
    let (mut lines, index) = index_records(source)?;
    let created_at = created_at(&validation, &index);
    let status_filter = status_filter(&validation, &mut lines, &index)?;
    // What a restore then a backup would write: numbers as jsonb gives them back.
    let mut extras = FileExtras::take_from(&mut validation.header);
    extras_as_jsonb_returns(&mut extras.metadata);
    extras_as_jsonb_returns(&mut extras.top);
    let counts = validation.counts;
    let totals = Totals {
        analyses: counts.analyses,
        chunks: counts.chunks,
        artifacts: counts.artifacts,
        queries: counts.queries,
    };
    let mut writer =
        BackupWriter::create(dest, created_at, totals, &status_filter, &extras.metadata)
            .wrap_err_with(|| format!("creating a temp file beside {}", dest.display()))?;
    for analysis in &index {
        let mut head: BackupAnalysisHead = read_line(&mut lines, analysis.head)?;
        head.extra.extend(analysis.late_extra.clone());
        extras_as_jsonb_returns(&mut head.extra);
        writer.begin_analysis(&head)?;
        for (_, span) in &analysis.chunks {
            let mut chunk: BackupChunk = read_line(&mut lines, *span)?;
            extras_as_jsonb_returns(&mut chunk.extra);
            writer.write_chunk(&chunk)?;
        }
        let mut latest = None;
        let mut older = Vec::new();
        for (is_latest, span) in &analysis.artifacts {
            let mut artifact: BackupArtifact = read_line(&mut lines, *span)?;
            extras_as_jsonb_returns(&mut artifact.extra);
            if *is_latest {
                latest = Some(artifact);
            } else {
                older.push(artifact);
            }
        }
        latest_last(&mut older);
        writer.end_analysis(latest.as_ref(), &older)?;
    }
    let mut queries: Vec<BackupQuery> = validation.queries;
    for query in &mut queries {
        extras_as_jsonb_returns(&mut query.extra);
    }
    queries.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    writer
        .finish(&queries, &extras.top)
        .wrap_err_with(|| format!("finishing {}", dest.display()))
}

/// The temp file of records, one JSON line each.
struct Lines {
    out: BufWriter<File>,
    offset: u64,
}

impl Lines {
    fn write<T: serde::Serialize>(&mut self, record: &T) -> Result<Span> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.out.write_all(&line)?;
        let span = Span {
            offset: self.offset,
            len: u32::try_from(line.len()).map_err(|_| eyre!("a record of over 4 GB"))?,
        };
        self.offset += line.len() as u64;
        Ok(span)
    }
}

/// Copies every record to a temp file, one JSON line each, and indexes them in backup's order.
fn index_records(source: &BackupSource) -> Result<(File, Vec<Indexed>)> {
    let temp = tempfile::tempfile().wrap_err("creating a temp file for the conversion")?;
    let mut lines = Lines {
        out: BufWriter::new(temp),
        offset: 0,
    };
    let mut index: Vec<Indexed> = Vec::new();
    let shown = source.path().display().to_string();
    read_records(
        source.pass(),
        &shown,
        |_| false,
        |record| {
            match record {
                Record::Analysis(head) => {
                    let span = lines.write(&head)?;
                    index.push(Indexed {
                        created_at: head.created_at,
                        id: head.id,
                        head: span,
                        chunks: Vec::new(),
                        artifacts: Vec::new(),
                        late_extra: Extra::new(),
                    });
                }
                Record::Chunk { chunk, .. } => {
                    let span = lines.write(&chunk)?;
                    current(&mut index)?.chunks.push((chunk.chunk_index, span));
                }
                Record::Artifact {
                    artifact, latest, ..
                } => {
                    let span = lines.write(&artifact)?;
                    current(&mut index)?.artifacts.push((latest, span));
                }
                Record::End { late_extra, .. } => current(&mut index)?.late_extra = late_extra,
            }
            Ok(())
        },
    )
    .map_err(|e| e.into_report())?;
    let mut temp = lines.out.into_inner().map_err(|e| e.into_error())?;
    temp.flush()?;
    index.sort_by(|a, b| match a.created_at.cmp(&b.created_at) {
        Ordering::Equal => a.id.cmp(&b.id),
        other => other,
    });
    for analysis in &mut index {
        analysis.chunks.sort_by_key(|(chunk_index, _)| *chunk_index);
    }
    Ok((temp, index))
}

fn current(index: &mut [Indexed]) -> Result<&mut Indexed> {
    index
        .last_mut()
        .ok_or_else(|| eyre!("internal error: a record outside of an analysis"))
}

fn read_line<T: serde::de::DeserializeOwned>(file: &mut File, span: Span) -> Result<T> {
    let mut line = vec![0; span.len as usize];
    file.seek(SeekFrom::Start(span.offset))?;
    file.read_exact(&mut line)?;
    Ok(serde_json::from_slice(&line)?)
}

/// The file's own `created_at` (the moment its data was taken), so the same input converts
/// to the same bytes; without one, the creation time of its newest analysis.
fn created_at(validation: &Validation, index: &[Indexed]) -> DateTime<Utc> {
    validation
        .header
        .created_at
        .as_ref()
        .and_then(|value| value.as_str())
        .and_then(|text| timestamp::parse(text).ok())
        .or_else(|| index.iter().map(|analysis| analysis.created_at).max())
        .unwrap_or(DateTime::UNIX_EPOCH)
}

/// The file's `status_filter` when it names one; otherwise `completed` when every analysis is,
/// else `all`: what `backup` needs to be given to write the same file again.
fn status_filter(validation: &Validation, lines: &mut File, index: &[Indexed]) -> Result<String> {
    let given = validation
        .header
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get("status_filter"))
        .and_then(|status| status.as_str());
    if let Some(given) = given {
        return Ok(given.to_string());
    }
    for analysis in index {
        let head: BackupAnalysisHead = read_line(lines, analysis.head)?;
        if head.status != "completed" {
            return Ok(ALL_STATUSES.to_string());
        }
    }
    Ok("completed".to_string())
}
