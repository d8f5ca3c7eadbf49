//! `restore --dry-run`: what a restore would do, computed without writing: rows to insert
//! and to skip per table, embeddings to compute and the requests they take.

use std::path::Path;

use color_eyre::Result;
use diesel::pg::PgConnection;
use serde::Serialize;

use super::existing::existing_ids;
use super::{load, Mode};
use crate::backup_file::reader::{read_backup, ReadError};
use crate::backup_file::record::BackupAnalysis;
use crate::db::QueryContext;
use crate::validate::{Counts, Validator};

/// Records looked up per query.
const LOOKUP_WINDOW: usize = 500;

#[derive(Debug, Default, Serialize)]
pub struct Plan {
    pub analyses_to_insert: u64,
    pub analyses_to_skip: u64,
    pub chunks_to_insert: u64,
    pub chunks_to_skip: u64,
    pub artifacts_to_insert: u64,
    pub artifacts_to_skip: u64,
    pub embeddings_needed: u64,
    /// With the configured batch size; `None` when no provider is configured.
    pub embedding_requests_needed: Option<u64>,
    /// The rows a replace would delete (after a safety backup).
    pub rows_to_delete: Option<Counts>,
}

pub fn plan(
    conn: &mut PgConnection,
    path: &Path,
    mode: Mode,
    batch_size: Option<usize>,
) -> Result<Plan> {
    let mut plan = Plan::default();
    if mode == Mode::Replace {
        plan.rows_to_delete = Some(load::table_counts(conn)?);
    }
    let mut validator = Validator::default();
    let mut window: Vec<BackupAnalysis> = Vec::new();
    read_backup(path, |index, value| {
        if let Some(record) = validator.check(index, value) {
            window.push(record);
        }
        if window.len() == LOOKUP_WINDOW {
            count(conn, &std::mem::take(&mut window), mode, &mut plan)?;
        }
        Ok(())
    })
    .map_err(ReadError::into_report)?;
    count(conn, &window, mode, &mut plan)?;
    plan.embedding_requests_needed =
        batch_size.map(|size| plan.embeddings_needed.div_ceil(size as u64));
    Ok(plan)
}

fn count(
    conn: &mut PgConnection,
    records: &[BackupAnalysis],
    mode: Mode,
    plan: &mut Plan,
) -> Result<()> {
    let existing = match mode {
        Mode::Append => {
            existing_ids(conn, records).step("looking up the rows that already exist")?
        }
        Mode::Replace => Default::default(),
    };
    for record in records {
        tally(
            existing.analyses.contains(&record.id),
            &mut plan.analyses_to_insert,
            &mut plan.analyses_to_skip,
        );
        for chunk in &record.chunks {
            let exists = existing.chunks.contains(&chunk.id);
            tally(exists, &mut plan.chunks_to_insert, &mut plan.chunks_to_skip);
            plan.embeddings_needed += u64::from(!exists);
        }
        if let Some(artifact) = &record.artifact {
            tally(
                existing.artifacts.contains(&artifact.id),
                &mut plan.artifacts_to_insert,
                &mut plan.artifacts_to_skip,
            );
        }
    }
    Ok(())
}

fn tally(exists: bool, insert: &mut u64, skip: &mut u64) {
    if exists {
        *skip += 1;
    } else {
        *insert += 1;
    }
}
