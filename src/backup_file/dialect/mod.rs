//! The files of the tools golden replaces ("dialects"), read without a converter.
//!
//! Teams that kept their golden dataset with the original Python tools have files in other
//! shapes than golden's own: the seed template's nested "1.0" (fields missing, fields golden
//! does not know) and SkillForge's flat "1.0" and "2.0" (three lists linked by ids, fixtures
//! and queries). Rather than teach every pass (validation, restore, dry-run, comparison,
//! convert) every shape, each foreign file is turned once, by its dialect's reader here, into
//! golden's canonical nested form, written into a temp file that every pass then reads with
//! the canonical reader ([`super::reader`]). The mapping of each dialect is documented in its
//! module; whatever is not mapped is kept under its own name ("extras"), so nothing is lost.
//!
//! [`detect`] tells the dialect from the file's structure (not its version string) reading
//! only as far as it must; [`normalize`] writes the canonical form and returns what is wrong
//! with the file that the canonical form cannot show (a chunk of no analysis, an artifact
//! whose analysis is not in the file). Everything else is left to golden's validator, which
//! reports it on the canonical form with the analysis and chunk ids.

use std::fmt;
use std::io::{BufReader, BufWriter, Read, Write};

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::reader::{describe_json_error, ReadError};
use super::{FORMAT_VERSION, SUPPORTED_MAJOR};
pub(crate) use crate::validate::kind;

/// A visitor's methods for every value that is neither an object nor a list: each calls the
/// visitor's `other(self, kind) -> Self::Value`, `kind` naming the value for a message ("a
/// string"). Visitors that stream objects and lists still have to take any other value.
macro_rules! visit_scalars_as_other {
    () => {
        fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(self.other("a boolean"))
        }

        fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(self.other("a number"))
        }

        fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(self.other("a number"))
        }

        fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(self.other("a number"))
        }

        fn visit_str<E: serde::de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok(self.other("a string"))
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(self.other("null"))
        }
    };
}

mod json_out;
pub mod seed_template;
pub mod skillforge;

/// One thing wrong with a foreign file, and where: the validator's type, so that the lead's
/// passes report both kinds alike.
pub use crate::validate::Problem;

/// The shape of a backup file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dialect {
    /// Golden's own format, read directly.
    Golden,
    /// The nested "1.0" of the seed's template script.
    SeedTemplate,
    /// SkillForge's flat file; `version` is the file's version string ("1.0", "2.0").
    SkillForgeFlat { version: String },
}

impl Dialect {
    /// What the first line of a command's output names: `read as <label>`.
    pub fn label(&self) -> String {
        match self {
            Dialect::Golden => format!("golden {FORMAT_VERSION}"),
            Dialect::SeedTemplate => "seed template nested 1.0".to_string(),
            Dialect::SkillForgeFlat { version } => format!("SkillForge flat {version}"),
        }
    }
}

impl fmt::Display for Dialect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.label())
    }
}

/// What a normalizer found wrong with a foreign file, besides what golden's validator will
/// find on the canonical form.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Normalized {
    /// The file must not be restored as it is.
    pub problems: Vec<Problem>,
    /// Worth a look but not wrong (an artifact kept apart because its analysis is missing).
    pub warnings: Vec<Problem>,
}

impl Normalized {
    fn problem(&mut self, location: impl Into<String>, problem: impl Into<String>) {
        self.problems.push(Problem {
            location: location.into(),
            problem: problem.into(),
        });
    }

    fn warning(&mut self, location: impl Into<String>, problem: impl Into<String>) {
        self.warnings.push(Problem {
            location: location.into(),
            problem: problem.into(),
        });
    }
}

/// The major versions of SkillForge's flat file that golden reads.
const FLAT_MAJORS: [&str; 2] = ["1", "2"];

/// The keys of a flat file's `data` object that make it one.
const FLAT_LISTS: [&str; 3] = ["analyses", "artifacts", "chunks"];

