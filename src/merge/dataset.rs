//! The three files of a merge as records by id, and the merged result written back in
//! golden's canonical order.
//!
//! A three-way merge decides per record and per field, so OURS and THEIRS are read into maps
//! by id (a merge driver reads its three files whole: git hands it three temp files and waits
//! for the result, and the records of one side take about the file's size in memory). BASE is
//! needed only to tell, for a field where the two sides differ, which side changed it: so it
//! is not held, only a 16-byte digest of each of its fields ([`Fingerprint`]), plus the
//! expected chunks of its queries (the only set-valued field). The values of BASE that a
//! conflict report shows are read again, only when there are conflicts.
//!
//! Every record is looked at as a map of its fields ([`Fields`]): the keys of its JSON object
//! (the columns and the extras alike, so an extra key merges like a column) and, for chunks
//! and artifacts, the analysis they belong to. The result is written by
//! [`crate::backup_file::writer::BackupWriter`] in the order `golden convert` writes, so a
//! merged file is byte for byte what `convert` (and a restore then a backup) would write.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::Path;
use std::rc::Rc;

use chrono::{DateTime, Utc};
use color_eyre::eyre::{eyre, WrapErr};
use color_eyre::Result;
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use uuid::Uuid;

use crate::backup::ALL_STATUSES;
use crate::backup_file::extras::{as_jsonb_returns, extras_as_jsonb_returns, METADATA_KEYS};
use crate::backup_file::reader::{Header, ReadError};
use crate::backup_file::record::{
    latest_last, BackupAnalysisHead, BackupArtifact, BackupChunk, BackupQuery, Extra,
};
use crate::backup_file::records::{read_unchecked_records, Record};
use crate::backup_file::source::BackupSource;
use crate::backup_file::timestamp;
use crate::backup_file::writer::{BackupWriter, Prepared, Totals};
use crate::error::invalid_input;

/// A field of a record, as the merge tells fields apart.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FieldKey {
    /// The analysis a chunk or an artifact belongs to.
    Analysis,
    /// A key of the record's JSON object: one golden maps to a column, or an extra.
    Key(String),
    /// A key of the file's `metadata` (`status_filter` and those golden does not compute).
    Metadata(String),
}

impl fmt::Display for FieldKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldKey::Analysis => f.write_str("analysis (the analysis it belongs to)"),
            FieldKey::Key(key) => f.write_str(key),
            FieldKey::Metadata(key) => write!(f, "metadata.{key}"),
        }
    }
}

/// A record's fields, without its id.
pub type Fields = BTreeMap<FieldKey, Value>;

/// The key of a query's expected chunks, merged as a set rather than as one value.
pub const EXPECTED_CHUNK_IDS: &str = "expected_chunk_ids";

/// A chunk or an artifact with the analysis it belongs to.
#[derive(Debug, Clone, PartialEq)]
pub struct Child<R> {
    pub analysis: Uuid,
    pub record: R,
}

/// A record the merge compares field by field.
pub trait Fielded: Sized + Clone + PartialEq {
    /// Its fields (every key but the id).
    fn fields(&self) -> Fields;
    /// The record of `id` with `fields`.
    fn from_fields(id: &str, fields: &Fields) -> Result<Self>;
    /// The field merged as a set, whose order is no change.
    fn set_field() -> Option<&'static str> {
        None
    }
}

/// The fields of a serializable record: the keys of its JSON object but `id`.
fn object_fields<T: serde::Serialize>(record: &T) -> Fields {
    match serde_json::to_value(record) {
        Ok(Value::Object(object)) => object
            .into_iter()
            .filter(|(key, _)| key != "id")
            .map(|(key, value)| (FieldKey::Key(key), value))
            .collect(),
        // Every record type serializes to an object with string keys.
        _ => Fields::new(),
    }
}

