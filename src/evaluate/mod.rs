//! Measuring retrieval against the golden queries: each query is embedded as a query, the
//! top k chunks are fetched by cosine distance (through the HNSW index, or by an exact scan),
//! and the metrics of `metrics` are computed per query and averaged overall, per category
//! and per difficulty.

pub mod metrics;

use std::collections::BTreeMap;

use color_eyre::Result;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use pgvector::{Vector, VectorExpressionMethods};
use serde::Serialize;
use uuid::Uuid;

use self::metrics::{score, summarize, Scores, Summary};
use crate::db::{self, QueryContext};
use crate::embed::{EmbeddingClient, InputKind};
use crate::models::Query;
use crate::schema::{analyses, chunks, queries};

/// A chunk as shown next to a query's results.
#[derive(Debug, Clone, Serialize)]
pub struct Retrieved {
    pub id: Uuid,
    pub section_title: Option<String>,
    pub analysis_title: Option<String>,
    pub distance: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub id: String,
    pub query: String,
    pub category: Option<String>,
    pub difficulty: Option<String>,
    pub expected: Vec<Uuid>,
    pub retrieved: Vec<Retrieved>,
    /// `None` for a query that is not scored (see `not_scored`).
    pub scores: Option<Scores>,
    /// Why the query is not scored: no expected answer, or expected chunks that matched no
    /// chunk when its file was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_scored: Option<String>,
    /// Expected chunks named by a reference that matched no chunk when the file was read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_expected_chunks: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Evaluation {
    pub k: usize,
    pub exact: bool,
    pub results: Vec<QueryResult>,
    pub overall: Summary,
    pub by_category: BTreeMap<String, Summary>,
    pub by_difficulty: BTreeMap<String, Summary>,
}

pub fn evaluate(
    conn: &mut PgConnection,
    client: &EmbeddingClient,
    k: usize,
    exact: bool,
) -> Result<Evaluation> {
    let golden: Vec<Query> = queries::table
        .select(Query::as_select())
        .order(queries::id)
        .load(conn)
        .step("reading the golden queries")?;
    let texts: Vec<&str> = golden.iter().map(|q| q.query.as_str()).collect();
    let vectors = client.embed_all(&texts, InputKind::Query)?;
    let mut results = Vec::with_capacity(golden.len());
    for (query, vector) in golden.into_iter().zip(vectors) {
        let retrieved = search(conn, Vector::from(vector), k, exact)?;
        let ids: Vec<Uuid> = retrieved.iter().map(|r| r.id).collect();
        let expected: Vec<Uuid> = query.expected_chunk_ids.into_iter().flatten().collect();
        let unresolved: Vec<String> = query
            .unresolved_expected_chunks
            .into_iter()
            .flatten()
            .collect();
        // Scoring against the expected chunks that were found would overstate recall: the
        // answer is incomplete, so the query is listed and left out of the figures.
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
        results.push(QueryResult {
            scores: if not_scored.is_some() {
                None
            } else {
                score(&ids, &expected, k)
            },
            not_scored,
            unresolved_expected_chunks: unresolved,
            id: query.id,
            query: query.query,
            category: query.category,
            difficulty: query.difficulty,
            expected,
            retrieved,
        });
    }
    let scored = || {
        results
            .iter()
            .filter_map(|r| r.scores.as_ref().map(|s| (r, s)))
    };
    let group = |key: fn(&QueryResult) -> Option<&String>| {
        let mut groups: BTreeMap<String, Vec<&Scores>> = BTreeMap::new();
        for (result, scores) in scored() {
            let name = key(result).cloned().unwrap_or_else(|| "(none)".into());
            groups.entry(name).or_default().push(scores);
        }
        groups
            .into_iter()
            .map(|(name, scores)| (name, summarize(scores)))
            .collect()
    };
    Ok(Evaluation {
        k,
        exact,
        overall: summarize(scored().map(|(_, s)| s)),
        by_category: group(|r| r.category.as_ref()),
        by_difficulty: group(|r| r.difficulty.as_ref()),
        results,
    })
}

/// The k nearest chunks by cosine distance: through the HNSW index, or (`exact`) by a
/// sequential scan that sees every vector, so the index's recall loss shows next to it.
fn search(
    conn: &mut PgConnection,
    vector: Vector,
    k: usize,
    exact: bool,
) -> Result<Vec<Retrieved>> {
    db::in_transaction(conn, |conn| {
        let settings = if exact {
            "SET LOCAL enable_indexscan = off; SET LOCAL enable_bitmapscan = off;".to_string()
        } else {
            // Through the index even where a scan would be as cheap (a small table), so the
            // figures are those of the index; it returns at most ef_search candidates.
            format!(
                "SET LOCAL enable_seqscan = off; SET LOCAL hnsw.ef_search = {};",
                k.max(40)
            )
        };
        conn.batch_execute(&settings)
            .step("configuring the search")?;
        // The chunks table alone, ORDER BY distance LIMIT k: the shape the HNSW index serves.
        let rows: Vec<(Uuid, Option<String>, Uuid, Option<f64>)> = chunks::table
            .filter(chunks::embedding.is_not_null())
            .select((
                chunks::id,
                chunks::section_title,
                chunks::analysis_id,
                chunks::embedding.cosine_distance(vector.clone()),
            ))
            .order(chunks::embedding.cosine_distance(vector))
            .limit(k as i64)
            .load(conn)
            .step("searching the chunks")?;
        let analysis_ids: Vec<Uuid> = rows.iter().map(|row| row.2).collect();
        let titles: std::collections::HashMap<Uuid, Option<String>> = analyses::table
            .filter(analyses::id.eq_any(&analysis_ids))
            .select((analyses::id, analyses::title))
            .load(conn)
            .step("reading the titles of the results")?
            .into_iter()
            .collect();
        Ok(rows
            .into_iter()
            .map(|(id, section_title, analysis_id, distance)| Retrieved {
                id,
                section_title,
                analysis_title: titles.get(&analysis_id).cloned().flatten(),
                distance: distance.unwrap_or(f64::NAN),
            })
            .collect())
    })
}
