//! The records of a backup file, in the key order they are written (which is the order of
//! the original tool's files, so diffs against them stay small).
//!
//! Every record keeps the keys golden does not map to a column in `extra` (a user's field is
//! kept, never dropped): they are read from any dialect, stored in the rows' `extra` jsonb
//! column and written back after the known keys, sorted by key (serde_json's map order), so a
//! record without extras is written exactly as before.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::timestamp;
use crate::models::{Analysis, Artifact, ChunkText};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupAnalysis {
    pub id: Uuid,
    pub url: String,
    pub title: Option<String>,
    pub content_type: String,
    pub status: String,
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub updated_at: DateTime<Utc>,
    /// Written before the chunks, so that a streaming reader knows them with the head.
    #[serde(flatten)]
    pub extra: Extra,
    pub chunks: Vec<BackupChunk>,
    /// The latest artifact (see [`latest_last`]).
    pub artifact: Option<BackupArtifact>,
    /// The older versions of the artifact, oldest first, when the dataset keeps several.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub artifact_versions: Vec<BackupArtifact>,
}

/// The keys of a record that golden does not map to a column, as found.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// The keys of an analysis object that are not extras.
pub const ANALYSIS_KEYS: [&str; 10] = [
    "id",
    "url",
    "title",
    "content_type",
    "status",
    "created_at",
    "updated_at",
    "chunks",
    "artifact",
    "artifact_versions",
];

/// The keys of `fields` that are not in `known`: a record's extras.
pub fn extras_of(fields: &serde_json::Map<String, serde_json::Value>, known: &[&str]) -> Extra {
    fields
        .iter()
        .filter(|(key, _)| !known.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect()
}

/// Orders the artifacts of one analysis oldest first: by version (none first), creation time
/// and id. The last one is the analysis's `artifact`, the others its `artifact_versions`.
pub fn latest_last(artifacts: &mut [BackupArtifact]) {
    artifacts.sort_by_key(|artifact| (artifact.version, artifact.created_at, artifact.id));
}

/// An analysis's own fields, without its chunks and artifacts: what a streaming pass knows
/// when the analysis's chunks begin. Its fields are [`BackupAnalysis`]'s first ones, in the
/// same order, so its compact JSON is a prefix of the whole record's (the checksum relies on it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupAnalysisHead {
    pub id: Uuid,
    pub url: String,
    pub title: Option<String>,
    pub content_type: String,
    pub status: String,
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "timestamp")]
    pub updated_at: DateTime<Utc>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The keys of [`BackupAnalysisHead`], in order.
pub const HEAD_KEYS: [&str; 7] = [
    "id",
    "url",
    "title",
    "content_type",
    "status",
    "created_at",
    "updated_at",
];

impl BackupAnalysisHead {
    /// The head of an analysis from the keys of its JSON object: its fields and extras,
    /// without its chunks and artifacts.
    pub fn from_fields(
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, serde_json::Error> {
        let head: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .filter(|(key, _)| !matches!(key.as_str(), "chunks" | "artifact" | "artifact_versions"))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        serde_json::from_value(serde_json::Value::Object(head))
    }
}

impl From<Analysis> for BackupAnalysisHead {
    fn from(analysis: Analysis) -> Self {
        BackupAnalysisHead {
            id: analysis.id,
            url: analysis.url,
            title: analysis.title,
            content_type: analysis.content_type,
            status: analysis.status,
            created_at: analysis.created_at,
            updated_at: analysis.updated_at,
            extra: extra_of_row(analysis.extra, &ANALYSIS_KEYS),
        }
    }
}

impl BackupAnalysis {
    /// The record of `head`, `chunks`, `artifacts` (in any order) and the extras that came
    /// after the chunks in the file.
    pub fn from_parts(
        head: BackupAnalysisHead,
        chunks: Vec<BackupChunk>,
        mut artifacts: Vec<BackupArtifact>,
        late_extra: Extra,
    ) -> Self {
        latest_last(&mut artifacts);
        let artifact = artifacts.pop();
        let mut extra = head.extra;
        extra.extend(late_extra);
        BackupAnalysis {
            id: head.id,
            url: head.url,
            title: head.title,
            content_type: head.content_type,
            status: head.status,
            created_at: head.created_at,
            updated_at: head.updated_at,
            extra,
            chunks,
            artifact,
            artifact_versions: artifacts,
        }
    }

