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

impl BackupAnalysis {
    /// Assembles a record from its rows; `chunks` must already be in `chunk_index` order.
    pub fn from_rows(
        analysis: Analysis,
        chunks: Vec<ChunkText>,
        artifact: Option<Artifact>,
    ) -> Self {
        BackupAnalysis {
            id: analysis.id,
            url: analysis.url,
            title: analysis.title,
            content_type: analysis.content_type,
            status: analysis.status,
            created_at: analysis.created_at,
            updated_at: analysis.updated_at,
            chunks: chunks.into_iter().map(BackupChunk::from).collect(),
            artifact: artifact.map(BackupArtifact::from),
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