/// Tells the dialect of `source` (named `shown` in messages) from its structure.
///
/// It reads the top-level keys until `analyses` or `data` and no further than it must: for a
/// nested file, the first analysis (or less); for a flat file, up to its first list (and on to
/// the `version` key if that comes later). A file of neither shape, or one that is not JSON,
/// is [`Dialect::Golden`]: the canonical reader then refuses it with today's messages. A flat
/// file of an unknown major version, or without a version, is refused here.
pub fn detect(source: impl Read, shown: &str) -> Result<Dialect, ReadError> {
    let mut probe = Probe::default();
    let mut deserializer = serde_json::Deserializer::from_reader(BufReader::new(source));
    let result = TopLevelProbe { probe: &mut probe }.deserialize(&mut deserializer);
    match probe.shape {
        None => Ok(Dialect::Golden),
        Some(Shape::Nested {
            seed_template: true,
        }) if !probe.written_by_golden => Ok(Dialect::SeedTemplate),
        Some(Shape::Nested { .. }) => Ok(Dialect::Golden),
        Some(Shape::Flat) => match (probe.version, result) {
            (Some(version), _) => flat_dialect(version, shown),
            (None, Err(e)) if !probe.stopped => {
                Err(ReadError::Invalid(describe_json_error(shown, &e)))
            }
            (None, _) => Err(ReadError::Invalid(format!(
                "{shown} is a SkillForge flat file without a \"version\" key; golden reads its \
                 versions {}: add the version the file was written with",
                flat_majors_read()
            ))),
        },
    }
}

/// Writes the canonical form of `source` (of `dialect`, named `shown` in messages) into
/// `out`, for golden's canonical reader to read back. Golden's own files are read directly:
/// asking to normalize one is an internal error.
pub fn normalize(
    dialect: &Dialect,
    source: impl Read,
    shown: &str,
    out: &mut impl Write,
) -> Result<Normalized, ReadError> {
    match dialect {
        Dialect::Golden => Err(ReadError::Stopped(color_eyre::eyre::eyre!(
            "internal error: {shown} is in golden's own format, which is read directly, not normalized"
        ))),
        Dialect::SeedTemplate => seed_template::normalize(source, shown, out),
        Dialect::SkillForgeFlat { version } => {
            check_flat_version(version).map_err(|m| ReadError::Invalid(format!("{shown}: {m}")))?;
            skillforge::normalize(source, shown, out)
        }
    }
}

fn flat_dialect(version: Value, shown: &str) -> Result<Dialect, ReadError> {
    let Value::String(version) = version else {
        return Err(ReadError::Invalid(format!(
            "{shown} is not a golden backup: \"version\" must be a string like \"2.0\", not {version}"
        )));
    };
    check_flat_version(&version).map_err(|m| ReadError::Invalid(format!("{shown}: {m}")))?;
    Ok(Dialect::SkillForgeFlat { version })
}

fn check_flat_version(version: &str) -> Result<(), String> {
    let major = version.split('.').next().unwrap_or_default();
    if FLAT_MAJORS.contains(&major) {
        return Ok(());
    }
    Err(format!(
        "SkillForge flat format version {version:?} is not supported (this golden reads SkillForge \
         flat {} and its own format {SUPPORTED_MAJOR}.x); use a golden release that reads it",
        flat_majors_read()
    ))
}

fn flat_majors_read() -> String {
    FLAT_MAJORS.map(|major| format!("{major}.x")).join(" and ")
}

/// A buffered writer over the caller's output: the normalizers write many small pieces.
fn buffered<W: Write>(out: W) -> BufWriter<W> {
    BufWriter::with_capacity(256 * 1024, out)
}

/// A failure to write the canonical form (or to read a temp file back): not the input's
/// fault, so not an invalid file (exit 1, not 2).
fn write_failed(shown: &str, error: std::io::Error) -> ReadError {
    ReadError::Stopped(write_failure(shown, error))
}

fn write_failure(shown: &str, error: std::io::Error) -> color_eyre::Report {
    color_eyre::Report::new(error).wrap_err(format!(
        "writing the canonical form of {shown} to a temp file"
    ))
}

/// Where a record is: its JSON path, and its id when it has one (`data.chunks[17] (chunk …)`).
fn located(list: &str, position: usize, noun: &str, id: Option<&Value>) -> String {
    match id {
        Some(Value::String(id)) if !id.trim().is_empty() => {
            format!("{list}[{position}] ({noun} {id})")
        }
        _ => format!("{list}[{position}]"),
    }
}

