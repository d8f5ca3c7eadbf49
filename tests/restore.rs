//! `golden restore`: append that never duplicates and resumes, replace that is all or
//! nothing, dry runs and bad files that write nothing.

mod common;

use std::fs;
use std::time::Duration;

use common::embed_server::{EmbedServer, Fault, Protocol};
use common::{golden, json_of, sample_path, stderr_of, stdout_of, workdir, TestDb};
use serde_json::{json, Value};

fn sample_arg() -> String {
    sample_path().to_str().unwrap().to_string()
}

/// `golden restore --json <args>` with the built-in offline provider unless overridden.
fn restore(db: &TestDb, args: &[&str]) -> std::process::Output {
    let dir = workdir();
    let mut cmd = golden(Some(db), dir.path());
    cmd.args(["restore", "--json"]).args(args);
    if !args.contains(&"--embed-provider") {
        cmd.args(["--embed-provider", "hash"]);
    }
    cmd.output().unwrap()
}

fn restore_from(db: &TestDb, server: &EmbedServer, args: &[&str]) -> std::process::Output {
    let mut all = vec![
        "--embed-provider",
        "openai",
        "--embed-url",
        &server.url,
        "--embed-max-retries",
        "0",
    ];
    all.extend_from_slice(args);
    restore(db, &all)
}

fn ok(output: &std::process::Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    json_of(output)
}

#[test]
fn append_restores_everything_and_a_second_run_changes_nothing() {
    let db = TestDb::migrated();
    let first = ok(&restore(&db, &[&sample_arg()]));
    for (key, value) in [
        ("analyses_inserted", 43),
        ("chunks_inserted", 188),
        ("artifacts_inserted", 43),
        ("analyses_skipped", 0),
        ("embeddings_computed", 188),
        ("embeddings_reused", 0),
    ] {
        assert_eq!(first[key], value, "{key}");
    }
    assert_eq!(first["replaced"], false);
    assert_eq!(first["safety_backup"], Value::Null);
    assert_eq!(db.count("SELECT count(*) FROM chunks WHERE embedding_model = 'golden-hash-v1' AND vector_dims(embedding) = 1024"), 188);
    db.assert_holds_the_sample();

    let digest = db.digest();
    let second = ok(&restore(&db, &[&sample_arg()]));
    for (key, value) in [
        ("analyses_inserted", 0),
        ("chunks_inserted", 0),
        ("artifacts_inserted", 0),
        ("analyses_skipped", 43),
        ("chunks_skipped", 188),
        ("artifacts_skipped", 43),
        ("embedding_requests", 0),
        ("embeddings_computed", 0),
    ] {
        assert_eq!(second[key], value, "{key}");
    }
    assert_eq!(db.digest(), digest, "the second run changed nothing");
}

#[test]
fn a_restore_that_failed_half_way_finishes_when_run_again_and_embeds_only_what_is_missing() {
    let server = EmbedServer::start(Protocol::OpenAi);
    // Requests of 8 chunks, one at a time: the first window of ten analyses needs about six.
    server.fail_after(8, Fault::Status(500, "down", None));
    let db = TestDb::migrated();
    // The batch path, whose batches commit as they go (into an empty database with its vector
    // index the append runs in one transaction: tests/bulk_append.rs).
    db.drop_vector_index();
    let args = [
        "--embed-batch-size",
        "8",
        "--embed-concurrency",
        "1",
        &sample_arg(),
    ];
    let failed = restore_from(&db, &server, &args);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
    assert!(stderr_of(&failed).contains("HTTP 500"));
    let committed_analyses = db.count("SELECT count(*) FROM analyses");
    let committed_chunks = db.count("SELECT count(*) FROM chunks");
    assert!(
        (10..43).contains(&committed_analyses),
        "{committed_analyses} analyses committed"
    );
    assert_eq!(
        committed_analyses % 10,
        0,
        "whole batches of ten are committed"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE embedding IS NULL"),
        0,
        "no chunk without its embedding"
    );

    server.heal();
    let before = server.request_count();
    let resumed = ok(&restore_from(&db, &server, &args));
    assert_eq!(resumed["analyses_inserted"], 43 - committed_analyses);
    assert_eq!(resumed["analyses_skipped"], committed_analyses);
    assert_eq!(
        resumed["embeddings_computed"],
        188 - committed_chunks,
        "only the missing chunks are embedded"
    );
    let texts_sent: usize = server.requests()[before..]
        .iter()
        .map(|r| r.body["input"].as_array().unwrap().len())
        .sum();
    assert_eq!(texts_sent as i64, 188 - committed_chunks);
    assert_eq!(resumed["bulk_load"], false);
    db.assert_holds_the_sample();
}

