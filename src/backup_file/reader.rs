//! Streams a backup file: the top-level keys are read as they come and each element of
//! `analyses` is handed to the caller as a `serde_json::Value` before the next is parsed, so
//! memory stays flat however large the file. Values, not typed records, so a validator can
//! report every problem of a record (a missing key, a bad UUID) instead of only the first.
//!
//! Whatever makes the file unreadable or not a backup (I/O, broken JSON, no `analyses`, an
//! unknown major version) is a [`ReadError`], which maps to exit code 2.

use std::fmt;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

use super::SUPPORTED_MAJOR;
use crate::error::InvalidInput;

/// The top-level keys other than `analyses`, as found.
#[derive(Debug, Default, Clone)]
pub struct Header {
    pub version: Option<String>,
    pub created_at: Option<Value>,
    pub metadata: Option<Value>,
    /// The optional list of golden queries (small: kept whole).
    pub queries: Option<Value>,
    pub analyses_seen: usize,
}

/// Why a file could not be read as a backup.
#[derive(Debug)]
pub enum ReadError {
    /// The file is unreadable or is not a backup file (exit 2).
    Invalid(String),
    /// The caller's callback stopped the read with its own error.
    Stopped(color_eyre::Report),
}

impl ReadError {
    /// The error as a report with the right exit code.
    pub fn into_report(self) -> color_eyre::Report {
        match self {
            ReadError::Invalid(message) => color_eyre::Report::new(InvalidInput(message)),
            ReadError::Stopped(report) => report,
        }
    }
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Invalid(message) => f.write_str(message),
            ReadError::Stopped(report) => write!(f, "{report}"),
        }
    }
}

/// Reads `path`, calling `on_analysis(index, value)` for each element of `analyses` in order.
pub fn read_backup<F>(path: &Path, mut on_analysis: F) -> Result<Header, ReadError>
where
    F: FnMut(usize, Value) -> color_eyre::Result<()>,
{
    let shown = path.display();
    let file =
        File::open(path).map_err(|e| ReadError::Invalid(format!("cannot read {shown}: {e}")))?;
    let mut reader = BufReader::with_capacity(256 * 1024, file);
    let start = reader
        .fill_buf()
        .map_err(|e| ReadError::Invalid(format!("cannot read {shown}: {e}")))?;
    if start.is_empty() {
        return Err(ReadError::Invalid(format!(
            "{shown} is empty, not a backup file"
        )));
    }
    if start.starts_with(&[0xEF, 0xBB, 0xBF]) {
        return Err(ReadError::Invalid(format!(
            "{shown} starts with a UTF-8 byte-order mark, which JSON forbids; save it as UTF-8 without BOM"
        )));
    }

    let mut header = Header::default();
    let mut stopped = None;
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let result = TopLevel {
        header: &mut header,
        on_analysis: &mut on_analysis,
        stopped: &mut stopped,
    }
    .deserialize(&mut deserializer)
    .and_then(|()| deserializer.end());

    if let Some(report) = stopped {
        return Err(ReadError::Stopped(report));
    }
    if let Some(version) = &header.version {
        check_version(version).map_err(|m| ReadError::Invalid(format!("{shown}: {m}")))?;
    }
    if let Err(e) = result {
        return Err(ReadError::Invalid(describe_json_error(
            &shown.to_string(),
            &e,
        )));
    }
    if header.version.is_none() {
        return Err(ReadError::Invalid(format!(
            "{shown} is not a golden backup: it has no \"version\" key"
        )));
    }
    Ok(header)
}

/// Accepts every "1.x"; refuses other majors with a message that says what to do.
pub fn check_version(version: &str) -> Result<(), String> {
    let major = version.split('.').next().unwrap_or_default();
    if major == SUPPORTED_MAJOR {
        Ok(())
    } else {
        Err(format!(
            "backup format version {version:?} is not supported (this golden reads {SUPPORTED_MAJOR}.x); \
             use a golden release that reads it"
        ))
    }
}

fn describe_json_error(shown: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Io => format!("cannot read {shown}: {e}"),
        Category::Eof => format!("{shown} is truncated: the JSON ends early at {at}"),
        Category::Syntax => format!("{shown} is not valid JSON: {e}"),
        Category::Data => format!("{shown} is not a golden backup: {e}"),
    }
}

/// The file's top-level object.
struct TopLevel<'a, F> {
    header: &'a mut Header,
    on_analysis: &'a mut F,
    stopped: &'a mut Option<color_eyre::Report>,
}

impl<'de, F> DeserializeSeed<'de> for TopLevel<'_, F>
where
    F: FnMut(usize, Value) -> color_eyre::Result<()>,
{
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F> Visitor<'de> for TopLevel<'_, F>
where
    F: FnMut(usize, Value) -> color_eyre::Result<()>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object with \"version\", \"metadata\" and \"analyses\"")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut analyses_found = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "version" => {
                    let version = match map.next_value::<Value>()? {
                        Value::String(s) => s,
                        other => {
                            return Err(de::Error::custom(format!(
                                "\"version\" must be a string like \"1.0\", not {other}"
                            )))
                        }
                    };
                    // Refuse an unknown major before reading a possibly huge list.
                    let supported = check_version(&version);
                    self.header.version = Some(version);
                    supported.map_err(de::Error::custom)?;
                }
                "created_at" => self.header.created_at = Some(map.next_value()?),
                "metadata" => self.header.metadata = Some(map.next_value()?),
                "queries" => self.header.queries = Some(map.next_value()?),
                "analyses" => {
                    if analyses_found {
                        return Err(de::Error::custom("the \"analyses\" key appears twice"));
                    }
                    analyses_found = true;
                    map.next_value_seed(Analyses {
                        header: self.header,
                        on_analysis: self.on_analysis,
                        stopped: self.stopped,
                    })?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        if !analyses_found {
            return Err(de::Error::custom("it has no \"analyses\" list"));
        }
        Ok(())
    }
}

/// The `analyses` list, element by element.
struct Analyses<'a, F> {
    header: &'a mut Header,
    on_analysis: &'a mut F,
    stopped: &'a mut Option<color_eyre::Report>,
}

impl<'de, F> DeserializeSeed<'de> for Analyses<'_, F>
where
    F: FnMut(usize, Value) -> color_eyre::Result<()>,
{
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F> Visitor<'de> for Analyses<'_, F>
where
    F: FnMut(usize, Value) -> color_eyre::Result<()>,
{
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"analyses\" to be a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(value) = seq.next_element::<Value>()? {
            let index = self.header.analyses_seen;
            self.header.analyses_seen += 1;
            if let Err(report) = (self.on_analysis)(index, value) {
                *self.stopped = Some(report);
                return Err(de::Error::custom("stopped by the caller"));
            }
        }
        Ok(())
    }
}
