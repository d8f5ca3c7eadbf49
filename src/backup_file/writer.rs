//! Writes a backup file as the rows stream in, deterministically and atomically.
//!
//! The header comes first in the file but the content checksum is known only at the end, so
//! the header holds fixed-width placeholders for the checksum and `created_at` that are
//! patched in place before the temp file is renamed over the destination. When the result
//! equals the existing file apart from `created_at`, the existing file is kept as it is (same
//! bytes, same `created_at`), so an unchanged dataset leaves `git status` clean.

use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::Serialize;
use tempfile::NamedTempFile;

use super::checksum::{self, ContentHasher};
#[cfg(test)]
use super::record::BackupAnalysis;
use super::record::{BackupAnalysisHead, BackupArtifact, BackupChunk, BackupQuery, Extra};
use super::{timestamp, FORMAT_VERSION};
use crate::atomic;

/// What goes in `metadata` besides what the writer computes.
#[derive(Debug, Clone)]
pub struct Totals {
    pub analyses: u64,
    pub chunks: u64,
    pub artifacts: u64,
    pub queries: u64,
}

/// The result of a finished backup.
#[derive(Debug, Clone)]
pub struct Written {
    /// False when the destination already held these exact bytes and was left alone.
    pub changed: bool,
    pub checksum: String,
    /// The `created_at` the file at the destination now carries.
    pub created_at: String,
    pub totals: Totals,
}

pub struct BackupWriter {
    dest: PathBuf,
    out: BufWriter<NamedTempFile>,
    hasher: ContentHasher,
    expected: Totals,
    written: Totals,
    created_at: String,
    created_at_offset: u64,
    checksum_offset: u64,
    header_prefix: Vec<u8>,
    /// Chunks written of the analysis begun last.
    chunks_of_analysis: usize,
    /// The `metadata` keys kept from the files restored (the checksum covers them).
    metadata_extra: Extra,
}

impl BackupWriter {
    /// Starts a backup of exactly `expected` rows (counted beforehand in the same snapshot).
    /// `metadata_extra` are the `metadata` keys golden does not compute, kept from the files
    /// restored (written after golden's own, before the checksum).
    pub fn create(
        dest: &Path,
        created_at: DateTime<Utc>,
        expected: Totals,
        status_filter: &str,
        metadata_extra: &Extra,
    ) -> io::Result<Self> {
        let created_at = timestamp::format(&created_at);
        let mut header = String::new();
        header.push_str("{\n  \"version\": ");
        header.push_str(&json_string(FORMAT_VERSION));
        header.push_str(",\n  \"created_at\": \"");
        let created_at_offset = header.len() as u64;
        let header_prefix = header.as_bytes().to_vec();
        header.push_str(&created_at);
        header.push_str("\",\n  \"metadata\": {\n");
        header.push_str(&format!("    \"total_analyses\": {},\n", expected.analyses));
        header.push_str(&format!("    \"total_chunks\": {},\n", expected.chunks));
        header.push_str(&format!(
            "    \"total_artifacts\": {},\n",
            expected.artifacts
        ));
        header.push_str(&format!("    \"total_queries\": {},\n", expected.queries));
        header.push_str(&format!(
            "    \"status_filter\": {},\n",
            json_string(status_filter)
        ));
        for (key, value) in metadata_extra {
            let pretty = String::from_utf8(to_pretty_json(value)?).map_err(io::Error::other)?;
            header.push_str(&format!(
                "    {}: {},\n",
                json_string(key),
                pretty.replace('\n', "\n    ")
            ));
        }
        header.push_str("    \"checksum\": \"");
        let checksum_offset = header.len() as u64;
        header.push_str(&"0".repeat(checksum::WRITTEN_WIDTH));
        header.push_str("\"\n  },\n  \"analyses\": [");

        let mut out = BufWriter::with_capacity(256 * 1024, atomic::temp_file_beside(dest)?);
        out.write_all(header.as_bytes())?;
        Ok(BackupWriter {
            dest: dest.to_path_buf(),
            out,
            hasher: ContentHasher::default(),
            expected,
            written: Totals {
                analyses: 0,
                chunks: 0,
                artifacts: 0,
                queries: 0,
            },
            created_at,
            created_at_offset,
            checksum_offset,
            header_prefix,
            chunks_of_analysis: 0,
            metadata_extra: metadata_extra.clone(),
        })
    }

