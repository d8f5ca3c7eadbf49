//! Measuring retrieval against the golden queries. A *run* is every query's top k chunks by
//! one model: through the HNSW index of `chunks.embedding`, or by an exact search in memory
//! (`vectors`) of that column or of a candidate model's vectors. A run is scored against the
//! judgments (`judgments`) by the metrics of `metrics`, per query and averaged overall, per
//! category and per difficulty, at chunk and at document level.
//!
//! Two runs are compared query by query with paired tests (`comparison`, `significance`); a
//! run is saved to a committed file (`run_file`) and exported for trec_eval, ranx or BEIR
//! (`trec`, `beir`).

pub mod beir;
pub mod comparison;
pub mod judgments;
pub mod metrics;
pub mod run_file;
pub mod significance;
pub mod trec;
pub mod vectors;

use std::collections::{BTreeMap, HashMap, HashSet};

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use pgvector::{Vector, VectorExpressionMethods};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use self::judgments::{Judged, Judgments};
use self::metrics::{documents_of, score, summarize, Scores, Summary};
use self::vectors::{ChunkVectors, EmbeddingCost};
use crate::db::{self, QueryContext};
use crate::embed::cache::CachedEmbedder;
use crate::embed::InputKind;
use crate::schema::{analyses, chunks};

/// How a run found its top k.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Search {
    /// Through pgvector's HNSW index: the figures production sees.
    Hnsw,
    /// Every vector compared (in memory): the model's own figures, without the index's loss.
    Exact,
}

impl std::fmt::Display for Search {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Search::Hnsw => "HNSW index",
            Search::Exact => "exact search",
        })
    }
}

/// One retrieved chunk of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ranked {
    pub chunk: Uuid,
    pub analysis: Uuid,
    /// Cosine distance; `None` where pgvector had none (a zero vector).
    pub distance: Option<f64>,
}

/// What made a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunInfo {
    pub provider: String,
    pub model: String,
    pub dims: usize,
    pub k: usize,
    pub search: Search,
}

impl RunInfo {
    pub fn model_label(&self) -> String {
        format!(
            "{} model {} ({} dimensions)",
            self.provider, self.model, self.dims
        )
    }
}

/// Every golden query's ranking by one model, by query id.
#[derive(Debug, Clone)]
pub struct Run {
    pub info: RunInfo,
    pub rankings: BTreeMap<String, Vec<Ranked>>,
    /// Chunks an exact search could not rank: no vector, or a vector of length 0.
    pub unsearchable: usize,
}

impl Run {
    /// The same run cut to its top `k` (no more than it holds).
    pub fn cut_to(mut self, k: usize) -> Run {
        self.info.k = self.info.k.min(k);
        for ranked in self.rankings.values_mut() {
            ranked.truncate(self.info.k);
        }
        self
    }
}

/// A chunk as shown next to a query's results.
#[derive(Debug, Clone, Serialize)]
pub struct Retrieved {
    pub id: Uuid,
    pub analysis_id: Uuid,
    pub section_title: Option<String>,
    pub analysis_title: Option<String>,
    pub distance: Option<f64>,
    /// Whether some golden query expects this chunk (false: it has no label at all).
    pub judged: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct QueryResult {
    pub id: String,
    pub query: String,
    pub category: Option<String>,
    pub difficulty: Option<String>,
    pub expected: Vec<Uuid>,
    pub expected_analyses: Vec<Uuid>,
    pub retrieved: Vec<Retrieved>,
    /// `None` for a query that is not scored (see `not_scored`).
    pub scores: Option<Scores>,
    /// The same metrics over the distinct analyses of the top k.
    pub document_scores: Option<Scores>,
    /// The share of the top k that some golden query expects.
    pub judged_at_k: f64,
    /// Why the query is not scored: no expected answer, or expected chunks that matched no
    /// chunk when its file was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_scored: Option<String>,
    /// Expected chunks named by a reference that matched no chunk when the file was read.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unresolved_expected_chunks: Vec<String>,
}

impl QueryResult {
    /// Whether an expected chunk is in the top k (`None`: not scored).
    pub fn hit(&self) -> Option<bool> {
        self.scores.map(|scores| scores.hit > 0.0)
    }
}

/// Means of one level (chunk or document) overall, per category and per difficulty.
#[derive(Debug, Clone, Serialize)]
pub struct Figures {
    pub overall: Summary,
    pub by_category: BTreeMap<String, Summary>,
    pub by_difficulty: BTreeMap<String, Summary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub info: RunInfo,
    pub results: Vec<QueryResult>,
    /// Chunk-level figures (kept at the top of the JSON, where scripts read them).
    #[serde(flatten)]
    pub chunk_level: Figures,
    pub document_level: Figures,
    /// The mean share of the top k that some golden query expects, over every query.
    pub judged_at_k: f64,
}

impl Evaluation {
    /// Scores `run` against `judgments`. Chunks are named by id only; [`describe`] adds
    /// their titles for a report.
    pub fn of(run: &Run, judgments: &Judgments) -> Evaluation {
        let k = run.info.k;
        let results: Vec<QueryResult> = judgments
            .queries
            .iter()
            .map(|query| match run.rankings.get(&query.id) {
                Some(ranked) => result_of(
                    query,
                    &ranked[..ranked.len().min(k)],
                    k,
                    &judgments.expected_anywhere,
                ),
                // A saved run made before the query was added: it has no figures, rather
                // than a miss it never had the chance to avoid.
                None => QueryResult {
                    scores: None,
                    document_scores: None,
                    not_scored: Some("not in this run".to_string()),
                    ..result_of(query, &[], k, &judgments.expected_anywhere)
                },
            })
            .collect();
        let judged_at_k = if results.is_empty() {
            0.0
        } else {
            results.iter().map(|r| r.judged_at_k).sum::<f64>() / results.len() as f64
        };
        Evaluation {
            chunk_level: figures(&results, |r| r.scores.as_ref()),
            document_level: figures(&results, |r| r.document_scores.as_ref()),
            info: run.info.clone(),
            results,
            judged_at_k,
        }
    }

