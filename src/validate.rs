//! The checks of a backup file that need no database: used by `verify` and, before it writes
//! anything, by `restore`. Every problem is collected with where it is (analysis id, chunk
//! id), so a user fixes a file in one pass instead of one error per run.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::backup_file::checksum::{self, ContentHasher};
use crate::backup_file::extras::{reads_back_from_jsonb, METADATA_KEYS, ORPHAN_ARTIFACTS_KEY};
use crate::backup_file::reader::{self, ChunkList, Header, Piece, ReadError};
use crate::backup_file::record::extras_of;
use crate::backup_file::record::{
    BackupAnalysisHead, BackupArtifact, BackupChunk, BackupQuery, ANALYSIS_KEYS, ARTIFACT_KEYS,
    CHUNK_KEYS, HEAD_KEYS, QUERY_KEYS,
};
use crate::backup_file::records::artifacts_of;
use crate::backup_file::source::BackupSource;
use crate::backup_file::timestamp;
use crate::spill::Spill;

/// The longest text a btree index of the schema takes, with room to spare: PostgreSQL's limit
/// is a third of a page (about 2700 bytes) for a whole index entry.
const MAX_INDEXED_TEXT_BYTES: usize = 2000;

/// The largest JSON text of one file-level key: PostgreSQL's jsonb stores at most 256 MB in
/// one value (its binary form is near the text's size), and would refuse it only at the
/// insert, after the rows were written.
const MAX_JSONB_BYTES: u64 = 255 * 1024 * 1024;

/// The size of `value`'s compact JSON, counted without building it.
fn json_size(value: &Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing plain JSON to a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// One thing wrong, and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    #[serde(rename = "where")]
    pub location: String,
    pub problem: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.location, self.problem)
    }
}

/// What the file holds, as counted while reading it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub analyses: u64,
    pub chunks: u64,
    pub artifacts: u64,
    pub queries: u64,
}

/// The outcome of validating a whole file.
#[derive(Debug, Default)]
pub struct Validation {
    /// Errors: the file must not be restored as it is.
    pub problems: Vec<Problem>,
    /// Worth a look but not wrong (duplicate URLs, for example).
    pub warnings: Vec<Problem>,
    pub counts: Counts,
    pub header: Header,
    /// The golden queries of the file that passed their checks (a few hundred at most).
    pub queries: Vec<BackupQuery>,
    /// The positions of the analyses with problems (the comparison with a database skips them).
    pub invalid_analyses: BTreeSet<usize>,
    /// Each character beyond ASCII in the file's text, and the first place it appears: what a
    /// database whose encoding is not UTF-8 must be able to hold.
    pub non_ascii: BTreeMap<char, String>,
    /// The SHA-256 of the bytes validated, when they were read from a [`BackupSource`].
    pub file_sha256: Option<[u8; 32]>,
    /// Artifacts whose analysis is not in the file (`orphan_artifacts`): kept, not restored.
    pub orphan_artifacts: usize,
}

