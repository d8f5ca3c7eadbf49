//! `golden restore --sync`: the database made equal to the file within the file's scope, in one
//! transaction. The edits are those of a pull request on the team's file: texts rewritten,
//! chunks reordered and moved, an analysis removed and one added, summaries, titles and
//! queries changed.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::embed_server::{EmbedServer, Fault, Protocol};
use common::{golden, json_of, sample_path, stderr_of, stdout_of, workdir, TestDb};
use serde_json::{json, Value};

fn sample() -> Value {
    serde_json::from_slice(&fs::read(sample_path()).unwrap()).unwrap()
}

/// Writes `file` with its totals made true again and no checksum (an edited file).
fn write_file(dir: &Path, name: &str, mut file: Value) -> PathBuf {
    let analyses = file["analyses"].as_array().unwrap();
    let chunks: usize = analyses
        .iter()
        .map(|a| a["chunks"].as_array().unwrap().len())
        .sum();
    let artifacts: usize = analyses
        .iter()
        .map(|a| {
            usize::from(a.get("artifact").is_some_and(|x| !x.is_null()))
                + a.get("artifact_versions")
                    .and_then(Value::as_array)
                    .map_or(0, Vec::len)
        })
        .sum();
    let (n_analyses, n_queries) = (analyses.len(), file["queries"].as_array().unwrap().len());
    let metadata = file["metadata"].as_object_mut().unwrap();
    metadata.remove("checksum");
    metadata.insert("total_analyses".into(), json!(n_analyses));
    metadata.insert("total_chunks".into(), json!(chunks));
    metadata.insert("total_artifacts".into(), json!(artifacts));
    metadata.insert("total_queries".into(), json!(n_queries));
    let path = dir.join(name);
    fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    path
}

/// The ids the edits touch.
struct Edits {
    text_changed: String,
    unchanged_chunk: String,
    removed_analysis: String,
    added_analysis: String,
    moved_chunk: String,
    removed_query: String,
    edited_query: String,
    added_query: String,
    texts_changed: usize,
}