/// The record of `id` (a JSON string) and the object keys of `fields`.
fn from_object_fields<T: serde::de::DeserializeOwned>(id: &str, fields: &Fields) -> Result<T> {
    let mut object = serde_json::Map::new();
    object.insert("id".into(), Value::String(id.to_string()));
    for (key, value) in fields {
        if let FieldKey::Key(key) = key {
            object.insert(key.clone(), value.clone());
        }
    }
    serde_json::from_value(Value::Object(object))
        .map_err(|e| eyre!("the merged record {id} does not read back: {e}"))
}

impl Fielded for BackupAnalysisHead {
    fn fields(&self) -> Fields {
        object_fields(self)
    }

    fn from_fields(id: &str, fields: &Fields) -> Result<Self> {
        from_object_fields(id, fields)
    }
}

impl Fielded for BackupQuery {
    fn fields(&self) -> Fields {
        object_fields(self)
    }

    fn from_fields(id: &str, fields: &Fields) -> Result<Self> {
        from_object_fields(id, fields)
    }

    fn set_field() -> Option<&'static str> {
        Some(EXPECTED_CHUNK_IDS)
    }
}

impl<R: serde::Serialize + serde::de::DeserializeOwned + Clone + PartialEq> Fielded for Child<R> {
    fn fields(&self) -> Fields {
        let mut fields = object_fields(&self.record);
        fields.insert(FieldKey::Analysis, Value::String(self.analysis.to_string()));
        fields
    }

    fn from_fields(id: &str, fields: &Fields) -> Result<Self> {
        let analysis = fields
            .get(&FieldKey::Analysis)
            .and_then(Value::as_str)
            .and_then(|text| Uuid::parse_str(text).ok())
            .ok_or_else(|| eyre!("the merged record {id} has no analysis"))?;
        Ok(Child {
            analysis,
            record: from_object_fields(id, fields)?,
        })
    }
}

/// A digest of one field's value: equal values have equal digests, and two different values
/// share one with a chance of 2^-128.
pub type Digest = [u8; 16];

/// The digest of `value`, for the field `key` of a record whose set-valued field is `set`.
pub fn field_digest(key: &FieldKey, value: &Value, set: Option<&str>) -> Digest {
    let mut hasher = Sha256::new();
    let as_set = matches!((key, set), (FieldKey::Key(key), Some(set)) if key == set);
    match value {
        Value::Array(items) if as_set => {
            let mut sorted: Vec<String> = items.iter().map(Value::to_string).collect();
            sorted.sort();
            sorted.dedup();
            for item in sorted {
                hasher.update(item.as_bytes());
                hasher.update(b"\n");
            }
        }
        _ => hasher.update(value.to_string().as_bytes()),
    }
    let full = hasher.finalize();
    let mut digest = [0u8; 16];
    digest.copy_from_slice(&full[..16]);
    digest
}

/// The digests of a record's fields, by key: what the merge keeps of BASE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fingerprint(Vec<(FieldKey, Digest)>);

impl Fingerprint {
    pub fn of(fields: &Fields, set: Option<&str>) -> Fingerprint {
        // A BTreeMap iterates in key order: the list is sorted for the binary searches.
        Fingerprint(
            fields
                .iter()
                .map(|(key, value)| (key.clone(), field_digest(key, value, set)))
                .collect(),
        )
    }

    /// The digest of the field `key`, if the record has it.
    pub fn get(&self, key: &FieldKey) -> Option<&Digest> {
        self.0
            .binary_search_by(|(probe, _)| probe.cmp(key))
            .ok()
            .map(|at| &self.0[at].1)
    }

    /// The fields of `fields` that are not as in this fingerprint (added, removed, changed).
    pub fn changed_fields(&self, fields: &Fields, set: Option<&str>) -> Vec<FieldKey> {
        let keys: BTreeSet<&FieldKey> = self
            .0
            .iter()
            .map(|(key, _)| key)
            .chain(fields.keys())
            .collect();
        keys.into_iter()
            .filter(|key| {
                fields
                    .get(*key)
                    .map(|value| field_digest(key, value, set))
                    .as_ref()
                    != self.get(key)
            })
            .cloned()
            .collect()
    }
}

