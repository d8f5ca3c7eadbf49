//! SkillForge's flat backup file, versions "1.0" and "2.0".
//!
//! Top level: `version`, `created_at` (often without a time zone), `counts`, `source`, a
//! `data` object of three flat lists linked by `analysis_id` (`analyses`, `artifacts`,
//! `chunks`), and in 2.0 a `metadata` object and `fixtures` (documents, a URL map, queries).
//!
//! Mapping into the canonical form (everything else is kept under its own name, "extras"):
//! - analyses: the contract's fields; missing `title` → null; missing `updated_at` →
//!   `created_at`; a naive timestamp gets "Z" (UTC, as golden reads naive times anyway).
//!   Sorted by (`created_at`, id); one whose `created_at` cannot be read sorts last.
//! - chunks, under their `analysis_id` (structural, not kept), sorted by `chunk_index`:
//!   `snippet` → `content`, `chunk_idx` → `chunk_index`, and `section_path` from the `path`
//!   list: its last element when each element extends the one before by "/" (`a`, `a/b`),
//!   else the elements joined by "/", null for an empty list (the list is kept as `path`).
//!   The chunk's `model` is the model of its old vectors: an extra, never `embedding_model`.
//! - artifacts, under their analysis: `markdown_content` → `summary`; a missing `created_at`
//!   → the analysis's; the last by (`version`, null first; `created_at`; id) is `artifact`,
//!   the others are `artifact_versions`. An artifact whose analysis is not in the file goes
//!   to `orphan_artifacts` (sorted by id) with its `analysis_id`, and is a warning.
//! - `counts` become the metadata totals (artifacts less the orphans); 2.0's `metadata` keys
//!   join them, but golden's own keys, which golden computes. `source`, unknown top-level
//!   keys, `data`'s other keys (as `data`) and `fixtures` but its queries are top-level extras.
//! - 2.0's `fixtures.queries` are the canonical queries, sorted by id: `expected_chunks`
//!   (chunk path strings, kept as written) are resolved to `expected_chunk_ids`, in
//!   reference order, each chunk once. A reference matches the chunks whose `path` list ends
//!   with it (its last element), else those whose list holds it; one that matches nothing
//!   is listed in `unresolved_expected_chunks`.
//!
//! Mapped values are written exactly as found, a wrong type included: golden's validator
//! reports it on the canonical form with the analysis or chunk id. What the canonical form
//! cannot show is reported here: a record that is not an object or has no UUID id (or
//! `analysis_id`), a chunk whose analysis is not in the file, two keys that map to one.
//!
//! Memory. The lists may come in any order (chunks before their analyses), so each element
//! is mapped as it is parsed and written to one of three anonymous temp files; what stays in
//! memory is a small index entry per record: 48 bytes a chunk (its analysis id, index,
//! position and place in the temp file), 56 an analysis (plus a hash-map entry for its id)
//! and 88 an artifact. On top: one record at a time (the largest one whole), the
//! parts that are small by nature and held whole (`counts`, `metadata`, `fixtures` and its
//! queries, top-level extras, `data`'s other keys), and for each query reference the ids of
//! the chunks it matches. A file of a million chunks needs about 50 MB of index; the
//! temp files hold about the size of the `data` lists. Measured (release build): a 720 MB
//! 2.0 file of 200 000 chunks, listed before their analyses in shuffled order, normalizes
//! in 4.6 s at a peak RSS of 15 MB.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::json_out::{JsonOut, Ordered};
use super::{buffered, kind, located, uuid_of, write_failed, Normalized};
use crate::backup_file::extras::METADATA_KEYS;
use crate::backup_file::reader::{describe_json_error, ReadError};
use crate::backup_file::record::{ARTIFACT_KEYS, CHUNK_KEYS, HEAD_KEYS, QUERY_KEYS};
use crate::backup_file::{timestamp, FORMAT_VERSION};

const ORPHAN_ARTIFACT_KEYS: [&str; 5] = ["id", "analysis_id", "summary", "created_at", "version"];
/// The keys of a canonical analysis that hold its chunks and artifacts.
const ANALYSIS_STRUCTURE_KEYS: [&str; 3] = ["chunks", "artifact", "artifact_versions"];
/// Canonical top-level keys that an unknown top-level key of a flat file cannot become (the
/// others, `version`, `created_at` and `metadata`, are the flat file's own).
const CANONICAL_TOP_LEVEL_KEYS: [&str; 3] = ["analyses", "queries", "orphan_artifacts"];

pub(super) fn normalize(
    source: impl Read,
    shown: &str,
    out: &mut impl Write,
) -> Result<Normalized, ReadError> {
    let staged = stage(source, shown)?;
    write_canonical(staged, out).map_err(|e| write_failed(shown, e))
}

// ---------------------------------------------------------------------------------------
// The reading pass: every record mapped and staged in a temp file, with its index entry.

/// One of `data`'s lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum List {
    Analyses,
    Artifacts,
    Chunks,
}

impl List {
    fn named(key: &str) -> Option<List> {
        match key {
            "analyses" => Some(List::Analyses),
            "artifacts" => Some(List::Artifacts),
            "chunks" => Some(List::Chunks),
            _ => None,
        }
    }

    fn path(self) -> &'static str {
        match self {
            List::Analyses => "data.analyses",
            List::Artifacts => "data.artifacts",
            List::Chunks => "data.chunks",
        }
    }
}

/// Where a record is in its temp file.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: u64,
    len: u64,
}

struct AnalysisEntry {
    id: Uuid,
    created_at: Option<DateTime<Utc>>,
    position: usize,
    span: Span,
}

#[derive(Clone, Copy)]
struct ChunkEntry {
    analysis: Uuid,
    /// The chunk's `chunk_index`; one that is missing or not an integer sorts last (the
    /// validator reports it), in file order.
    chunk_index: i64,
    position: usize,
    span: Span,
}

#[derive(Clone, Copy)]
struct ArtifactEntry {
    analysis: Uuid,
    id: Uuid,
    version: VersionOrder,
    created_at: Stamp,
    position: usize,
    span: Span,
}

/// How an artifact's `version` sorts: null (or none) first, then by number, then the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum VersionOrder {
    Null,
    Number(i64),
    Other,
}

/// An artifact's `created_at`, for sorting.
#[derive(Debug, Clone, Copy)]
enum Stamp {
    /// It takes its analysis's.
    Missing,
    At(DateTime<Utc>),
    /// Not a datetime: sorts last, and the validator reports it.
    Unreadable,
}

/// Records held for the writing pass, back to back in an anonymous temp file.
struct RecordFile {
    out: BufWriter<File>,
    written: u64,
}

impl RecordFile {
    fn new() -> io::Result<RecordFile> {
        Ok(RecordFile {
            out: BufWriter::new(tempfile::tempfile()?),
            written: 0,
        })
    }

    fn append(&mut self, record: &impl Serialize) -> io::Result<Span> {
        let bytes = serde_json::to_vec(record)?;
        self.out.write_all(&bytes)?;
        let span = Span {
            offset: self.written,
            len: bytes.len() as u64,
        };
        self.written += span.len;
        Ok(span)
    }

    fn into_reader(self) -> io::Result<RecordReader> {
        let mut file = self.out.into_inner().map_err(|e| e.into_error())?;
        file.seek(SeekFrom::Start(0))?;
        Ok(RecordReader {
            file: BufReader::new(file),
            position: 0,
        })
    }
}

/// Reads records back by their span; records read in the order they were written (chunks of
/// one analysis usually are) are read without a seek that would drop the buffer.
struct RecordReader {
    file: BufReader<File>,
    position: u64,
}

impl RecordReader {
    fn read(&mut self, span: Span) -> io::Result<Vec<u8>> {
        if span.offset != self.position {
            let delta = i64::try_from(i128::from(span.offset) - i128::from(self.position))
                .map_err(|_| io::Error::other("a temp file offset out of range"))?;
            self.file.seek_relative(delta)?;
        }
        let len = usize::try_from(span.len)
            .map_err(|_| io::Error::other("a record larger than this machine's memory"))?;
        let mut bytes = vec![0; len];
        self.file.read_exact(&mut bytes)?;
        self.position = span.offset + span.len;
        Ok(bytes)
    }

    fn object(&mut self, span: Span) -> io::Result<Map<String, Value>> {
        Ok(serde_json::from_slice(&self.read(span)?)?)
    }
}

/// A list's temp file and index.
struct Staging<E> {
    file: RecordFile,
    entries: Vec<E>,
}

impl<E> Staging<E> {
    fn new() -> io::Result<Staging<E>> {
        Ok(Staging {
            file: RecordFile::new()?,
            entries: Vec::new(),
        })
    }
}