#[test]
fn replace_swaps_the_dataset_after_a_safety_backup() {
    let db = TestDb::migrated();
    ok(&restore(&db, &[&sample_arg()]));
    db.execute(
        "INSERT INTO analyses (id, url, content_type, status) VALUES
         ('bbbbbbbb-0000-4000-8000-000000000001', 'https://docs.rs/stray', 'article', 'draft')",
    );
    db.execute("UPDATE artifacts SET summary = 'stale' WHERE id IN (SELECT id FROM artifacts ORDER BY id LIMIT 1)");

    let dir = workdir();
    let output = golden(Some(&db), dir.path())
        .args([
            "restore",
            "--json",
            "--replace",
            "--embed-provider",
            "hash",
            &sample_arg(),
        ])
        .output()
        .unwrap();
    let summary = ok(&output);
    assert_eq!(summary["replaced"], true);
    assert_eq!(
        summary["deleted"],
        json!({"analyses": 44, "chunks": 188, "artifacts": 43, "queries": 48})
    );
    assert_eq!(summary["analyses_inserted"], 43);
    assert_eq!(summary["chunks_inserted"], 188);

    // The safety backup holds the data as it was, drafts included.
    let safety = dir.path().join(
        summary["safety_backup"]
            .as_str()
            .expect("a safety backup path"),
    );
    let text = fs::read_to_string(&safety).unwrap();
    assert!(text.contains("bbbbbbbb-0000-4000-8000-000000000001") && text.contains("\"stale\""));
    golden(None, dir.path())
        .args(["verify", safety.to_str().unwrap()])
        .assert()
        .code(0);

    // The database now holds exactly the file, with its index.
    assert_eq!(
        db.count("SELECT count(*) FROM analyses WHERE id = 'bbbbbbbb-0000-4000-8000-000000000001'"),
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM artifacts WHERE summary = 'stale'"),
        0
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'"),
        1
    );
    db.assert_holds_the_sample();
}

#[test]
fn replace_that_fails_part_way_leaves_the_previous_data_exactly_as_it_was() {
    let db = TestDb::migrated();
    ok(&restore(&db, &[&sample_arg()]));
    db.execute("UPDATE chunks SET content = content || ' (local edit)' WHERE chunk_index = 2");
    let before = db.digest();

    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(3, Fault::Status(503, "gone", None));
    let failed = restore_from(
        &db,
        &server,
        &[
            "--replace",
            "--yes",
            "--embed-batch-size",
            "16",
            "--embed-concurrency",
            "1",
            &sample_arg(),
        ],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
    assert_eq!(db.digest(), before, "all or nothing");
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'"),
        1
    );
}