/// A file of the merge, record by record. The records are shared (`Rc`): the two results of a
/// merge hold the same records as its inputs but for the conflicts, not copies of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dataset {
    /// The file's own `created_at`, when it has a valid one.
    pub created_at: Option<DateTime<Utc>>,
    /// The file-level keys: `metadata.status_filter`, the `metadata` keys golden does not
    /// compute, the top-level keys golden does not define.
    pub file: Fields,
    pub analyses: BTreeMap<Uuid, Rc<BackupAnalysisHead>>,
    pub chunks: BTreeMap<Uuid, Rc<Child<BackupChunk>>>,
    pub artifacts: BTreeMap<Uuid, Rc<Child<BackupArtifact>>>,
    pub queries: BTreeMap<String, Rc<BackupQuery>>,
}

/// A chunk or artifact of BASE: the analysis it belonged to and its fields' digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseChild {
    pub analysis: Uuid,
    pub fingerprint: Fingerprint,
}

/// A query of BASE: its fields' digests and its expected chunks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseQuery {
    pub fingerprint: Fingerprint,
    pub expected: Vec<Uuid>,
}

/// What the merge keeps of BASE: digests, not values, and only of the records OURS and THEIRS
/// disagree on (the others merge without BASE: unchanged, or changed alike on both sides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Base {
    /// The file-level keys; `None` when BASE is empty (git's base of an add/add).
    pub file: Option<Fingerprint>,
    pub analyses: BTreeMap<Uuid, Fingerprint>,
    pub chunks: BTreeMap<Uuid, BaseChild>,
    pub artifacts: BTreeMap<Uuid, BaseChild>,
    pub queries: BTreeMap<String, BaseQuery>,
}

impl Base {
    /// The fingerprint of every record of `dataset` (the tests build BASE from a dataset).
    pub fn of(dataset: &Dataset) -> Base {
        Base {
            file: Some(Fingerprint::of(&dataset.file, None)),
            analyses: dataset
                .analyses
                .iter()
                .map(|(id, head)| (*id, Fingerprint::of(&head.fields(), None)))
                .collect(),
            chunks: dataset
                .chunks
                .iter()
                .map(|(id, chunk)| (*id, BaseChild::of(chunk)))
                .collect(),
            artifacts: dataset
                .artifacts
                .iter()
                .map(|(id, artifact)| (*id, BaseChild::of(artifact)))
                .collect(),
            queries: dataset
                .queries
                .iter()
                .map(|(id, query)| (id.clone(), BaseQuery::of(query)))
                .collect(),
        }
    }
}

impl BaseChild {
    fn of<R: serde::Serialize + serde::de::DeserializeOwned + Clone + PartialEq>(
        child: &Child<R>,
    ) -> BaseChild {
        BaseChild {
            analysis: child.analysis,
            fingerprint: Fingerprint::of(&child.fields(), None),
        }
    }
}

impl BaseQuery {
    fn of(query: &BackupQuery) -> BaseQuery {
        BaseQuery {
            fingerprint: Fingerprint::of(&query.fields(), BackupQuery::set_field()),
            expected: query.expected_chunk_ids.clone(),
        }
    }
}

/// A record of a file as the merge reads it.
enum Item {
    Analysis(BackupAnalysisHead),
    Chunk(Child<BackupChunk>),
    Artifact(Child<BackupArtifact>),
}

/// The file-level parts of a file, read from its header.
struct FileParts {
    created_at: Option<DateTime<Utc>>,
    file: Fields,
    queries: Vec<BackupQuery>,
}

