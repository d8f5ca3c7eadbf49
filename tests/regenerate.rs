//! `golden regenerate-embeddings` and the embedding cache: resumable re-embedding, dimension
//! migration that is all or nothing, zero requests for an unchanged reset.

mod common;

use std::fs;

use common::embed_server::{EmbedServer, Fault, Protocol};
use common::{golden, json_of, problems_of, sample_path, stderr_of, workdir, TestDb};
use serde_json::{json, Value};

fn run<S: AsRef<str>>(db: &TestDb, args: &[S]) -> std::process::Output {
    let dir = workdir();
    golden(Some(db), dir.path())
        .arg("--json")
        .args(args.iter().map(AsRef::as_ref))
        .output()
        .unwrap()
}

/// A regeneration through `server` in windows of 16 chunks, one request at a time, without
/// retries: a server failing after n requests stops it at a known point.
fn windowed(server: &EmbedServer, extra: &[&str]) -> Vec<String> {
    let mut argv: Vec<String> = [
        "regenerate-embeddings",
        "--embed-provider",
        "openai",
        "--embed-url",
        &server.url,
        "--embed-batch-size",
        "16",
        "--embed-concurrency",
        "1",
        "--embed-max-retries",
        "0",
    ]
    .iter()
    .map(|arg| arg.to_string())
    .collect();
    argv.extend(extra.iter().map(|arg| arg.to_string()));
    argv
}

fn ok(output: &std::process::Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    json_of(output)
}

fn sample_arg() -> String {
    sample_path().to_str().unwrap().to_string()
}

fn column_type(db: &TestDb) -> i64 {
    db.count("SELECT atttypmod FROM pg_attribute WHERE attrelid = 'chunks'::regclass AND attname = 'embedding'")
}

fn has_vector_index(db: &TestDb) -> bool {
    db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'") == 1
}

