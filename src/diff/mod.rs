//! `golden diff`: what changed between two backup files, by id, for a reviewer of a pull
//! request that edits the golden dataset. Added, removed and changed analyses, chunks,
//! artifacts and queries; fields with a word-level diff of texts; chunks moved to another
//! analysis or index; expected chunks a query gained or lost; and what that does to
//! retrieval evaluation.
//!
//! Both files stream, each read on its own thread (two cores, two files: the diff costs about
//! one read). A record waits, keyed by id, until the other file gives the record with the
//! same id; then the two are compared and forgotten. Files golden wrote (backup, convert,
//! merge) list records in the same order, so what waits is the few records near the reading
//! position plus what was added or removed: memory follows the size of the change, not of the
//! files. Which file is read next is decided by how far each has been read, never by which
//! thread is faster, so the report is the same on every run.

pub mod items;
pub mod report;
mod waiting;
pub mod words;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};

use color_eyre::eyre::eyre;
use color_eyre::Result;
use uuid::Uuid;

use crate::backup_file::extras::FileExtras;
use crate::backup_file::reader::{Header, ReadError};
use crate::backup_file::record::{BackupAnalysisHead, BackupQuery};
use crate::backup_file::records::{read_unchecked_records, Record};
use crate::backup_file::source::BackupSource;
use crate::error::invalid_input;
use items::{compare, compare_file_keys, compare_queries, Item, Kind};
use report::{Change, Evaluation, Expectation, Moved, Order, Report, Sizes, What};
use waiting::{Shelf, WaitingRoom};

/// A file to compare, shown as `shown`.
pub struct Input {
    pub file: InputFile,
    pub shown: String,
}

pub enum InputFile {
    Path(PathBuf),
    /// Already open: a git revision's blob in a temp file without a name.
    Open(std::fs::File),
}

/// Records sent from a reading thread at a time: large enough that the channel costs nothing,
/// small enough that an analysis of a million chunks streams.
const BATCH: usize = 256;

/// The most bytes of records (their [`Item::weight`]) one batch holds: the channel holds a
/// few batches per file, which must not cost more than the waiting records may when the
/// records are large (chunks of 100 kB would make 256 of them 25 MB).
const BATCH_BYTES: usize = 512 * 1024;

/// What a reading thread sends.
enum Message {
    /// The dialect the file was read as.
    Dialect(String),
    /// Records in file order, each with its position among the file's records.
    Records(Vec<(u64, Item)>),
    /// The file is read: its header (queries, file-level keys).
    End(Box<Header>),
    Failed(ReadError),
}

/// Compares `old` with `new`. `whole_records` keeps every added and removed record whole in
/// the report (for `--json`); otherwise only a preview of each, so that two files with little
/// in common are compared in little memory too.
pub fn diff(old: &Input, new: &Input, whole_records: bool) -> Result<Report> {
    std::thread::scope(|scope| {
        let old_rx = spawn_reader(scope, old);
        let new_rx = spawn_reader(scope, new);
        let matcher = Matcher {
            whole_records,
            ..Matcher::default()
        };
        matcher.run(old, old_rx, new, new_rx)
    })
}

fn spawn_reader<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    input: &'scope Input,
) -> Receiver<Message> {
    let (tx, rx) = sync_channel(8);
    scope.spawn(move || {
        let sent = read_items(input, |message| {
            tx.send(message)
                .map_err(|_| eyre!("the comparison stopped reading"))
        });
        if let Err(e) = sent {
            let _ = tx.send(Message::Failed(e));
        }
    });
    rx
}