/// Reads the file at `path` (named `role` in messages: "OURS", …) record by record, with
/// every value in the form golden writes it, as `convert` does (numbers as jsonb returns
/// them).
fn read_file(
    path: &Path,
    role: &str,
    mut on_item: impl FnMut(Item) -> Result<()>,
) -> Result<FileParts> {
    let shown = format!("{role} ({})", path.display());
    let source = BackupSource::open(path).map_err(|e| unreadable(&shown, e))?;
    let mut pending: Option<BackupAnalysisHead> = None;
    let header = read_unchecked_records(
        source.pass(),
        &shown,
        |_| Ok(()),
        |record| {
            match record {
                // An analysis's extras may come after its chunks: it is complete at its end.
                Record::Analysis(head) => pending = Some(head),
                Record::Chunk {
                    analysis_id,
                    mut chunk,
                } => {
                    extras_as_jsonb_returns(&mut chunk.extra);
                    on_item(Item::Chunk(Child {
                        analysis: analysis_id,
                        record: chunk,
                    }))?;
                }
                Record::Artifact {
                    analysis_id,
                    mut artifact,
                    ..
                } => {
                    extras_as_jsonb_returns(&mut artifact.extra);
                    on_item(Item::Artifact(Child {
                        analysis: analysis_id,
                        record: artifact,
                    }))?;
                }
                Record::End { late_extra, .. } => {
                    let mut head = pending.take().ok_or_else(|| {
                        eyre!("internal error: the end of an analysis that did not begin")
                    })?;
                    head.extra.extend(late_extra);
                    extras_as_jsonb_returns(&mut head.extra);
                    on_item(Item::Analysis(head))?;
                }
            }
            Ok(())
        },
    )
    .map_err(|e| match e {
        ReadError::Invalid(_) => explain_unreadable(&source, &shown, e),
        ReadError::Stopped(report) => report,
    })?;
    file_parts(header, &shown)
}

/// An input that cannot be read (exit 2): git then keeps OURS as it was.
fn unreadable(shown: &str, e: ReadError) -> color_eyre::Report {
    match e {
        ReadError::Invalid(message) => invalid_input(format!(
            "{message}\n{shown} cannot be read as a backup: nothing was merged and OURS was left as it was"
        )),
        ReadError::Stopped(report) => report,
    }
}

/// A file whose records do not read: its validation names what is wrong, where the typed
/// reader only knows the first record it could not read.
fn explain_unreadable(source: &BackupSource, shown: &str, e: ReadError) -> color_eyre::Report {
    if let Ok(validation) = crate::validate::validate_source(source) {
        if !validation.problems.is_empty() {
            let listed: Vec<String> = validation
                .problems
                .iter()
                .take(5)
                .map(|problem| format!("  problem: {problem}"))
                .collect();
            let more = validation.problems.len().saturating_sub(5);
            return invalid_input(format!(
                "{shown} is not a valid backup ({} problem{}; `golden verify` lists them all):\n{}{}\n\
                 fix it, then merge again: nothing was merged and OURS was left as it was",
                validation.problems.len(),
                if validation.problems.len() == 1 { "" } else { "s" },
                listed.join("\n"),
                if more > 0 { format!("\n  … and {more} more") } else { String::new() },
            ));
        }
    }
    unreadable(shown, e)
}

/// The file-level keys, `created_at` and the queries of a header.
fn file_parts(mut header: Header, shown: &str) -> Result<FileParts> {
    let created_at = header
        .created_at
        .as_ref()
        .and_then(Value::as_str)
        .and_then(|text| timestamp::parse(text).ok());
    let mut file = Fields::new();
    if let Some(Value::Object(metadata)) = header.metadata.take() {
        for (key, mut value) in metadata {
            if key == "status_filter" {
                // Not a string: as convert, the result's is then inferred from its analyses.
                if value.is_string() {
                    file.insert(FieldKey::Metadata(key), value);
                }
            } else if !METADATA_KEYS.contains(&key.as_str()) {
                as_jsonb_returns(&mut value);
                file.insert(FieldKey::Metadata(key), value);
            }
        }
    }
    for (key, mut value) in std::mem::take(&mut header.extras) {
        as_jsonb_returns(&mut value);
        file.insert(FieldKey::Key(key), value);
    }
    let queries = match header.queries.take() {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(list)) => list
            .into_iter()
            .enumerate()
            .map(|(position, value)| {
                let mut query: BackupQuery = serde_json::from_value(value).map_err(|e| {
                    invalid_input(format!(
                        "query #{} of {shown} cannot be read ({e}): `golden verify` says more; \
                         nothing was merged and OURS was left as it was",
                        position + 1
                    ))
                })?;
                extras_as_jsonb_returns(&mut query.extra);
                Ok(query)
            })
            .collect::<Result<_>>()?,
        Some(_) => {
            return Err(invalid_input(format!(
            "\"queries\" of {shown} is not a list: nothing was merged and OURS was left as it was"
        )))
        }
    };
    Ok(FileParts {
        created_at,
        file,
        queries,
    })
}