#[test]
fn dry_run_prints_the_plan_and_writes_nothing() {
    let db = TestDb::migrated();
    ok(&restore(&db, &[&sample_arg()]));
    db.execute("DELETE FROM analyses WHERE id IN (SELECT id FROM analyses ORDER BY id LIMIT 3)");
    db.execute("DELETE FROM queries WHERE id IN (SELECT id FROM queries ORDER BY id LIMIT 2)");
    let missing_chunks = 188 - db.count("SELECT count(*) FROM chunks");
    let before = db.digest();

    let plan = ok(&restore(&db, &["--dry-run", &sample_arg()]));
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["analyses_to_insert"], 3);
    assert_eq!(plan["analyses_to_skip"], 40);
    assert_eq!(plan["chunks_to_insert"], missing_chunks);
    assert_eq!(plan["embeddings_needed"], missing_chunks);
    // Their vectors are in the cache since the first restore: nothing to compute.
    assert_eq!(plan["embeddings_to_compute"], 0);
    assert_eq!(plan["embeddings_reused"], missing_chunks);
    assert_eq!(plan["embedding_requests_needed"], 0);
    let uncached = ok(&restore(
        &db,
        &["--dry-run", "--embed-no-cache", &sample_arg()],
    ));
    assert_eq!(uncached["embeddings_to_compute"], missing_chunks);
    assert_eq!(uncached["embedding_requests_needed"], 1);
    assert_eq!(
        (
            plan["queries_to_insert"].as_u64(),
            plan["queries_to_skip"].as_u64()
        ),
        (Some(2), Some(46))
    );
    assert_eq!(db.digest(), before);

    let replace_plan = ok(&restore(&db, &["--dry-run", "--replace", &sample_arg()]));
    assert_eq!(replace_plan["rows_to_delete"]["analyses"], 40);
    assert_eq!(replace_plan["analyses_to_insert"], 43);
    assert_eq!(replace_plan["rows_to_delete"]["queries"], 46);
    assert_eq!(replace_plan["queries_to_insert"], 48);
    assert_eq!(db.digest(), before);

    let dir = workdir();
    let human = golden(Some(&db), dir.path())
        .args(["restore", "--dry-run", &sample_arg()])
        .output()
        .unwrap();
    assert_eq!(human.status.code(), Some(0));
    assert!(
        stdout_of(&human).contains("analyses  3 to insert, 40 to skip"),
        "{}",
        stdout_of(&human)
    );
    assert!(stdout_of(&human).contains("queries   2 to insert, 46 to skip"));
    assert!(stdout_of(&human).contains("no provider configured"));
    assert!(stdout_of(&human).contains("nothing was written"));
}

#[test]
fn a_bad_file_or_a_bad_configuration_writes_nothing() {
    let db = TestDb::migrated();
    ok(&restore(&db, &[&sample_arg()]));
    let before = db.digest();
    let dir = workdir();

    let mut bad: Value = serde_json::from_slice(&fs::read(sample_path()).unwrap()).unwrap();
    bad["analyses"][3]["chunks"][0]["id"] = bad["analyses"][2]["chunks"][0]["id"].clone();
    bad["analyses"][40]["url"] = json!("http://localhost/doc");
    let bad_path = dir.path().join("bad.json");
    fs::write(&bad_path, serde_json::to_vec(&bad).unwrap()).unwrap();
    for args in [
        vec![bad_path.to_str().unwrap()],
        vec!["--replace", "--yes", bad_path.to_str().unwrap()],
    ] {
        let output = restore(&db, &args);
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("problem: ")
                && stderr.contains("duplicate chunk id")
                && stderr.contains("localhost"),
            "{stderr}"
        );
        assert!(
            stderr.contains("2 problems above); nothing was written"),
            "{stderr}"
        );
    }

    let truncated = dir.path().join("truncated.json");
    fs::write(&truncated, &fs::read(sample_path()).unwrap()[..5000]).unwrap();
    assert_eq!(
        restore(&db, &[truncated.to_str().unwrap()]).status.code(),
        Some(2)
    );

    // A provider of another size than the column's: stop before writing, say how to fix it.
    let mismatch = restore(
        &db,
        &["--replace", "--yes", "--embed-dims", "768", &sample_arg()],
    );
    assert_eq!(mismatch.status.code(), Some(2));
    assert!(
        stderr_of(&mismatch).contains("1024 dimensions")
            && stderr_of(&mismatch).contains("--embed-dims 1024")
    );

    // No provider at all.
    let none = golden(Some(&db), dir.path())
        .args(["restore", &sample_arg()])
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr_of(&none).contains("no embedding provider is configured"));
    assert!(stderr_of(&none).contains("GOLDEN_EMBED_PROVIDER"));

    assert_eq!(db.digest(), before);
}

