//! `golden evaluate` and the golden queries: metrics worked out by hand, thresholds and exit
//! codes, queries through backup and restore, the index against an exact search.

mod common;

use std::fs;

use common::{golden, json_of, problems_of, sample_path, stderr_of, workdir, TestDb};
use serde_json::{json, Value};

fn run(db: &TestDb, dir: &std::path::Path, args: &[&str]) -> std::process::Output {
    golden(Some(db), dir).args(args).output().unwrap()
}

fn evaluate(db: &TestDb, extra: &[&str]) -> (i32, Value) {
    let dir = workdir();
    let mut args = vec!["evaluate", "--json", "--embed-provider", "hash"];
    args.extend_from_slice(extra);
    let output = run(db, dir.path(), &args);
    (output.status.code().unwrap(), json_of(&output))
}

/// Three chunks whose words do not overlap, and queries whose rankings follow by hand:
/// "alpha beta" finds A first; "delta epsilon eta" shares two words (and a word pair) with B
/// and one with C, so it ranks B, C, A; "kappa lambda" has no expected chunk.
fn hand_built_db() -> TestDb {
    let file = json!({
        "version": "1.0",
        "metadata": {"total_analyses": 1, "total_chunks": 3, "total_artifacts": 0, "total_queries": 3},
        "analyses": [{
            "id": "aaaaaaaa-0000-4000-8000-000000000001", "url": "https://docs.rs/greek", "title": "Greek",
            "content_type": "article", "status": "completed",
            "created_at": "2025-01-01T00:00:00Z", "updated_at": "2025-01-01T00:00:00Z",
            "chunks": [
                {"id": "cccccccc-0000-4000-8000-00000000000a", "content": "alpha beta gamma", "section_title": "A",
                 "section_path": null, "content_type": "article", "chunk_index": 0},
                {"id": "cccccccc-0000-4000-8000-00000000000b", "content": "delta epsilon zeta", "section_title": "B",
                 "section_path": null, "content_type": "article", "chunk_index": 1},
                {"id": "cccccccc-0000-4000-8000-00000000000c", "content": "eta theta iota", "section_title": "C",
                 "section_path": null, "content_type": "article", "chunk_index": 2}
            ],
            "artifact": null
        }],
        "queries": [
            {"id": "q1", "query": "alpha beta", "expected_chunk_ids": ["cccccccc-0000-4000-8000-00000000000a"],
             "category": "first", "difficulty": "easy"},
            {"id": "q2", "query": "delta epsilon eta", "expected_chunk_ids": ["cccccccc-0000-4000-8000-00000000000c"],
             "category": "second", "difficulty": "hard"},
            {"id": "q3", "query": "kappa lambda", "expected_chunk_ids": []}
        ]
    });
    let dir = workdir();
    let path = dir.path().join("greek.json");
    fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let db = TestDb::migrated();
    let restored = run(
        &db,
        dir.path(),
        &[
            "restore",
            "--embed-provider",
            "hash",
            path.to_str().unwrap(),
        ],
    );
    assert_eq!(restored.status.code(), Some(0), "{}", stderr_of(&restored));
    db
}

fn close(actual: &Value, expected: f64) -> bool {
    (actual.as_f64().unwrap() - expected).abs() < 1e-9
}

#[test]
fn metrics_match_the_values_worked_out_by_hand() {
    let db = hand_built_db();
    let (code, report) = evaluate(&db, &["--k", "3"]);
    assert_eq!(code, 0);
    assert_eq!(
        (report["queries"].as_u64(), report["scored"].as_u64()),
        (Some(3), Some(2))
    );
    let overall = &report["overall"];
    // q1: A at rank 1. q2: C at rank 2 of B, C, A.
    let ndcg_q2 = 1.0 / 3f64.log2();
    assert!(close(&overall["recall"], 1.0));
    assert!(close(&overall["precision"], 1.0 / 3.0));
    assert!(close(&overall["mrr"], (1.0 + 0.5) / 2.0));
    assert!(close(&overall["ndcg"], (1.0 + ndcg_q2) / 2.0));
    assert!(close(&overall["hit_rate"], 1.0));
    assert!(close(&report["by_category"]["second"]["mrr"], 0.5));
    assert!(close(&report["by_difficulty"]["easy"]["recall"], 1.0));

    // At k = 1, q2 retrieves only B.
    let (_, at_one) = evaluate(&db, &["--k", "1"]);
    for metric in ["recall", "precision", "mrr", "ndcg", "hit_rate"] {
        assert!(
            close(&at_one["overall"][metric], 0.5),
            "{metric}: {}",
            at_one["overall"][metric]
        );
    }
    let worst = at_one["worst"].as_array().unwrap();
    assert_eq!(worst.len(), 1);
    assert_eq!(worst[0]["id"], "q2");
    assert_eq!(
        worst[0]["retrieved"][0]["id"],
        "cccccccc-0000-4000-8000-00000000000b"
    );
}

