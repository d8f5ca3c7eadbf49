//! Attacks on the guarantees of reading other tools' files and losing nothing of them: each test is a
//! black-box run of the built binary against a guarantee of the README or CONTRACT.md.

mod common;

use std::fs;
use std::path::Path;

use common::dialects::{self, backup_of, ok, restore_json, run, uuid_for, Fixture, FlatFile};
use common::{golden, json_of, stderr_of, stdout_of, workdir, TestDb};
use serde_json::{json, Value};
/// Writes the generated fixtures to $ATTACK_FIXTURES (exploration helper, not a check).
#[test]
#[ignore]
fn write_fixtures() {
    let Ok(dir) = std::env::var("ATTACK_FIXTURES") else {
        return;
    };
    let dir = Path::new(&dir);
    let _: Vec<Fixture> = vec![
        dialects::seed_template(dir),
        dialects::skillforge_flat_1(dir),
        dialects::skillforge_flat_2(dir),
    ];
    if let Ok(size) = std::env::var("ATTACK_SIZE") {
        let (a, c) = size.split_once('x').unwrap();
        dialects::skillforge_flat_2_sized(dir, a.parse().unwrap(), c.parse().unwrap());
    }
}

use common::embed_server::{EmbedServer, Fault, Protocol};

fn orphan_ids(backup: &Value) -> Vec<String> {
    backup["orphan_artifacts"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| a["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// Finding: an append of a second file drops its file-level keys (orphan artifacts, source,
// fixtures, metadata) while saying they are kept.

#[test]
fn an_append_keeps_the_orphan_artifacts_and_file_keys_of_every_file_it_restores() {
    let db = TestDb::migrated();
    let dir = workdir();
    let mut first = FlatFile::new("2.0");
    let a = first.analysis("first-doc", 2, json!({}));
    first.artifact("first-doc/1", &a, 1, json!({}));
    let orphan_1 = first.artifact("gone-1/1", &uuid_for("analysis/gone-1"), 1, json!({}));
    first.top.insert("source".into(), json!("first export"));
    first.top.insert(
        "fixtures".into(),
        json!({"documents": [{"id": "first-doc"}], "queries": []}),
    );
    let first = first.write(dir.path(), "first.json");
    restore_json(&db, dir.path(), &[&first]);

    let mut second = FlatFile::new("2.0");
    let b = second.analysis("second-doc", 2, json!({}));
    second.artifact("second-doc/1", &b, 1, json!({}));
    let orphan_2 = second.artifact("gone-2/1", &uuid_for("analysis/gone-2"), 1, json!({}));
    second.top.insert("source".into(), json!("second export"));
    second.top.insert(
        "fixtures".into(),
        json!({"documents": [{"id": "second-doc"}], "queries": []}),
    );
    let second = second.write(dir.path(), "second.json");
    let summary = restore_json(&db, dir.path(), &[&second]);
    assert_eq!(summary["artifacts_left_out"], 1);

    let backup = backup_of(&db, dir.path(), "backup.json");
    let orphans = orphan_ids(&backup);
    // The restore said of the second file's orphan: "kept as they are with the file-level
    // keys, and backup writes them back".
    assert!(
        orphans.contains(&orphan_1),
        "first file's orphan in {orphans:?}"
    );
    assert!(
        orphans.contains(&orphan_2),
        "the second file's orphan artifact {orphan_2} was reported kept, but the backup holds \
         only {orphans:?}"
    );
    let documents = backup["fixtures"]["documents"].to_string();
    assert!(
        documents.contains("second-doc"),
        "the second file's fixtures documents are lost: {documents}"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: a flat analysis's own extra keys are "late" (written after its chunks in the
// normalized form); when an append stops after the analysis's first batch committed, the
// rerun skips the analysis as existing and its extras are never written.

#[test]
fn an_interrupted_append_of_a_flat_file_keeps_the_extras_of_an_analysis_cut_across_batches() {
    let db = TestDb::migrated();
    // The batch path, whose first batches stay committed (the bulk path is all or nothing).
    db.drop_vector_index();
    let dir = workdir();
    let mut flat = FlatFile::new("1.0");
    let id = flat.analysis(
        "long-doc",
        1100,
        json!({"owner": "team-retrieval", "tags": ["a", "b"]}),
    );
    let file = flat.write(dir.path(), "flat.json");

    let server = EmbedServer::start(Protocol::OpenAi);
    server.fail_after(1, Fault::Status(500, "down", None));
    let args = |file: &str| {
        vec![
            "restore".to_string(),
            "--json".into(),
            "--embed-provider".into(),
            "openai".into(),
            "--embed-url".into(),
            server.url.clone(),
            "--embed-max-retries".into(),
            "0".into(),
            "--embed-batch-size".into(),
            "1024".into(),
            "--embed-concurrency".into(),
            "1".into(),
            file.to_string(),
        ]
    };
    let failed = golden(Some(&db), dir.path())
        .args(args(&file))
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
    assert_eq!(
        db.count("SELECT count(*) FROM analyses"),
        1,
        "the first batches were committed"
    );

    server.heal();
    let resumed = golden(Some(&db), dir.path())
        .args(args(&file))
        .output()
        .unwrap();
    ok(resumed, "the rerun");
    assert_eq!(db.count("SELECT count(*) FROM chunks"), 1100);
    let against = run(Some(&db), dir.path(), &["verify", "--against-db", &file]);
    assert_eq!(
        against.status.code(),
        Some(0),
        "after the rerun the database must hold the file (analysis {id}):\n{}",
        stdout_of(&against)
    );
    let backup = backup_of(&db, dir.path(), "backup.json");
    assert_eq!(
        backup["analyses"][0]["owner"], "team-retrieval",
        "the analysis's extra is lost"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: an integral float of 1e16 or more (Python writes it `1e+16`) comes back from jsonb
// as an integer: convert → restore → backup no longer gives convert's bytes, and
// `verify --against-db` reports the faithful restore as differing.

#[test]
fn large_integral_floats_in_extras_round_trip_through_jsonb() {
    let dir = workdir();
    let mut flat = FlatFile::new("1.0");
    let id = flat.analysis(
        "floats",
        1,
        json!({"score": 1e16, "ratio": 0.1, "tiny": 1e-7}),
    );
    flat.artifact(
        "floats/1",
        &id,
        1,
        json!({"artifact_metadata": {"tokens": 1.2345678901234567e19}}),
    );
    let file = flat.write(dir.path(), "flat.json");
    ok(
        run(
            None,
            dir.path(),
            &["convert", &file, "--output", "converted.json"],
        ),
        "convert",
    );
    let converted = fs::read(dir.path().join("converted.json")).unwrap();

    let db = TestDb::migrated();
    restore_json(&db, dir.path(), &["--replace", "--yes", "converted.json"]);
    let against = run(Some(&db), dir.path(), &["verify", "--against-db", &file]);
    assert_eq!(
        against.status.code(),
        Some(0),
        "the database holds exactly the file, yet:\n{}",
        stdout_of(&against)
    );
    let output = ok(
        run(
            Some(&db),
            dir.path(),
            &["backup", "--json", "--output", "converted.json"],
        ),
        "backup over the converted file",
    );
    let now = fs::read(dir.path().join("converted.json")).unwrap();
    assert!(
        json_of(&output)["changed"] == false && now == converted,
        "convert → restore → backup must give convert's bytes; backup wrote:\n{}",
        String::from_utf8_lossy(&now)
            .lines()
            .filter(|l| l.contains("score") || l.contains("tokens"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: SkillForge 2.0's `counts.fixtures` (and any other `counts` key beyond the three
// totals) is dropped without a word. (The comparator of tests/dialects.rs skips `counts`.)

#[test]
fn every_key_of_counts_is_kept_or_named() {
    let dir = workdir();
    let fixture = dialects::skillforge_flat_2(dir.path());
    assert_eq!(fixture.original["counts"]["fixtures"], 5);
    let verified = json_of(&ok(
        run(None, dir.path(), &["verify", "--json", fixture.arg()]),
        "verify",
    ));
    ok(
        run(
            None,
            dir.path(),
            &["convert", fixture.arg(), "--output", "converted.json"],
        ),
        "convert",
    );
    let text = fs::read_to_string(dir.path().join("converted.json")).unwrap();
    let converted: Value = serde_json::from_str(&text).unwrap();
    // Kept where the README says: `metadata.counts`, the counts golden does not compute.
    let kept =
        converted["metadata"]["counts"]["fixtures"] == fixture.original["counts"]["fixtures"];
    let named = verified["warnings"].to_string().contains("counts.fixtures");
    assert!(
        kept || named,
        "counts.fixtures = 5 is neither kept nor named; metadata is {:#}",
        converted["metadata"]
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: `dump` / `load` carry artifact_versions but not dataset_extras (source, fixtures,
// orphan artifacts, metadata keys): a dataset moved by snapshot loses them, and `load
// --replace` keeps the target's old ones.

#[test]
fn dump_then_load_carries_the_file_level_keys() {
    let db = TestDb::migrated();
    let dir = workdir();
    let fixture = dialects::skillforge_flat_2(dir.path());
    restore_json(&db, dir.path(), &[fixture.arg()]);
    let before = backup_of(&db, dir.path(), "before.json");
    ok(
        run(Some(&db), dir.path(), &["dump", "--output", "snap.sql"]),
        "dump",
    );

    let other = TestDb::migrated();
    ok(
        run(Some(&other), dir.path(), &["load", "--input", "snap.sql"]),
        "load",
    );
    assert_eq!(other.count("SELECT count(*) FROM artifact_versions"), 1);
    let after = backup_of(&other, dir.path(), "after.json");
    for key in ["source", "fixtures", "orphan_artifacts"] {
        assert_eq!(after.get(key), before.get(key), "{key} after dump → load");
    }
    assert_eq!(
        after["metadata"].get("backup_type"),
        before["metadata"].get("backup_type")
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: `verify --against-db` does not compare the file-level keys: the database's
// `source`, `fixtures`, `orphan_artifacts` and metadata keys can differ from the file (a
// backup would then not give the file back) and it still says the two agree.

#[test]
fn verify_against_db_reports_changed_file_level_keys() {
    let db = TestDb::migrated();
    let dir = workdir();
    let fixture = dialects::skillforge_flat_2(dir.path());
    restore_json(&db, dir.path(), &[fixture.arg()]);
    ok(
        run(
            Some(&db),
            dir.path(),
            &["verify", "--against-db", fixture.arg()],
        ),
        "clean",
    );
    // A chunk's extra is compared (kept as a guard).
    db.execute("UPDATE chunks SET extra = extra || '{\"model\": \"other\"}' WHERE chunk_index = 0");
    let changed = run(
        Some(&db),
        dir.path(),
        &["verify", "--against-db", fixture.arg()],
    );
    assert_eq!(changed.status.code(), Some(3), "{}", stdout_of(&changed));
    db.execute("UPDATE chunks SET extra = extra || '{\"model\": \"text-embedding-3-small\"}' WHERE chunk_index = 0");
    ok(
        run(
            Some(&db),
            dir.path(),
            &["verify", "--against-db", fixture.arg()],
        ),
        "clean again",
    );

    db.execute("UPDATE dataset_extras SET value = '\"edited by hand\"' WHERE key = 'source'");
    db.execute("DELETE FROM dataset_extras WHERE key = 'orphan_artifacts'");
    let changed = run(
        Some(&db),
        dir.path(),
        &["verify", "--against-db", fixture.arg()],
    );
    assert_eq!(
        changed.status.code(),
        Some(3),
        "source and orphan_artifacts differ from the file:\n{}",
        stdout_of(&changed)
    );
}

// ---------------------------------------------------------------------------------------------
// Finding (regression): an artifact key `version` was an unknown key of a 1.0 file, ignored by
// the readers (CONTRACT.md: "keys they do not know (ignored)"); it is now a typed field, and a
// file of the original tool with a non-integer `version` is refused.

#[test]
fn an_artifact_version_that_is_not_an_integer_is_kept_not_refused() {
    let dir = workdir();
    let mut file: Value =
        serde_json::from_slice(&fs::read(common::sample_path()).unwrap()).unwrap();
    file["metadata"].as_object_mut().unwrap().remove("checksum");
    file["analyses"][0]["artifact"]["version"] = json!("2024-01");
    let path = dir.path().join("edited.json");
    fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    let output = run(None, dir.path(), &["verify", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout_of(&output));
}

// ---------------------------------------------------------------------------------------------
// Finding: an append whose latest artifact finds its place taken still inserts the file's
// older versions, newer than the database's latest: `artifacts` no longer holds the latest
// (the highest version), against the README's rule.

#[test]
#[ignore = "known limit (README): an append that skips a latest artifact (place taken) still adds the file's older versions"]
fn an_append_never_leaves_a_version_newer_than_the_latest_in_artifact_versions() {
    let db = TestDb::migrated();
    let dir = workdir();
    let mut first = FlatFile::new("1.0");
    let a = first.analysis("versions", 1, json!({}));
    first.artifact("versions/1", &a, 1, json!({}));
    first.artifact("versions/2", &a, 2, json!({}));
    let first = first.write(dir.path(), "first.json");
    restore_json(&db, dir.path(), &[&first]);

    let mut second = FlatFile::new("1.0");
    second.analysis("versions", 1, json!({}));
    second.artifact("versions/3", &a, 3, json!({}));
    second.artifact("versions/4", &a, 4, json!({}));
    let second = second.write(dir.path(), "second.json");
    let summary = restore_json(&db, dir.path(), &[&second]);
    assert_eq!(summary["artifacts_skipped_place_taken"], 1);
    let newer_than_latest = db.count(
        "SELECT count(*) FROM artifact_versions v JOIN artifacts a USING (analysis_id) \
         WHERE v.version > a.version",
    );
    assert_eq!(
        newer_than_latest, 0,
        "artifact_versions holds a version newer than the analysis's latest artifact"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: `metadata` keys beyond golden's are outside the checksum: a hand edit of one is not
// noticed by verify (README: the checksum covers "the file-level keys below").

#[test]
fn the_checksum_covers_the_kept_metadata_keys() {
    let dir = workdir();
    let fixture = dialects::skillforge_flat_2(dir.path());
    ok(
        run(
            None,
            dir.path(),
            &["convert", fixture.arg(), "--output", "converted.json"],
        ),
        "convert",
    );
    let text = fs::read_to_string(dir.path().join("converted.json")).unwrap();
    assert!(text.contains("\"backup_type\": \"full\""));
    fs::write(
        dir.path().join("edited.json"),
        text.replace("\"backup_type\": \"full\"", "\"backup_type\": \"partial\""),
    )
    .unwrap();
    let output = run(None, dir.path(), &["verify", "edited.json"]);
    assert_eq!(
        output.status.code(),
        Some(3),
        "an edited metadata key passes: {}",
        stdout_of(&output)
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: memory grows with a 2.0 file's size: `fixtures.documents` holds every document's
// sections (as much text as the chunks) and is held whole, several times over (convert peaks
// at about twice the file's size, restore --replace at three times).

/// The peak resident memory of `golden args` run in `dir` (kilobytes), which must succeed.
// The child is reaped by wait4, which clippy does not see.
#[allow(clippy::zombie_processes)]
fn peak_rss_kb(db: Option<&TestDb>, dir: &Path, args: &[&str]) -> i64 {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_golden"));
    command
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command.env_remove("DATABASE_URL");
    if let Some(db) = db {
        command.env("DATABASE_URL", &db.url);
    }
    let child = command.spawn().unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: wait4 on our own child's pid with valid pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    let status = std::process::ExitStatus::from_raw(status);
    assert!(status.success(), "golden {args:?}: {status}");
    usage.ru_maxrss
}

/// A sized 2.0 file written by a child process (this test binary's `write_fixtures`), so that
/// the memory of building it is not counted in the peak RSS of the runs measured from here
/// (a spawned child's `ru_maxrss` starts at its parent's).
fn sized_flat_file(dir: &Path, analyses: usize, chunks: usize) -> String {
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "write_fixtures", "--ignored", "--quiet"])
        .env("ATTACK_FIXTURES", dir)
        .env("ATTACK_SIZE", format!("{analyses}x{chunks}"))
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let path = dir.join(format!("skillforge-flat-2-{analyses}x{chunks}.json"));
    assert!(path.exists(), "{}", path.display());
    path.to_str().unwrap().to_string()
}

#[test]
#[ignore = "known limit (README): the file-level keys (fixtures) are held whole, about three times their size"]
fn memory_does_not_grow_with_the_fixtures_of_a_flat_file() {
    let dir = workdir();
    let small = sized_flat_file(dir.path(), 1000, 10);
    let large = sized_flat_file(dir.path(), 4000, 10);
    let extra_chunks = 30_000;
    let mut report = Vec::new();
    let mut too_much = false;
    for (name, args) in [
        ("verify", vec!["verify"]),
        ("convert", vec!["convert", "--output", "out.json"]),
    ] {
        let peak = |file: &str| {
            let mut all = args.clone();
            all.insert(1, file);
            peak_rss_kb(None, dir.path(), &all)
        };
        let (a, b) = (peak(&small), peak(&large));
        let per_chunk = (b - a) * 1024 / extra_chunks;
        // The README's index: "tens of bytes a chunk"; measured ~110 (verify) and ~150
        // (convert) bytes a chunk once fixtures.documents is emptied.
        too_much |= per_chunk > 400;
        report.push(format!(
            "{name}: {a} KB → {b} KB, {per_chunk} bytes per added chunk"
        ));
    }
    let size = |f: &str| fs::metadata(f).unwrap().len() / 1_000_000;
    eprintln!("{}", report.join("\n"));
    assert!(
        !too_much,
        "peak RSS grows with the file ({} MB → {} MB):\n  {}",
        size(&small),
        size(&large),
        report.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------------
// Finding: a file-level key larger than jsonb holds (256 MB) passes verify, and an append
// writes every row before it fails on it (exit 1, not 2; rerunning fails the same way).
// Expensive (a 280 MB file): run with --run-ignored.

#[test]
#[ignore]
fn a_file_level_key_jsonb_cannot_hold_is_refused_before_anything_is_written() {
    let db = TestDb::migrated();
    let dir = workdir();
    let mut flat = FlatFile::new("2.0");
    let a = flat.analysis("big-fixtures", 1, json!({}));
    flat.artifact("big-fixtures/1", &a, 1, json!({}));
    let section = "x".repeat(1 << 20);
    let documents: Vec<Value> = (0..270)
        .map(|i| json!({"id": format!("doc-{i}"), "sections": [{"content": section}]}))
        .collect();
    flat.top.insert(
        "fixtures".into(),
        json!({"documents": documents, "queries": []}),
    );
    let path = dir.path().join("big.json");
    fs::write(&path, serde_json::to_vec(&flat.value()).unwrap()).unwrap();
    let file = path.to_str().unwrap();
    let verified = run(None, dir.path(), &["verify", file]);
    let restored = run(
        Some(&db),
        dir.path(),
        &["restore", "--embed-provider", "hash", file],
    );
    assert_eq!(
        db.count("SELECT count(*) FROM analyses"),
        0,
        "verify exit {:?}; restore exit {:?}: {}",
        verified.status.code(),
        restored.status.code(),
        stderr_of(&restored)
    );
    assert_eq!(restored.status.code(), Some(2), "{}", stderr_of(&restored));
}

// ---------------------------------------------------------------------------------------------
// Finding (low): duplicate keys in an object of a foreign file collapse silently (the last
// wins): a value of the original is lost without a word.

#[test]
#[ignore = "known limit (README): a key repeated in one JSON object keeps its last value, as serde_json reads it"]
fn duplicate_keys_are_named_not_silently_collapsed() {
    let dir = workdir();
    let mut flat = FlatFile::new("1.0");
    let a = flat.analysis("dup", 1, json!({"owner": "first"}));
    flat.artifact("dup/1", &a, 1, json!({}));
    let text = serde_json::to_string_pretty(&flat.value()).unwrap();
    let text = text.replacen(
        "\"owner\": \"first\"",
        "\"owner\": \"first\",\n        \"owner\": \"second\"",
        1,
    );
    fs::write(dir.path().join("dup.json"), text).unwrap();
    let output = run(None, dir.path(), &["verify", "--json", "dup.json"]);
    let summary = json_of(&output);
    let said = format!("{}{}", summary["problems"], summary["warnings"]);
    assert!(
        said.contains("owner"),
        "the duplicate key \"owner\" is not named: {said}"
    );
}

// ---------------------------------------------------------------------------------------------
// Guards that hold (kept so they stay true).

/// A NUL in an extra of a foreign file, at any depth, in a value or a key: a verify problem,
/// exit 2 on restore, nothing written.
#[test]
fn guard_a_nul_anywhere_in_an_extra_is_refused_before_anything_is_written() {
    let dir = workdir();
    let db = TestDb::migrated();
    for (name, extra) in [
        ("value", json!({"deep": {"list": ["a\u{0}b"]}})),
        ("key", json!({"deep": {"k\u{0}ey": 1}})),
    ] {
        let mut flat = FlatFile::new("1.0");
        let a = flat.analysis("nul", 1, json!({}));
        flat.artifact("nul/1", &a, 1, json!({"artifact_metadata": extra}));
        let file = flat.write(dir.path(), &format!("{name}.json"));
        let verified = run(None, dir.path(), &["verify", &file]);
        assert_eq!(
            verified.status.code(),
            Some(3),
            "{name}: {}",
            stdout_of(&verified)
        );
        assert!(stdout_of(&verified).contains("NUL"));
        let restored = run(
            Some(&db),
            dir.path(),
            &["restore", "--embed-provider", "hash", &file],
        );
        assert_eq!(
            restored.status.code(),
            Some(2),
            "{name}: {}",
            stderr_of(&restored)
        );
    }
    let mut flat = FlatFile::new("1.0");
    flat.analysis("nul-top", 1, json!({}));
    flat.top
        .insert("fixtures".into(), json!({"documents": [{"t": "\u{0}"}]}));
    let file = flat.write(dir.path(), "top.json");
    let restored = run(
        Some(&db),
        dir.path(),
        &["restore", "--embed-provider", "hash", &file],
    );
    assert_eq!(restored.status.code(), Some(2), "{}", stderr_of(&restored));
    assert_eq!(
        db.count("SELECT (SELECT count(*) FROM analyses) + (SELECT count(*) FROM dataset_extras)"),
        0
    );
}

/// An emoji only in an extra (a chunk's, an artifact key, a file-level key) of a flat file is
/// refused by a LATIN1 database before the first write.
#[test]
fn guard_a_latin1_database_refuses_an_emoji_only_in_an_extra_before_writing() {
    let db = TestDb::migrated_with_encoding("LATIN1");
    let dir = workdir();
    for (name, place) in [("chunk", 0), ("artifact key", 1), ("file key", 2)] {
        let mut flat = FlatFile::new("1.0");
        let a = flat.analysis("latin", 1, json!({}));
        flat.artifact("latin/1", &a, 1, json!({}));
        match place {
            0 => flat.chunks[0]["note"] = json!({"deep": ["🦀"]}),
            1 => flat.artifacts[0]["🦀"] = json!(1),
            _ => {
                flat.top.insert("source".into(), json!("export 🦀"));
            }
        }
        let file = flat.write(dir.path(), "latin.json");
        let restored = run(
            Some(&db),
            dir.path(),
            &["restore", "--embed-provider", "hash", &file],
        );
        assert_eq!(
            restored.status.code(),
            Some(2),
            "{name}: {}",
            stderr_of(&restored)
        );
        assert!(
            stderr_of(&restored).contains("U+1F980"),
            "{name}: {}",
            stderr_of(&restored)
        );
        assert_eq!(
            db.count(
                "SELECT (SELECT count(*) FROM analyses) + (SELECT count(*) FROM dataset_extras)"
            ),
            0,
            "{name}"
        );
    }
}

/// A flat file edited in place while an append is under way: the next commit is refused
/// (exit 2) although the passes read the normalized temp copy.
#[test]
fn guard_a_flat_file_edited_during_an_append_stops_it_before_the_next_commit() {
    let db = TestDb::migrated();
    // The batch path, which commits batch by batch (the bulk path commits once, after its
    // check: tests/restore_guarantees.rs covers it with an empty database).
    db.drop_vector_index();
    let dir = workdir();
    let mut flat = FlatFile::new("1.0");
    for i in 0..40 {
        flat.analysis(&format!("doc-{i:02}"), 2, json!({}));
    }
    let file = flat.write(dir.path(), "flat.json");
    let server = EmbedServer::start(Protocol::OpenAi);
    server.delay(std::time::Duration::from_millis(300));
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .args([
            "restore",
            "--embed-provider",
            "openai",
            "--embed-url",
            &server.url,
            "--embed-batch-size",
            "20",
            "--embed-concurrency",
            "1",
            &file,
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while db.count("SELECT count(*) FROM analyses") == 0 {
        assert!(started.elapsed().as_secs() < 30, "no batch committed");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // Same length, same JSON: only its modification time and one title change.
    let text = fs::read_to_string(&file)
        .unwrap()
        .replacen("\"doc-39\"", "\"doc-3X\"", 1);
    fs::write(&file, text).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(2));
    assert!(db.count("SELECT count(*) FROM analyses") < 40);
}

// ---------------------------------------------------------------------------------------------
// Finding (cosmetic): each orphan artifact of a flat file is warned about twice (once by the
// dialect's reader, once by the validator), so `verify --json` counts twice as many warnings.

#[test]
fn each_orphan_artifact_is_named_once() {
    let dir = workdir();
    let fixture = dialects::skillforge_flat_1(dir.path());
    let summary = json_of(&run(None, dir.path(), &["verify", "--json", fixture.arg()]));
    for orphan in fixture.orphan_artifact_ids() {
        let times = summary["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|w| w.to_string().contains(&orphan))
            .count();
        assert_eq!(times, 1, "artifact {orphan} in {:#}", summary["warnings"]);
    }
}