    pub fn k(&self) -> usize {
        self.info.k
    }

    pub fn scored(&self) -> usize {
        self.chunk_level.overall.queries
    }
}

fn result_of(
    query: &Judged,
    ranking: &[Ranked],
    k: usize,
    expected_anywhere: &HashSet<Uuid>,
) -> QueryResult {
    let ids: Vec<Uuid> = ranking.iter().map(|r| r.chunk).collect();
    let documents = documents_of(ranking.iter().map(|r| r.analysis));
    let scored = query.not_scored.is_none();
    let judged = ranking
        .iter()
        .filter(|r| expected_anywhere.contains(&r.chunk))
        .count();
    QueryResult {
        id: query.id.clone(),
        query: query.query.clone(),
        category: query.category.clone(),
        difficulty: query.difficulty.clone(),
        expected: query.expected.clone(),
        expected_analyses: query.expected_analyses.clone(),
        retrieved: ranking
            .iter()
            .map(|r| Retrieved {
                id: r.chunk,
                analysis_id: r.analysis,
                section_title: None,
                analysis_title: None,
                distance: r.distance,
                judged: expected_anywhere.contains(&r.chunk),
            })
            .collect(),
        scores: scored.then(|| score(&ids, &query.expected, k)).flatten(),
        document_scores: scored
            .then(|| score(&documents, &query.expected_analyses, k))
            .flatten(),
        judged_at_k: judged as f64 / k as f64,
        not_scored: query.not_scored.clone(),
        unresolved_expected_chunks: query.unresolved.clone(),
    }
}

fn figures(results: &[QueryResult], level: fn(&QueryResult) -> Option<&Scores>) -> Figures {
    let scored = || results.iter().filter_map(|r| level(r).map(|s| (r, s)));
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
    Figures {
        overall: summarize(scored().map(|(_, s)| s)),
        by_category: group(|r| r.category.as_ref()),
        by_difficulty: group(|r| r.difficulty.as_ref()),
    }
}

/// The query vectors of every golden query by `embedder`'s model, through its cache.
pub fn embed_queries(
    conn: &mut PgConnection,
    embedder: &CachedEmbedder,
    judgments: &Judgments,
) -> Result<Vec<Vec<f32>>> {
    let texts: Vec<&str> = judgments.queries.iter().map(|q| q.query.as_str()).collect();
    let embedded = embedder.embed(conn, &texts, InputKind::Query)?;
    Ok(embedded
        .vectors
        .into_iter()
        .map(|vector| vector.to_vec())
        .collect())
}

/// The run of the model whose vectors are in `chunks.embedding`.
pub fn run_of_column(
    conn: &mut PgConnection,
    embedder: &CachedEmbedder,
    judgments: &Judgments,
    k: usize,
    search: Search,
) -> Result<Run> {
    let vectors = embed_queries(conn, embedder, judgments)?;
    let (rankings, unsearchable) = match search {
        Search::Hnsw => (
            vectors
                .into_iter()
                .map(|vector| by_index(conn, Vector::from(vector), k))
                .collect::<Result<Vec<_>>>()?,
            0,
        ),
        Search::Exact => {
            let chunk_vectors = ChunkVectors::of_column(conn)?;
            (chunk_vectors.search(&vectors, k)?, chunk_vectors.left_out)
        }
    };
    Ok(run_from(
        embedder,
        judgments,
        k,
        search,
        rankings,
        unsearchable,
    ))
}

/// The run of a candidate model: its vectors of every chunk's text (through the cache),
/// searched exactly; `chunks.embedding` is not touched.
pub fn run_of_candidate(
    conn: &mut PgConnection,
    embedder: &CachedEmbedder,
    judgments: &Judgments,
    k: usize,
) -> Result<(Run, EmbeddingCost)> {
    let candidate = embedder.client.info().to_string();
    let (chunk_vectors, cost) = ChunkVectors::embedded(conn, embedder)
        .wrap_err_with(|| format!("embedding the chunks with the candidate {candidate}"))?;
    let vectors = embed_queries(conn, embedder, judgments)
        .wrap_err_with(|| format!("embedding the queries with the candidate {candidate}"))?;
    let rankings = chunk_vectors.search(&vectors, k)?;
    Ok((
        run_from(
            embedder,
            judgments,
            k,
            Search::Exact,
            rankings,
            chunk_vectors.left_out,
        ),
        cost,
    ))
}

fn run_from(
    embedder: &CachedEmbedder,
    judgments: &Judgments,
    k: usize,
    search: Search,
    rankings: Vec<Vec<Ranked>>,
    unsearchable: usize,
) -> Run {
    let info = embedder.client.info();
    Run {
        info: RunInfo {
            provider: info.provider.to_string(),
            model: info.model.clone(),
            dims: info.dims,
            k,
            search,
        },
        rankings: judgments
            .queries
            .iter()
            .map(|q| q.id.clone())
            .zip(rankings)
            .collect(),
        unsearchable,
    }
}

/// The k nearest chunks by cosine distance through the HNSW index.
fn by_index(conn: &mut PgConnection, vector: Vector, k: usize) -> Result<Vec<Ranked>> {
    db::in_transaction(conn, |conn| {
        // Through the index even where a scan would be as cheap (a small table), so the
        // figures are those of the index; it returns at most ef_search candidates.
        conn.batch_execute(&format!(
            "SET LOCAL enable_seqscan = off; SET LOCAL hnsw.ef_search = {};",
            k.max(40)
        ))
        .step("configuring the search")?;
        // The chunks table alone, ORDER BY distance LIMIT k: the shape the HNSW index serves.
        let rows: Vec<(Uuid, Uuid, Option<f64>)> = chunks::table
            .filter(chunks::embedding.is_not_null())
            .select((
                chunks::id,
                chunks::analysis_id,
                chunks::embedding.cosine_distance(vector.clone()),
            ))
            .order(chunks::embedding.cosine_distance(vector))
            .limit(k as i64)
            .load(conn)
            .step("searching the chunks")?;
        Ok(rows
            .into_iter()
            .map(|(chunk, analysis, distance)| Ranked {
                chunk,
                analysis,
                distance: distance.filter(|d| d.is_finite()),
            })
            .collect())
    })
}

/// Fills in the section and analysis titles of the retrieved chunks, for a report.
pub fn describe(conn: &mut PgConnection, evaluation: &mut Evaluation) -> Result<()> {
    let wanted: HashSet<Uuid> = evaluation
        .results
        .iter()
        .flat_map(|r| r.retrieved.iter().map(|got| got.id))
        .collect();
    let wanted: Vec<Uuid> = wanted.into_iter().collect();
    let mut titles: HashMap<Uuid, (Option<String>, Option<String>)> = HashMap::new();
    for part in wanted.chunks(5_000) {
        let rows: Vec<(Uuid, Option<String>, Option<String>)> = chunks::table
            .inner_join(analyses::table)
            .filter(chunks::id.eq_any(part))
            .select((chunks::id, chunks::section_title, analyses::title))
            .load(conn)
            .step("reading the titles of the results")?;
        titles.extend(
            rows.into_iter()
                .map(|(id, section, title)| (id, (section, title))),
        );
    }
    for got in evaluation
        .results
        .iter_mut()
        .flat_map(|r| r.retrieved.iter_mut())
    {
        if let Some((section, title)) = titles.get(&got.id) {
            got.section_title.clone_from(section);
            got.analysis_title.clone_from(title);
        }
    }
    Ok(())
}