/// Reads `input` and sends its records in batches; the analysis head goes after its chunks
/// and artifacts, once the extras written after its chunks are known.
fn read_items(
    input: &Input,
    mut send: impl FnMut(Message) -> Result<()>,
) -> std::result::Result<(), ReadError> {
    let source = match &input.file {
        InputFile::Path(path) => BackupSource::open(path),
        InputFile::Open(file) => file
            .try_clone()
            .map_err(|e| ReadError::Invalid(format!("cannot read {}: {e}", input.shown)))
            .and_then(|file| BackupSource::of_open_file(file, Path::new(&input.shown))),
    }?;
    send(Message::Dialect(source.dialect_label())).map_err(ReadError::Stopped)?;
    let mut batch: Vec<(u64, Item)> = Vec::with_capacity(BATCH);
    let mut batch_bytes = 0_usize;
    let mut head: Option<(u64, BackupAnalysisHead)> = None;
    let mut seq = 0_u64;
    let header = read_unchecked_records(
        source.pass(),
        &input.shown,
        |_| Ok(()),
        |record| {
            seq += 1;
            let item = match record {
                Record::Analysis(analysis) => {
                    head = Some((seq, analysis));
                    None
                }
                Record::Chunk { analysis_id, chunk } => {
                    Some((seq, Item::Chunk { analysis_id, chunk }))
                }
                Record::Artifact {
                    analysis_id,
                    artifact,
                    latest,
                } => Some((
                    seq,
                    Item::Artifact {
                        analysis_id,
                        artifact,
                        latest,
                    },
                )),
                Record::End { late_extra, .. } => {
                    let (at, mut analysis) = head.take().ok_or_else(|| {
                        eyre!("internal error: an analysis's end before its start")
                    })?;
                    analysis.extra.extend(late_extra);
                    Some((at, Item::Analysis(analysis)))
                }
            };
            if let Some((at, item)) = item {
                batch_bytes += item.weight();
                batch.push((at, item));
            }
            if batch.len() >= BATCH || batch_bytes >= BATCH_BYTES {
                send(Message::Records(std::mem::take(&mut batch)))?;
                batch_bytes = 0;
            }
            Ok(())
        },
    )?;
    if !batch.is_empty() {
        send(Message::Records(batch)).map_err(ReadError::Stopped)?;
    }
    send(Message::End(Box::new(header))).map_err(ReadError::Stopped)
}

/// One side's reading state.
#[derive(Default)]
struct SideState {
    waiting: WaitingRoom,
    /// Records read so far, to decide which file to read next.
    read: u64,
    done: bool,
    header: Option<Header>,
    dialect: String,
    size: Sizes,
    /// Each analysis's position in the file, and its title, for the report.
    analyses: HashMap<Uuid, (u64, Option<String>)>,
    /// The statuses of its analyses: what a file that names no `status_filter` covers.
    statuses: BTreeSet<String>,
    /// Every record's key so far: an id given twice makes the comparison meaningless, and
    /// the chunks the file holds tell a query's missing answer.
    seen: HashSet<(Kind, Uuid)>,
    shown: String,
}

#[derive(Default)]
struct Matcher {
    changes: Vec<Change>,
    /// Chunks whose text changed, for the evaluation.
    texts_changed: HashSet<Uuid>,
    shelf: Shelf,
    whole_records: bool,
}

impl Matcher {
    fn run(
        mut self,
        old: &Input,
        old_rx: Receiver<Message>,
        new: &Input,
        new_rx: Receiver<Message>,
    ) -> Result<Report> {
        let mut sides = [SideState::default(), SideState::default()];
        sides[0].shown = old.shown.clone();
        sides[1].shown = new.shown.clone();
        let receivers = [old_rx, new_rx];
        loop {
            // The side read less so far goes next: the two advance together.
            let next = match (sides[0].done, sides[1].done) {
                (true, true) => break,
                (false, true) => 0,
                (true, false) => 1,
                (false, false) => usize::from(sides[1].read < sides[0].read),
            };
            let message = receivers[next]
                .recv()
                .map_err(|_| eyre!("internal error: a reading thread ended without a word"))?;
            match message {
                Message::Dialect(label) => sides[next].dialect = label,
                Message::Records(records) => {
                    sides[next].read += records.len() as u64;
                    for (seq, item) in records {
                        self.take(&mut sides, next, seq, item)?;
                    }
                }
                Message::End(header) => {
                    sides[next].done = true;
                    sides[next].header = Some(*header);
                }
                Message::Failed(error) => return Err(error.into_report()),
            }
        }
        let [old_side, new_side] = sides;
        self.finish(old, old_side, new, new_side)
    }

