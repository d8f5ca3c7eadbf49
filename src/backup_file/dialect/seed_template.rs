//! The nested "1.0" of the seed's template script (OrchestKit's `backup_golden_dataset.py`).
//!
//! It is golden's own shape, except that an analysis may lack `title` and `updated_at` and
//! its artifact `created_at`, and that they carry fields golden does not map: `findings` per
//! analysis, `key_findings` and `metadata` per artifact. Those are extras: written through
//! under their own names, like every other key golden does not know, top-level ones included.
//!
//! Mapping, for absent keys only: `title` → null; `updated_at` → the analysis's `created_at`;
//! the artifact's `created_at` → its analysis's `created_at`. A present value is never
//! replaced, even a wrong one: golden's validator must see it to report it.
//!
//! The file is streamed through golden's canonical reader, one chunk at a time: an analysis's
//! keys known when its chunks begin are written first, then each chunk as it comes, then, at
//! the analysis's end, the keys that came after its chunks, its artifact and the defaults
//! (the canonical reader takes an analysis's keys in any order). Memory: one chunk and one
//! analysis's own fields (the canonical reader holds those anyway), whatever the file's size.

use std::collections::BTreeSet;
use std::io::{Read, Write};

use serde_json::{Map, Value};

use super::json_out::JsonOut;
use super::{buffered, located, write_failed, write_failure, Normalized};
use crate::backup_file::reader::{self, ChunkList, Header, Piece, ReadError};

pub(super) fn normalize(
    source: impl Read,
    shown: &str,
    out: &mut impl Write,
) -> Result<Normalized, ReadError> {
    let mut template = Template {
        out: JsonOut::new(buffered(out)),
        started: false,
        top_level_written: BTreeSet::new(),
        head_written: BTreeSet::new(),
        chunks_open: false,
        found: Normalized::default(),
    };
    let header = reader::read_pieces(source, shown, |piece| {
        template.piece(piece).map_err(|e| write_failure(shown, e))
    })?;
    template
        .finish(&header)
        .map_err(|e| write_failed(shown, e))?;
    Ok(template.found)
}

/// The canonical form being written.
struct Template<W: Write> {
    out: JsonOut<W>,
    started: bool,
    /// The top-level keys written before the analyses; the others come after them.
    top_level_written: BTreeSet<String>,
    /// The keys of the analysis being read that were written when its chunks began.
    head_written: BTreeSet<String>,
    /// The analysis being read has its `chunks` list open in the output.
    chunks_open: bool,
    found: Normalized,
}

impl<W: Write> Template<W> {
    fn piece(&mut self, piece: Piece<'_>) -> std::io::Result<()> {
        match piece {
            Piece::AnalysesStart { header } => self.start(header),
            Piece::NotAnObject { value, .. } => self.out.value(&value),
            Piece::ChunksStart { fields, .. } => self.start_chunks(fields),
            Piece::Chunk { value, .. } => self.out.value(&value),
            Piece::AnalysisEnd {
                analysis,
                fields,
                chunks,
            } => self.end_analysis(analysis, &fields, &chunks),
        }
    }

    /// Opens the file's object with the top-level keys read so far, and its `analyses` list.
    fn start(&mut self, header: &Header) -> std::io::Result<()> {
        self.started = true;
        self.out.begin_object()?;
        for (key, value) in top_level_keys(header) {
            self.out.field(&key, &value)?;
            self.top_level_written.insert(key);
        }
        self.out.key("analyses")?;
        self.out.begin_list()
    }

    /// Writes the analysis's keys read so far but its artifact, whose `created_at` default
    /// may need the analysis's `created_at` from after the chunks.
    fn start_chunks(&mut self, fields: &Map<String, Value>) -> std::io::Result<()> {
        self.out.begin_object()?;
        for (key, value) in fields {
            if key != "artifact" {
                self.out.field(key, value)?;
                self.head_written.insert(key.clone());
            }
        }
        self.out.key("chunks")?;
        self.out.begin_list()?;
        self.chunks_open = true;
        Ok(())
    }

