//! The golden queries as they are judged: each query's text, its expected chunks and the
//! analyses those belong to (the document-level answer), and why a query is left out of the
//! figures. Read once, in byte order of the ids, so every report and saved run lists the
//! queries in the same order on every machine.

use std::collections::{HashMap, HashSet};

use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::QueryContext;
use crate::models::Query;
use crate::schema::{chunks, queries};

/// One golden query and its answer.
#[derive(Debug, Clone)]
pub struct Judged {
    pub id: String,
    pub query: String,
    pub category: Option<String>,
    pub difficulty: Option<String>,
    pub expected: Vec<Uuid>,
    /// The analyses of the expected chunks, in the order of their first expected chunk.
    pub expected_analyses: Vec<Uuid>,
    /// Expected chunks named by a reference that matched no chunk when the file was read.
    pub unresolved: Vec<String>,
    /// Why the query is not scored, if it is not.
    pub not_scored: Option<String>,
}

/// Every golden query, and every chunk some query expects.
#[derive(Debug, Default)]
pub struct Judgments {
    pub queries: Vec<Judged>,
    /// The chunks expected by any query: a retrieved chunk outside it has no label at all.
    pub expected_anywhere: HashSet<Uuid>,
}

impl Judgments {
    pub fn read(conn: &mut PgConnection) -> Result<Judgments> {
        let mut golden: Vec<Query> = queries::table
            .select(Query::as_select())
            .load(conn)
            .step("reading the golden queries")?;
        golden.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
        let expected_anywhere: HashSet<Uuid> = golden
            .iter()
            .flat_map(|query| query.expected_chunk_ids.iter().flatten().copied())
            .collect();
        let wanted: Vec<Uuid> = expected_anywhere.iter().copied().collect();
        let mut analysis_of: HashMap<Uuid, Uuid> = HashMap::new();
        for part in wanted.chunks(5_000) {
            let rows: Vec<(Uuid, Uuid)> = chunks::table
                .filter(chunks::id.eq_any(part))
                .select((chunks::id, chunks::analysis_id))
                .load(conn)
                .step("reading the analyses of the expected chunks")?;
            analysis_of.extend(rows);
        }
        let queries = golden
            .into_iter()
            .map(|query| {
                // A chunk listed twice is one answer: counted twice it would halve recall.
                let mut listed = HashSet::new();
                let expected: Vec<Uuid> = query
                    .expected_chunk_ids
                    .into_iter()
                    .flatten()
                    .filter(|chunk| listed.insert(*chunk))
                    .collect();
                let unresolved: Vec<String> = query
                    .unresolved_expected_chunks
                    .into_iter()
                    .flatten()
                    .collect();
                let mut seen = HashSet::new();
                let expected_analyses = expected
                    .iter()
                    .filter_map(|chunk| analysis_of.get(chunk).copied())
                    .filter(|analysis| seen.insert(*analysis))
                    .collect();
                // Scoring against the expected chunks that were found would overstate recall:
                // the answer is incomplete, so the query is listed and left out of the figures.
                let not_scored = if !unresolved.is_empty() {
                    Some(format!(
                        "expected chunks {} match no chunk of the dataset (unresolved when its file was read)",
                        unresolved
                            .iter()
                            .map(|reference| format!("{reference:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                } else if expected.is_empty() {
                    Some("no expected answer".to_string())
                } else {
                    None
                };
                Judged {
                    id: query.id,
                    query: query.query,
                    category: query.category,
                    difficulty: query.difficulty,
                    expected,
                    expected_analyses,
                    unresolved,
                    not_scored,
                }
            })
            .collect();
        Ok(Judgments {
            queries,
            expected_anywhere,
        })
    }

    /// The scored queries: those with a complete expected answer.
    pub fn scored(&self) -> impl Iterator<Item = &Judged> {
        self.queries
            .iter()
            .filter(|query| query.not_scored.is_none())
    }
}
