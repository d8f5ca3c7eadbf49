//! `golden verify` on files alone: every kind of problem is found and located, every exit
//! code is the contract's.

mod common;

use std::fs;
use std::path::Path;

use common::{golden, json_of, problems_of, sample_path, stderr_of, stdout_of, workdir};
use serde_json::{json, Value};

fn sample() -> Value {
    serde_json::from_slice(&fs::read(sample_path()).unwrap()).unwrap()
}

/// Runs `verify --json` on `file` and returns (exit code, summary, stderr).
fn verify_json(dir: &Path, file: &Value) -> (i32, Value, String) {
    let path = dir.join("candidate.json");
    fs::write(&path, serde_json::to_vec_pretty(file).unwrap()).unwrap();
    let output = golden(None, dir)
        .args(["verify", "--json", "candidate.json"])
        .output()
        .unwrap();
    let code = output.status.code().unwrap();
    (code, json_of(&output), stderr_of(&output))
}

fn id(value: &Value) -> String {
    value["id"].as_str().unwrap().to_string()
}

#[test]
fn the_committed_sample_is_a_clean_backup() {
    let dir = workdir();
    let output = golden(None, dir.path())
        .args(["verify", sample_path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stdout_of(&output));
    // The first line names the dialect (issue 12), the last says the file is clean.
    let text = stdout_of(&output);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.first(), Some(&"read as golden 1.0"), "{text}");
    assert!(
        lines.last().is_some_and(|line| line.starts_with("ok: ")),
        "{text}"
    );
    assert!(text.contains("43 analyses, 188 chunks, 43 artifacts"));
    let sample = sample();
    let analyses = sample["analyses"].as_array().unwrap();
    assert!(analyses.len() >= 40);
    assert!(
        analyses
            .iter()
            .map(|a| a["chunks"].as_array().unwrap().len())
            .sum::<usize>()
            >= 160
    );
    assert!(analyses
        .iter()
        .all(|a| a["status"] == "completed" && a["artifact"].is_object()));
}

#[test]
fn default_input_and_the_input_option_are_read() {
    let dir = workdir();
    fs::create_dir_all(dir.path().join("data")).unwrap();
    fs::copy(
        sample_path(),
        dir.path().join("data/golden_dataset_backup.json"),
    )
    .unwrap();
    golden(None, dir.path()).arg("verify").assert().code(0);
    golden(None, dir.path())
        .args(["verify", "--input", "data/golden_dataset_backup.json"])
        .assert()
        .code(0);
    let both = golden(None, dir.path())
        .args(["verify", "--input", "a.json", "b.json"])
        .output()
        .unwrap();
    assert_eq!(both.status.code(), Some(2), "--input and a FILE conflict");
}