impl Validation {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads and checks the file at `path`.
pub fn validate_file(path: &Path) -> Result<Validation, ReadError> {
    let source = BackupSource::open(path)?;
    validate_source(&source)
}

/// Reads and checks an open backup file, remembering the digest of the bytes it checked.
pub fn validate_source(source: &BackupSource) -> Result<Validation, ReadError> {
    validate_with(source, Validator::default())
}

/// [`validate_source`] without the checks of the totals and the checksum: for a merge result
/// resolved by hand (`golden merge --finish`), whose header is rewritten anyway.
pub fn validate_source_with_stale_header(source: &BackupSource) -> Result<Validation, ReadError> {
    validate_with(
        source,
        Validator {
            header_is_stale: true,
            ..Validator::default()
        },
    )
}

fn validate_with(source: &BackupSource, mut validator: Validator) -> Result<Validation, ReadError> {
    let mut pass = source.pass();
    let shown = source.path().display().to_string();
    let header = reader::read_pieces(&mut pass, &shown, |piece| {
        validator.piece(piece);
        Ok(())
    })
    .map_err(|e| with_conflict_markers_named(source, &shown, e))?;
    let mut validation = validator.finish(header);
    validation.file_sha256 = Some(pass.digest());
    if let Some(found) = source.dialect_findings() {
        // The dialect's own findings first: they name places in the original file.
        let problems = std::mem::take(&mut validation.problems);
        validation.problems = found.problems.iter().cloned().chain(problems).collect();
        let warnings = std::mem::take(&mut validation.warnings);
        validation.warnings = found.warnings.iter().cloned().chain(warnings).collect();
    }
    Ok(validation)
}

/// A file that does not parse because a merge left conflict markers in it says so, with the
/// first marker's line and what to do, rather than only where the JSON broke.
fn with_conflict_markers_named(source: &BackupSource, shown: &str, e: ReadError) -> ReadError {
    let ReadError::Invalid(message) = e else {
        return e;
    };
    match crate::merge::markers::first_marker(source.pass()) {
        Ok(Some((line, _))) => ReadError::Invalid(format!(
            "{shown} has unresolved merge conflicts (the first at line {line}): in each block \
             between `<<<<<<<` and `>>>>>>>` keep one side, then run `golden merge --finish {shown}` \
             ({message})"
        )),
        _ => ReadError::Invalid(message),
    }
}

/// Checks a file a piece at a time (memory per chunk, not per analysis) and the whole file at
/// the end.
#[derive(Default)]
pub struct Validator {
    /// The totals and the checksum are known to be stale (a merge result resolved by hand):
    /// not checked.
    header_is_stale: bool,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    counts: Counts,
    analysis_ids: HashSet<Uuid>,
    chunk_ids: HashSet<Uuid>,
    artifact_ids: HashSet<Uuid>,
    /// The first analysis of each URL, by a 128-bit hash of the URL: 40 bytes an analysis,
    /// where whole strings would cost several times that on large files.
    first_analysis_by_url: HashMap<u128, (usize, Option<Uuid>)>,
    /// The content checksum, while every record so far is valid and the file may carry one.
    hasher: Option<ContentHasher>,
    any_invalid: bool,
    /// Whether the checksum needs computing: the metadata (if read before the analyses)
    /// carries one.
    checksum_wanted: bool,
    current: Option<Current>,
    invalid_analyses: BTreeSet<usize>,
    non_ascii: BTreeMap<char, String>,
    orphan_artifacts: usize,
}

/// The analysis being read.
struct Current {
    index: usize,
    at: String,
    problems_before: usize,
    /// Which of its head's keys were checked (those before its chunks are checked when they begin).
    checked: [bool; HEAD_KEYS.len()],
    chunk_indexes: HashSet<i64>,
    hashing: Hashing,
}

enum Hashing {
    Off,
    /// The head is hashed; chunks follow.
    Streaming,
    /// The head is not known yet: the chunks' bytes wait for it.
    Holding(Spill),
}

impl Validator {
    /// Checks one piece of the `analyses` list.
    pub fn piece(&mut self, piece: Piece<'_>) {
        match piece {
            Piece::AnalysesStart { header } => {
                self.checksum_wanted = match &header.metadata {
                    None => true,
                    Some(metadata) => metadata.get("checksum").is_some_and(Value::is_string),
                };
                if self.checksum_wanted {
                    self.hasher = Some(ContentHasher::default());
                }
            }
            Piece::NotAnObject { analysis, .. } => {
                self.counts.analyses += 1;
                self.problem(
                    format!("analysis #{}", analysis + 1),
                    "is not a JSON object",
                );
                self.analysis_failed(analysis);
            }
            Piece::ChunksStart { analysis, fields } => {
                self.begin(analysis, fields);
                let present: Vec<usize> = (0..HEAD_KEYS.len())
                    .filter(|&i| fields.contains_key(HEAD_KEYS[i]))
                    .collect();
                for i in &present {
                    self.check_head_key(*i, fields);
                }
                let head_complete = present.len() == HEAD_KEYS.len();
                let Some(current) = self.current.as_mut() else {
                    return;
                };
                if self.hasher.is_none() || self.problems.len() != current.problems_before {
                    return;
                }
                if !head_complete {
                    current.hashing = Hashing::Holding(Spill::new());
                    return;
                }
                match BackupAnalysisHead::from_fields(fields) {
                    Ok(head) => {
                        if let Some(hasher) = self.hasher.as_mut() {
                            hasher.begin_analysis(&head);
                            current.hashing = Hashing::Streaming;
                        }
                    }
                    Err(e) => {
                        let at = current.at.clone();
                        self.problem(at, format!("cannot be read: {e}"));
                    }
                }
            }
            Piece::Chunk {
                position, value, ..
            } => self.check_chunk(position, value),
            Piece::AnalysisEnd {
                analysis,
                fields,
                chunks,
            } => self.end(analysis, fields, chunks),
        }
    }

    /// Starts checking the analysis at position `index`.
    fn begin(&mut self, index: usize, fields: &Map<String, Value>) {
        self.counts.analyses += 1;
        let at = match uuid_field(fields, "id") {
            Ok(id) => format!("analysis {id}"),
            Err(_) => format!("analysis #{}", index + 1),
        };
        self.current = Some(Current {
            index,
            at,
            problems_before: self.problems.len(),
            checked: [false; HEAD_KEYS.len()],
            chunk_indexes: HashSet::new(),
            hashing: Hashing::Off,
        });
    }

