//! `golden verify --against-db`: the file and the database compared, row by row.

mod common;

use std::fs;

use common::{golden, json_of, problems_of, sample_path, stderr_of, workdir, TestDb};
use serde_json::Value;

fn sample() -> Value {
    serde_json::from_slice(&fs::read(sample_path()).unwrap()).unwrap()
}

fn against_db(db: &TestDb, dir: &std::path::Path, file: &str) -> (i32, Vec<(String, String)>) {
    let output = golden(Some(db), dir)
        .args(["verify", "--against-db", "--json", file])
        .output()
        .unwrap();
    let summary = json_of(&output);
    (output.status.code().unwrap(), problems_of(&summary))
}

#[test]
fn a_database_holding_the_file_with_embeddings_agrees_with_it() {
    let db = TestDb::migrated();
    db.load(&sample_path(), true);
    let dir = workdir();
    let (code, problems) = against_db(&db, dir.path(), sample_path().to_str().unwrap());
    assert_eq!((code, problems.len()), (0, 0), "{problems:#?}");

    let output = golden(Some(&db), dir.path())
        .args(["verify", "--against-db", sample_path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(String::from_utf8_lossy(&output.stdout).contains("and the database agree"));
}

#[test]
fn missing_extra_and_differing_rows_and_missing_embeddings_are_reported() {
    let db = TestDb::migrated();
    db.load(&sample_path(), true);
    let file = sample();
    let analysis = |i: usize| file["analyses"][i]["id"].as_str().unwrap().to_string();
    let chunk = |i: usize, j: usize| {
        file["analyses"][i]["chunks"][j]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };

    db.execute(&format!(
        "DELETE FROM analyses WHERE id = '{}'",
        analysis(0)
    ));
    db.execute(&format!(
        "UPDATE analyses SET title = 'Renamed' WHERE id = '{}'",
        analysis(1)
    ));
    db.execute(&format!(
        "UPDATE chunks SET content = 'edited' WHERE id = '{}'",
        chunk(2, 0)
    ));
    db.execute(&format!(
        "UPDATE chunks SET embedding = NULL WHERE id = '{}'",
        chunk(3, 1)
    ));
    db.execute(&format!("DELETE FROM chunks WHERE id = '{}'", chunk(4, 0)));
    db.execute(&format!(
        "DELETE FROM artifacts WHERE analysis_id = '{}'",
        analysis(5)
    ));
    db.execute(&format!(
        "INSERT INTO chunks (analysis_id, content, content_type, chunk_index) VALUES ('{}', 'extra', 'article', 99)",
        analysis(6)
    ));
    db.execute(
        "INSERT INTO analyses (id, url, content_type, status) VALUES
         ('aaaaaaaa-0000-4000-8000-000000000001', 'https://docs.rs/new', 'article', 'completed'),
         ('aaaaaaaa-0000-4000-8000-000000000002', 'https://docs.rs/draft', 'article', 'draft')",
    );

    let dir = workdir();
    let (code, problems) = against_db(&db, dir.path(), sample_path().to_str().unwrap());
    assert_eq!(code, 3);
    let has = |at: String, needle: &str| {
        assert!(
            problems.iter().any(|(w, p)| *w == at && p.contains(needle)),
            "expected {needle:?} at {at:?} in {problems:#?}"
        )
    };
    has(
        format!("analysis {}", analysis(0)),
        "in the file but not in the database",
    );
    has(
        format!("analysis {}", analysis(1)),
        "differs from the database in title",
    );
    has(
        format!("analysis {}, chunk {}", analysis(2), chunk(2, 0)),
        "differs from the database in content",
    );
    has(
        format!("analysis {}, chunk {}", analysis(3), chunk(3, 1)),
        "has no embedding",
    );
    has(
        format!("analysis {}, chunk {}", analysis(4), chunk(4, 0)),
        "in the file but not in the database",
    );
    has(
        format!(
            "analysis {}, artifact {}",
            analysis(5),
            file["analyses"][5]["artifact"]["id"].as_str().unwrap()
        ),
        "in the file but not in the database",
    );
    assert!(problems.iter().any(|(w, p)| w
        .starts_with(&format!("analysis {}, chunk ", analysis(6)))
        && p.contains("in the database but not in the file")));
    has(
        "analysis aaaaaaaa-0000-4000-8000-000000000001".into(),
        "in the database but not in the file",
    );
    assert!(
        !problems
            .iter()
            .any(|(w, _)| w.contains("aaaaaaaa-0000-4000-8000-000000000002")),
        "a draft is not expected in a backup of completed analyses"
    );
    assert_eq!(problems.len(), 8, "{problems:#?}");
}

#[test]
fn an_embedding_of_another_dimension_is_reported() {
    let db = TestDb::migrated();
    db.load(&sample_path(), true);
    // An unsized `vector` column, as a team might have, can hold vectors of any size.
    db.execute("DROP INDEX chunks_embedding_hnsw_idx");
    db.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector");
    let file = sample();
    let (analysis, chunk) = (
        file["analyses"][0]["id"].as_str().unwrap(),
        file["analyses"][0]["chunks"][0]["id"].as_str().unwrap(),
    );
    db.execute(&format!(
        "UPDATE chunks SET embedding = '[1,2,3]' WHERE id = '{chunk}'"
    ));
    let dir = workdir();
    let (code, problems) = against_db(&db, dir.path(), sample_path().to_str().unwrap());
    assert_eq!(code, 3);
    assert_eq!(
        problems,
        [(
            format!("analysis {analysis}, chunk {chunk}"),
            "embedding has 3 dimensions, most chunks have 1024".to_string()
        )]
    );
}

#[test]
fn a_fresh_backup_agrees_with_its_database() {
    let db = TestDb::migrated();
    db.load(&sample_path(), true);
    db.execute("UPDATE analyses SET status = 'draft' WHERE id IN (SELECT id FROM analyses ORDER BY id LIMIT 2)");
    let dir = workdir();
    for status in ["completed", "draft", "all"] {
        let file = format!("{status}.json");
        golden(Some(&db), dir.path())
            .args([
                "backup",
                "--status",
                status,
                "--output",
                &file,
                "--metadata",
                "m.json",
            ])
            .assert()
            .code(0);
        let (code, problems) = against_db(&db, dir.path(), &file);
        assert_eq!((code, problems.len()), (0, 0), "{status}: {problems:#?}");
    }
}

#[test]
fn missing_extra_and_differing_queries_are_reported_but_not_reordered_chunks() {
    let db = TestDb::migrated();
    db.load(&sample_path(), true);
    db.execute("UPDATE queries SET difficulty = 'hard' WHERE id = 'q-101'");
    db.execute(
        "UPDATE queries SET expected_chunk_ids = expected_chunk_ids[1:0] WHERE id = 'q-102'",
    );
    db.execute("DELETE FROM queries WHERE id = 'q-103'");
    // The same expected chunks in another order: nothing an evaluation would notice.
    db.execute("UPDATE queries SET expected_chunk_ids = ARRAY[expected_chunk_ids[2], expected_chunk_ids[1]] WHERE id = 'q-122'");
    db.execute(
        "INSERT INTO queries (id, query, expected_chunk_ids) \
         SELECT 'q-new', 'a question asked since the backup', ARRAY[id] FROM chunks ORDER BY id LIMIT 1",
    );
    // A query expecting a chunk a backup would not hold is no more expected in the file.
    db.execute(
        "INSERT INTO queries (id, query, expected_chunk_ids) \
         VALUES ('q-orphan', 'about a deleted chunk', ARRAY['aaaaaaaa-0000-4000-8000-00000000000f'::uuid])",
    );

    let dir = workdir();
    let (code, mut problems) = against_db(&db, dir.path(), sample_path().to_str().unwrap());
    assert_eq!(code, 3);
    problems.sort();
    assert_eq!(
        problems,
        vec![
            (
                "query \"q-101\"".to_string(),
                "differs from the database in difficulty".to_string()
            ),
            (
                "query \"q-102\"".to_string(),
                "differs from the database in expected_chunk_ids".to_string()
            ),
            (
                "query \"q-103\"".to_string(),
                "is in the file but not in the database".to_string()
            ),
            (
                "query \"q-new\"".to_string(),
                "is in the database but not in the file".to_string()
            ),
        ]
    );
}
