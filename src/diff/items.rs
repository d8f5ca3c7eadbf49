//! The records two backup files are compared by, each told by its id, and what "changed"
//! means for each kind: a field that differs (an extra key being a field of its own), a chunk
//! or artifact that now belongs elsewhere (moved), expected chunks a query gained or lost.
//! Values are compared as golden would write them back after a restore (jsonb's form of a
//! number), so `1e16` against `10000000000000000` in an extra is no change; `1.0` against `1`
//! is one, as jsonb keeps the two apart.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

use crate::backup_file::extras::as_jsonb_returns;
use crate::backup_file::record::{
    BackupAnalysisHead, BackupArtifact, BackupChunk, BackupQuery, Extra,
};

/// The kinds of record, in the order a report lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The file-level keys: `status_filter`, the `metadata` keys golden does not compute,
    /// the top-level keys beyond golden's.
    File,
    Analysis,
    Chunk,
    Artifact,
    Query,
}

impl Kind {
    pub fn noun(self, count: u64) -> &'static str {
        match (self, count == 1) {
            (Kind::File, true) => "file key",
            (Kind::File, false) => "file keys",
            (Kind::Analysis, true) => "analysis",
            (Kind::Analysis, false) => "analyses",
            (Kind::Chunk, true) => "chunk",
            (Kind::Chunk, false) => "chunks",
            (Kind::Artifact, true) => "artifact",
            (Kind::Artifact, false) => "artifacts",
            (Kind::Query, true) => "query",
            (Kind::Query, false) => "queries",
        }
    }
}

/// The characters of a text kept to name an added or removed record (one more than a line
/// shows, so that the line knows to end with `…`).
const PREVIEW_CHARS: usize = 72;

/// A record of the `analyses` list, as read from one side.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Item {
    /// An analysis's own fields, with the extras that came after its chunks.
    Analysis(BackupAnalysisHead),
    Chunk {
        analysis_id: Uuid,
        chunk: BackupChunk,
    },
    Artifact {
        analysis_id: Uuid,
        artifact: BackupArtifact,
        latest: bool,
    },
}

impl Item {
    /// What tells the record from every other: its kind and id (ids are unique per table).
    pub fn key(&self) -> (Kind, Uuid) {
        match self {
            Item::Analysis(head) => (Kind::Analysis, head.id),
            Item::Chunk { chunk, .. } => (Kind::Chunk, chunk.id),
            Item::Artifact { artifact, .. } => (Kind::Artifact, artifact.id),
        }
    }

    /// The analysis the record belongs to (itself for an analysis).
    pub fn analysis_id(&self) -> Uuid {
        match self {
            Item::Analysis(head) => head.id,
            Item::Chunk { analysis_id, .. } | Item::Artifact { analysis_id, .. } => *analysis_id,
        }
    }

    /// Roughly the bytes the record holds, to bound what waits for its match: its texts and
    /// its extras, whatever their size (a chunk may carry a large extra value).
    pub fn weight(&self) -> usize {
        let extra = |extra: &Extra| {
            extra
                .iter()
                .map(|(key, value)| 64 + key.len() + value_weight(value))
                .sum::<usize>()
        };
        let text = |text: &Option<String>| text.as_ref().map_or(0, String::len);
        200 + match self {
            Item::Analysis(head) => head.url.len() + text(&head.title) + extra(&head.extra),
            Item::Chunk { chunk, .. } => {
                chunk.content.len()
                    + text(&chunk.section_title)
                    + text(&chunk.section_path)
                    + extra(&chunk.extra)
            }
            Item::Artifact { artifact, .. } => artifact.summary.len() + extra(&artifact.extra),
        }
    }

    /// Its place: the analysis it belongs to and, for a chunk, its index there.
    pub fn place(&self) -> Place {
        Place {
            analysis_id: self.analysis_id(),
            chunk_index: match self {
                Item::Chunk { chunk, .. } => Some(chunk.chunk_index),
                _ => None,
            },
        }
    }

    /// The start of its text, to name it in a line of the report (kept short: what is added
    /// or removed may be most of a file).
    pub fn preview(&self) -> Option<String> {
        let text = match self {
            Item::Analysis(_) => return None,
            Item::Chunk { chunk, .. } => &chunk.content,
            Item::Artifact { artifact, .. } => &artifact.summary,
        };
        Some(text.chars().take(PREVIEW_CHARS + 1).collect())
    }

