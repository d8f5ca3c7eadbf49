//! Issue 12: golden reads the files of the tools it replaces — the seed template's nested
//! "1.0", SkillForge's flat "1.0" and "2.0" — names the dialect, restores them both ways, and a
//! backup afterwards holds every value of the original (checked field by field); `convert`
//! writes golden's own format, which round-trips byte for byte.
//!
//! The first tests check the test tools themselves (the Python-style writer, the generated
//! files, the comparator); the others run the built binary on each shape.

mod common;

use std::fs;
use std::path::Path;
use std::process::Output;

use common::dialects::{
    self, backup_of, differences, instant, obj, ok, restore_json, run, section_path_of, sha256_hex,
    Fixture, Py, UNRESOLVED_QUERY, UNRESOLVED_REFERENCE,
};
use common::{json_of, sample_path, stderr_of, stdout_of, workdir, TestDb};
use serde_json::{json, Value};

type Shape = fn(&Path) -> Fixture;

const SHAPES: [Shape; 3] = [
    dialects::seed_template,
    dialects::skillforge_flat_1,
    dialects::skillforge_flat_2,
];

/// One test per shape for each check: `<check>::seed_template`, `<check>::skillforge_flat_1`, …
macro_rules! for_each_shape {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            #[test]
            fn seed_template() {
                super::$check(super::dialects::seed_template)
            }
            #[test]
            fn skillforge_flat_1() {
                super::$check(super::dialects::skillforge_flat_1)
            }
            #[test]
            fn skillforge_flat_2() {
                super::$check(super::dialects::skillforge_flat_2)
            }
        }
    )*};
}
fn first_line(output: &Output) -> String {
    stdout_of(output)
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}
/// The file without its top-level `created_at` line: what two backups of the same data share.
fn without_created_at(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| !line.starts_with("  \"created_at\""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Whether some warning of a `verify --json` summary mentions every one of `needles`.
fn warned(summary: &Value, needles: &[&str]) -> bool {
    summary["warnings"]
        .as_array()
        .expect("a warnings list")
        .iter()
        .map(|w| format!("{}: {}", w["where"], w["problem"]))
        .any(|line| needles.iter().all(|needle| line.contains(needle)))
}

// ---------------------------------------------------------------------------------------------
// The test tools

#[test]
fn the_python_writer_writes_what_json_dump_with_indent_2_writes() {
    let value = obj(vec![
        ("version", Py::from("1.0")),
        ("empty_list", Py::List(vec![])),
        ("empty_object", obj(vec![])),
        ("nothing", Py::Null),
        ("flags", Py::from(vec![true, false])),
        (
            "numbers",
            Py::List(vec![
                Py::Int(0),
                Py::Int(-3),
                Py::Float(0.5),
                Py::Float(1.0),
                Py::Float(0.87),
            ]),
        ),
        (
            "text",
            Py::from("café 日本 🦀 \"q\" \\ /\n\t\u{7f}\u{1}\u{8}\u{c}\r"),
        ),
        (
            "nested",
            Py::List(vec![obj(vec![("a", Py::List(vec![Py::Int(1)]))])]),
        ),
    ]);
    // What CPython 3.11 prints for json.dumps(value, indent=2).
    let expected = r#"{
  "version": "1.0",
  "empty_list": [],
  "empty_object": {},
  "nothing": null,
  "flags": [
    true,
    false
  ],
  "numbers": [
    0,
    -3,
    0.5,
    1.0,
    0.87
  ],
  "text": "caf\u00e9 \u65e5\u672c \ud83e\udd80 \"q\" \\ /\n\t\u007f\u0001\b\f\r",
  "nested": [
    {
      "a": [
        1
      ]
    }
  ]
}"#;
    assert_eq!(value.to_python_json(), expected);
    let parsed: Value = serde_json::from_str(expected).unwrap();
    assert_eq!(parsed, value.to_value());
}

/// Python itself rewrites each generated file to the same bytes (when python3 is installed).
#[test]
fn python_rewrites_every_generated_file_to_the_same_bytes() {
    let dir = workdir();
    let script = "import json, sys\nwith open(sys.argv[1]) as f:\n    data = json.load(f)\nsys.stdout.write(json.dumps(data, indent=2))";
    for fixture in all_fixtures(dir.path()) {
        let Ok(output) = std::process::Command::new("python3")
            .args(["-c", script, fixture.arg()])
            .output()
        else {
            eprintln!("python3 is not installed: the writer is checked against the literal only");
            return;
        };
        assert!(output.status.success(), "{}", stderr_of(&output));
        assert!(
            output.stdout == fs::read(&fixture.path).unwrap(),
            "{}: json.dump(indent=2) writes it otherwise",
            fixture.label
        );
    }
}

fn all_fixtures(dir: &Path) -> Vec<Fixture> {
    let mut fixtures: Vec<Fixture> = SHAPES.iter().map(|shape| shape(dir)).collect();
    fixtures.push(dialects::skillforge_flat_2_sized(dir, 30, 3));
    fixtures
}

#[test]
fn every_generated_file_is_escaped_ascii_json_equal_to_its_model() {
    let dir = workdir();
    for fixture in all_fixtures(dir.path()) {
        let bytes = fs::read(&fixture.path).unwrap();
        let name = fixture.label;
        assert!(bytes.is_ascii(), "{name}: ensure_ascii leaves no raw UTF-8");
        let text = String::from_utf8(bytes).unwrap();
        for escape in ["\\u00e9", "\\u65e5\\u672c", "\\ud83e\\udd80"] {
            assert!(text.contains(escape), "{name}: {escape} (é, 日本, 🦀)");
        }
        assert!(text.starts_with("{\n  \"version\": \""), "{name}");
        assert!(
            !text.ends_with('\n'),
            "{name}: json.dump writes no final newline"
        );
        assert!(
            !text.lines().any(|line| line.ends_with(' ')),
            "{name}: no trailing spaces"
        );
        let parsed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed, fixture.original, "{name}: the file is its model");
        let decoded = parsed.to_string();
        assert!(decoded.contains('é') && decoded.contains("日本") && decoded.contains('🦀'));
        for chunk in parsed["data"]["chunks"].as_array().into_iter().flatten() {
            assert_eq!(
                chunk["hash"].as_str().unwrap(),
                sha256_hex(chunk["snippet"].as_str().unwrap()),
                "{name}: hash is the SHA-256 of the snippet"
            );
        }
    }
}

