//! A backup file as stable, line-oriented text: what `golden show` prints, and what git diffs
//! instead of the JSON once `golden git-setup` registered it as the file's textconv. A JSON
//! diff of a backup shows braces, commas and a checksum that changes on every backup; this
//! text shows the records that changed, one block per record, each line one field.
//!
//! # Layout (version [`LAYOUT`])
//!
//! Blocks follow the file's order, one blank line between two blocks. A block is a title line
//! at column 0 naming the record, then its fields, indented by two spaces, one per line.
//! Git's default hunk header is the last line before a hunk that starts with a letter: the
//! title of the record a change is in.
//!
//! ```text
//! backup                                        version, status_filter, other metadata keys
//! analysis <id>                                 url, title, content_type, status, times, extras
//! chunk <id>  (analysis <id>, #<chunk_index>)   section_title, section_path, content_type,
//!                                               extras, then `content:` and its lines
//! artifact <id>  (analysis <id>, latest)        version, created_at, extras, then `summary:`
//!                                               (older versions first, "older version")
//! analysis <id>  (keys after its chunks)        only for keys a file put after the chunks
//! query <id>                                    query, category, difficulty, one `expected:`
//!                                               per chunk id, one `unresolved:` per reference
//! file extra <key>                              a file-level key (SkillForge's `fixtures`, …)
//! ```
//!
//! Left out, because they follow from the content or change on every backup: the file's
//! `created_at`, the metadata totals and the checksum. A file whose version and metadata come
//! after its analyses (keys sorted by `jq -S`, say) has its `backup` block last.
//!
//! # Values
//!
//! Every value reads one way only:
//!
//! - A missing value is `(none)`. A string is written bare when it is plain: not empty, no
//!   leading or trailing white space, no control character, not starting with `"`, and not
//!   `(none)`. Any other string is written as a JSON string (`""`, `" padded "`,
//!   `"two\nlines"`, `"(none)"`), so a bare value is never a quoted one.
//! - Timestamps are written as golden writes them (`2026-01-31T12:00:00.000000Z`), ids and
//!   numbers as they are.
//! - Extras (the keys golden keeps but does not map to a column) are `extra.<key>: <JSON>`,
//!   the value as compact JSON (strings quoted), keys sorted; metadata keys beyond golden's are
//!   `metadata.<key>: <JSON>`. A key that is not made of letters, digits, `_`, `-` and `.` is
//!   written as a JSON string. A file-level key may be large, so its block holds its value as
//!   pretty-printed JSON, indented: an edit of one of its documents changes only its lines.
//! - A chunk's `content` and an artifact's `summary` are written as their own lines, split at
//!   their newlines and never re-wrapped (a one-word edit changes the one line it is in),
//!   each indented by four spaces. A line is written bare unless it is empty, ends with white
//!   space, holds a control character other than a tab, or starts with `"`; such a line is
//!   written as a JSON string. So a text that ends with a newline ends with a `""` line, and
//!   an empty text is one `""` line.
//!
//! # Memory
//!
//! Records are read and written one at a time ([`read_unchecked_records`]); as in every pass
//! of golden, only the golden queries and the file-level keys are held whole.

use std::borrow::Cow;
use std::cell::RefCell;
use std::io::{self, Write};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::backup_file::extras::METADATA_KEYS;
use crate::backup_file::reader::{Header, ReadError};
use crate::backup_file::record::{BackupQuery, Extra};
use crate::backup_file::records::{read_unchecked_records, Record};
use crate::backup_file::source::BackupSource;
use crate::backup_file::timestamp;
use crate::error::invalid_input;

/// The version of the layout above. git caches renderings under the textconv command line,
/// which `golden git-setup` writes with this number (`--layout`): a change of the layout
/// changes the number, so that git does not diff a cached rendering against a new one.
pub const LAYOUT: u32 = 1;

/// What stands for a missing value.
const NONE: &str = "(none)";

