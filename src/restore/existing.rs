//! Which rows of a set of backup records the database already has: append mode skips them
//! (neither inserted again nor embedded again), and `--dry-run` counts them. Three queries
//! per set, whatever its size.

use std::collections::HashSet;

use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

use crate::backup_file::record::BackupAnalysis;
use crate::schema::{analyses, artifacts, chunks};

#[derive(Debug, Default)]
pub struct ExistingIds {
    pub analyses: HashSet<Uuid>,
    pub chunks: HashSet<Uuid>,
    pub artifacts: HashSet<Uuid>,
}

pub fn existing_ids(
    conn: &mut PgConnection,
    records: &[BackupAnalysis],
) -> QueryResult<ExistingIds> {
    let analysis_ids: Vec<Uuid> = records.iter().map(|record| record.id).collect();
    let chunk_ids: Vec<Uuid> = records
        .iter()
        .flat_map(|r| r.chunks.iter().map(|c| c.id))
        .collect();
    let artifact_ids: Vec<Uuid> = records
        .iter()
        .filter_map(|r| r.artifact.as_ref().map(|a| a.id))
        .collect();
    Ok(ExistingIds {
        analyses: analyses::table
            .filter(analyses::id.eq_any(&analysis_ids))
            .select(analyses::id)
            .load::<Uuid>(conn)?
            .into_iter()
            .collect(),
        chunks: chunks::table
            .filter(chunks::id.eq_any(&chunk_ids))
            .select(chunks::id)
            .load::<Uuid>(conn)?
            .into_iter()
            .collect(),
        artifacts: artifacts::table
            .filter(artifacts::id.eq_any(&artifact_ids))
            .select(artifacts::id)
            .load::<Uuid>(conn)?
            .into_iter()
            .collect(),
    })
}