    /// The record as the file holds it, for `--json`.
    pub fn to_json(&self) -> Value {
        let json = match self {
            Item::Analysis(head) => serde_json::to_value(head),
            Item::Chunk { chunk, .. } => serde_json::to_value(chunk),
            Item::Artifact { artifact, .. } => serde_json::to_value(artifact),
        };
        // Plain data of strings, numbers and maps with string keys always serialises.
        json.unwrap_or(Value::Null)
    }
}

/// Roughly the bytes a JSON value holds in memory.
fn value_weight(value: &Value) -> usize {
    32 + match value {
        Value::String(text) => text.len(),
        Value::Array(items) => items.iter().map(value_weight).sum(),
        Value::Object(object) => object
            .iter()
            .map(|(key, value)| key.len() + value_weight(value))
            .sum(),
        _ => 0,
    }
}

/// Where a chunk or an artifact sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Place {
    pub analysis_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_index: Option<i32>,
}

/// One field that differs. A side without the field (an extra key added or removed) has no
/// value: its key is left out of the JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    pub field: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new: Option<Value>,
}

/// The fields of `old` and `new` (the same record) that differ, and its move if it moved.
pub fn compare(old: &Item, new: &Item) -> (Vec<FieldChange>, Option<(Place, Place)>) {
    let mut fields = Fields::default();
    match (old, new) {
        (Item::Analysis(a), Item::Analysis(b)) => {
            fields.text("url", &a.url, &b.url);
            fields.optional("title", &a.title, &b.title);
            fields.text("content_type", &a.content_type, &b.content_type);
            fields.text("status", &a.status, &b.status);
            fields.value("created_at", &a.created_at, &b.created_at);
            fields.value("updated_at", &a.updated_at, &b.updated_at);
            fields.extras(&a.extra, &b.extra);
        }
        (Item::Chunk { chunk: a, .. }, Item::Chunk { chunk: b, .. }) => {
            fields.text("content", &a.content, &b.content);
            fields.optional("section_title", &a.section_title, &b.section_title);
            fields.optional("section_path", &a.section_path, &b.section_path);
            fields.text("content_type", &a.content_type, &b.content_type);
            fields.extras(&a.extra, &b.extra);
        }
        (
            Item::Artifact {
                artifact: a,
                latest: a_latest,
                ..
            },
            Item::Artifact {
                artifact: b,
                latest: b_latest,
                ..
            },
        ) => {
            fields.text("summary", &a.summary, &b.summary);
            fields.value("created_at", &a.created_at, &b.created_at);
            fields.value("version", &a.version, &b.version);
            fields.value("latest", a_latest, b_latest);
            fields.extras(&a.extra, &b.extra);
        }
        // One id names records of one kind only (the key holds the kind).
        _ => {}
    }
    let (from, to) = (old.place(), new.place());
    let moved = (from != to && !matches!(old, Item::Analysis(_))).then_some((from, to));
    (fields.0, moved)
}

/// What differs between two versions of a golden query, and the expected chunks it gained
/// and lost (a set: their order means nothing to an evaluation).
pub fn compare_queries(old: &BackupQuery, new: &BackupQuery) -> QueryChanges {
    let mut fields = Fields::default();
    fields.text("query", &old.query, &new.query);
    fields.optional("category", &old.category, &new.category);
    fields.optional("difficulty", &old.difficulty, &new.difficulty);
    fields.value(
        "unresolved_expected_chunks",
        &old.unresolved_expected_chunks,
        &new.unresolved_expected_chunks,
    );
    fields.extras(&old.extra, &new.extra);
    QueryChanges {
        fields: fields.0,
        expected_added: new
            .expected_chunk_ids
            .iter()
            .filter(|id| !old.expected_chunk_ids.contains(id))
            .copied()
            .collect(),
        expected_dropped: old
            .expected_chunk_ids
            .iter()
            .filter(|id| !new.expected_chunk_ids.contains(id))
            .copied()
            .collect(),
    }
}