#[test]
fn duplicated_chunk_id_wrong_total_and_placeholder_url_are_each_named() {
    let mut file = sample();
    let first_chunk = id(&file["analyses"][0]["chunks"][0]);
    file["analyses"][1]["chunks"][2]["id"] = json!(first_chunk);
    file["metadata"]["total_chunks"] = json!(189);
    file["analyses"][5]["url"] = json!("https://example.com/article");
    let (analysis_1, analysis_5) = (id(&file["analyses"][1]), id(&file["analyses"][5]));

    let dir = workdir();
    let (code, summary, _) = verify_json(dir.path(), &file);
    assert_eq!(code, 3);
    assert_eq!(summary["ok"], false);
    let found = problems_of(&summary);
    // The chunk whose id was overwritten is gone, so the query that expected it is reported too.
    assert!(found
        .iter()
        .any(|(at, p)| at.starts_with("query ") && p.contains("is not in the file")));
    assert_eq!(found.len(), 4, "{found:?}");
    assert!(found.contains(&(
        format!("analysis {analysis_1}, chunk {first_chunk}"),
        "duplicate chunk id".into()
    )));
    assert!(found.contains(&(
        "metadata".into(),
        "total_chunks says 189 but the file holds 188 chunks".into()
    )));
    assert!(found
        .iter()
        .any(|(at, p)| at == &format!("analysis {analysis_5}")
            && p.contains("placeholder")
            && p.contains("example.com")));

    // The human form names the same problems on stdout.
    let output = golden(None, dir.path())
        .args(["verify", "candidate.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3));
    let text = stdout_of(&output);
    assert!(
        text.contains(&format!(
            "problem: analysis {analysis_1}, chunk {first_chunk}: duplicate chunk id"
        )),
        "{text}"
    );
    assert!(
        text.contains("4 problems found in candidate.json"),
        "{text}"
    );
}

#[test]
fn every_kind_of_record_problem_is_reported_with_its_place() {
    let mut file = sample();
    let a = |i: usize, file: &Value| id(&file["analyses"][i]);
    file["analyses"][1]["id"] = file["analyses"][0]["id"].clone(); // duplicate analysis id
    file["analyses"][2]["artifact"]["id"] = file["analyses"][3]["artifact"]["id"].clone(); // duplicate artifact id
    file["analyses"][4]["chunks"][1]["chunk_index"] = json!(0); // chunk_index clash
    file["analyses"][6]["chunks"][0]["content"] = json!("before\u{0}after"); // NUL
    file["analyses"][7]
        .as_object_mut()
        .unwrap()
        .remove("content_type"); // missing field
    file["analyses"][8]["status"] = json!("  "); // blank field
    file["analyses"][9]["url"] = json!("ftp://files.kernel.org/pub"); // not http(s)
    file["analyses"][10]["url"] = json!("http://localhost:8080/doc"); // placeholder
    file["analyses"][11]["url"] = json!("https://placeholder.invalid/x"); // placeholder
    file["analyses"][12]["chunks"][0]["id"] = json!("not-a-uuid"); // bad uuid
    file["analyses"][13]["created_at"] = json!("last tuesday"); // bad datetime
    file["analyses"][14]["chunks"][0]["chunk_index"] = json!(-1); // negative index
    file["analyses"][15]["artifact"]["summary"] = json!(""); // empty summary
    file["analyses"][16]["title"] = json!(42); // wrong type

    let dir = workdir();
    let (code, summary, _) = verify_json(dir.path(), &file);
    assert_eq!(code, 3);
    let found = problems_of(&summary);
    let has = |at: String, needle: &str| {
        assert!(
            found.iter().any(|(w, p)| *w == at && p.contains(needle)),
            "expected {needle:?} at {at:?} in {found:#?}"
        )
    };
    has(format!("analysis {}", a(0, &file)), "duplicate analysis id");
    has(
        format!(
            "analysis {}, artifact {}",
            a(3, &file),
            id(&file["analyses"][3]["artifact"])
        ),
        "duplicate artifact id",
    );
    has(
        format!(
            "analysis {}, chunk {}",
            a(4, &file),
            id(&file["analyses"][4]["chunks"][1])
        ),
        "chunk_index 0 is used by another chunk",
    );
    has(
        format!(
            "analysis {}, chunk {}",
            a(6, &file),
            id(&file["analyses"][6]["chunks"][0])
        ),
        "NUL",
    );
    has(
        format!("analysis {}", a(7, &file)),
        "missing \"content_type\"",
    );
    has(format!("analysis {}", a(8, &file)), "\"status\" is empty");
    has(format!("analysis {}", a(9, &file)), "not an absolute http");
    has(
        format!("analysis {}", a(10, &file)),
        "placeholder (host localhost)",
    );
    has(format!("analysis {}", a(11, &file)), "placeholder");
    has(format!("analysis {}, chunk #1", a(12, &file)), "not a UUID");
    has(format!("analysis {}", a(13, &file)), "\"created_at\"");
    has(
        format!(
            "analysis {}, chunk {}",
            a(14, &file),
            id(&file["analyses"][14]["chunks"][0])
        ),
        "chunk_index -1",
    );
    has(
        format!(
            "analysis {}, artifact {}",
            a(15, &file),
            id(&file["analyses"][15]["artifact"])
        ),
        "\"summary\" is empty",
    );
    has(
        format!("analysis {}", a(16, &file)),
        "\"title\" must be a string or null",
    );
    assert_eq!(
        found.len(),
        14,
        "one problem each, nothing more: {found:#?}"
    );
}

#[test]
fn metadata_totals_and_checksum_are_checked() {
    let dir = workdir();
    let mut file = sample();
    file["metadata"]["total_analyses"] = json!(42);
    file["metadata"]["total_artifacts"] = json!("many");
    let (code, summary, _) = verify_json(dir.path(), &file);
    assert_eq!(code, 3);
    let found = problems_of(&summary);
    assert!(found.contains(&(
        "metadata".into(),
        "total_analyses says 42 but the file holds 43 analyses".into()
    )));
    assert!(found
        .iter()
        .any(|(w, p)| w == "metadata" && p.starts_with("total_artifacts is \"many\"")));

    // Same counts, edited text: only the checksum can tell.
    let mut edited = sample();
    edited["analyses"][3]["chunks"][0]["content"] = json!("A sentence nobody reviewed.");
    let (code, summary, _) = verify_json(dir.path(), &edited);
    assert_eq!(code, 3);
    assert_eq!(problems_of(&summary).len(), 1);
    assert!(problems_of(&summary)[0]
        .1
        .contains("checksum does not match"));

    // Without a checksum (files of the original tool have none) the edit is accepted.
    edited["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("checksum");
    let (code, _, _) = verify_json(dir.path(), &edited);
    assert_eq!(code, 0);

    let mut no_totals = sample();
    no_totals["metadata"] = json!({});
    let (code, summary, _) = verify_json(dir.path(), &no_totals);
    assert_eq!(code, 3);
    assert_eq!(
        problems_of(&summary).len(),
        4,
        "{:?}",
        problems_of(&summary)
    );
}

#[test]
fn duplicate_urls_are_warnings_not_problems() {
    let mut file = sample();
    file["analyses"][2]["url"] = file["analyses"][1]["url"].clone();
    file["metadata"].as_object_mut().unwrap().remove("checksum"); // an edit on purpose
    let dir = workdir();
    let (code, summary, _) = verify_json(dir.path(), &file);
    assert_eq!(code, 0);
    assert_eq!(summary["ok"], true);
    let warnings = summary["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0]["problem"]
        .as_str()
        .unwrap()
        .contains(&id(&file["analyses"][1])));
}

#[test]
fn files_of_the_original_python_tool_are_read() {
    // Python's str(datetime) with a space, no microseconds on one, \u escapes, unknown keys,
    // null title/sections/artifact, no checksum.
    let text = r#"{"version": "1.0", "created_at": "2025-12-19 10:30:00.123456+00:00",
      "metadata": {"total_analyses": 2, "total_chunks": 1, "total_artifacts": 1, "exported_by": "seed.py"},
      "analyses": [
        {"id": "7d1c1a52-5f0e-4a5e-9d39-0a6f7f0b8a01", "url": "https://www.postgresql.org/docs/current/mvcc.html",
         "title": "Concurrency Control \u2014 MVCC", "content_type": "article", "status": "completed",
         "created_at": "2025-12-19 10:30:00.123456+00:00", "updated_at": "2025-12-19 10:31:00+00:00",
         "source": "crawler", "chunks": [
           {"id": "3b8e5c1e-2a44-4c2e-bb0e-8f8a1d0c9e02", "content": "Caf\u00e9 na\u00efve r\u00e9sum\u00e9",
            "section_title": null, "section_path": null, "content_type": "article", "chunk_index": 0, "tokens": 12}],
         "artifact": {"id": "c2f5a0de-6b7e-4f0e-9a55-2d3c4b5a6f03", "summary": "MVCC in PostgreSQL.",
                      "created_at": "2025-12-19 10:32:00.5+00:00"}},
        {"id": "8e2d2b63-6a1f-4b6f-8e4a-1b7a8c1c9b04", "url": "https://arxiv.org/abs/1603.09320", "title": null,
         "content_type": "paper", "status": "completed", "created_at": "2025-12-20 08:00:00+00:00",
         "updated_at": "2025-12-20 08:00:00+00:00", "chunks": [], "artifact": null}
      ]}"#;
    let dir = workdir();
    fs::write(dir.path().join("seed.json"), text).unwrap();
    let output = golden(None, dir.path())
        .args(["verify", "--json", "seed.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stdout_of(&output));
    let summary = json_of(&output);
    assert_eq!(
        (
            summary["analyses"].as_u64(),
            summary["chunks"].as_u64(),
            summary["artifacts"].as_u64()
        ),
        (Some(2), Some(1), Some(1))
    );
}

#[test]
fn unreadable_files_and_other_formats_exit_2_with_a_one_line_reason() {
    let dir = workdir();
    let sample_text = fs::read_to_string(sample_path()).unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty.json", vec![], "is empty"),
        (
            "truncated.json",
            sample_text.as_bytes()[..sample_text.len() / 2].to_vec(),
            "truncated",
        ),
        (
            "not-json.json",
            b"version: 1.0\n".to_vec(),
            "not valid JSON",
        ),
        ("list.json", b"[1, 2, 3]".to_vec(), "not a golden backup"),
        (
            "no-analyses.json",
            br#"{"version": "1.0", "metadata": {}}"#.to_vec(),
            "no \"analyses\" list",
        ),
        (
            "no-version.json",
            br#"{"metadata": {}, "analyses": []}"#.to_vec(),
            "no \"version\"",
        ),
        (
            "v2.json",
            br#"{"version": "2.0", "metadata": {}, "analyses": []}"#.to_vec(),
            "version \"2.0\" is not supported",
        ),
        (
            "bom.json",
            [b"\xEF\xBB\xBF".as_slice(), sample_text.as_bytes()].concat(),
            "byte-order mark",
        ),
        (
            "latin1.json",
            b"{\"version\": \"1.0\", \"analyses\": [{\"title\": \"caf\xE9\"}]}".to_vec(),
            "not valid JSON",
        ),
        (
            "deep.json",
            format!(
                "{{\"version\": \"1.0\", \"analyses\": [{}{}]}}",
                "[".repeat(5000),
                "]".repeat(5000)
            )
            .into_bytes(),
            "recursion limit",
        ),
    ];
    for (name, bytes, reason) in cases {
        fs::write(dir.path().join(name), bytes).unwrap();
        let output = golden(None, dir.path())
            .args(["verify", name])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{name}: {}",
            stderr_of(&output)
        );
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains(reason),
            "{name}: expected {reason:?} in {stderr}"
        );
        assert!(stderr.starts_with("error: "), "{name}: {stderr}");
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
    }
    let missing = golden(None, dir.path())
        .args(["verify", "nowhere.json"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_of(&missing).contains("cannot read nowhere.json"));
}
