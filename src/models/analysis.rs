//! `analyses`: one row per source document of the golden dataset.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::backup_file::record::{BackupAnalysis, BackupAnalysisHead};
use crate::schema::analyses;

#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Identifiable)]
#[diesel(table_name = analyses)]
#[diesel(check_for_backend(diesel::pg::Pg))]
pub struct Analysis {
    pub id: Uuid,
    pub url: String,
    pub title: Option<String>,
    pub content_type: String,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The keys of the analysis's record that golden maps to no column (a JSON object).
    pub extra: serde_json::Value,
}

#[derive(Debug, Clone, Insertable)]
#[diesel(table_name = analyses)]
// Binary COPY (`copy_from`) needs every column given, NULL included.
#[diesel(treat_none_as_default_value = false)]
pub struct NewAnalysis<'a> {
    pub id: Uuid,
    pub url: &'a str,
    pub title: Option<&'a str>,
    pub content_type: &'a str,
    pub status: &'a str,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub extra: serde_json::Value,
}

impl<'a> From<&'a BackupAnalysis> for NewAnalysis<'a> {
    fn from(record: &'a BackupAnalysis) -> Self {
        NewAnalysis {
            id: record.id,
            url: &record.url,
            title: record.title.as_deref(),
            content_type: &record.content_type,
            status: &record.status,
            created_at: record.created_at,
            updated_at: record.updated_at,
            extra: serde_json::Value::Object(record.extra.clone()),
        }
    }
}

impl<'a> From<&'a BackupAnalysisHead> for NewAnalysis<'a> {
    /// The row of an analysis from its head; extras that follow its chunks in the file are
    /// set when the analysis ends.
    fn from(head: &'a BackupAnalysisHead) -> Self {
        NewAnalysis {
            id: head.id,
            url: &head.url,
            title: head.title.as_deref(),
            content_type: &head.content_type,
            status: &head.status,
            created_at: head.created_at,
            updated_at: head.updated_at,
            extra: serde_json::Value::Object(head.extra.clone()),
        }
    }
}
