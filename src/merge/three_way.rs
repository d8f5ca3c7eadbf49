//! The three-way merge of two backups by record id, field by field: the rules that decide,
//! for every record of OURS and THEIRS, what the result holds, and what is a conflict.
//!
//! Git's text merge cannot merge two backups (every backup rewrites the header, and a record's
//! lines mean nothing to it), but the records have ids: a field changed on one side only is
//! that side's, the same change on both is taken, different changes are a conflict; a record
//! added on one side is taken; one deleted on one side and unchanged on the other is deleted,
//! and deleted on one side but changed on the other is a conflict. Three rules go beyond one
//! record, because the records of a backup hang together:
//!
//! - an analysis deleted on one side is one decision: if the other side changed anything of it
//!   (its own fields, a chunk or artifact of it, a chunk it added to it, a query it made expect
//!   one of its chunks), the whole analysis is one conflict, never half of it kept;
//! - a chunk deleted on one side that a query of the other side newly expects is a conflict;
//! - two different chunks at one place (analysis, chunk_index), or two artifacts of one
//!   analysis with the same version, that no side had together, are a conflict.
//!
//! A query's expected chunks merge as a set: BASE's, plus what either side added, minus what
//! either side removed, in ours' order and then theirs' additions.
//!
//! The merge yields two complete results: every conflict resolved as ours, and as theirs
//! (equal when there is no conflict), from which `markers` lays out the conflicted file.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::rc::Rc;

use color_eyre::eyre::eyre;
use color_eyre::Result;
use serde_json::Value;
use uuid::Uuid;

use super::dataset::{
    field_digest, Base, Child, Dataset, FieldKey, Fielded, Fields, Fingerprint, EXPECTED_CHUNK_IDS,
};
use crate::backup_file::record::{BackupArtifact, BackupChunk, BackupQuery};

/// One of the two sides being merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Side {
    Ours,
    Theirs,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Ours => "ours",
            Side::Theirs => "theirs",
        }
    }

    pub fn other(self) -> Side {
        match self {
            Side::Ours => Side::Theirs,
            Side::Theirs => Side::Ours,
        }
    }
}

/// What a conflict is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subject {
    /// The file-level keys (`metadata.status_filter`, the keys golden does not define).
    File,
    Analysis(Uuid),
    Chunk(Uuid),
    Artifact(Uuid),
    Query(String),
    /// A place of a chunk two different chunks took.
    ChunkPlace {
        analysis: Uuid,
        chunk_index: i32,
    },
    /// A version of an analysis's artifact two different artifacts took.
    ArtifactVersion {
        analysis: Uuid,
        version: Option<i32>,
    },
}

/// A field both sides set differently.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConflict {
    pub field: FieldKey,
    /// BASE's value, when the report looked it up (`None`: unknown or absent).
    pub base: Option<Value>,
    pub ours: Option<Value>,
    pub theirs: Option<Value>,
}

/// How the sides disagree.
#[derive(Debug, Clone, PartialEq)]
pub enum Disagreement {
    /// Fields both sides changed differently; `added_on_both`: the record is not in BASE.
    Fields {
        added_on_both: bool,
        fields: Vec<FieldConflict>,
    },
    /// One side deleted the record, the other changed it (`changes` says how).
    DeletedChanged {
        deleted_by: Side,
        changes: Vec<String>,
    },
    /// Different records at one place: which each side has there.
    Place { ours: Vec<Uuid>, theirs: Vec<Uuid> },
}

/// One conflict.
#[derive(Debug, Clone, PartialEq)]
pub struct Conflict {
    pub subject: Subject,
    pub disagreement: Disagreement,
}

/// The result of a merge: complete data with every conflict resolved as ours, and as theirs.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub ours: Dataset,
    pub theirs: Dataset,
    /// Sorted by subject.
    pub conflicts: Vec<Conflict>,
}

impl Merged {
    fn side_mut(&mut self, side: Side) -> &mut Dataset {
        match side {
            Side::Ours => &mut self.ours,
            Side::Theirs => &mut self.theirs,
        }
    }
}

/// The fields of two records merged: as ours resolves the conflicts, as theirs does.
#[derive(Default)]
struct FieldsMerged {
    ours: Fields,
    theirs: Fields,
    conflicts: Vec<FieldConflict>,
}

/// Merges the fields of a record both sides have; `base` is BASE's (none: added on both, where
/// any difference is a conflict).
fn merge_fields(
    base: Option<&Fingerprint>,
    ours: &Fields,
    theirs: &Fields,
    set: Option<&str>,
) -> FieldsMerged {
    let mut merged = FieldsMerged::default();
    let keys: BTreeSet<&FieldKey> = ours.keys().chain(theirs.keys()).collect();
    for key in keys {
        let (in_ours, in_theirs) = (ours.get(key), theirs.get(key));
        let taken = if in_ours == in_theirs {
            Some(in_ours)
        } else if let Some(base) = base {
            let in_base = base.get(key);
            let digest = |value: Option<&Value>| value.map(|value| field_digest(key, value, set));
            if digest(in_ours).as_ref() == in_base {
                Some(in_theirs)
            } else if digest(in_theirs).as_ref() == in_base {
                Some(in_ours)
            } else {
                None
            }
        } else {
            None
        };
        match taken {
            Some(value) => {
                if let Some(value) = value {
                    merged.ours.insert(key.clone(), value.clone());
                    merged.theirs.insert(key.clone(), value.clone());
                }
            }
            None => {
                if let Some(value) = in_ours {
                    merged.ours.insert(key.clone(), value.clone());
                }
                if let Some(value) = in_theirs {
                    merged.theirs.insert(key.clone(), value.clone());
                }
                merged.conflicts.push(FieldConflict {
                    field: key.clone(),
                    base: None,
                    ours: in_ours.cloned(),
                    theirs: in_theirs.cloned(),
                });
            }
        }
    }
    merged
}

/// A query's expected chunks merged as a set: BASE's, plus both sides' additions, minus both
/// sides' removals; in ours' order, then theirs' additions in theirs' order.
pub fn merge_expected(base: Option<&[Uuid]>, ours: &[Uuid], theirs: &[Uuid]) -> Vec<Uuid> {
    let base: HashSet<&Uuid> = base.unwrap_or_default().iter().collect();
    let in_ours: HashSet<&Uuid> = ours.iter().collect();
    let in_theirs: HashSet<&Uuid> = theirs.iter().collect();
    let mut seen = HashSet::new();
    let mut merged = Vec::new();
    for id in ours {
        let removed_by_theirs = base.contains(id) && !in_theirs.contains(id);
        if !removed_by_theirs && seen.insert(*id) {
            merged.push(*id);
        }
    }
    for id in theirs {
        let added_by_theirs = !base.contains(id) && !in_ours.contains(id);
        if added_by_theirs && seen.insert(*id) {
            merged.push(*id);
        }
    }
    merged
}