/// Refuses a record id seen twice in one file: merging by id would silently keep one.
fn twice(shown: &str, what: &str, id: &dyn fmt::Display) -> color_eyre::Report {
    invalid_input(format!(
        "{shown} holds {what} {id} twice, so it cannot be merged by id (`golden verify` reports it): \
         fix it, then merge again; nothing was merged and OURS was left as it was"
    ))
}

/// Reads OURS or THEIRS whole.
pub fn read_dataset(path: &Path, role: &str) -> Result<Dataset> {
    let shown = format!("{role} ({})", path.display());
    let mut dataset = Dataset::default();
    let mut places = BTreeSet::new();
    let parts = read_file(path, role, |item| {
        match item {
            Item::Analysis(head) => {
                let id = head.id;
                if dataset.analyses.insert(id, Rc::new(head)).is_some() {
                    return Err(twice(&shown, "analysis", &id));
                }
            }
            Item::Chunk(chunk) => {
                let id = chunk.record.id;
                if !places.insert((chunk.analysis, chunk.record.chunk_index)) {
                    return Err(invalid_input(format!(
                        "{shown} has two chunks at chunk_index {} of analysis {} (`golden verify` \
                         reports it): fix it, then merge again; nothing was merged and OURS was left as it was",
                        chunk.record.chunk_index, chunk.analysis
                    )));
                }
                if dataset.chunks.insert(id, Rc::new(chunk)).is_some() {
                    return Err(twice(&shown, "chunk", &id));
                }
            }
            Item::Artifact(artifact) => {
                let id = artifact.record.id;
                if dataset.artifacts.insert(id, Rc::new(artifact)).is_some() {
                    return Err(twice(&shown, "artifact", &id));
                }
            }
        }
        Ok(())
    })?;
    dataset.created_at = parts.created_at;
    dataset.file = parts.file;
    for query in parts.queries {
        let id = query.id.clone();
        if dataset.queries.insert(id.clone(), Rc::new(query)).is_some() {
            return Err(twice(&shown, "query", &id));
        }
    }
    Ok(dataset)
}

/// Reads BASE as digests of the records `wanted` names, and of every query (a side's query
/// may newly expect a chunk the other side deleted). An empty file (git's base of an add/add)
/// is an empty dataset.
pub fn read_base(path: &Path, wanted: &Wanted) -> Result<Base> {
    if is_empty_file(path)? {
        return Ok(Base::default());
    }
    let shown = format!("BASE ({})", path.display());
    let mut base = Base::default();
    let parts = read_file(path, "BASE", |item| {
        let seen_twice = match item {
            Item::Analysis(head) if wanted.analyses.contains(&head.id) => {
                let fingerprint = Fingerprint::of(&head.fields(), None);
                let before = base.analyses.insert(head.id, fingerprint);
                before.map(|_| twice(&shown, "analysis", &head.id))
            }
            Item::Chunk(chunk) if wanted.chunks.contains(&chunk.record.id) => {
                let before = base.chunks.insert(chunk.record.id, BaseChild::of(&chunk));
                before.map(|_| twice(&shown, "chunk", &chunk.record.id))
            }
            Item::Artifact(artifact) if wanted.artifacts.contains(&artifact.record.id) => {
                let before = base
                    .artifacts
                    .insert(artifact.record.id, BaseChild::of(&artifact));
                before.map(|_| twice(&shown, "artifact", &artifact.record.id))
            }
            _ => None,
        };
        seen_twice.map_or(Ok(()), Err)
    })?;
    base.file = Some(Fingerprint::of(&parts.file, None));
    for query in parts.queries {
        if base
            .queries
            .insert(query.id.clone(), BaseQuery::of(&query))
            .is_some()
        {
            return Err(twice(&shown, "query", &query.id));
        }
    }
    Ok(base)
}