/// The sample as a pull request leaves it: every kind of insert, update and delete in each
/// of the four tables.
fn edited_sample() -> (Value, Edits) {
    let mut file = sample();
    let analyses = file["analyses"].as_array_mut().unwrap();
    // A text rewritten (a new vector), and two chunks swapping places (no new vector).
    analyses[0]["chunks"][0]["content"] = json!("A rewritten text, reviewed in the pull request.");
    let text_changed = analyses[0]["chunks"][0]["id"].as_str().unwrap().to_string();
    let unchanged_chunk = analyses[0]["chunks"][1]["id"].as_str().unwrap().to_string();
    let first = analyses[1]["chunks"][0]["chunk_index"].clone();
    analyses[1]["chunks"][0]["chunk_index"] = analyses[1]["chunks"][1]["chunk_index"].clone();
    analyses[1]["chunks"][1]["chunk_index"] = first;
    // An analysis removed, with its chunks and artifact.
    let removed = analyses.remove(2);
    let removed_chunks: Vec<&str> = removed["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    // A chunk moved to another analysis, at its end.
    let moved = analyses[5]["chunks"].as_array_mut().unwrap().pop().unwrap();
    let moved_chunk = moved["id"].as_str().unwrap().to_string();
    let last = analyses[6]["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["chunk_index"].as_i64().unwrap())
        .max()
        .unwrap();
    let mut moved = moved;
    moved["chunk_index"] = json!(last + 1);
    analyses[6]["chunks"].as_array_mut().unwrap().push(moved);
    // A summary, a title and an extra field changed; an older artifact version added.
    analyses[4]["artifact"]["summary"] = json!("A summary rewritten in review.");
    analyses[7]["title"] = json!("A better title");
    analyses[8]["chunks"][0]["reviewed_by"] = json!("maria");
    analyses[9]["artifact_versions"] = json!([{
        "id": "5d0c9a3e-6f0b-4e43-9d9b-2a8d3f6f0a01",
        "summary": "The first draft of the summary.",
        "created_at": "2025-01-02T03:04:05.000000Z",
        "version": 1
    }]);
    analyses[9]["artifact"]["version"] = json!(2);
    // A new analysis: a new document with two chunks.
    let mut added = analyses[3].clone();
    let added_analysis = "0b5e7c52-8f4e-4d53-9a57-3c1f2e9d4a10".to_string();
    added["id"] = json!(added_analysis);
    added["url"] = json!("https://docs.rs/serde/latest/serde/");
    added["chunks"] = json!([
        {"id": "0b5e7c52-8f4e-4d53-9a57-3c1f2e9d4a11", "content": "Serde is a framework for serializing.",
         "section_title": null, "section_path": null, "content_type": "text", "chunk_index": 0},
        {"id": "0b5e7c52-8f4e-4d53-9a57-3c1f2e9d4a12", "content": "Derive Serialize and Deserialize.",
         "section_title": "Derive", "section_path": "Derive", "content_type": "text", "chunk_index": 1}
    ]);
    added["artifact"]["id"] = json!("0b5e7c52-8f4e-4d53-9a57-3c1f2e9d4a13");
    added["artifact"]["summary"] = json!("Serde's front page.");
    analyses.push(added);

    let queries = file["queries"].as_array_mut().unwrap();
    queries.retain(|q| {
        !q["expected_chunk_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|id| removed_chunks.contains(&id.as_str().unwrap()))
    });
    let removed_query = queries.remove(0)["id"].as_str().unwrap().to_string();
    queries[0]["query"] = json!("an edited golden query");
    let edited_query = queries[0]["id"].as_str().unwrap().to_string();
    queries.push(json!({
        "id": "q-new",
        "query": "how does serde derive work",
        "expected_chunk_ids": ["0b5e7c52-8f4e-4d53-9a57-3c1f2e9d4a12"],
        "category": "rust",
        "difficulty": "easy"
    }));
    let edits = Edits {
        text_changed,
        unchanged_chunk,
        removed_analysis: removed["id"].as_str().unwrap().to_string(),
        added_analysis,
        moved_chunk,
        removed_query,
        edited_query,
        added_query: "q-new".into(),
        // The rewritten text and the new analysis's two chunks.
        texts_changed: 3,
    };
    (file, edits)
}

fn sync_args<'a>(file: &'a Path, safety: &'a Path) -> Vec<&'a str> {
    vec![
        "restore",
        "--sync",
        "--yes",
        "--json",
        "--safety-backup",
        safety.to_str().unwrap(),
        file.to_str().unwrap(),
    ]
}

fn run(db: &TestDb, dir: &Path, args: &[&str], provider: &[&str]) -> Output {
    golden(Some(db), dir)
        .args(args)
        .args(provider)
        .output()
        .unwrap()
}

const HASH: &[&str] = &["--embed-provider", "hash"];

fn server_args(server: &EmbedServer) -> Vec<&str> {
    vec![
        "--embed-provider",
        "openai",
        "--embed-url",
        &server.url,
        "--embed-max-retries",
        "0",
        "--embed-batch-size",
        "2",
    ]
}

fn ok(output: &Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    json_of(output)
}

/// A digest of every row golden writes, the queries' `created_at` (not in the file) aside.
fn rows_digest(db: &TestDb) -> String {
    db.digest_of(&[
        ("analyses", "id"),
        ("chunks", "id"),
        ("artifacts", "id"),
        ("artifact_versions", "id"),
        ("dataset_extras", "key"),
        (
            "(SELECT id, query, expected_chunk_ids, category, difficulty, extra, \
             unresolved_expected_chunks FROM queries)",
            "id",
        ),
    ])
}

/// `golden verify --against-db` of `file` passes: the database holds exactly it.
fn assert_holds(db: &TestDb, dir: &Path, file: &Path) {
    golden(Some(db), dir)
        .args(["verify", "--against-db"])
        .arg(file)
        .assert()
        .code(0);
}

fn inputs_sent(server: &EmbedServer) -> usize {
    server
        .requests()
        .iter()
        .map(|r| r.body["input"].as_array().map_or(0, Vec::len))
        .sum()
}

#[test]
fn sync_applies_inserts_updates_and_deletes_in_all_four_tables() {
    let dir = workdir();
    let (edited, edits) = edited_sample();
    let file = write_file(dir.path(), "edited.json", edited);
    let db = TestDb::with_sample();
    let safety = dir.path().join("safety.json");
    let synced = ok(&run(&db, dir.path(), &sync_args(&file, &safety), HASH));
    for (key, value) in [
        ("analyses_inserted", 1),
        ("analyses_updated", 1),
        ("analyses_deleted", 1),
        ("chunks_inserted", 2),
        // The rewritten text, the two swapped, the moved one, the one with a new field.
        ("chunks_updated", 5),
        ("artifacts_inserted", 2),
        // The rewritten summary, the one whose version is now 2.
        ("artifacts_updated", 2),
        ("artifacts_deleted", 1),
        ("queries_inserted", 1),
        ("queries_updated", 1),
        ("embeddings_computed", edits.texts_changed as i64),
    ] {
        assert_eq!(synced[key], json!(value), "{key}: {synced:#}");
    }
    assert!(
        synced["chunks_deleted"].as_u64().unwrap() >= 3,
        "{synced:#}"
    );
    assert!(
        synced["queries_deleted"].as_u64().unwrap() >= 1,
        "{synced:#}"
    );
    assert_eq!(synced["synced"], json!(true));
    assert_eq!(
        synced["index_rebuilt"],
        json!(false),
        "a small change keeps the index"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'"),
        1
    );

    // The database now holds exactly the file…
    assert_holds(&db, dir.path(), &file);
    for (sql, n) in [
        (
            format!(
                "SELECT count(*) FROM analyses WHERE id = '{}'",
                edits.removed_analysis
            ),
            0,
        ),
        (
            format!(
                "SELECT count(*) FROM analyses WHERE id = '{}'",
                edits.added_analysis
            ),
            1,
        ),
        (
            format!(
                "SELECT count(*) FROM queries WHERE id IN ('{}')",
                edits.removed_query
            ),
            0,
        ),
        (
            format!(
                "SELECT count(*) FROM queries WHERE id = '{}' AND query = 'an edited golden query'",
                edits.edited_query
            ),
            1,
        ),
        (
            format!("SELECT count(*) FROM queries WHERE id = '{}'", edits.added_query),
            1,
        ),
        (
            "SELECT count(*) FROM artifact_versions WHERE id = '5d0c9a3e-6f0b-4e43-9d9b-2a8d3f6f0a01'"
                .into(),
            1,
        ),
    ] {
        assert_eq!(db.count(&sql), n, "{sql}");
    }
    // …row for row and vector for vector what a replace of the file gives.
    let replaced = TestDb::migrated();
    ok(&run(
        &replaced,
        dir.path(),
        &[
            "restore",
            "--json",
            "--replace",
            "--yes",
            file.to_str().unwrap(),
        ],
        HASH,
    ));
    assert_eq!(rows_digest(&db), rows_digest(&replaced));

    // The safety backup holds the analyses whose rows changed or went, as they were.
    golden(Some(&db), dir.path())
        .args(["verify"])
        .arg(&safety)
        .assert()
        .code(0);
    let backup: Value = serde_json::from_slice(&fs::read(&safety).unwrap()).unwrap();
    assert_eq!(backup["metadata"]["status_filter"], json!("(listed)"));
    let held: Vec<&str> = backup["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert!(held.contains(&edits.removed_analysis.as_str()), "{held:?}");
    assert!(!held.contains(&edits.added_analysis.as_str()), "{held:?}");
    let old_text = sample()["analyses"][0]["chunks"][0]["content"].clone();
    assert!(
        backup["analyses"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|a| a["chunks"].as_array().unwrap())
            .any(|c| c["content"] == old_text),
        "the old text is in the safety backup"
    );
    let moved = db.count(&format!(
        "SELECT count(*) FROM chunks WHERE id = '{}' AND analysis_id = '{}'",
        edits.moved_chunk,
        sample()["analyses"][7]["id"].as_str().unwrap()
    ));
    assert_eq!(
        moved, 1,
        "the chunk moved in place, to the seventh analysis of the file"
    );
}

#[test]
fn the_safety_backup_synced_back_puts_back_what_the_sync_changed_and_deleted() {
    let dir = workdir();
    let (edited, edits) = edited_sample();
    let file = write_file(dir.path(), "edited.json", edited);
    let db = TestDb::with_sample();
    let safety = dir.path().join("safety.json");
    ok(&run(&db, dir.path(), &sync_args(&file, &safety), HASH));
    let undo = ok(&run(
        &db,
        dir.path(),
        &sync_args(&safety, &dir.path().join("safety-2.json")),
        HASH,
    ));
    assert_eq!(
        undo["analyses_deleted"],
        json!(0),
        "a listed file deletes no analysis"
    );
    // Everything of the sample is back as it was; the analysis the sync added stays.
    let output = golden(Some(&db), dir.path())
        .args(["verify", "--against-db", "--json"])
        .arg(sample_path())
        .output()
        .unwrap();
    let problems = common::problems_of(&json_of(&output));
    assert_eq!(
        problems,
        vec![
            (
                format!("analysis {}", edits.added_analysis),
                "is in the database but not in the file".to_string()
            ),
            (
                format!("query {:?}", edits.added_query),
                "is in the database but not in the file".to_string()
            )
        ],
        "{}",
        stdout_of(&output)
    );
}

#[test]
fn sync_reembeds_only_changed_text_and_a_second_sync_changes_nothing_and_sends_no_request() {
    let dir = workdir();
    let (edited, edits) = edited_sample();
    let file = write_file(dir.path(), "edited.json", edited);
    let server = EmbedServer::start(Protocol::OpenAi);
    let db = TestDb::migrated();
    let provider = server_args(&server);
    ok(&run(
        &db,
        dir.path(),
        &["restore", "--json", sample_path().to_str().unwrap()],
        &provider,
    ));
    let unchanged_before = db.embedding_of(&edits.unchanged_chunk).unwrap();
    let moved_before = db.embedding_of(&edits.moved_chunk).unwrap();
    let sent_before = inputs_sent(&server);

    let safety = dir.path().join("safety.json");
    let synced = ok(&run(&db, dir.path(), &sync_args(&file, &safety), &provider));
    assert_eq!(
        inputs_sent(&server) - sent_before,
        edits.texts_changed,
        "only the changed texts went to the provider"
    );
    assert_eq!(synced["embeddings_computed"], json!(edits.texts_changed));
    assert_eq!(
        db.embedding_of(&edits.unchanged_chunk).unwrap(),
        unchanged_before
    );
    assert_eq!(
        db.embedding_of(&edits.moved_chunk).unwrap(),
        moved_before,
        "a chunk that moves keeps its vector"
    );
    assert_ne!(
        db.embedding_of(&edits.text_changed),
        None,
        "the rewritten text has a vector"
    );

    let after = db.full_digest();
    let requests = server.request_count();
    let again = ok(&run(
        &db,
        dir.path(),
        &sync_args(&file, &dir.path().join("safety-again.json")),
        &provider,
    ));
    assert_eq!(
        server.request_count(),
        requests,
        "no request the second time"
    );
    assert_eq!(db.full_digest(), after, "nothing changed the second time");
    for table in ["analyses", "chunks", "artifacts", "queries"] {
        for what in ["inserted", "updated", "deleted"] {
            assert_eq!(again[format!("{table}_{what}")], json!(0), "{again:#}");
        }
    }
    assert_eq!(again["safety_backup"], Value::Null, "nothing to back up");
    assert!(!dir.path().join("safety-again.json").exists());
}

#[test]
fn the_dry_run_plan_is_what_the_sync_then_does() {
    let dir = workdir();
    let (edited, _) = edited_sample();
    let file = write_file(dir.path(), "edited.json", edited);
    let server = EmbedServer::start(Protocol::OpenAi);
    let db = TestDb::migrated();
    let restorer = EmbedServer::start(Protocol::OpenAi);
    ok(&run(
        &db,
        dir.path(),
        &["restore", "--json", sample_path().to_str().unwrap()],
        &server_args(&restorer),
    ));
    let provider = server_args(&server);
    let before = db.full_digest();
    let plan = ok(&run(
        &db,
        dir.path(),
        &[
            "restore",
            "--sync",
            "--dry-run",
            "--json",
            file.to_str().unwrap(),
        ],
        &provider,
    ));
    assert_eq!(db.full_digest(), before, "a dry run writes nothing");
    assert_eq!(server.request_count(), 0, "a dry run embeds nothing");
    let verbose = golden(Some(&db), dir.path())
        .args(["restore", "--sync", "--dry-run", "-v"])
        .arg(&file)
        .args(&provider)
        .output()
        .unwrap();
    assert!(
        stderr_of(&verbose).contains("delete analysis "),
        "-v lists the ids: {}",
        stderr_of(&verbose)
    );
    let synced = ok(&run(
        &db,
        dir.path(),
        &sync_args(&file, &dir.path().join("safety.json")),
        &provider,
    ));
    for table in ["analyses", "chunks", "artifacts", "queries"] {
        for (planned, done) in [
            ("insert", "inserted"),
            ("update", "updated"),
            ("delete", "deleted"),
            ("unchanged", "skipped"),
        ] {
            assert_eq!(
                plan[table][planned],
                synced[format!("{table}_{done}")],
                "{table} {planned}: plan {plan:#} sync {synced:#}"
            );
        }
    }
    assert_eq!(plan["embeddings_to_compute"], synced["embeddings_computed"]);
    assert_eq!(
        plan["embedding_requests_needed"],
        synced["embedding_requests"]
    );
    assert_eq!(plan["index_rebuild"], synced["index_rebuilt"]);
}

/// An analysis of another status, written by another tool.
fn insert_draft(db: &TestDb) -> String {
    let id = "7a1d0c3e-2b4f-4e5a-8c6d-9e0f1a2b3c4d";
    db.execute(&format!(
        "INSERT INTO analyses (id, url, title, content_type, status, created_at, updated_at) VALUES \
         ('{id}', 'https://docs.rs/draft', 'A draft', 'documentation', 'draft', now(), now())"
    ));
    db.execute(&format!(
        "INSERT INTO chunks (id, analysis_id, content, content_type, chunk_index) VALUES \
         ('7a1d0c3e-2b4f-4e5a-8c6d-9e0f1a2b3c4e', '{id}', 'draft text', 'text', 0)"
    ));
    id.to_string()
}

#[test]
fn sync_leaves_rows_outside_its_scope_alone_and_keeps_references_to_chunks() {
    let dir = workdir();
    let (edited, edits) = edited_sample();
    let file = write_file(dir.path(), "edited.json", edited.clone());
    let db = TestDb::with_sample();
    let draft = insert_draft(&db);
    // A table of the team's own that points at chunks: a chunk updated in place keeps it.
    db.execute(
        "CREATE TABLE feedback (id serial PRIMARY KEY, chunk_id uuid NOT NULL REFERENCES chunks (id), note text)",
    );
    db.execute(&format!(
        "INSERT INTO feedback (chunk_id, note) VALUES ('{}', 'good answer')",
        edits.text_changed
    ));
    let drafts = || {
        db.digest_of(&[(
            "(SELECT a.*, c.id AS chunk, c.content FROM analyses a JOIN chunks c ON c.analysis_id = a.id WHERE a.status = 'draft')",
            "id",
        )])
    };
    let draft_rows = drafts();
    ok(&run(
        &db,
        dir.path(),
        &sync_args(&file, &dir.path().join("safety.json")),
        HASH,
    ));
    assert_eq!(drafts(), draft_rows, "the draft analysis is untouched");
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM analyses WHERE id = '{draft}'"
        )),
        1
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM feedback f JOIN chunks c ON c.id = f.chunk_id WHERE c.id = '{}'",
            edits.text_changed
        )),
        1,
        "the reference survives the update"
    );

    // Deleting a chunk that the team's table references is refused, and nothing changes.
    let mut without = edited;
    without["analyses"][0]["chunks"]
        .as_array_mut()
        .unwrap()
        .remove(0);
    without["queries"].as_array_mut().unwrap().retain(|q| {
        !q["expected_chunk_ids"]
            .as_array()
            .unwrap()
            .contains(&json!(edits.text_changed))
    });
    let without = write_file(dir.path(), "without.json", without);
    let before = db.full_digest();
    let refused = run(
        &db,
        dir.path(),
        &sync_args(&without, &dir.path().join("safety-2.json")),
        HASH,
    );
    assert_eq!(refused.status.code(), Some(1), "{}", stderr_of(&refused));
    assert!(
        stderr_of(&refused).contains("feedback"),
        "{}",
        stderr_of(&refused)
    );
    assert!(
        stderr_of(&refused).contains("rolled back"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(db.full_digest(), before, "all or nothing");
}

#[test]
fn a_file_without_a_status_filter_is_scoped_to_the_statuses_it_holds() {
    let dir = workdir();
    let mut file = sample();
    file["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("status_filter");
    let removed = file["analyses"].as_array_mut().unwrap().pop().unwrap();
    let removed: Vec<Value> = removed["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].clone())
        .collect();
    file["queries"].as_array_mut().unwrap().retain(|q| {
        !q["expected_chunk_ids"]
            .as_array()
            .unwrap()
            .iter()
            .any(|id| removed.contains(id))
    });
    let dropped = file["queries"].as_array_mut().unwrap().remove(0);
    let file = write_file(dir.path(), "no-filter.json", file);
    let db = TestDb::with_sample();
    let draft = insert_draft(&db);
    let synced = ok(&run(
        &db,
        dir.path(),
        &sync_args(&file, &dir.path().join("safety.json")),
        HASH,
    ));
    assert_eq!(synced["analyses_deleted"], json!(1), "{synced:#}");
    assert!(
        synced["scope"].as_str().unwrap().contains("statuses"),
        "{synced:#}"
    );
    assert!(
        synced["queries_deleted"].as_u64().unwrap() >= 1,
        "{synced:#}"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM queries WHERE id = '{}'",
            dropped["id"].as_str().unwrap()
        )),
        0,
        "a query the file no longer holds is deleted"
    );
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM analyses WHERE id = '{draft}'"
        )),
        1
    );
}

