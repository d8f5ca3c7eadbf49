//! Files in the shapes of the Python tools golden replaces (issue 12): the nested "1.0" of the
//! seed's template script and SkillForge's flat "1.0" and "2.0", written byte for byte as
//! `json.dump(data, f, indent=2)` writes them, and a comparator that checks that a golden
//! backup made after restoring such a file holds every value of it, after the documented
//! mapping.
//!
//! Each file is built as a [`Py`] tree first (objects keep their keys in the order the Python
//! tools wrote them), written by [`Py::to_python_json`], and returned with its
//! `serde_json::Value` model so that tests compare against the model, not against the file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Duration, NaiveDateTime, Utc};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};

/// A JSON value whose objects keep their keys in insertion order, as Python's dicts do.
#[derive(Clone, Debug, PartialEq)]
pub enum Py {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Py>),
    Obj(Vec<(String, Py)>),
}

/// `py!{"key": value, …}`: an object, keys in the order written.
macro_rules! py {
    ($($key:literal : $value:expr),* $(,)?) => {
        Py::Obj(vec![$(($key.to_string(), Py::from($value))),*])
    };
}

/// An object of `pairs`, keys in that order.
pub fn obj(pairs: Vec<(&str, Py)>) -> Py {
    Py::Obj(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

impl From<&str> for Py {
    fn from(text: &str) -> Py {
        Py::Str(text.to_string())
    }
}
impl From<String> for Py {
    fn from(text: String) -> Py {
        Py::Str(text)
    }
}
impl From<&String> for Py {
    fn from(text: &String) -> Py {
        Py::Str(text.clone())
    }
}
impl From<i64> for Py {
    fn from(n: i64) -> Py {
        Py::Int(n)
    }
}
impl From<i32> for Py {
    fn from(n: i32) -> Py {
        Py::Int(n.into())
    }
}
impl From<usize> for Py {
    fn from(n: usize) -> Py {
        Py::Int(n as i64)
    }
}
impl From<f64> for Py {
    fn from(x: f64) -> Py {
        Py::Float(x)
    }
}
impl From<bool> for Py {
    fn from(b: bool) -> Py {
        Py::Bool(b)
    }
}
impl<T: Into<Py>> From<Option<T>> for Py {
    fn from(value: Option<T>) -> Py {
        value.map_or(Py::Null, Into::into)
    }
}
impl<T: Into<Py>> From<Vec<T>> for Py {
    fn from(items: Vec<T>) -> Py {
        Py::List(items.into_iter().map(Into::into).collect())
    }
}

impl Py {
    /// The same value as serde_json sees it once parsed.
    pub fn to_value(&self) -> Value {
        match self {
            Py::Null => Value::Null,
            Py::Bool(b) => Value::Bool(*b),
            Py::Int(n) => Value::from(*n),
            Py::Float(x) => Value::Number(Number::from_f64(*x).expect("a finite float")),
            Py::Str(text) => Value::String(text.clone()),
            Py::List(items) => Value::Array(items.iter().map(Py::to_value).collect()),
            Py::Obj(pairs) => Value::Object(
                pairs
                    .iter()
                    .map(|(key, value)| (key.clone(), value.to_value()))
                    .collect(),
            ),
        }
    }

    /// What `json.dumps(self, indent=2)` returns (and `json.dump(…, f, indent=2)` writes):
    /// items on their own lines, two spaces a level, `", "` never, `": "` between key and value,
    /// every character outside printable ASCII escaped as `\uXXXX` (lowercase, astral
    /// characters as a surrogate pair), no newline at the end.
    pub fn to_python_json(&self) -> String {
        let mut out = String::new();
        self.write_python(&mut out, 0);
        out
    }

    fn write_python(&self, out: &mut String, level: usize) {
        match self {
            Py::Null => out.push_str("null"),
            Py::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Py::Int(n) => out.push_str(&n.to_string()),
            Py::Float(x) => out.push_str(&python_float_repr(*x)),
            Py::Str(text) => write_python_string(out, text),
            Py::List(items) => {
                write_python_container(out, level, "[]", items.iter().map(|item| (None, item)))
            }
            Py::Obj(pairs) => write_python_container(
                out,
                level,
                "{}",
                pairs.iter().map(|(key, value)| (Some(key.as_str()), value)),
            ),
        }
    }
}

fn write_python_container<'a>(
    out: &mut String,
    level: usize,
    brackets: &str,
    entries: impl Iterator<Item = (Option<&'a str>, &'a Py)>,
) {
    let (open, close) = brackets.split_at(1);
    out.push_str(open);
    let mut empty = true;
    for (key, value) in entries {
        out.push_str(if empty { "\n" } else { ",\n" });
        empty = false;
        out.push_str(&"  ".repeat(level + 1));
        if let Some(key) = key {
            write_python_string(out, key);
            out.push_str(": ");
        }
        value.write_python(out, level + 1);
    }
    if !empty {
        out.push('\n');
        out.push_str(&"  ".repeat(level));
    }
    out.push_str(close);
}

/// Python's `float.__repr__`, for the magnitudes the fixtures use (no exponent form).
fn python_float_repr(x: f64) -> String {
    assert!(
        x == 0.0 || (1e-4..1e16).contains(&x.abs()),
        "{x}: Python writes this float with an exponent; keep fixture floats plain"
    );
    let text = format!("{x}");
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// `json.encoder.py_encode_basestring_ascii`.
fn write_python_string(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    write!(out, "\\u{unit:04x}").unwrap();
                }
            }
        }
    }
    out.push('"');
}

/// A file written in one of the foreign shapes, and what it holds.
pub struct Fixture {
    pub path: PathBuf,
    /// The file as serde_json reads it.
    pub original: Value,
    /// What golden's first output line names it: `read as <label>`.
    pub label: &'static str,
}

impl Fixture {
    fn write(dir: &Path, name: &str, label: &'static str, model: Py) -> Fixture {
        let path = dir.join(name);
        fs::write(&path, model.to_python_json()).unwrap();
        Fixture {
            path,
            original: model.to_value(),
            label,
        }
    }

    pub fn arg(&self) -> &str {
        self.path.to_str().unwrap()
    }