/// What the file's `data` key was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataFound {
    Missing,
    NotAnObject,
    Object,
}

/// What the reading pass gathered.
struct Staged {
    created_at: Option<Value>,
    counts: Option<Value>,
    metadata: Option<Value>,
    fixtures: Option<Value>,
    /// `source` and the unknown top-level keys.
    extras: Map<String, Value>,
    data: DataFound,
    /// `data`'s keys other than the three lists.
    data_extras: Map<String, Value>,
    lists_found: Vec<List>,
    analyses: Staging<AnalysisEntry>,
    chunks: Staging<ChunkEntry>,
    artifacts: Staging<ArtifactEntry>,
    found: Normalized,
    /// Writing a temp file failed: the read stopped.
    failure: Option<io::Error>,
}

fn stage(source: impl Read, shown: &str) -> Result<Staged, ReadError> {
    let mut staged = Staged::new().map_err(|e| write_failed(shown, e))?;
    let reader = BufReader::with_capacity(256 * 1024, source);
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let result = TopLevel {
        staged: &mut staged,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());
    if let Some(e) = staged.failure.take() {
        return Err(write_failed(shown, e));
    }
    result.map_err(|e| ReadError::Invalid(describe_json_error(shown, &e)))?;
    staged.check_lists_found();
    Ok(staged)
}

impl Staged {
    fn new() -> io::Result<Staged> {
        Ok(Staged {
            created_at: None,
            counts: None,
            metadata: None,
            fixtures: None,
            extras: Map::new(),
            data: DataFound::Missing,
            data_extras: Map::new(),
            lists_found: Vec::new(),
            analyses: Staging::new()?,
            chunks: Staging::new()?,
            artifacts: Staging::new()?,
            found: Normalized::default(),
            failure: None,
        })
    }

    fn check_lists_found(&mut self) {
        match self.data {
            DataFound::Missing => self.found.problem(
                "data",
                "missing: a SkillForge flat file holds its analyses, artifacts and chunks in a \
                 \"data\" object",
            ),
            DataFound::NotAnObject => {} // Reported where it was read.
            DataFound::Object => {
                for list in [List::Analyses, List::Artifacts, List::Chunks] {
                    if !self.lists_found.contains(&list) {
                        self.found.problem(
                            list.path(),
                            "missing: a SkillForge flat file has this list (empty when there is nothing in it)",
                        );
                    }
                }
            }
        }
    }

    fn stage(&mut self, list: List, position: usize, record: Value) -> io::Result<()> {
        let noun = match list {
            List::Analyses => "analysis",
            List::Artifacts => "artifact",
            List::Chunks => "chunk",
        };
        let at = located(list.path(), position, noun, record.get("id"));
        let Value::Object(record) = record else {
            self.found
                .problem(at, format!("is {}, not a JSON object", kind(&record)));
            return Ok(());
        };
        match list {
            List::Analyses => self.stage_analysis(at, position, record),
            List::Artifacts => self.stage_artifact(at, position, record),
            List::Chunks => self.stage_chunk(at, position, record),
        }
    }

    fn stage_analysis(
        &mut self,
        at: String,
        position: usize,
        analysis: Map<String, Value>,
    ) -> io::Result<()> {
        let id = uuid_of(&analysis, "id");
        let analysis = canonical_analysis(analysis);
        let (id, analysis) = match (id, analysis) {
            (Ok(id), Ok(analysis)) => (id, analysis),
            (id, analysis) => {
                self.problems_at(&at, [id.err(), analysis.err()]);
                return Ok(());
            }
        };
        let created_at = instant_of(analysis.get("created_at"));
        let span = self.analyses.file.append(&analysis)?;
        self.analyses.entries.push(AnalysisEntry {
            id,
            created_at,
            position,
            span,
        });
        Ok(())
    }

    fn stage_chunk(
        &mut self,
        at: String,
        position: usize,
        chunk: Map<String, Value>,
    ) -> io::Result<()> {
        let checked = (uuid_of(&chunk, "id"), uuid_of(&chunk, "analysis_id"));
        let (analysis, chunk) = match (checked, canonical_chunk(chunk)) {
            ((Ok(_), Ok(analysis)), Ok(chunk)) => (analysis, chunk),
            ((id, analysis), chunk) => {
                self.problems_at(&at, [id.err(), analysis.err(), chunk.err()]);
                return Ok(());
            }
        };
        let chunk_index = chunk
            .get("chunk_index")
            .and_then(Value::as_i64)
            .unwrap_or(i64::MAX);
        let span = self.chunks.file.append(&Ordered {
            object: &chunk,
            leading: &CHUNK_KEYS,
        })?;
        self.chunks.entries.push(ChunkEntry {
            analysis,
            chunk_index,
            position,
            span,
        });
        Ok(())
    }

    fn stage_artifact(
        &mut self,
        at: String,
        position: usize,
        artifact: Map<String, Value>,
    ) -> io::Result<()> {
        let checked = (uuid_of(&artifact, "id"), uuid_of(&artifact, "analysis_id"));
        let (id, analysis, artifact) = match (checked, canonical_artifact(artifact)) {
            ((Ok(id), Ok(analysis)), Ok(artifact)) => (id, analysis, artifact),
            ((id, analysis), artifact) => {
                self.problems_at(&at, [id.err(), analysis.err(), artifact.err()]);
                return Ok(());
            }
        };
        let version = match artifact.get("version") {
            None | Some(Value::Null) => VersionOrder::Null,
            Some(value) => value
                .as_i64()
                .map_or(VersionOrder::Other, VersionOrder::Number),
        };
        let created_at = match artifact.get("created_at") {
            None => Stamp::Missing,
            value => instant_of(value).map_or(Stamp::Unreadable, Stamp::At),
        };
        let span = self.artifacts.file.append(&artifact)?;
        self.artifacts.entries.push(ArtifactEntry {
            analysis,
            id,
            version,
            created_at,
            position,
            span,
        });
        Ok(())
    }

    fn problems_at<const N: usize>(&mut self, at: &str, problems: [Option<String>; N]) {
        for problem in problems.into_iter().flatten() {
            self.found.problem(at, problem);
        }
    }
}

/// The file's top-level object.
struct TopLevel<'a> {
    staged: &'a mut Staged,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with \"version\" and \"data\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let staged = self.staged;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                // The dialect carries it; the canonical form has golden's.
                "version" => {
                    map.next_value::<IgnoredAny>()?;
                }
                "created_at" => staged.created_at = Some(map.next_value()?),
                "counts" => staged.counts = Some(map.next_value()?),
                "metadata" => staged.metadata = Some(map.next_value()?),
                "fixtures" => staged.fixtures = Some(map.next_value()?),
                "data" => {
                    staged.data = DataFound::Object;
                    map.next_value_seed(Data {
                        staged: &mut *staged,
                    })?;
                }
                _ => {
                    let value = map.next_value()?;
                    staged.extras.insert(key, value);
                }
            }
        }
        Ok(())
    }
}

/// The `data` object: its lists streamed, its other keys held.
struct Data<'a> {
    staged: &'a mut Staged,
}

impl<'de> DeserializeSeed<'de> for Data<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Data<'_> {
    fn other(self, kind: &str) {
        self.staged.data = DataFound::NotAnObject;
        self.staged.found.problem(
            "data",
            format!("is {kind}, not an object holding the lists analyses, artifacts and chunks"),
        );
    }
}

impl<'de> Visitor<'de> for Data<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a data object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match List::named(&key) {
                Some(list) if self.staged.lists_found.contains(&list) => {
                    map.next_value::<IgnoredAny>()?;
                    self.staged.found.problem(
                        list.path(),
                        "the key appears more than once; only the first list is read: keep one",
                    );
                }
                Some(list) => {
                    self.staged.lists_found.push(list);
                    map.next_value_seed(ListSeed {
                        list,
                        staged: &mut *self.staged,
                    })?;
                }
                None => {
                    let value = map.next_value()?;
                    self.staged.data_extras.insert(key, value);
                }
            }
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        IgnoredAny.visit_seq(seq)?;
        self.other("a list");
        Ok(())
    }

    visit_scalars_as_other!();
}

/// One of `data`'s lists, element by element.
struct ListSeed<'a> {
    list: List,
    staged: &'a mut Staged,
}

impl<'de> DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl ListSeed<'_> {
    fn other(self, kind: &str) {
        self.staged
            .found
            .problem(self.list.path(), format!("is {kind}, not a list"));
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{} to be a list", self.list.path())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut position = 0;
        while let Some(record) = seq.next_element::<Value>()? {
            if let Err(e) = self.staged.stage(self.list, position, record) {
                self.staged.failure = Some(e);
                return Err(de::Error::custom("writing a temp file failed"));
            }
            position += 1;
        }
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        IgnoredAny.visit_map(map)?;
        self.other("an object");
        Ok(())
    }