/// Reads the records of BASE that `wanted` names (by kind and id), for the values a conflict
/// report shows; an empty BASE has none.
pub fn read_base_records(path: &Path, wanted: &Wanted) -> Result<Dataset> {
    let mut dataset = Dataset::default();
    if is_empty_file(path)? {
        return Ok(dataset);
    }
    let parts = read_file(path, "BASE", |item| {
        match item {
            Item::Analysis(head) if wanted.analyses.contains(&head.id) => {
                dataset.analyses.insert(head.id, Rc::new(head));
            }
            Item::Chunk(chunk) if wanted.chunks.contains(&chunk.record.id) => {
                dataset.chunks.insert(chunk.record.id, Rc::new(chunk));
            }
            Item::Artifact(artifact) if wanted.artifacts.contains(&artifact.record.id) => {
                dataset
                    .artifacts
                    .insert(artifact.record.id, Rc::new(artifact));
            }
            _ => {}
        }
        Ok(())
    })?;
    dataset.file = parts.file;
    dataset.queries = parts
        .queries
        .into_iter()
        .filter(|query| wanted.queries.contains(&query.id))
        .map(|query| (query.id.clone(), Rc::new(query)))
        .collect();
    Ok(dataset)
}

/// Records of BASE, by kind and id: those the merge needs the digests of, those a report
/// shows the values of.
#[derive(Debug, Default)]
pub struct Wanted {
    pub analyses: BTreeSet<Uuid>,
    pub chunks: BTreeSet<Uuid>,
    pub artifacts: BTreeSet<Uuid>,
    pub queries: BTreeSet<String>,
}

impl Wanted {
    /// The records OURS and THEIRS disagree on: held by one side only, or different.
    pub fn disagreements(ours: &Dataset, theirs: &Dataset) -> Wanted {
        fn differing<K: Ord + Clone, V: PartialEq>(
            ours: &BTreeMap<K, V>,
            theirs: &BTreeMap<K, V>,
        ) -> BTreeSet<K> {
            let one_sided_or_different = |(key, value): (&K, &V), other: &BTreeMap<K, V>| {
                (other.get(key) != Some(value)).then(|| key.clone())
            };
            ours.iter()
                .filter_map(|entry| one_sided_or_different(entry, theirs))
                .chain(
                    theirs
                        .iter()
                        .filter_map(|entry| one_sided_or_different(entry, ours)),
                )
                .collect()
        }
        Wanted {
            analyses: differing(&ours.analyses, &theirs.analyses),
            chunks: differing(&ours.chunks, &theirs.chunks),
            artifacts: differing(&ours.artifacts, &theirs.artifacts),
            queries: differing(&ours.queries, &theirs.queries),
        }
    }
}

/// Git passes an empty file as the base of an add/add: the file was added on both sides.
fn is_empty_file(path: &Path) -> Result<bool> {
    let metadata = std::fs::metadata(path).map_err(|e| {
        invalid_input(format!(
            "cannot read BASE ({}): {e}; nothing was merged and OURS was left as it was",
            path.display()
        ))
    })?;
    Ok(metadata.is_file() && metadata.len() == 0)
}

/// The status filter `backup` would be given to write `dataset` again: the file's own, else
/// `completed` when every analysis is, else `all` (as `convert` infers it).
fn status_filter_of(dataset: &Dataset) -> String {
    if let Some(Value::String(status)) = dataset
        .file
        .get(&FieldKey::Metadata("status_filter".into()))
    {
        return status.clone();
    }
    if dataset
        .analyses
        .values()
        .all(|head| head.status == "completed")
    {
        "completed".to_string()
    } else {
        ALL_STATUSES.to_string()
    }
}