/// Writes the rendering of `source` to `out`. Errors: the file is not a readable backup (exit
/// 2), or `out` failed.
pub fn render<W: Write>(source: &BackupSource, out: W) -> color_eyre::Result<W> {
    let shown = source.path().display().to_string();
    let renderer = RefCell::new(Renderer::new(out));
    let header = read_unchecked_records(
        source.pass(),
        &shown,
        |header| renderer.borrow_mut().start(header),
        |record| renderer.borrow_mut().record(record),
    )
    .map_err(ReadError::into_report)?;
    let mut renderer = renderer.into_inner();
    renderer.finish(&header, &shown)?;
    Ok(renderer.out)
}

struct Renderer<W> {
    out: W,
    blocks_written: usize,
    header_written: bool,
}

impl<W: Write> Renderer<W> {
    fn new(out: W) -> Renderer<W> {
        Renderer {
            out,
            blocks_written: 0,
            header_written: false,
        }
    }

    /// The `backup` block, when the file gave its version and metadata before its analyses
    /// (otherwise it comes last, once they are known).
    fn start(&mut self, header: &Header) -> color_eyre::Result<()> {
        if header.version.is_some() && header.metadata.is_some() {
            self.header(header)?;
        }
        Ok(())
    }

    fn record(&mut self, record: Record) -> color_eyre::Result<()> {
        match record {
            Record::Analysis(head) => {
                self.title(format_args!("analysis {}", head.id))?;
                self.field("url", &scalar(&head.url))?;
                self.field("title", &optional(head.title.as_deref()))?;
                self.field("content_type", &scalar(&head.content_type))?;
                self.field("status", &scalar(&head.status))?;
                self.field("created_at", &instant(&head.created_at))?;
                self.field("updated_at", &instant(&head.updated_at))?;
                self.extras("extra", &head.extra)?;
            }
            Record::Chunk { analysis_id, chunk } => {
                self.title(format_args!(
                    "chunk {}  (analysis {analysis_id}, #{})",
                    chunk.id, chunk.chunk_index
                ))?;
                self.field("section_title", &optional(chunk.section_title.as_deref()))?;
                self.field("section_path", &optional(chunk.section_path.as_deref()))?;
                self.field("content_type", &scalar(&chunk.content_type))?;
                self.extras("extra", &chunk.extra)?;
                self.text("content", &chunk.content)?;
            }
            Record::Artifact {
                analysis_id,
                artifact,
                latest,
            } => {
                let which = if latest { "latest" } else { "older version" };
                self.title(format_args!(
                    "artifact {}  (analysis {analysis_id}, {which})",
                    artifact.id
                ))?;
                let version = artifact.version.map(|version| version.to_string());
                self.field("version", version.as_deref().unwrap_or(NONE))?;
                self.field("created_at", &instant(&artifact.created_at))?;
                self.extras("extra", &artifact.extra)?;
                self.text("summary", &artifact.summary)?;
            }
            Record::End {
                analysis_id,
                late_extra,
                ..
            } => {
                if !late_extra.is_empty() {
                    self.title(format_args!(
                        "analysis {analysis_id}  (keys after its chunks)"
                    ))?;
                    self.extras("extra", &late_extra)?;
                }
            }
        }
        Ok(())
    }

    /// The queries and the file-level keys, which golden writes after the analyses.
    fn finish(&mut self, header: &Header, shown: &str) -> color_eyre::Result<()> {
        match &header.queries {
            None | Some(Value::Null) => {}
            Some(Value::Array(queries)) => {
                for (position, query) in queries.iter().enumerate() {
                    let query: BackupQuery =
                        serde_json::from_value(query.clone()).map_err(|e| {
                            invalid_input(format!(
                                "query #{} of {shown} is not a golden query ({e}): `golden verify` \
                                 names every problem",
                                position + 1
                            ))
                        })?;
                    self.query(&query)?;
                }
            }
            Some(_) => {
                return Err(invalid_input(format!(
                    "\"queries\" of {shown} is not a list: `golden verify` names every problem"
                )))
            }
        }
        if !self.header_written {
            self.header(header)?;
        }
        for (key, value) in sorted(&header.extras) {
            self.title(format_args!("file extra {}", key_name(key)))?;
            let pretty = serde_json::to_string_pretty(value)?;
            for line in pretty.lines() {
                writeln!(self.out, "  {line}")?;
            }
        }
        Ok(())
    }

