//! The binary as a user meets it: help, version, usage errors, migrations, secrets.

mod common;

use common::{golden, json_of, stderr_of, stdout_of, workdir, TestDb};

#[test]
fn help_lists_the_commands_and_version_prints() {
    let dir = workdir();
    let output = golden(None, dir.path()).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = stdout_of(&output);
    for command in [
        "migrate",
        "backup",
        "verify",
        "--database-url",
        "--json",
        "Exit codes",
    ] {
        assert!(help.contains(command), "{command} missing from:\n{help}");
    }
    let version = golden(None, dir.path()).arg("--version").output().unwrap();
    assert_eq!(
        stdout_of(&version).trim(),
        format!("golden {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = workdir();
    for args in [vec!["frobnicate"], vec!["backup", "--no-such-flag"], vec![]] {
        let output = golden(None, dir.path()).args(&args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
}

#[test]
fn help_does_not_show_the_database_url_from_the_environment() {
    let dir = workdir();
    let output = golden(None, dir.path())
        .env(
            "DATABASE_URL",
            "postgres://alice:topsecret@db.internal/golden",
        )
        .args(["backup", "--help"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(!stdout_of(&output).contains("topsecret"));
}

#[test]
fn a_password_never_appears_in_connection_errors() {
    let dir = workdir();
    for args in [
        vec!["migrate"],
        vec!["backup"],
        vec!["verify", "--against-db", "x.json"],
    ] {
        std::fs::write(dir.path().join("x.json"), r#"{"version":"1.0","metadata":{"total_analyses":0,"total_chunks":0,"total_artifacts":0},"analyses":[]}"#).unwrap();
        let output = golden(None, dir.path())
            .env(
                "DATABASE_URL",
                "postgres://alice:topsecret@127.0.0.1:9/golden",
            )
            .args(&args)
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = stderr_of(&output);
        assert!(
            stderr.contains("postgres://alice:***@127.0.0.1:9/golden"),
            "{stderr}"
        );
        assert!(!stderr.contains("topsecret") && !stdout_of(&output).contains("topsecret"));
    }
}

#[test]
fn database_url_comes_from_a_dotenv_file_and_the_flag_wins() {
    let db = TestDb::migrated();
    let dir = workdir();
    std::fs::write(
        dir.path().join(".env"),
        format!("DATABASE_URL={}\n", db.url),
    )
    .unwrap();
    let output = golden(None, dir.path())
        .args(["backup", "--json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["analyses"], 0);

    let flag = golden(None, dir.path())
        .args([
            "backup",
            "--database-url",
            "postgres://postgres@127.0.0.1:9/x",
        ])
        .output()
        .unwrap();
    assert_eq!(flag.status.code(), Some(1), "the flag overrides .env");
}

#[test]
fn migrate_creates_the_schema_once_and_is_idempotent() {
    let db = TestDb::empty();
    let dir = workdir();
    let first = golden(Some(&db), dir.path())
        .args(["migrate", "--json"])
        .output()
        .unwrap();
    assert_eq!(first.status.code(), Some(0), "{}", stderr_of(&first));
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(
        json_of(&first)["applied"].as_array().unwrap().len(),
        migrations
    );

    let second = golden(Some(&db), dir.path())
        .arg("migrate")
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(0));
    assert!(stdout_of(&second).contains("up to date"));

    // The contract's schema: cascades, uniqueness, the HNSW index.
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx' AND indexdef LIKE '%hnsw%vector_cosine_ops%'"),
        1
    );
    assert_eq!(
        db.count("SELECT count(*) FROM information_schema.columns WHERE table_name = 'chunks' AND column_name = 'embedding' AND udt_name = 'vector'"),
        1
    );
    db.execute("INSERT INTO analyses (id, url, content_type, status) VALUES ('00000000-0000-4000-8000-0000000000a1', 'https://docs.rs', 'article', 'completed')");
    db.execute("INSERT INTO chunks (analysis_id, content, content_type, chunk_index) VALUES ('00000000-0000-4000-8000-0000000000a1', 'x', 'article', 0)");
    db.execute("INSERT INTO artifacts (analysis_id, summary) VALUES ('00000000-0000-4000-8000-0000000000a1', 's')");
    let mut conn = db.conn();
    use diesel::RunQueryDsl;
    let clash = diesel::sql_query("INSERT INTO chunks (analysis_id, content, content_type, chunk_index) VALUES ('00000000-0000-4000-8000-0000000000a1', 'y', 'article', 0)").execute(&mut conn);
    assert!(clash.is_err(), "chunk_index is unique per analysis");
    let second_artifact = diesel::sql_query("INSERT INTO artifacts (analysis_id, summary) VALUES ('00000000-0000-4000-8000-0000000000a1', 't')").execute(&mut conn);
    assert!(second_artifact.is_err(), "one artifact per analysis");
    let negative = diesel::sql_query("INSERT INTO chunks (analysis_id, content, content_type, chunk_index) VALUES ('00000000-0000-4000-8000-0000000000a1', 'z', 'article', -1)").execute(&mut conn);
    assert!(negative.is_err(), "chunk_index >= 0");
    db.execute("DELETE FROM analyses");
    assert_eq!(
        db.count("SELECT count(*) FROM chunks") + db.count("SELECT count(*) FROM artifacts"),
        0,
        "deletes cascade"
    );
}

#[test]
fn stdout_closed_early_is_not_an_error() {
    let dir = workdir();
    let sample = common::sample_path();
    let mut bad: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sample).unwrap()).unwrap();
    for analysis in bad["analyses"].as_array_mut().unwrap() {
        analysis["url"] = serde_json::json!("http://localhost/x");
    }
    std::fs::write(
        dir.path().join("bad.json"),
        serde_json::to_vec(&bad).unwrap(),
    )
    .unwrap();
    // 43 problem lines into a pipe whose reader is already gone.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .args(["verify", "bad.json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    assert!(
        !stderr_of(&output).contains("panicked"),
        "{}",
        stderr_of(&output)
    );
    assert!(matches!(output.status.code(), Some(0) | Some(3)));
}