    /// Checks the head key `HEAD_KEYS[i]` of the current analysis.
    fn check_head_key(&mut self, i: usize, fields: &Map<String, Value>) {
        let Some(current) = self.current.as_mut() else {
            return;
        };
        current.checked[i] = true;
        let (at, index) = (current.at.clone(), current.index);
        match HEAD_KEYS[i] {
            "id" => match uuid_field(fields, "id") {
                Ok(id) if !self.analysis_ids.insert(id) => {
                    self.problem(&at, "duplicate analysis id")
                }
                Ok(_) => {}
                Err(problem) => self.problem(&at, problem),
            },
            "url" => {
                let valid_id = uuid_field(fields, "id").ok();
                self.check_url(&at, (index, valid_id), fields);
            }
            "title" => self.optional_text(&at, fields, "title"),
            "content_type" => {
                self.required_text(&at, fields, "content_type");
            }
            "status" => {
                if let Some(status) = self.required_text(&at, fields, "status") {
                    self.indexed_length(&at, "status", status);
                }
            }
            key => self.datetime(&at, fields, key),
        }
    }

    fn check_chunk(&mut self, position: usize, value: Value) {
        let Some(current) = self.current.as_ref() else {
            return;
        };
        let at = current.at.clone();
        self.counts.chunks += 1;
        let before = self.problems.len();
        let Value::Object(chunk) = &value else {
            self.problem(
                format!("{at}, chunk #{}", position + 1),
                "is not a JSON object",
            );
            return;
        };
        let id = uuid_field(chunk, "id");
        let chunk_at = match &id {
            Ok(id) => format!("{at}, chunk {id}"),
            Err(_) => format!("{at}, chunk #{}", position + 1),
        };
        match id {
            Ok(id) if !self.chunk_ids.insert(id) => self.problem(&chunk_at, "duplicate chunk id"),
            Ok(_) => {}
            Err(problem) => self.problem(&chunk_at, problem),
        }
        let content = self.required_text(&chunk_at, chunk, "content");
        self.check_content_hash(&chunk_at, chunk, content);
        self.check_extras(&chunk_at, chunk, &CHUNK_KEYS);
        self.optional_text(&chunk_at, chunk, "section_title");
        self.optional_text(&chunk_at, chunk, "section_path");
        self.required_text(&chunk_at, chunk, "content_type");
        let index = match chunk.get("chunk_index") {
            None => {
                self.problem(&chunk_at, "missing \"chunk_index\"");
                None
            }
            Some(value) => match value
                .as_i64()
                .filter(|&i| (0..=i64::from(i32::MAX)).contains(&i))
            {
                Some(index) => Some(index),
                None => {
                    self.problem(
                        &chunk_at,
                        format!("chunk_index {value} is not an integer from 0 to 2147483647"),
                    );
                    None
                }
            },
        };
        if let (Some(index), Some(current)) = (index, self.current.as_mut()) {
            if !current.chunk_indexes.insert(index) {
                self.problem(
                    &chunk_at,
                    format!("chunk_index {index} is used by another chunk of this analysis"),
                );
            }
        }
        if self.problems.len() != before || self.hasher.is_none() {
            return;
        }
        let Some(current) = self.current.as_mut() else {
            return;
        };
        if matches!(current.hashing, Hashing::Off) {
            return;
        }
        match serde_json::from_value::<BackupChunk>(value) {
            Ok(chunk) => match &mut current.hashing {
                Hashing::Streaming => {
                    if let Some(hasher) = self.hasher.as_mut() {
                        hasher.add_chunk(position, &chunk);
                    }
                }
                Hashing::Holding(held) => {
                    if let Err(e) = held.write(&checksum::chunk_json(position, &chunk)) {
                        self.problem(&chunk_at, format!("cannot be checked: {e}"));
                    }
                }
                Hashing::Off => {}
            },
            Err(e) => self.problem(&chunk_at, format!("cannot be read: {e}")),
        }
    }

