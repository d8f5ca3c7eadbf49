//! The default `golden restore` (append) takes the bulk path when it pays (`restore::bulk`):
//! into an empty database, one transaction that drops the vector index, COPYs the rows and
//! builds the index once. It must give what `--replace` gives, be all or nothing, keep the
//! append's rules (rows that exist or whose place is taken are skipped), leave the vectors it
//! computed in the cache for a rerun, and not rebuild anything when there is nothing to write.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::embed_server::{EmbedServer, Fault, Protocol};
use common::{golden, json_of, sample_path, stderr_of, stdout_of, workdir, TestDb};
use serde_json::Value;

fn restore(db: &TestDb, dir: &Path, args: &[&str]) -> Output {
    let mut cmd = golden(Some(db), dir);
    cmd.args(["restore", "--json"]).args(args);
    if !args.contains(&"--embed-provider") {
        cmd.args(["--embed-provider", "hash"]);
    }
    cmd.output().unwrap()
}

fn ok(output: &Output) -> Value {
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(output));
    json_of(output)
}

fn sample() -> String {
    sample_path().to_str().unwrap().to_string()
}

/// The restore's counts, to compare two restores.
fn counts(summary: &Value) -> Vec<(String, Value)> {
    [
        "analyses_inserted",
        "analyses_skipped",
        "chunks_inserted",
        "chunks_skipped",
        "chunks_skipped_place_taken",
        "artifacts_inserted",
        "artifacts_skipped",
        "artifacts_skipped_place_taken",
        "queries_inserted",
        "queries_skipped",
        "file_keys_kept_from_database",
    ]
    .iter()
    .map(|key| (key.to_string(), summary[key].clone()))
    .collect()
}

fn rows_in(db: &TestDb) -> i64 {
    db.count(
        "(SELECT count(*) FROM analyses) + (SELECT count(*) FROM chunks) + \
         (SELECT count(*) FROM artifacts) + (SELECT count(*) FROM artifact_versions) + \
         (SELECT count(*) FROM queries) + (SELECT count(*) FROM dataset_extras)",
    )
}

#[test]
fn an_append_into_an_empty_database_gives_exactly_what_replace_gives() {
    let dir = workdir();
    let flat = common::dialects::skillforge_flat_2(dir.path());
    for file in [sample(), flat.arg().to_string()] {
        let appended = TestDb::migrated();
        let index = appended
            .vector_index()
            .expect("the migration's vector index");
        let plan = ok(&restore(&appended, dir.path(), &["--dry-run", &file]));
        assert_eq!(plan["bulk"], true, "{file}: the plan says the bulk path");
        let summary = ok(&restore(&appended, dir.path(), &[&file]));
        assert_eq!(summary["bulk_load"], true, "{file}");
        assert_eq!(summary["replaced"], false, "{file}");

        let replaced = TestDb::migrated();
        let safety = dir
            .path()
            .join(format!("safety-{}.json", uuid::Uuid::new_v4()));
        let reference = ok(&restore(
            &replaced,
            dir.path(),
            &[
                "--replace",
                "--yes",
                "--safety-backup",
                safety.to_str().unwrap(),
                &file,
            ],
        ));
        assert_eq!(counts(&summary), counts(&reference), "{file}");
        assert!(rows_in(&appended) > 0);
        assert_eq!(
            appended.content_digest(),
            replaced.content_digest(),
            "{file}: every row, value and vector as --replace writes them"
        );
        let (definition, filenode) = appended.vector_index().expect("the index is back");
        assert_eq!(definition, index.0, "{file}: the same index");
        assert_ne!(filenode, index.1, "{file}: built again, once");
        assert_eq!(
            appended.count("SELECT count(*) FROM pg_indexes WHERE tablename = 'chunks'"),
            replaced.count("SELECT count(*) FROM pg_indexes WHERE tablename = 'chunks'")
        );
    }
}