    /// Appends one whole analysis (with its chunks and artifact): what the streaming
    /// functions below write piece by piece (the tests hold them to the same bytes).
    #[cfg(test)]
    pub fn write(&mut self, analysis: &BackupAnalysis) -> io::Result<()> {
        let head = analysis.head();
        self.begin_analysis(&head)?;
        for chunk in &analysis.chunks {
            self.write_chunk(chunk)?;
        }
        self.end_analysis(analysis.artifact.as_ref(), &analysis.artifact_versions)
    }

    /// Starts an analysis whose chunks follow one at a time ([`BackupWriter::write_chunk`],
    /// then [`BackupWriter::end_analysis`]): one analysis of a hundred thousand chunks is
    /// written without being held. The bytes are those of [`BackupWriter::write`] of the whole
    /// record (its pretty JSON, indented four spaces in the `analyses` list).
    pub fn begin_analysis(&mut self, head: &BackupAnalysisHead) -> io::Result<()> {
        self.out.write_all(if self.written.analyses == 0 {
            b"\n    "
        } else {
            b",\n    "
        })?;
        let mut pretty = to_pretty_json(head)?;
        // `{ … "updated_at": "…"\n}` without its `\n}`: the record goes on with its chunks.
        pretty.truncate(pretty.len().saturating_sub(2));
        self.indented(&pretty, 0)?;
        self.out.write_all(b",\n      \"chunks\": [")?;
        self.hasher.begin_analysis(head);
        self.chunks_of_analysis = 0;
        self.written.analyses += 1;
        Ok(())
    }

    /// Appends a chunk to the analysis begun last.
    pub fn write_chunk(&mut self, chunk: &BackupChunk) -> io::Result<()> {
        self.out.write_all(if self.chunks_of_analysis == 0 {
            b"\n        "
        } else {
            b",\n        "
        })?;
        let pretty = to_pretty_json(chunk)?;
        self.indented(&pretty, 4)?;
        self.hasher.add_chunk(self.chunks_of_analysis, chunk);
        self.chunks_of_analysis += 1;
        self.written.chunks += 1;
        Ok(())
    }

    /// Ends the analysis begun last, with its latest artifact and its older `versions`.
    pub fn end_analysis(
        &mut self,
        artifact: Option<&BackupArtifact>,
        versions: &[BackupArtifact],
    ) -> io::Result<()> {
        self.out.write_all(if self.chunks_of_analysis == 0 {
            b"]"
        } else {
            b"\n      ]"
        })?;
        self.out.write_all(b",\n      \"artifact\": ")?;
        let pretty = to_pretty_json(&artifact)?;
        self.indented(&pretty, 2)?;
        if !versions.is_empty() {
            self.out.write_all(b",\n      \"artifact_versions\": ")?;
            let pretty = to_pretty_json(&versions)?;
            self.indented(&pretty, 2)?;
        }
        self.out.write_all(b"\n    }")?;
        self.hasher.end_analysis(artifact, versions);
        self.written.artifacts += u64::from(artifact.is_some()) + versions.len() as u64;
        Ok(())
    }