    /// Finishes the analysis at `index`: the keys that came after its chunks (or are
    /// missing), its chunk list, its artifact, and its part of the checksum.
    fn end(&mut self, index: usize, fields: Map<String, Value>, chunks: ChunkList) {
        if self
            .current
            .as_ref()
            .is_none_or(|current| current.index != index)
        {
            self.begin(index, &fields);
        }
        for i in 0..HEAD_KEYS.len() {
            if self
                .current
                .as_ref()
                .is_some_and(|current| !current.checked[i])
            {
                self.check_head_key(i, &fields);
            }
        }
        let Some(current) = self.current.take() else {
            return;
        };
        // An id after the chunks (a writer that sorts keys): name the analysis by it in the
        // problems already found too.
        let at = match uuid_field(&fields, "id") {
            Ok(id) => format!("analysis {id}"),
            Err(_) => current.at.clone(),
        };
        if at != current.at {
            for problem in &mut self.problems[current.problems_before..] {
                if let Some(rest) = problem.location.strip_prefix(&current.at) {
                    problem.location = format!("{at}{rest}");
                }
            }
        }
        match chunks {
            ChunkList::Streamed { .. } => {}
            ChunkList::Missing => self.problem(&at, "missing \"chunks\" list"),
            ChunkList::NotAList(_) => self.problem(&at, "\"chunks\" is not a list"),
            ChunkList::Repeated { .. } => {
                self.problem(&at, "the \"chunks\" key appears more than once")
            }
        }
        self.check_artifacts(&at, &fields);
        self.check_extras(&at, &fields, &ANALYSIS_KEYS);
        if self.problems.len() != current.problems_before {
            self.analysis_failed(index);
            return;
        }
        let parsed = artifacts_of(&fields).map(|(versions, latest)| (latest, versions));
        let (artifact, versions) = match parsed {
            Ok(parsed) => parsed,
            Err(e) => {
                self.problem(&at, format!("cannot be read: {e}"));
                self.analysis_failed(index);
                return;
            }
        };
        let Some(hasher) = self.hasher.as_mut() else {
            return;
        };
        match current.hashing {
            Hashing::Streaming => hasher.end_analysis(artifact.as_ref(), &versions),
            Hashing::Holding(held) => match BackupAnalysisHead::from_fields(&fields) {
                Ok(head) => {
                    hasher.begin_analysis(&head);
                    let replayed = held
                        .into_reader()
                        .and_then(|mut held| hasher.add_chunk_json(&mut held));
                    hasher.end_analysis(artifact.as_ref(), &versions);
                    if let Err(e) = replayed {
                        self.problem(&at, format!("cannot be checked: {e}"));
                        self.analysis_failed(index);
                    }
                }
                Err(e) => {
                    self.problem(&at, format!("cannot be read: {e}"));
                    self.analysis_failed(index);
                }
            },
            // An analysis without chunks: its head and end alone.
            Hashing::Off => match BackupAnalysisHead::from_fields(&fields) {
                Ok(head) => {
                    hasher.begin_analysis(&head);
                    hasher.end_analysis(artifact.as_ref(), &versions);
                }
                Err(e) => {
                    self.problem(&at, format!("cannot be read: {e}"));
                    self.analysis_failed(index);
                }
            },
        }
    }

    /// The analysis at `index` has problems: the file's checksum no longer matters.
    fn analysis_failed(&mut self, index: usize) {
        self.any_invalid = true;
        self.hasher = None;
        self.invalid_analyses.insert(index);
    }

    /// Checks the metadata against what was read and returns the verdict.
    pub fn finish(mut self, header: Header) -> Validation {
        let queries = self.check_queries(&header);
        self.check_file_extras(&header);
        if !self.any_invalid {
            if let Some(hasher) = self.hasher.as_mut() {
                hasher.add_queries(&queries);
                let metadata: Map<String, Value> = header
                    .metadata
                    .as_ref()
                    .and_then(Value::as_object)
                    .map(|metadata| extras_of(metadata, &METADATA_KEYS))
                    .unwrap_or_default();
                hasher.add_file_extras(&header.extras, &metadata);
            }
        }
        self.check_metadata(&header);
        if let Some(created_at) = &header.created_at {
            if created_at
                .as_str()
                .is_none_or(|text| timestamp::parse(text).is_err())
            {
                self.problem(
                    "file",
                    format!("\"created_at\" {created_at} is not a datetime"),
                );
            }
        }
        Validation {
            problems: self.problems,
            warnings: self.warnings,
            counts: self.counts,
            header,
            queries,
            invalid_analyses: self.invalid_analyses,
            non_ascii: self.non_ascii,
            file_sha256: None,
            orphan_artifacts: self.orphan_artifacts,
        }
    }

    /// The optional `queries` list: unique ids, text, expected chunks that are in the file.
    fn check_queries(&mut self, header: &Header) -> Vec<BackupQuery> {
        let Some(list) = &header.queries else {
            return Vec::new();
        };
        let Value::Array(list) = list else {
            self.problem("queries", "is not a list");
            self.any_invalid = true;
            return Vec::new();
        };
        let mut ids = HashSet::new();
        let mut valid = Vec::new();
        for (position, value) in list.iter().enumerate() {
            self.counts.queries += 1;
            let before = self.problems.len();
            let Value::Object(query) = value else {
                self.problem(format!("query #{}", position + 1), "is not a JSON object");
                self.any_invalid = true;
                continue;
            };
            let at = match query.get("id") {
                Some(Value::String(id)) if !id.trim().is_empty() => format!("query {id}"),
                _ => format!("query #{}", position + 1),
            };
            match self.required_text(&at, query, "id") {
                Some(id) if !ids.insert(id.to_string()) => self.problem(&at, "duplicate query id"),
                Some(id) => self.indexed_length(&at, "id", id),
                None => {}
            }
            self.required_text(&at, query, "query");
            match query.get("expected_chunk_ids") {
                None => self.problem(
                    &at,
                    "missing \"expected_chunk_ids\" (a list, empty when nothing answers it)",
                ),
                Some(Value::Array(expected)) => {
                    for item in expected {
                        match item.as_str().map(Uuid::parse_str) {
                            Some(Ok(id)) if self.chunk_ids.contains(&id) => {}
                            Some(Ok(id)) => {
                                self.problem(&at, format!("expected chunk {id} is not in the file"))
                            }
                            _ => self.problem(&at, format!("expected chunk {item} is not a UUID")),
                        }
                    }
                }
                Some(other) => self.problem(
                    &at,
                    format!("\"expected_chunk_ids\" must be a list, not {}", kind(other)),
                ),
            }
            self.optional_text(&at, query, "category");
            self.optional_text(&at, query, "difficulty");
            self.check_extras(&at, query, &QUERY_KEYS);
            match query.get("unresolved_expected_chunks") {
                None | Some(Value::Null) => {}
                Some(Value::Array(references)) => {
                    for reference in references {
                        self.warning(
                            &at,
                            format!(
                                "expected chunk {} matches no chunk of the file: kept as written; \
                                 `golden evaluate` does not score this query",
                                display(reference)
                            ),
                        );
                    }
                }
                Some(other) => self.problem(
                    &at,
                    format!(
                        "\"unresolved_expected_chunks\" must be a list, not {}",
                        kind(other)
                    ),
                ),
            }
            if self.problems.len() != before {
                self.any_invalid = true;
                continue;
            }
            match serde_json::from_value::<BackupQuery>(value.clone()) {
                Ok(query) => valid.push(query),
                Err(e) => {
                    self.problem(&at, format!("cannot be read: {e}"));
                    self.any_invalid = true;
                }
            }
        }
        valid
    }

