//! `artifacts`: the summary of an analysis (its latest version; older ones are in
//! `artifact_versions`).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use super::Analysis;
use crate::backup_file::record::BackupArtifact;
use crate::schema::artifacts;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable, Associations)]
#[diesel(table_name = artifacts)]
#[diesel(belongs_to(Analysis))]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Artifact {
    pub id: Uuid,
    pub analysis_id: Uuid,
    pub summary: String,
    pub created_at: DateTime<Utc>,
    /// The keys of the artifact's record that golden maps to no column (a JSON object).
    pub extra: serde_json::Value,
    pub version: Option<i32>,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = artifacts)]
// Binary COPY (`copy_from`) wants plain column values, not "value or DEFAULT".
#[diesel(treat_none_as_default_value = false)]
pub struct NewArtifact<'a> {
    pub id: Uuid,
    pub analysis_id: Uuid,
    pub summary: &'a str,
    pub created_at: DateTime<Utc>,
    pub extra: serde_json::Value,
    pub version: Option<i32>,
}

impl<'a> NewArtifact<'a> {
    /// The row of a backup file's artifact of analysis `analysis_id`.
    pub fn from_backup(artifact: &'a BackupArtifact, analysis_id: Uuid) -> Self {
        NewArtifact {
            id: artifact.id,
            analysis_id,
            summary: &artifact.summary,
            created_at: artifact.created_at,
            extra: serde_json::Value::Object(artifact.extra.clone()),
            version: artifact.version,
        }
    }
}
