//! The records of a backup file, in the key order they are written (which is the order of
//! the original tool's files, so diffs against them stay small).

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
    pub chunks: Vec<BackupChunk>,
    pub artifact: Option<BackupArtifact>,
}

/// An analysis's own fields, without its chunks and artifact: what a streaming pass knows
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
    /// The head of an analysis from the keys of its JSON object (others are ignored).
    pub fn from_fields(
        fields: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Self, serde_json::Error> {
        let mut head = serde_json::Map::new();
        for key in HEAD_KEYS {
            if let Some(value) = fields.get(key) {
                head.insert(key.to_string(), value.clone());
            }
        }
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
        }
    }
}

impl BackupAnalysis {
    /// The record of `head`, `chunks` and `artifact`.
    pub fn from_parts(
        head: BackupAnalysisHead,
        chunks: Vec<BackupChunk>,
        artifact: Option<BackupArtifact>,
    ) -> Self {
        BackupAnalysis {
            id: head.id,
            url: head.url,
            title: head.title,
            content_type: head.content_type,
            status: head.status,
            created_at: head.created_at,
            updated_at: head.updated_at,
            chunks,
            artifact,
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
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackupArtifact {
    pub id: Uuid,
    pub summary: String,
    #[serde(with = "timestamp")]
    pub created_at: DateTime<Utc>,
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
}

impl From<crate::models::Query> for BackupQuery {
    fn from(query: crate::models::Query) -> Self {
        BackupQuery {
            id: query.id,
            query: query.query,
            expected_chunk_ids: query.expected_chunk_ids.into_iter().flatten().collect(),
            category: query.category,
            difficulty: query.difficulty,
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
        }
    }
}

impl From<Artifact> for BackupArtifact {
    fn from(artifact: Artifact) -> Self {
        BackupArtifact {
            id: artifact.id,
            summary: artifact.summary,
            created_at: artifact.created_at,
        }
    }
}