#[test]
fn a_sync_is_all_or_nothing_when_the_provider_fails() {
    let dir = workdir();
    let (edited, _) = edited_sample();
    let file = write_file(dir.path(), "edited.json", edited);
    let db = TestDb::migrated();
    let restorer = EmbedServer::start(Protocol::OpenAi);
    ok(&run(
        &db,
        dir.path(),
        &["restore", "--json", sample_path().to_str().unwrap()],
        &server_args(&restorer),
    ));
    let before = db.full_digest();
    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(1, Fault::Status(503, "gone", None));
    let failed = run(
        &db,
        dir.path(),
        &sync_args(&file, &dir.path().join("safety.json")),
        &server_args(&server),
    );
    assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
    assert!(
        stderr_of(&failed).contains("rolled back"),
        "{}",
        stderr_of(&failed)
    );
    assert_eq!(db.full_digest(), before, "all or nothing");
}

/// A small deterministic generator for the moments of the interruptions.
fn moments(seed: u64, n: usize, most_ms: u64) -> Vec<u64> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) % most_ms
        })
        .collect()
}

#[test]
fn ctrl_c_at_seeded_moments_of_a_sync_leaves_the_old_data_or_the_new() {
    let dir = workdir();
    let (edited, _) = edited_sample();
    let file = write_file(dir.path(), "edited.json", edited);
    let server = EmbedServer::start(Protocol::OpenAi);
    // Each request takes a while, so the sync spends seconds embedding.
    server.delay(Duration::from_millis(150));
    for (round, after_ms) in moments(13, 5, 1500).into_iter().enumerate() {
        let db = TestDb::migrated();
        ok(&run(
            &db,
            dir.path(),
            &["restore", "--json", sample_path().to_str().unwrap()],
            &server_args(&server),
        ));
        let before = db.full_digest();
        let mut args: Vec<String> =
            sync_args(&file, &dir.path().join(format!("safety-{round}.json")))
                .into_iter()
                .map(String::from)
                .collect();
        args.extend(server_args(&server).into_iter().map(String::from));
        args.extend(["--embed-concurrency".into(), "1".into()]);
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
            .current_dir(dir.path())
            .env("DATABASE_URL", &db.url)
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(after_ms));
        // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped yet.
        unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
        let output = child.wait_with_output().unwrap();
        match output.status.code() {
            Some(130) => {
                assert_eq!(
                    db.full_digest(),
                    before,
                    "round {round} at {after_ms} ms: rolled back"
                );
                assert!(
                    stderr_of(&output).contains("rolled back"),
                    "{}",
                    stderr_of(&output)
                );
            }
            Some(0) => {
                assert_holds(&db, dir.path(), &file);
            }
            other => panic!(
                "round {round} at {after_ms} ms: exit {other:?}\n{}",
                stderr_of(&output)
            ),
        };
    }
}