/// A UUID key of a record, or why it is not one.
fn uuid_of(object: &Map<String, Value>, key: &str) -> Result<Uuid, String> {
    match object.get(key) {
        None => Err(format!("missing \"{key}\"")),
        Some(Value::String(text)) => {
            Uuid::parse_str(text).map_err(|_| format!("\"{key}\" {text:?} is not a UUID"))
        }
        Some(other) => Err(format!(
            "\"{key}\" must be a UUID string, not {}",
            kind(other)
        )),
    }
}

/// What detection learned so far.
#[derive(Default)]
struct Probe {
    version: Option<Value>,
    /// The `metadata` before the analyses holds the keys golden's writer always writes
    /// (`status_filter`, `checksum`): a file golden wrote, extras (`findings`) and all.
    written_by_golden: bool,
    shape: Option<Shape>,
    /// The read was stopped on purpose once the shape was known.
    stopped: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Nested { seed_template: bool },
    Flat,
}

impl Probe {
    /// Whether reading further can change nothing.
    fn decided(&self) -> bool {
        match self.shape {
            Some(Shape::Nested { .. }) => true,
            Some(Shape::Flat) => self.version.is_some(),
            None => false,
        }
    }

    /// The error that ends the read once the shape is known (serde has no other way out).
    fn stop<E: de::Error>(&mut self) -> E {
        self.stopped = true;
        E::custom("the dialect is known; the rest of the file is not read")
    }
}

/// The file's top-level object, key by key.
struct TopLevelProbe<'a> {
    probe: &'a mut Probe,
}

impl<'de> DeserializeSeed<'de> for TopLevelProbe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevelProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            let undecided = self.probe.shape.is_none();
            match key.as_str() {
                "version" => self.probe.version = Some(map.next_value()?),
                "metadata" if undecided => {
                    let metadata: Value = map.next_value()?;
                    self.probe.written_by_golden = ["status_filter", "checksum"]
                        .iter()
                        .all(|key| metadata.get(key).is_some_and(Value::is_string));
                }
                "analyses" if undecided => map.next_value_seed(AnalysesProbe {
                    probe: &mut *self.probe,
                })?,
                "data" if undecided => map.next_value_seed(DataProbe {
                    probe: &mut *self.probe,
                })?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if self.probe.decided() {
                return Err(self.probe.stop());
            }
        }
        Ok(())
    }
}

/// A nested file's `analyses` list: its first element, if any, decides.
struct AnalysesProbe<'a> {
    probe: &'a mut Probe,
}

impl<'de> DeserializeSeed<'de> for AnalysesProbe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl AnalysesProbe<'_> {
    /// Not a list: golden's reader says so.
    fn other(self, _kind: &str) {
        self.probe.shape = Some(Shape::Nested {
            seed_template: false,
        });
    }
}

impl<'de> Visitor<'de> for AnalysesProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of analyses")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let seed_template = seq.next_element_seed(FirstAnalysisProbe)?.unwrap_or(false);
        self.probe.shape = Some(Shape::Nested { seed_template });
        Err(self.probe.stop())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        self.other("an object");
        Ok(())
    }

    visit_scalars_as_other!();
}

/// The first analysis of a nested file: a seed template's when it has `findings` or its
/// artifact has `key_findings`.
struct FirstAnalysisProbe;

impl<'de> DeserializeSeed<'de> for FirstAnalysisProbe {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl FirstAnalysisProbe {
    fn other(self, _kind: &str) -> bool {
        false
    }
}

impl<'de> Visitor<'de> for FirstAnalysisProbe {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an analysis")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut seed_template = false;
        while let Some(key) = map.next_key::<String>()? {
            seed_template |= match key.as_str() {
                "findings" => map.next_value::<IgnoredAny>().map(|_| true)?,
                "artifact" => map.next_value_seed(HasKey("key_findings"))?,
                _ => map.next_value::<IgnoredAny>().map(|_| false)?,
            };
        }
        Ok(seed_template)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| false)
    }

    visit_scalars_as_other!();
}

/// Whether a value is an object with the key (false for any other value).
struct HasKey(&'static str);

impl<'de> DeserializeSeed<'de> for HasKey {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl HasKey {
    fn other(self, _kind: &str) -> bool {
        false
    }
}

impl<'de> Visitor<'de> for HasKey {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with {:?}", self.0)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<String>()? {
            found |= key == self.0;
            map.next_value::<IgnoredAny>()?;
        }
        Ok(found)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| false)
    }

    visit_scalars_as_other!();
}