    fn end_analysis(
        &mut self,
        analysis: usize,
        fields: &Map<String, Value>,
        chunks: &ChunkList,
    ) -> std::io::Result<()> {
        if self.chunks_open {
            self.out.end_list()?;
        } else {
            self.out.begin_object()?;
        }
        match chunks {
            ChunkList::NotAList(value) => self.out.field("chunks", value)?,
            ChunkList::Repeated { .. } => self.found.problem(
                located("analyses", analysis, "analysis", fields.get("id")),
                "the \"chunks\" key appears more than once; only the first is read: keep one list",
            ),
            ChunkList::Missing | ChunkList::Streamed { .. } => {}
        }
        let created_at = fields.get("created_at");
        for (key, value) in fields {
            if self.head_written.contains(key) {
                continue;
            }
            if key == "artifact" {
                self.out
                    .field(key, &artifact_with_default(value, created_at))?;
            } else {
                self.out.field(key, value)?;
            }
        }
        if !fields.contains_key("title") {
            self.out.field("title", &Value::Null)?;
        }
        if let (None, Some(created_at)) = (fields.get("updated_at"), created_at) {
            self.out.field("updated_at", created_at)?;
        }
        self.head_written.clear();
        self.chunks_open = false;
        self.out.end_object()
    }

    /// Closes the analyses and writes the top-level keys that came after them.
    fn finish(&mut self, header: &Header) -> std::io::Result<()> {
        if !self.started {
            // The canonical reader returns a header only after an `analyses` list began.
            self.start(header)?;
        }
        self.out.end_list()?;
        for (key, value) in top_level_keys(header) {
            if !self.top_level_written.contains(&key) {
                self.out.field(&key, &value)?;
            }
        }
        self.out.end_object()?;
        self.out.flush()
    }
}

/// The top-level keys of `header` but `analyses`, as found.
fn top_level_keys(header: &Header) -> Vec<(String, Value)> {
    let mut keys = Vec::new();
    if let Some(version) = &header.version {
        keys.push(("version".to_string(), Value::String(version.clone())));
    }
    for (key, value) in [
        ("created_at", &header.created_at),
        ("metadata", &header.metadata),
        ("queries", &header.queries),
    ] {
        if let Some(value) = value {
            keys.push((key.to_string(), value.clone()));
        }
    }
    keys.extend(header.extras.iter().map(|(k, v)| (k.clone(), v.clone())));
    keys
}