#[test]
fn a_large_sync_builds_the_index_once_and_ctrl_c_in_that_build_rolls_it_all_back() {
    let dir = workdir();
    let db = TestDb::migrated();
    golden(Some(&db), dir.path())
        .args(["generate", "--analyses", "1500"])
        .assert()
        .code(0);
    let backup = dir.path().join("generated.json");
    golden(Some(&db), dir.path())
        .args(["backup", "--status", "all", "--output"])
        .arg(&backup)
        .arg("--metadata")
        .arg(dir.path().join("generated-metadata.json"))
        .assert()
        .code(0);
    ok(&run(
        &db,
        dir.path(),
        &[
            "restore",
            "--json",
            "--replace",
            "--yes",
            "--safety-backup",
            dir.path().join("s0.json").to_str().unwrap(),
            backup.to_str().unwrap(),
        ],
        HASH,
    ));
    let mut file: Value = serde_json::from_slice(&fs::read(&backup).unwrap()).unwrap();
    for analysis in file["analyses"].as_array_mut().unwrap() {
        for chunk in analysis["chunks"].as_array_mut().unwrap() {
            let text = format!("{} (revised)", chunk["content"].as_str().unwrap());
            chunk["content"] = json!(text);
        }
    }
    let file = write_file(dir.path(), "revised.json", file);
    let plan = ok(&run(
        &db,
        dir.path(),
        &[
            "restore",
            "--sync",
            "--dry-run",
            "--json",
            file.to_str().unwrap(),
        ],
        HASH,
    ));
    assert_eq!(plan["index_rebuild"], json!(true), "{plan:#}");

    let before = db.full_digest();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .args(sync_args(&file, &dir.path().join("s1.json")))
        .args(HASH)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    let building = || {
        db.count(&format!(
            "SELECT count(*) FROM pg_stat_progress_create_index WHERE datname = '{}'",
            db.name
        )) > 0
    };
    while !building() {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync reached its index build"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped yet.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("rolled back"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(db.full_digest(), before, "all or nothing");
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'"),
        1,
        "the index is still there"
    );

    let synced = ok(&run(
        &db,
        dir.path(),
        &sync_args(&file, &dir.path().join("s2.json")),
        HASH,
    ));
    assert_eq!(synced["index_rebuilt"], json!(true));
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'"),
        1
    );
    assert_holds(&db, dir.path(), &file);
}