    visit_scalars_as_other!();
}

// ---------------------------------------------------------------------------------------
// The mapping of one record.

/// A flat analysis as a canonical one (without its chunks and artifacts), or why it cannot be.
fn canonical_analysis(mut analysis: Map<String, Value>) -> Result<Map<String, Value>, String> {
    if let Some(key) = ANALYSIS_STRUCTURE_KEYS
        .iter()
        .find(|key| analysis.contains_key(**key))
    {
        return Err(format!(
            "has a \"{key}\" key, which golden's format uses for an analysis's chunks and \
             artifacts: rename it"
        ));
    }
    mark_key_naive_as_utc(&mut analysis, "created_at");
    mark_key_naive_as_utc(&mut analysis, "updated_at");
    analysis.entry("title").or_insert(Value::Null);
    if !analysis.contains_key("updated_at") {
        if let Some(created_at) = analysis.get("created_at").cloned() {
            analysis.insert("updated_at".to_string(), created_at);
        }
    }
    Ok(analysis)
}

/// A flat chunk as a canonical one (its `analysis_id` dropped: the structure says it), or
/// why it cannot be.
fn canonical_chunk(mut chunk: Map<String, Value>) -> Result<Map<String, Value>, String> {
    chunk.remove("analysis_id");
    rename(&mut chunk, "snippet", "content")?;
    rename(&mut chunk, "chunk_idx", "chunk_index")?;
    if let Some(path) = chunk.get("path") {
        if chunk.contains_key("section_path") {
            return Err(both_keys("path", "section_path"));
        }
        let section_path = section_path_of(path);
        chunk.insert("section_path".to_string(), section_path);
    }
    Ok(chunk)
}

/// A flat artifact as a canonical one, `analysis_id` still in it (an orphan keeps it), or
/// why it cannot be.
fn canonical_artifact(mut artifact: Map<String, Value>) -> Result<Map<String, Value>, String> {
    rename(&mut artifact, "markdown_content", "summary")?;
    mark_key_naive_as_utc(&mut artifact, "created_at");
    Ok(artifact)
}

/// Moves `from`'s value to `to`; both present is an error, since either would be lost.
fn rename(object: &mut Map<String, Value>, from: &str, to: &str) -> Result<(), String> {
    let Some(value) = object.remove(from) else {
        return Ok(());
    };
    if object.contains_key(to) {
        return Err(both_keys(from, to));
    }
    object.insert(to.to_string(), value);
    Ok(())
}

fn both_keys(from: &str, to: &str) -> String {
    format!("has both \"{from}\" and \"{to}\", and golden reads \"{from}\" as \"{to}\": keep one")
}

/// The `section_path` text of a chunk's `path` list (see the module's doc); a `path` that is
/// not a list of strings is taken as it is, for the validator to judge.
fn section_path_of(path: &Value) -> Value {
    let Value::Array(items) = path else {
        return path.clone();
    };
    let Some(parts) = items.iter().map(Value::as_str).collect::<Option<Vec<_>>>() else {
        return path.clone();
    };
    match parts.last() {
        None => Value::Null,
        Some(last) if each_extends_the_one_before(&parts) => Value::String(last.to_string()),
        Some(_) => Value::String(parts.join("/")),
    }
}

fn each_extends_the_one_before(parts: &[&str]) -> bool {
    parts.windows(2).all(|pair| {
        pair[1]
            .strip_prefix(pair[0])
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|segment| !segment.is_empty())
    })
}

/// Appends "Z" to a timestamp without a time zone: golden reads those as UTC, and says so.
fn mark_naive_as_utc(value: &mut Value) {
    if let Value::String(text) = value {
        if is_naive(text) {
            text.push('Z');
        }
    }
}

fn mark_key_naive_as_utc(object: &mut Map<String, Value>, key: &str) {
    if let Some(value) = object.get_mut(key) {
        mark_naive_as_utc(value);
    }
}

fn is_naive(text: &str) -> bool {
    text.trim() == text
        && NaiveDateTime::parse_from_str(&text.replacen('T', " ", 1), "%Y-%m-%d %H:%M:%S%.f")
            .is_ok()
}