#[test]
fn the_same_append_again_changes_nothing_and_rebuilds_nothing() {
    let db = TestDb::migrated();
    let dir = workdir();
    assert_eq!(
        ok(&restore(&db, dir.path(), &[&sample()]))["bulk_load"],
        true
    );
    let digest = db.full_digest();
    let index = db.vector_index().expect("the vector index");

    let plan = ok(&restore(&db, dir.path(), &["--dry-run", &sample()]));
    assert_eq!(
        plan["bulk"], false,
        "nothing to write: the plan says batch by batch"
    );
    assert_eq!(plan["chunks_to_insert"], 0);
    let human = golden(Some(&db), dir.path())
        .args([
            "restore",
            "--dry-run",
            "--embed-provider",
            "hash",
            &sample(),
        ])
        .output()
        .unwrap();
    assert!(
        stdout_of(&human).contains("path      batch by batch")
            && stdout_of(&human).contains("0 chunks to write, 188 in the table"),
        "{}",
        stdout_of(&human)
    );

    let second = ok(&restore(&db, dir.path(), &[&sample()]));
    assert_eq!(second["bulk_load"], false);
    assert_eq!(second["chunks_inserted"], 0);
    assert_eq!(second["chunks_skipped"], 188);
    assert_eq!(second["embedding_requests"], 0);
    assert_eq!(db.full_digest(), digest, "the second run changed nothing");
    assert_eq!(
        db.vector_index(),
        Some(index),
        "the index was neither dropped nor built again"
    );
}

#[test]
fn without_a_vector_index_or_with_embed_no_cache_an_append_goes_batch_by_batch() {
    let dir = workdir();
    for (drop_index, flags) in [(true, vec![]), (false, vec!["--embed-no-cache"])] {
        let db = TestDb::migrated();
        if drop_index {
            db.drop_vector_index();
        }
        let index = db.vector_index();
        let mut args = flags.clone();
        args.extend(["--dry-run", "--embed-provider", "hash"]);
        let file = sample();
        args.push(&file);
        let human = golden(Some(&db), dir.path())
            .arg("restore")
            .args(&args)
            .output()
            .unwrap();
        let why = if drop_index {
            "chunks has no vector index"
        } else {
            "--embed-no-cache"
        };
        assert!(
            stdout_of(&human).contains(&format!(
                "path      batch by batch, each committed, the vector index kept: {why}"
            )),
            "{}",
            stdout_of(&human)
        );
        let mut args = flags.clone();
        args.push(&file);
        let summary = ok(&restore(&db, dir.path(), &args));
        assert_eq!(summary["bulk_load"], false, "{flags:?}");
        assert_eq!(summary["chunks_inserted"], 188);
        assert_eq!(db.vector_index(), index, "{flags:?}: the index as it was");
    }
}

/// A database holding part of the sample, as an interrupted or older run left it, and rows
/// other programs wrote: the sample's last 20 analyses are missing; one remaining chunk was
/// re-chunked by another tool (its place has another id); one missing analysis was written
/// again by another tool with another status and an artifact of its own.
fn part_of_the_sample_and_rows_of_another_tool(db: &TestDb, dir: &Path) {
    ok(&restore(db, dir, &[&sample()]));
    for statement in [
        "DELETE FROM queries WHERE id IN (SELECT id FROM queries ORDER BY id LIMIT 5)",
        "CREATE TABLE gone AS SELECT id FROM analyses ORDER BY created_at DESC, id LIMIT 20",
        "DELETE FROM analyses WHERE id IN (SELECT id FROM gone)",
        "INSERT INTO analyses (id, url, content_type, status) \
         SELECT id, 'https://docs.rs/another-tool', 'article', 'draft' FROM gone ORDER BY id LIMIT 1",
        "INSERT INTO artifacts (id, analysis_id, summary) \
         SELECT gen_random_uuid(), id, 'written by another tool' FROM gone ORDER BY id LIMIT 1",
        "DROP TABLE gone",
        "UPDATE chunks SET id = gen_random_uuid(), content = 'another tool''s chunk' \
         WHERE id = (SELECT id FROM chunks ORDER BY id LIMIT 1)",
    ] {
        db.execute(statement);
    }
}