    /// A record of side `from`: compared with its match if the other side gave it already,
    /// otherwise left waiting for it.
    fn take(
        &mut self,
        sides: &mut [SideState; 2],
        from: usize,
        seq: u64,
        item: Item,
    ) -> Result<()> {
        let side = &mut sides[from];
        match &item {
            Item::Analysis(head) => {
                side.size.analyses += 1;
                let position = side.analyses.len() as u64;
                side.analyses
                    .insert(head.id, (position, head.title.clone()));
                if !side.statuses.contains(&head.status) {
                    side.statuses.insert(head.status.clone());
                }
            }
            Item::Chunk { .. } => side.size.chunks += 1,
            Item::Artifact { .. } => side.size.artifacts += 1,
        }
        let key = item.key();
        if !side.seen.insert(key) {
            let (kind, id) = key;
            return Err(invalid_input(format!(
                "{} holds {} {id} twice: ids are unique in a backup; `golden verify {}` names every problem",
                side.shown,
                kind.noun(1),
                side.shown
            )));
        }
        let other = &mut sides[1 - from];
        match other.waiting.take(&key, &mut self.shelf)? {
            Some(waiting) => {
                let (old, new) = if from == 1 {
                    (waiting, item)
                } else {
                    (item, waiting)
                };
                self.compare(&old, &new);
            }
            None => sides[from].waiting.wait(seq, item, &mut self.shelf)?,
        }
        Ok(())
    }

    fn compare(&mut self, old: &Item, new: &Item) {
        let (fields, moved) = compare(old, new);
        if fields.is_empty() && moved.is_none() {
            return;
        }
        let (kind, id) = new.key();
        if kind == Kind::Chunk && fields.iter().any(|f| f.field == "content") {
            self.texts_changed.insert(id);
        }
        self.changes.push(Change {
            kind,
            id: id.to_string(),
            change: if fields.is_empty() {
                What::Moved
            } else {
                What::Changed
            },
            analysis_id: Some(new.analysis_id()),
            chunk_index: new.place().chunk_index,
            moved: moved.map(|(from, to)| Moved { from, to }),
            fields,
            expected_added: Vec::new(),
            expected_dropped: Vec::new(),
            preview: None,
            record: None,
            order: Order::default(),
        });
    }

    fn finish(
        mut self,
        old: &Input,
        mut old_side: SideState,
        new: &Input,
        mut new_side: SideState,
    ) -> Result<Report> {
        // What waits still has no match: removed from the old file, added to the new one.
        let mut removed_chunks = HashSet::new();
        for (side, what) in [(&mut old_side, What::Removed), (&mut new_side, What::Added)] {
            let (changes, whole_records) = (&mut self.changes, self.whole_records);
            side.waiting.drain(&mut self.shelf, |item| {
                let (kind, id) = item.key();
                if what == What::Removed && kind == Kind::Chunk {
                    removed_chunks.insert(id);
                }
                changes.push(Change {
                    kind,
                    id: id.to_string(),
                    change: what,
                    analysis_id: Some(item.analysis_id()),
                    chunk_index: item.place().chunk_index,
                    moved: None,
                    fields: Vec::new(),
                    expected_added: Vec::new(),
                    expected_dropped: Vec::new(),
                    preview: item.preview(),
                    record: whole_records.then(|| item.to_json()),
                    order: Order::default(),
                });
                Ok(())
            })?;
        }
        let mut old_header = old_side.header.take().unwrap_or_default();
        let mut new_header = new_side.header.take().unwrap_or_default();
        let old_queries = queries_of(&old_header, &old.shown)?;
        let new_queries = queries_of(&new_header, &new.shown)?;
        old_side.size.queries = old_queries.len() as u64;
        new_side.size.queries = new_queries.len() as u64;
        self.compare_queries(&old_queries, &new_queries);
        let (old_keys, new_keys) = (
            file_keys(&mut old_header, &old_side.statuses),
            file_keys(&mut new_header, &new_side.statuses),
        );
        let mut file_fields =
            compare_file_keys("metadata.", &old_keys.metadata, &new_keys.metadata);
        file_fields.extend(compare_file_keys("", &old_keys.top, &new_keys.top));
        self.changes
            .extend(file_fields.into_iter().map(|field| Change {
                kind: Kind::File,
                id: field.field.clone(),
                change: What::Changed,
                analysis_id: None,
                chunk_index: None,
                moved: None,
                fields: vec![field],
                expected_added: Vec::new(),
                expected_dropped: Vec::new(),
                preview: None,
                record: None,
                order: Order::default(),
            }));
        let evaluation = evaluation(
            &old_queries,
            &new_queries,
            &removed_chunks,
            &self.texts_changed,
            &new_side.seen,
        );
        let mut titles = BTreeMap::new();
        let places = places_of(&old_side, &new_side);
        for change in &mut self.changes {
            change.order = order_of(change, &places);
            if let Some(id) = change.analysis_id {
                let known = new_side
                    .analyses
                    .get(&id)
                    .or_else(|| old_side.analyses.get(&id));
                if let Some((_, Some(title))) = known {
                    titles.insert(id, title.clone());
                }
            }
        }
        Ok(Report::new(
            (old.shown.clone(), old_side.dialect),
            (new.shown.clone(), new_side.dialect),
            self.changes,
            evaluation,
            (old_side.size, new_side.size),
            titles,
        ))
    }

