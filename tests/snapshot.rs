//! `golden dump` and `golden load`: the SQL snapshot with embeddings, through the real
//! pg_dump and psql.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{golden, json_of, stderr_of, workdir, TestDb};

#[test]
fn dump_then_load_gives_identical_rows_and_vectors() {
    let source = TestDb::with_sample();
    let dir = workdir();
    let dumped = golden(Some(&source), dir.path())
        .args(["dump", "--json"])
        .output()
        .unwrap();
    assert_eq!(dumped.status.code(), Some(0), "{}", stderr_of(&dumped));
    let summary = json_of(&dumped);
    assert_eq!(summary["file"], "data/golden_dataset_dump.sql");
    assert_eq!(summary["chunks"], 188);
    assert!(
        summary["bytes"].as_u64().unwrap() > 100_000,
        "vectors are in the snapshot"
    );

    let target = TestDb::migrated();
    let loaded = golden(Some(&target), dir.path())
        .args(["load", "--json"])
        .output()
        .unwrap();
    assert_eq!(loaded.status.code(), Some(0), "{}", stderr_of(&loaded));
    assert_eq!(json_of(&loaded)["analyses"], 43);
    assert_eq!(target.digest(), source.digest(), "same rows, same vectors");
    assert_eq!(
        target
            .count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'"),
        1
    );

    // Non-empty tables are refused without --replace; with it the rows are swapped in one go.
    let again = golden(Some(&target), dir.path())
        .arg("load")
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr_of(&again).contains("--replace"));
    target.execute("UPDATE artifacts SET summary = 'changed locally'");
    golden(Some(&target), dir.path())
        .args(["load", "--replace"])
        .assert()
        .code(0);
    assert_eq!(target.digest(), source.digest());
}

#[test]
fn a_failing_load_changes_nothing() {
    let db = TestDb::with_sample();
    let before = db.digest();
    let dir = workdir();
    // A snapshot in pg_dump's form whose second table's data the server refuses: the delete
    // of --replace and the first table's rows go back with it.
    std::fs::write(
        dir.path().join("broken.sql"),
        "COPY public.analyses (id, url, title, content_type, status, created_at, updated_at) FROM stdin;\n\
         00000000-0000-4000-8000-0000000000a1\thttps://docs.rs/x\t\\N\tarticle\tcompleted\t2026-01-01 00:00:00+00\t2026-01-01 00:00:00+00\n\
         \\.\n\
         COPY public.chunks (id, analysis_id, content, section_title, section_path, content_type, chunk_index, embedding, embedding_model) FROM stdin;\n\
         not-a-uuid\t00000000-0000-4000-8000-0000000000a1\tx\t\\N\t\\N\tarticle\t0\t\\N\t\\N\n\
         \\.\n",
    )
    .unwrap();
    let output = golden(Some(&db), dir.path())
        .args(["load", "--replace", "--input", "broken.sql"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("invalid input syntax for type uuid"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(db.digest(), before, "one transaction, rolled back");

    let missing = golden(Some(&db), dir.path())
        .args(["load", "--input", "nothing.sql"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
}

#[test]
fn missing_or_mismatched_client_programs_are_explained() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let empty = workdir();
    let output = golden(Some(&db), dir.path())
        .args(["dump", "--pg-bin", empty.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("pg_dump was not found"),
        "{}",
        stderr_of(&output)
    );
    assert!(stderr_of(&output).contains("postgresql-client-15"));

    // A pg_dump of another major version.
    let old = workdir();
    let script = old.path().join("pg_dump");
    std::fs::write(&script, "#!/bin/sh\necho 'pg_dump (PostgreSQL) 12.22'\n").unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let output = golden(Some(&db), dir.path())
        .args(["dump", "--pg-bin", old.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr_of(&output).contains("the server is PostgreSQL 15 but"),
        "{}",
        stderr_of(&output)
    );
    assert!(!dir.path().join("data/golden_dataset_dump.sql").exists());
}

#[test]
fn a_dump_waits_for_a_restore_or_regeneration_in_progress() {
    let db = TestDb::with_sample();
    let dir = workdir();
    // Hold golden's advisory lock (0x676f6c64656e) as a writing run would.
    let mut writer = db.hold_the_dataset_lock();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .env_remove("RUST_LOG")
        .args(["dump", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(
        !dir.path().join("data/golden_dataset_dump.sql").exists(),
        "nothing dumped while a writer runs"
    );
    writer.release();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert!(stderr_of(&output).contains("waiting for it to finish"));
    assert_eq!(json_of(&output)["chunks"], 188);
}