    fn check_metadata(&mut self, header: &Header) {
        if self.header_is_stale {
            return;
        }
        let Some(metadata) = &header.metadata else {
            self.problem(
                "metadata",
                "missing: a backup holds total_analyses, total_chunks and total_artifacts",
            );
            return;
        };
        let Value::Object(metadata) = metadata else {
            self.problem("metadata", "is not a JSON object");
            return;
        };
        for (key, actual, noun) in [
            ("total_analyses", self.counts.analyses, "analyses"),
            ("total_chunks", self.counts.chunks, "chunks"),
            ("total_artifacts", self.counts.artifacts, "artifacts"),
            ("total_queries", self.counts.queries, "queries"),
        ] {
            match metadata.get(key) {
                // Files from before queries existed have no total_queries and no queries.
                None if key == "total_queries" && actual == 0 => {}
                None => self.problem("metadata", format!("missing \"{key}\"")),
                Some(value) => match value.as_u64() {
                    Some(claimed) if claimed == actual => {}
                    Some(claimed) => self.problem(
                        "metadata",
                        format!("{key} says {claimed} but the file holds {actual} {noun}"),
                    ),
                    None => self.problem("metadata", format!("{key} is {value}, not a count")),
                },
            }
        }
        match metadata.get("checksum") {
            None | Some(Value::Null) => {}
            Some(Value::String(claimed)) if claimed.starts_with(checksum::PREFIX) => {
                if self.any_invalid {
                    return; // The content has problems already reported; its checksum is moot.
                }
                let Some(hasher) = self.hasher.take() else {
                    return;
                };
                let actual = hasher.finish();
                if *claimed != actual {
                    self.problem(
                        "metadata",
                        "checksum does not match the content: the file was changed after golden wrote it \
                         (if the edit is deliberate, remove metadata.checksum, or restore the file and back it up again)",
                    );
                }
            }
            Some(Value::String(claimed))
                if claimed.starts_with(crate::merge::markers::UNRESOLVED_CHECKSUM_PREFIX) =>
            {
                self.problem(
                    "metadata",
                    "checksum: this file is the result of a `golden merge` with conflicts: resolve \
                     every conflict block, then run `golden merge --finish FILE`, which checks it \
                     and writes its header again",
                )
            }
            Some(other) => self.warning(
                "metadata",
                format!("checksum {other} is of a kind golden does not know; not checked"),
            ),
        }
    }