#[test]
fn a_repeated_reset_of_unchanged_content_makes_no_request_and_changes_miss() {
    let server = EmbedServer::start(Protocol::OpenAi);
    let db = TestDb::migrated();
    let reset = |file: &str, extra: &[&str]| {
        let mut args = vec![
            "restore",
            "--replace",
            "--yes",
            "--embed-provider",
            "openai",
            "--embed-url",
            &server.url,
            file,
        ];
        args.extend_from_slice(extra);
        ok(&run(&db, &args))
    };
    let first = reset(&sample_arg(), &[]);
    assert_eq!(first["embeddings_computed"], 188);
    let requests = server.request_count();
    assert!(requests > 0);

    let second = reset(&sample_arg(), &[]);
    assert_eq!(second["embedding_requests"], 0);
    assert_eq!(second["embeddings_reused"], 188);
    assert_eq!(second["embeddings_computed"], 0);
    assert_eq!(
        server.request_count(),
        requests,
        "no request reached the provider"
    );

    // One changed text misses; the rest hit.
    let mut edited: Value = serde_json::from_slice(&fs::read(sample_path()).unwrap()).unwrap();
    edited["analyses"][0]["chunks"][0]["content"] = json!("A freshly rewritten paragraph.");
    edited["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("checksum");
    let dir = workdir();
    let edited_path = dir.path().join("edited.json");
    fs::write(&edited_path, serde_json::to_vec(&edited).unwrap()).unwrap();
    let third = reset(edited_path.to_str().unwrap(), &[]);
    assert_eq!(
        (
            third["embeddings_computed"].as_u64(),
            third["embeddings_reused"].as_u64()
        ),
        (Some(1), Some(187))
    );

    // Another model misses everything.
    let other = reset(&sample_arg(), &["--embed-model", "text-embedding-3-large"]);
    assert_eq!(other["embeddings_computed"], 188);

    // The cache survives --replace; prune drops what no chunk uses any more.
    let stats = ok(&run(&db, &["cache", "stats"]));
    assert_eq!(stats["entries"], 188 + 1 + 188);
    let pruned = ok(&run(&db, &["cache", "prune"]));
    assert_eq!(pruned["removed"], 189);
    assert_eq!(pruned["kept"], 188);
    let none = reset(&sample_arg(), &["--embed-model", "text-embedding-3-large"]);
    assert_eq!(none["embedding_requests"], 0);

    // --embed-no-cache asks the provider whatever the cache holds.
    let uncached = reset(
        &sample_arg(),
        &[
            "--embed-model",
            "text-embedding-3-large",
            "--embed-no-cache",
        ],
    );
    assert_eq!(uncached["embeddings_computed"], 188);
}

#[test]
fn an_interrupted_regeneration_continues_where_it_stopped() {
    let db = TestDb::with_sample();
    let before = db.digest();
    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(3, Fault::Status(500, "down", None));
    let argv = windowed(&server, &["--commit-every", "10"]);
    let failed = run(&db, &argv);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
    assert_eq!(db.digest(), before, "chunks untouched until the swap");
    let pending = db.count("SELECT count(*) FROM pending_embeddings");
    assert_eq!(pending, 48, "three windows of 16 were saved");

    server.heal();
    let sent_before = server.request_count();
    let resumed = ok(&run(&db, &argv));
    assert_eq!(resumed["chunks_embedded"], 188);
    assert_eq!(resumed["model"], "text-embedding-3-small");
    let texts_sent: usize = server.requests()[sent_before..]
        .iter()
        .map(|r| r.body["input"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        texts_sent as i64,
        188 - pending,
        "only the chunks not yet embedded"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE embedding_model = 'text-embedding-3-small'"),
        188
    );
    assert_eq!(db.count("SELECT count(*) FROM pending_embeddings"), 0);
    assert!(has_vector_index(&db));

    // Everything is now embedded by the target model: nothing to do.
    let again = ok(&run(&db, &argv));
    assert_eq!(
        (
            again["chunks_embedded"].as_u64(),
            again["embedding_requests"].as_u64()
        ),
        (Some(0), Some(0))
    );
}

#[test]
fn a_dimension_migration_is_all_or_nothing() {
    let db = TestDb::with_sample();
    let before = db.digest();
    assert_eq!(column_type(&db), 1024);
    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(4, Fault::Status(503, "gone", None));
    let argv = windowed(&server, &["--embed-dims", "1536"]);
    let failed = run(&db, &argv);
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(column_type(&db), 1024, "the column keeps its dimension");
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE vector_dims(embedding) = 1024"),
        188
    );
    assert_eq!(db.digest(), before, "every 1024-dimension vector in place");
    assert!(has_vector_index(&db), "the old index in place");

    // A restore with the new size is refused while the column has the old one, with the way out.
    let refused = run(
        &db,
        &[
            "restore",
            "--embed-provider",
            "hash",
            "--embed-dims",
            "1536",
            &sample_arg(),
        ],
    );
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr_of(&refused).contains("golden regenerate-embeddings --embed-dims 1536"));

    server.heal();
    let done = ok(&run(&db, &argv));
    assert_eq!(done["dims_changed_from"], 1024);
    assert_eq!(done["dims"], 1536);
    assert_eq!(column_type(&db), 1536);
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE vector_dims(embedding) = 1536"),
        188
    );
    assert!(has_vector_index(&db), "the index is rebuilt");
    db.assert_holds_the_sample();
}

#[test]
fn a_resumed_migration_re_embeds_chunks_edited_meanwhile_and_keeps_every_added_column() {
    let db = TestDb::with_sample();
    // A team's own column: the swap writes every row back, so it must carry it over.
    db.execute("ALTER TABLE chunks ADD COLUMN reviewed boolean NOT NULL DEFAULT false");
    db.execute("UPDATE chunks SET reviewed = true WHERE chunk_index = 0");
    let reviewed = db.count("SELECT count(*) FROM chunks WHERE reviewed");
    assert!(reviewed > 0);
    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(2, Fault::Status(503, "gone", None));
    let argv = windowed(&server, &["--embed-dims", "512", "--commit-every", "16"]);
    let failed = run(&db, &argv);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
    assert_eq!(db.count("SELECT count(*) FROM pending_embeddings"), 32);

    // A chunk whose new vector is already saved is edited before the run resumes.
    let rewritten = "Rewritten while the regeneration was stopped.";
    db.execute(&format!(
        "UPDATE chunks SET content = '{rewritten}' \
         WHERE id = (SELECT chunk_id FROM pending_embeddings ORDER BY chunk_id LIMIT 1)"
    ));
    server.heal();
    let sent_before = server.request_count();
    let done = ok(&run(&db, &argv));
    assert_eq!(done["chunks_embedded"], 188);
    assert_eq!(done["dims_changed_from"], 1024);
    let texts_sent: Vec<String> = server.requests()[sent_before..]
        .iter()
        .flat_map(|r| r.body["input"].as_array().unwrap().clone())
        .map(|text| text.as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        texts_sent.len(),
        188 - 32 + 1,
        "the rest, and the edited chunk again"
    );
    assert!(texts_sent.iter().any(|text| text == rewritten));
    assert_eq!(
        db.count(&format!(
            "SELECT count(*) FROM chunks WHERE content = '{rewritten}' AND vector_dims(embedding) = 512"
        )),
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE vector_dims(embedding) = 512"),
        188
    );
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE reviewed AND chunk_index = 0"),
        reviewed,
        "the added column kept its values"
    );
    assert!(has_vector_index(&db));
}

