//! The conflicted result of a merge as one file an editor resolves: git-style conflict blocks
//! (`<<<<<<< ours`, `=======`, `>>>>>>> theirs`) around the lines where the result resolved as
//! ours differs from the result resolved as theirs.
//!
//! Both results are complete backups written by the same writer, so they share every line but
//! those of the conflicts, and golden's pretty layout puts every key of a record on a line of
//! its own (JSON strings never hold a raw newline). A line diff of the two therefore finds
//! blocks of whole lines: keeping the ours lines of every block gives the ours result, the
//! theirs lines the theirs result, each valid JSON, commas included. Blocks separated only by
//! lines without a letter or a digit (`},`, `{`) are joined into one, as git joins such
//! conflicts: a block then never ends inside the braces of one record while the next begins in
//! those of another, so a block of each side taken independently stays valid JSON too.
//!
//! The header's computed lines (the totals, the checksum) would differ between the two results
//! on every merge; they are taken from the ours result, and the checksum is a sentinel that is
//! not a checksum, so `golden verify` refuses the file until `golden merge --finish` rewrites
//! it with a fresh header.

use std::collections::HashSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::ops::Range;

use similar::{capture_diff_deadline, capture_diff_slices_deadline, Algorithm, DiffOp, DiffTag};

/// The line that opens a conflict block (git's marker, 7 characters).
pub const OURS_MARKER: &str = "<<<<<<<";
/// The line between the two sides of a block.
pub const SEPARATOR: &str = "=======";
/// The line that closes a block.
pub const THEIRS_MARKER: &str = ">>>>>>>";

/// What the checksum of a conflicted merge result starts with: `verify` refuses such a file.
pub const UNRESOLVED_CHECKSUM_PREFIX: &str = "unresolved merge conflicts";

/// The checksum sentinel of a result with `conflicts` conflicts.
pub fn unresolved_checksum(conflicts: usize) -> String {
    format!(
        "{UNRESOLVED_CHECKSUM_PREFIX} ({conflicts}): keep one side of each conflict block, then run golden merge --finish on this file"
    )
}

/// The lines of the header golden computes, which the layout takes from the ours result.
const COMPUTED_HEADER_LINES: [&str; 5] = [
    "    \"total_analyses\": ",
    "    \"total_chunks\": ",
    "    \"total_artifacts\": ",
    "    \"total_queries\": ",
    "    \"checksum\": ",
];

/// Where the header ends: the `analyses` key, at the file's top level (two spaces in).
fn header_end(text: &str) -> usize {
    text.find("\n  \"analyses\": [").map_or(0, |at| at + 1)
}

/// The header of `text` (a result of golden's writer) with its computed lines as in
/// `ours_header`, and the checksum `sentinel`.
fn header_like(text: &str, ours_header: &str, sentinel: &str) -> String {
    let mut out = String::new();
    for line in text[..header_end(text)].split_inclusive('\n') {
        let computed = COMPUTED_HEADER_LINES
            .iter()
            .find(|prefix| line.starts_with(**prefix));
        match computed {
            Some(prefix) if prefix.contains("checksum") => {
                out.push_str(prefix);
                out.push_str(&serde_json::Value::String(sentinel.to_string()).to_string());
                out.push('\n');
            }
            Some(prefix) => match ours_header
                .split_inclusive('\n')
                .find(|l| l.starts_with(*prefix))
            {
                Some(ours_line) => out.push_str(ours_line),
                None => out.push_str(line),
            },
            None => out.push_str(line),
        }
    }
    out
}

/// Gives both results the header of `ours` with the checksum `sentinel`, in place.
fn align_headers(ours: &mut String, theirs: &mut String, sentinel: &str) {
    let ours_header = ours[..header_end(ours)].to_string();
    let new_ours = header_like(ours, &ours_header, sentinel);
    let new_theirs = header_like(theirs, &ours_header, sentinel);
    ours.replace_range(..header_end(ours), &new_ours);
    theirs.replace_range(..header_end(theirs), &new_theirs);
}