    /// Writes `pretty` (pretty JSON) as part of an element of a list: every line after its
    /// first indented by the element's four spaces and `extra` more. JSON strings never hold
    /// a raw newline, so every newline of the pretty form is a line break of the layout.
    fn indented(&mut self, pretty: &[u8], extra: usize) -> io::Result<()> {
        let indent = " ".repeat(4 + extra);
        for (i, line) in pretty.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.out.write_all(b"\n")?;
                self.out.write_all(indent.as_bytes())?;
            }
            self.out.write_all(line)?;
        }
        Ok(())
    }

    /// One element of a list, indented by four spaces.
    fn write_element<T: Serialize>(&mut self, first: bool, value: &T) -> io::Result<()> {
        self.out
            .write_all(if first { b"\n    " } else { b",\n    " })?;
        let pretty = to_pretty_json(value)?;
        self.indented(&pretty, 0)
    }

    /// Writes the queries after the analyses, then the file-level `extras` (sorted by key),
    /// and completes the file, ready to be put in place ([`Prepared::persist`]); nothing is
    /// at the destination yet.
    pub fn finish(mut self, queries: &[BackupQuery], extras: &Extra) -> io::Result<Prepared> {
        self.written.queries = queries.len() as u64;
        let (e, w) = (&self.expected, &self.written);
        if (e.analyses, e.chunks, e.artifacts, e.queries)
            != (w.analyses, w.chunks, w.artifacts, w.queries)
        {
            return Err(io::Error::other(format!(
                "the snapshot counted {} analyses, {} chunks, {} artifacts, {} queries but {}, {}, {}, {} were read; \
                 nothing was written",
                e.analyses, e.chunks, e.artifacts, e.queries, w.analyses, w.chunks, w.artifacts, w.queries
            )));
        }
        let previous = self.previous_created_at()?;
        self.out.write_all(if self.written.analyses == 0 {
            b"]"
        } else {
            b"\n  ]"
        })?;
        self.out.write_all(b",\n  \"queries\": [")?;
        for (i, query) in queries.iter().enumerate() {
            self.write_element(i == 0, query)?;
        }
        self.hasher.add_queries(queries);
        self.out
            .write_all(if queries.is_empty() { b"]" } else { b"\n  ]" })?;
        for (key, value) in extras {
            self.out.write_all(b",\n  ")?;
            self.out.write_all(json_string(key).as_bytes())?;
            self.out.write_all(b": ")?;
            // Streamed, not built first: `fixtures` may be large.
            serde_json::to_writer_pretty(Indented(&mut self.out), value)
                .map_err(io::Error::other)?;
        }
        self.hasher.add_file_extras(extras, &self.metadata_extra);
        self.out.write_all(b"\n}\n")?;
        let mut temp = self.out.into_inner().map_err(|e| e.into_error())?;
        let checksum = self.hasher.finish();
        patch(&mut temp, self.checksum_offset, checksum.as_bytes())?;

        if let Some(previous) = previous {
            patch(&mut temp, self.created_at_offset, previous.as_bytes())?;
            if atomic::same_contents(temp.path(), &self.dest)? {
                return Ok(Prepared {
                    dest: self.dest,
                    temp: None,
                    written: Written {
                        changed: false,
                        checksum,
                        created_at: previous,
                        totals: self.written,
                    },
                });
            }
            patch(
                &mut temp,
                self.created_at_offset,
                self.created_at.as_bytes(),
            )?;
        }
        Ok(Prepared {
            dest: self.dest,
            temp: Some(temp),
            written: Written {
                changed: true,
                checksum,
                created_at: self.created_at,
                totals: self.written,
            },
        })
    }

    /// The `created_at` of the existing destination, when that file was laid out by this
    /// writer (same header up to the timestamp); otherwise the file differs anyway.
    fn previous_created_at(&self) -> io::Result<Option<String>> {
        let Some(prefix) = atomic::read_at(&self.dest, 0, self.header_prefix.len())? else {
            return Ok(None);
        };
        if prefix != self.header_prefix {
            return Ok(None);
        }
        let Some(bytes) =
            atomic::read_at(&self.dest, self.created_at_offset, timestamp::WRITTEN_WIDTH)?
        else {
            return Ok(None);
        };
        Ok(String::from_utf8(bytes)
            .ok()
            .filter(|text| timestamp::parse(text).is_ok()))
    }
}