/// A top-level `data` value: a flat file's when it is an object holding one of the lists (a
/// canonical file may keep a flat file's other `data` keys as an extra, never the lists).
struct DataProbe<'a> {
    probe: &'a mut Probe,
}

impl<'de> DeserializeSeed<'de> for DataProbe<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl DataProbe<'_> {
    fn other(self, _kind: &str) {}
}

impl<'de> Visitor<'de> for DataProbe<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a data object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            if FLAT_LISTS.contains(&key.as_str()) {
                self.probe.shape = Some(Shape::Flat);
                if self.probe.decided() {
                    return Err(self.probe.stop());
                }
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        IgnoredAny.visit_seq(seq).map(|_| ())
    }

    visit_scalars_as_other!();
}

/// The canonical file `canonical` as the canonical reader gives it: its header, and each
/// analysis whole (its streamed chunks back in its `chunks` key).
#[cfg(test)]
fn read_back(canonical: &[u8]) -> (super::reader::Header, Vec<Value>) {
    use super::reader::{ChunkList, Piece};
    let mut analyses = Vec::new();
    let mut chunks = Vec::new();
    let header = super::reader::read_pieces(canonical, "canonical.json", |piece| {
        match piece {
            Piece::Chunk { value, .. } => chunks.push(value),
            Piece::AnalysisEnd {
                mut fields,
                chunks: list,
                ..
            } => {
                match list {
                    ChunkList::Streamed { .. } | ChunkList::Repeated { .. } => {
                        fields.insert("chunks".into(), Value::Array(std::mem::take(&mut chunks)));
                    }
                    ChunkList::NotAList(value) => {
                        fields.insert("chunks".into(), value);
                    }
                    ChunkList::Missing => {}
                }
                analyses.push(Value::Object(fields));
            }
            Piece::NotAnObject { value, .. } => analyses.push(value),
            Piece::AnalysesStart { .. } | Piece::ChunksStart { .. } => {}
        }
        Ok(())
    })
    .unwrap_or_else(|e| {
        panic!(
            "the canonical reader refuses the normalized file: {e}\n{}",
            String::from_utf8_lossy(canonical)
        )
    });
    (header, analyses)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detected(text: &str) -> Result<Dialect, ReadError> {
        detect(text.as_bytes(), "test.json")
    }

    fn invalid_message(text: &str) -> String {
        match detected(text) {
            Err(ReadError::Invalid(message)) => message,
            other => panic!("expected an invalid-input error, got {other:?}"),
        }
    }

    #[test]
    fn labels_name_the_dialect_and_its_version() {
        assert_eq!(Dialect::Golden.label(), "golden 1.0");
        assert_eq!(Dialect::SeedTemplate.label(), "seed template nested 1.0");
        let flat = Dialect::SkillForgeFlat {
            version: "2.0".into(),
        };
        assert_eq!(flat.label(), "SkillForge flat 2.0");
    }

    #[test]
    fn tells_golden_from_the_seed_template_by_the_first_analysis() {
        let golden = r#"{"version": "1.0", "metadata": {}, "analyses": [
            {"id": "a", "chunks": [], "artifact": {"id": "b", "summary": "s"}}]}"#;
        assert_eq!(detected(golden).unwrap(), Dialect::Golden);
        let findings = r#"{"version": "1.0", "analyses": [{"id": "a", "findings": []}]}"#;
        assert_eq!(detected(findings).unwrap(), Dialect::SeedTemplate);
        let only_the_first_counts = r#"{"version": "1.0", "analyses": [
            {"artifact": null}, {"findings": []}]}"#;
        assert_eq!(detected(only_the_first_counts).unwrap(), Dialect::Golden);
        let key_findings = r#"{"analyses": [{"chunks": [{"id": 1}],
            "artifact": {"key_findings": ["x"], "metadata": {}}}], "version": "1.0"}"#;
        assert_eq!(detected(key_findings).unwrap(), Dialect::SeedTemplate);
        let converted = r#"{"version": "1.0", "metadata": {"status_filter": "completed",
            "checksum": "sha256:00"}, "analyses": [{"findings": []}]}"#;
        assert_eq!(
            detected(converted).unwrap(),
            Dialect::Golden,
            "golden wrote it"
        );
        let after_a_null_artifact = r#"{"analyses": [{"artifact": null, "findings": []}]}"#;
        assert_eq!(
            detected(after_a_null_artifact).unwrap(),
            Dialect::SeedTemplate
        );
    }

    #[test]
    fn reads_no_further_than_the_first_analysis() {
        let seed = r#"{"version": "1.0", "analyses": [{"findings": []}, !!! not JSON"#;
        assert_eq!(detected(seed).unwrap(), Dialect::SeedTemplate);
        let golden = r#"{"version": "1.0", "analyses": [{"chunks": []}, !!! not JSON"#;
        assert_eq!(detected(golden).unwrap(), Dialect::Golden);
        let flat = r#"{"version": "2.0", "data": {"chunks": [ !!! not JSON"#;
        assert_eq!(
            detected(flat).unwrap(),
            Dialect::SkillForgeFlat {
                version: "2.0".into()
            }
        );
    }

    #[test]
    fn finds_a_flat_file_by_its_data_lists_and_its_version_wherever_it_is() {
        let flat_1 = r#"{
  "version": "1.0",
  "created_at": "2025-12-12T08:33:16.928533",
  "source": "skillforge",
  "counts": {"analyses": 0, "artifacts": 0, "chunks": 0},
  "data": {"analyses": [], "artifacts": [], "chunks": []}
}"#;
        let version = |v: &str| Dialect::SkillForgeFlat { version: v.into() };
        assert_eq!(detected(flat_1).unwrap(), version("1.0"));
        let sorted_keys = r#"{"counts": {}, "data": {"chunks": [], "analyses": []},
            "fixtures": {"queries": []}, "version": "2.0"}"#;
        assert_eq!(detected(sorted_keys).unwrap(), version("2.0"));
        let minor = r#"{"version": "2.3", "data": {"artifacts": []}}"#;
        assert_eq!(detected(minor).unwrap(), version("2.3"));
    }

    #[test]
    fn a_data_key_without_the_lists_is_not_a_flat_file() {
        // A canonical file keeps a flat file's other `data` keys as an extra.
        let canonical = r#"{"version": "1.0", "data": {"exported_by": "x"}, "analyses": []}"#;
        assert_eq!(detected(canonical).unwrap(), Dialect::Golden);
        let scalar_data = r#"{"data": "x", "analyses": [{"findings": []}]}"#;
        assert_eq!(detected(scalar_data).unwrap(), Dialect::SeedTemplate);
    }

    #[test]
    fn leaves_files_of_neither_shape_to_the_canonical_reader() {
        for text in [
            "",
            "\u{feff}{}",
            "[1, 2]",
            r#"{"version": "1.0"}"#,
            r#"{"version": "2", "analyses": []}"#,
            r#"{"version": "1.0", "analyses": "none"}"#,
            r#"{"version": "1.0", "analyses": [1, 2]}"#,
            r#"{"version": "1.0", "metad"#,
        ] {
            assert_eq!(detected(text).unwrap(), Dialect::Golden, "{text}");
        }
    }

    #[test]
    fn refuses_a_flat_file_of_an_unknown_or_missing_version() {
        let message = invalid_message(r#"{"version": "3.1", "data": {"chunks": []}}"#);
        assert!(message.contains("\"3.1\""), "{message}");
        assert!(message.contains("1.x and 2.x"), "{message}");
        let message = invalid_message(r#"{"data": {"chunks": []}}"#);
        assert!(message.contains("without a \"version\""), "{message}");
        let message = invalid_message(r#"{"version": 2, "data": {"chunks": []}}"#);
        assert!(message.contains("must be a string"), "{message}");
        let message = invalid_message(r#"{"data": {"chunks": []}, "vers"#);
        assert!(message.contains("truncated"), "{message}");
    }

    #[test]
    fn golden_files_are_not_normalized() {
        let mut out = Vec::new();
        let result = normalize(&Dialect::Golden, &b"{}"[..], "test.json", &mut out);
        assert!(matches!(result, Err(ReadError::Stopped(_))));
        let result = normalize(
            &Dialect::SkillForgeFlat {
                version: "9.0".into(),
            },
            &b"{}"[..],
            "test.json",
            &mut out,
        );
        assert!(matches!(result, Err(ReadError::Invalid(_))));
    }
}