/// The conflicted file: `ours` and `theirs` (two results of golden's writer) laid out as one
/// into `out`, with conflict blocks labelled `ours_label` and `theirs_label`, and the header of
/// `ours` with `sentinel` for its checksum. Returns the number of blocks.
pub fn lay_out(
    mut ours: String,
    mut theirs: String,
    labels: (&str, &str),
    sentinel: &str,
    out: &mut impl Write,
) -> io::Result<usize> {
    align_headers(&mut ours, &mut theirs, sentinel);
    let (old, new): (Vec<&str>, Vec<&str>) = (
        ours.split_inclusive('\n').collect(),
        theirs.split_inclusive('\n').collect(),
    );
    let mut segments: Vec<Segment> = Vec::new();
    for op in diff_by_records(&old, &new) {
        let (tag, old, new) = op.as_tag_tuple();
        let equal = tag == DiffTag::Equal;
        match segments.last_mut() {
            // The records' diff and the lines' diff each end on equal runs: one run.
            Some(last) if last.equal && equal => {
                last.old.end = old.end;
                last.new.end = new.end;
            }
            _ => segments.push(Segment { equal, old, new }),
        }
    }
    slide_to_record_boundaries(&mut segments, &old, &new);
    let segments = join_close_changes(segments, &old);

    let mut blocks = 0;
    for segment in &segments {
        if segment.equal {
            for line in &old[segment.old.clone()] {
                out.write_all(line.as_bytes())?;
            }
            continue;
        }
        blocks += 1;
        write_marker(out, OURS_MARKER, labels.0)?;
        for line in &old[segment.old.clone()] {
            write_line(out, line)?;
        }
        write_marker(out, SEPARATOR, "")?;
        for line in &new[segment.new.clone()] {
            write_line(out, line)?;
        }
        write_marker(out, THEIRS_MARKER, labels.1)?;
    }
    Ok(blocks)
}

/// The line diff of two results, computed in two steps so that its cost follows the
/// conflicts, not the file: first the records (the lines from one element of a top-level list,
/// or one top-level key, to the next), equal ones matched whole; then the lines of the records
/// that differ, pair by pair where as many records replace as many (the theirs result is
/// laid out in ours' order, so they are the same records), else the stretch whole. No clock
/// bounds it: the same inputs must give the same bytes, whatever the machine's load, and the
/// pairs keep each line diff the size of a record.
fn diff_by_records(old: &[&str], new: &[&str]) -> Vec<DiffOp> {
    let (old_records, new_records) = (records_of(old), records_of(new));
    let text = |lines: &[&str], record: &Range<usize>| -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        lines[record.clone()].hash(&mut hasher);
        hasher.finish()
    };
    // Records compared by a hash of their lines, then by their lines where hashes agree.
    let old_keys: Vec<RecordKey> = old_records
        .iter()
        .map(|record| RecordKey {
            hash: text(old, record),
            lines: &old[record.clone()],
        })
        .collect();
    let new_keys: Vec<RecordKey> = new_records
        .iter()
        .map(|record| RecordKey {
            hash: text(new, record),
            lines: &new[record.clone()],
        })
        .collect();
    let lines_of = |records: &[Range<usize>], range: Range<usize>| -> Range<usize> {
        match (
            records.get(range.start),
            range.end.checked_sub(1).and_then(|last| records.get(last)),
        ) {
            (Some(first), Some(last)) if !range.is_empty() => first.start..last.end,
            // An empty range of records: the line where it would be.
            _ => {
                let at = records.get(range.start).map_or_else(
                    || records.last().map_or(0, |last| last.end),
                    |record| record.start,
                );
                at..at
            }
        }
    };
    let mut ops = Vec::new();
    for op in capture_diff_slices_deadline(Algorithm::Patience, &old_keys, &new_keys, None) {
        let (tag, old_range, new_range) = op.as_tag_tuple();
        let (old_lines, new_lines) = (
            lines_of(&old_records, old_range.clone()),
            lines_of(&new_records, new_range.clone()),
        );
        if tag == DiffTag::Equal {
            ops.push(DiffOp::Equal {
                old_index: old_lines.start,
                new_index: new_lines.start,
                len: old_lines.len(),
            });
        } else if old_range.len() == new_range.len() {
            for (old_record, new_record) in old_range.zip(new_range) {
                ops.extend(capture_diff_deadline(
                    Algorithm::Patience,
                    old,
                    old_records[old_record].clone(),
                    new,
                    new_records[new_record].clone(),
                    None,
                ));
            }
        } else {
            ops.extend(capture_diff_deadline(
                Algorithm::Patience,
                old,
                old_lines,
                new,
                new_lines,
                None,
            ));
        }
    }
    ops
}

/// A record of a result, for the first step of the diff.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct RecordKey<'a> {
    hash: u64,
    lines: &'a [&'a str],
}