    /// `place` is the analysis's position and id, remembered for a later duplicate URL.
    fn check_url(&mut self, at: &str, place: (usize, Option<Uuid>), object: &Map<String, Value>) {
        let Some(url) = self.required_text(at, object, "url") else {
            return;
        };
        if let Err(problem) = check_url(url) {
            self.problem(at, format!("url {url:?} {problem}"));
            return;
        }
        let digest = Sha256::digest(url.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(&digest[..16]);
        let key = u128::from_le_bytes(key);
        match self.first_analysis_by_url.get(&key) {
            Some((index, id)) => {
                let first = match id {
                    Some(id) => format!("analysis {id}"),
                    None => format!("analysis #{}", index + 1),
                };
                self.warning(at, format!("url {url:?} is also the url of {first}"));
            }
            None => {
                self.first_analysis_by_url.insert(key, place);
            }
        }
    }

    /// The analysis's `artifact` and its older `artifact_versions`.
    fn check_artifacts(&mut self, at: &str, object: &Map<String, Value>) {
        let mut versions_seen: HashMap<Option<i64>, String> = HashMap::new();
        match object.get("artifact") {
            None | Some(Value::Null) => {}
            Some(Value::Object(artifact)) => self.check_artifact(at, artifact, &mut versions_seen),
            Some(_) => self.problem(at, "\"artifact\" is neither an object nor null"),
        }
        match object.get("artifact_versions") {
            None | Some(Value::Null) => {}
            Some(Value::Array(versions)) => {
                for (position, version) in versions.iter().enumerate() {
                    match version {
                        Value::Object(artifact) => {
                            self.check_artifact(at, artifact, &mut versions_seen)
                        }
                        _ => self.problem(
                            format!("{at}, artifact_versions #{}", position + 1),
                            "is not a JSON object",
                        ),
                    }
                }
                if !versions.is_empty() && object.get("artifact").is_none_or(Value::is_null) {
                    self.problem(
                        at,
                        "has \"artifact_versions\" but no \"artifact\" (the latest version)",
                    );
                }
            }
            Some(other) => self.problem(
                at,
                format!("\"artifact_versions\" must be a list, not {}", kind(other)),
            ),
        }
    }

    /// One artifact of an analysis; `versions_seen` names the artifact of each version so far.
    fn check_artifact(
        &mut self,
        at: &str,
        artifact: &Map<String, Value>,
        versions_seen: &mut HashMap<Option<i64>, String>,
    ) {
        self.counts.artifacts += 1;
        let id = uuid_field(artifact, "id");
        let artifact_at = match &id {
            Ok(id) => format!("{at}, artifact {id}"),
            Err(_) => format!("{at}, artifact"),
        };
        match id {
            Ok(id) if !self.artifact_ids.insert(id) => {
                self.problem(&artifact_at, "duplicate artifact id")
            }
            Ok(_) => {}
            Err(problem) => self.problem(&artifact_at, problem),
        }
        self.required_text(&artifact_at, artifact, "summary");
        self.datetime(&artifact_at, artifact, "created_at");
        let version = match artifact.get("version") {
            None => None,
            Some(value) => match value.as_i64().filter(|v| i32::try_from(*v).is_ok()) {
                Some(version) => Some(version),
                None => {
                    self.warning(
                        &artifact_at,
                        format!(
                            "\"version\" {value} is not a 32-bit integer: kept as written, not \
                             used to order the analysis's artifacts"
                        ),
                    );
                    None
                }
            },
        };
        if let Some(other) = versions_seen.insert(version, artifact_at.clone()) {
            let which = version.map_or("no version".to_string(), |v| format!("version {v}"));
            self.warning(
                &artifact_at,
                format!("has {which}, as {other} has: both are kept, the newer is the latest"),
            );
        }
        self.check_extras(&artifact_at, artifact, &ARTIFACT_KEYS);
    }

    /// The keys of a record golden does not map: kept in a jsonb column, which refuses NUL in
    /// text like the other columns, and whose non-ASCII characters the database encoding must
    /// hold.
    fn check_extras(&mut self, at: &str, object: &Map<String, Value>, known: &[&str]) {
        for (key, value) in object
            .iter()
            .filter(|(key, _)| !known.contains(&key.as_str()))
        {
            self.check_text(at, key, key);
            self.check_value(at, key, value);
        }
    }

    fn check_value(&mut self, at: &str, key: &str, value: &Value) {
        match value {
            // The row could be restored, but never backed up again.
            Value::Number(number) if !reads_back_from_jsonb(number) => self.problem(
                at,
                format!(
                    "\"{key}\" holds the number {number}: PostgreSQL would store it, but as digits \
                     no JSON reader takes back (beyond the largest double); write it as a string"
                ),
            ),
            Value::String(text) => self.check_text(at, key, text),
            Value::Array(items) => {
                for item in items {
                    self.check_value(at, key, item);
                }
            }
            Value::Object(object) => {
                for (inner, item) in object {
                    self.check_text(at, key, inner);
                    self.check_value(at, key, item);
                }
            }
            _ => {}
        }
    }

    /// The file-level keys beyond golden's: artifacts whose analysis is not in the file are
    /// named (they cannot be restored, and are kept); the others must be storable.
    fn check_file_extras(&mut self, header: &Header) {
        for (key, value) in &header.extras {
            self.check_text("file", key, key);
            self.check_value("file", key, value);
            let size = json_size(value);
            if size > MAX_JSONB_BYTES {
                self.problem(
                    format!("file-level key {key:?}"),
                    format!(
                        "is {} MB of JSON; PostgreSQL's jsonb holds at most 255 MB in one value, \
                         so it cannot be kept: split it or move it out of the backup file",
                        size / (1024 * 1024)
                    ),
                );
            }
        }
        if let Some(metadata) = header.metadata.as_ref().and_then(Value::as_object) {
            self.check_extras("metadata", metadata, &METADATA_KEYS);
        }
        let Some(orphans) = header.extras.get(ORPHAN_ARTIFACTS_KEY) else {
            return;
        };
        let Value::Array(orphans) = orphans else {
            return self.problem(ORPHAN_ARTIFACTS_KEY, "is not a list");
        };
        for (position, orphan) in orphans.iter().enumerate() {
            let Value::Object(orphan) = orphan else {
                self.problem(
                    format!("{ORPHAN_ARTIFACTS_KEY} #{}", position + 1),
                    "is not a JSON object",
                );
                continue;
            };
            let id = orphan.get("id").map_or("(no id)".into(), display);
            let analysis = orphan.get("analysis_id").map_or("(none)".into(), display);
            self.orphan_artifacts += 1;
            self.warning(
                format!("artifact {id}"),
                format!(
                    "its analysis {analysis} is not in the file: it cannot be restored, and is kept \
                     (in the file-level keys, written back by backup)"
                ),
            );
        }
    }

    /// A chunk's `hash` (SkillForge's files carry the SHA-256 hex of the text) must be that of
    /// its content: a mismatch means the text was changed after the hash was taken.
    fn check_content_hash(&mut self, at: &str, chunk: &Map<String, Value>, content: Option<&str>) {
        let (Some(Value::String(hash)), Some(content)) = (chunk.get("hash"), content) else {
            return;
        };
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return self.warning(
                at,
                format!("\"hash\" {hash:?} is not a SHA-256 in hex: not checked"),
            );
        }
        let actual = checksum::hex(&Sha256::digest(content.as_bytes()));
        if !hash.eq_ignore_ascii_case(&actual) {
            self.problem(
                at,
                format!(
                    "\"hash\" {hash:?} is not the SHA-256 of its content ({actual}): the text was \
                     changed after the hash was taken; fix the text or the hash"
                ),
            );
        }
    }