fn instant_of(value: Option<&Value>) -> Option<DateTime<Utc>> {
    match value {
        Some(Value::String(text)) => timestamp::parse(text).ok(),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------
// The writing pass: the canonical form, from the index and the temp files.

/// The temp files, read back.
struct Stores {
    analyses: RecordReader,
    chunks: RecordReader,
    artifacts: RecordReader,
}

/// The records of one analysis in a slice sorted by analysis id.
fn group_of<E>(entries: &[E], analysis: Uuid, key: impl Fn(&E) -> Uuid) -> &[E] {
    let start = entries.partition_point(|entry| key(entry) < analysis);
    let end = entries.partition_point(|entry| key(entry) <= analysis);
    &entries[start..end]
}

fn write_canonical(staged: Staged, out: &mut impl Write) -> io::Result<Normalized> {
    let Staged {
        created_at,
        counts,
        metadata,
        fixtures,
        extras,
        data_extras,
        analyses,
        chunks,
        artifacts,
        mut found,
        data: _,
        lists_found: _,
        failure: _,
    } = staged;
    let mut stores = Stores {
        analyses: analyses.file.into_reader()?,
        chunks: chunks.file.into_reader()?,
        artifacts: artifacts.file.into_reader()?,
    };
    let layout = Layout::new(analyses.entries, chunks.entries, artifacts.entries);
    layout.report_orphans(&mut stores.chunks, &mut found)?;
    let (queries, fixtures_rest) = split_fixtures(fixtures);
    let mut references = References::of_queries(queries.as_ref());
    let totals = layout.totals(queries.as_ref());
    let metadata = canonical_metadata(counts, metadata, &totals, &mut found);

    let mut out = JsonOut::new(buffered(out));
    out.begin_object()?;
    out.field("version", FORMAT_VERSION)?;
    if let Some(mut created_at) = created_at {
        mark_naive_as_utc(&mut created_at);
        out.field("created_at", &created_at)?;
    }
    out.field("metadata", &metadata)?;
    layout.write_analyses(&mut out, &mut stores, &mut references)?;
    if let Some(queries) = queries {
        let queries = canonical_queries(queries, &references, &mut found);
        write_queries(&mut out, queries)?;
    }
    layout.write_orphan_artifacts(&mut out, &mut stores.artifacts)?;
    let extras = TopLevelExtras {
        extras,
        data: data_extras,
        fixtures: fixtures_rest,
    };
    extras.write(&mut out, &mut found)?;
    out.end_object()?;
    out.flush()?;
    Ok(found)
}

/// Moves out of `entries` (in place: the chunks' index is the large one) those whose
/// analysis is not in the file, in file order.
fn take_orphans<E: Copy>(
    entries: &mut Vec<E>,
    owner: &HashMap<Uuid, usize>,
    analysis: impl Fn(&E) -> Uuid,
) -> Vec<E> {
    let mut orphans = Vec::new();
    entries.retain(|entry| {
        let placed = owner.contains_key(&analysis(entry));
        if !placed {
            orphans.push(*entry);
        }
        placed
    });
    orphans
}

/// Where every record goes in the canonical form.
struct Layout {
    /// In the canonical order.
    analyses: Vec<AnalysisEntry>,
    /// The rank of the analysis that takes the records of an analysis id: the first one
    /// (the validator reports a duplicate id).
    owner: HashMap<Uuid, usize>,
    /// By analysis id, then in the canonical order.
    chunks: Vec<ChunkEntry>,
    /// By analysis id, then in file order (each analysis's few are ordered when written).
    artifacts: Vec<ArtifactEntry>,
    /// Those whose analysis is not in the file, in file order.
    orphan_chunks: Vec<ChunkEntry>,
    /// Those whose analysis is not in the file, in file order (written by id).
    orphan_artifacts: Vec<ArtifactEntry>,
}

impl Layout {
    fn new(
        mut analyses: Vec<AnalysisEntry>,
        mut chunks: Vec<ChunkEntry>,
        mut artifacts: Vec<ArtifactEntry>,
    ) -> Layout {
        analyses.sort_unstable_by_key(|a| (a.created_at.is_none(), a.created_at, a.id, a.position));
        let mut owner = HashMap::with_capacity(analyses.len());
        for (rank, analysis) in analyses.iter().enumerate() {
            owner.entry(analysis.id).or_insert(rank);
        }
        let orphan_chunks = take_orphans(&mut chunks, &owner, |c| c.analysis);
        chunks.sort_unstable_by_key(|c| (c.analysis, c.chunk_index, c.span.offset));
        let orphan_artifacts = take_orphans(&mut artifacts, &owner, |a| a.analysis);
        artifacts.sort_unstable_by_key(|a| (a.analysis, a.span.offset));
        Layout {
            analyses,
            owner,
            chunks,
            artifacts,
            orphan_chunks,
            orphan_artifacts,
        }
    }

    /// Each chunk whose analysis is not in the file is a problem; each such artifact a
    /// warning, in file order.
    fn report_orphans(&self, chunks: &mut RecordReader, found: &mut Normalized) -> io::Result<()> {
        for orphan in &self.orphan_chunks {
            let chunk = chunks.object(orphan.span)?;
            found.problem(
                located("data.chunks", orphan.position, "chunk", chunk.get("id")),
                format!(
                    "its analysis {} is not in the file: add the analysis to data.analyses or remove the chunk",
                    orphan.analysis
                ),
            );
        }
        // An orphan artifact is named by golden's validator, which reads it in
        // `orphan_artifacts` (of this file or of one golden wrote): once is enough.
        Ok(())
    }

    fn totals(&self, queries: Option<&Value>) -> Totals {
        Totals {
            analyses: self.analyses.len(),
            chunks: self.chunks.len(),
            artifacts: self.artifacts.len(),
            orphan_artifacts: self.orphan_artifacts.len(),
            queries: queries.and_then(Value::as_array).map(Vec::len),
        }
    }

    fn write_analyses<W: Write>(
        &self,
        out: &mut JsonOut<W>,
        stores: &mut Stores,
        references: &mut References,
    ) -> io::Result<()> {
        out.key("analyses")?;
        out.begin_list()?;
        for (rank, entry) in self.analyses.iter().enumerate() {
            let owns = self.owner.get(&entry.id) == Some(&rank);
            let analysis = if owns {
                AnalysisParts {
                    entry,
                    chunks: group_of(&self.chunks, entry.id, |c| c.analysis),
                    artifacts: group_of(&self.artifacts, entry.id, |a| a.analysis),
                }
            } else {
                AnalysisParts {
                    entry,
                    chunks: &[],
                    artifacts: &[],
                }
            };
            analysis.write(out, stores, references)?;
        }
        out.end_list()
    }

    fn write_orphan_artifacts<W: Write>(
        &self,
        out: &mut JsonOut<W>,
        store: &mut RecordReader,
    ) -> io::Result<()> {
        if self.orphan_artifacts.is_empty() {
            return Ok(());
        }
        let mut by_id: Vec<&ArtifactEntry> = self.orphan_artifacts.iter().collect();
        by_id.sort_unstable_by_key(|artifact| (artifact.id, artifact.position));
        out.key("orphan_artifacts")?;
        out.begin_list()?;
        for orphan in by_id {
            let artifact = store.object(orphan.span)?;
            out.value(&Ordered {
                object: &artifact,
                leading: &ORPHAN_ARTIFACT_KEYS,
            })?;
        }
        out.end_list()
    }
}

/// The top-level keys the canonical form keeps as extras.
struct TopLevelExtras {
    /// `source` and the unknown keys.
    extras: Map<String, Value>,
    /// `data`'s keys other than its lists.
    data: Map<String, Value>,
    /// `fixtures` but its queries.
    fixtures: Option<Value>,
}

impl TopLevelExtras {
    /// Writes them in key order, but an unknown key that golden would take for its own.
    fn write<W: Write>(self, out: &mut JsonOut<W>, found: &mut Normalized) -> io::Result<()> {
        let mut extras = self.extras;
        if !self.data.is_empty() {
            extras.insert("data".to_string(), Value::Object(self.data));
        }
        if let Some(fixtures) = self.fixtures {
            extras.insert("fixtures".to_string(), fixtures);
        }
        let extras = Ordered {
            object: &extras,
            leading: &[],
        };
        for (key, value) in extras.rest() {
            if CANONICAL_TOP_LEVEL_KEYS.contains(&key.as_str()) {
                found.problem(
                    key.as_str(),
                    "a SkillForge file's top-level key of this name would be taken for golden's own: rename it",
                );
                continue;
            }
            out.field(key, value)?;
        }
        Ok(())
    }
}

/// One analysis of the output and the index entries of its records.
struct AnalysisParts<'a> {
    entry: &'a AnalysisEntry,
    chunks: &'a [ChunkEntry],
    artifacts: &'a [ArtifactEntry],
}

impl AnalysisParts<'_> {
    fn write<W: Write>(
        &self,
        out: &mut JsonOut<W>,
        stores: &mut Stores,
        references: &mut References,
    ) -> io::Result<()> {
        let analysis = stores.analyses.object(self.entry.span)?;
        out.begin_object()?;
        for key in HEAD_KEYS {
            if let Some(value) = analysis.get(key) {
                out.field(key, value)?;
            }
        }
        // The extras before the chunks, as golden writes them: the reader then knows them
        // with the head, and a restore stores them with the analysis's row.
        for (key, value) in (Ordered {
            object: &analysis,
            leading: &HEAD_KEYS,
        })
        .rest()
        {
            out.field(key, value)?;
        }
        out.key("chunks")?;
        out.begin_list()?;
        for chunk in self.chunks {
            let line = stores.chunks.read(chunk.span)?;
            references.observe(&line)?;
            out.raw(&line)?;
        }
        out.end_list()?;

        let mut versions = self.artifacts_in_order(&analysis, &mut stores.artifacts)?;
        let latest = versions.pop();
        match &latest {
            Some(artifact) => out.field(
                "artifact",
                &Ordered {
                    object: artifact,
                    leading: &ARTIFACT_KEYS,
                },
            )?,
            None => out.field("artifact", &Value::Null)?,
        }
        if !versions.is_empty() {
            out.key("artifact_versions")?;
            out.begin_list()?;
            for artifact in &versions {
                out.value(&Ordered {
                    object: artifact,
                    leading: &ARTIFACT_KEYS,
                })?;
            }
            out.end_list()?;
        }

        out.end_object()
    }

    /// The analysis's artifacts, oldest first: by version (null first), `created_at` (a
    /// missing one is the analysis's, an unreadable one last) and id; each without its
    /// `analysis_id` and with the analysis's `created_at` when it has none.
    fn artifacts_in_order(
        &self,
        analysis: &Map<String, Value>,
        store: &mut RecordReader,
    ) -> io::Result<Vec<Map<String, Value>>> {
        let mut ordered = Vec::with_capacity(self.artifacts.len());
        for entry in self.artifacts {
            let mut artifact = store.object(entry.span)?;
            artifact.remove("analysis_id");
            if let (false, Some(created_at)) = (
                artifact.contains_key("created_at"),
                analysis.get("created_at"),
            ) {
                artifact.insert("created_at".to_string(), created_at.clone());
            }
            let created_at = match entry.created_at {
                Stamp::Missing => self.entry.created_at,
                Stamp::At(at) => Some(at),
                Stamp::Unreadable => None,
            };
            let order = (
                entry.version,
                created_at.is_none(),
                created_at,
                entry.id,
                entry.position,
            );
            ordered.push((order, artifact));
        }
        ordered.sort_by_key(|(order, _)| *order);
        Ok(ordered.into_iter().map(|(_, artifact)| artifact).collect())
    }
}

/// What the file holds, as the canonical form counts it.
struct Totals {
    analyses: usize,
    chunks: usize,
    artifacts: usize,
    orphan_artifacts: usize,
    /// The number of queries, when the file has a list of them.
    queries: Option<usize>,
}