/// What the merge of one record gives.
enum Outcome<R> {
    /// Not in the result: deleted on both sides, or on one and unchanged on the other.
    Gone,
    /// The same in both results.
    Same(R),
    /// A conflict: the record as each resolution has it.
    Split {
        ours: Option<R>,
        theirs: Option<R>,
        disagreement: Disagreement,
    },
}

/// "content, chunk_index": fields for a message.
pub fn field_list(fields: &[FieldKey]) -> String {
    fields
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// Merges one record (`id`) of BASE (its fingerprint), OURS and THEIRS. `adjust` may set
/// fields of both sides to a value merged otherwise before the fields are compared (the
/// expected chunks of a query).
fn merge_record<R: Fielded>(
    id: &str,
    base: Option<&Fingerprint>,
    ours: Option<&Rc<R>>,
    theirs: Option<&Rc<R>>,
    adjust: &dyn Fn(&mut Fields, &mut Fields),
) -> Result<Outcome<Rc<R>>> {
    let set = R::set_field();
    Ok(match (ours, theirs) {
        (Some(ours), Some(theirs)) if ours == theirs => Outcome::Same(Rc::clone(ours)),
        (None, None) => Outcome::Gone,
        (Some(only), None) | (None, Some(only)) => {
            let deleted_by = if ours.is_none() {
                Side::Ours
            } else {
                Side::Theirs
            };
            match base {
                None => Outcome::Same(Rc::clone(only)),
                Some(base) => {
                    let changed = base.changed_fields(&only.fields(), set);
                    if changed.is_empty() {
                        Outcome::Gone
                    } else {
                        let kept = Some(Rc::clone(only));
                        let (ours, theirs) = match deleted_by {
                            Side::Ours => (None, kept),
                            Side::Theirs => (kept, None),
                        };
                        Outcome::Split {
                            ours,
                            theirs,
                            disagreement: Disagreement::DeletedChanged {
                                deleted_by,
                                changes: vec![format!("changed {}", field_list(&changed))],
                            },
                        }
                    }
                }
            }
        }
        (Some(ours), Some(theirs)) => {
            let (mut ours_fields, mut theirs_fields) = (ours.fields(), theirs.fields());
            adjust(&mut ours_fields, &mut theirs_fields);
            let merged = merge_fields(base, &ours_fields, &theirs_fields, set);
            if merged.conflicts.is_empty() {
                Outcome::Same(Rc::new(R::from_fields(id, &merged.ours)?))
            } else {
                Outcome::Split {
                    ours: Some(Rc::new(R::from_fields(id, &merged.ours)?)),
                    theirs: Some(Rc::new(R::from_fields(id, &merged.theirs)?)),
                    disagreement: Disagreement::Fields {
                        added_on_both: base.is_none(),
                        fields: merged.conflicts,
                    },
                }
            }
        }
    })
}

/// The keys of three maps, once each, in order.
fn union_of<'a, K: Ord + Clone + 'a>(
    keys: [Box<dyn Iterator<Item = &'a K> + 'a>; 3],
) -> BTreeSet<K> {
    keys.into_iter().flatten().cloned().collect()
}

/// Where one merged record goes.
fn place_outcome<K: Ord + Clone, R>(
    outcome: Outcome<R>,
    key: &K,
    subject: Subject,
    merged_ours: &mut BTreeMap<K, R>,
    merged_theirs: &mut BTreeMap<K, R>,
    conflicts: &mut Vec<Conflict>,
) where
    R: Clone,
{
    match outcome {
        Outcome::Gone => {}
        Outcome::Same(record) => {
            merged_ours.insert(key.clone(), record.clone());
            merged_theirs.insert(key.clone(), record);
        }
        Outcome::Split {
            ours,
            theirs,
            disagreement,
        } => {
            if let Some(record) = ours {
                merged_ours.insert(key.clone(), record);
            }
            if let Some(record) = theirs {
                merged_theirs.insert(key.clone(), record);
            }
            conflicts.push(Conflict {
                subject,
                disagreement,
            });
        }
    }
}

/// The ids of a side's chunks or artifacts, by the analysis they belong to.
fn children_of<R>(records: &BTreeMap<Uuid, Rc<Child<R>>>) -> BTreeMap<Uuid, Vec<Uuid>> {
    let mut children: BTreeMap<Uuid, Vec<Uuid>> = BTreeMap::new();
    for (id, child) in records {
        children.entry(child.analysis).or_default().push(*id);
    }
    children
}

/// For each chunk, the queries of `side` that expect it and did not in BASE.
fn newly_expected(base: &Base, side: &Dataset) -> BTreeMap<Uuid, Vec<String>> {
    let mut newly: BTreeMap<Uuid, Vec<String>> = BTreeMap::new();
    for (id, query) in &side.queries {
        let before = base.queries.get(id).map(|query| &query.expected);
        for chunk in &query.expected_chunk_ids {
            if before.is_none_or(|before| !before.contains(chunk)) {
                newly.entry(*chunk).or_default().push(id.clone());
            }
        }
    }
    newly
}

/// A side's records and what the merge derived from them.
struct SideView<'a> {
    data: &'a Dataset,
    chunks_of: BTreeMap<Uuid, Vec<Uuid>>,
    artifacts_of: BTreeMap<Uuid, Vec<Uuid>>,
    newly_expected: BTreeMap<Uuid, Vec<String>>,
}