    fn header(&mut self, header: &Header) -> io::Result<()> {
        self.header_written = true;
        self.title(format_args!("backup"))?;
        self.field("version", &optional(header.version.as_deref()))?;
        let no_metadata = serde_json::Map::new();
        let metadata = match &header.metadata {
            Some(Value::Object(metadata)) => metadata,
            None | Some(Value::Null) => &no_metadata,
            Some(other) => {
                // Not an object: nothing to pick keys from; shown whole.
                return self.field("metadata", &compact(other));
            }
        };
        match metadata.get("status_filter") {
            None => self.field("status_filter", NONE)?,
            Some(Value::String(filter)) => self.field("status_filter", &scalar(filter))?,
            // Not a string: shown under another name, so it never reads as one.
            Some(other) => self.field("metadata.status_filter", &compact(other))?,
        }
        let beyond_golden: Extra = metadata
            .iter()
            .filter(|(key, _)| !METADATA_KEYS.contains(&key.as_str()))
            .map(|(key, value)| (key.clone(), value.clone()))
            .collect();
        self.extras("metadata", &beyond_golden)
    }

    fn query(&mut self, query: &BackupQuery) -> io::Result<()> {
        self.title(format_args!("query {}", scalar(&query.id)))?;
        self.field("query", &scalar(&query.query))?;
        self.field("category", &optional(query.category.as_deref()))?;
        self.field("difficulty", &optional(query.difficulty.as_deref()))?;
        if query.expected_chunk_ids.is_empty() {
            self.field("expected", NONE)?;
        }
        for chunk in &query.expected_chunk_ids {
            self.field("expected", &chunk.to_string())?;
        }
        for reference in &query.unresolved_expected_chunks {
            self.field("unresolved", &scalar(reference))?;
        }
        self.extras("extra", &query.extra)
    }

    /// Starts a block: a blank line after the one before, then its title.
    fn title(&mut self, title: std::fmt::Arguments<'_>) -> io::Result<()> {
        if self.blocks_written > 0 {
            self.out.write_all(b"\n")?;
        }
        self.blocks_written += 1;
        self.out.write_fmt(title)?;
        self.out.write_all(b"\n")
    }

    fn field(&mut self, name: &str, rendered: &str) -> io::Result<()> {
        writeln!(self.out, "  {name}: {rendered}")
    }

    /// `<prefix>.<key>: <compact JSON>` for each key, sorted.
    fn extras(&mut self, prefix: &str, extra: &Extra) -> io::Result<()> {
        for (key, value) in sorted(extra) {
            writeln!(self.out, "  {prefix}.{}: {}", key_name(key), compact(value))?;
        }
        Ok(())
    }

    /// A text as its own lines, under `name:`.
    fn text(&mut self, name: &str, text: &str) -> io::Result<()> {
        writeln!(self.out, "  {name}:")?;
        for line in text.split('\n') {
            writeln!(self.out, "    {}", text_line(line))?;
        }
        Ok(())
    }
}

/// The keys and values of `extra` by key (serde_json's map is ordered already; the rendering
/// must not depend on it).
fn sorted(extra: &Extra) -> Vec<(&String, &Value)> {
    let mut entries: Vec<(&String, &Value)> = extra.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    entries
}

