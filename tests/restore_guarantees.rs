//! What `restore` promises where it used to break: it loads exactly what it validated (a
//! file swapped or edited while it waits is refused); validation covers what PostgreSQL would
//! refuse (out-of-range, leap-second and sub-microsecond timestamps, characters a LATIN1
//! database cannot hold), so nothing is half-written; memory stays bounded whatever the
//! file's shape; the dry run and the restore agree on every row and every request; the counts
//! add up; hopeless options fail before anything is paid for.

mod common;

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc::Receiver;
use std::time::Duration;

use common::{golden, json_of, problems_of, sample_path, stderr_of, workdir, TestDb};
use serde_json::{json, Value};

fn sample() -> Value {
    serde_json::from_slice(&fs::read(sample_path()).unwrap()).unwrap()
}

/// Writes `file` to `dir/name` without its checksum (a hand-edited file).
fn write_edited(dir: &Path, name: &str, mut file: Value) -> std::path::PathBuf {
    file["metadata"].as_object_mut().unwrap().remove("checksum");
    let path = dir.join(name);
    fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    path
}

fn restore_json(db: &TestDb, dir: &Path, args: &[&str]) -> Output {
    golden(Some(db), dir)
        .args(["restore", "--json", "--embed-provider", "hash"])
        .args(args)
        .output()
        .unwrap()
}

fn ok(output: &Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    json_of(output)
}

/// Starts `golden restore` and returns it with its stderr lines as they come.
fn spawn_restore(db: &TestDb, dir: &Path, args: &[&str]) -> (Child, Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir)
        .env("DATABASE_URL", &db.url)
        .args(["restore", "--embed-provider", "hash"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (send, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = send.send(line);
        }
    });
    (child, lines)
}

/// Waits for a line containing `needle`; returns every line seen.
fn wait_for_line(lines: &Receiver<String>, needle: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => {
                let found = line.contains(needle);
                seen.push(line);
                if found {
                    return seen;
                }
            }
            Err(e) => panic!("no line with {needle:?} ({e}); saw {seen:?}"),
        }
    }
}

#[test]
fn a_file_swapped_or_edited_between_validation_and_load_is_refused() {
    let dir = workdir();
    let mut other = sample();
    other["analyses"][0]["chunks"][0]["content"] = json!("A different text, never validated.");
    let other = write_edited(dir.path(), "other.json", other);
    for (mode, change) in [
        ("append", "swap"),
        ("append", "edit"),
        ("replace", "swap"),
        ("replace", "edit"),
    ] {
        let db = if mode == "append" {
            TestDb::migrated()
        } else {
            TestDb::with_sample()
        };
        db.execute("DELETE FROM queries");
        let before = db.digest();
        let input = dir.path().join(format!("{mode}-{change}.json"));
        fs::copy(sample_path(), &input).unwrap();
        let mut holder = db.hold_the_dataset_lock();
        let mut args = vec![input.to_str().unwrap()];
        let safety = dir.path().join(format!("safety-{mode}-{change}.json"));
        if mode == "replace" {
            args.extend([
                "--replace",
                "--yes",
                "--safety-backup",
                safety.to_str().unwrap(),
            ]);
        }
        // The restore validates the file, then waits for the lock.
        let (child, lines) = spawn_restore(&db, dir.path(), &args);
        wait_for_line(&lines, "waiting for it to finish");
        match change {
            // An editor's save: a new file renamed over the old one.
            "swap" => {
                fs::copy(&other, dir.path().join("tmp-swap")).unwrap();
                fs::rename(dir.path().join("tmp-swap"), &input).unwrap();
            }
            // An edit in place that keeps the counts, the size and the checksum key.
            _ => {
                let text = fs::read_to_string(&input).unwrap();
                let edited = text.replacen("cargo", "CARGO", 1);
                assert_ne!(edited, text);
                fs::write(&input, edited).unwrap();
            }
        }
        holder.release();
        let output = child.wait_with_output().unwrap();
        // The reader thread ends at the end of stderr, which may come after the exit.
        let stderr: Vec<String> = lines.iter().collect();
        assert_eq!(output.status.code(), Some(2), "{mode} {change}: {stderr:?}");
        assert!(
            stderr
                .iter()
                .any(|line| line.contains("during the restore")),
            "{mode} {change}: {stderr:?}"
        );
        assert_eq!(db.digest(), before, "{mode} {change}: nothing was written");
    }
}