/// Writes `dataset` in golden's canonical order into a temp file beside `dest`, with
/// `created_at`: analyses by (created_at, id), chunks by chunk_index, artifacts oldest first
/// (the latest as `artifact`), queries by id, the file-level keys sorted.
pub fn write_canonical(
    dataset: &Dataset,
    created_at: DateTime<Utc>,
    dest: &Path,
) -> Result<Prepared> {
    write_ordered(dataset, None, created_at, dest)
}

/// [`write_canonical`], but with the analyses and chunks that `reference` holds too in
/// `reference`'s order: the resolution as theirs of a conflicted merge, laid out beside the
/// one as ours, so that an analysis whose `created_at` (a chunk whose `chunk_index`) the
/// sides set differently stays in one place, its conflict one block of one line, not two
/// blocks far apart that must be resolved alike. `--finish` writes the canonical order again.
pub fn write_in_order_of(
    dataset: &Dataset,
    reference: &Dataset,
    created_at: DateTime<Utc>,
    dest: &Path,
) -> Result<Prepared> {
    write_ordered(dataset, Some(reference), created_at, dest)
}

fn write_ordered(
    dataset: &Dataset,
    reference: Option<&Dataset>,
    created_at: DateTime<Utc>,
    dest: &Path,
) -> Result<Prepared> {
    let mut chunks_of: BTreeMap<Uuid, Vec<&BackupChunk>> = BTreeMap::new();
    for chunk in dataset.chunks.values() {
        chunks_of
            .entry(chunk.analysis)
            .or_default()
            .push(&chunk.record);
    }
    let mut artifacts_of: BTreeMap<Uuid, Vec<BackupArtifact>> = BTreeMap::new();
    for artifact in dataset.artifacts.values() {
        artifacts_of
            .entry(artifact.analysis)
            .or_default()
            .push(artifact.record.clone());
    }
    if let Some(orphan) = chunks_of
        .keys()
        .chain(artifacts_of.keys())
        .find(|analysis| !dataset.analyses.contains_key(*analysis))
    {
        return Err(eyre!(
            "internal error: the merged data has records of analysis {orphan}, which it does not hold"
        ));
    }
    let mut analyses: Vec<&BackupAnalysisHead> =
        dataset.analyses.values().map(|head| &**head).collect();
    analyses.sort_by_key(|head| {
        let in_reference = reference.and_then(|reference| reference.analyses.get(&head.id));
        (
            in_reference.map_or(head.created_at, |own| own.created_at),
            head.id,
        )
    });

    let mut metadata_extra = Extra::new();
    let mut top_extra = Extra::new();
    for (key, value) in &dataset.file {
        match key {
            FieldKey::Metadata(key) if key == "status_filter" => {}
            FieldKey::Metadata(key) => {
                metadata_extra.insert(key.clone(), value.clone());
            }
            FieldKey::Key(key) => {
                top_extra.insert(key.clone(), value.clone());
            }
            FieldKey::Analysis => {}
        }
    }
    let totals = Totals {
        analyses: dataset.analyses.len() as u64,
        chunks: dataset.chunks.len() as u64,
        artifacts: dataset.artifacts.len() as u64,
        queries: dataset.queries.len() as u64,
    };
    let mut writer = BackupWriter::create(
        dest,
        created_at,
        totals,
        &status_filter_of(dataset),
        &metadata_extra,
    )
    .wrap_err_with(|| format!("creating a temp file beside {}", dest.display()))?;
    for head in analyses {
        writer.begin_analysis(head)?;
        if let Some(chunks) = chunks_of.get_mut(&head.id) {
            chunks.sort_by_key(|chunk| {
                let in_reference = reference
                    .and_then(|reference| reference.chunks.get(&chunk.id))
                    .filter(|own| own.analysis == head.id);
                (
                    in_reference.map_or(chunk.chunk_index, |own| own.record.chunk_index),
                    chunk.id,
                )
            });
            for chunk in chunks.iter() {
                writer.write_chunk(chunk)?;
            }
        }
        let mut artifacts = artifacts_of.remove(&head.id).unwrap_or_default();
        latest_last(&mut artifacts);
        let latest = artifacts.pop();
        writer.end_analysis(latest.as_ref(), &artifacts)?;
    }
    let mut queries: Vec<BackupQuery> = dataset
        .queries
        .values()
        .map(|query| BackupQuery::clone(query))
        .collect();
    queries.sort_by(|a, b| a.id.as_bytes().cmp(b.id.as_bytes()));
    writer
        .finish(&queries, &top_extra)
        .wrap_err_with(|| format!("finishing {}", dest.display()))
}