impl std::hash::Hash for RecordKey<'_> {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u64(self.hash);
    }
}

/// The records of a result of golden's writer, as ranges of its lines: a new one begins at
/// each element of a top-level list (a line `    {`) and at each top-level key (two spaces
/// in). Any cut gives a correct diff; these make its first step match whole analyses and
/// queries.
fn records_of(lines: &[&str]) -> Vec<Range<usize>> {
    let mut records = Vec::new();
    let mut start = 0;
    for (at, line) in lines.iter().enumerate() {
        let begins = *line == "    {\n" || (line.starts_with("  \"") && !line.starts_with("   "));
        if begins && at > start {
            records.push(start..at);
            start = at;
        }
    }
    if start < lines.len() {
        records.push(start..lines.len());
    }
    records
}

/// The first key that appears twice in one object of `file`, with its line: what keeping both
/// sides of a conflict block leaves (each side holds the record's key), which a JSON reader
/// would silently read as the later one. The file is read as golden lays it out, one key or
/// closing bracket a line; a file laid out otherwise is not checked.
pub fn first_repeated_key(file: impl Read) -> io::Result<Option<(usize, String)>> {
    // The keys seen in each object open around the current line; a list holds none.
    let mut open: Vec<Option<HashSet<String>>> = Vec::new();
    for (at, line) in BufReader::new(file).lines().enumerate() {
        let line = line?;
        let text = line.trim();
        if text.starts_with('}') || text.starts_with(']') {
            open.pop();
            continue;
        }
        if text.starts_with('"') {
            let mut values = serde_json::Deserializer::from_str(text).into_iter::<String>();
            if let Some(Ok(key)) = values.next() {
                let after = &text[values.byte_offset()..];
                if after.trim_start().starts_with(':') {
                    if let Some(Some(keys)) = open.last_mut() {
                        if !keys.insert(key.clone()) {
                            return Ok(Some((at + 1, key)));
                        }
                    }
                }
            }
        }
        if text.ends_with('{') {
            open.push(Some(HashSet::new()));
        } else if text.ends_with('[') {
            open.push(None);
        }
    }
    Ok(None)
}

/// A run of the diff: equal lines, or lines that differ (a block).
#[derive(Debug, Clone)]
struct Segment {
    equal: bool,
    old: Range<usize>,
    new: Range<usize>,
}

/// Moves each block that only adds or only removes lines to the place among its equivalent
/// places (a diff may shift such a block by the lines it shares with its neighbours: `{` or
/// `},`) where it starts least indented, on an opening brace, and ends on a closing one: a
/// whole record between the markers, as a reader expects it.
fn slide_to_record_boundaries(segments: &mut [Segment], old: &[&str], new: &[&str]) {
    for at in 1..segments.len().saturating_sub(1) {
        let (before, rest) = segments.split_at_mut(at);
        let (block, after) = rest.split_at_mut(1);
        let (previous, block, next) = (&mut before[at - 1], &mut block[0], &mut after[0]);
        if block.equal || !previous.equal || !next.equal {
            continue;
        }
        let (lines, range) = match (block.old.is_empty(), block.new.is_empty()) {
            (true, false) => (new, block.new.clone()),
            (false, true) => (old, block.old.clone()),
            _ => continue,
        };
        let mut up = 0;
        while up < previous.old.len() && lines[range.start - 1 - up] == lines[range.end - 1 - up] {
            up += 1;
        }
        let mut down = 0;
        while down < next.old.len() && lines[range.start + down] == lines[range.end + down] {
            down += 1;
        }
        let score = |shift: isize| {
            let first = lines[(range.start as isize + shift) as usize];
            let last = lines[(range.end as isize - 1 + shift) as usize];
            let opens = first.trim_start().starts_with(['{', '[']);
            let closes = last.trim_start().starts_with(['}', ']']);
            (indent(first), !opens, !closes, shift.unsigned_abs())
        };
        let Some(best) = (-(up as isize)..=down as isize).min_by_key(|shift| score(*shift)) else {
            continue;
        };
        let shifted = |range: &Range<usize>, start: bool, end: bool| {
            let move_by = |at: usize| (at as isize + best) as usize;
            (if start {
                move_by(range.start)
            } else {
                range.start
            })..(if end { move_by(range.end) } else { range.end })
        };
        previous.old = shifted(&previous.old, false, true);
        previous.new = shifted(&previous.new, false, true);
        block.old = shifted(&block.old, true, true);
        block.new = shifted(&block.new, true, true);
        next.old = shifted(&next.old, true, false);
        next.new = shifted(&next.new, true, false);
    }
}