/// The artifact, with its analysis's `created_at` when it is an object without one.
fn artifact_with_default(artifact: &Value, analysis_created_at: Option<&Value>) -> Value {
    match (artifact, analysis_created_at) {
        (Value::Object(fields), Some(created_at)) if !fields.contains_key("created_at") => {
            let mut fields = fields.clone();
            fields.insert("created_at".to_string(), created_at.clone());
            Value::Object(fields)
        }
        _ => artifact.clone(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{normalize, read_back, Dialect};
    use super::*;

    /// A template file as `json.dump(indent=2)` writes it: escapes, isoformat times, an
    /// analysis whose keys come partly after its chunks.
    const TEMPLATE: &str = r#"{
  "version": "1.0",
  "created_at": "2026-01-22T10:00:00.123456+00:00",
  "metadata": {
    "total_analyses": 3,
    "total_chunks": 2,
    "total_artifacts": 1,
    "generator": "backup_golden_dataset.py"
  },
  "analyses": [
    {
      "id": "11111111-1111-4111-8111-111111111111",
      "url": "https://example.com/caf\u00e9",
      "content_type": "article",
      "status": "completed",
      "findings": [
        {
          "agent": "security",
          "category": "auth",
          "content": "Uses \ud83d\udd12 OAuth2",
          "confidence": 0.9,
          "metadata": {}
        }
      ],
      "artifact": {
        "id": "aaaaaaaa-aaaa-4aaa-8aaa-aaaaaaaaaaaa",
        "summary": "R\u00e9sum\u00e9 \ud83d\ude80",
        "key_findings": [
          "one"
        ],
        "metadata": {
          "model": "claude"
        }
      },
      "chunks": [
        {
          "id": "cccccccc-cccc-4ccc-8ccc-cccccccccccc",
          "content": "Caf\u00e9 \ud83d\ude80",
          "section_title": "Intro",
          "section_path": "intro",
          "content_type": "article",
          "chunk_index": 0
        }
      ],
      "created_at": "2026-01-22T10:00:00+00:00"
    },
    {
      "chunks": [
        {
          "id": "dddddddd-dddd-4ddd-8ddd-dddddddddddd",
          "content": "Two",
          "section_title": null,
          "section_path": null,
          "content_type": "article",
          "chunk_index": 0
        }
      ],
      "id": "22222222-2222-4222-8222-222222222222",
      "url": "https://example.com/two",
      "title": 7,
      "content_type": "article",
      "status": "completed",
      "created_at": "2026-01-23T10:00:00+00:00",
      "updated_at": "2026-01-24T10:00:00+00:00",
      "artifact": {
        "id": "bbbbbbbb-bbbb-4bbb-8bbb-bbbbbbbbbbbb",
        "summary": "Two",
        "created_at": "not a time"
      },
      "findings": []
    },
    "not an analysis",
    {
      "id": "33333333-3333-4333-8333-333333333333",
      "findings": [],
      "artifact": null
    }
  ],
  "queries": [],
  "generator_version": "0.3"
}"#;

    fn normalized(text: &str) -> (Normalized, Vec<u8>) {
        let mut out = Vec::new();
        let found = normalize(&Dialect::SeedTemplate, text.as_bytes(), "t.json", &mut out)
            .expect("the template file normalizes");
        (found, out)
    }

    #[test]
    fn is_detected_and_adds_defaults_only_for_absent_keys() {
        assert_eq!(
            super::super::detect(TEMPLATE.as_bytes(), "t.json").unwrap(),
            Dialect::SeedTemplate
        );
        let (found, out) = normalized(TEMPLATE);
        assert_eq!(found, Normalized::default());
        let (header, analyses) = read_back(&out);
        assert_eq!(analyses.len(), 4);

        let first = &analyses[0];
        assert_eq!(first["title"], Value::Null);
        assert_eq!(first["updated_at"], json!("2026-01-22T10:00:00+00:00"));
        // The default comes from the analysis's created_at, written after the chunks.
        assert_eq!(
            first["artifact"]["created_at"],
            json!("2026-01-22T10:00:00+00:00")
        );
        assert_eq!(first["artifact"]["key_findings"], json!(["one"]));
        assert_eq!(first["artifact"]["metadata"], json!({"model": "claude"}));
        assert_eq!(first["artifact"]["summary"], json!("Résumé 🚀"));
        assert_eq!(first["findings"][0]["content"], json!("Uses 🔒 OAuth2"));
        assert_eq!(first["url"], json!("https://example.com/café"));
        assert_eq!(first["chunks"][0]["content"], json!("Café 🚀"));

        let second = &analyses[1];
        assert_eq!(
            second["title"],
            json!(7),
            "a present value is never replaced"
        );
        assert_eq!(second["updated_at"], json!("2026-01-24T10:00:00+00:00"));
        assert_eq!(second["artifact"]["created_at"], json!("not a time"));
        assert_eq!(
            second["chunks"][0]["id"],
            json!("dddddddd-dddd-4ddd-8ddd-dddddddddddd")
        );
        assert_eq!(second["findings"], json!([]));

        assert_eq!(analyses[2], json!("not an analysis"));
        let third = analyses[3].as_object().unwrap();
        assert_eq!(third["artifact"], Value::Null);
        assert_eq!(third["title"], Value::Null);
        assert!(!third.contains_key("updated_at"), "no created_at to take");
        assert!(!third.contains_key("chunks"), "left for the validator");

        assert_eq!(header.version.as_deref(), Some("1.0"));
        assert_eq!(header.queries, Some(json!([])));
        assert_eq!(
            header.metadata.unwrap()["generator"],
            "backup_golden_dataset.py"
        );
        assert_eq!(header.extras.get("generator_version"), Some(&json!("0.3")));
    }

    #[test]
    fn keeps_top_level_keys_from_before_and_after_the_analyses_once() {
        let text = r#"{"source": "s", "analyses": [{"findings": [], "chunks": "none"}],
            "version": "1.2", "queries": [{"id": "q"}], "source2": [1]}"#;
        let (_, out) = normalized(text);
        let written: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            written,
            json!({"source": "s", "version": "1.2", "queries": [{"id": "q"}], "source2": [1],
                   "analyses": [{"findings": [], "chunks": "none", "title": null}]})
        );
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.matches("\"source\"").count(), 1, "{text}");
    }

    #[test]
    fn a_repeated_chunks_key_is_a_problem() {
        let text = r#"{"version": "1.0", "analyses": [{"id": "x", "findings": [],
            "chunks": [{"id": 1}], "chunks": [{"id": 2}]}]}"#;
        let (found, out) = normalized(text);
        assert_eq!(found.problems.len(), 1, "{found:?}");
        assert_eq!(found.problems[0].location, "analyses[0] (analysis x)");
        let (_, analyses) = read_back(&out);
        assert_eq!(analyses[0]["chunks"], json!([{"id": 1}]));
    }

    #[test]
    fn refuses_what_the_canonical_reader_refuses() {
        let mut out = Vec::new();
        let result = normalize(
            &Dialect::SeedTemplate,
            &br#"{"version": "2.0", "analyses": [{"findings": []}]}"#[..],
            "t.json",
            &mut out,
        );
        assert!(matches!(result, Err(ReadError::Invalid(m)) if m.contains("\"2.0\"")));
    }
}