pub struct QueryChanges {
    pub fields: Vec<FieldChange>,
    pub expected_added: Vec<Uuid>,
    pub expected_dropped: Vec<Uuid>,
}

/// The differences of the file-level keys of two files, each key a field named `prefix` +
/// key.
pub fn compare_file_keys(prefix: &str, old: &Extra, new: &Extra) -> Vec<FieldChange> {
    let mut fields = Fields::default();
    fields.keys(prefix, old, new);
    fields.0
}

/// Gathers the fields that differ.
#[derive(Default)]
struct Fields(Vec<FieldChange>);

impl Fields {
    fn text(&mut self, field: &str, old: &str, new: &str) {
        if old != new {
            self.push(field, Some(Value::from(old)), Some(Value::from(new)));
        }
    }

    fn optional(&mut self, field: &str, old: &Option<String>, new: &Option<String>) {
        if old != new {
            self.push(
                field,
                Some(Value::from(old.clone())),
                Some(Value::from(new.clone())),
            );
        }
    }

    fn value<T: Serialize + PartialEq>(&mut self, field: &str, old: &T, new: &T) {
        if old != new {
            self.push(
                field,
                serde_json::to_value(old).ok(),
                serde_json::to_value(new).ok(),
            );
        }
    }

    fn extras(&mut self, old: &Extra, new: &Extra) {
        if old != new {
            self.keys("extra.", old, new);
        }
    }

    /// Each key of `old` and `new` that differs once stored, named `prefix` + key.
    fn keys(&mut self, prefix: &str, old: &Extra, new: &Extra) {
        let mut keys: Vec<&String> = old.keys().chain(new.keys()).collect();
        keys.sort();
        keys.dedup();
        for key in keys {
            let (a, b) = (old.get(key), new.get(key));
            let same = match (a, b) {
                (Some(a), Some(b)) => same_once_stored(a, b),
                (None, None) => true,
                _ => false,
            };
            if !same {
                self.push(&format!("{prefix}{key}"), a.cloned(), b.cloned());
            }
        }
    }

    fn push(&mut self, field: &str, old: Option<Value>, new: Option<Value>) {
        self.0.push(FieldChange {
            field: field.to_string(),
            old,
            new,
        });
    }
}

/// Equal, or equal once jsonb has stored both (`1e16` and `10000000000000000`).
fn same_once_stored(a: &Value, b: &Value) -> bool {
    a == b || {
        let (mut a, mut b) = (a.clone(), b.clone());
        as_jsonb_returns(&mut a);
        as_jsonb_returns(&mut b);
        a == b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(index: i32, content: &str, extra: Value) -> BackupChunk {
        BackupChunk {
            id: Uuid::nil(),
            content: content.into(),
            section_title: None,
            section_path: None,
            content_type: "text".into(),
            chunk_index: index,
            extra: extra.as_object().cloned().unwrap_or_default(),
        }
    }

    #[test]
    fn a_chunk_that_moved_and_changed_reports_both() {
        let a = Uuid::from_u128(1);
        let b = Uuid::from_u128(2);
        let old = Item::Chunk {
            analysis_id: a,
            chunk: chunk(0, "old text", serde_json::json!({"score": 1.0})),
        };
        let new = Item::Chunk {
            analysis_id: b,
            chunk: chunk(3, "new text", serde_json::json!({"score": 1.0, "tag": "x"})),
        };
        let (fields, moved) = compare(&old, &new);
        let names: Vec<&str> = fields.iter().map(|f| f.field.as_str()).collect();
        assert_eq!(names, ["content", "extra.tag"]);
        assert_eq!(fields[1].old, None);
        let (from, to) = moved.unwrap();
        assert_eq!((from.analysis_id, from.chunk_index), (a, Some(0)));
        assert_eq!((to.analysis_id, to.chunk_index), (b, Some(3)));
    }

    #[test]
    fn numbers_jsonb_makes_equal_are_no_change() {
        let old = serde_json::json!({"n": 1e16}).as_object().cloned().unwrap();
        let new = serde_json::json!({"n": 10_000_000_000_000_000_u64})
            .as_object()
            .cloned()
            .unwrap();
        assert!(compare_file_keys("", &old, &new).is_empty());
    }
}
