//! `restore --dry-run`: what a restore would do, computed without writing: rows to insert
//! and to skip per table (golden queries too), embeddings to compute and the requests they
//! take.

use std::path::Path;

use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use serde::Serialize;

use super::existing::existing_ids;
use super::{load, Mode};
use crate::backup_file::reader::{read_backup, ReadError};
use crate::backup_file::record::{BackupAnalysis, BackupQuery};
use crate::db::QueryContext;
use crate::schema::queries;
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
    pub queries_to_insert: u64,
    /// Golden queries whose id the database already has (append keeps those).
    pub queries_to_skip: u64,
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
    let header = read_backup(path, |index, value| {
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
    count_queries(conn, &validator.finish(header).queries, mode, &mut plan)?;
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

/// Append inserts the queries whose id is new; replace inserts every one.
fn count_queries(
    conn: &mut PgConnection,
    queries: &[BackupQuery],
    mode: Mode,
    plan: &mut Plan,
) -> Result<()> {
    let ids: Vec<&str> = queries.iter().map(|query| query.id.as_str()).collect();
    let existing: i64 = match mode {
        Mode::Append => queries::table
            .filter(queries::id.eq_any(&ids))
            .count()
            .get_result(conn)
            .step("looking up the queries that already exist")?,
        Mode::Replace => 0,
    };
    plan.queries_to_skip = existing as u64;
    plan.queries_to_insert = (queries.len() as u64).saturating_sub(existing as u64);
    Ok(())
}

fn tally(exists: bool, insert: &mut u64, skip: &mut u64) {
    if exists {
        *skip += 1;
    } else {
        *insert += 1;
    }
}
