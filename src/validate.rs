//! The checks of a backup file that need no database: used by `verify` and, before it writes
//! anything, by `restore`. Every problem is collected with where it is (analysis id, chunk
//! id), so a user fixes a file in one pass instead of one error per run.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::backup_file::checksum::{self, ContentHasher};
use crate::backup_file::reader::{self, Header, ReadError};
use crate::backup_file::record::{BackupAnalysis, BackupQuery};
use crate::backup_file::timestamp;

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
}

impl Validation {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads and checks the file at `path`.
pub fn validate_file(path: &Path) -> Result<Validation, ReadError> {
    let mut validator = Validator::default();
    let header = reader::read_backup(path, |index, value| {
        validator.check(index, value);
        Ok(())
    })?;
    Ok(validator.finish(header))
}

/// Checks analyses one at a time and the whole file at the end.
#[derive(Default)]
pub struct Validator {
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
    counts: Counts,
    analysis_ids: HashSet<Uuid>,
    chunk_ids: HashSet<Uuid>,
    artifact_ids: HashSet<Uuid>,
    /// The first analysis of each URL, by a 128-bit hash of the URL: 40 bytes an analysis,
    /// where whole strings would cost several times that on large files.
    first_analysis_by_url: HashMap<u128, (usize, Option<Uuid>)>,
    /// The content checksum, while every record so far is valid.
    hasher: Option<ContentHasher>,
    any_invalid: bool,
}

impl Validator {
    /// Checks one element of `analyses`; returns it as a record when it has no problem.
    pub fn check(&mut self, index: usize, value: Value) -> Option<BackupAnalysis> {
        let problems_before = self.problems.len();
        self.counts.analyses += 1;
        let Value::Object(object) = &value else {
            self.problem(format!("analysis #{}", index + 1), "is not a JSON object");
            self.any_invalid = true;
            return None;
        };
        let id = uuid_field(object, "id");
        let at = match &id {
            Ok(id) => format!("analysis {id}"),
            Err(_) => format!("analysis #{}", index + 1),
        };
        let valid_id = id.as_ref().ok().copied();
        match id {
            Ok(id) if !self.analysis_ids.insert(id) => self.problem(&at, "duplicate analysis id"),
            Ok(_) => {}
            Err(problem) => self.problem(&at, problem),
        }
        self.check_url(&at, (index, valid_id), object);
        self.optional_text(&at, object, "title");
        self.required_text(&at, object, "content_type");
        self.required_text(&at, object, "status");
        self.datetime(&at, object, "created_at");
        self.datetime(&at, object, "updated_at");
        self.check_chunks(&at, object);
        self.check_artifact(&at, object);

        if self.problems.len() != problems_before {
            self.any_invalid = true;
            return None;
        }
        match serde_json::from_value::<BackupAnalysis>(value) {
            Ok(record) => {
                if !self.any_invalid {
                    self.hasher
                        .get_or_insert_with(ContentHasher::default)
                        .add(&record);
                }
                Some(record)
            }
            Err(e) => {
                self.problem(&at, format!("cannot be read: {e}"));
                self.any_invalid = true;
                None
            }
        }
    }