/// Small datasets for the tests of the merge.
#[cfg(test)]
pub mod testing {
    use super::*;
    use chrono::TimeZone;

    pub fn uuid(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    pub fn head(n: u128, title: &str) -> Rc<BackupAnalysisHead> {
        Rc::new(BackupAnalysisHead {
            id: uuid(n),
            url: format!("https://docs.rs/crate{n}"),
            title: Some(title.to_string()),
            content_type: "article".into(),
            status: "completed".into(),
            created_at: Utc.timestamp_opt(1_700_000_000 + n as i64, 0).unwrap(),
            updated_at: Utc.timestamp_opt(1_700_000_000 + n as i64, 0).unwrap(),
            extra: Extra::new(),
        })
    }

    pub fn chunk(n: u128, analysis: u128, index: i32, content: &str) -> Rc<Child<BackupChunk>> {
        Rc::new(Child {
            analysis: uuid(analysis),
            record: BackupChunk {
                id: uuid(n),
                content: content.to_string(),
                section_title: None,
                section_path: None,
                content_type: "article".into(),
                chunk_index: index,
                extra: Extra::new(),
            },
        })
    }

    pub fn query(id: &str, expected: &[u128]) -> Rc<BackupQuery> {
        Rc::new(BackupQuery {
            id: id.to_string(),
            query: format!("what is {id}?"),
            expected_chunk_ids: expected.iter().map(|n| uuid(*n)).collect(),
            category: None,
            difficulty: None,
            unresolved_expected_chunks: Vec::new(),
            extra: Extra::new(),
        })
    }

    /// The chunk `n` of `data`, to edit.
    pub fn chunk_mut(data: &mut Dataset, n: u128) -> &mut Child<BackupChunk> {
        Rc::make_mut(data.chunks.get_mut(&uuid(n)).unwrap())
    }

    /// The analysis `n` of `data`, to edit.
    pub fn head_mut(data: &mut Dataset, n: u128) -> &mut BackupAnalysisHead {
        Rc::make_mut(data.analyses.get_mut(&uuid(n)).unwrap())
    }

    /// The query `id` of `data`, to edit.
    pub fn query_mut<'a>(data: &'a mut Dataset, id: &str) -> &'a mut BackupQuery {
        Rc::make_mut(data.queries.get_mut(id).unwrap())
    }

    /// Two analyses (1, 2) of two chunks each (11, 12; 21, 22), a query expecting 11.
    pub fn sample() -> Dataset {
        let mut data = Dataset::default();
        data.analyses.insert(uuid(1), head(1, "one"));
        data.analyses.insert(uuid(2), head(2, "two"));
        for chunk in [
            chunk(11, 1, 0, "a"),
            chunk(12, 1, 1, "b"),
            chunk(21, 2, 0, "c"),
            chunk(22, 2, 1, "d"),
        ] {
            data.chunks.insert(chunk.record.id, chunk);
        }
        data.queries.insert("q1".into(), query("q1", &[11]));
        data
    }

    /// `dataset` as golden writes it.
    pub fn text_of(dataset: &Dataset) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.json");
        let at = Utc.timestamp_opt(1_750_000_000, 0).unwrap();
        write_canonical(dataset, at, &path)
            .unwrap()
            .persist()
            .unwrap();
        std::fs::read_to_string(path).unwrap()
    }
}