#[test]
fn a_sync_that_would_mix_two_models_is_refused_before_anything_is_written() {
    let dir = workdir();
    let (edited, _) = edited_sample();
    let file = write_file(dir.path(), "edited.json", edited);
    // Restored by the offline provider; synced through another model.
    let db = TestDb::with_sample();
    let before = db.full_digest();
    let server = EmbedServer::start(Protocol::OpenAi);
    let refused = run(
        &db,
        dir.path(),
        &sync_args(&file, &dir.path().join("safety.json")),
        &server_args(&server),
    );
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    assert!(
        stderr_of(&refused).contains("mix vectors of two models"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(db.full_digest(), before);
    assert_eq!(server.request_count(), 0);
    assert!(
        !dir.path().join("safety.json").exists(),
        "refused before the safety backup"
    );
}

/// A file of one analysis of `chunks` chunks, written field by field as the original tool
/// writes (its own fields, then its chunks, then `late` keys, then its artifact): more
/// chunks than a window holds, so the analysis spans windows of the file.
fn one_long_analysis(dir: &Path, name: &str, title: &str, chunks: usize, late: &str) -> PathBuf {
    let analysis = "3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1b00";
    let mut text = format!(
        "{{\"version\": \"1.0\", \"created_at\": \"2026-01-01T00:00:00.000000Z\", \"metadata\": {{\
         \"total_analyses\": 1, \"total_chunks\": {chunks}, \"total_artifacts\": 1, \"total_queries\": 0, \
         \"status_filter\": \"completed\"}}, \"analyses\": [{{\"id\": \"{analysis}\", \
         \"url\": \"https://docs.rs/tokio/latest/tokio/\", \"title\": \"{title}\", \
         \"content_type\": \"documentation\", \"status\": \"completed\", \
         \"created_at\": \"2025-01-01T00:00:00.000000Z\", \"updated_at\": \"2025-01-02T00:00:00.000000Z\", \
         \"chunks\": ["
    );
    for i in 0..chunks {
        if i > 0 {
            text.push_str(", ");
        }
        text.push_str(&format!(
            "{{\"id\": \"{}\", \"content\": \"Chunk {i} of a long page about tokio.\", \
             \"section_title\": null, \"section_path\": null, \"content_type\": \"text\", \"chunk_index\": {i}}}",
            uuid::Uuid::from_u128(0x3f2a_1b0c_0000_4000_8000_0000_0000_0000 + i as u128)
        ));
    }
    text.push_str(&format!(
        "]{late}, \"artifact\": {{\"id\": \"3f2a1b0c-9d8e-4f7a-8b6c-5d4e3f2a1bff\", \
         \"summary\": \"Tokio's front page.\", \"created_at\": \"2025-01-03T00:00:00.000000Z\"}}}}], \
         \"queries\": []}}"
    ));
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

#[test]
fn an_analysis_longer_than_a_window_is_updated_whole_and_keeps_the_keys_after_its_chunks() {
    let dir = workdir();
    let before = one_long_analysis(dir.path(), "before.json", "Tokio", 2500, "");
    let after = one_long_analysis(
        dir.path(),
        "after.json",
        "Tokio, the runtime",
        2500,
        ", \"reviewer\": \"maria\"",
    );
    // Updated: its head and its end are in different windows.
    let db = TestDb::migrated();
    ok(&run(
        &db,
        dir.path(),
        &["restore", "--json", before.to_str().unwrap()],
        HASH,
    ));
    let synced = ok(&run(
        &db,
        dir.path(),
        &sync_args(&after, &dir.path().join("safety.json")),
        HASH,
    ));
    assert_eq!(synced["analyses_updated"], json!(1), "{synced:#}");
    assert_eq!(synced["chunks_updated"], json!(0), "{synced:#}");
    assert_holds(&db, dir.path(), &after);
    // Inserted: the keys after its chunks come with its end, windows later.
    let fresh = TestDb::migrated();
    ok(&run(
        &fresh,
        dir.path(),
        &sync_args(&after, &dir.path().join("safety-2.json")),
        HASH,
    ));
    assert_eq!(
        fresh.count("SELECT count(*) FROM analyses WHERE extra = '{\"reviewer\": \"maria\"}'"),
        1
    );
    assert_holds(&fresh, dir.path(), &after);
}

#[test]
fn chunks_change_places_next_to_the_largest_index() {
    let dir = workdir();
    let mut file = sample();
    file["analyses"][0]["chunks"][2]["chunk_index"] = json!(i32::MAX);
    let start = write_file(dir.path(), "start.json", file.clone());
    let db = TestDb::migrated();
    ok(&run(
        &db,
        dir.path(),
        &["restore", "--json", start.to_str().unwrap()],
        HASH,
    ));
    let first = file["analyses"][0]["chunks"][0]["chunk_index"].clone();
    file["analyses"][0]["chunks"][0]["chunk_index"] = json!(i32::MAX);
    file["analyses"][0]["chunks"][2]["chunk_index"] = first;
    let swapped = write_file(dir.path(), "swapped.json", file);
    let synced = ok(&run(
        &db,
        dir.path(),
        &sync_args(&swapped, &dir.path().join("safety.json")),
        HASH,
    ));
    assert_eq!(synced["chunks_updated"], json!(2), "{synced:#}");
    assert_holds(&db, dir.path(), &swapped);
}

#[test]
fn a_query_that_expects_no_chunk_is_left_to_a_file_of_every_status() {
    let dir = workdir();
    let db = TestDb::with_sample();
    db.execute("INSERT INTO queries (id, query, expected_chunk_ids) VALUES ('q-open', 'an open question', '{}')");
    let file = write_file(dir.path(), "sample.json", sample());
    let synced = ok(&run(
        &db,
        dir.path(),
        &sync_args(&file, &dir.path().join("safety.json")),
        HASH,
    ));
    assert_eq!(synced["queries_deleted"], json!(0), "{synced:#}");
    assert_eq!(
        db.count("SELECT count(*) FROM queries WHERE id = 'q-open'"),
        1
    );
}