/// The canonical metadata: the totals from `counts` (as written: a wrong one is the
/// validator's to report; the actual number when `counts` lacks it), then the file's
/// `metadata` keys but golden's own.
fn canonical_metadata(
    counts: Option<Value>,
    foreign: Option<Value>,
    totals: &Totals,
    found: &mut Normalized,
) -> Map<String, Value> {
    let counts = match counts {
        None => Map::new(),
        Some(Value::Object(counts)) => counts,
        Some(other) => {
            found.problem(
                "counts",
                format!("is {}, not an object of counts", kind(&other)),
            );
            Map::new()
        }
    };
    let claimed_or = |key: &str, actual: usize| {
        counts
            .get(key)
            .cloned()
            .unwrap_or_else(|| Value::from(actual))
    };
    let mut metadata = Map::new();
    metadata.insert(
        "total_analyses".into(),
        claimed_or("analyses", totals.analyses),
    );
    metadata.insert("total_chunks".into(), claimed_or("chunks", totals.chunks));
    // The count of a flat file includes the orphans, which the canonical form holds apart.
    let artifacts = match counts.get("artifacts").and_then(Value::as_u64) {
        Some(claimed) => claimed
            .checked_sub(totals.orphan_artifacts as u64)
            .map_or_else(|| Value::from(claimed), Value::from),
        None => claimed_or("artifacts", totals.artifacts),
    };
    metadata.insert("total_artifacts".into(), artifacts);
    if let Some(queries) = totals.queries {
        metadata.insert("total_queries".into(), Value::from(queries));
    }
    // The counts golden does not compute (2.0's `fixtures`) are kept, in `metadata.counts`.
    let other_counts: Map<String, Value> = counts
        .iter()
        .filter(|(key, _)| !matches!(key.as_str(), "analyses" | "chunks" | "artifacts"))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    if !other_counts.is_empty() {
        metadata.insert("counts".into(), Value::Object(other_counts));
    }
    match foreign {
        None => {}
        Some(Value::Object(foreign)) => {
            for (key, value) in foreign {
                if METADATA_KEYS.contains(&key.as_str()) {
                    found.warning(
                        format!("metadata.{key}"),
                        format!("golden computes this key: the file's value {value} is not kept"),
                    );
                } else {
                    metadata.insert(key, value);
                }
            }
        }
        Some(other) => found.problem("metadata", format!("is {}, not an object", kind(&other))),
    }
    metadata
}

/// `fixtures.queries`, and the rest of `fixtures` (all of it when it is not an object).
fn split_fixtures(fixtures: Option<Value>) -> (Option<Value>, Option<Value>) {
    match fixtures {
        Some(Value::Object(mut fixtures)) => {
            let queries = fixtures.remove("queries");
            (queries, Some(Value::Object(fixtures)))
        }
        other => (None, other),
    }
}

/// The canonical queries of `fixtures.queries`, resolved and sorted by id (byte order; a
/// query without a text id last); `Err` gives back a value that is not a list, to be written
/// as it is for the validator to report.
fn canonical_queries(
    queries: Value,
    references: &References,
    found: &mut Normalized,
) -> Result<Vec<Value>, Value> {
    let Value::Array(queries) = queries else {
        return Err(queries);
    };
    let mut queries: Vec<Value> = queries
        .into_iter()
        .enumerate()
        .map(|(position, query)| canonical_query(position, query, references, found))
        .collect();
    queries.sort_by(|a, b| query_order(a).cmp(&query_order(b)));
    Ok(queries)
}

fn write_queries<W: Write>(
    out: &mut JsonOut<W>,
    queries: Result<Vec<Value>, Value>,
) -> io::Result<()> {
    let queries = match queries {
        Ok(queries) => queries,
        Err(not_a_list) => return out.field("queries", &not_a_list),
    };
    out.key("queries")?;
    out.begin_list()?;
    for query in &queries {
        match query {
            Value::Object(object) => out.value(&Ordered {
                object,
                leading: &QUERY_KEYS,
            })?,
            other => out.value(other)?,
        }
    }
    out.end_list()
}

fn query_order(query: &Value) -> (bool, Option<&[u8]>) {
    let id = query.get("id").and_then(Value::as_str).map(str::as_bytes);
    (id.is_none(), id)
}

/// A query with its `expected_chunks` resolved (kept as written, an extra).
fn canonical_query(
    position: usize,
    query: Value,
    references: &References,
    found: &mut Normalized,
) -> Value {
    let Value::Object(mut query) = query else {
        return query;
    };
    let Some(expected) = query.get("expected_chunks") else {
        return Value::Object(query);
    };
    let at = located("fixtures.queries", position, "query", query.get("id"));
    let Some(wanted) = reference_list(expected) else {
        found.problem(
            at,
            "\"expected_chunks\" must be a list of chunk path strings",
        );
        return Value::Object(query);
    };
    for computed in ["expected_chunk_ids", "unresolved_expected_chunks"] {
        if query.contains_key(computed) {
            found.problem(
                at,
                format!(
                    "has both \"expected_chunks\" and \"{computed}\", which golden computes from \
                     \"expected_chunks\": remove \"{computed}\""
                ),
            );
            return Value::Object(query);
        }
    }
    let resolution = references.resolve(&wanted);
    query.insert(
        "expected_chunk_ids".to_string(),
        Value::from(
            resolution
                .ids
                .iter()
                .map(|id| Value::String(id.to_string()))
                .collect::<Vec<_>>(),
        ),
    );
    if !resolution.unresolved.is_empty() {
        query.insert(
            "unresolved_expected_chunks".to_string(),
            Value::from(resolution.unresolved),
        );
    }
    Value::Object(query)
}

/// The strings of an `expected_chunks` list; None when it is not a list of strings.
fn reference_list(expected: &Value) -> Option<Vec<&str>> {
    expected.as_array()?.iter().map(Value::as_str).collect()
}

/// The chunk path references of the queries, and the chunks each one matches, gathered as
/// the chunks are written: memory per reference and match, not per chunk.
#[derive(Default)]
struct References {
    matches: HashMap<String, Matches>,
}

#[derive(Default)]
struct Matches {
    /// The chunks whose path ends with the reference.
    ending: Vec<Uuid>,
    /// The chunks whose path holds it elsewhere; needed only while none ends with it.
    holding: Vec<Uuid>,
}

/// How a query's references resolved.
struct Resolution {
    /// In reference order, each chunk once.
    ids: Vec<Uuid>,
    /// The references that match no chunk, in order, each once.
    unresolved: Vec<String>,
}

/// What resolution reads of a canonical chunk.
#[derive(Deserialize)]
struct ChunkPath {
    id: Uuid,
    #[serde(default)]
    path: Value,
}

impl References {
    fn of_queries(queries: Option<&Value>) -> References {
        let mut references = References::default();
        let queries = queries.and_then(Value::as_array).into_iter().flatten();
        for query in queries {
            let expected = query.get("expected_chunks").and_then(Value::as_array);
            for reference in expected.into_iter().flatten().filter_map(Value::as_str) {
                references.matches.entry(reference.to_string()).or_default();
            }
        }
        references
    }

    /// Notes which references the canonical chunk `line` matches.
    fn observe(&mut self, line: &[u8]) -> io::Result<()> {
        if self.matches.is_empty() {
            return Ok(());
        }
        let chunk: ChunkPath = serde_json::from_slice(line)?;
        let parts: Vec<&str> = match &chunk.path {
            Value::Array(items) => items.iter().filter_map(Value::as_str).collect(),
            Value::String(single) => vec![single.as_str()],
            _ => return Ok(()),
        };
        if let Some(matches) = parts.last().and_then(|last| self.matches.get_mut(*last)) {
            matches.ending.push(chunk.id);
            matches.holding = Vec::new();
        }
        for part in &parts {
            if let Some(matches) = self.matches.get_mut(*part) {
                let noted = matches.holding.last() == Some(&chunk.id);
                if matches.ending.is_empty() && !noted {
                    matches.holding.push(chunk.id);
                }
            }
        }
        Ok(())
    }

