//! What `golden diff` found, as facts (`--json`) and as text for a reviewer: changes grouped
//! by analysis in file order (the analysis's own fields, then its chunks by index, then its
//! artifacts), the golden queries, a summary line of counts, and what the change does to
//! retrieval evaluation.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use super::items::{FieldChange, Kind, Place};
use super::words::word_diff;

/// What happened to one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    Added,
    Removed,
    /// Fields differ (it may have moved too).
    Changed,
    /// Only its place differs: another analysis, or another index.
    Moved,
}

/// One record that differs between the two files.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub kind: Kind,
    pub id: String,
    pub change: What,
    /// The analysis it belongs to (in the new file; in the old one when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis_id: Option<Uuid>,
    /// A chunk's index in its analysis (in the new file; in the old one when removed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chunk_index: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<Moved>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<FieldChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expected_added: Vec<Uuid>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub expected_dropped: Vec<Uuid>,
    /// The whole record, when added or removed (with `--json`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Value>,
    /// The start of an added or removed record's text, for the report's line.
    #[serde(skip)]
    pub preview: Option<String>,
    /// Where the report lists it.
    #[serde(skip)]
    pub order: Order,
}

/// A chunk's or artifact's place before and after.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Moved {
    pub from: Place,
    pub to: Place,
}

/// The position of a change in the report: its section, its analysis's position in the files,
/// its kind, its index or position within the analysis, its id.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Order {
    pub section: u8,
    /// The analysis's place: where the new file has it (a removed one just after the
    /// analysis the old file had before it), then its position in the old file.
    pub analysis: (u64, u64),
    pub kind: u8,
    pub within: i64,
    pub id: String,
}

/// Counts of one kind.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub added: u64,
    pub removed: u64,
    pub changed: u64,
    pub moved: u64,
}

impl Counts {
    fn any(&self) -> bool {
        self.added + self.removed + self.changed + self.moved > 0
    }
}

/// How many records each file holds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Sizes {
    pub analyses: u64,
    pub chunks: u64,
    pub artifacts: u64,
    pub queries: u64,
}

/// A query and a chunk it expects.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Expectation {
    pub query: String,
    pub chunk: Uuid,
}

/// What the change does to retrieval evaluation.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Evaluation {
    /// Queries of the new file that expect a chunk the new file no longer holds: they cannot
    /// be scored as before.
    pub queries_expecting_removed_chunks: Vec<Expectation>,
    /// Queries whose new expectation names a chunk neither file holds (a typo'd id, a chunk
    /// of another branch).
    pub queries_expecting_chunks_in_neither_file: Vec<Expectation>,
    /// Queries that expect a chunk whose text changed: is it still the answer?
    pub queries_expecting_changed_chunks: Vec<Expectation>,
    /// Chunks still in the dataset that some query expected and none expects any more.
    pub chunks_no_longer_expected: Vec<Uuid>,
}

impl Evaluation {
    fn is_empty(&self) -> bool {
        self.queries_expecting_removed_chunks.is_empty()
            && self.queries_expecting_chunks_in_neither_file.is_empty()
            && self.queries_expecting_changed_chunks.is_empty()
            && self.chunks_no_longer_expected.is_empty()
    }
}

/// The whole result.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub same: bool,
    pub old: String,
    pub new: String,
    pub old_dialect: String,
    pub new_dialect: String,
    /// Counts by kind: `file`, `analysis`, `chunk`, `artifact`, `query`.
    pub summary: BTreeMap<Kind, Counts>,
    pub old_size: Sizes,
    pub new_size: Sizes,
    pub changes: Vec<Change>,
    pub evaluation: Evaluation,
    /// The titles of the analyses the changes belong to, to name them in the text.
    #[serde(skip)]
    pub titles: BTreeMap<Uuid, String>,
}