fn indent(line: &str) -> usize {
    line.len() - line.trim_start().len()
}

/// Joins consecutive blocks, and blocks separated only by structural lines.
fn join_close_changes(segments: Vec<Segment>, old: &[&str]) -> Vec<Segment> {
    let mut joined: Vec<Segment> = Vec::with_capacity(segments.len());
    for segment in segments {
        if segment.old.is_empty() && segment.new.is_empty() {
            continue;
        }
        match joined.as_mut_slice() {
            [.., before] if !segment.equal && !before.equal => {
                before.old.end = segment.old.end;
                before.new.end = segment.new.end;
            }
            [.., before, between]
                if !segment.equal
                    && !before.equal
                    && old[between.old.clone()].iter().all(|line| structural(line)) =>
            {
                before.old.end = segment.old.end;
                before.new.end = segment.new.end;
                joined.pop();
            }
            _ => joined.push(segment),
        }
    }
    joined
}

/// A line of braces, brackets and commas only.
fn structural(line: &str) -> bool {
    !line.chars().any(char::is_alphanumeric)
}

fn write_marker(out: &mut impl Write, marker: &str, label: &str) -> io::Result<()> {
    out.write_all(marker.as_bytes())?;
    if !label.is_empty() {
        out.write_all(b" ")?;
        out.write_all(label.as_bytes())?;
    }
    out.write_all(b"\n")
}

/// A line of one side of a block; the file's last line has no newline of its own.
fn write_line(out: &mut impl Write, line: &str) -> io::Result<()> {
    out.write_all(line.as_bytes())?;
    if !line.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    Ok(())
}

/// Whether `line` is a conflict marker line. No line of a JSON file can start so (outside a
/// string, JSON has no `<`, `=` or `>`; a string holds no raw newline).
pub fn is_marker(line: &[u8]) -> bool {
    [OURS_MARKER, SEPARATOR, THEIRS_MARKER]
        .iter()
        .any(|marker| line.starts_with(marker.as_bytes()))
}