    fn resolve(&self, wanted: &[&str]) -> Resolution {
        let mut ids = Vec::new();
        let mut seen = HashSet::new();
        let mut unresolved: Vec<String> = Vec::new();
        for reference in wanted {
            let matched = self.matches.get(*reference).map_or(&[][..], |m| {
                if m.ending.is_empty() {
                    &m.holding
                } else {
                    &m.ending
                }
            });
            if matched.is_empty() {
                if !unresolved.iter().any(|r| r == reference) {
                    unresolved.push(reference.to_string());
                }
                continue;
            }
            ids.extend(matched.iter().filter(|id| seen.insert(**id)));
        }
        Resolution { ids, unresolved }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{detect, normalize, read_back, Dialect};
    use super::*;

    const A1: &str = "11111111-1111-4111-8111-111111111111";
    const A2: &str = "22222222-2222-4222-8222-222222222222";
    const GONE: &str = "99999999-9999-4999-8999-999999999999";

    /// A flat 1.0 file as SkillForge's `json.dump(indent=2)` writes it, but with its chunks
    /// listed before its analyses: a naive header time, `\u` escapes and a surrogate pair,
    /// path lists, two artifact versions of one analysis and an orphan artifact.
    const FLAT_1: &str = r##"{
  "version": "1.0",
  "created_at": "2025-12-12T08:33:16.928533",
  "source": "skillforge-backend",
  "counts": {
    "analyses": 2,
    "artifacts": 4,
    "chunks": 3
  },
  "data": {
    "chunks": [
      {
        "id": "c2000000-0000-4000-8000-000000000001",
        "analysis_id": "22222222-2222-4222-8222-222222222222",
        "snippet": "Second analysis",
        "granularity": "coarse",
        "section_title": "Only",
        "chunk_idx": 0,
        "chunk_total": 1,
        "path": [
          "other-doc",
          "elsewhere/part"
        ],
        "hash": "abc",
        "content_type": "article",
        "language": "en",
        "model": "text-embedding-3-small",
        "model_version": "1",
        "created_at": "2025-12-01T10:00:00.000001"
      },
      {
        "id": "c1000000-0000-4000-8000-000000000002",
        "analysis_id": "11111111-1111-4111-8111-111111111111",
        "snippet": "Motivation \ud83d\ude80",
        "granularity": "coarse",
        "section_title": "Motivation",
        "chunk_idx": 1,
        "chunk_total": 2,
        "path": [
          "reddit-sharding",
          "reddit-sharding/motivation"
        ],
        "hash": "def",
        "content_type": "article",
        "language": "en",
        "model": "text-embedding-3-small",
        "model_version": "1",
        "created_at": "2025-12-01T10:00:00"
      },
      {
        "id": "c1000000-0000-4000-8000-000000000001",
        "analysis_id": "11111111-1111-4111-8111-111111111111",
        "snippet": "Caf\u00e9 intro",
        "granularity": "coarse",
        "section_title": "Intro",
        "chunk_idx": 0,
        "chunk_total": 2,
        "path": [],
        "hash": "ghi",
        "content_type": "article",
        "language": "en",
        "model": "text-embedding-3-small",
        "model_version": "1",
        "created_at": "2025-12-01T10:00:00"
      }
    ],
    "analyses": [
      {
        "id": "22222222-2222-4222-8222-222222222222",
        "url": "https://example.com/two",
        "content_type": "article",
        "title": "Two",
        "status": "completed",
        "created_at": "2025-12-02T10:00:00",
        "updated_at": "2025-12-03T10:00:00+00:00"
      },
      {
        "id": "11111111-1111-4111-8111-111111111111",
        "url": "https://example.com/caf\u00e9",
        "content_type": "article",
        "status": "completed",
        "created_at": "2025-12-01T10:00:00"
      }
    ],
    "artifacts": [
      {
        "id": "a1000000-0000-4000-8000-000000000002",
        "analysis_id": "11111111-1111-4111-8111-111111111111",
        "markdown_content": "# Version 2",
        "version": 2,
        "artifact_metadata": {
          "topics": [
            "sharding"
          ],
          "needs_regeneration": false
        },
        "created_at": "2025-12-05T10:00:00"
      },
      {
        "id": "a1000000-0000-4000-8000-000000000001",
        "analysis_id": "11111111-1111-4111-8111-111111111111",
        "markdown_content": "# Version 1",
        "version": 1,
        "artifact_metadata": {},
        "created_at": "2025-12-06T10:00:00"
      },
      {
        "id": "a9000000-0000-4000-8000-000000000001",
        "analysis_id": "99999999-9999-4999-8999-999999999999",
        "markdown_content": "# Orphan",
        "version": 1,
        "artifact_metadata": {},
        "created_at": "2025-12-07T10:00:00"
      },
      {
        "id": "a2000000-0000-4000-8000-000000000001",
        "analysis_id": "22222222-2222-4222-8222-222222222222",
        "markdown_content": "# Two",
        "version": 1,
        "artifact_metadata": {}
      }
    ]
  }
}"##;