    fn compare_queries(
        &mut self,
        old: &BTreeMap<String, BackupQuery>,
        new: &BTreeMap<String, BackupQuery>,
    ) {
        // Queries are held whole anyway (a file's `queries` is read whole).
        let record = |query: &BackupQuery| serde_json::to_value(query).ok();
        for (id, query) in old {
            match new.get(id) {
                None => self
                    .changes
                    .push(query_change(id, What::Removed, record(query))),
                Some(now) => {
                    let found = compare_queries(query, now);
                    if found.fields.is_empty()
                        && found.expected_added.is_empty()
                        && found.expected_dropped.is_empty()
                    {
                        continue;
                    }
                    let mut change = query_change(id, What::Changed, None);
                    change.fields = found.fields;
                    change.expected_added = found.expected_added;
                    change.expected_dropped = found.expected_dropped;
                    self.changes.push(change);
                }
            }
        }
        for (id, query) in new {
            if !old.contains_key(id) {
                self.changes
                    .push(query_change(id, What::Added, record(query)));
            }
        }
    }
}

fn query_change(id: &str, what: What, record: Option<serde_json::Value>) -> Change {
    let preview = record
        .as_ref()
        .and_then(|r| r.get("query"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_string);
    Change {
        preview,
        kind: Kind::Query,
        id: id.to_string(),
        change: what,
        analysis_id: None,
        chunk_index: None,
        moved: None,
        fields: Vec::new(),
        expected_added: Vec::new(),
        expected_dropped: Vec::new(),
        record,
        order: Order::default(),
    }
}

/// The golden queries of a file, by id.
fn queries_of(header: &Header, shown: &str) -> Result<BTreeMap<String, BackupQuery>> {
    let list = match &header.queries {
        None => return Ok(BTreeMap::new()),
        Some(serde_json::Value::Array(list)) => list,
        Some(_) => {
            return Err(invalid_input(format!(
                "the queries of {shown} are not a list; `golden verify {shown}` names every problem"
            )))
        }
    };
    let mut queries = BTreeMap::new();
    for (i, value) in list.iter().enumerate() {
        let query: BackupQuery = serde_json::from_value(value.clone()).map_err(|e| {
            invalid_input(format!(
                "query #{} of {shown} is not a golden query ({e}); `golden verify {shown}` lists every problem",
                i + 1
            ))
        })?;
        if let Some(twice) = queries.insert(query.id.clone(), query) {
            return Err(invalid_input(format!(
                "{shown} holds query {} twice: ids are unique in a backup; `golden verify {shown}` names every problem",
                twice.id
            )));
        }
    }
    Ok(queries)
}

/// The file-level keys compared: `status_filter` and the `metadata` keys golden does not
/// compute (shown as `metadata.KEY`), and apart from them (a top-level key may well be
/// named `metadata.KEY` too) the top-level keys beyond golden's.
///
/// A file that names no `status_filter` covers the statuses of its analyses (the scope of
/// `restore --sync`): when they all have one status, that is the file's `status_filter`, as
/// `convert` writes it, so that a file and its conversion do not differ.
fn file_keys(header: &mut Header, statuses: &BTreeSet<String>) -> FileExtras {
    let status_filter = header
        .metadata
        .as_ref()
        .and_then(|metadata| metadata.get("status_filter"))
        .cloned()
        .or_else(|| match statuses.iter().collect::<Vec<_>>().as_slice() {
            [status] => Some(serde_json::Value::from(status.as_str())),
            _ => None,
        });
    let mut extras = FileExtras::take_from(header);
    if let Some(status_filter) = status_filter {
        extras
            .metadata
            .insert("status_filter".into(), status_filter);
    }
    extras
}

fn evaluation(
    old: &BTreeMap<String, BackupQuery>,
    new: &BTreeMap<String, BackupQuery>,
    removed_chunks: &HashSet<Uuid>,
    texts_changed: &HashSet<Uuid>,
    in_new: &HashSet<(Kind, Uuid)>,
) -> Evaluation {
    let mut evaluation = Evaluation::default();
    let mut expected_now = HashSet::new();
    for query in new.values() {
        let expected_before = old.get(&query.id).map(|q| &q.expected_chunk_ids);
        for chunk in &query.expected_chunk_ids {
            expected_now.insert(*chunk);
            let expectation = Expectation {
                query: query.id.clone(),
                chunk: *chunk,
            };
            if removed_chunks.contains(chunk) {
                evaluation
                    .queries_expecting_removed_chunks
                    .push(expectation);
            } else if !in_new.contains(&(Kind::Chunk, *chunk)) {
                // In neither file: named when the change brought the expectation.
                if !expected_before.is_some_and(|before| before.contains(chunk)) {
                    evaluation
                        .queries_expecting_chunks_in_neither_file
                        .push(expectation);
                }
            } else if texts_changed.contains(chunk) {
                evaluation
                    .queries_expecting_changed_chunks
                    .push(expectation);
            }
        }
    }
    let no_longer: BTreeSet<Uuid> = old
        .values()
        .flat_map(|query| query.expected_chunk_ids.iter().copied())
        .filter(|chunk| !expected_now.contains(chunk) && !removed_chunks.contains(chunk))
        .collect();
    evaluation.chunks_no_longer_expected = no_longer.into_iter().collect();
    evaluation
}

/// Where a change is listed: file keys first, then analyses in the new file's order (removed
/// ones where the old file had them), each with its own fields, its chunks by index and its
/// artifacts, then the queries by id.
fn order_of(change: &Change, places: &HashMap<Uuid, (u64, u64)>) -> Order {
    let (section, kind) = match change.kind {
        Kind::File => (0, 0),
        Kind::Analysis => (1, 0),
        Kind::Chunk => (1, 1),
        Kind::Artifact => (1, 2),
        Kind::Query => (2, 0),
    };
    let analysis = change
        .analysis_id
        .and_then(|id| places.get(&id).copied())
        .unwrap_or((0, 0));
    let within = change.chunk_index.map_or(i64::MIN, i64::from);
    Order {
        section,
        analysis,
        kind,
        within,
        id: change.id.clone(),
    }
}

/// Where each analysis is listed: at its position in the new file, and one removed from it
/// just after the analysis the old file had before it (so `-` and `+` lines of neighbours do
/// not interleave), removed ones in a row in their old order.
fn places_of(old: &SideState, new: &SideState) -> HashMap<Uuid, (u64, u64)> {
    let mut places: HashMap<Uuid, (u64, u64)> = new
        .analyses
        .iter()
        .map(|(id, (position, _))| (*id, (2 * (position + 1), 0)))
        .collect();
    let mut in_old: Vec<(u64, Uuid)> = old
        .analyses
        .iter()
        .map(|(id, (position, _))| (*position, *id))
        .collect();
    in_old.sort_unstable();
    // Before every analysis of the new file until one of the old file's survives.
    let mut after = 1;
    for (position, id) in in_old {
        match new.analyses.get(&id) {
            Some((now, _)) => after = 2 * (now + 1) + 1,
            None => {
                places.insert(id, (after, position));
            }
        }
    }
    places
}