    /// A string that must be present and not blank.
    fn required_text<'v>(
        &mut self,
        at: &str,
        object: &'v Map<String, Value>,
        key: &str,
    ) -> Option<&'v str> {
        match object.get(key) {
            None => self.problem(at, format!("missing \"{key}\"")),
            Some(Value::Null) => self.problem(at, format!("\"{key}\" is null")),
            Some(Value::String(text)) if text.trim().is_empty() => {
                self.problem(at, format!("\"{key}\" is empty"))
            }
            Some(Value::String(text)) => {
                self.check_text(at, key, text);
                return Some(text);
            }
            Some(other) => self.problem(
                at,
                format!("\"{key}\" must be a string, not {}", kind(other)),
            ),
        }
        None
    }

    /// A string that may be absent or null.
    fn optional_text(&mut self, at: &str, object: &Map<String, Value>, key: &str) {
        match object.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => self.check_text(at, key, text),
            Some(other) => self.problem(
                at,
                format!("\"{key}\" must be a string or null, not {}", kind(other)),
            ),
        }
    }

    /// What every text must pass: no NUL (PostgreSQL cannot store it); and each character
    /// beyond ASCII is remembered, with its first place, for the database encoding check.
    fn check_text(&mut self, at: &str, key: &str, text: &str) {
        if text.contains('\0') {
            self.problem(
                at,
                format!("\"{key}\" contains a NUL character, which PostgreSQL cannot store"),
            );
        }
        if !text.is_ascii() {
            for c in text.chars().filter(|c| !c.is_ascii()) {
                self.non_ascii
                    .entry(c)
                    .or_insert_with(|| format!("{at}, \"{key}\""));
            }
        }
    }

    fn datetime(&mut self, at: &str, object: &Map<String, Value>, key: &str) {
        match object.get(key) {
            None => self.problem(at, format!("missing \"{key}\"")),
            Some(Value::String(text)) => {
                match timestamp::parse(text).and_then(|parsed| timestamp::storable(&parsed)) {
                    Ok(()) => {}
                    Err(problem) => self.problem(at, format!("\"{key}\": {problem}")),
                }
            }
            Some(other) => self.problem(
                at,
                format!("\"{key}\" must be a datetime string, not {}", kind(other)),
            ),
        }
    }

    /// A text that a btree index of the schema holds (an analysis's status, a query's id):
    /// PostgreSQL refuses index entries of more than about 2700 bytes, and would refuse the
    /// row only at its insert, part way through a restore.
    fn indexed_length(&mut self, at: &str, key: &str, text: &str) {
        if text.len() > MAX_INDEXED_TEXT_BYTES {
            self.problem(
                at,
                format!(
                    "\"{key}\" is {} bytes long; the schema indexes it, and an index holds at most \
                     {MAX_INDEXED_TEXT_BYTES} bytes of it: shorten it",
                    text.len()
                ),
            );
        }
    }

    fn problem(&mut self, at: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem {
            location: at.into(),
            problem: problem.into(),
        });
    }

    fn warning(&mut self, at: impl Into<String>, problem: impl Into<String>) {
        self.warnings.push(Problem {
            location: at.into(),
            problem: problem.into(),
        });
    }
}