impl Report {
    pub fn new(
        (old, old_dialect): (String, String),
        (new, new_dialect): (String, String),
        mut changes: Vec<Change>,
        evaluation: Evaluation,
        (old_size, new_size): (Sizes, Sizes),
        titles: BTreeMap<Uuid, String>,
    ) -> Report {
        changes.sort_by(|a, b| a.order.cmp(&b.order));
        let mut summary: BTreeMap<Kind, Counts> = [
            Kind::File,
            Kind::Analysis,
            Kind::Chunk,
            Kind::Artifact,
            Kind::Query,
        ]
        .into_iter()
        .map(|kind| (kind, Counts::default()))
        .collect();
        for change in &changes {
            let counts = summary.entry(change.kind).or_default();
            match change.change {
                What::Added => counts.added += 1,
                What::Removed => counts.removed += 1,
                What::Changed => counts.changed += 1,
                What::Moved => {}
            }
            if change.moved.is_some() {
                counts.moved += 1;
            }
        }
        Report {
            same: changes.is_empty(),
            old,
            new,
            old_dialect,
            new_dialect,
            summary,
            old_size,
            new_size,
            changes,
            evaluation,
            titles,
        }
    }

    /// The summary line: counts by kind, then the sizes of both files.
    pub fn summary_line(&self) -> String {
        let size = |s: &Sizes| {
            format!(
                "{} {}, {} {}, {} {}, {} {}",
                s.analyses,
                Kind::Analysis.noun(s.analyses),
                s.chunks,
                Kind::Chunk.noun(s.chunks),
                s.artifacts,
                Kind::Artifact.noun(s.artifacts),
                s.queries,
                Kind::Query.noun(s.queries)
            )
        };
        if self.same {
            return format!("no differences ({})", size(&self.new_size));
        }
        let parts: Vec<String> = self
            .summary
            .iter()
            .filter(|(_, counts)| counts.any())
            .map(|(kind, c)| {
                let mut said = Vec::new();
                for (n, verb) in [
                    (c.added, "added"),
                    (c.removed, "removed"),
                    (c.changed, "changed"),
                    (c.moved, "moved"),
                ] {
                    if n > 0 {
                        said.push(format!("{n} {verb}"));
                    }
                }
                format!("{}: {}", kind.noun(2), said.join(", "))
            })
            .collect();
        format!(
            "{} (old: {}; new: {})",
            parts.join("; "),
            size(&self.old_size),
            size(&self.new_size)
        )
    }

    /// The report as text, one line each, for a terminal or a pull request comment.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        // The analyses added or removed whole: their chunks and artifacts are told by count.
        let whole: BTreeMap<Uuid, What> = self
            .changes
            .iter()
            .filter(|c| c.kind == Kind::Analysis && matches!(c.change, What::Added | What::Removed))
            .filter_map(|c| c.analysis_id.map(|id| (id, c.change)))
            .collect();
        let mut parts_of_whole: BTreeMap<Uuid, (u64, u64)> = BTreeMap::new();
        for change in &self.changes {
            if let (Some(id), Kind::Chunk | Kind::Artifact) = (change.analysis_id, change.kind) {
                if whole.get(&id) == Some(&change.change) {
                    let entry = parts_of_whole.entry(id).or_default();
                    if change.kind == Kind::Chunk {
                        entry.0 += 1;
                    } else {
                        entry.1 += 1;
                    }
                }
            }
        }
        let mut current_analysis: Option<Uuid> = None;
        for change in &self.changes {
            let in_whole = matches!(change.kind, Kind::Chunk | Kind::Artifact)
                && change
                    .analysis_id
                    .is_some_and(|id| whole.get(&id) == Some(&change.change));
            if in_whole {
                continue;
            }
            let indent = match change.kind {
                Kind::Chunk | Kind::Artifact => {
                    if change.analysis_id != current_analysis {
                        if let Some(id) = change.analysis_id {
                            out.push(match self.titles.get(&id) {
                                Some(title) => format!("  analysis {id} {}", quoted(title)),
                                None => format!("  analysis {id}"),
                            });
                        }
                        current_analysis = change.analysis_id;
                    }
                    "    "
                }
                Kind::Analysis => {
                    current_analysis = change.analysis_id;
                    "  "
                }
                _ => {
                    current_analysis = None;
                    "  "
                }
            };
            out.push(format!(
                "{indent}{}",
                headline(change, &parts_of_whole, &self.titles)
            ));
            for field in &change.fields {
                out.push(format!("{indent}    {}", field_line(field)));
            }
            if !change.expected_added.is_empty() || !change.expected_dropped.is_empty() {
                let mut said = Vec::new();
                said.extend(change.expected_added.iter().map(|id| format!("+{id}")));
                said.extend(change.expected_dropped.iter().map(|id| format!("-{id}")));
                out.push(format!("{indent}    expected chunks: {}", said.join(" ")));
            }
        }
        if !self.evaluation.is_empty() {
            out.push("evaluation:".to_string());
            let e = &self.evaluation;
            for x in &e.queries_expecting_removed_chunks {
                out.push(format!(
                    "  query {} expects chunk {}, which the new file no longer holds",
                    x.query, x.chunk
                ));
            }
            for x in &e.queries_expecting_chunks_in_neither_file {
                out.push(format!(
                    "  query {} expects chunk {}, which neither file holds",
                    x.query, x.chunk
                ));
            }
            for x in &e.queries_expecting_changed_chunks {
                out.push(format!(
                    "  query {} expects chunk {}, whose text changed: is it still the answer?",
                    x.query, x.chunk
                ));
            }
            for chunk in &e.chunks_no_longer_expected {
                out.push(format!(
                    "  chunk {chunk} is no longer expected by any query"
                ));
            }
        }
        out
    }
}