/// The first conflict marker line of `reader`: its number (from 1) and its text.
pub fn first_marker(reader: impl io::Read) -> io::Result<Option<(u64, String)>> {
    let mut reader = io::BufReader::with_capacity(256 * 1024, reader);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        number += 1;
        if is_marker(&line) {
            let text = String::from_utf8_lossy(&line).trim_end().to_string();
            return Ok(Some((number, text)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keeps one side of every block: `pick(i)` says which for the block `i` (true: ours).
    pub(crate) fn resolve(text: &str, pick: impl Fn(usize) -> bool) -> String {
        let mut out = String::new();
        let mut state = None;
        let mut block = 0;
        for line in text.split_inclusive('\n') {
            if line.starts_with(OURS_MARKER) {
                state = Some(true);
            } else if line.starts_with(SEPARATOR) {
                state = Some(false);
            } else if line.starts_with(THEIRS_MARKER) {
                state = None;
                block += 1;
            } else {
                match state {
                    None => out.push_str(line),
                    Some(in_ours) if in_ours == pick(block) => out.push_str(line),
                    Some(_) => {}
                }
            }
        }
        out
    }

    /// Conflicts of every kind on both sides of the sample: a field, an analysis deleted
    /// while edited, a query that follows it, a chunk index taken twice, a file-level key.
    fn conflicted() -> (String, String) {
        use crate::merge::dataset::testing::{chunk, query, sample, text_of, uuid};
        use crate::merge::dataset::{Base, FieldKey};
        use std::rc::Rc;
        let base = sample();
        let (mut ours, mut theirs) = (base.clone(), base.clone());
        Rc::make_mut(ours.chunks.get_mut(&uuid(12)).unwrap())
            .record
            .content = "ours".into();
        Rc::make_mut(theirs.chunks.get_mut(&uuid(12)).unwrap())
            .record
            .content = "theirs".into();
        ours.analyses.remove(&uuid(2));
        ours.chunks.retain(|_, chunk| chunk.analysis != uuid(2));
        Rc::make_mut(theirs.chunks.get_mut(&uuid(22)).unwrap())
            .record
            .content = "edited".into();
        theirs.queries.insert("q2".into(), query("q2", &[21, 11]));
        ours.chunks.insert(uuid(13), chunk(13, 1, 2, "ours' third"));
        theirs
            .chunks
            .insert(uuid(14), chunk(14, 1, 2, "theirs' third"));
        ours.file
            .insert(FieldKey::Key("source".into()), "ours".into());
        theirs
            .file
            .insert(FieldKey::Key("source".into()), "theirs".into());
        let merged = crate::merge::three_way::merge(&Base::of(&base), &ours, &theirs).unwrap();
        assert_eq!(merged.conflicts.len(), 4, "{:?}", merged.conflicts);
        (text_of(&merged.ours), text_of(&merged.theirs))
    }

    #[test]
    fn every_choice_of_sides_gives_valid_json() {
        let (ours, theirs) = conflicted();
        let mut out = Vec::new();
        let blocks = lay_out(
            ours.clone(),
            theirs.clone(),
            ("ours", "theirs"),
            "unresolved (4)",
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!((4..=12).contains(&blocks), "{blocks} blocks:\n{text}");
        assert!(!text.contains("sha256:"), "{text}");
        for choice in 0..(1u32 << blocks) {
            let resolved = resolve(&text, |block| choice & (1 << block) != 0);
            let parsed: Result<serde_json::Value, _> = serde_json::from_str(&resolved);
            assert!(parsed.is_ok(), "choice {choice:b}:\n{text}");
        }
        // One side everywhere is that side's result, but for the header's computed lines.
        let (mut ours, mut theirs) = (ours, theirs);
        align_headers(&mut ours, &mut theirs, "unresolved (4)");
        assert_eq!(resolve(&text, |_| true), ours);
        assert_eq!(resolve(&text, |_| false), theirs);
        // The header's totals are ours' on both sides: never a block.
        let header = &text[..header_end(&text)];
        assert!(!header.contains(OURS_MARKER), "{header}");
        assert!(
            header.contains("\"checksum\": \"unresolved (4)\""),
            "{header}"
        );
    }

    #[test]
    fn a_record_the_sides_order_differently_stays_in_one_block() {
        use crate::merge::dataset::testing::{chunk_mut, head_mut, sample, text_of, uuid};
        use crate::merge::dataset::{write_in_order_of, Base};
        let base = sample();
        let (mut ours, mut theirs) = (base.clone(), base.clone());
        // Analysis 1 before 2 on our side, after it on theirs; chunk 11 last on theirs.
        head_mut(&mut theirs, 1).created_at =
            base.analyses[&uuid(2)].created_at + chrono::Duration::seconds(1);
        head_mut(&mut ours, 1).created_at =
            base.analyses[&uuid(1)].created_at - chrono::Duration::seconds(1);
        chunk_mut(&mut ours, 11).record.chunk_index = 5;
        chunk_mut(&mut theirs, 11).record.chunk_index = 7;
        let merged = crate::merge::three_way::merge(&Base::of(&base), &ours, &theirs).unwrap();
        assert_eq!(merged.conflicts.len(), 2, "{:?}", merged.conflicts);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("theirs.json");
        // The moment `text_of` writes.
        let at = chrono::TimeZone::timestamp_opt(&chrono::Utc, 1_750_000_000, 0).unwrap();
        write_in_order_of(&merged.theirs, &merged.ours, at, &path)
            .unwrap()
            .persist()
            .unwrap();
        let theirs_text = std::fs::read_to_string(&path).unwrap();
        let mut out = Vec::new();
        let blocks = lay_out(
            text_of(&merged.ours),
            theirs_text,
            ("ours", "theirs"),
            "unresolved (2)",
            &mut out,
        )
        .unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(blocks, 2, "{text}");
        assert_eq!(
            text.lines().count(),
            text_of(&merged.ours).lines().count() + 2 * 4,
            "{text}"
        );
    }

    #[test]
    fn markers_are_found_by_line() {
        let text =
            "{\n  \"a\": 1,\n<<<<<<< ours\n  \"b\": 2\n=======\n  \"b\": 3\n>>>>>>> theirs\n}\n";
        assert_eq!(
            first_marker(text.as_bytes()).unwrap(),
            Some((3, "<<<<<<< ours".to_string()))
        );
        assert_eq!(
            first_marker("{\n  \"<<<<<<<\": 1\n}\n".as_bytes()).unwrap(),
            None
        );
    }
}