#[test]
fn thresholds_make_evaluate_a_gate() {
    let db = hand_built_db();
    assert_eq!(
        evaluate(
            &db,
            &["--k", "3", "--min-recall", "1.0", "--min-mrr", "0.75"]
        )
        .0,
        0
    );
    let (code, report) = evaluate(&db, &["--k", "3", "--min-mrr", "0.8"]);
    assert_eq!((code, report["passed"].as_bool()), (3, Some(false)));
    assert_eq!(evaluate(&db, &["--min-recall", "1.01"]).0, 3);

    let dir = workdir();
    let human = run(
        &db,
        dir.path(),
        &[
            "evaluate",
            "--embed-provider",
            "hash",
            "--min-recall",
            "1.01",
        ],
    );
    assert_eq!(human.status.code(), Some(3));
    assert!(
        stderr_of(&human).contains("Recall@5 1.000 is below 1.01"),
        "{}",
        stderr_of(&human)
    );
    assert!(String::from_utf8_lossy(&human.stdout).contains("overall"));

    let empty = TestDb::migrated();
    let none = run(
        &empty,
        dir.path(),
        &["evaluate", "--embed-provider", "hash"],
    );
    assert_eq!(none.status.code(), Some(2));
    assert!(stderr_of(&none).contains("no golden queries"));
}

#[test]
fn queries_survive_backup_and_restore_in_both_modes() {
    let dir = workdir();
    let first = TestDb::migrated();
    let sample = sample_path();
    let restored = run(
        &first,
        dir.path(),
        &[
            "restore",
            "--json",
            "--embed-provider",
            "hash",
            sample.to_str().unwrap(),
        ],
    );
    assert_eq!(json_of(&restored)["queries_inserted"], 48);
    assert_eq!(first.count("SELECT count(*) FROM queries"), 48);
    assert_eq!(
        first.count("SELECT count(*) FROM queries WHERE cardinality(expected_chunk_ids) = 0"),
        4
    );

    run(&first, dir.path(), &["backup", "--output", "one.json"]);
    let second = TestDb::migrated();
    let replaced = run(
        &second,
        dir.path(),
        &[
            "restore",
            "--json",
            "--replace",
            "--yes",
            "--embed-provider",
            "hash",
            "one.json",
        ],
    );
    assert_eq!(json_of(&replaced)["queries_inserted"], 48);
    run(&second, dir.path(), &["backup", "--output", "two.json"]);
    let body = |name: &str| {
        let text = fs::read_to_string(dir.path().join(name)).unwrap();
        text.lines()
            .filter(|line| !line.starts_with("  \"created_at\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(body("one.json"), body("two.json"));
    let file: Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("two.json")).unwrap()).unwrap();
    let ids: Vec<&str> = file["queries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["id"].as_str().unwrap())
        .collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "queries are written in id order");
    assert_eq!(file["metadata"]["total_queries"], 48);

    // Appending again skips every query.
    let again = run(
        &second,
        dir.path(),
        &["restore", "--json", "--embed-provider", "hash", "one.json"],
    );
    assert_eq!(
        (
            json_of(&again)["queries_inserted"].as_u64(),
            json_of(&again)["queries_skipped"].as_u64()
        ),
        (Some(0), Some(48))
    );
}

#[test]
fn the_index_and_an_exact_search_agree_on_the_sample() {
    let dir = workdir();
    let db = TestDb::migrated();
    run(
        &db,
        dir.path(),
        &[
            "restore",
            "--embed-provider",
            "hash",
            sample_path().to_str().unwrap(),
        ],
    );
    let (code, indexed) = evaluate(&db, &[]);
    assert_eq!(code, 0);
    let (_, exact) = evaluate(&db, &["--exact"]);
    assert_eq!(exact["exact"], true);
    assert_eq!(indexed["overall"], exact["overall"]);
    assert!(
        indexed["overall"]["recall"].as_f64().unwrap() > 0.3,
        "the lexical embedder finds the easy ones"
    );
    assert!(
        indexed["by_difficulty"]["easy"]["recall"].as_f64().unwrap()
            > indexed["by_difficulty"]["hard"]["recall"].as_f64().unwrap()
    );
}

#[test]
fn verify_checks_the_queries() {
    let mut file: Value = serde_json::from_slice(&fs::read(sample_path()).unwrap()).unwrap();
    let queries = file["queries"].as_array_mut().unwrap();
    queries[1]["id"] = json!("q-101");
    queries[2]["query"] = json!(" ");
    queries[3]["expected_chunk_ids"] = json!(["00000000-0000-4000-8000-00000000dead"]);
    file["metadata"]["total_queries"] = json!(47);
    let dir = workdir();
    fs::write(
        dir.path().join("q.json"),
        serde_json::to_vec(&file).unwrap(),
    )
    .unwrap();
    let output = run(
        &TestDb::migrated(),
        dir.path(),
        &["verify", "--json", "q.json"],
    );
    assert_eq!(output.status.code(), Some(3));
    let problems = problems_of(&json_of(&output));
    let has = |at: &str, needle: &str| {
        assert!(
            problems.iter().any(|(w, p)| w == at && p.contains(needle)),
            "{needle:?} at {at:?} in {problems:#?}"
        )
    };
    has("query q-101", "duplicate query id");
    has(
        &format!("query {}", file["queries"][2]["id"].as_str().unwrap()),
        "\"query\" is empty",
    );
    has(
        &format!("query {}", file["queries"][3]["id"].as_str().unwrap()),
        "expected chunk 00000000-0000-4000-8000-00000000dead is not in the file",
    );
    has(
        "metadata",
        "total_queries says 47 but the file holds 48 queries",
    );
    assert_eq!(problems.len(), 4, "{problems:#?}");
}