#[test]
fn rows_that_exist_or_whose_place_is_taken_are_skipped_on_the_bulk_path_as_batch_by_batch() {
    let dir = workdir();
    let bulk = TestDb::migrated();
    part_of_the_sample_and_rows_of_another_tool(&bulk, dir.path());
    let batches = TestDb::migrated();
    part_of_the_sample_and_rows_of_another_tool(&batches, dir.path());
    batches.drop_vector_index();
    // The other tool's rows, which neither path may touch.
    let theirs = "SELECT count(*) FROM analyses a JOIN artifacts r ON r.analysis_id = a.id \
                  WHERE a.status = 'draft' AND a.url = 'https://docs.rs/another-tool' \
                  AND r.summary = 'written by another tool'";
    assert_eq!(bulk.count(theirs), 1);

    let plan = ok(&restore(&bulk, dir.path(), &["--dry-run", &sample()]));
    let by_bulk = ok(&restore(&bulk, dir.path(), &[&sample()]));
    assert_eq!(plan["bulk"], true, "about half the rows to write pays");
    assert_eq!(by_bulk["bulk_load"], true);
    let by_batches = ok(&restore(&batches, dir.path(), &[&sample()]));
    assert_eq!(by_batches["bulk_load"], false);

    assert_eq!(counts(&by_bulk), counts(&by_batches));
    assert_eq!(by_bulk["chunks_skipped_place_taken"], 1);
    assert_eq!(by_bulk["artifacts_skipped_place_taken"], 1);
    assert_eq!(by_bulk["analyses_skipped"], 24);
    assert_eq!(by_bulk["queries_inserted"], 5);
    assert_eq!(plan["chunks_to_insert"], by_bulk["chunks_inserted"]);
    assert_eq!(
        bulk.count(theirs),
        1,
        "the other tool's rows are as they were"
    );
    assert_eq!(
        bulk.count("SELECT count(*) FROM chunks WHERE content = 'another tool''s chunk'"),
        1
    );
    assert_eq!(bulk.count("SELECT count(*) FROM chunks"), 188);
    assert_eq!(batches.count("SELECT count(*) FROM chunks"), 188);
    // Both paths end with the same rows. Another tool's rows differ between the two databases
    // (random ids, the time of the insert): compare every other row, vectors included.
    let file_rows = "SELECT md5( \
         (SELECT string_agg(c::text, '|' ORDER BY c.id) FROM chunks c \
          WHERE c.content <> 'another tool''s chunk') || \
         (SELECT string_agg(a::text, '|' ORDER BY a.id) FROM analyses a WHERE a.status <> 'draft') || \
         (SELECT string_agg(r::text, '|' ORDER BY r.id) FROM artifacts r \
          WHERE r.summary <> 'written by another tool'))";
    let digest = |db: &TestDb| {
        #[derive(diesel::QueryableByName)]
        struct Digest {
            #[diesel(sql_type = diesel::sql_types::Text)]
            d: String,
        }
        use diesel::RunQueryDsl;
        diesel::sql_query(format!("SELECT ({file_rows}) AS d"))
            .get_result::<Digest>(&mut db.conn())
            .unwrap()
            .d
    };
    assert_eq!(digest(&bulk), digest(&batches));
    assert!(bulk.vector_index().is_some());
}