/// A JSON value in a message: a string without its quotes' escaping noise.
fn display(value: &Value) -> String {
    match value {
        Value::String(text) => format!("{text:?}"),
        other => other.to_string(),
    }
}

fn uuid_field(object: &Map<String, Value>, key: &str) -> Result<Uuid, String> {
    match object.get(key) {
        None => Err(format!("missing \"{key}\"")),
        Some(Value::String(text)) => match Uuid::parse_str(text) {
            Ok(id) if id.is_nil() => Err(format!("\"{key}\" is the nil UUID")),
            Ok(id) => Ok(id),
            Err(_) => Err(format!("\"{key}\" {text:?} is not a UUID")),
        },
        Some(other) => Err(format!(
            "\"{key}\" must be a UUID string, not {}",
            kind(other)
        )),
    }
}

/// What a JSON value is, for messages ("a string", "a list").
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The checks an analysis read from the database can fail (the schema enforces the others):
/// what `backup` warns about while it writes, without reading the file again; its chunks and
/// artifact have [`database_chunk_problems`] and [`database_artifact_problems`].
pub fn database_head_problems(head: &BackupAnalysisHead) -> Vec<Problem> {
    let at = format!("analysis {}", head.id);
    let mut problems = Vec::new();
    if let Err(why) = check_url(&head.url) {
        problems.push(problem_at(&at, format!("url {:?} {why}", head.url)));
    }
    for (key, value) in [
        ("content_type", &head.content_type),
        ("status", &head.status),
    ] {
        if value.trim().is_empty() {
            problems.push(problem_at(&at, format!("\"{key}\" is empty")));
        }
    }
    problems
}

/// See [`database_head_problems`].
pub fn database_chunk_problems(analysis_id: Uuid, chunk: &BackupChunk) -> Vec<Problem> {
    let at = format!("analysis {analysis_id}, chunk {}", chunk.id);
    [
        ("content", &chunk.content),
        ("content_type", &chunk.content_type),
    ]
    .into_iter()
    .filter(|(_, value)| value.trim().is_empty())
    .map(|(key, _)| problem_at(&at, format!("\"{key}\" is empty")))
    .collect()
}

/// See [`database_head_problems`].
pub fn database_artifact_problems(analysis_id: Uuid, artifact: &BackupArtifact) -> Vec<Problem> {
    if artifact.summary.trim().is_empty() {
        vec![problem_at(
            &format!("analysis {analysis_id}, artifact {}", artifact.id),
            "\"summary\" is empty".into(),
        )]
    } else {
        Vec::new()
    }
}

fn problem_at(at: &str, problem: String) -> Problem {
    Problem {
        location: at.to_string(),
        problem,
    }
}

/// An absolute http(s) URL with a real host: not a placeholder or loopback address that a
/// test or a half-finished import left behind.
pub fn check_url(url: &str) -> Result<(), String> {
    if url.trim() != url || url.chars().any(char::is_whitespace) {
        return Err("contains whitespace".into());
    }
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return Err("is not an absolute http:// or https:// URL".into());
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority.rsplit('@').next().unwrap_or_default();
    let host = if let Some(bracketed) = host_and_port.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host_and_port.split(':').next().unwrap_or_default()
    };
    let host = host.trim_end_matches('.');
    if host.is_empty() {
        return Err("has no host".into());
    }
    if is_placeholder_host(host) {
        return Err(format!(
            "is a placeholder (host {host}); use the document's real address"
        ));
    }
    Ok(())
}

fn is_placeholder_host(host: &str) -> bool {
    const RESERVED_NAMES: [&str; 4] = ["example.com", "example.org", "example.net", "localhost"];
    // Top-level names RFC 2606 reserves for tests and examples.
    const RESERVED_TLDS: [&str; 4] = [".localhost", ".example", ".invalid", ".test"];
    RESERVED_NAMES
        .iter()
        .any(|name| host == *name || host.ends_with(&format!(".{name}")))
        || RESERVED_TLDS.iter().any(|tld| host.ends_with(tld))
        || host == "example"
        || host.starts_with("127.")
        || host == "0.0.0.0"
        || host == "::1"
        || host.contains("placeholder")
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn urls() {
        for good in [
            "https://www.postgresql.org/docs/current/sql-copy.html",
            "http://arxiv.org/abs/1603.09320",
            "https://user@host.org:8443/a?b#c",
            "https://exampleco.com/",
        ] {
            assert_eq!(check_url(good), Ok(()), "{good}");
        }
        for bad in [
            "ftp://host.org/file",
            "www.postgresql.org/docs",
            "/docs/page",
            "https://",
            "https://example.com/doc",
            "https://docs.example.org/doc",
            "http://localhost:8000/x",
            "http://127.0.0.1/x",
            "http://[::1]:80/x",
            "https://placeholder-docs.io/x",
            "https://site.invalid/",
            "https://host.org/a b",
            " https://host.org/",
        ] {
            assert!(check_url(bad).is_err(), "{bad}");
        }
    }
}