/// A string field: bare when plain, else as a JSON string (see the module's rules).
fn scalar(value: &str) -> Cow<'_, str> {
    let plain = !value.is_empty()
        && value != NONE
        && !value.starts_with('"')
        && !value.starts_with(char::is_whitespace)
        && !value.ends_with(char::is_whitespace)
        && !value.chars().any(char::is_control);
    if plain {
        Cow::Borrowed(value)
    } else {
        Cow::Owned(quoted(value))
    }
}

/// An optional string field: `(none)` when missing.
fn optional(value: Option<&str>) -> Cow<'_, str> {
    value.map_or(Cow::Borrowed(NONE), scalar)
}

/// One line of a text: bare unless that could be misread (see the module's rules).
fn text_line(line: &str) -> Cow<'_, str> {
    let plain = !line.is_empty()
        && !line.starts_with('"')
        && !line.ends_with(char::is_whitespace)
        && !line.chars().any(|c| c.is_control() && c != '\t');
    if plain {
        Cow::Borrowed(line)
    } else {
        Cow::Owned(quoted(line))
    }
}

/// A key of an extra: bare when made of letters, digits, `_`, `-` and `.`, else quoted.
fn key_name(key: &str) -> Cow<'_, str> {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if plain {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(quoted(key))
    }
}

fn quoted(text: &str) -> String {
    // Serializing a string cannot fail; the fallback keeps the promise of a quoted value.
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

/// Compact JSON of a value; object keys come sorted (serde_json's map is ordered by key).
fn compact(value: &Value) -> String {
    value.to_string()
}

fn instant(at: &DateTime<Utc>) -> String {
    timestamp::format(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_strings_are_bare_and_every_other_one_is_quoted() {
        assert_eq!(scalar("Specifying Dependencies"), "Specifying Dependencies");
        assert_eq!(scalar("naïve — 🦀"), "naïve — 🦀");
        assert_eq!(scalar(""), r#""""#);
        assert_eq!(scalar(" padded"), r#"" padded""#);
        assert_eq!(scalar("padded "), r#""padded ""#);
        assert_eq!(scalar("two\nlines"), r#""two\nlines""#);
        assert_eq!(scalar("tab\there"), r#""tab\there""#);
        assert_eq!(scalar("\"quoted\""), r#""\"quoted\"""#);
        assert_eq!(scalar("say \"hi\""), "say \"hi\"");
        assert_eq!(scalar("(none)"), r#""(none)""#);
        assert_eq!(optional(None), "(none)");
        assert_eq!(optional(Some("")), r#""""#);
    }

    #[test]
    fn text_lines_keep_their_indentation_and_quote_what_could_be_misread() {
        assert_eq!(text_line("    indented code"), "    indented code");
        assert_eq!(text_line("a\tb"), "a\tb");
        assert_eq!(text_line(""), r#""""#);
        assert_eq!(text_line("trailing "), r#""trailing ""#);
        assert_eq!(text_line("crlf\r"), r#""crlf\r""#);
        assert_eq!(
            text_line("\"starts with a quote"),
            r#""\"starts with a quote""#
        );
        assert_eq!(text_line("(none)"), "(none)");
    }

    #[test]
    fn keys_are_bare_when_they_cannot_hold_the_separator() {
        assert_eq!(key_name("model_version"), "model_version");
        assert_eq!(key_name("a.b-c"), "a.b-c");
        assert_eq!(key_name("with space"), r#""with space""#);
        assert_eq!(key_name("a: b"), r#""a: b""#);
        assert_eq!(key_name(""), r#""""#);
    }

    #[test]
    fn a_text_is_its_lines_and_a_final_newline_is_an_empty_line() {
        let mut renderer = Renderer::new(Vec::new());
        renderer.text("content", "one\n\ntwo\n").unwrap();
        renderer.text("summary", "").unwrap();
        assert_eq!(
            String::from_utf8(renderer.out).unwrap(),
            "  content:\n    one\n    \"\"\n    two\n    \"\"\n  summary:\n    \"\"\n"
        );
    }
}