impl<'a> SideView<'a> {
    fn new(base: &Base, data: &'a Dataset) -> SideView<'a> {
        SideView {
            data,
            chunks_of: children_of(&data.chunks),
            artifacts_of: children_of(&data.artifacts),
            newly_expected: newly_expected(base, data),
        }
    }
}

/// Merges OURS and THEIRS, whose common ancestor is `base`.
pub fn merge(base: &Base, ours: &Dataset, theirs: &Dataset) -> Result<Merged> {
    let created_at = ours.created_at.max(theirs.created_at);
    let mut merged = Merged {
        ours: Dataset {
            created_at,
            ..Dataset::default()
        },
        theirs: Dataset {
            created_at,
            ..Dataset::default()
        },
        conflicts: Vec::new(),
    };

    let file = merge_fields(base.file.as_ref(), &ours.file, &theirs.file, None);
    if !file.conflicts.is_empty() {
        merged.conflicts.push(Conflict {
            subject: Subject::File,
            disagreement: Disagreement::Fields {
                added_on_both: base.file.is_none(),
                fields: file.conflicts,
            },
        });
    }
    merged.ours.file = file.ours;
    merged.theirs.file = file.theirs;

    let no_adjustment = |_: &mut Fields, _: &mut Fields| {};
    for id in union_of([
        Box::new(base.analyses.keys()),
        Box::new(ours.analyses.keys()),
        Box::new(theirs.analyses.keys()),
    ]) {
        let outcome = merge_record(
            &id.to_string(),
            base.analyses.get(&id),
            ours.analyses.get(&id),
            theirs.analyses.get(&id),
            &no_adjustment,
        )?;
        place_outcome(
            outcome,
            &id,
            Subject::Analysis(id),
            &mut merged.ours.analyses,
            &mut merged.theirs.analyses,
            &mut merged.conflicts,
        );
    }
    for id in union_of([
        Box::new(base.chunks.keys()),
        Box::new(ours.chunks.keys()),
        Box::new(theirs.chunks.keys()),
    ]) {
        let outcome = merge_record(
            &id.to_string(),
            base.chunks.get(&id).map(|chunk| &chunk.fingerprint),
            ours.chunks.get(&id),
            theirs.chunks.get(&id),
            &no_adjustment,
        )?;
        place_outcome(
            outcome,
            &id,
            Subject::Chunk(id),
            &mut merged.ours.chunks,
            &mut merged.theirs.chunks,
            &mut merged.conflicts,
        );
    }
    for id in union_of([
        Box::new(base.artifacts.keys()),
        Box::new(ours.artifacts.keys()),
        Box::new(theirs.artifacts.keys()),
    ]) {
        let outcome = merge_record(
            &id.to_string(),
            base.artifacts
                .get(&id)
                .map(|artifact| &artifact.fingerprint),
            ours.artifacts.get(&id),
            theirs.artifacts.get(&id),
            &no_adjustment,
        )?;
        place_outcome(
            outcome,
            &id,
            Subject::Artifact(id),
            &mut merged.ours.artifacts,
            &mut merged.theirs.artifacts,
            &mut merged.conflicts,
        );
    }
    for id in union_of([
        Box::new(base.queries.keys()),
        Box::new(ours.queries.keys()),
        Box::new(theirs.queries.keys()),
    ]) {
        let base_query = base.queries.get(&id);
        let expected = |ours: &mut Fields, theirs: &mut Fields| {
            let ids = |fields: &Fields| -> Vec<Uuid> {
                fields
                    .get(&FieldKey::Key(EXPECTED_CHUNK_IDS.into()))
                    .and_then(|value| serde_json::from_value(value.clone()).ok())
                    .unwrap_or_default()
            };
            let expected = merge_expected(
                base_query.map(|query| query.expected.as_slice()),
                &ids(ours),
                &ids(theirs),
            );
            let value = Value::Array(
                expected
                    .iter()
                    .map(|id| Value::String(id.to_string()))
                    .collect(),
            );
            ours.insert(FieldKey::Key(EXPECTED_CHUNK_IDS.into()), value.clone());
            theirs.insert(FieldKey::Key(EXPECTED_CHUNK_IDS.into()), value);
        };
        let outcome = merge_record::<BackupQuery>(
            &id,
            base_query.map(|query| &query.fingerprint),
            ours.queries.get(&id),
            theirs.queries.get(&id),
            &expected,
        )?;
        place_outcome(
            outcome,
            &id,
            Subject::Query(id.clone()),
            &mut merged.ours.queries,
            &mut merged.theirs.queries,
            &mut merged.conflicts,
        );
    }

    let ours_view = SideView::new(base, ours);
    let theirs_view = SideView::new(base, theirs);
    let grouped = analysis_deletions(base, &ours_view, &theirs_view, &mut merged);
    chunk_deletions_newly_expected(base, &ours_view, &theirs_view, &grouped, &mut merged);
    place_clashes(ours, theirs, &mut merged);
    references_follow_their_chunks(ours, theirs, &mut merged);
    check_complete(&merged)?;
    merged.conflicts.sort_by(|a, b| a.subject.cmp(&b.subject));
    Ok(merged)
}

/// The side named `side` of the two views.
fn view<'v, 'a>(side: Side, ours: &'v SideView<'a>, theirs: &'v SideView<'a>) -> &'v SideView<'a> {
    match side {
        Side::Ours => ours,
        Side::Theirs => theirs,
    }
}

/// An analysis one side deleted: a clean deletion when the other side changed nothing of it,
/// else one conflict for the whole analysis (the analysis as the other side has it, against
/// none of it). Returns the chunks those conflicts hold.
fn analysis_deletions(
    base: &Base,
    ours: &SideView,
    theirs: &SideView,
    merged: &mut Merged,
) -> BTreeSet<Uuid> {
    let mut grouped = BTreeSet::new();
    let no_children = Vec::new();
    for (analysis, base_head) in &base.analyses {
        let deleter = match (
            ours.data.analyses.contains_key(analysis),
            theirs.data.analyses.contains_key(analysis),
        ) {
            (false, true) => Side::Ours,
            (true, false) => Side::Theirs,
            _ => continue,
        };
        let (x, y) = (
            view(deleter, ours, theirs),
            view(deleter.other(), ours, theirs),
        );
        let Some(y_head) = y.data.analyses.get(analysis) else {
            continue;
        };
        let mut changes = Vec::new();
        let head_changes = base_head.changed_fields(&y_head.fields(), None);
        if !head_changes.is_empty() {
            changes.push(format!("changed its {}", field_list(&head_changes)));
        }
        let y_chunks = y.chunks_of.get(analysis).unwrap_or(&no_children);
        for (chunk, record) in y_chunks
            .iter()
            .filter_map(|id| y.data.chunks.get(id).map(|record| (id, record)))
        {
            if let Some(change) = child_change(
                "chunk",
                chunk,
                *analysis,
                base.chunks.get(chunk).map(|b| (b.analysis, &b.fingerprint)),
                &**record,
            ) {
                changes.push(change);
            }
        }
        let y_artifacts = y.artifacts_of.get(analysis).unwrap_or(&no_children);
        for (artifact, record) in y_artifacts
            .iter()
            .filter_map(|id| y.data.artifacts.get(id).map(|record| (id, record)))
        {
            if let Some(change) = child_change(
                "artifact",
                artifact,
                *analysis,
                base.artifacts
                    .get(artifact)
                    .map(|b| (b.analysis, &b.fingerprint)),
                &**record,
            ) {
                changes.push(change);
            }
        }
        for chunk in y_chunks {
            for query in y.newly_expected.get(chunk).into_iter().flatten() {
                changes.push(format!("made query {query} expect its chunk {chunk}"));
            }
        }
        if changes.is_empty() {
            continue;
        }
        let deleted_chunks: Vec<Uuid> = y_chunks
            .iter()
            .filter(|id| !x.data.chunks.contains_key(id))
            .copied()
            .collect();
        let deleted_artifacts: Vec<Uuid> = y_artifacts
            .iter()
            .filter(|id| !x.data.artifacts.contains_key(id))
            .copied()
            .collect();
        merged.conflicts.retain(|conflict| match &conflict.subject {
            Subject::Analysis(id) => id != analysis,
            Subject::Chunk(id) => !deleted_chunks.contains(id),
            Subject::Artifact(id) => !deleted_artifacts.contains(id),
            _ => true,
        });
        // As the deleting side resolves it: none of the analysis; what that side has of its
        // records elsewhere stays where that side has it (unless that is an analysis the other
        // side deleted: then this resolution has no place for it).
        let deleted = merged.side_mut(deleter);
        deleted.analyses.remove(analysis);
        for chunk in y_chunks {
            match x.data.chunks.get(chunk) {
                Some(own) if !deleted.analyses.contains_key(&own.analysis) => {
                    deleted.chunks.remove(chunk);
                }
                Some(own) => {
                    if let Some(entry) = deleted.chunks.get_mut(chunk) {
                        let entry = Rc::make_mut(entry);
                        entry.analysis = own.analysis;
                        entry.record.chunk_index = own.record.chunk_index;
                    }
                }
                None => {
                    deleted.chunks.remove(chunk);
                }
            }
        }
        for artifact in y_artifacts {
            match x.data.artifacts.get(artifact) {
                Some(own) if !deleted.analyses.contains_key(&own.analysis) => {
                    deleted.artifacts.remove(artifact);
                }
                Some(own) => {
                    if let Some(entry) = deleted.artifacts.get_mut(artifact) {
                        let entry = Rc::make_mut(entry);
                        entry.analysis = own.analysis;
                        entry.record.version = own.record.version;
                    }
                }
                None => {
                    deleted.artifacts.remove(artifact);
                }
            }
        }
        // As the other side resolves it: the analysis as that side has it.
        let kept = merged.side_mut(deleter.other());
        kept.analyses.insert(*analysis, y_head.clone());
        for chunk in &deleted_chunks {
            if let Some(record) = y.data.chunks.get(chunk) {
                kept.chunks.insert(*chunk, record.clone());
            }
        }
        for artifact in &deleted_artifacts {
            if let Some(record) = y.data.artifacts.get(artifact) {
                kept.artifacts.insert(*artifact, record.clone());
            }
        }
        grouped.extend(deleted_chunks);
        merged.conflicts.push(Conflict {
            subject: Subject::Analysis(*analysis),
            disagreement: Disagreement::DeletedChanged {
                deleted_by: deleter,
                changes,
            },
        });
    }
    grouped
}

/// What the surviving side did to a chunk or artifact of `analysis`, if anything.
fn child_change<R: Fielded>(
    what: &str,
    id: &Uuid,
    analysis: Uuid,
    in_base: Option<(Uuid, &Fingerprint)>,
    record: &R,
) -> Option<String> {
    match in_base {
        None => Some(format!("added {what} {id}")),
        Some((before, _)) if before != analysis => Some(format!("moved {what} {id} into it")),
        Some((_, fingerprint)) => {
            let changed = fingerprint.changed_fields(&record.fields(), R::set_field());
            (!changed.is_empty()).then(|| format!("changed {what} {id} ({})", field_list(&changed)))
        }
    }
}

/// A chunk one side deleted that a query of the other side newly expects: a conflict (the
/// chunk kept, against deleted), or a note on the conflict it already is.
fn chunk_deletions_newly_expected(
    base: &Base,
    ours: &SideView,
    theirs: &SideView,
    grouped: &BTreeSet<Uuid>,
    merged: &mut Merged,
) {
    for chunk in base.chunks.keys() {
        if grouped.contains(chunk) {
            continue;
        }
        let deleter = match (
            ours.data.chunks.contains_key(chunk),
            theirs.data.chunks.contains_key(chunk),
        ) {
            (false, true) => Side::Ours,
            (true, false) => Side::Theirs,
            _ => continue,
        };
        let y = view(deleter.other(), ours, theirs);
        let (Some(queries), Some(record)) = (y.newly_expected.get(chunk), y.data.chunks.get(chunk))
        else {
            continue;
        };
        let notes: Vec<String> = queries
            .iter()
            .map(|query| format!("made query {query} expect it"))
            .collect();
        let existing = merged
            .conflicts
            .iter_mut()
            .find(|conflict| conflict.subject == Subject::Chunk(*chunk));
        match existing {
            Some(Conflict {
                disagreement: Disagreement::DeletedChanged { changes, .. },
                ..
            }) => changes.extend(notes),
            Some(_) => {}
            None => {
                merged
                    .side_mut(deleter.other())
                    .chunks
                    .insert(*chunk, record.clone());
                merged.conflicts.push(Conflict {
                    subject: Subject::Chunk(*chunk),
                    disagreement: Disagreement::DeletedChanged {
                        deleted_by: deleter,
                        changes: notes,
                    },
                });
            }
        }
    }
}

/// Two records of one result at one place (a chunk's analysis and chunk_index, an artifact's
/// analysis and version) that neither side had together: each resolution puts back the
/// records it has as it has them, and leaves out those it does not have (or has in an
/// analysis the result no longer holds, one the other side deleted), until no such clash is
/// left. Returns the places that clashed and the records there.
fn resolve_places<R: Clone, P: Ord + Clone>(
    result: &mut BTreeMap<Uuid, Rc<Child<R>>>,
    own: &BTreeMap<Uuid, Rc<Child<R>>>,
    place: impl Fn(&Child<R>) -> P,
    put_back: impl Fn(&mut Child<R>, &Child<R>),
    has_analysis: impl Fn(&Uuid) -> bool,
) -> BTreeMap<P, BTreeSet<Uuid>> {
    let mut clashed: BTreeMap<P, BTreeSet<Uuid>> = BTreeMap::new();
    loop {
        let mut at: BTreeMap<P, Vec<Uuid>> = BTreeMap::new();
        for (id, record) in result.iter() {
            at.entry(place(record)).or_default().push(*id);
        }
        let mut changed = false;
        for (here, ids) in at.into_iter().filter(|(_, ids)| ids.len() > 1) {
            // The side had these there itself (artifacts of one version): not the merge's doing.
            if ids
                .iter()
                .all(|id| own.get(id).is_some_and(|record| place(record) == here))
            {
                continue;
            }
            clashed.entry(here.clone()).or_default().extend(&ids);
            for id in ids {
                match own.get(&id) {
                    // Its own place is in an analysis this result no longer holds (the other
                    // side deleted it): this resolution has no place for it.
                    Some(own_record) if !has_analysis(&own_record.analysis) => {
                        result.remove(&id);
                        changed = true;
                    }
                    Some(own_record) => {
                        if let Some(entry) = result.get_mut(&id) {
                            if place(entry) != place(own_record) {
                                put_back(Rc::make_mut(entry), own_record);
                                changed = true;
                            }
                        }
                    }
                    None => {
                        result.remove(&id);
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            return clashed;
        }
    }
}

/// The records of `ids` that `side` has at `here`.
fn held_at<R, P: PartialEq>(
    side: &BTreeMap<Uuid, Rc<Child<R>>>,
    ids: &BTreeSet<Uuid>,
    here: &P,
    place: impl Fn(&Child<R>) -> P,
) -> Vec<Uuid> {
    ids.iter()
        .filter(|id| side.get(id).is_some_and(|record| place(record) == *here))
        .copied()
        .collect()
}

fn place_clashes(ours: &Dataset, theirs: &Dataset, merged: &mut Merged) {
    let chunk_place = |chunk: &Child<BackupChunk>| (chunk.analysis, chunk.record.chunk_index);
    let put_chunk_back = |entry: &mut Child<BackupChunk>, own: &Child<BackupChunk>| {
        entry.analysis = own.analysis;
        entry.record.chunk_index = own.record.chunk_index;
    };
    let chunk_clashes = clashes_in_both(
        (&mut merged.ours.chunks, &ours.chunks, |analysis| {
            merged.ours.analyses.contains_key(analysis)
        }),
        (&mut merged.theirs.chunks, &theirs.chunks, |analysis| {
            merged.theirs.analyses.contains_key(analysis)
        }),
        chunk_place,
        put_chunk_back,
    );
    for (here, ours_ids, theirs_ids) in chunk_clashes {
        merged.conflicts.push(Conflict {
            subject: Subject::ChunkPlace {
                analysis: here.0,
                chunk_index: here.1,
            },
            disagreement: Disagreement::Place {
                ours: ours_ids,
                theirs: theirs_ids,
            },
        });
    }

    let artifact_place =
        |artifact: &Child<BackupArtifact>| (artifact.analysis, artifact.record.version);
    let put_artifact_back = |entry: &mut Child<BackupArtifact>, own: &Child<BackupArtifact>| {
        entry.analysis = own.analysis;
        entry.record.version = own.record.version;
    };
    let artifact_clashes = clashes_in_both(
        (&mut merged.ours.artifacts, &ours.artifacts, |analysis| {
            merged.ours.analyses.contains_key(analysis)
        }),
        (
            &mut merged.theirs.artifacts,
            &theirs.artifacts,
            |analysis| merged.theirs.analyses.contains_key(analysis),
        ),
        artifact_place,
        put_artifact_back,
    );
    for (here, ours_ids, theirs_ids) in artifact_clashes {
        merged.conflicts.push(Conflict {
            subject: Subject::ArtifactVersion {
                analysis: here.0,
                version: here.1,
            },
            disagreement: Disagreement::Place {
                ours: ours_ids,
                theirs: theirs_ids,
            },
        });
    }
}

/// One resolution's records of a kind, its own side's records of that kind, and whether the
/// resolution holds an analysis.
type Resolution<'a, R, F> = (
    &'a mut BTreeMap<Uuid, Rc<Child<R>>>,
    &'a BTreeMap<Uuid, Rc<Child<R>>>,
    F,
);

/// [`resolve_places`] in both resolutions: every place two records share in either, with the
/// records of it that ours and that theirs hold there.
fn clashes_in_both<R: Clone, P: Ord + Clone>(
    (as_ours, ours, ours_has): Resolution<'_, R, impl Fn(&Uuid) -> bool>,
    (as_theirs, theirs, theirs_has): Resolution<'_, R, impl Fn(&Uuid) -> bool>,
    place: impl Fn(&Child<R>) -> P + Copy,
    put_back: impl Fn(&mut Child<R>, &Child<R>) + Copy,
) -> Vec<(P, Vec<Uuid>, Vec<Uuid>)> {
    let mut clashes = resolve_places(as_ours, ours, place, put_back, ours_has);
    for (here, ids) in resolve_places(as_theirs, theirs, place, put_back, theirs_has) {
        clashes.entry(here).or_default().extend(ids);
    }
    clashes
        .into_iter()
        .map(|(here, ids)| {
            let ours_ids = held_at(ours, &ids, &here, place);
            let theirs_ids = held_at(theirs, &ids, &here, place);
            (here, ours_ids, theirs_ids)
        })
        .collect()
}

/// A query's expected chunk that one resolution of a conflict keeps and the other leaves out
/// follows the chunk: the resolution without it does not expect it (a query the other side
/// pointed at a chunk this side deleted), the resolution with it expects it if that side's own
/// query did (references the deleting side removed with the chunk).
fn references_follow_their_chunks(ours: &Dataset, theirs: &Dataset, merged: &mut Merged) {
    let in_ours: HashSet<Uuid> = merged.ours.chunks.keys().copied().collect();
    let in_theirs: HashSet<Uuid> = merged.theirs.chunks.keys().copied().collect();
    let only_in_ours: HashSet<Uuid> = in_ours.difference(&in_theirs).copied().collect();
    let only_in_theirs: HashSet<Uuid> = in_theirs.difference(&in_ours).copied().collect();
    for (result, side, only_here, only_there) in [
        (&mut merged.ours, ours, &only_in_ours, &only_in_theirs),
        (&mut merged.theirs, theirs, &only_in_theirs, &only_in_ours),
    ] {
        for (id, query) in result.queries.iter_mut() {
            let mut expected: Vec<Uuid> = query
                .expected_chunk_ids
                .iter()
                .filter(|chunk| !only_there.contains(chunk))
                .copied()
                .collect();
            if let Some(own) = side.queries.get(id) {
                for chunk in &own.expected_chunk_ids {
                    if only_here.contains(chunk) && !expected.contains(chunk) {
                        expected.push(*chunk);
                    }
                }
            }
            if expected != query.expected_chunk_ids {
                Rc::make_mut(query).expected_chunk_ids = expected;
            }
        }
    }
}

/// Every chunk and artifact of both results belongs to an analysis of that result: the rules
/// above guarantee it; a merge that breaks it stops rather than write a file that loses them.
fn check_complete(merged: &Merged) -> Result<()> {
    for (side, result) in [(Side::Ours, &merged.ours), (Side::Theirs, &merged.theirs)] {
        let orphan = result
            .chunks
            .iter()
            .map(|(id, chunk)| ("chunk", id, chunk.analysis))
            .chain(
                result
                    .artifacts
                    .iter()
                    .map(|(id, artifact)| ("artifact", id, artifact.analysis)),
            )
            .find(|(_, _, analysis)| !result.analyses.contains_key(analysis));
        if let Some((what, id, analysis)) = orphan {
            return Err(eyre!(
                "internal error: the merge resolved as {} leaves {what} {id} without its analysis \
                 {analysis}; nothing was written: merge this file by hand, and report it",
                side.name()
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::dataset::testing::{
        chunk, chunk_mut, head, head_mut, query, query_mut, sample, uuid,
    };

    fn merge_of(base: &Dataset, ours: &Dataset, theirs: &Dataset) -> Merged {
        merge(&Base::of(base), ours, theirs).unwrap()
    }

    #[test]
    fn unrelated_edits_merge_cleanly() {
        let base = sample();
        let mut ours = base.clone();
        chunk_mut(&mut ours, 11).record.content = "a, edited".into();
        let mut theirs = base.clone();
        head_mut(&mut theirs, 2).title = Some("two, edited".into());
        theirs.queries.insert("q2".into(), query("q2", &[22]));
        let merged = merge_of(&base, &ours, &theirs);
        assert!(merged.conflicts.is_empty(), "{:?}", merged.conflicts);
        assert_eq!(merged.ours, merged.theirs);
        assert_eq!(merged.ours.chunks[&uuid(11)].record.content, "a, edited");
        assert_eq!(
            merged.ours.analyses[&uuid(2)].title.as_deref(),
            Some("two, edited")
        );
        assert!(merged.ours.queries.contains_key("q2"));
    }

    #[test]
    fn one_field_changed_differently_is_a_conflict_with_both_values() {
        let base = sample();
        let mut ours = base.clone();
        chunk_mut(&mut ours, 12).record.content = "ours".into();
        let mut theirs = base.clone();
        chunk_mut(&mut theirs, 12).record.content = "theirs".into();
        // The same change on both sides is no conflict.
        head_mut(&mut ours, 1).title = Some("same".into());
        head_mut(&mut theirs, 1).title = Some("same".into());
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        let conflict = &merged.conflicts[0];
        assert_eq!(conflict.subject, Subject::Chunk(uuid(12)));
        let Disagreement::Fields {
            fields,
            added_on_both,
        } = &conflict.disagreement
        else {
            panic!("{conflict:?}");
        };
        assert!(!added_on_both);
        assert_eq!(fields.len(), 1);
        assert_eq!(fields[0].field, FieldKey::Key("content".into()));
        assert_eq!(fields[0].ours, Some(Value::from("ours")));
        assert_eq!(fields[0].theirs, Some(Value::from("theirs")));
        assert_eq!(merged.ours.chunks[&uuid(12)].record.content, "ours");
        assert_eq!(merged.theirs.chunks[&uuid(12)].record.content, "theirs");
        assert_eq!(
            merged.ours.analyses[&uuid(1)].title.as_deref(),
            Some("same")
        );
    }

    #[test]
    fn expected_chunks_merge_as_a_set_in_a_stable_order() {
        let (a, b, c, d, e) = (uuid(1), uuid(2), uuid(3), uuid(4), uuid(5));
        // Ours removes b and adds d; theirs removes c and adds e; both keep a.
        assert_eq!(
            merge_expected(Some(&[a, b, c]), &[d, a, c], &[a, b, e]),
            vec![d, a, e]
        );
        // Added on both (no base): the union, ours' order first.
        assert_eq!(merge_expected(None, &[b, a], &[c, a]), vec![b, a, c]);
        // A reordering alone changes nothing, and duplicates go.
        assert_eq!(
            merge_expected(Some(&[a, b]), &[b, a, b], &[a, b]),
            vec![b, a]
        );

        let base = sample();
        let mut ours = base.clone();
        query_mut(&mut ours, "q1").expected_chunk_ids = vec![uuid(11), uuid(12)];
        let mut theirs = base.clone();
        query_mut(&mut theirs, "q1").expected_chunk_ids = vec![uuid(21), uuid(11)];
        let merged = merge_of(&base, &ours, &theirs);
        assert!(merged.conflicts.is_empty(), "{:?}", merged.conflicts);
        assert_eq!(
            merged.ours.queries["q1"].expected_chunk_ids,
            vec![uuid(11), uuid(12), uuid(21)]
        );
    }

    #[test]
    fn records_added_on_both_sides_merge_when_equal_and_conflict_on_differing_fields() {
        let base = sample();
        let (mut ours, mut theirs) = (base.clone(), base.clone());
        for side in [&mut ours, &mut theirs] {
            side.analyses.insert(uuid(3), head(3, "three"));
            side.chunks.insert(uuid(31), chunk(31, 3, 0, "same text"));
        }
        ours.chunks
            .insert(uuid(32), chunk(32, 3, 1, "ours' second"));
        theirs
            .chunks
            .insert(uuid(32), chunk(32, 3, 1, "theirs' second"));
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        assert_eq!(merged.conflicts[0].subject, Subject::Chunk(uuid(32)));
        assert!(matches!(
            merged.conflicts[0].disagreement,
            Disagreement::Fields {
                added_on_both: true,
                ..
            }
        ));
        assert_eq!(
            merged.ours.chunks[&uuid(31)],
            merged.theirs.chunks[&uuid(31)]
        );

        // With an empty BASE (git's add/add), a field one side has and the other lacks
        // differs too.
        let empty = Base::default();
        let mut only_theirs = theirs.clone();
        query_mut(&mut only_theirs, "q1").category = Some("rust".into());
        let merged = merge(&empty, &ours, &only_theirs).unwrap();
        assert!(merged
            .conflicts
            .iter()
            .any(|conflict| conflict.subject == Subject::Query("q1".into())));
    }

    #[test]
    fn deleted_on_one_side_unchanged_on_the_other_is_deleted() {
        let base = sample();
        let mut ours = base.clone();
        ours.analyses.remove(&uuid(2));
        ours.chunks.remove(&uuid(21));
        ours.chunks.remove(&uuid(22));
        ours.chunks.remove(&uuid(12));
        let theirs = base.clone();
        let merged = merge_of(&base, &ours, &theirs);
        assert!(merged.conflicts.is_empty(), "{:?}", merged.conflicts);
        assert_eq!(merged.ours, ours_without_created_at(&ours));
    }

    fn ours_without_created_at(data: &Dataset) -> Dataset {
        Dataset {
            created_at: None,
            ..data.clone()
        }
    }

    #[test]
    fn an_analysis_deleted_while_the_other_side_edits_a_chunk_of_it_is_one_conflict() {
        let base = sample();
        let mut ours = base.clone();
        ours.analyses.remove(&uuid(2));
        ours.chunks.remove(&uuid(21));
        ours.chunks.remove(&uuid(22));
        let mut theirs = base.clone();
        chunk_mut(&mut theirs, 22).record.content = "d, edited".into();
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        let conflict = &merged.conflicts[0];
        assert_eq!(conflict.subject, Subject::Analysis(uuid(2)));
        let Disagreement::DeletedChanged {
            deleted_by,
            changes,
        } = &conflict.disagreement
        else {
            panic!("{conflict:?}");
        };
        assert_eq!(*deleted_by, Side::Ours);
        assert_eq!(changes.len(), 1, "{changes:?}");
        // Resolved as ours: none of it; as theirs: all of it, the unchanged chunk too.
        assert!(!merged.ours.analyses.contains_key(&uuid(2)));
        assert!(!merged.ours.chunks.contains_key(&uuid(21)));
        assert!(!merged.ours.chunks.contains_key(&uuid(22)));
        assert!(merged.theirs.analyses.contains_key(&uuid(2)));
        assert_eq!(merged.theirs.chunks[&uuid(21)], base.chunks[&uuid(21)]);
        assert_eq!(merged.theirs.chunks[&uuid(22)].record.content, "d, edited");
    }

    #[test]
    fn references_the_deleting_side_removed_come_back_with_the_analysis() {
        let mut base = sample();
        query_mut(&mut base, "q1").expected_chunk_ids = vec![uuid(11), uuid(21)];
        let mut ours = base.clone();
        ours.analyses.remove(&uuid(2));
        ours.chunks.retain(|_, chunk| chunk.analysis != uuid(2));
        query_mut(&mut ours, "q1").expected_chunk_ids = vec![uuid(11)];
        let mut theirs = base.clone();
        head_mut(&mut theirs, 2).title = Some("two, edited".into());
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        assert_eq!(merged.ours.queries["q1"].expected_chunk_ids, vec![uuid(11)]);
        assert_eq!(
            merged.theirs.queries["q1"].expected_chunk_ids,
            vec![uuid(11), uuid(21)]
        );
    }

    #[test]
    fn an_analysis_deleted_while_the_other_side_adds_a_chunk_or_a_reference_to_it_conflicts() {
        let base = sample();
        let mut ours = base.clone();
        ours.analyses.remove(&uuid(2));
        ours.chunks.remove(&uuid(21));
        ours.chunks.remove(&uuid(22));
        let mut theirs = base.clone();
        theirs.queries.insert("q2".into(), query("q2", &[21, 11]));
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        assert_eq!(merged.conflicts[0].subject, Subject::Analysis(uuid(2)));
        // The query follows the analysis: as ours, it no longer expects the deleted chunk.
        assert_eq!(merged.ours.queries["q2"].expected_chunk_ids, vec![uuid(11)]);
        assert_eq!(
            merged.theirs.queries["q2"].expected_chunk_ids,
            vec![uuid(21), uuid(11)]
        );

        let mut theirs = base.clone();
        theirs.chunks.insert(uuid(23), chunk(23, 2, 2, "new"));
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        assert!(!merged.ours.chunks.contains_key(&uuid(23)));
        assert_eq!(merged.theirs.chunks.len(), 5);
    }

    #[test]
    fn a_chunk_deleted_while_the_other_side_makes_a_query_expect_it_conflicts() {
        let base = sample();
        let mut ours = base.clone();
        ours.chunks.remove(&uuid(12));
        let mut theirs = base.clone();
        query_mut(&mut theirs, "q1").expected_chunk_ids = vec![uuid(11), uuid(12)];
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        assert_eq!(merged.conflicts[0].subject, Subject::Chunk(uuid(12)));
        assert!(!merged.ours.chunks.contains_key(&uuid(12)));
        assert_eq!(merged.ours.queries["q1"].expected_chunk_ids, vec![uuid(11)]);
        assert!(merged.theirs.chunks.contains_key(&uuid(12)));
        assert_eq!(
            merged.theirs.queries["q1"].expected_chunk_ids,
            vec![uuid(11), uuid(12)]
        );
    }

    #[test]
    fn two_chunks_added_at_one_index_are_a_conflict() {
        let base = sample();
        let mut ours = base.clone();
        ours.chunks.insert(uuid(13), chunk(13, 1, 2, "ours' third"));
        let mut theirs = base.clone();
        theirs
            .chunks
            .insert(uuid(14), chunk(14, 1, 2, "theirs' third"));
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        assert_eq!(
            merged.conflicts[0].subject,
            Subject::ChunkPlace {
                analysis: uuid(1),
                chunk_index: 2
            }
        );
        assert_eq!(
            merged.conflicts[0].disagreement,
            Disagreement::Place {
                ours: vec![uuid(13)],
                theirs: vec![uuid(14)]
            }
        );
        assert!(merged.ours.chunks.contains_key(&uuid(13)));
        assert!(!merged.ours.chunks.contains_key(&uuid(14)));
        assert!(merged.theirs.chunks.contains_key(&uuid(14)));
        assert!(!merged.theirs.chunks.contains_key(&uuid(13)));

        // A chunk moved to an index the other side filled: each side keeps its own places.
        let mut ours = base.clone();
        chunk_mut(&mut ours, 11).record.chunk_index = 2;
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1, "{:?}", merged.conflicts);
        assert_eq!(merged.ours.chunks[&uuid(11)].record.chunk_index, 2);
        assert!(!merged.ours.chunks.contains_key(&uuid(14)));
        assert_eq!(merged.theirs.chunks[&uuid(11)].record.chunk_index, 0);
        assert_eq!(merged.theirs.chunks[&uuid(14)].record.chunk_index, 2);
    }

    #[test]
    fn a_record_deleted_on_one_side_and_changed_on_the_other_conflicts() {
        let base = sample();
        let mut ours = base.clone();
        ours.queries.remove("q1");
        let mut theirs = base.clone();
        query_mut(&mut theirs, "q1").query = "reworded".into();
        let merged = merge_of(&base, &ours, &theirs);
        assert_eq!(merged.conflicts.len(), 1);
        assert!(matches!(
            &merged.conflicts[0].disagreement,
            Disagreement::DeletedChanged {
                deleted_by: Side::Ours,
                ..
            }
        ));
        assert!(!merged.ours.queries.contains_key("q1"));
        assert_eq!(merged.theirs.queries["q1"].query, "reworded");
    }

    /// Random edits of both sides: the merge never fails, both results are whole (every chunk
    /// in an analysis of its result, one chunk a place), equal when there is no conflict, and
    /// a side's edits survive when the other side changed nothing.
    #[test]
    fn random_edits_give_whole_results() {
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut base = Dataset::default();
        for a in 1..=6u128 {
            base.analyses.insert(uuid(a), head(a, "t"));
            for c in 0..4u128 {
                let id = a * 100 + c;
                base.chunks.insert(uuid(id), chunk(id, a, c as i32, "x"));
            }
        }
        base.queries.insert("q1".into(), query("q1", &[100, 201]));
        for _ in 0..400 {
            let mut sides = [base.clone(), base.clone()];
            for side in sides.iter_mut() {
                for _ in 0..next(4) {
                    edit(side, &mut next);
                }
            }
            let [ours, theirs] = sides;
            let merged = merge(&Base::of(&base), &ours, &theirs).unwrap();
            // What the merge reads of BASE (the records the sides disagree on) is enough.
            let wanted = crate::merge::dataset::Wanted::disagreements(&ours, &theirs);
            let mut needed = Base::of(&base);
            needed.analyses.retain(|id, _| wanted.analyses.contains(id));
            needed.chunks.retain(|id, _| wanted.chunks.contains(id));
            needed
                .artifacts
                .retain(|id, _| wanted.artifacts.contains(id));
            assert_eq!(merge(&needed, &ours, &theirs).unwrap(), merged);
            if merged.conflicts.is_empty() {
                assert_eq!(merged.ours, merged.theirs);
            }
            for result in [&merged.ours, &merged.theirs] {
                let mut places = BTreeSet::new();
                for chunk in result.chunks.values() {
                    assert!(result.analyses.contains_key(&chunk.analysis));
                    assert!(places.insert((chunk.analysis, chunk.record.chunk_index)));
                }
                for query in result.queries.values() {
                    for expected in &query.expected_chunk_ids {
                        assert!(result.chunks.contains_key(expected), "{query:?}");
                    }
                }
            }
            let unchanged_theirs = merge(&Base::of(&base), &ours, &base).unwrap();
            assert!(unchanged_theirs.conflicts.is_empty());
            assert_eq!(
                unchanged_theirs.ours,
                Dataset {
                    created_at: None,
                    ..ours.clone()
                }
            );
        }
    }

    /// One random edit that keeps the side consistent (as golden writes it).
    fn edit(side: &mut Dataset, next: &mut impl FnMut(u64) -> u64) {
        let analyses: Vec<Uuid> = side.analyses.keys().copied().collect();
        let chunks: Vec<Uuid> = side.chunks.keys().copied().collect();
        match next(6) {
            0 if !chunks.is_empty() => {
                let id = chunks[next(chunks.len() as u64) as usize];
                Rc::make_mut(side.chunks.get_mut(&id).unwrap())
                    .record
                    .content = format!("edit {}", next(3));
            }
            1 if !analyses.is_empty() => {
                let id = analyses[next(analyses.len() as u64) as usize];
                side.analyses.remove(&id);
                side.chunks.retain(|_, chunk| chunk.analysis != id);
                for query in side.queries.values_mut() {
                    let kept: Vec<Uuid> = query
                        .expected_chunk_ids
                        .iter()
                        .filter(|chunk| side.chunks.contains_key(chunk))
                        .copied()
                        .collect();
                    Rc::make_mut(query).expected_chunk_ids = kept;
                }
            }
            2 if !analyses.is_empty() => {
                let analysis = analyses[next(analyses.len() as u64) as usize];
                let index = (0..10)
                    .find(|index| {
                        !side
                            .chunks
                            .values()
                            .any(|c| c.analysis == analysis && c.record.chunk_index == *index)
                    })
                    .unwrap();
                let id = 10_000 + next(50) as u128;
                side.chunks
                    .entry(uuid(id))
                    .or_insert_with(|| chunk(id, analysis.as_u128(), index, "new"));
            }
            3 if !chunks.is_empty() => {
                let id = chunks[next(chunks.len() as u64) as usize];
                side.chunks.remove(&id);
                for query in side.queries.values_mut() {
                    Rc::make_mut(query)
                        .expected_chunk_ids
                        .retain(|chunk| *chunk != id);
                }
            }
            4 if !chunks.is_empty() => {
                let id = chunks[next(chunks.len() as u64) as usize];
                let query = side
                    .queries
                    .entry(format!("q{}", next(3)))
                    .or_insert_with_key(|key| query(key, &[]));
                if !query.expected_chunk_ids.contains(&id) {
                    Rc::make_mut(query).expected_chunk_ids.push(id);
                }
            }
            5 if !chunks.is_empty() => {
                let id = chunks[next(chunks.len() as u64) as usize];
                let analysis = side.chunks[&id].analysis;
                let free = (0..10)
                    .find(|index| {
                        !side
                            .chunks
                            .values()
                            .any(|c| c.analysis == analysis && c.record.chunk_index == *index)
                    })
                    .unwrap();
                Rc::make_mut(side.chunks.get_mut(&id).unwrap())
                    .record
                    .chunk_index = free;
            }
            _ => {}
        }
    }
}