    /// A flat 2.0 file: fixtures with documents, a URL map and queries, one with a reference
    /// that resolves to nothing.
    const FLAT_2: &str = r#"{
  "version": "2.0",
  "created_at": "2026-01-10T08:00:00.5",
  "source": "skillforge-backend",
  "counts": {
    "analyses": 1,
    "artifacts": 1,
    "chunks": 3,
    "fixtures": 1
  },
  "metadata": {
    "backup_type": "full",
    "includes_fixtures": true,
    "schema_version": 7
  },
  "data": {
    "analyses": [
      {
        "id": "11111111-1111-4111-8111-111111111111",
        "url": "https://fastapi.tiangolo.com/tutorial/security/",
        "content_type": "documentation",
        "title": "FastAPI auth",
        "status": "completed",
        "created_at": "2026-01-01T00:00:00",
        "updated_at": "2026-01-01T00:00:00"
      }
    ],
    "artifacts": [
      {
        "id": "a1000000-0000-4000-8000-000000000001",
        "analysis_id": "11111111-1111-4111-8111-111111111111",
        "markdown_content": "Auth",
        "version": 1,
        "artifact_metadata": {},
        "created_at": "2026-01-01T00:00:00"
      }
    ],
    "chunks": [
      {
        "id": "c1000000-0000-4000-8000-000000000001",
        "analysis_id": "11111111-1111-4111-8111-111111111111",
        "snippet": "Overview",
        "chunk_idx": 0,
        "path": ["fastapi-auth"],
        "content_type": "documentation"
      },
      {
        "id": "c1000000-0000-4000-8000-000000000002",
        "analysis_id": "11111111-1111-4111-8111-111111111111",
        "snippet": "Password flow",
        "chunk_idx": 1,
        "path": ["fastapi-auth", "fastapi-auth/oauth2-password"],
        "content_type": "documentation"
      },
      {
        "id": "c1000000-0000-4000-8000-000000000003",
        "analysis_id": "11111111-1111-4111-8111-111111111111",
        "snippet": "Scopes",
        "chunk_idx": 2,
        "path": ["fastapi-auth", "fastapi-auth/oauth2-password", "fastapi-auth/oauth2-password/scopes"],
        "content_type": "documentation"
      }
    ]
  },
  "fixtures": {
    "documents": [
      {
        "id": "fastapi-auth",
        "title": "FastAPI auth",
        "source_url": "https://fastapi.tiangolo.com/tutorial/security/",
        "content_type": "documentation",
        "bucket": "docs",
        "language": "en",
        "tags": ["auth"],
        "sections": [
          {
            "content": "Overview",
            "id": "fastapi-auth",
            "title": "Overview",
            "granularity": "coarse"
          }
        ]
      }
    ],
    "source_url_map": {
      "fastapi-auth": "https://fastapi.tiangolo.com/tutorial/security/"
    },
    "queries": [
      {
        "id": "q-password",
        "query": "How does the password flow work?",
        "modes": ["semantic"],
        "category": "auth",
        "difficulty": "easy",
        "expected_chunks": [
          "fastapi-auth/oauth2-password",
          "fastapi-auth/oauth2-password"
        ],
        "min_score": 0.5,
        "max_score": 1.0,
        "description": "ends-with wins over contains"
      },
      {
        "id": "q-auth",
        "query": "Auth overview",
        "modes": ["semantic"],
        "category": "auth",
        "difficulty": "medium",
        "expected_chunks": [
          "fastapi-auth",
          "missing-doc/section",
          "fastapi-auth/oauth2-password/scopes"
        ],
        "min_score": 0.3,
        "max_score": 1.0,
        "description": "one reference resolves to nothing",
        "granularity": "fine",
        "expected_fine_chunks": ["x"],
        "expected_coarse_parent": "fastapi-auth"
      },
      {
        "id": "q-order",
        "query": "Password anything",
        "expected_chunks": [
          "fastapi-auth/oauth2-password/scopes",
          "fastapi-auth/oauth2-password"
        ]
      }
    ]
  }
}"#;

    fn normalized(text: &str) -> (Normalized, Vec<u8>) {
        let dialect = detect(text.as_bytes(), "flat.json").expect("a flat file");
        assert!(
            matches!(dialect, Dialect::SkillForgeFlat { .. }),
            "{dialect:?}"
        );
        let mut out = Vec::new();
        let found = normalize(&dialect, text.as_bytes(), "flat.json", &mut out)
            .expect("the flat file normalizes");
        (found, out)
    }

    fn ids(list: &Value) -> Vec<&str> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|item| item["id"].as_str().unwrap())
            .collect()
    }

    #[test]
    fn maps_a_flat_1_0_file_into_the_canonical_form() {
        let (found, out) = normalized(FLAT_1);
        assert_eq!(found.problems, vec![], "{found:?}");
        let (header, analyses) = read_back(&out);

        assert_eq!(header.version.as_deref(), Some("1.0"));
        assert_eq!(
            header.created_at,
            Some(json!("2025-12-12T08:33:16.928533Z"))
        );
        assert_eq!(
            header.metadata,
            Some(json!({"total_analyses": 2, "total_chunks": 3, "total_artifacts": 3}))
        );
        assert_eq!(header.extras["source"], json!("skillforge-backend"));
        assert!(
            !header.extras.contains_key("data"),
            "only the lists were in data"
        );
        assert!(header.queries.is_none());

        // Sorted by created_at: analysis 1 (Dec 1) before analysis 2 (Dec 2).
        assert_eq!(ids(&Value::from(analyses.clone())), vec![A1, A2]);
        let first = &analyses[0];
        assert_eq!(first["title"], Value::Null);
        assert_eq!(first["created_at"], json!("2025-12-01T10:00:00Z"));
        assert_eq!(first["updated_at"], json!("2025-12-01T10:00:00Z"));
        assert_eq!(first["url"], json!("https://example.com/café"));

        let chunks = &first["chunks"];
        assert_eq!(
            ids(chunks),
            vec![
                "c1000000-0000-4000-8000-000000000001",
                "c1000000-0000-4000-8000-000000000002"
            ]
        );
        let intro = chunks[0].as_object().unwrap();
        assert_eq!(intro["content"], json!("Café intro"));
        assert_eq!(intro["chunk_index"], json!(0));
        assert_eq!(intro["section_path"], Value::Null, "an empty path");
        assert_eq!(intro["path"], json!([]));
        for extra in ["granularity", "chunk_total", "hash", "language", "model"] {
            assert!(intro.contains_key(extra), "{extra}");
        }
        assert_eq!(intro["model"], json!("text-embedding-3-small"));
        assert_eq!(
            intro["created_at"],
            json!("2025-12-01T10:00:00"),
            "an extra, as written"
        );
        for mapped in ["snippet", "chunk_idx", "analysis_id", "embedding_model"] {
            assert!(!intro.contains_key(mapped), "{mapped}");
        }
        let motivation = &chunks[1];
        assert_eq!(motivation["content"], json!("Motivation 🚀"));
        assert_eq!(
            motivation["section_path"],
            json!("reddit-sharding/motivation")
        );

        // Version 1 then version 2, whatever their created_at: the latest is the artifact.
        assert_eq!(
            first["artifact"]["id"],
            json!("a1000000-0000-4000-8000-000000000002")
        );
        assert_eq!(first["artifact"]["summary"], json!("# Version 2"));
        assert_eq!(first["artifact"]["version"], json!(2));
        assert_eq!(
            first["artifact"]["created_at"],
            json!("2025-12-05T10:00:00Z")
        );
        assert_eq!(
            first["artifact"]["artifact_metadata"]["topics"],
            json!(["sharding"])
        );
        assert!(first["artifact"].get("analysis_id").is_none());
        assert_eq!(
            ids(&first["artifact_versions"]),
            vec!["a1000000-0000-4000-8000-000000000001"]
        );

        let second = analyses[1].as_object().unwrap();
        assert_eq!(second["created_at"], json!("2025-12-02T10:00:00Z"));
        assert_eq!(second["updated_at"], json!("2025-12-03T10:00:00+00:00"));
        assert_eq!(
            second["chunks"][0]["section_path"],
            json!("other-doc/elsewhere/part")
        );
        assert_eq!(
            second["artifact"]["created_at"],
            json!("2025-12-02T10:00:00Z"),
            "the analysis's"
        );
        assert!(!second.contains_key("artifact_versions"));

        // The orphan is named by golden's validator, once.
        assert!(found.warnings.is_empty(), "{:?}", found.warnings);
        let orphans = &header.extras["orphan_artifacts"];
        assert_eq!(
            orphans,
            &json!([{"id": "a9000000-0000-4000-8000-000000000001", "analysis_id": GONE,
                     "summary": "# Orphan", "created_at": "2025-12-07T10:00:00Z",
                     "version": 1, "artifact_metadata": {}}])
        );
    }

    #[test]
    fn writes_the_canonical_key_order() {
        let (_, out) = normalized(FLAT_1);
        let text = String::from_utf8(out).unwrap();
        let position = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle}"));
        assert!(position("\"version\"") < position("\"created_at\""));
        assert!(position("\"metadata\"") < position("\"analyses\""));
        assert!(position("\"analyses\"") < position("\"orphan_artifacts\""));
        assert!(position("\"orphan_artifacts\"") < position("\"source\""));
        let chunk = &text[position("{\"id\":\"c1000000-0000-4000-8000-000000000001\"")..];
        let chunk = &chunk[..chunk.find('}').unwrap()];
        let keys: Vec<&str> = chunk
            .split("\":")
            .filter_map(|piece| piece.rsplit('"').next())
            .collect();
        assert_eq!(
            &keys[..6],
            &[
                "id",
                "content",
                "section_title",
                "section_path",
                "content_type",
                "chunk_index"
            ]
        );
    }

    #[test]
    fn maps_a_flat_2_0_file_and_resolves_its_queries() {
        let (found, out) = normalized(FLAT_2);
        assert_eq!(found, Normalized::default());
        let (header, analyses) = read_back(&out);
        assert_eq!(header.created_at, Some(json!("2026-01-10T08:00:00.5Z")));
        assert_eq!(
            header.metadata,
            Some(
                json!({"total_analyses": 1, "total_chunks": 3, "total_artifacts": 1,
                        "total_queries": 3, "counts": {"fixtures": 1}, "backup_type": "full",
                        "includes_fixtures": true, "schema_version": 7})
            )
        );
        let fixtures = &header.extras["fixtures"];
        assert!(fixtures.get("queries").is_none());
        assert_eq!(
            fixtures["source_url_map"]["fastapi-auth"],
            json!("https://fastapi.tiangolo.com/tutorial/security/")
        );
        assert_eq!(
            fixtures["documents"][0]["sections"][0]["granularity"],
            json!("coarse")
        );
        assert_eq!(
            analyses[0]["chunks"][2]["section_path"],
            json!("fastapi-auth/oauth2-password/scopes")
        );

        let queries = header.queries.unwrap();
        // Sorted by id bytes.
        assert_eq!(ids(&queries), vec!["q-auth", "q-order", "q-password"]);
        let c = |n: u8| format!("c1000000-0000-4000-8000-00000000000{n}");

        let auth = &queries[0];
        // "fastapi-auth" ends the path of chunk 1 only; the scopes reference ends chunk 3's.
        assert_eq!(auth["expected_chunk_ids"], json!([c(1), c(3)]));
        assert_eq!(
            auth["unresolved_expected_chunks"],
            json!(["missing-doc/section"])
        );
        assert_eq!(
            auth["expected_chunks"],
            json!([
                "fastapi-auth",
                "missing-doc/section",
                "fastapi-auth/oauth2-password/scopes"
            ])
        );
        for kept in [
            "modes",
            "min_score",
            "max_score",
            "description",
            "granularity",
            "expected_fine_chunks",
            "expected_coarse_parent",
            "category",
            "difficulty",
        ] {
            assert!(auth.get(kept).is_some(), "{kept}");
        }

        let order = &queries[1];
        // In reference order: chunk 3 first, then chunk 2.
        assert_eq!(order["expected_chunk_ids"], json!([c(3), c(2)]));
        assert!(order.get("unresolved_expected_chunks").is_none());

        let password = &queries[2];
        // The path of chunk 2 ends with the reference; chunk 3's only holds it.
        assert_eq!(password["expected_chunk_ids"], json!([c(2)]));
    }

    #[test]
    fn the_canonical_form_of_a_clean_file_passes_the_validator() {
        let (_, out) = normalized(FLAT_2);
        let mut validator = crate::validate::Validator::default();
        let header = crate::backup_file::reader::read_pieces(&out[..], "canonical.json", |piece| {
            validator.piece(piece);
            Ok(())
        })
        .unwrap();
        let validation = validator.finish(header);
        assert_eq!(validation.problems, vec![]);
        assert_eq!(validation.counts.chunks, 3);
        assert_eq!(validation.queries.len(), 3);
    }

    #[test]
    fn a_reference_held_by_no_path_end_resolves_to_the_chunks_holding_it() {
        let mut references = References::default();
        references.matches.insert("doc".into(), Matches::default());
        references
            .matches
            .insert("doc/a".into(), Matches::default());
        let chunk =
            |id: &str, path: Value| serde_json::to_vec(&json!({"id": id, "path": path})).unwrap();
        let one = "00000000-0000-4000-8000-000000000001";
        let two = "00000000-0000-4000-8000-000000000002";
        references
            .observe(&chunk(one, json!(["doc", "doc/a"])))
            .unwrap();
        references
            .observe(&chunk(two, json!(["doc", "doc/b", "doc"])))
            .unwrap();
        let resolution = references.resolve(&["doc", "doc/a", "nothing", "nothing"]);
        // "doc" ends chunk 2's path (its last element): that wins over chunk 1 holding it.
        assert_eq!(
            resolution.ids,
            vec![Uuid::parse_str(two).unwrap(), Uuid::parse_str(one).unwrap()]
        );
        assert_eq!(resolution.unresolved, vec!["nothing".to_string()]);

        let mut references = References::default();
        references.matches.insert("doc".into(), Matches::default());
        references
            .observe(&chunk(one, json!(["doc", "doc/a"])))
            .unwrap();
        references
            .observe(&chunk(two, json!(["doc", "doc/b"])))
            .unwrap();
        let resolution = references.resolve(&["doc"]);
        assert_eq!(
            resolution.ids,
            vec![Uuid::parse_str(one).unwrap(), Uuid::parse_str(two).unwrap()]
        );
    }

    #[test]
    fn index_entries_are_as_small_as_the_module_says() {
        assert!(std::mem::size_of::<ChunkEntry>() <= 48);
        assert!(std::mem::size_of::<AnalysisEntry>() <= 56);
        assert!(std::mem::size_of::<ArtifactEntry>() <= 88);
    }

    #[test]
    fn section_paths_from_path_lists() {
        assert_eq!(section_path_of(&json!([])), Value::Null);
        assert_eq!(section_path_of(&json!(["a"])), json!("a"));
        assert_eq!(
            section_path_of(&json!(["a", "a/b", "a/b/c"])),
            json!("a/b/c")
        );
        assert_eq!(section_path_of(&json!(["a", "b"])), json!("a/b"));
        assert_eq!(section_path_of(&json!(["a", "ab"])), json!("a/ab"));
        assert_eq!(section_path_of(&json!(["a", "a/"])), json!("a/a/"));
        // Not a list of strings: as written, for the validator.
        assert_eq!(section_path_of(&json!("a/b")), json!("a/b"));
        assert_eq!(section_path_of(&json!([1])), json!([1]));
    }

    #[test]
    fn orders_the_versions_of_one_analysis() {
        let artifact = |id: &str, version: Value, created_at: Option<&str>| {
            let mut artifact =
                json!({"id": id, "analysis_id": A1, "markdown_content": id, "version": version});
            if let Some(at) = created_at {
                artifact["created_at"] = json!(at);
            }
            artifact
        };
        let file = json!({
            "version": "2.0",
            "data": {
                "analyses": [{"id": A1, "created_at": "2025-01-02T00:00:00Z"}],
                "chunks": [],
                "artifacts": [
                    artifact("a0000000-0000-4000-8000-000000000005", json!(2), Some("2025-01-01T00:00:00Z")),
                    artifact("a0000000-0000-4000-8000-000000000004", json!(1), Some("not a time")),
                    artifact("a0000000-0000-4000-8000-000000000003", json!(1), None),
                    artifact("a0000000-0000-4000-8000-000000000002", json!(1), Some("2025-01-01T00:00:00Z")),
                    artifact("a0000000-0000-4000-8000-000000000001", json!(1), Some("2025-01-01T00:00:00Z")),
                    artifact("a0000000-0000-4000-8000-000000000006", Value::Null, Some("2030-01-01T00:00:00Z")),
                ]
            }
        });
        let (found, out) = normalized(&file.to_string());
        assert_eq!(found, Normalized::default());
        let (header, analyses) = read_back(&out);
        let a = |n: u8| format!("a0000000-0000-4000-8000-00000000000{n}");
        // Null version first; then version 1 by created_at (the missing one is the
        // analysis's, Jan 2), ties by id, the unreadable last; version 2 is the latest.
        assert_eq!(
            ids(&analyses[0]["artifact_versions"]),
            vec![a(6), a(1), a(2), a(3), a(4)]
        );
        assert_eq!(analyses[0]["artifact"]["id"], json!(a(5)));
        assert_eq!(
            analyses[0]["artifact_versions"][3]["created_at"],
            json!("2025-01-02T00:00:00Z")
        );
        assert_eq!(header.metadata.unwrap()["total_artifacts"], json!(6));
    }

    #[test]
    fn records_that_cannot_be_placed_are_problems() {
        let file = json!({
            "version": "1.0",
            "counts": {"analyses": 1, "artifacts": 0, "chunks": 1},
            "data": {
                "chunks": [
                    {"id": "c0000000-0000-4000-8000-000000000001", "analysis_id": A2, "snippet": "orphan"},
                    {"id": "c0000000-0000-4000-8000-000000000002", "analysis_id": A1, "snippet": "a", "content": "b"},
                    {"id": "nope", "analysis_id": A1, "snippet": "x"},
                    "text",
                    {"id": "c0000000-0000-4000-8000-000000000003", "analysis_id": A1, "snippet": "kept", "chunk_idx": 0}
                ],
                "analyses": [{"id": A1, "created_at": "2025-01-01T00:00:00", "chunks": 3}, {"id": A1, "url": 5}],
                "artifacts": {"not": "a list"}
            },
            "queries": []
        });
        let (found, out) = normalized(&file.to_string());
        let problems: Vec<String> = found.problems.iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            vec![
                // json! sorts keys: the lists come as analyses, artifacts, chunks.
                format!("data.analyses[0] (analysis {A1}): has a \"chunks\" key, which golden's format uses for an analysis's chunks and artifacts: rename it"),
                "data.artifacts: is an object, not a list".into(),
                "data.chunks[1] (chunk c0000000-0000-4000-8000-000000000002): has both \"snippet\" and \"content\", and golden reads \"snippet\" as \"content\": keep one".to_string(),
                "data.chunks[2] (chunk nope): \"id\" \"nope\" is not a UUID".into(),
                "data.chunks[3]: is a string, not a JSON object".into(),
                format!("data.chunks[0] (chunk c0000000-0000-4000-8000-000000000001): its analysis {A2} is not in the file: add the analysis to data.analyses or remove the chunk"),
                "queries: a SkillForge file's top-level key of this name would be taken for golden's own: rename it".into(),
            ]
        );
        let (_, analyses) = read_back(&out);
        assert_eq!(analyses.len(), 1);
        assert_eq!(
            analyses[0]["url"],
            json!(5),
            "a wrong value stays for the validator"
        );
        assert_eq!(
            ids(&analyses[0]["chunks"]),
            vec!["c0000000-0000-4000-8000-000000000003"]
        );
    }

    #[test]
    fn keeps_foreign_keys_and_refuses_broken_json() {
        let file = r#"{"version": "2.0", "exported_by": {"tool": "x"},
            "metadata": {"checksum": "sha1:abc", "note": "n"},
            "data": {"chunks": [], "analyses": [], "artifacts": [], "cursor": 7}}"#;
        let (found, out) = normalized(file);
        assert_eq!(found.problems, vec![]);
        assert_eq!(found.warnings.len(), 1, "{found:?}");
        assert_eq!(found.warnings[0].location, "metadata.checksum");
        let (header, analyses) = read_back(&out);
        assert!(analyses.is_empty());
        assert_eq!(header.extras["data"], json!({"cursor": 7}));
        assert_eq!(header.extras["exported_by"], json!({"tool": "x"}));
        let metadata = header.metadata.unwrap();
        assert_eq!(metadata["note"], json!("n"));
        assert!(metadata.get("checksum").is_none());
        assert_eq!(metadata["total_chunks"], json!(0));

        let mut out = Vec::new();
        let dialect = Dialect::SkillForgeFlat {
            version: "1.0".into(),
        };
        let truncated = r#"{"version": "1.0", "data": {"chunks": [{"id": "#;
        let result = normalize(&dialect, truncated.as_bytes(), "flat.json", &mut out);
        assert!(
            matches!(&result, Err(ReadError::Invalid(m)) if m.contains("flat.json is truncated")),
            "{result:?}"
        );
    }

    #[test]
    fn a_missing_list_is_a_problem() {
        let locations = |text: &str| {
            let dialect = Dialect::SkillForgeFlat {
                version: "1.0".into(),
            };
            let found = normalize(&dialect, text.as_bytes(), "flat.json", &mut Vec::new())
                .expect("the flat file normalizes");
            let locations: Vec<String> = found.problems.into_iter().map(|p| p.location).collect();
            locations
        };
        assert_eq!(
            locations(r#"{"version": "1.0", "data": {"analyses": []}}"#),
            vec!["data.artifacts", "data.chunks"]
        );
        assert_eq!(
            locations(r#"{"version": "1.0", "data": [1]}"#),
            vec!["data"]
        );
        assert_eq!(locations(r#"{"version": "1.0"}"#), vec!["data"]);
    }
}