#[test]
fn the_generated_files_hold_every_case_the_issue_names() {
    let dir = workdir();
    let [seed, flat_1, flat_2] = SHAPES.map(|shape| shape(dir.path()));

    // Seed template: no title, updated_at or artifact created_at; findings, key_findings, metadata.
    let analyses = seed.original["analyses"].as_array().unwrap();
    assert!(analyses.len() >= 3);
    for analysis in analyses {
        assert!(analysis.get("title").is_none() && analysis.get("updated_at").is_none());
        let finding = &analysis["findings"][0];
        for key in ["agent", "category", "content", "confidence", "metadata"] {
            assert!(finding.get(key).is_some(), "finding has {key}");
        }
        if let Some(artifact) = analysis["artifact"].as_object() {
            assert!(artifact.get("created_at").is_none());
            assert!(artifact["key_findings"].is_array() && artifact["metadata"].is_object());
        }
    }
    assert!(analyses.iter().any(|a| a["artifact"].is_null()));

    // Flat 1.0: a naive header time, counts without fixtures, no metadata.
    let header = flat_1.original["created_at"].as_str().unwrap();
    assert_eq!(header, "2025-12-12T08:33:16.928533");
    assert!(instant(header).is_some() && chrono::DateTime::parse_from_rfc3339(header).is_err());
    assert_eq!(
        flat_1.original["counts"],
        json!({"analyses": 5, "artifacts": 6, "chunks": 12})
    );
    assert!(flat_1.original.get("metadata").is_none() && flat_1.original.get("fixtures").is_none());

    for flat in [&flat_1, &flat_2] {
        let data = &flat.original["data"];
        let chunk = data["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["path"] == json!(["reddit-sharding", "reddit-sharding/motivation"]))
            .expect("a chunk with a list path");
        assert_eq!(chunk["model"], "text-embedding-3-small");
        let artifacts = data["artifacts"].as_array().unwrap();
        let versioned = data["analyses"].as_array().unwrap().iter().any(|analysis| {
            let of_it: Vec<&Value> = artifacts
                .iter()
                .filter(|a| a["analysis_id"] == analysis["id"])
                .collect();
            of_it.len() == 2
                && of_it[0]["version"] == 1
                && of_it[1]["version"] == 2
                && of_it[0]["created_at"] != of_it[1]["created_at"]
        });
        assert!(versioned, "versions 1 and 2 of one analysis's artifact");
        assert_eq!(flat.orphan_artifact_ids().len(), 1);
        let urls: Vec<&Value> = data["analyses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["url"])
            .collect();
        let distinct: std::collections::BTreeSet<String> =
            urls.iter().map(|u| u.to_string()).collect();
        assert_eq!(distinct.len(), urls.len() - 1, "two analyses share a URL");
        let times: Vec<&str> = data["analyses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["created_at"].as_str().unwrap())
            .collect();
        assert!(times.contains(&"2026-01-22T10:00:00+00:00"));
        assert!(times.contains(&"2026-01-23T08:15:00.250000+00:00"));
    }

    // 2.0: fixtures, metadata, and exactly one reference that resolves to nothing.
    let fixtures = &flat_2.original["fixtures"];
    assert!(fixtures["documents"][0]["sections"][0]["granularity"].is_string());
    assert!(fixtures["source_url_map"]["fastapi-auth"].is_string());
    assert_eq!(flat_2.original["counts"]["fixtures"], 5);
    assert_eq!(
        flat_2.original["metadata"],
        json!({"backup_type": "full", "includes_fixtures": true, "schema_version": "2.0"})
    );
    assert_eq!(flat_2.queries(), 6);
    assert_eq!(
        flat_2.unresolved_references(),
        vec![(
            UNRESOLVED_QUERY.to_string(),
            UNRESOLVED_REFERENCE.to_string()
        )]
    );
}

#[test]
fn section_paths_follow_the_documented_rule() {
    assert_eq!(
        section_path_of(&json!(["a", "a/b", "a/b/c"])),
        json!("a/b/c")
    );
    assert_eq!(
        section_path_of(&json!(["reddit-sharding"])),
        json!("reddit-sharding")
    );
    assert_eq!(
        section_path_of(&json!(["guide", "scopes"])),
        json!("guide/scopes")
    );
    assert_eq!(section_path_of(&json!(["a", "ab"])), json!("a/ab"));
    assert_eq!(section_path_of(&json!([])), Value::Null);
}

const A: &str = "5d0f3c4e-2b1a-4c9d-8e7f-0a1b2c3d4e5f";
const GONE: &str = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const C1: &str = "1f2e3d4c-5b6a-4978-8a6b-5c4d3e2f1a0b";
const C2: &str = "2a3b4c5d-6e7f-4a8b-9c0d-1e2f3a4b5c6d";
const R1: &str = "3b4c5d6e-7f8a-4b9c-8d0e-2f3a4b5c6d7e";
const R2: &str = "4c5d6e7f-8a9b-4c0d-9e1f-3a4b5c6d7e8f";
const R3: &str = "6e7f8a9b-0c1d-4e2f-8a3b-5c6d7e8f9a0b";

/// A small flat 2.0 file: one analysis of two chunks, two artifact versions, an orphan
/// artifact, a query with a path reference and a document reference, one resolving to nothing.
fn small_flat_file() -> Value {
    let chunk = |id: &str, index: u32, text: &str, title: Value, path: Value| {
        json!({"id": id, "analysis_id": A, "snippet": text, "granularity": "fine",
               "section_title": title, "chunk_idx": index, "chunk_total": 2, "path": path,
               "hash": sha256_hex(text), "content_type": "documentation", "language": "en",
               "model": "text-embedding-3-small", "model_version": null,
               "created_at": "2026-01-22T10:00:01+00:00"})
    };
    json!({
        "version": "2.0",
        "created_at": "2026-02-04T09:00:00.654321+00:00",
        "source": "SkillForge Golden Dataset Backup",
        "counts": {"analyses": 1, "artifacts": 3, "chunks": 2, "fixtures": 1},
        "data": {
            "analyses": [{"id": A, "url": "https://fastapi.tiangolo.com/tutorial/security/",
                          "content_type": "documentation", "title": "Security — intro", "status": "completed",
                          "created_at": "2026-01-22T10:00:00+00:00", "updated_at": "2026-01-22T11:30:00.500000+00:00"}],
            "artifacts": [
                {"id": R3, "analysis_id": GONE, "markdown_content": "# orphan", "version": 1,
                 "artifact_metadata": {}, "created_at": "2026-01-20T08:00:00+00:00"},
                {"id": R1, "analysis_id": A, "markdown_content": "# v1", "version": 1,
                 "artifact_metadata": {"document_id": "fastapi-auth", "topics": ["auth"]},
                 "created_at": "2026-01-22T10:01:00+00:00"},
                {"id": R2, "analysis_id": A, "markdown_content": "# v2 é", "version": 2,
                 "artifact_metadata": {"document_id": "fastapi-auth", "topics": ["auth", "jwt"]},
                 "created_at": "2026-01-23T09:00:00+00:00"}
            ],
            "chunks": [
                chunk(C1, 0, "OAuth2 password flow", json!("Password flow"), json!(["fastapi-auth", "fastapi-auth/oauth2-password"])),
                chunk(C2, 1, "JWT bearer tokens", Value::Null, json!(["fastapi-auth", "jwt"]))
            ]
        },
        "fixtures": {
            "documents": [{"id": "fastapi-auth", "title": "Security", "source_url": "https://fastapi.tiangolo.com/tutorial/security/",
                           "content_type": "documentation", "bucket": "short", "language": "en", "tags": ["auth"],
                           "sections": [{"content": "OAuth2 password flow", "id": "fastapi-auth/oauth2-password",
                                         "title": "Password flow", "granularity": "fine"}]}],
            "source_url_map": {"fastapi-auth": "https://fastapi.tiangolo.com/tutorial/security/"},
            "queries": [
                {"id": "q-oauth", "query": "password flow", "modes": ["semantic"], "category": "specific",
                 "difficulty": "easy", "expected_chunks": ["fastapi-auth/oauth2-password", "fastapi-auth"],
                 "min_score": 0.6, "max_score": null, "description": "both chunks"},
                {"id": "q-missing", "query": "reconcile loop", "modes": ["hybrid"], "category": "specific",
                 "difficulty": "hard", "expected_chunks": ["k8s/reconcile"], "min_score": 0.5,
                 "max_score": null, "description": "nothing"}
            ]
        },
        "metadata": {"backup_type": "full", "includes_fixtures": true, "schema_version": "2.0"}
    })
}

/// `small_flat_file` as golden's backup should write it, mapped by hand from the spec.
fn small_flat_file_backed_up() -> Value {
    let chunk = |id: &str,
                 index: u32,
                 text: &str,
                 title: Value,
                 path: Value,
                 section_path: &str| {
        json!({"id": id, "content": text, "section_title": title, "section_path": section_path,
               "content_type": "documentation", "chunk_index": index, "chunk_total": 2,
               "created_at": "2026-01-22T10:00:01+00:00", "granularity": "fine", "hash": sha256_hex(text),
               "language": "en", "model": "text-embedding-3-small", "model_version": null, "path": path})
    };
    json!({
        "version": "1.0",
        "created_at": "2026-03-01T00:00:00.000000Z",
        "metadata": {"total_analyses": 1, "total_chunks": 2, "total_artifacts": 2, "total_queries": 2,
                     "status_filter": "all", "checksum": "sha256:0000",
                     "backup_type": "full", "includes_fixtures": true, "schema_version": "2.0"},
        "analyses": [{
            "id": A, "url": "https://fastapi.tiangolo.com/tutorial/security/", "title": "Security — intro",
            "content_type": "documentation", "status": "completed",
            "created_at": "2026-01-22T10:00:00.000000Z", "updated_at": "2026-01-22T11:30:00.500000Z",
            "chunks": [
                chunk(C1, 0, "OAuth2 password flow", json!("Password flow"),
                      json!(["fastapi-auth", "fastapi-auth/oauth2-password"]), "fastapi-auth/oauth2-password"),
                chunk(C2, 1, "JWT bearer tokens", Value::Null, json!(["fastapi-auth", "jwt"]), "fastapi-auth/jwt")
            ],
            "artifact": {"id": R2, "summary": "# v2 é", "created_at": "2026-01-23T09:00:00.000000Z", "version": 2,
                         "artifact_metadata": {"document_id": "fastapi-auth", "topics": ["auth", "jwt"]}},
            "artifact_versions": [{"id": R1, "summary": "# v1", "created_at": "2026-01-22T10:01:00.000000Z", "version": 1,
                                   "artifact_metadata": {"document_id": "fastapi-auth", "topics": ["auth"]}}]
        }],
        "queries": [
            {"id": "q-missing", "query": "reconcile loop", "expected_chunk_ids": [], "category": "specific",
             "difficulty": "hard", "unresolved_expected_chunks": ["k8s/reconcile"], "description": "nothing",
             "expected_chunks": ["k8s/reconcile"], "max_score": null, "min_score": 0.5, "modes": ["hybrid"]},
            {"id": "q-oauth", "query": "password flow", "expected_chunk_ids": [C1, C2], "category": "specific",
             "difficulty": "easy", "description": "both chunks",
             "expected_chunks": ["fastapi-auth/oauth2-password", "fastapi-auth"], "max_score": null,
             "min_score": 0.6, "modes": ["semantic"]}
        ],
        "orphan_artifacts": [{"id": R3, "analysis_id": GONE, "summary": "# orphan",
                              "created_at": "2026-01-20T08:00:00.000000Z", "version": 1, "artifact_metadata": {}}],
        "source": "SkillForge Golden Dataset Backup",
        "fixtures": {
            "documents": [{"id": "fastapi-auth", "title": "Security", "source_url": "https://fastapi.tiangolo.com/tutorial/security/",
                           "content_type": "documentation", "bucket": "short", "language": "en", "tags": ["auth"],
                           "sections": [{"content": "OAuth2 password flow", "id": "fastapi-auth/oauth2-password",
                                         "title": "Password flow", "granularity": "fine"}]}],
            "source_url_map": {"fastapi-auth": "https://fastapi.tiangolo.com/tutorial/security/"}
        }
    })
}

#[test]
fn the_comparator_finds_nothing_lost_in_a_backup_mapped_by_hand() {
    let original = small_flat_file();
    // q-oauth: "fastapi-auth/oauth2-password" ends C1's path; "fastapi-auth" ends no path, so
    // it resolves to the chunks whose path contains it, C1 (already listed) and C2.
    assert_eq!(
        differences(&original, &small_flat_file_backed_up()),
        Vec::<String>::new()
    );
    // The same instants written otherwise are the same values.
    let mut other_notation = small_flat_file_backed_up();
    other_notation["analyses"][0]["created_at"] = json!("2026-01-22 10:00:00+00:00");
    other_notation["analyses"][0]["updated_at"] = json!("2026-01-22T12:30:00.5+01:00");
    assert!(differences(&original, &other_notation).is_empty());
}

#[test]
fn the_comparator_names_each_missing_or_changed_value() {
    let original = small_flat_file();
    type Mutation = fn(&mut Value);
    let cases: Vec<(&[&str], Mutation)> = vec![
        (&[C1, "hash"], |b| {
            b["analyses"][0]["chunks"][0]
                .as_object_mut()
                .unwrap()
                .remove("hash");
        }),
        (&[C1, "model_version"], |b| {
            b["analyses"][0]["chunks"][0]
                .as_object_mut()
                .unwrap()
                .remove("model_version");
        }),
        (&[C2, "model"], |b| {
            b["analyses"][0]["chunks"][1]["model"] = json!("golden-hash-v1")
        }),
        (&[C2, "snippet"], |b| {
            b["analyses"][0]["chunks"][1]["content"] = json!("JWT bearer token")
        }),
        (&[C2, "section_path"], |b| {
            b["analyses"][0]["chunks"][1]["section_path"] = json!("jwt")
        }),
        (&[C2, "chunk_idx"], |b| {
            b["analyses"][0]["chunks"][1]["chunk_index"] = json!(2)
        }),
        (&[C2, "path"], |b| {
            b["analyses"][0]["chunks"][1]["path"] = json!("fastapi-auth/jwt")
        }),
        (&[A, "updated_at"], |b| {
            b["analyses"][0]["updated_at"] = json!("2026-01-22T11:30:01.500000Z")
        }),
        (&[A, "title"], |b| {
            b["analyses"][0]["title"] = json!("Security - intro")
        }),
        (&[R1, "artifact_metadata"], |b| {
            b["analyses"][0]["artifact_versions"][0]["artifact_metadata"]["topics"] = json!([])
        }),
        (&[R2, "summary"], |b| {
            b["analyses"][0]["artifact"]["summary"] = json!("# v2 e")
        }),
        (&[A, "artifact_versions"], |b| {
            let analysis = b["analyses"][0].as_object_mut().unwrap();
            let older = analysis["artifact_versions"][0].clone();
            let latest = std::mem::replace(analysis.get_mut("artifact").unwrap(), older);
            analysis.insert("artifact_versions".into(), json!([latest]));
        }),
        (&[R1, "missing"], |b| {
            b["analyses"][0]
                .as_object_mut()
                .unwrap()
                .remove("artifact_versions");
        }),
        (&[R3], |b| {
            b.as_object_mut().unwrap().remove("orphan_artifacts");
        }),
        (&[R3, "analysis_id"], |b| {
            b["orphan_artifacts"][0]["analysis_id"] = json!(A)
        }),
        (&["q-oauth", "expected_chunk_ids"], |b| {
            b["queries"][1]["expected_chunk_ids"] = json!([C2, C1])
        }),
        (&["q-missing", "unresolved_expected_chunks"], |b| {
            b["queries"][0]
                .as_object_mut()
                .unwrap()
                .remove("unresolved_expected_chunks");
        }),
        (&["q-missing", "max_score"], |b| {
            b["queries"][0].as_object_mut().unwrap().remove("max_score");
        }),
        (&["q-oauth", "expected_chunks"], |b| {
            b["queries"][1]["expected_chunks"] = json!(["fastapi-auth/oauth2-password"])
        }),
        (&["fixtures"], |b| {
            b["fixtures"]
                .as_object_mut()
                .unwrap()
                .remove("source_url_map");
        }),
        (&["source"], |b| {
            b.as_object_mut().unwrap().remove("source");
        }),
        (&["metadata", "schema_version"], |b| {
            b["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("schema_version");
        }),
        (&["total_artifacts"], |b| {
            b["metadata"]["total_artifacts"] = json!(3)
        }),
        (&["q-extra", "not in the original"], |b| {
            let mut extra = b["queries"][0].clone();
            extra["id"] = json!("q-extra");
            b["queries"].as_array_mut().unwrap().push(extra);
        }),
        (&[C1, "missing"], |b| {
            b["analyses"][0]["chunks"].as_array_mut().unwrap().remove(0);
        }),
    ];
    for (needles, mutate) in cases {
        let mut backup = small_flat_file_backed_up();
        mutate(&mut backup);
        let found = differences(&original, &backup);
        assert!(
            found.iter().any(|d| needles.iter().all(|n| d.contains(n))),
            "a difference naming {needles:?} in {found:#?}"
        );
    }
    let mut lost = small_flat_file_backed_up();
    lost["source"] = json!("SkillForge");
    let panicked = std::panic::catch_unwind(|| dialects::assert_nothing_lost(&original, &lost));
    assert!(
        panicked.is_err(),
        "assert_nothing_lost panics on a changed value"
    );
}

#[test]
fn a_sized_flat_file_has_the_asked_size() {
    let dir = workdir();
    let fixture = dialects::skillforge_flat_2_sized(dir.path(), 30, 3);
    assert_eq!((fixture.analyses(), fixture.chunks()), (30, 90));
    // One analysis in ten (3, 13, 23) has a second artifact version.
    assert_eq!(fixture.restorable_artifacts(), 33);
    assert_eq!(fixture.orphan_artifact_ids().len(), 1);
    assert_eq!(fixture.queries(), 4);
    assert_eq!(fixture.unresolved_references().len(), 1);
}

// ---------------------------------------------------------------------------------------------
// golden on each shape

for_each_shape!(
    verify_names_the_dialect_and_warns_about_what_cannot_be_restored,
    dry_run_plans_every_row_and_writes_nothing,
    append_then_backup_keeps_every_value,
    replace_then_backup_keeps_every_value,
    convert_writes_golden_files_that_round_trip_byte_for_byte,
);

fn verify_names_the_dialect_and_warns_about_what_cannot_be_restored(shape: Shape) {
    let dir = workdir();
    let fixture = shape(dir.path());
    let human = ok(run(None, dir.path(), &["verify", fixture.arg()]), "verify");
    assert_eq!(first_line(&human), format!("read as {}", fixture.label));
    let text = stdout_of(&human);
    let counts = format!(
        "{} analyses, {} chunks, {} artifacts",
        fixture.analyses(),
        fixture.chunks(),
        fixture.restorable_artifacts()
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("ok: ") && l.contains(&counts)),
        "{counts} in\n{text}"
    );
    let warning_with = |needles: &[&str]| {
        text.lines()
            .any(|l| l.starts_with("warning: ") && needles.iter().all(|n| l.contains(n)))
    };
    for orphan in fixture.orphan_artifact_ids() {
        assert!(
            warning_with(&[&orphan]),
            "a warning names artifact {orphan}:\n{text}"
        );
    }
    for (query, reference) in fixture.unresolved_references() {
        assert!(
            warning_with(&[&query, &reference]),
            "a warning names query {query} and {reference:?}:\n{text}"
        );
    }

    let output = ok(
        run(None, dir.path(), &["verify", "--json", fixture.arg()]),
        "verify --json",
    );
    let summary = json_of(&output);
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["dialect"], fixture.label);
    assert_eq!(summary["problems"], json!([]));
    assert_eq!(summary["analyses"], fixture.analyses());
    assert_eq!(summary["chunks"], fixture.chunks());
    assert_eq!(summary["artifacts"], fixture.restorable_artifacts());
    assert_eq!(summary["queries"], fixture.queries());
    for orphan in fixture.orphan_artifact_ids() {
        assert!(
            warned(&summary, &[&orphan]),
            "{orphan} in {:#}",
            summary["warnings"]
        );
    }
    for (query, reference) in fixture.unresolved_references() {
        assert!(
            warned(&summary, &[&query, &reference]),
            "{:#}",
            summary["warnings"]
        );
    }
}

fn dry_run_plans_every_row_and_writes_nothing(shape: Shape) {
    let db = TestDb::migrated();
    let dir = workdir();
    let fixture = shape(dir.path());
    let before = db.digest();
    let output = run(
        Some(&db),
        dir.path(),
        &["restore", "--dry-run", "--json", fixture.arg()],
    );
    let plan = json_of(&ok(output, "restore --dry-run --json"));
    assert_eq!(plan["dry_run"], true);
    for (key, expected) in [
        ("analyses_to_insert", fixture.analyses()),
        ("chunks_to_insert", fixture.chunks()),
        ("artifacts_to_insert", fixture.restorable_artifacts()),
        ("queries_to_insert", fixture.queries()),
        ("embeddings_needed", fixture.chunks()),
        ("artifacts_left_out", fixture.orphan_artifact_ids().len()),
    ] {
        assert_eq!(plan[key], expected, "{key} in {plan:#}");
    }
    let human = ok(
        run(
            Some(&db),
            dir.path(),
            &["restore", "--dry-run", fixture.arg()],
        ),
        "restore --dry-run",
    );
    assert_eq!(first_line(&human), format!("read as {}", fixture.label));
    assert!(stdout_of(&human).contains("nothing was written"));
    assert_eq!(db.digest(), before, "a dry run writes nothing");
}

fn append_then_backup_keeps_every_value(shape: Shape) {
    let db = TestDb::migrated();
    let dir = workdir();
    let fixture = shape(dir.path());
    let orphans = fixture.orphan_artifact_ids().len();
    let summary = restore_json(&db, dir.path(), &[fixture.arg()]);
    for (key, expected) in [
        ("analyses_inserted", fixture.analyses()),
        ("chunks_inserted", fixture.chunks()),
        ("artifacts_inserted", fixture.restorable_artifacts()),
        ("queries_inserted", fixture.queries()),
        ("artifacts_left_out", orphans),
    ] {
        assert_eq!(summary[key], expected, "{key} in {summary:#}");
    }
    assert_eq!(summary["replaced"], false);
    // Every version of an artifact is a row (the latest in `artifacts`, the older ones in
    // `artifact_versions`); the vectors are golden's, whatever `model` says.
    assert_eq!(
        db.count(
            "SELECT (SELECT count(*) FROM artifacts) + (SELECT count(*) FROM artifact_versions)"
        ) as usize,
        fixture.restorable_artifacts()
    );
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE embedding_model = 'golden-hash-v1' AND embedding IS NOT NULL") as usize,
        fixture.chunks()
    );
    let against = ok(
        run(
            Some(&db),
            dir.path(),
            &["verify", "--against-db", fixture.arg()],
        ),
        "verify --against-db",
    );
    assert_eq!(first_line(&against), format!("read as {}", fixture.label));

    let backup = backup_of(&db, dir.path(), "backup.json");
    dialects::assert_nothing_lost(&fixture.original, &backup);

    // A second run adds nothing, changes nothing, and still names what it left out.
    let digest = db.digest();
    let again = restore_json(&db, dir.path(), &[fixture.arg()]);
    for (key, expected) in [
        ("analyses_inserted", 0),
        ("chunks_inserted", 0),
        ("artifacts_inserted", 0),
        ("queries_inserted", 0),
        ("analyses_skipped", fixture.analyses()),
        ("chunks_skipped", fixture.chunks()),
        ("artifacts_skipped", fixture.restorable_artifacts()),
        ("artifacts_left_out", orphans),
    ] {
        assert_eq!(again[key], expected, "second run: {key} in {again:#}");
    }
    let human = ok(
        run(
            Some(&db),
            dir.path(),
            &["restore", "--embed-provider", "hash", fixture.arg()],
        ),
        "restore",
    );
    assert_eq!(first_line(&human), format!("read as {}", fixture.label));
    if orphans > 0 {
        let said = format!("{}{}", stdout_of(&human), stderr_of(&human));
        assert!(
            said.lines().any(
                |l| l.contains(&format!("{orphans} artifact")) && l.contains("not in the file")
            ),
            "restore says how many artifacts it left out and why:\n{said}"
        );
    }
    assert_eq!(
        db.digest(),
        digest,
        "the second and third runs changed nothing"
    );
}

fn replace_then_backup_keeps_every_value(shape: Shape) {
    let db = TestDb::with_sample();
    let dir = workdir();
    let fixture = shape(dir.path());
    let summary = restore_json(&db, dir.path(), &["--replace", "--yes", fixture.arg()]);
    assert_eq!(summary["replaced"], true);
    assert_eq!(summary["analyses_inserted"], fixture.analyses());
    assert_eq!(
        summary["artifacts_inserted"],
        fixture.restorable_artifacts()
    );
    assert_eq!(
        summary["artifacts_left_out"],
        fixture.orphan_artifact_ids().len()
    );
    // The sample's rows and queries are gone: the comparator refuses any record not in the file.
    let backup = backup_of(&db, dir.path(), "backup.json");
    dialects::assert_nothing_lost(&fixture.original, &backup);
}

fn convert_writes_golden_files_that_round_trip_byte_for_byte(shape: Shape) {
    let dir = workdir();
    let fixture = shape(dir.path());
    let converted = dir.path().join("converted.json");
    ok(
        run(
            None,
            dir.path(),
            &["convert", fixture.arg(), "--output", "converted.json"],
        ),
        "convert",
    );
    let verified = ok(
        run(None, dir.path(), &["verify", "converted.json"]),
        "verify",
    );
    assert_eq!(first_line(&verified), "read as golden 1.0");
    let file: Value = serde_json::from_slice(&fs::read(&converted).unwrap()).unwrap();
    assert_eq!(file["version"], "1.0");
    dialects::assert_nothing_lost(&fixture.original, &file);
    assert_eq!(
        instant(file["created_at"].as_str().unwrap()),
        instant(fixture.original["created_at"].as_str().unwrap()),
        "convert keeps the file's time (a naive one as UTC)"
    );
    ok(
        run(
            None,
            dir.path(),
            &["convert", fixture.arg(), "--output", "again.json"],
        ),
        "convert again",
    );
    let bytes = fs::read(&converted).unwrap();
    assert!(
        bytes == fs::read(dir.path().join("again.json")).unwrap(),
        "convert is deterministic"
    );

    let db = TestDb::migrated();
    restore_json(&db, dir.path(), &["--replace", "--yes", "converted.json"]);
    let output = ok(
        run(
            Some(&db),
            dir.path(),
            &["backup", "--json", "--output", "converted.json"],
        ),
        "backup over the converted file",
    );
    assert_eq!(
        json_of(&output)["changed"],
        false,
        "convert wrote what backup writes"
    );
    assert!(
        fs::read(&converted).unwrap() == bytes,
        "the converted file is unchanged"
    );
    ok(
        run(Some(&db), dir.path(), &["backup", "--output", "fresh.json"]),
        "backup to a new file",
    );
    assert_eq!(
        without_created_at(&dir.path().join("fresh.json")),
        without_created_at(&converted),
        "a new backup differs from the converted file by its created_at only"
    );
}

#[test]
fn evaluate_lists_the_query_whose_references_resolve_to_nothing_as_not_scored() {
    let db = TestDb::migrated();
    let dir = workdir();
    let fixture = dialects::skillforge_flat_2(dir.path());
    restore_json(&db, dir.path(), &[fixture.arg()]);

    let args = ["evaluate", "--json", "--embed-provider", "hash"];
    let report = json_of(&ok(run(Some(&db), dir.path(), &args), "evaluate"));
    assert_eq!(report["queries"], fixture.queries());
    // Scored: q-sharding-why, q-fastapi-password-jwt, q-ownership-ja, q-fastapi-scopes. Not
    // scored: the negative query (nothing expected) and the one whose reference resolves to nothing.
    assert_eq!(report["scored"], 4);
    let not_scored = report["not_scored"].as_array().expect("a not_scored list");
    assert_eq!(not_scored.len(), 2, "{not_scored:#?}");
    assert!(not_scored
        .iter()
        .all(|q| q["reason"].as_str().is_some_and(|r| !r.is_empty())));
    let unresolved = not_scored
        .iter()
        .find(|q| q["id"] == UNRESOLVED_QUERY)
        .unwrap_or_else(|| panic!("{UNRESOLVED_QUERY} in {not_scored:#?}"));
    assert!(
        unresolved["reason"]
            .as_str()
            .unwrap()
            .contains(UNRESOLVED_REFERENCE),
        "the reason names the reference: {unresolved}"
    );

    let human = ok(
        run(
            Some(&db),
            dir.path(),
            &["evaluate", "--embed-provider", "hash"],
        ),
        "evaluate",
    );
    let text = stdout_of(&human);
    assert!(
        text.lines()
            .any(|l| l.contains(UNRESOLVED_QUERY) && l.contains(UNRESOLVED_REFERENCE)),
        "{text}"
    );
}

#[test]
fn a_large_flat_file_restores_and_backs_up_with_nothing_lost() {
    let db = TestDb::migrated();
    let dir = workdir();
    let fixture = dialects::skillforge_flat_2_sized(dir.path(), 240, 5);
    let summary = restore_json(&db, dir.path(), &[fixture.arg()]);
    assert_eq!(summary["chunks_inserted"], 1200);
    assert_eq!(
        summary["artifacts_inserted"],
        fixture.restorable_artifacts()
    );
    let backup = backup_of(&db, dir.path(), "backup.json");
    dialects::assert_nothing_lost(&fixture.original, &backup);
}

/// Golden's own files are untouched by the dialects: restored by the CLI and backed up, the
/// committed sample is its own bytes again.
#[test]
fn golden_own_sample_restored_and_backed_up_is_its_own_bytes() {
    let db = TestDb::migrated();
    let dir = workdir();
    let sample = sample_path();
    restore_json(&db, dir.path(), &[sample.to_str().unwrap()]);
    fs::copy(&sample, dir.path().join("backup.json")).unwrap();
    let output = ok(
        run(
            Some(&db),
            dir.path(),
            &["backup", "--json", "--output", "backup.json"],
        ),
        "backup",
    );
    assert_eq!(json_of(&output)["changed"], false);
    assert!(fs::read(dir.path().join("backup.json")).unwrap() == fs::read(&sample).unwrap());
}

#[test]
fn golden_own_sample_is_read_as_golden_and_converts_to_its_own_bytes() {
    let dir = workdir();
    let sample = sample_path();
    let sample = sample.to_str().unwrap();
    let verified = ok(run(None, dir.path(), &["verify", sample]), "verify");
    assert_eq!(first_line(&verified), "read as golden 1.0");
    ok(
        run(
            None,
            dir.path(),
            &["convert", sample, "--output", "converted.json"],
        ),
        "convert",
    );
    assert!(
        fs::read(dir.path().join("converted.json")).unwrap() == fs::read(sample).unwrap(),
        "converting golden's own file changes no byte"
    );
}