#[test]
fn a_provider_failure_leaves_the_empty_database_empty_and_the_rerun_reuses_what_was_computed() {
    let server = EmbedServer::start(Protocol::OpenAi);
    // Requests of 8 chunks, one at a time: 8 answered, then the provider is down.
    server.fail_after(8, Fault::Status(500, "down", None));
    let db = TestDb::migrated();
    let dir = workdir();
    let args = [
        "--embed-provider",
        "openai",
        "--embed-url",
        &server.url,
        "--embed-max-retries",
        "0",
        "--embed-batch-size",
        "8",
        "--embed-concurrency",
        "1",
        &sample(),
    ];
    let failed = restore(&db, dir.path(), &args);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
    let stderr = stderr_of(&failed);
    assert!(stderr.contains("HTTP 500"), "{stderr}");
    assert!(
        stderr.contains("rolled back") && stderr.contains("holds what it held before"),
        "{stderr}"
    );
    assert_eq!(
        rows_in(&db),
        0,
        "all or nothing: the database is still empty"
    );
    assert!(db.vector_index().is_some(), "and keeps its index");
    // Each window's vectors are committed to the cache once its requests are answered.
    let cached = db.count("SELECT count(*) FROM embedding_cache");
    assert!(
        (8..=64).contains(&cached),
        "{cached} vectors of the 8 answered requests are in the cache"
    );

    server.heal();
    let before = server.request_count();
    let resumed = ok(&restore(&db, dir.path(), &args));
    assert_eq!(resumed["bulk_load"], true);
    assert_eq!(resumed["embeddings_computed"], 188 - cached);
    assert_eq!(resumed["embeddings_reused"], cached);
    let texts_sent: usize = server.requests()[before..]
        .iter()
        .map(|r| r.body["input"].as_array().unwrap().len())
        .sum();
    assert_eq!(
        texts_sent as i64,
        188 - cached,
        "only what the cache lacks is sent"
    );

    let clean = TestDb::migrated();
    ok(&restore(&clean, dir.path(), &args));
    assert_eq!(db.content_digest(), clean.content_digest());
}

#[test]
fn a_rerun_after_an_interrupted_batch_by_batch_run_ends_with_the_file_whichever_path_it_takes() {
    let server = EmbedServer::start(Protocol::OpenAi);
    let dir = workdir();
    let args = [
        "--embed-provider",
        "openai",
        "--embed-url",
        &server.url,
        "--embed-max-retries",
        "0",
        "--embed-batch-size",
        "8",
        "--embed-concurrency",
        "1",
        &sample(),
    ];
    let clean = TestDb::migrated();
    ok(&restore(&clean, dir.path(), &args));

    for rerun_has_the_index in [true, false] {
        let db = TestDb::migrated();
        db.drop_vector_index();
        server.fail_after(
            server.request_count() + 12,
            Fault::Status(500, "down", None),
        );
        let failed = restore(&db, dir.path(), &args);
        assert_eq!(failed.status.code(), Some(1), "{}", stderr_of(&failed));
        let committed = db.count("SELECT count(*) FROM analyses");
        assert!(
            (10..43).contains(&committed),
            "{committed} analyses committed"
        );
        server.heal();
        if rerun_has_the_index {
            db.create_vector_index();
        }
        let resumed = ok(&restore(&db, dir.path(), &args));
        // Half the rows to write next to half in the table: the bulk path, if it can.
        assert_eq!(resumed["bulk_load"], rerun_has_the_index);
        assert_eq!(resumed["analyses_skipped"], committed);
        assert_eq!(db.content_digest(), clean.content_digest());
    }
}

/// A generated dataset of 1000 analyses (about 4200 chunks) in a backup file: its bulk append
/// takes a few seconds, its index build about one.
fn generated_file(dir: &Path) -> PathBuf {
    let source = TestDb::migrated();
    golden(Some(&source), dir)
        .args(["generate", "--analyses", "1000"])
        .assert()
        .code(0);
    let file = dir.join("generated.json");
    golden(Some(&source), dir)
        .args(["backup", "--status", "all", "--output"])
        .arg(&file)
        .arg("--metadata")
        .arg(dir.join("generated-metadata.json"))
        .assert()
        .code(0);
    file
}