/// The first line of a change: a sign, the record, what happened.
fn headline(
    change: &Change,
    parts_of_whole: &BTreeMap<Uuid, (u64, u64)>,
    titles: &BTreeMap<Uuid, String>,
) -> String {
    let sign = match change.change {
        What::Added => "+",
        What::Removed => "-",
        What::Changed => "~",
        What::Moved => ">",
    };
    let noun = change.kind.noun(1);
    let mut line = format!("{sign} {noun} {}", change.id);
    match change.kind {
        Kind::Chunk => {
            if let Some(index) = change.chunk_index {
                let _ = write!(line, " #{index}");
            }
        }
        Kind::Analysis => {
            if let Some(title) = change.analysis_id.and_then(|id| titles.get(&id)) {
                let _ = write!(line, " {}", quoted(title));
            }
            if let Some((chunks, artifacts)) =
                change.analysis_id.and_then(|id| parts_of_whole.get(&id))
            {
                let _ = write!(
                    line,
                    " with {chunks} {} and {artifacts} {}",
                    Kind::Chunk.noun(*chunks),
                    Kind::Artifact.noun(*artifacts)
                );
            }
        }
        Kind::Query => {
            if let Some(text) = &change.preview {
                let _ = write!(line, " {}", quoted(&preview(text)));
            }
        }
        _ => {}
    }
    if let Some(moved) = change.moved {
        let (from, to) = (moved.from, moved.to);
        if from.analysis_id != to.analysis_id {
            let _ = write!(
                line,
                ": moved from analysis {}{}",
                from.analysis_id,
                from.chunk_index
                    .map(|i| format!(" #{i}"))
                    .unwrap_or_default()
            );
        } else if let Some(index) = from.chunk_index {
            let _ = write!(line, ": moved from #{index}");
        }
    }
    if matches!(change.kind, Kind::Chunk | Kind::Artifact)
        && matches!(change.change, What::Added | What::Removed)
    {
        if let Some(text) = &change.preview {
            let _ = write!(line, ": {}", quoted(&preview(text)));
        }
    }
    line
}

/// `field: old → new`, with a word diff for texts.
fn field_line(field: &FieldChange) -> String {
    match (&field.old, &field.new) {
        (Some(Value::String(old)), Some(Value::String(new)))
            if old.len() + new.len() > 80 || old.contains('\n') || new.contains('\n') =>
        {
            format!("{}: {}", field.field, word_diff(old, new))
        }
        (old, new) => format!(
            "{}: {} → {}",
            field.field,
            shown(old.as_ref()),
            shown(new.as_ref())
        ),
    }
}

fn shown(value: Option<&Value>) -> String {
    match value {
        None => "(absent)".to_string(),
        Some(Value::Null) => "(none)".to_string(),
        Some(value) => preview(&value.to_string()),
    }
}

/// The start of a long text, on one line.
fn preview(text: &str) -> String {
    const MOST: usize = 72;
    let one_line = super::words::visible(text);
    match one_line.char_indices().nth(MOST) {
        Some((cut, _)) => format!("{}…", &one_line[..cut]),
        None => one_line,
    }
}

fn quoted(text: &str) -> String {
    Value::from(text).to_string()
}