/// A complete backup in a temp file beside its destination, not yet in place: a command puts
/// its outputs in place only once every one of them is ready.
pub struct Prepared {
    dest: PathBuf,
    /// `None` when the destination already holds these bytes (it is then left alone).
    temp: Option<NamedTempFile>,
    pub written: Written,
}

impl Prepared {
    /// Renames the backup over its destination (when it changed).
    pub fn persist(self) -> io::Result<Written> {
        if let Some(temp) = self.temp {
            atomic::persist(temp, &self.dest)?;
        }
        Ok(self.written)
    }

    /// Gives the backup its destination's name, failing if a file has it: for what must never
    /// replace anything (a safety backup).
    pub fn persist_new(self) -> io::Result<Written> {
        match self.temp {
            Some(temp) => atomic::persist_new(temp, &self.dest)?,
            None => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} exists", self.dest.display()),
                ))
            }
        }
        Ok(self.written)
    }
}

/// Indents every line after the first by two spaces: a top-level value's pretty JSON inside
/// the file's object. JSON text never holds a raw newline, so every newline is a line break.
struct Indented<'a, W: Write>(&'a mut W);

impl<W: Write> Write for Indented<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        for (i, line) in buf.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                self.0.write_all(b"\n  ")?;
            }
            self.0.write_all(line)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

fn patch(temp: &mut NamedTempFile, offset: u64, bytes: &[u8]) -> io::Result<()> {
    let file = temp.as_file_mut();
    file.seek(SeekFrom::Start(offset))?;
    file.write_all(bytes)?;
    file.flush()
}

fn to_pretty_json<T: Serialize>(value: &T) -> io::Result<Vec<u8>> {
    serde_json::to_vec_pretty(value).map_err(io::Error::other)
}

fn json_string(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The layout [`BackupWriter::write`] had when it wrote each record whole.
    fn whole_layout(record: &BackupAnalysis) -> Vec<u8> {
        let pretty = serde_json::to_vec_pretty(record).unwrap();
        let mut out = b"\n    ".to_vec();
        for (i, line) in pretty.split(|&b| b == b'\n').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\n    ");
            }
            out.extend_from_slice(line);
        }
        out
    }

    #[test]
    fn an_analysis_written_piece_by_piece_has_the_bytes_of_the_whole_record() {
        let sample = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/data/golden_dataset_backup.json"
        ))
        .unwrap();
        let file: serde_json::Value = serde_json::from_slice(&sample).unwrap();
        let mut first: BackupAnalysis =
            serde_json::from_value(file["analyses"][0].clone()).unwrap();
        let mut records = vec![first.clone()];
        first.chunks.clear();
        first.artifact = None;
        first.title = None;
        records.push(first);
        for record in records {
            let dir = tempfile::tempdir().unwrap();
            let totals = Totals {
                analyses: 1,
                chunks: record.chunks.len() as u64,
                artifacts: u64::from(record.artifact.is_some()),
                queries: 0,
            };
            let mut writer = BackupWriter::create(
                &dir.path().join("b.json"),
                Utc::now(),
                totals,
                "all",
                &Extra::new(),
            )
            .unwrap();
            let start = writer.header_prefix.len() as u64;
            writer.write(&record).unwrap();
            writer.out.flush().unwrap();
            let written = std::fs::read(writer.out.get_ref().path()).unwrap();
            let header_end = written
                .windows(13)
                .position(|w| w == b"\"analyses\": [")
                .unwrap()
                + 13;
            assert!(header_end as u64 > start);
            assert_eq!(
                String::from_utf8_lossy(&written[header_end..]),
                String::from_utf8_lossy(&whole_layout(&record))
            );
        }
    }
}