    /// Its head: its own fields and extras.
    pub fn head(&self) -> BackupAnalysisHead {
        BackupAnalysisHead {
            id: self.id,
            url: self.url.clone(),
            title: self.title.clone(),
            content_type: self.content_type.clone(),
            status: self.status.clone(),
            created_at: self.created_at,
            updated_at: self.updated_at,
            extra: self.extra.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupChunk {
    pub id: Uuid,
    pub content: String,
    pub section_title: Option<String>,
    pub section_path: Option<String>,
    pub content_type: String,
    pub chunk_index: i32,
    #[serde(flatten)]
    pub extra: Extra,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "ArtifactAsRead")]
pub struct BackupArtifact {
    pub id: Uuid,
    pub summary: String,
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
    /// Tells the versions of one analysis's artifact apart; none for a dataset that keeps one.
    /// A `version` that is not a 32-bit integer is not one: it stays in `extra`, as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An artifact as a file holds it, whatever its `version` is.
#[derive(Deserialize)]
struct ArtifactAsRead {
    id: Uuid,
    summary: String,
    #[serde(with = "timestamp")]
    created_at: DateTime<Utc>,
    /// `Some(Null)` for a `"version": null`, which is kept as written.
    #[serde(default, deserialize_with = "present")]
    version: Option<serde_json::Value>,
    #[serde(flatten)]
    extra: Extra,
}

/// A key that is present, whatever its value (null included).
fn present<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<serde_json::Value>, D::Error> {
    serde_json::Value::deserialize(deserializer).map(Some)
}

impl From<ArtifactAsRead> for BackupArtifact {
    fn from(read: ArtifactAsRead) -> Self {
        let mut extra = read.extra;
        let version = match read.version {
            None => None,
            Some(value) => match value.as_i64().and_then(|v| i32::try_from(v).ok()) {
                Some(version) => Some(version),
                None => {
                    extra.insert("version".into(), value);
                    None
                }
            },
        };
        BackupArtifact {
            id: read.id,
            summary: read.summary,
            created_at: read.created_at,
            version,
            extra,
        }
    }
}

/// A golden query: what a user asks and the chunks that answer it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupQuery {
    pub id: String,
    pub query: String,
    pub expected_chunk_ids: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub difficulty: Option<String>,
    /// References to expected chunks that matched no chunk when the file was converted from
    /// another dialect (kept as written; `evaluate` does not score such a query).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unresolved_expected_chunks: Vec<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl From<crate::models::Query> for BackupQuery {
    fn from(query: crate::models::Query) -> Self {
        BackupQuery {
            id: query.id,
            query: query.query,
            expected_chunk_ids: query.expected_chunk_ids.into_iter().flatten().collect(),
            category: query.category,
            difficulty: query.difficulty,
            unresolved_expected_chunks: query
                .unresolved_expected_chunks
                .into_iter()
                .flatten()
                .collect(),
            extra: extra_of_row(query.extra, &QUERY_KEYS),
        }
    }
}

impl From<ChunkText> for BackupChunk {
    fn from(chunk: ChunkText) -> Self {
        BackupChunk {
            id: chunk.id,
            content: chunk.content,
            section_title: chunk.section_title,
            section_path: chunk.section_path,
            content_type: chunk.content_type,
            chunk_index: chunk.chunk_index,
            extra: extra_of_row(chunk.extra, &CHUNK_KEYS),
        }
    }
}

impl From<Artifact> for BackupArtifact {
    fn from(artifact: Artifact) -> Self {
        BackupArtifact {
            id: artifact.id,
            summary: artifact.summary,
            created_at: artifact.created_at,
            version: artifact.version,
            // A `version` that is not an integer was kept with the extras.
            extra: extra_of_row(
                artifact.extra,
                if artifact.version.is_some() {
                    &ARTIFACT_KEYS
                } else {
                    &ARTIFACT_KEYS[..3]
                },
            ),
        }
    }
}

/// The keys of a chunk object that are not extras.
pub const CHUNK_KEYS: [&str; 6] = [
    "id",
    "content",
    "section_title",
    "section_path",
    "content_type",
    "chunk_index",
];
/// The keys of an artifact object that are not extras.
pub const ARTIFACT_KEYS: [&str; 4] = ["id", "summary", "created_at", "version"];
/// The keys of a query object that are not extras.
pub const QUERY_KEYS: [&str; 6] = [
    "id",
    "query",
    "expected_chunk_ids",
    "category",
    "difficulty",
    "unresolved_expected_chunks",
];

/// The extras of a row's `extra` column. The column holds an object (a CHECK says so); a key
/// another program put there that golden writes itself is left out, or the record would
/// carry it twice.
pub fn extra_of_row(extra: serde_json::Value, known: &[&str]) -> Extra {
    match extra {
        serde_json::Value::Object(mut map) => {
            map.retain(|key, _| !known.contains(&key.as_str()));
            map
        }
        _ => Extra::new(),
    }
}
