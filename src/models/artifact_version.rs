//! `artifact_versions`: the older versions of an analysis's artifact, for a dataset that keeps
//! several (SkillForge does). `artifacts` holds the latest one, as the programs reading it
//! expect one per analysis.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::Analysis;
use crate::backup_file::record::BackupArtifact;
use crate::schema::artifact_versions;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Associations)]
#[diesel(table_name = artifact_versions)]
#[diesel(belongs_to(Analysis))]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct ArtifactVersion {
    pub id: Uuid,
    pub analysis_id: Uuid,
    pub summary: String,
    pub created_at: DateTime<Utc>,
    pub version: Option<i32>,
    pub extra: serde_json::Value,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = artifact_versions)]
// Binary COPY (`copy_from`) wants plain column values, not "value or DEFAULT".
#[diesel(treat_none_as_default_value = false)]
pub struct NewArtifactVersion<'a> {
    pub id: Uuid,
    pub analysis_id: Uuid,
    pub summary: &'a str,
    pub created_at: DateTime<Utc>,
    pub version: Option<i32>,
    pub extra: serde_json::Value,
}

impl<'a> NewArtifactVersion<'a> {
    /// The row of an older version of analysis `analysis_id`'s artifact.
    pub fn from_backup(artifact: &'a BackupArtifact, analysis_id: Uuid) -> Self {
        NewArtifactVersion {
            id: artifact.id,
            analysis_id,
            summary: &artifact.summary,
            created_at: artifact.created_at,
            version: artifact.version,
            extra: serde_json::Value::Object(artifact.extra.clone()),
        }
    }
}

impl From<ArtifactVersion> for super::Artifact {
    /// An older version as an artifact row, for the passes that treat every version alike.
    fn from(version: ArtifactVersion) -> Self {
        super::Artifact {
            id: version.id,
            analysis_id: version.analysis_id,
            summary: version.summary,
            created_at: version.created_at,
            extra: version.extra,
            version: version.version,
        }
    }
}