    /// Checks the metadata against what was read and returns the verdict.
    pub fn finish(mut self, header: Header) -> Validation {
        let queries = self.check_queries(&header);
        if !self.any_invalid {
            if let Some(hasher) = self.hasher.as_mut() {
                hasher.add_queries(&queries);
            } else {
                let mut hasher = ContentHasher::default();
                hasher.add_queries(&queries);
                self.hasher = Some(hasher);
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
                _ => {}
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
                let actual = self.hasher.take().unwrap_or_default().finish();
                if *claimed != actual {
                    self.problem(
                        "metadata",
                        "checksum does not match the content: the file was changed after golden wrote it \
                         (if the edit is deliberate, remove metadata.checksum, or restore the file and back it up again)",
                    );
                }
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

    fn check_chunks(&mut self, at: &str, object: &Map<String, Value>) {
        let chunks = match object.get("chunks") {
            Some(Value::Array(chunks)) => chunks,
            None => return self.problem(at, "missing \"chunks\" list"),
            Some(_) => return self.problem(at, "\"chunks\" is not a list"),
        };
        self.counts.chunks += chunks.len() as u64;
        let mut indexes = HashSet::new();
        for (position, chunk) in chunks.iter().enumerate() {
            let Value::Object(chunk) = chunk else {
                self.problem(
                    format!("{at}, chunk #{}", position + 1),
                    "is not a JSON object",
                );
                continue;
            };
            let id = uuid_field(chunk, "id");
            let chunk_at = match &id {
                Ok(id) => format!("{at}, chunk {id}"),
                Err(_) => format!("{at}, chunk #{}", position + 1),
            };
            match id {
                Ok(id) if !self.chunk_ids.insert(id) => {
                    self.problem(&chunk_at, "duplicate chunk id")
                }
                Ok(_) => {}
                Err(problem) => self.problem(&chunk_at, problem),
            }
            self.required_text(&chunk_at, chunk, "content");
            self.optional_text(&chunk_at, chunk, "section_title");
            self.optional_text(&chunk_at, chunk, "section_path");
            self.required_text(&chunk_at, chunk, "content_type");
            match chunk.get("chunk_index") {
                None => self.problem(&chunk_at, "missing \"chunk_index\""),
                Some(value) => match value
                    .as_i64()
                    .filter(|&i| (0..=i64::from(i32::MAX)).contains(&i))
                {
                    Some(index) if !indexes.insert(index) => self.problem(
                        &chunk_at,
                        format!("chunk_index {index} is used by another chunk of this analysis"),
                    ),
                    Some(_) => {}
                    None => self.problem(
                        &chunk_at,
                        format!("chunk_index {value} is not an integer from 0 to 2147483647"),
                    ),
                },
            }
        }
    }

    fn check_artifact(&mut self, at: &str, object: &Map<String, Value>) {
        let artifact = match object.get("artifact") {
            None | Some(Value::Null) => return,
            Some(Value::Object(artifact)) => artifact,
            Some(_) => return self.problem(at, "\"artifact\" is neither an object nor null"),
        };
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
                self.no_nul(at, key, text);
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
            Some(Value::String(text)) => self.no_nul(at, key, text),
            Some(other) => self.problem(
                at,
                format!("\"{key}\" must be a string or null, not {}", kind(other)),
            ),
        }
    }

    fn no_nul(&mut self, at: &str, key: &str, text: &str) {
        if text.contains('\0') {
            self.problem(
                at,
                format!("\"{key}\" contains a NUL character, which PostgreSQL cannot store"),
            );
        }
    }

    fn datetime(&mut self, at: &str, object: &Map<String, Value>, key: &str) {
        match object.get(key) {
            None => self.problem(at, format!("missing \"{key}\"")),
            Some(Value::String(text)) => {
                if let Err(problem) = timestamp::parse(text) {
                    self.problem(at, format!("\"{key}\": {problem}"));
                }
            }
            Some(other) => self.problem(
                at,
                format!("\"{key}\" must be a datetime string, not {}", kind(other)),
            ),
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

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// The checks a record read from the database can fail (the schema enforces the others):
/// what `backup` warns about while it writes, without reading the file again.
pub fn database_record_problems(record: &BackupAnalysis) -> Vec<Problem> {
    let mut problems = Vec::new();
    let at = format!("analysis {}", record.id);
    let mut problem = |at: &str, text: String| {
        problems.push(Problem {
            location: at.to_string(),
            problem: text,
        })
    };
    if let Err(why) = check_url(&record.url) {
        problem(&at, format!("url {:?} {why}", record.url));
    }
    for (key, value) in [
        ("content_type", &record.content_type),
        ("status", &record.status),
    ] {
        if value.trim().is_empty() {
            problem(&at, format!("\"{key}\" is empty"));
        }
    }
    for chunk in &record.chunks {
        for (key, value) in [
            ("content", &chunk.content),
            ("content_type", &chunk.content_type),
        ] {
            if value.trim().is_empty() {
                problem(
                    &format!("{at}, chunk {}", chunk.id),
                    format!("\"{key}\" is empty"),
                );
            }
        }
    }
    if let Some(artifact) = &record.artifact {
        if artifact.summary.trim().is_empty() {
            problem(
                &format!("{at}, artifact {}", artifact.id),
                "\"summary\" is empty".into(),
            );
        }
    }
    problems
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