#[test]
fn a_table_referencing_chunks_keeps_its_rows_through_a_dimension_migration() {
    let db = TestDb::with_sample();
    // A team's table hanging on the chunks: they cannot be truncated and written back, so the
    // vectors are updated in place.
    db.execute("CREATE TABLE reviews (chunk_id uuid NOT NULL REFERENCES chunks (id) ON DELETE CASCADE, verdict text)");
    db.execute("INSERT INTO reviews SELECT id, 'relevant' FROM chunks WHERE chunk_index = 0");
    let reviews = db.count("SELECT count(*) FROM reviews");
    assert!(reviews > 0);
    let output = run(
        &db,
        &[
            "regenerate-embeddings",
            "--embed-provider",
            "hash",
            "--embed-dims",
            "256",
        ],
    );
    let done = ok(&output);
    assert!(
        stderr_of(&output).contains("reviews references chunks: updating the vectors in place"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(done["chunks_embedded"], 188);
    assert_eq!(done["dims_changed_from"], 1024);
    assert_eq!(column_type(&db), 256);
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE vector_dims(embedding) = 256"),
        188
    );
    assert_eq!(db.count("SELECT count(*) FROM reviews"), reviews);
    assert!(has_vector_index(&db));
    assert_eq!(db.count("SELECT count(*) FROM pending_embeddings"), 0);
}

#[test]
fn only_missing_fills_gaps_in_place_and_verify_reports_mixed_models() {
    let db = TestDb::with_sample();
    db.execute("UPDATE chunks SET embedding = NULL, embedding_model = NULL WHERE chunk_index = 3");
    let gaps = db.count("SELECT count(*) FROM chunks WHERE embedding IS NULL");
    assert!(gaps > 0);
    let untouched = db.count("SELECT count(*) FROM chunks WHERE embedding IS NOT NULL");

    let dir = workdir();
    let verify = golden(Some(&db), dir.path())
        .args(["verify", "--json", "--against-db", &sample_arg()])
        .output()
        .unwrap();
    assert_eq!(verify.status.code(), Some(3));
    assert_eq!(
        problems_of(&json_of(&verify))
            .iter()
            .filter(|(_, p)| p.contains("has no embedding"))
            .count() as i64,
        gaps
    );

    let filled = ok(&run(
        &db,
        &[
            "regenerate-embeddings",
            "--only-missing",
            "--embed-provider",
            "hash",
        ],
    ));
    assert_eq!(filled["chunks_embedded"], gaps);
    assert_eq!(filled["chunks_skipped"], untouched);
    assert_eq!(
        db.count("SELECT count(*) FROM chunks WHERE embedding IS NULL"),
        0
    );

    db.execute("UPDATE chunks SET embedding_model = 'old-model' WHERE id IN (SELECT id FROM chunks ORDER BY id LIMIT 2)");
    let mixed = golden(Some(&db), dir.path())
        .args(["verify", "--json", "--against-db", &sample_arg()])
        .output()
        .unwrap();
    assert_eq!(mixed.status.code(), Some(3));
    let problems = problems_of(&json_of(&mixed));
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(problems.iter().all(|(_, p)| p
        .contains("embedded by model old-model while most chunks are embedded by golden-hash-v1")));
}
