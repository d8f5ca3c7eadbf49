//! Streams a backup file. The top-level keys are read as they come, and the `analyses` list
//! is handed to the caller in [`Piece`]s: an analysis's own keys, then each element of its
//! `chunks` list as it is parsed, then the analysis's end. Memory stays flat whatever the
//! file's shape, ten analyses or one analysis of a million chunks. Pieces carry
//! `serde_json::Value`s, not typed records, so a validator can report every problem of a
//! record (a missing key, a bad UUID) instead of only the first; `records` builds typed
//! records on top for the passes that follow validation.
//!
//! Whatever makes the file unreadable or not a backup (I/O, broken JSON, no `analyses`, an
//! unknown major version) is a [`ReadError`], which maps to exit code 2.

use std::fmt;
use std::io::{BufRead, BufReader, Read};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Value};

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
    /// Every other top-level key, as found (kept whole: SkillForge's `source` and
    /// `fixtures`, `orphan_artifacts`, …), so a file's keys are never dropped.
    pub extras: Map<String, Value>,
    pub analyses_seen: usize,
}

/// A part of the `analyses` list, in file order.
#[derive(Debug)]
pub enum Piece<'a> {
    /// The list begins; `header` holds the top-level keys read before it.
    AnalysesStart { header: &'a Header },
    /// An element of the list that is not a JSON object.
    NotAnObject { analysis: usize, value: Value },
    /// An analysis's `chunks` list begins; `fields` are the analysis's keys read before it.
    ChunksStart {
        analysis: usize,
        fields: &'a Map<String, Value>,
    },
    /// An element of that `chunks` list (`position` counts from 0).
    Chunk {
        analysis: usize,
        position: usize,
        value: Value,
    },
    /// The analysis is complete: its keys other than `chunks`, and what `chunks` was.
    AnalysisEnd {
        analysis: usize,
        fields: Map<String, Value>,
        chunks: ChunkList,
    },
}

/// What an analysis's `chunks` key held.
#[derive(Debug, Clone, PartialEq)]
pub enum ChunkList {
    /// No `chunks` key.
    Missing,
    /// A list, streamed as [`Piece::Chunk`]s.
    Streamed { count: usize },
    /// Something else than a list.
    NotAList(Value),
    /// The key appears more than once (the later ones are skipped).
    Repeated { count: usize },
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

/// The callback of a read: one piece at a time.
pub trait OnPiece: FnMut(Piece<'_>) -> color_eyre::Result<()> {}
impl<F: FnMut(Piece<'_>) -> color_eyre::Result<()>> OnPiece for F {}

/// Reads a backup from `source` (named `shown` in messages), calling `on_piece` for every
/// part of `analyses` in order.
pub fn read_pieces<R: Read, F: OnPiece>(
    source: R,
    shown: &str,
    on_piece: F,
) -> Result<Header, ReadError> {
    read_pieces_keeping(source, shown, Extras::Keep, on_piece)
}

/// Whether a read keeps the file-level keys golden does not define ([`Header::extras`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extras {
    Keep,
    /// Skipped, never held: the passes after the validation, which has them already (they
    /// may be large: SkillForge's `fixtures`).
    Skip,
}

/// [`read_pieces`], keeping the file-level extras or not.
pub fn read_pieces_keeping<R: Read, F: OnPiece>(
    source: R,
    shown: &str,
    extras: Extras,
    mut on_piece: F,
) -> Result<Header, ReadError> {
    let mut reader = BufReader::with_capacity(256 * 1024, source);
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
        extras,
        header: &mut header,
        on_piece: &mut on_piece,
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
        return Err(ReadError::Invalid(describe_json_error(shown, &e)));
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

pub(crate) fn describe_json_error(shown: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {} column {}", e.line(), e.column());
    match e.classify() {
        Category::Io => format!("cannot read {shown}: {e}"),
        Category::Eof => format!("{shown} is truncated: the JSON ends early at {at}"),
        Category::Syntax => format!("{shown} is not valid JSON: {e}"),
        Category::Data => format!("{shown} is not a golden backup: {e}"),
    }
}

/// The error a visitor returns once the callback failed (its report is kept in `stopped`).
fn stop<E: de::Error>(stopped: &mut Option<color_eyre::Report>, report: color_eyre::Report) -> E {
    *stopped = Some(report);
    E::custom("stopped by the caller")
}

/// The file's top-level object.
struct TopLevel<'a, F> {
    extras: Extras,
    header: &'a mut Header,
    on_piece: &'a mut F,
    stopped: &'a mut Option<color_eyre::Report>,
}

impl<'de, F: OnPiece> DeserializeSeed<'de> for TopLevel<'_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de, F: OnPiece> Visitor<'de> for TopLevel<'_, F> {
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
                        on_piece: self.on_piece,
                        stopped: self.stopped,
                    })?;
                }
                _ if self.extras == Extras::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                _ => {
                    let value = map.next_value()?;
                    self.header.extras.insert(key, value);
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
    on_piece: &'a mut F,
    stopped: &'a mut Option<color_eyre::Report>,
}