    fn contents(&self) -> Original<'_> {
        Original::read(&self.original)
    }

    pub fn analyses(&self) -> usize {
        self.contents().analyses.len()
    }

    pub fn chunks(&self) -> usize {
        self.contents().chunks.len()
    }

    /// Artifacts whose analysis is in the file: every version of them is a row.
    pub fn restorable_artifacts(&self) -> usize {
        self.contents().artifacts.len() - self.orphan_artifact_ids().len()
    }

    /// Artifacts whose analysis is not in the file: warned about, left out of the database.
    pub fn orphan_artifact_ids(&self) -> Vec<String> {
        self.contents().orphan_artifact_ids()
    }

    pub fn queries(&self) -> usize {
        self.contents().queries.len()
    }

    /// (query id, reference) of every `expected_chunks` entry that no chunk's path resolves.
    pub fn unresolved_references(&self) -> Vec<(String, String)> {
        let contents = self.contents();
        contents
            .queries
            .iter()
            .flat_map(|query| {
                let (_, unresolved) = contents.resolve(query);
                unresolved
                    .into_iter()
                    .map(|reference| (text(query, "id").to_string(), reference))
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// The documents every shape is made of

/// One analysed document: an analysis, its chunks (one per section) and its artifact versions.
struct Doc {
    slug: String,
    url: String,
    title: Option<String>,
    content_type: &'static str,
    language: &'static str,
    created_at: String,
    updated_at: String,
    sections: Vec<Section>,
    artifacts: Vec<ArtifactVersion>,
}

struct Section {
    /// The chunk's `path` list: the document's slug, then the section's id.
    path: Vec<String>,
    title: Option<String>,
    text: String,
}

struct ArtifactVersion {
    version: i64,
    created_at: String,
    markdown: String,
    topics: Vec<&'static str>,
}

fn section(path: &[&str], title: Option<&str>, text: &str) -> Section {
    Section {
        path: path.iter().map(|part| part.to_string()).collect(),
        title: title.map(str::to_string),
        text: text.to_string(),
    }
}

fn version(
    version: i64,
    created_at: &str,
    markdown: &str,
    topics: Vec<&'static str>,
) -> ArtifactVersion {
    ArtifactVersion {
        version,
        created_at: created_at.to_string(),
        markdown: markdown.to_string(),
        topics,
    }
}

/// Five documents: non-ASCII titles and texts (é, 日本, 🦀), quotes, backslashes, newlines
/// and tabs; coarse and fine sections; a path that does not extend its first element and an
/// empty one; two artifact versions of one analysis; one analysis without an artifact; two
/// analyses of the same URL; a null title; isoformat times with and without microseconds.
fn documents() -> Vec<Doc> {
    vec![
        Doc {
            slug: "reddit-sharding".into(),
            url: "https://www.reddit.com/r/PostgreSQL/comments/18k2x9f/how_we_sharded_our_comment_store/".into(),
            title: Some("How we sharded our comment store \u{2014} café notes".into()),
            content_type: "article",
            language: "en",
            created_at: "2026-01-22T10:00:00+00:00".into(),
            updated_at: "2026-01-22T10:05:31.118204+00:00".into(),
            sections: vec![
                section(&["reddit-sharding"], Some("Overview"),
                    "The comment store outgrew one primary in 2023; the team split it by thread id across sixteen PostgreSQL shards. The café-sized lesson: measure before you shard."),
                section(&["reddit-sharding", "reddit-sharding/motivation"], Some("Motivation"),
                    "Write amplification on the comments table made autovacuum fall behind, and replicas lagged by minutes at the evening peak."),
                section(&["reddit-sharding", "reddit-sharding/routing"], Some("Routing"),
                    "A thin router maps thread_id \u{2192} shard with a consistent-hash ring; resharding moves ring segments, not rows one by one."),
            ],
            artifacts: vec![
                version(1, "2026-01-22T10:06:00+00:00", "# Sharding the comment store\n\nSixteen shards by thread id.", vec!["sharding", "postgresql"]),
                version(2, "2026-02-03T16:20:45.500000+00:00", "# Sharding the comment store (revised)\n\nSixteen shards by thread id; the router uses a consistent-hash ring \u{2014} café-sized.", vec!["sharding", "postgresql", "routing"]),
            ],
        },
        Doc {
            slug: "fastapi-auth".into(),
            url: "https://fastapi.tiangolo.com/tutorial/security/oauth2-jwt/".into(),
            title: Some("OAuth2 with Password (and hashing), Bearer with JWT tokens".into()),
            content_type: "documentation",
            language: "en",
            created_at: "2026-01-23T08:15:00.250000+00:00".into(),
            updated_at: "2026-01-23T08:15:00.250000+00:00".into(),
            sections: vec![
                section(&["fastapi-auth", "fastapi-auth/oauth2-password"], Some("Password flow"),
                    "OAuth2PasswordRequestForm reads username and password from a form body; verify the hash with passlib, never the plain text.\nReturn {\"access_token\": token, \"token_type\": \"bearer\"}."),
                section(&["fastapi-auth", "fastapi-auth/jwt-tokens"], Some("JWT tokens"),
                    "Sign tokens with HS256 and a secret read from the environment; set \"exp\" so that a stolen token expires.\tA Windows path such as C:\\secrets\\key stays a string."),
            ],
            artifacts: vec![version(1, "2026-01-23T08:20:12+00:00", "# FastAPI authentication\n\nPassword flow, hashing, JWT bearer tokens.", vec!["security", "fastapi"])],
        },
        Doc {
            slug: "rust-ownership-ja".into(),
            url: "https://doc.rust-jp.rs/book-ja/ch04-01-what-is-ownership.html".into(),
            title: Some("所有権とは？ 🦀".into()),
            content_type: "documentation",
            language: "ja",
            created_at: "2026-01-24T01:02:03.000004+00:00".into(),
            updated_at: "2026-01-25T12:00:00+00:00".into(),
            sections: vec![
                section(&["rust-ownership-ja"], Some("概要"),
                    "Rustの所有権（ownership）は、ガベージコレクタなしでメモリ安全性を保証します 🦀。日本語の説明です。"),
                section(&["rust-ownership-ja", "rust-ownership-ja/move"], Some("ムーブ"),
                    "値を別の変数に代入すると所有権がムーブし、元の変数はもう使えません。"),
            ],
            artifacts: vec![version(1, "2026-01-25T12:00:01.000001+00:00", "# 所有権 🦀\n\nムーブと借用。", vec!["rust", "ownership"])],
        },
        Doc {
            // Analysed again under another slug: the same URL as fastapi-auth.
            slug: "fastapi-auth-v2".into(),
            url: "https://fastapi.tiangolo.com/tutorial/security/oauth2-jwt/".into(),
            title: None,
            content_type: "documentation",
            language: "en",
            created_at: "2026-01-26T09:30:00+00:00".into(),
            updated_at: "2026-01-26T09:45:10.000100+00:00".into(),
            sections: vec![
                section(&["fastapi-auth-v2", "scopes"], Some("Scopes"),
                    "Security scopes let one token carry several permissions: read:items, write:items."),
                section(&[], None,
                    "A closing note without a section: rotate the signing key every ninety days."),
            ],
            artifacts: vec![],
        },
        Doc {
            slug: "pgvector-hnsw".into(),
            url: "https://github.com/pgvector/pgvector#hnsw".into(),
            title: Some("pgvector: HNSW indexes (m, ef_construction)".into()),
            content_type: "documentation",
            language: "en",
            created_at: "2025-12-11T19:02:44+00:00".into(),
            updated_at: "2025-12-12T08:30:00.418000+00:00".into(),
            sections: vec![
                section(&["pgvector-hnsw"], Some("HNSW"),
                    "An HNSW index builds a multilayer graph; it has better speed-recall trade-offs than IVFFlat but builds slower and uses more memory."),
                section(&["pgvector-hnsw", "pgvector-hnsw/tuning"], Some("Query options"),
                    "SET hnsw.ef_search = 100; raises recall at the cost of latency \u{2014} résumé: tune it per query."),
                section(&["pgvector-hnsw", "pgvector-hnsw/build"], Some("Index build time"),
                    "Load the rows first, then CREATE INDEX ON items USING hnsw (embedding vector_cosine_ops); raise maintenance_work_mem so the graph fits."),
            ],
            artifacts: vec![version(1, "2025-12-12T08:31:00+00:00", "# HNSW in pgvector\n\nm, ef_construction, ef_search.", vec!["pgvector", "indexing"])],
        },
    ]
}

/// `n` documents of `chunks` sections each, for large files.
fn generated_documents(n: usize, chunks: usize) -> Vec<Doc> {
    let start = DateTime::parse_from_rfc3339("2025-06-01T00:00:00Z")
        .unwrap()
        .with_timezone(&Utc);
    (0..n)
        .map(|i| {
            let slug = format!("topic-{i:05}");
            let created = start + Duration::seconds(i as i64 * 3_607) + Duration::microseconds((i % 7) as i64 * 125_000);
            let sections = (0..chunks)
                .map(|j| {
                    let mut path = vec![slug.clone()];
                    if j > 0 {
                        path.push(format!("{slug}/part-{j}"));
                    }
                    Section {
                        path,
                        title: Some(format!("Part {j} — ré{j}")),
                        text: format!(
                            "Document {i}, part {j}: café, 日本, 🦀. {}",
                            "Retrieval quality depends on chunk boundaries and on the model that embeds them. ".repeat(4)
                        ),
                    }
                })
                .collect();
            let versions = if i % 10 == 3 { 2 } else { 1 };
            Doc {
                // One document in fifty has the URL of the one before.
                url: format!("https://docs.rs/topic-{:05}/latest/topic/", if i % 50 == 49 { i - 1 } else { i }),
                title: Some(format!("Topic {i} — résumé")),
                content_type: if i % 2 == 0 { "article" } else { "documentation" },
                language: "en",
                created_at: isoformat(created),
                updated_at: isoformat(created + Duration::minutes(5)),
                sections,
                artifacts: (1..=versions)
                    .map(|v| ArtifactVersion {
                        version: v,
                        created_at: isoformat(created + Duration::minutes(10 * v)),
                        markdown: format!("# Topic {i}, version {v}\n\nSummary — café."),
                        topics: vec!["generated"],
                    })
                    .collect(),
                slug,
            }
        })
        .collect()
}

/// Python's `datetime.isoformat()` of an aware UTC datetime.
fn isoformat(at: DateTime<Utc>) -> String {
    if at.timestamp_subsec_micros() == 0 {
        at.format("%Y-%m-%dT%H:%M:%S+00:00").to_string()
    } else {
        at.format("%Y-%m-%dT%H:%M:%S%.6f+00:00").to_string()
    }
}

/// A valid, random-looking UUID derived from `seed`, so that files are deterministic.
pub fn uuid_for(seed: &str) -> String {
    let hex = sha256_hex(seed);
    format!(
        "{}-{}-4{}-8{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn analysis_id(doc: &Doc) -> String {
    uuid_for(&format!("analysis/{}", doc.slug))
}

fn chunk_id(doc: &Doc, index: usize) -> String {
    uuid_for(&format!("chunk/{}/{index}", doc.slug))
}

fn artifact_metadata(doc: &Doc, artifact: &ArtifactVersion) -> Py {
    let latest = doc.artifacts.iter().map(|a| a.version).max() == Some(artifact.version);
    py! {
        "topics": artifact.topics.clone(),
        "complexity": "intermediate",
        "document_id": &doc.slug,
        "source_url": &doc.url,
        "needs_regeneration": !latest,
        "quality": py! {"score": 0.87, "reviewer": "Zoë"},
    }
}

// ---------------------------------------------------------------------------------------------
// Nested "1.0" of the seed's template script

/// The seed template's nested "1.0": no `title`, `updated_at` or artifact `created_at`; a
/// `findings` list per analysis, `key_findings` and `metadata` per artifact (the latest version
/// only: this script keeps one artifact per analysis).
pub fn seed_template(dir: &Path) -> Fixture {
    let docs = documents();
    let analyses: Vec<Py> = docs.iter().map(seed_analysis).collect();
    let model = py! {
        "version": "1.0",
        "created_at": "2026-01-27T07:45:12.123456+00:00",
        "metadata": py! {
            "total_analyses": docs.len(),
            "total_chunks": docs.iter().map(|d| d.sections.len()).sum::<usize>(),
            "total_artifacts": docs.iter().filter(|d| !d.artifacts.is_empty()).count(),
        },
        "analyses": analyses,
    };
    Fixture::write(dir, "seed-template.json", "seed template nested 1.0", model)
}

fn seed_analysis(doc: &Doc) -> Py {
    let chunks: Vec<Py> = doc
        .sections
        .iter()
        .enumerate()
        .map(|(index, section)| {
            py! {
                "id": chunk_id(doc, index),
                "content": &section.text,
                "section_title": section.title.clone(),
                "section_path": (!section.path.is_empty()).then(|| section.path.join(" > ")),
                "content_type": doc.content_type,
                "chunk_index": index,
            }
        })
        .collect();
    let artifact = doc.artifacts.last().map(|latest| {
        py! {
            "id": uuid_for(&format!("artifact/{}/{}", doc.slug, latest.version)),
            "summary": &latest.markdown,
            "key_findings": vec![
                format!("{}: the main point — é", doc.slug),
                "Measured, not guessed".to_string(),
            ],
            "metadata": py! {"word_count": latest.markdown.split_whitespace().count(), "language": doc.language, "tags": latest.topics.clone()},
        }
    });
    py! {
        "id": analysis_id(doc),
        "url": &doc.url,
        "content_type": doc.content_type,
        "status": "completed",
        "created_at": &doc.created_at,
        "findings": vec![
            py! {
                "agent": "tech_comparator",
                "category": "architecture",
                "content": format!("{} weighs its trade-offs explicitly — naïve readers miss them.", doc.slug),
                "confidence": 0.92,
                "metadata": py! {"section": doc.sections[0].title.clone(), "evidence": vec![0usize]},
            },
            py! {
                "agent": "security_auditor",
                "category": "risk",
                "content": "No secrets in the examples 🦀",
                "confidence": 0.5,
                "metadata": py! {},
            },
        ],
        "chunks": chunks,
        "artifact": artifact,
    }
}

// ---------------------------------------------------------------------------------------------
// SkillForge flat "1.0" and "2.0"

/// SkillForge's flat "1.0": a naive header `created_at`, `source`, `counts`, and `data` with
/// three flat lists linked by `analysis_id`; an orphan artifact; one naive analysis time.
pub fn skillforge_flat_1(dir: &Path) -> Fixture {
    let mut docs = documents();
    docs[4].updated_at = "2025-12-12T08:30:00.418000".into();
    let model = flat_file("1.0", "2025-12-12T08:33:16.928533", &docs, None);
    Fixture::write(dir, "skillforge-flat-1.json", "SkillForge flat 1.0", model)
}

/// SkillForge's "2.0": the flat lists, plus `fixtures` (documents, source_url_map and queries
/// whose `expected_chunks` are chunk paths, one of them resolving to nothing) and `metadata`.
pub fn skillforge_flat_2(dir: &Path) -> Fixture {
    let docs = documents();
    let model = flat_file(
        "2.0",
        "2026-02-04T09:00:00.654321+00:00",
        &docs,
        Some(queries()),
    );
    Fixture::write(dir, "skillforge-flat-2.json", "SkillForge flat 2.0", model)
}

/// A "2.0" file of `analyses` generated documents of `chunks_per_analysis` chunks each (one
/// analysis in ten with two artifact versions, one orphan artifact, a query per ten analyses
/// and one that resolves to nothing), for large-file tests and benchmarks.
pub fn skillforge_flat_2_sized(dir: &Path, analyses: usize, chunks_per_analysis: usize) -> Fixture {
    assert!(analyses >= 1 && chunks_per_analysis >= 2);
    let docs = generated_documents(analyses, chunks_per_analysis);
    let mut queries: Vec<Py> = docs
        .iter()
        .step_by(10)
        .map(|doc| {
            fixture_query(
                &format!("q-{}", doc.slug),
                &format!("what does part 1 of {} say", doc.slug),
                "specific",
                "easy",
                vec![format!("{}/part-1", doc.slug)],
            )
        })
        .collect();
    queries.push(unresolvable_query());
    let model = flat_file("2.0", "2026-02-04T09:00:00+00:00", &docs, Some(queries));
    Fixture::write(
        dir,
        &format!("skillforge-flat-2-{analyses}x{chunks_per_analysis}.json"),
        "SkillForge flat 2.0",
        model,
    )
}

/// The query whose only reference is in no chunk's path.
pub const UNRESOLVED_QUERY: &str = "q-k8s-reconcile";
pub const UNRESOLVED_REFERENCE: &str = "kubernetes-operators/reconcile-loop";

fn unresolvable_query() -> Py {
    fixture_query(
        UNRESOLVED_QUERY,
        "how does an operator's reconcile loop requeue",
        "specific",
        "hard",
        vec![UNRESOLVED_REFERENCE.to_string()],
    )
}

fn fixture_query(
    id: &str,
    query: &str,
    category: &str,
    difficulty: &str,
    expected: Vec<String>,
) -> Py {
    py! {
        "id": id,
        "query": query,
        "modes": vec!["semantic", "hybrid"],
        "category": category,
        "difficulty": difficulty,
        "expected_chunks": expected,
        "min_score": 0.6,
        "max_score": None::<f64>,
        "description": format!("{query} — généré"),
    }
}

/// Queries of the five documents: by a section path (the last element of a chunk's path), by
/// two of them, by a document slug that is a whole coarse path, by a slug that only some
/// chunks' paths contain, an empty (negative) one, and one that resolves to nothing.
fn queries() -> Vec<Py> {
    let strings = |refs: &[&str]| refs.iter().map(|r| r.to_string()).collect::<Vec<_>>();
    let mut oauth = fixture_query(
        "q-fastapi-password-jwt",
        "FastAPI password flow with JWT bearer tokens",
        "coarse-to-fine",
        "medium",
        strings(&["fastapi-auth/oauth2-password", "fastapi-auth/jwt-tokens"]),
    );
    push_keys(
        &mut oauth,
        vec![
            ("granularity", Py::from("fine")),
            ("expected_coarse_parent", Py::from("fastapi-auth")),
        ],
    );
    let mut ownership = fixture_query(
        "q-ownership-ja",
        "所有権 ムーブ",
        "coarse-to-fine",
        "easy",
        strings(&["rust-ownership-ja"]),
    );
    push_keys(
        &mut ownership,
        vec![
            ("granularity", Py::from("coarse")),
            (
                "expected_fine_chunks",
                Py::from(strings(&["rust-ownership-ja/move"])),
            ),
        ],
    );
    let mut negative = fixture_query(
        "q-negative-sourdough",
        "how long should sourdough proof",
        "negative",
        "easy",
        vec![],
    );
    set_key(&mut negative, "min_score", Py::Null);
    set_key(&mut negative, "max_score", Py::Float(0.4));
    vec![
        fixture_query(
            "q-sharding-why",
            "why did the comment store need sharding",
            "specific",
            "easy",
            strings(&["reddit-sharding/motivation"]),
        ),
        oauth,
        ownership,
        fixture_query(
            "q-fastapi-scopes",
            "security scopes read:items write:items",
            "broad",
            "hard",
            strings(&["fastapi-auth-v2"]),
        ),
        negative,
        unresolvable_query(),
    ]
}

fn push_keys(object: &mut Py, pairs: Vec<(&str, Py)>) {
    let Py::Obj(entries) = object else {
        unreachable!()
    };
    entries.extend(pairs.into_iter().map(|(k, v)| (k.to_string(), v)));
}

fn set_key(object: &mut Py, key: &str, value: Py) {
    let Py::Obj(entries) = object else {
        unreachable!()
    };
    entries.iter_mut().find(|(k, _)| k == key).unwrap().1 = value;
}

/// The retired document whose artifact is still in SkillForge's file.
fn orphan_artifact() -> Py {
    let slug = "retired-celery-guide";
    py! {
        "id": uuid_for(&format!("artifact/{slug}/1")),
        "analysis_id": uuid_for(&format!("analysis/{slug}")),
        "markdown_content": "# Celery beat (retired)\n\nThe analysis of this guide was deleted; its artifact stayed.",
        "version": 1,
        "artifact_metadata": py! {"document_id": slug, "needs_regeneration": true, "topics": vec!["celery"]},
        "created_at": "2025-11-30T23:59:59.999999+00:00",
    }
}

/// A flat file as SkillForge's backup script writes it: analyses by `created_at`, artifacts by
/// `created_at`, chunks by (`analysis_id`, `chunk_idx`) — so not grouped in analysis order.
fn flat_file(version: &str, created_at: &str, docs: &[Doc], queries: Option<Vec<Py>>) -> Py {
    let mut by_time: Vec<&Doc> = docs.iter().collect();
    by_time.sort_by_key(|doc| instant(&doc.created_at).unwrap());
    let analyses: Vec<Py> = by_time.iter().map(|doc| flat_analysis(doc)).collect();

    let mut artifacts: Vec<(DateTime<Utc>, Py)> = docs
        .iter()
        .flat_map(|doc| {
            doc.artifacts.iter().map(move |artifact| {
                (
                    instant(&artifact.created_at).unwrap(),
                    flat_artifact(doc, artifact),
                )
            })
        })
        .collect();
    artifacts.push((
        instant("2025-11-30T23:59:59.999999+00:00").unwrap(),
        orphan_artifact(),
    ));
    artifacts.sort_by_key(|(at, _)| *at);

    let mut chunks: Vec<(String, usize, Py)> = docs
        .iter()
        .flat_map(|doc| {
            doc.sections
                .iter()
                .enumerate()
                .map(move |(index, section)| {
                    (analysis_id(doc), index, flat_chunk(doc, index, section))
                })
        })
        .collect();
    chunks.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));

    let mut counts = py! {
        "analyses": analyses.len(),
        "artifacts": artifacts.len(),
        "chunks": chunks.len(),
    };
    let data = py! {
        "analyses": analyses,
        "artifacts": artifacts.into_iter().map(|(_, a)| a).collect::<Vec<_>>(),
        "chunks": chunks.into_iter().map(|(_, _, c)| c).collect::<Vec<_>>(),
    };
    let mut file = py! {
        "version": version,
        "created_at": created_at,
        "source": "SkillForge Golden Dataset Backup",
    };
    match queries {
        None => push_keys(&mut file, vec![("counts", counts), ("data", data)]),
        Some(queries) => {
            push_keys(&mut counts, vec![("fixtures", Py::from(docs.len()))]);
            push_keys(
                &mut file,
                vec![
                    ("counts", counts),
                    ("data", data),
                    ("fixtures", fixtures(docs, queries)),
                    (
                        "metadata",
                        py! {"backup_type": "full", "includes_fixtures": true, "schema_version": "2.0"},
                    ),
                ],
            );
        }
    }
    file
}

fn flat_analysis(doc: &Doc) -> Py {
    py! {
        "id": analysis_id(doc),
        "url": &doc.url,
        "content_type": doc.content_type,
        "title": doc.title.clone(),
        "status": "completed",
        "created_at": &doc.created_at,
        "updated_at": &doc.updated_at,
    }
}

fn flat_artifact(doc: &Doc, artifact: &ArtifactVersion) -> Py {
    py! {
        "id": uuid_for(&format!("artifact/{}/{}", doc.slug, artifact.version)),
        "analysis_id": analysis_id(doc),
        "markdown_content": &artifact.markdown,
        "version": artifact.version,
        "artifact_metadata": artifact_metadata(doc, artifact),
        "created_at": &artifact.created_at,
    }
}

fn flat_chunk(doc: &Doc, index: usize, section: &Section) -> Py {
    py! {
        "id": chunk_id(doc, index),
        "analysis_id": analysis_id(doc),
        "snippet": &section.text,
        "granularity": if section.path.len() == 1 { "coarse" } else { "fine" },
        "section_title": section.title.clone(),
        "chunk_idx": index,
        "chunk_total": doc.sections.len(),
        "path": section.path.clone(),
        "hash": sha256_hex(&section.text),
        "content_type": doc.content_type,
        "language": doc.language,
        "model": "text-embedding-3-small",
        "model_version": index.is_multiple_of(2).then_some("2024-01-25"),
        "created_at": &doc.updated_at,
    }
}

fn fixtures(docs: &[Doc], queries: Vec<Py>) -> Py {
    let documents: Vec<Py> = docs
        .iter()
        .map(|doc| {
            let sections: Vec<Py> = doc
                .sections
                .iter()
                .map(|section| {
                    py! {
                        "content": &section.text,
                        "id": section.path.last().cloned().unwrap_or_else(|| doc.slug.clone()),
                        "title": section.title.clone(),
                        "granularity": if section.path.len() == 1 { "coarse" } else { "fine" },
                    }
                })
                .collect();
            py! {
                "id": &doc.slug,
                "title": doc.title.clone(),
                "source_url": &doc.url,
                "content_type": doc.content_type,
                "bucket": if doc.sections.len() > 2 { "long" } else { "short" },
                "language": doc.language,
                "tags": doc.artifacts.first().map(|a| a.topics.clone()).unwrap_or_default(),
                "sections": sections,
            }
        })
        .collect();
    let url_map = Py::Obj(
        docs.iter()
            .map(|doc| (doc.slug.clone(), Py::from(&doc.url)))
            .collect(),
    );
    py! {"documents": documents, "source_url_map": url_map, "queries": queries}
}

// ---------------------------------------------------------------------------------------------
// The comparator

/// Every value of `original` (a file of any shape) that `backup` (golden's own format, written
/// by `backup` or `convert`) does not hold after the documented mapping, one message each,
/// naming the record and the key. Empty when nothing was lost or changed.
pub fn differences(original: &Value, backup: &Value) -> Vec<String> {
    let file = Original::read(original);
    let kept = Kept::index(backup);
    let mut found = Differences::default();
    found.analyses(&file, &kept);
    found.chunks(&file, &kept);
    found.artifacts(&file, &kept);
    found.queries(&file, &kept);
    found.file_keys(original, &file, backup);
    found.0
}

/// Panics with every difference between `original` and `backup`.
pub fn assert_nothing_lost(original: &Value, backup: &Value) {
    let found = differences(original, backup);
    assert!(
        found.is_empty(),
        "{} values of the original are missing or changed in the backup:\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

/// What a file holds, whatever its shape: records with the id of their analysis.
struct Original<'a> {
    flat: bool,
    analyses: Vec<&'a Map<String, Value>>,
    chunks: Vec<(&'a str, &'a Map<String, Value>)>,
    artifacts: Vec<(&'a str, &'a Map<String, Value>)>,
    queries: Vec<&'a Map<String, Value>>,
}

impl<'a> Original<'a> {
    fn read(file: &'a Value) -> Original<'a> {
        if let Some(data) = file.get("data") {
            let linked = |key: &str| {
                list_of(data.get(key))
                    .into_iter()
                    .map(|record| (text(record, "analysis_id"), record))
                    .collect()
            };
            return Original {
                flat: true,
                analyses: list_of(data.get("analyses")),
                chunks: linked("chunks"),
                artifacts: linked("artifacts"),
                queries: list_of(file.get("fixtures").and_then(|f| f.get("queries"))),
            };
        }
        let analyses = list_of(file.get("analyses"));
        let mut chunks = Vec::new();
        let mut artifacts = Vec::new();
        for analysis in &analyses {
            let id = text(analysis, "id");
            chunks.extend(list_of(analysis.get("chunks")).into_iter().map(|c| (id, c)));
            let latest = analysis
                .get("artifact")
                .filter(|a| a.is_object())
                .map(object);
            let versions = list_of(analysis.get("artifact_versions"));
            artifacts.extend(versions.into_iter().chain(latest).map(|a| (id, a)));
        }
        let orphans = list_of(file.get("orphan_artifacts"));
        artifacts.extend(orphans.into_iter().map(|a| (text(a, "analysis_id"), a)));
        Original {
            flat: false,
            analyses,
            chunks,
            artifacts,
            queries: list_of(file.get("queries")),
        }
    }

    fn analysis_ids(&self) -> BTreeSet<&'a str> {
        self.analyses.iter().map(|a| text(a, "id")).collect()
    }

    fn orphan_artifact_ids(&self) -> Vec<String> {
        let analyses = self.analysis_ids();
        let mut ids: Vec<String> = self
            .artifacts
            .iter()
            .filter(|(analysis, _)| !analyses.contains(analysis))
            .map(|(_, artifact)| text(artifact, "id").to_string())
            .collect();
        ids.sort();
        ids
    }

    /// A flat query's `expected_chunks` resolved as the spec says: per reference, the chunks
    /// whose path ends with it, else those whose path contains it; ids seen before dropped.
    /// Returns the groups of ids (in reference order) and the references that resolve to nothing.
    fn resolve(&self, query: &Map<String, Value>) -> (Vec<BTreeSet<String>>, Vec<String>) {
        let paths: Vec<(&str, Vec<&str>)> = self
            .chunks
            .iter()
            .map(|(_, chunk)| {
                let path = chunk.get("path").and_then(Value::as_array);
                let parts = path
                    .map(|parts| parts.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                (text(chunk, "id"), parts)
            })
            .collect();
        let mut seen = BTreeSet::new();
        let (mut groups, mut unresolved) = (Vec::new(), Vec::new());
        let references = query.get("expected_chunks").and_then(Value::as_array);
        for reference in references.into_iter().flatten().filter_map(Value::as_str) {
            let matching = |test: &dyn Fn(&[&str]) -> bool| -> Vec<&str> {
                paths
                    .iter()
                    .filter(|(_, parts)| test(parts))
                    .map(|(id, _)| *id)
                    .collect()
            };
            let mut ids = matching(&|parts| parts.last() == Some(&reference));
            if ids.is_empty() {
                ids = matching(&|parts| parts.contains(&reference));
            }
            if ids.is_empty() {
                unresolved.push(reference.to_string());
                continue;
            }
            let fresh: BTreeSet<String> = ids
                .into_iter()
                .filter(|id| seen.insert(*id))
                .map(str::to_string)
                .collect();
            if !fresh.is_empty() {
                groups.push(fresh);
            }
        }
        (groups, unresolved)
    }
}

/// A golden backup, indexed by id.
struct Kept<'a> {
    analyses: BTreeMap<&'a str, &'a Map<String, Value>>,
    chunks: BTreeMap<&'a str, (&'a str, &'a Map<String, Value>)>,
    /// Every artifact: `artifact`, `artifact_versions` and `orphan_artifacts`.
    artifacts: BTreeMap<&'a str, &'a Map<String, Value>>,
    /// The ids of `orphan_artifacts`, in the backup's order.
    orphans: Vec<String>,
    queries: BTreeMap<&'a str, &'a Map<String, Value>>,
    chunk_count: usize,
}

impl<'a> Kept<'a> {
    fn index(backup: &'a Value) -> Kept<'a> {
        let mut kept = Kept {
            analyses: BTreeMap::new(),
            chunks: BTreeMap::new(),
            artifacts: BTreeMap::new(),
            orphans: Vec::new(),
            queries: BTreeMap::new(),
            chunk_count: 0,
        };
        for analysis in list_of(backup.get("analyses")) {
            let id = text(analysis, "id");
            kept.analyses.insert(id, analysis);
            for chunk in list_of(analysis.get("chunks")) {
                kept.chunk_count += 1;
                kept.chunks.insert(text(chunk, "id"), (id, chunk));
            }
            let latest = analysis
                .get("artifact")
                .filter(|a| a.is_object())
                .map(object);
            for artifact in list_of(analysis.get("artifact_versions"))
                .into_iter()
                .chain(latest)
            {
                kept.artifacts.insert(text(artifact, "id"), artifact);
            }
        }
        for orphan in list_of(backup.get("orphan_artifacts")) {
            kept.orphans.push(text(orphan, "id").to_string());
            kept.artifacts.insert(text(orphan, "id"), orphan);
        }
        for query in list_of(backup.get("queries")) {
            kept.queries.insert(text(query, "id"), query);
        }
        kept
    }
}

/// The objects of a list (none when there is no list).
fn list_of(value: Option<&Value>) -> Vec<&Map<String, Value>> {
    value
        .and_then(Value::as_array)
        .map(|items| items.iter().map(object).collect())
        .unwrap_or_default()
}

#[derive(Default)]
struct Differences(Vec<String>);

impl Differences {
    /// `kept` must be `original` (a value of the original file, at `at`, named `what`).
    fn same(&mut self, at: &str, what: &str, original: &Value, kept: Option<&Value>) {
        match kept {
            None => self.0.push(format!(
                "{at}: {what} ({}) is missing from the backup",
                compact(original)
            )),
            Some(kept) if kept != original => self.0.push(format!(
                "{at}: {what} is {} in the original but {} in the backup",
                compact(original),
                compact(kept)
            )),
            Some(_) => {}
        }
    }

    /// `kept` must be the instant `original` names (a naive time is UTC).
    fn same_instant(&mut self, at: &str, what: &str, original: &Value, kept: Option<&Value>) {
        let Some(expected) = original.as_str().and_then(instant) else {
            self.0.push(format!(
                "{at}: {what} {original} of the original is not a datetime"
            ));
            return;
        };
        if kept.and_then(Value::as_str).and_then(instant) != Some(expected) {
            self.0.push(format!(
                "{at}: {what} is {original} in the original but {} in the backup",
                kept.map_or("missing".to_string(), compact)
            ));
        }
    }

    fn analyses(&mut self, file: &Original, kept: &Kept) {
        for analysis in &file.analyses {
            let id = text(analysis, "id");
            let at = format!("analysis {id}");
            let Some(backup) = kept.analyses.get(id) else {
                self.0.push(format!("{at} is missing from the backup"));
                continue;
            };
            for (key, value) in *analysis {
                match key.as_str() {
                    "chunks" | "artifact" | "artifact_versions" if !file.flat => {}
                    "created_at" | "updated_at" => {
                        self.same_instant(&at, key, value, backup.get(key))
                    }
                    _ => self.same(&at, key, value, backup.get(key)),
                }
            }
            if !analysis.contains_key("title") {
                self.same(
                    &at,
                    "title (absent, so null)",
                    &Value::Null,
                    backup.get("title"),
                );
            }
            if !analysis.contains_key("updated_at") {
                self.same_instant(
                    &at,
                    "updated_at (absent, so created_at)",
                    &analysis["created_at"],
                    backup.get("updated_at"),
                );
            }
        }
        let ids = file.analysis_ids();
        for extra in kept.analyses.keys().filter(|id| !ids.contains(*id)) {
            self.0.push(format!(
                "analysis {extra} is in the backup but not in the original"
            ));
        }
    }

    fn chunks(&mut self, file: &Original, kept: &Kept) {
        for (analysis, chunk) in &file.chunks {
            let id = text(chunk, "id");
            let at = format!("chunk {id}");
            let Some((in_analysis, backup)) = kept.chunks.get(id) else {
                self.0.push(format!("{at} is missing from the backup"));
                continue;
            };
            if in_analysis != analysis {
                self.0.push(format!(
                    "{at} belongs to analysis {analysis} but the backup has it in {in_analysis}"
                ));
            }
            for (key, value) in *chunk {
                match key.as_str() {
                    "analysis_id" => {}
                    "snippet" => {
                        self.same(&at, "snippet (as content)", value, backup.get("content"))
                    }
                    "chunk_idx" => self.same(
                        &at,
                        "chunk_idx (as chunk_index)",
                        value,
                        backup.get("chunk_index"),
                    ),
                    "path" => {
                        self.same(&at, "path", value, backup.get("path"));
                        if !chunk.contains_key("section_path") {
                            self.same(
                                &at,
                                "section_path (from path)",
                                &section_path_of(value),
                                backup.get("section_path"),
                            );
                        }
                    }
                    _ => self.same(&at, key, value, backup.get(key)),
                }
            }
        }
        if kept.chunk_count != file.chunks.len() {
            self.0.push(format!(
                "the backup holds {} chunks, the original {}",
                kept.chunk_count,
                file.chunks.len()
            ));
        }
    }

    fn artifacts(&mut self, file: &Original, kept: &Kept) {
        let created_of: BTreeMap<&str, &Value> = file
            .analyses
            .iter()
            .map(|a| (text(a, "id"), &a["created_at"]))
            .collect();
        for (analysis, artifact) in &file.artifacts {
            let id = text(artifact, "id");
            let at = format!("artifact {id}");
            let orphan = !created_of.contains_key(analysis);
            let Some(backup) = kept.artifacts.get(id) else {
                self.0.push(format!("{at} is missing from the backup"));
                continue;
            };
            for (key, value) in *artifact {
                match key.as_str() {
                    "analysis_id" if !orphan => {}
                    "markdown_content" => self.same(
                        &at,
                        "markdown_content (as summary)",
                        value,
                        backup.get("summary"),
                    ),
                    "created_at" => self.same_instant(&at, key, value, backup.get(key)),
                    _ => self.same(&at, key, value, backup.get(key)),
                }
            }
            if let (false, Some(created)) = (
                artifact.contains_key("created_at"),
                created_of.get(analysis),
            ) {
                self.same_instant(
                    &at,
                    "created_at (absent, so its analysis's)",
                    created,
                    backup.get("created_at"),
                );
            }
        }
        self.artifact_places(file, kept, &created_of);
    }

    /// Each analysis's artifacts: the latest by (version, created_at, id) is `artifact`, the
    /// others `artifact_versions` in that order; those of analyses not in the file are
    /// `orphan_artifacts`, by id.
    fn artifact_places(
        &mut self,
        file: &Original,
        kept: &Kept,
        created_of: &BTreeMap<&str, &Value>,
    ) {
        for analysis in file.analysis_ids() {
            let mut artifacts: Vec<&Map<String, Value>> = file
                .artifacts
                .iter()
                .filter(|(of, _)| *of == analysis)
                .map(|(_, artifact)| *artifact)
                .collect();
            artifacts.sort_by_key(|artifact| {
                let created = artifact
                    .get("created_at")
                    .or(created_of.get(analysis).copied())
                    .and_then(Value::as_str)
                    .and_then(instant);
                (
                    artifact.get("version").and_then(Value::as_i64),
                    created,
                    text(artifact, "id"),
                )
            });
            let mut expected_older: Vec<&str> = artifacts.iter().map(|a| text(a, "id")).collect();
            let expected_latest = expected_older.pop();
            let Some(backup) = kept.analyses.get(analysis) else {
                continue;
            };
            let latest = backup
                .get("artifact")
                .filter(|a| a.is_object())
                .map(|a| text(object(a), "id"));
            let older: Vec<&str> = list_of(backup.get("artifact_versions"))
                .into_iter()
                .map(|a| text(a, "id"))
                .collect();
            if (latest, &older) != (expected_latest, &expected_older) {
                self.0.push(format!(
                    "analysis {analysis}: artifact should be {expected_latest:?} and artifact_versions \
                     {expected_older:?}, but the backup has {latest:?} and {older:?}"
                ));
            }
        }
        let expected_orphans = file.orphan_artifact_ids();
        if kept.orphans != expected_orphans {
            self.0.push(format!(
                "orphan_artifacts should be {expected_orphans:?} but the backup has {:?}",
                kept.orphans
            ));
        }
    }

    fn queries(&mut self, file: &Original, kept: &Kept) {
        for query in &file.queries {
            let id = text(query, "id");
            let at = format!("query {id}");
            let Some(backup) = kept.queries.get(id) else {
                self.0.push(format!("{at} is missing from the backup"));
                continue;
            };
            for (key, value) in *query {
                self.same(&at, key, value, backup.get(key));
            }
            if file.flat {
                let (groups, unresolved) = file.resolve(query);
                self.resolved_ids(&at, &groups, backup.get("expected_chunk_ids"));
                let written = backup
                    .get("unresolved_expected_chunks")
                    .cloned()
                    .unwrap_or(Value::Array(vec![]));
                self.same(
                    &at,
                    "unresolved_expected_chunks",
                    &Value::from(unresolved),
                    Some(&written),
                );
            }
        }
        let ids: BTreeSet<&str> = file.queries.iter().map(|q| text(q, "id")).collect();
        for extra in kept.queries.keys().filter(|id| !ids.contains(*id)) {
            self.0.push(format!(
                "query {extra} is in the backup but not in the original"
            ));
        }
    }

    /// `expected_chunk_ids` must list each reference's chunks in reference order (the chunks of
    /// one reference in any order).
    fn resolved_ids(&mut self, at: &str, groups: &[BTreeSet<String>], kept: Option<&Value>) {
        let ids: Vec<String> = kept
            .and_then(Value::as_array)
            .map(|ids| {
                ids.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut rest = ids.as_slice();
        let same_length = ids.len() == groups.iter().map(BTreeSet::len).sum::<usize>();
        let same_groups = same_length
            && groups.iter().all(|group| {
                let (head, tail) = rest.split_at(group.len());
                rest = tail;
                head.iter().cloned().collect::<BTreeSet<_>>() == *group
            });
        if !same_groups {
            self.0.push(format!(
                "{at}: expected_chunk_ids should be {groups:?} (by reference) but the backup has {}",
                kept.map_or("nothing".to_string(), compact)
            ));
        }
    }

    /// Keys of the file itself: `source` and other unknown keys kept by name, `fixtures`
    /// without its queries, each `metadata` key, `data` keys besides the three lists; the
    /// totals that replace `counts`.
    fn file_keys(&mut self, original: &Value, file: &Original, backup: &Value) {
        let describe_the_file = [
            "version",
            "created_at",
            "counts",
            "analyses",
            "queries",
            "orphan_artifacts",
        ];
        let metadata = backup.get("metadata");
        for (key, value) in object(original) {
            match key.as_str() {
                key if describe_the_file.contains(&key) => {}
                "data" => {
                    for (key, value) in object(value) {
                        if !["analyses", "artifacts", "chunks"].contains(&key.as_str()) {
                            let kept = backup.get("data").and_then(|d| d.get(key));
                            self.same("data", key, value, kept);
                        }
                    }
                }
                "fixtures" => {
                    let mut rest = object(value).clone();
                    rest.remove("queries");
                    self.same(
                        "file",
                        "fixtures (without queries)",
                        &Value::Object(rest),
                        backup.get("fixtures"),
                    );
                }
                "metadata" => {
                    for (key, value) in object(value) {
                        self.same("metadata", key, value, metadata.and_then(|m| m.get(key)));
                    }
                }
                _ => self.same("file", key, value, backup.get(key)),
            }
        }
        if let (true, Some(counts)) = (file.flat, original.get("counts")) {
            let orphans = file.orphan_artifact_ids().len() as i64;
            let restorable = counts["artifacts"]
                .as_i64()
                .map(|n| Value::from(n - orphans));
            for (total, expected) in [
                ("total_analyses", counts.get("analyses").cloned()),
                ("total_chunks", counts.get("chunks").cloned()),
                ("total_artifacts", restorable),
            ] {
                let expected = expected.unwrap_or(Value::Null);
                self.same(
                    "metadata",
                    &format!("{total} (from counts)"),
                    &expected,
                    metadata.and_then(|m| m.get(total)),
                );
            }
        }
    }
}

/// `section_path` of a flat chunk's `path` list: its last element when each element extends
/// the one before by "/" (`a`, `a/b`), else the elements joined by "/"; null for an empty list.
pub fn section_path_of(path: &Value) -> Value {
    let parts: Vec<&str> = path
        .as_array()
        .map(|parts| parts.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let nested = parts
        .windows(2)
        .all(|pair| pair[1].starts_with(&format!("{}/", pair[0])));
    match parts.last() {
        None => Value::Null,
        Some(last) if nested => Value::from(*last),
        Some(_) => Value::from(parts.join("/")),
    }
}

/// An instant in any form the Python tools or golden write: RFC 3339 (`Z` or an offset), or
/// naive (taken as UTC), with `T` or a space.
pub fn instant(text: &str) -> Option<DateTime<Utc>> {
    let text = text.replacen(' ', "T", 1);
    DateTime::parse_from_rfc3339(&text)
        .map(|at| at.with_timezone(&Utc))
        .ok()
        .or_else(|| {
            NaiveDateTime::parse_from_str(&text, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|naive| naive.and_utc())
        })
}

fn object(value: &Value) -> &Map<String, Value> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("expected a JSON object, found {}", compact(value)))
}

fn text<'a>(record: &'a Map<String, Value>, key: &str) -> &'a str {
    record.get(key).and_then(Value::as_str).unwrap_or_else(|| {
        panic!(
            "{key:?} is not a string in {}",
            compact(&Value::Object(record.clone()))
        )
    })
}

fn compact(value: &Value) -> String {
    let text = value.to_string();
    if text.chars().count() > 160 {
        format!("{}…", text.chars().take(160).collect::<String>())
    } else {
        text
    }
}

// ---------------------------------------------------------------------------------------------
// A small SkillForge flat file built from parts, for tests of one case each.

/// The time of every record of a [`FlatFile`] (naive, as SkillForge writes it).
pub const FLAT_T0: &str = "2025-12-01T10:00:00";

/// A SkillForge flat file built from parts (compact JSON: the reader does not care).
pub struct FlatFile {
    pub version: &'static str,
    /// The top-level keys besides `version`, `counts` and `data`.
    pub top: Map<String, Value>,
    pub analyses: Vec<Value>,
    pub artifacts: Vec<Value>,
    pub chunks: Vec<Value>,
}

impl FlatFile {
    pub fn new(version: &'static str) -> FlatFile {
        let mut top = Map::new();
        top.insert(
            "created_at".into(),
            serde_json::json!("2025-12-12T08:33:16.928533"),
        );
        top.insert("source".into(), serde_json::json!("a test export"));
        FlatFile {
            version,
            top,
            analyses: vec![],
            artifacts: vec![],
            chunks: vec![],
        }
    }

    /// Adds an analysis `slug` with `chunks` chunks and `extra` keys; returns its id.
    pub fn analysis(&mut self, slug: &str, chunks: usize, extra: Value) -> String {
        let id = uuid_for(&format!("analysis/{slug}"));
        let mut analysis = serde_json::json!({
            "id": id, "url": format!("https://docs.rs/{slug}/latest/"), "content_type": "article",
            "title": slug, "status": "completed", "created_at": FLAT_T0, "updated_at": FLAT_T0,
        });
        if let (Value::Object(extra), Some(analysis)) = (extra, analysis.as_object_mut()) {
            analysis.extend(extra);
        }
        self.analyses.push(analysis);
        for i in 0..chunks {
            let text = format!("{slug} part {i}: retrieval depends on chunk boundaries.");
            self.chunks.push(serde_json::json!({
                "id": uuid_for(&format!("chunk/{slug}/{i}")), "analysis_id": id, "snippet": text,
                "granularity": "coarse", "section_title": format!("Part {i}"), "chunk_idx": i,
                "chunk_total": chunks, "path": [slug, format!("{slug}/part-{i}")],
                "hash": sha256_hex(&text), "content_type": "article", "language": "en",
                "model": "text-embedding-3-small", "model_version": null, "created_at": FLAT_T0,
            }));
        }
        id
    }

    /// Adds an artifact of `analysis_id` (in the file or not) with `version` and `extra` keys;
    /// returns its id.
    pub fn artifact(
        &mut self,
        seed: &str,
        analysis_id: &str,
        version: impl Into<Value>,
        extra: Value,
    ) -> String {
        let id = uuid_for(&format!("artifact/{seed}"));
        let mut artifact = serde_json::json!({
            "id": id, "analysis_id": analysis_id, "markdown_content": format!("# {seed}"),
            "version": version.into(), "artifact_metadata": {"topics": ["x"]}, "created_at": FLAT_T0,
        });
        if let (Value::Object(extra), Some(artifact)) = (extra, artifact.as_object_mut()) {
            artifact.extend(extra);
        }
        self.artifacts.push(artifact);
        id
    }

    pub fn value(&self) -> Value {
        let mut file = Map::new();
        file.insert("version".into(), serde_json::json!(self.version));
        file.extend(self.top.clone());
        file.insert(
            "counts".into(),
            serde_json::json!({"analyses": self.analyses.len(), "artifacts": self.artifacts.len(),
                               "chunks": self.chunks.len()}),
        );
        file.insert(
            "data".into(),
            serde_json::json!({"analyses": self.analyses, "artifacts": self.artifacts,
                               "chunks": self.chunks}),
        );
        Value::Object(file)
    }

    /// Writes the file as `name` in `dir`; its path.
    pub fn write(&self, dir: &Path, name: &str) -> String {
        let path = dir.join(name);
        fs::write(&path, serde_json::to_vec(&self.value()).unwrap()).unwrap();
        path.to_str().unwrap().to_string()
    }
}

// ---------------------------------------------------------------------------------------------
// Running the binary on these files.

/// Runs golden with `args` in `dir` (against `db` when given).
pub fn run(db: Option<&super::TestDb>, dir: &Path, args: &[&str]) -> std::process::Output {
    super::golden(db, dir).args(args).output().unwrap()
}

/// The output of a run that must succeed.
pub fn ok(output: std::process::Output, what: &str) -> std::process::Output {
    assert_eq!(
        output.status.code(),
        Some(0),
        "{what}\nstdout:\n{}\nstderr:\n{}",
        super::stdout_of(&output),
        super::stderr_of(&output)
    );
    output
}

/// `restore --json` with the offline embedder, which must succeed: its summary.
pub fn restore_json(db: &super::TestDb, dir: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["restore", "--json", "--embed-provider", "hash"];
    all.extend_from_slice(args);
    super::json_of(&ok(run(Some(db), dir, &all), "restore"))
}

/// `backup --status all` to `name` in `dir`; the file as JSON.
pub fn backup_json(db: &super::TestDb, dir: &Path, name: &str) -> serde_json::Value {
    ok(
        run(
            Some(db),
            dir,
            &["backup", "--output", name, "--status", "all"],
        ),
        "backup",
    );
    serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
}

/// [`backup_json`] of a backup that must verify clean.
pub fn backup_of(db: &super::TestDb, dir: &Path, name: &str) -> serde_json::Value {
    let backup = backup_json(db, dir, name);
    ok(run(None, dir, &["verify", name]), "verify of the backup");
    backup
}