#[test]
fn files_of_the_original_tool_restore() {
    let text = r#"{"version": "1.0", "created_at": "2025-12-19 10:30:00.123456+00:00",
      "metadata": {"total_analyses": 1, "total_chunks": 2, "total_artifacts": 1},
      "analyses": [
        {"id": "7d1c1a52-5f0e-4a5e-9d39-0a6f7f0b8a01", "url": "https://www.postgresql.org/docs/current/mvcc.html",
         "title": "Concurrency Control \u2014 MVCC", "content_type": "article", "status": "completed",
         "created_at": "2025-12-19 10:30:00.123456+00:00", "updated_at": "2025-12-19 10:31:00+00:00",
         "chunks": [
           {"id": "3b8e5c1e-2a44-4c2e-bb0e-8f8a1d0c9e02", "content": "Caf\u00e9 snapshots", "section_title": null,
            "section_path": null, "content_type": "article", "chunk_index": 1},
           {"id": "3b8e5c1e-2a44-4c2e-bb0e-8f8a1d0c9e03", "content": "Isolation levels", "section_title": "Levels",
            "section_path": "MVCC > Levels", "content_type": "article", "chunk_index": 0, "tokens": 3}],
         "artifact": {"id": "c2f5a0de-6b7e-4f0e-9a55-2d3c4b5a6f03", "summary": "MVCC in PostgreSQL.",
                      "created_at": "2025-12-19 10:32:00+00:00"}}]}"#;
    let dir = workdir();
    let path = dir.path().join("seed.json");
    fs::write(&path, text).unwrap();
    let db = TestDb::migrated();
    let summary = ok(&restore(&db, &[path.to_str().unwrap()]));
    assert_eq!(
        (
            summary["analyses_inserted"].as_u64(),
            summary["chunks_inserted"].as_u64()
        ),
        (Some(1), Some(2))
    );
    assert_eq!(db.count("SELECT count(*) FROM analyses WHERE title = 'Concurrency Control — MVCC' AND created_at = '2025-12-19 10:30:00.123456+00'"), 1);

    golden(Some(&db), dir.path())
        .args(["backup", "--output", "ours.json"])
        .assert()
        .code(0);
    let ours: Value =
        serde_json::from_slice(&fs::read(dir.path().join("ours.json")).unwrap()).unwrap();
    let analysis = &ours["analyses"][0];
    assert_eq!(analysis["created_at"], "2025-12-19T10:30:00.123456Z");
    assert_eq!(
        analysis["chunks"][0]["content"], "Isolation levels",
        "chunks by chunk_index"
    );
    assert_eq!(
        analysis["artifact"]["created_at"],
        "2025-12-19T10:32:00.000000Z"
    );
}

#[test]
fn ctrl_c_rolls_back_a_replace_and_exits_130() {
    let db = TestDb::migrated();
    ok(&restore(&db, &[&sample_arg()]));
    let before = db.digest();
    let server = EmbedServer::start(Protocol::OpenAi);
    server.delay(Duration::from_millis(300));
    let dir = workdir();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .args([
            "restore",
            "--replace",
            "--yes",
            "--embed-provider",
            "openai",
            "--embed-url",
            &server.url,
        ])
        .args([
            "--embed-batch-size",
            "8",
            "--embed-concurrency",
            "1",
            &sample_arg(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the load is under way (a few requests in), then press Ctrl-C.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while server.request_count() < 3 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("interrupted"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(db.digest(), before, "rolled back");
}

#[test]
fn append_skips_rows_that_clash_with_rows_another_tool_wrote() {
    let db = TestDb::migrated();
    ok(&restore(&db, &[&sample_arg()]));
    // Another tool re-chunked one analysis: same (analysis_id, chunk_index), new chunk id.
    db.execute("UPDATE chunks SET id = gen_random_uuid() WHERE id = (SELECT id FROM chunks ORDER BY id LIMIT 1)");
    let again = ok(&restore(&db, &[&sample_arg()]));
    assert_eq!(again["chunks_inserted"], 0);
    assert_eq!(again["chunks_skipped"], 188);
    assert_eq!(db.count("SELECT count(*) FROM chunks"), 188);
}