#[test]
fn timestamps_postgresql_would_alter_or_refuse_are_problems() {
    let dir = workdir();
    let mut file = sample();
    let first = file["analyses"][0]["id"].as_str().unwrap().to_string();
    let second = file["analyses"][1]["id"].as_str().unwrap().to_string();
    let third = file["analyses"][2]["id"].as_str().unwrap().to_string();
    file["analyses"][0]["created_at"] = json!("-5000-01-01T00:00:00Z");
    file["analyses"][1]["updated_at"] = json!("2016-12-31T23:59:60Z");
    file["analyses"][2]["artifact"]["created_at"] = json!("2026-01-01T00:00:00.1234567Z");
    let path = write_edited(dir.path(), "times.json", file);
    let output = golden(None, dir.path())
        .args(["verify", "--json"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", stderr_of(&output));
    let problems = problems_of(&json_of(&output));
    for (at, what) in [
        (format!("analysis {first}"), "before 4714-11-24 BC"),
        (format!("analysis {second}"), "leap second"),
        (format!("analysis {third}, artifact"), "microsecond"),
    ] {
        assert!(
            problems
                .iter()
                .any(|(place, problem)| place.starts_with(&at) && problem.contains(what)),
            "{at}: {what} in {problems:?}"
        );
    }

    // The first instant PostgreSQL stores restores, and the database agrees with the file.
    let mut edge = sample();
    edge["analyses"][0]["created_at"] = json!("-4713-11-24T00:00:00.000000Z");
    edge["analyses"][1]["updated_at"] = json!("2016-12-31T23:59:59.999999Z");
    let edge = write_edited(dir.path(), "edge.json", edge);
    let db = TestDb::migrated();
    ok(&restore_json(&db, dir.path(), &[edge.to_str().unwrap()]));
    golden(Some(&db), dir.path())
        .args(["verify", "--against-db"])
        .arg(&edge)
        .assert()
        .code(0);
}

#[test]
fn a_latin1_database_is_checked_before_the_first_write() {
    let dir = workdir();
    let mut file = sample();
    file["analyses"][34]["chunks"][0]["content"] = json!("An emoji 😀 that LATIN1 cannot hold");
    let emoji = write_edited(dir.path(), "emoji.json", file);
    let db = TestDb::migrated_with_encoding("LATIN1");
    for extra in [vec![], vec!["--replace", "--yes"]] {
        let mut args = extra.clone();
        args.push(emoji.to_str().unwrap());
        let output = restore_json(&db, dir.path(), &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{extra:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains("LATIN1"),
            "{}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains("U+1F600"),
            "{}",
            stderr_of(&output)
        );
        assert_eq!(
            db.count("SELECT count(*) FROM analyses"),
            0,
            "{extra:?}: nothing written"
        );
    }

    // Characters LATIN1 holds are restored, and read back equal.
    let mut file = sample();
    file["analyses"][34]["chunks"][0]["content"] = json!("Crème brûlée, déjà vu");
    let accents = write_edited(dir.path(), "accents.json", file);
    ok(&restore_json(&db, dir.path(), &[accents.to_str().unwrap()]));
    golden(Some(&db), dir.path())
        .args(["verify", "--against-db"])
        .arg(&accents)
        .assert()
        .code(0);
}

/// The peak resident memory of a finished child, in kilobytes (wait4's rusage).
fn wait_with_peak_rss(child: Child) -> (std::process::ExitStatus, i64) {
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value; wait4 fills it for this unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: wait4 on our own child's pid with valid pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    use std::os::unix::process::ExitStatusExt;
    (std::process::ExitStatus::from_raw(status), usage.ru_maxrss)
}

#[test]
fn one_analysis_of_a_hundred_thousand_chunks_restores_in_bounded_memory() {
    const CHUNKS: usize = 100_000;
    let dir = workdir();
    let path = dir.path().join("huge.json");
    {
        use std::io::Write;
        let mut out = std::io::BufWriter::new(fs::File::create(&path).unwrap());
        write!(
            out,
            r#"{{"version": "1.0", "metadata": {{"total_analyses": 1, "total_chunks": {CHUNKS}, "total_artifacts": 0}},
"analyses": [{{"id": "6b1c7f2e-3d4a-4e5b-8c9d-0a1b2c3d4e5f", "url": "https://docs.rs/big", "title": "Big",
"content_type": "article", "status": "completed", "created_at": "2026-01-01T00:00:00Z",
"updated_at": "2026-01-01T00:00:00Z", "chunks": ["#
        )
        .unwrap();
        for i in 0..CHUNKS {
            let id = uuid::Uuid::from_u128(0x4000_8000_0000_0000_0000 + i as u128);
            write!(
                out,
                r#"{}{{"id": "{id}", "content": "Chunk number {i} of the one big analysis, with some words to embed.", "section_title": null, "section_path": null, "content_type": "article", "chunk_index": {i}}}"#,
                if i == 0 { "" } else { ",\n" }
            )
            .unwrap();
        }
        write!(out, "], \"artifact\": null}}]}}").unwrap();
    }
    let db = TestDb::migrated();
    // Small vectors and no vector index: the test measures golden, not the index build.
    db.execute("DROP INDEX chunks_embedding_hnsw_idx");
    db.execute("ALTER TABLE chunks ALTER COLUMN embedding TYPE vector(8)");
    let child = Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .args([
            "restore",
            "-q",
            "--replace",
            "--yes",
            "--embed-provider",
            "hash",
            "--embed-dims",
            "8",
            "--embed-no-cache",
        ])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let (status, peak_kb) = wait_with_peak_rss(child);
    assert!(status.success(), "{status}");
    assert_eq!(db.count("SELECT count(*) FROM chunks"), CHUNKS as i64);
    // The file is 14 MB; holding the analysis whole took well over 200 MB.
    assert!(
        peak_kb < 80 * 1024,
        "restore: peak RSS {} MB",
        peak_kb / 1024
    );

    // Reading the analysis back, and comparing it with the file, stays as small.
    let metadata = dir.path().join("meta.json");
    for (what, args) in [
        (
            "backup",
            vec![
                "backup",
                "-q",
                "--output",
                "back.json",
                "--metadata",
                metadata.to_str().unwrap(),
            ],
        ),
        (
            "verify --against-db",
            vec!["verify", "-q", "--against-db", path.to_str().unwrap()],
        ),
    ] {
        let child = Command::new(env!("CARGO_BIN_EXE_golden"))
            .current_dir(dir.path())
            .env("DATABASE_URL", &db.url)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let (status, peak_kb) = wait_with_peak_rss(child);
        assert!(status.success(), "{what}: {status}");
        assert!(
            peak_kb < 80 * 1024,
            "{what}: peak RSS {} MB",
            peak_kb / 1024
        );
    }
}

#[test]
fn the_dry_run_plans_exactly_what_the_restore_does_and_says_why_rows_are_skipped() {
    let dir = workdir();
    let db = TestDb::migrated();
    let file = sample();
    let analysis = &file["analyses"][0];
    let analysis_id = analysis["id"].as_str().unwrap();
    // Another tool wrote this analysis, with a chunk of its own at index 0 and an artifact.
    db.execute(&format!(
        "INSERT INTO analyses (id, url, content_type, status) VALUES ('{analysis_id}', 'https://docs.rs/x', 'article', 'completed')"
    ));
    db.execute(&format!(
        "INSERT INTO chunks (analysis_id, content, content_type, chunk_index) VALUES ('{analysis_id}', 'theirs', 'article', 0)"
    ));
    db.execute(&format!(
        "INSERT INTO artifacts (analysis_id, summary) VALUES ('{analysis_id}', 'their summary')"
    ));
    let plan = ok(&restore_json(
        &db,
        dir.path(),
        &[
            "--dry-run",
            "--embed-batch-size",
            "16",
            sample_path().to_str().unwrap(),
        ],
    ));
    let done = ok(&restore_json(
        &db,
        dir.path(),
        &["--embed-batch-size", "16", sample_path().to_str().unwrap()],
    ));
    for (planned, did) in [
        ("analyses_to_insert", "analyses_inserted"),
        ("analyses_to_skip", "analyses_skipped"),
        ("chunks_to_insert", "chunks_inserted"),
        ("chunks_to_skip", "chunks_skipped"),
        ("chunks_to_skip_place_taken", "chunks_skipped_place_taken"),
        ("artifacts_to_insert", "artifacts_inserted"),
        ("artifacts_to_skip", "artifacts_skipped"),
        (
            "artifacts_to_skip_place_taken",
            "artifacts_skipped_place_taken",
        ),
        ("queries_to_insert", "queries_inserted"),
        ("embeddings_to_compute", "embeddings_computed"),
        ("embeddings_reused", "embeddings_reused"),
        ("embedding_requests_needed", "embedding_requests"),
    ] {
        assert_eq!(
            plan[planned], done[did],
            "{planned} = {did}\n{plan:#}\n{done:#}"
        );
    }
    assert_eq!(done["chunks_skipped_place_taken"], 1);
    assert_eq!(done["artifacts_skipped_place_taken"], 1);
    assert_eq!(
        plan["embeddings_needed"].as_u64(),
        done["chunks_inserted"].as_u64(),
        "only chunks that are inserted are embedded"
    );
}

#[test]
fn identical_texts_are_embedded_once_and_the_counts_add_up() {
    let dir = workdir();
    let mut file = sample();
    for chunk in file["analyses"][0]["chunks"].as_array_mut().unwrap() {
        chunk["content"] = json!("The same text in every chunk of this analysis.");
    }
    let chunks = file["analyses"][0]["chunks"].as_array().unwrap().len() as u64;
    assert!(chunks >= 2);
    let path = write_edited(dir.path(), "same.json", file);
    let db = TestDb::migrated();
    let done = ok(&restore_json(&db, dir.path(), &[path.to_str().unwrap()]));
    let (inserted, computed, reused) = (
        done["chunks_inserted"].as_u64().unwrap(),
        done["embeddings_computed"].as_u64().unwrap(),
        done["embeddings_reused"].as_u64().unwrap(),
    );
    assert_eq!(computed + reused, inserted, "{done:#}");
    assert_eq!(reused, chunks - 1, "{done:#}");
}

#[test]
fn a_size_the_vector_index_cannot_hold_fails_before_anything_is_embedded() {
    let db = TestDb::with_sample();
    let before = db.digest();
    let cached = db.count("SELECT count(*) FROM embedding_cache");
    let dir = workdir();
    let output = golden(Some(&db), dir.path())
        .args([
            "regenerate-embeddings",
            "--embed-provider",
            "hash",
            "--embed-dims",
            "2048",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("at most 2000 dimensions"),
        "{}",
        stderr_of(&output)
    );
    assert!(
        stderr_of(&output).contains("halfvec"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(
        db.count("SELECT count(*) FROM pending_embeddings"),
        0,
        "nothing was paid for"
    );
    assert_eq!(db.count("SELECT count(*) FROM embedding_cache"), cached);
    assert_eq!(db.digest(), before);
}

#[test]
fn durations_past_a_day_are_usage_errors_not_panics() {
    let dir = workdir();
    for (flag, env) in [
        (Some("18446744073709551615"), None),
        (None, Some("18446744073709551615")),
        (Some("86401"), None),
    ] {
        let mut command = golden(None, dir.path());
        command.args(["restore", "--embed-provider", "hash", "--dry-run"]);
        if let Some(value) = flag {
            command.args(["--embed-timeout", value]);
        }
        if let Some(value) = env {
            command.env("GOLDEN_EMBED_TIMEOUT", value);
        }
        let output = command.arg(sample_path()).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{flag:?} {env:?}: {}",
            stderr_of(&output)
        );
        assert!(
            !stderr_of(&output).contains("panicked"),
            "{}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains("--embed-timeout"),
            "{}",
            stderr_of(&output)
        );
    }
}