impl<'de, F: OnPiece> DeserializeSeed<'de> for Analyses<'_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: OnPiece> Visitor<'de> for Analyses<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("\"analyses\" to be a list")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        if let Err(report) = (self.on_piece)(Piece::AnalysesStart {
            header: self.header,
        }) {
            return Err(stop(self.stopped, report));
        }
        loop {
            let analysis = self.header.analyses_seen;
            let element = seq.next_element_seed(AnalysisSeed {
                analysis,
                on_piece: &mut *self.on_piece,
                stopped: &mut *self.stopped,
            })?;
            if element.is_none() {
                return Ok(());
            }
            self.header.analyses_seen += 1;
        }
    }
}

/// One element of `analyses`: an object streamed key by key, or anything else whole.
struct AnalysisSeed<'a, F> {
    analysis: usize,
    on_piece: &'a mut F,
    stopped: &'a mut Option<color_eyre::Report>,
}

impl<F: OnPiece> AnalysisSeed<'_, F> {
    fn not_an_object<E: de::Error>(self, value: Value) -> Result<(), E> {
        let piece = Piece::NotAnObject {
            analysis: self.analysis,
            value,
        };
        (self.on_piece)(piece).map_err(|report| stop(self.stopped, report))
    }
}

impl<'de, F: OnPiece> DeserializeSeed<'de> for AnalysisSeed<'_, F> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F: OnPiece> Visitor<'de> for AnalysisSeed<'_, F> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an analysis")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut fields = Map::new();
        let mut chunks = ChunkList::Missing;
        while let Some(key) = map.next_key::<String>()? {
            if key != "chunks" {
                let value: Value = map.next_value()?;
                fields.insert(key, value);
                continue;
            }
            chunks = match chunks {
                ChunkList::Missing => map.next_value_seed(ChunksSeed {
                    analysis: self.analysis,
                    fields: &fields,
                    on_piece: &mut *self.on_piece,
                    stopped: &mut *self.stopped,
                })?,
                ChunkList::Streamed { count } | ChunkList::Repeated { count } => {
                    map.next_value::<IgnoredAny>()?;
                    ChunkList::Repeated { count }
                }
                ChunkList::NotAList(_) => {
                    map.next_value::<IgnoredAny>()?;
                    ChunkList::Repeated { count: 0 }
                }
            };
        }
        let piece = Piece::AnalysisEnd {
            analysis: self.analysis,
            fields,
            chunks,
        };
        (self.on_piece)(piece).map_err(|report| stop(self.stopped, report))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        let value = Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        self.not_an_object(value)
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.not_an_object(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.not_an_object(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.not_an_object(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.not_an_object(Value::from(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.not_an_object(Value::String(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_object(Value::Null)
    }
}

/// An analysis's `chunks` value: a list streamed element by element, or anything else whole.
struct ChunksSeed<'a, F> {
    analysis: usize,
    fields: &'a Map<String, Value>,
    on_piece: &'a mut F,
    stopped: &'a mut Option<color_eyre::Report>,
}

impl<'de, F: OnPiece> DeserializeSeed<'de> for ChunksSeed<'_, F> {
    type Value = ChunkList;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<ChunkList, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, F: OnPiece> Visitor<'de> for ChunksSeed<'_, F> {
    type Value = ChunkList;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of chunks")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ChunkList, A::Error> {
        let start = Piece::ChunksStart {
            analysis: self.analysis,
            fields: self.fields,
        };
        if let Err(report) = (self.on_piece)(start) {
            return Err(stop(self.stopped, report));
        }
        let mut count = 0;
        while let Some(value) = seq.next_element::<Value>()? {
            let piece = Piece::Chunk {
                analysis: self.analysis,
                position: count,
                value,
            };
            if let Err(report) = (self.on_piece)(piece) {
                return Err(stop(self.stopped, report));
            }
            count += 1;
        }
        Ok(ChunkList::Streamed { count })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ChunkList, A::Error> {
        let value = Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(ChunkList::NotAList(value))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<ChunkList, E> {
        Ok(ChunkList::NotAList(Value::Bool(v)))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<ChunkList, E> {
        Ok(ChunkList::NotAList(Value::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<ChunkList, E> {
        Ok(ChunkList::NotAList(Value::from(v)))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<ChunkList, E> {
        Ok(ChunkList::NotAList(Value::from(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<ChunkList, E> {
        Ok(ChunkList::NotAList(Value::String(v.to_string())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<ChunkList, E> {
        Ok(ChunkList::NotAList(Value::Null))
    }
}