fn append_command(db: &TestDb, dir: &Path, file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_golden"));
    command
        .current_dir(dir)
        .env("DATABASE_URL", &db.url)
        .env_remove("RUST_LOG")
        .args(["restore", "--json", "--embed-provider", "hash"])
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn wait_within(mut child: std::process::Child, limit: Duration) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still running {limit:?} after the signal");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn sigint(child: &std::process::Child) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped yet.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGINT) }, 0);
}

fn index_build_running(db: &TestDb) -> bool {
    db.count(&format!(
        "SELECT count(*) FROM pg_stat_progress_create_index WHERE datname = '{}'",
        db.name
    )) > 0
}

/// Empties the dataset and the cache, as a fresh database.
fn empty(db: &TestDb) {
    db.execute(
        "TRUNCATE chunks, artifacts, artifact_versions, analyses, pending_embeddings, queries, \
         dataset_extras, embedding_cache",
    );
}

#[test]
fn ctrl_c_at_seeded_moments_of_a_bulk_append_rolls_it_all_back_or_commits_it_never_a_part() {
    let dir = workdir();
    let file = generated_file(dir.path());
    let db = TestDb::migrated();
    let started = Instant::now();
    let full = ok(&append_command(&db, dir.path(), &file).output().unwrap());
    let duration = started.elapsed();
    assert_eq!(full["bulk_load"], true);
    let chunks = full["chunks_inserted"].as_i64().unwrap();
    let new = db.content_digest();

    let mut outcomes = (0, 0);
    for trial in 0..8u64 {
        empty(&db);
        let child = append_command(&db, dir.path(), &file).spawn().unwrap();
        let label = if trial == 0 {
            // Once inside the index build, the longest statement of the run.
            let deadline = Instant::now() + Duration::from_secs(120);
            while !index_build_running(&db) {
                assert!(
                    Instant::now() < deadline,
                    "the append reached its index build"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            sigint(&child);
            "during the index build".to_string()
        } else {
            // Seeded fractions of the run, from the start to just past its end.
            let delay = duration.mul_f64((trial * 37 % 100) as f64 / 90.0);
            std::thread::sleep(delay);
            sigint(&child);
            format!("trial {trial} at {delay:?} of {duration:?}")
        };
        let output = wait_within(child, Duration::from_secs(120));
        let stderr = stderr_of(&output);
        eprintln!("{label}: exit {:?}", output.status.code());
        if trial == 0 {
            assert_eq!(output.status.code(), Some(130), "{label}: {stderr}");
        }
        match output.status.code() {
            Some(130) => {
                outcomes.0 += 1;
                assert_eq!(
                    rows_in(&db),
                    0,
                    "{label}: exit 130 but rows were kept\n{stderr}"
                );
                assert!(
                    stderr.contains("the append was rolled back"),
                    "{label}: {stderr}"
                );
                assert!(!stderr.contains("the work is saved"), "{label}: {stderr}");
                // The vectors computed before the signal were committed to the cache: a rerun
                // takes them from there.
                let cached = db.count("SELECT count(*) FROM embedding_cache");
                let rerun = ok(&append_command(&db, dir.path(), &file).output().unwrap());
                assert_eq!(rerun["bulk_load"], true, "{label}");
                let reused = rerun["embeddings_reused"].as_i64().unwrap();
                let computed = rerun["embeddings_computed"].as_i64().unwrap();
                assert_eq!(reused + computed, chunks, "{label}");
                assert!(
                    reused >= cached,
                    "{label}: {reused} reused, {cached} cached"
                );
                assert!(computed <= chunks - cached, "{label}");
            }
            Some(0) => {
                outcomes.1 += 1;
                if stderr.contains("interrupted") {
                    assert!(
                        stderr.contains("after the commit") || stderr.contains("during a commit"),
                        "{label}: interrupted, then committed\n{stderr}"
                    );
                }
            }
            None if output.status.signal().is_some() => {
                // Killed before golden installed its handler: nothing was written yet.
                assert_eq!(rows_in(&db), 0, "{label}");
                ok(&append_command(&db, dir.path(), &file).output().unwrap());
            }
            other => panic!("{label}: exit {other:?}\n{stderr}"),
        }
        assert_eq!(
            db.content_digest(),
            new,
            "{label}: the rerun ends with the file"
        );
        assert!(db.vector_index().is_some(), "{label}");
    }
    assert!(
        outcomes.0 > 1,
        "some signals landed before the commit: {outcomes:?}"
    );
}

/// A login role that may read and write the dataset's tables but owns none of them, as an
/// application's role usually is; dropped when the guard goes.
struct AppRole {
    name: String,
    admin: TestDb,
}

impl AppRole {
    /// Created before the database it is granted on, so that it is dropped after it.
    fn new() -> AppRole {
        let name = format!("golden_app_{}", std::process::id());
        let admin = TestDb::migrated();
        admin.execute(&format!("DROP ROLE IF EXISTS {name}"));
        admin.execute(&format!("CREATE ROLE {name} LOGIN"));
        AppRole { name, admin }
    }

    fn grant_on(&self, db: &TestDb) {
        let name = &self.name;
        for grant in [
            format!("GRANT USAGE ON SCHEMA public TO {name}"),
            format!(
                "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {name}"
            ),
            format!("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {name}"),
        ] {
            db.execute(&grant);
        }
    }

    /// `db`'s URL with this role as the user.
    fn url(&self, db: &TestDb) -> String {
        db.url.replacen("postgres@", &format!("{}@", self.name), 1)
    }
}

impl Drop for AppRole {
    fn drop(&mut self) {
        use diesel::connection::SimpleConnection;
        // The role's grants live in the test's database, dropped before this guard.
        let _ = self
            .admin
            .conn()
            .batch_execute(&format!("DROP ROLE IF EXISTS {}", self.name));
    }
}

#[test]
fn a_role_that_does_not_own_the_tables_appends_and_replaces_keeping_the_index() {
    let dir = workdir();
    let role = AppRole::new();
    let db = TestDb::migrated();
    role.grant_on(&db);
    let as_app = |args: &[&str]| {
        golden(None, dir.path())
            .env("DATABASE_URL", role.url(&db))
            .args(args)
            .args(["--embed-provider", "hash"])
            .output()
            .unwrap()
    };
    let plan = ok(&as_app(&["restore", "--dry-run", "--json", &sample()]));
    assert_eq!(plan["bulk"], Value::Bool(false), "{plan:#}");
    let appended = ok(&as_app(&["restore", "--json", &sample()]));
    assert_eq!(appended["bulk_load"], Value::Bool(false), "{appended:#}");
    assert_eq!(appended["chunks_inserted"], serde_json::json!(188));
    let safety = dir.path().join("safety.json");
    ok(&as_app(&[
        "restore",
        "--json",
        "--replace",
        "--yes",
        "--safety-backup",
        safety.to_str().unwrap(),
        &sample(),
    ]));
    assert_eq!(
        db.count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'"),
        1
    );
    db.assert_holds_the_sample();
}

#[test]
fn the_vector_index_built_again_keeps_its_comment() {
    let dir = workdir();
    let db = TestDb::migrated();
    db.execute("COMMENT ON INDEX chunks_embedding_hnsw_idx IS 'tuned by the search team'");
    let appended = ok(&restore(&db, dir.path(), &[&sample()]));
    assert_eq!(appended["bulk_load"], Value::Bool(true), "{appended:#}");
    assert_eq!(
        db.count(
            "SELECT count(*) FROM pg_class WHERE relname = 'chunks_embedding_hnsw_idx' \
             AND obj_description(oid, 'pg_class') = 'tuned by the search team'"
        ),
        1
    );
}
