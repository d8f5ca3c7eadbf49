//! Interruptions where they land in real use: Ctrl-C (and SIGTERM) during the slowest step of
//! a `restore --replace` (the HNSW index build), while a command waits for another session's
//! table lock, during a regeneration's swap, before a backup's rename, during a `load`. An
//! interruption before the commit rolls back and exits 130; one after it says the work was
//! saved and exits 0; never both. Long server statements end on the first Ctrl-C.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{golden, sample_path, stderr_of, workdir, TestDb};
use diesel::RunQueryDsl;

/// Analyses of the generated dataset: enough that the index build of a replace takes a
/// second or two, long enough to be interrupted inside.
const GENERATED: &str = "1500";

/// A database holding a generated dataset restored from `file`, and that file.
struct Generated {
    db: TestDb,
    file: PathBuf,
    /// The digest of the database right after a clean restore of `file`.
    restored: String,
    _dir: tempfile::TempDir,
}

impl Generated {
    fn new() -> Generated {
        let db = TestDb::migrated();
        let dir = workdir();
        golden(Some(&db), dir.path())
            .args(["generate", "--analyses", GENERATED])
            .assert()
            .code(0);
        let file = dir.path().join("generated.json");
        golden(Some(&db), dir.path())
            .args(["backup", "--status", "all", "--output"])
            .arg(&file)
            .args(["--metadata"])
            .arg(dir.path().join("generated-metadata.json"))
            .assert()
            .code(0);
        let mut replace = restore_replace(&db, dir.path(), &file);
        assert_eq!(replace.status().unwrap().code(), Some(0));
        let restored = db.digest();
        Generated {
            db,
            file,
            restored,
            _dir: dir,
        }
    }

    /// Changes the database so that it no longer holds the file's data; returns its digest.
    fn make_old(&self) -> String {
        self.db
            .execute("UPDATE artifacts SET summary = 'the old summary'");
        self.db.digest()
    }
}

fn restore_replace(db: &TestDb, dir: &Path, file: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_golden"));
    command
        .current_dir(dir)
        .env("DATABASE_URL", &db.url)
        .args(["restore", "--replace", "--yes", "--embed-provider", "hash"])
        .arg("--safety-backup")
        .arg(dir.join(format!("safety-{}.json", uuid::Uuid::new_v4())))
        .arg(file)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

fn signal(child: &Child, signal: i32) {
    // SAFETY: kill(2) on the pid of a child this test spawned and has not reaped yet.
    let sent = unsafe { libc::kill(child.id() as i32, signal) };
    assert_eq!(sent, 0, "the signal was sent");
}

/// Waits for `child` to end, killing it and failing after `limit`.
fn wait_within(mut child: Child, limit: Duration, what: &str) -> Output {
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            let output = child.wait_with_output().unwrap();
            panic!(
                "{what}: still running {limit:?} after the signal\n{}",
                stderr_of(&output)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Polls `condition` every 10 ms for up to `limit`.
fn eventually(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Whether a session of `db` is building an index now.
fn index_build_running(db: &TestDb) -> bool {
    db.count(&format!(
        "SELECT count(*) FROM pg_stat_progress_create_index WHERE datname = '{}'",
        db.name
    )) > 0
}

/// Waits for `child` (`what`) to build an index in `db`, presses Ctrl-C there, and returns how
/// it ended.
fn ctrl_c_in_the_index_build(db: &TestDb, child: Child, what: &str) -> Output {
    assert!(
        eventually(Duration::from_secs(120), || index_build_running(db)),
        "{what} reached its index build"
    );
    signal(&child, libc::SIGINT);
    wait_within(child, Duration::from_secs(60), what)
}

/// Asserts an exit by interruption (130) whose message says `left`.
fn assert_interrupted(output: &Output, left: &str) {
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(output));
    assert!(stderr_of(output).contains(left), "{}", stderr_of(output));
}

/// Asserts the promise: exit 130 and the old data, or exit 0 and the new, and the messages
/// agree with what happened.
fn assert_committed_or_rolled_back(output: &Output, now: &str, old: &str, new: &str, trial: &str) {
    let stderr = stderr_of(output);
    match output.status.code() {
        Some(130) => {
            assert_eq!(now, old, "{trial}: exit 130 but the data changed\n{stderr}");
            // Before its transaction began (still reading the file), a replace has nothing
            // to roll back, and says so.
            assert!(
                stderr.contains("rolled back") || stderr.contains("nothing was changed"),
                "{trial}: {stderr}"
            );
            assert!(!stderr.contains("the work is saved"), "{trial}: {stderr}");
        }
        Some(0) => {
            assert_eq!(
                now, new,
                "{trial}: exit 0 but not the file's data\n{stderr}"
            );
            // Exit 0 after an interruption only when it came during or after the commit,
            // and said so; never after saying that it stops.
            if stderr.contains("interrupted") {
                assert!(
                    stderr.contains("after the commit") || stderr.contains("during a commit"),
                    "{trial}: interrupted, then committed\n{stderr}"
                );
                assert!(
                    !stderr.contains("stopping"),
                    "{trial}: said it stops, then committed\n{stderr}"
                );
            }
        }
        // Killed by the signal before golden installed its handler (the first milliseconds
        // of the process): it had not written anything yet.
        None if output.status.signal().is_some() => {
            assert_eq!(now, old, "{trial}: killed, yet the data changed");
        }
        other => panic!("{trial}: exit {other:?}\n{stderr}"),
    }
}

#[test]
fn ctrl_c_during_the_index_build_of_a_replace_rolls_it_back_and_exits_130() {
    let generated = Generated::new();
    let old = generated.make_old();
    let dir = workdir();
    let child = restore_replace(&generated.db, dir.path(), &generated.file)
        .spawn()
        .unwrap();
    let output = ctrl_c_in_the_index_build(&generated.db, child, "the replace");
    assert_interrupted(
        &output,
        "interrupted by Ctrl-C: the replace was rolled back",
    );
    assert!(
        !stderr_of(&output).contains("quitting at once"),
        "one Ctrl-C was enough: {}",
        stderr_of(&output)
    );
    assert_eq!(generated.db.digest(), old, "rolled back");
    assert!(!index_build_running(&generated.db));
}

#[test]
fn sigint_at_seeded_moments_of_a_replace_commits_or_rolls_back_never_both() {
    let generated = Generated::new();
    let new = generated.restored.clone();
    let dir = workdir();
    // How long an uninterrupted replace takes here, to spread the signals over all of it.
    generated.make_old();
    let started = Instant::now();
    let full = restore_replace(&generated.db, dir.path(), &generated.file)
        .output()
        .unwrap();
    assert_eq!(full.status.code(), Some(0), "{}", stderr_of(&full));
    let duration = started.elapsed();
    assert_eq!(generated.db.digest(), new);
    let mut old = generated.make_old();

    let mut outcomes = (0, 0);
    for trial in 0..8u64 {
        // Seeded fractions of the run, from the start to just past its end.
        let fraction = (trial * 37 % 100) as f64 / 90.0;
        let delay = duration.mul_f64(fraction);
        let mut child = restore_replace(&generated.db, dir.path(), &generated.file)
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_none() {
            signal(&child, libc::SIGINT);
        }
        let output = wait_within(child, Duration::from_secs(120), "the replace");
        let now = generated.db.digest();
        let label = format!("trial {trial} at {delay:?} of {duration:?}");
        assert_committed_or_rolled_back(&output, &now, &old, &new, &label);
        if output.status.code() == Some(0) {
            outcomes.1 += 1;
            old = generated.make_old();
        } else {
            outcomes.0 += 1;
        }
    }
    assert!(
        outcomes.0 > 0,
        "some signals landed before the commit: {outcomes:?}"
    );
}

#[test]
fn ctrl_c_ends_a_replace_waiting_for_another_sessions_table_lock() {
    let db = TestDb::with_sample();
    let before = db.digest();
    let dir = workdir();
    // Another program reads the chunks in a long transaction: the replace's LOCK TABLE waits.
    let mut reader = db.conn();
    diesel::sql_query("BEGIN").execute(&mut reader).unwrap();
    diesel::sql_query("LOCK TABLE chunks IN ACCESS SHARE MODE")
        .execute(&mut reader)
        .unwrap();
    let child = restore_replace(&db, dir.path(), &sample_path())
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(60), || db.count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND wait_event_type = 'Lock' AND query LIKE 'LOCK TABLE%'",
            db.name
        )) > 0),
        "the replace waits for the lock"
    );
    signal(&child, libc::SIGINT);
    // The lock is still held: only a cancelled statement lets the run end.
    let output = wait_within(
        child,
        Duration::from_secs(15),
        "the replace waiting for a lock",
    );
    assert_interrupted(&output, "rolled back");
    diesel::sql_query("ROLLBACK").execute(&mut reader).unwrap();
    assert_eq!(db.digest(), before);
}

#[test]
fn ctrl_c_during_the_swap_of_a_regeneration_keeps_the_old_vectors() {
    let generated = Generated::new();
    let before = generated.db.digest();
    let dir = workdir();
    let child = golden_child(
        &generated.db,
        dir.path(),
        &[
            "regenerate-embeddings",
            "--embed-provider",
            "hash",
            "--embed-dims",
            "512",
        ],
    );
    let output = ctrl_c_in_the_index_build(&generated.db, child, "the regeneration");
    assert_interrupted(&output, "the swap was rolled back");
    assert_eq!(
        generated.db.digest(),
        before,
        "every old vector, the old column"
    );
    assert_eq!(
        generated
            .db
            .count("SELECT count(*) FROM pending_embeddings"),
        generated.db.count("SELECT count(*) FROM chunks"),
        "the new vectors wait for the next run"
    );
}

/// A database holding the sample, and a folder with its `golden dump` at the default path.
fn dumped_sample() -> (TestDb, tempfile::TempDir) {
    let source = TestDb::with_sample();
    let dir = workdir();
    golden(Some(&source), dir.path())
        .arg("dump")
        .assert()
        .code(0);
    (source, dir)
}

fn golden_child(db: &TestDb, dir: &Path, args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir)
        .env("DATABASE_URL", &db.url)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// A connection of another program holding every dataset table in ACCESS EXCLUSIVE mode,
/// inside a transaction, until it is dropped.
fn hold_the_tables(db: &TestDb) -> diesel::PgConnection {
    let mut holder = db.conn();
    diesel::sql_query("BEGIN").execute(&mut holder).unwrap();
    diesel::sql_query("LOCK TABLE analyses, chunks, artifacts, queries IN ACCESS EXCLUSIVE MODE")
        .execute(&mut holder)
        .unwrap();
    holder
}

#[test]
fn ctrl_c_before_a_backups_rename_leaves_the_previous_file_and_no_temp_file() {
    let db = TestDb::with_sample();
    let dir = workdir();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let dest = dir.path().join("data/golden_dataset_backup.json");
    std::fs::write(&dest, "the previous backup").unwrap();
    for (signal_number, name) in [(libc::SIGINT, "Ctrl-C"), (libc::SIGTERM, "SIGTERM")] {
        let holder = hold_the_tables(&db);
        let child = golden_child(&db, dir.path(), &["backup"]);
        assert!(eventually(Duration::from_secs(30), || {
            db.count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock'",
            db.name
        )) > 0
        }));
        signal(&child, signal_number);
        let output = wait_within(child, Duration::from_secs(15), "the backup");
        drop(holder);
        assert_eq!(
            output.status.code(),
            Some(130),
            "{name}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains(&format!(
                "interrupted by {name}: the previous backup file is untouched"
            )),
            "{}",
            stderr_of(&output)
        );
        assert_eq!(
            std::fs::read_to_string(&dest).unwrap(),
            "the previous backup"
        );
        assert_no_temp_files(&dir.path().join("data"));
    }
}

/// A backup's JSON without its `created_at`, which each new backup sets anew.
fn without_created_at(bytes: &[u8]) -> serde_json::Value {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).expect("a whole backup");
    value.as_object_mut().unwrap().remove("created_at");
    value
}

fn assert_no_temp_files(folder: &Path) {
    let leftovers: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".golden-"))
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn sigterm_at_seeded_moments_of_a_backup_leaves_the_old_file_or_the_new_and_no_temp_file() {
    let generated = Generated::new();
    let dir = workdir();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let dest = dir.path().join("data/golden_dataset_backup.json");
    golden(Some(&generated.db), dir.path())
        .args(["backup", "--status", "all"])
        .assert()
        .code(0);
    let new = std::fs::read(&dest).unwrap();
    let started = Instant::now();
    golden(Some(&generated.db), dir.path())
        .args([
            "backup",
            "--status",
            "all",
            "--output",
            "timing.json",
            "--metadata",
            "timing-meta.json",
        ])
        .assert()
        .code(0);
    let duration = started.elapsed();
    for trial in 0..8u64 {
        std::fs::write(&dest, "the previous backup").unwrap();
        let delay = duration.mul_f64((trial * 37 % 100) as f64 / 90.0);
        let child = golden_child(&generated.db, dir.path(), &["backup", "--status", "all"]);
        std::thread::sleep(delay);
        signal(&child, libc::SIGTERM);
        let output = wait_within(child, Duration::from_secs(60), "the backup");
        let now = std::fs::read(&dest).unwrap();
        match output.status.code() {
            Some(130) => assert_eq!(now, b"the previous backup", "trial {trial}"),
            Some(0) => assert_eq!(
                without_created_at(&now),
                without_created_at(&new),
                "trial {trial}"
            ),
            // Killed before golden's handler was installed: nothing was written yet.
            None if output.status.signal().is_some() => {
                assert_eq!(now, b"the previous backup", "trial {trial}")
            }
            other => panic!("trial {trial}: exit {other:?}: {}", stderr_of(&output)),
        }
        assert_no_temp_files(&dir.path().join("data"));
    }
}

#[test]
fn a_load_waits_for_the_dataset_lock_and_ctrl_c_rolls_it_back() {
    let (source, dir) = dumped_sample();
    let target = TestDb::migrated();
    let empty = target.digest();

    // Another golden run writes: the load waits, and loads nothing meanwhile.
    let mut holder = target.hold_the_dataset_lock();
    let child = golden_child(&target, dir.path(), &["load"]);
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        target.digest(),
        empty,
        "nothing is loaded while another run holds the lock"
    );
    // Ctrl-C ends the wait.
    signal(&child, libc::SIGINT);
    let output = wait_within(child, Duration::from_secs(15), "the load");
    assert_eq!(output.status.code(), Some(130), "{}", stderr_of(&output));
    holder.release();

    // Ctrl-C while psql loads (its DROP INDEX waits for a reader's lock): rolled back.
    let mut reader = target.conn();
    diesel::sql_query("BEGIN").execute(&mut reader).unwrap();
    diesel::sql_query("LOCK TABLE chunks IN ACCESS SHARE MODE")
        .execute(&mut reader)
        .unwrap();
    let child = golden_child(&target, dir.path(), &["load"]);
    assert!(eventually(Duration::from_secs(30), || target.count(
        &format!(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' AND wait_event_type = 'Lock' \
         AND application_name LIKE 'golden-load-%'",
        target.name
    )
    ) > 0));
    signal(&child, libc::SIGINT);
    let output = wait_within(child, Duration::from_secs(15), "the load");
    drop(reader);
    assert_interrupted(&output, "the load was rolled back");
    // psql did not outlive golden: no session of it is left, holding locks.
    assert!(
        eventually(Duration::from_secs(10), || target.count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name LIKE 'golden-load-%'",
            target.name
        )) == 0),
        "psql's session ended with golden"
    );
    assert_eq!(target.digest(), empty);

    // Uninterrupted, it loads.
    golden(Some(&target), dir.path())
        .arg("load")
        .assert()
        .code(0);
    assert_eq!(target.digest(), source.digest());
}

#[test]
fn a_load_reads_the_snapshot_it_checked_even_if_the_path_becomes_a_fifo() {
    let (source, dir) = dumped_sample();
    let target = TestDb::migrated();
    let mut holder = target.hold_the_dataset_lock();
    let child = golden_child(&target, dir.path(), &["load"]);
    std::thread::sleep(Duration::from_millis(1500));
    // While the load waits for the lock, its file is swapped for a FIFO nobody writes to.
    let dump = dir.path().join("data/golden_dataset_dump.sql");
    std::fs::rename(&dump, dir.path().join("moved.sql")).unwrap();
    common::make_fifo(&dump);
    holder.release();
    let output = wait_within(child, Duration::from_secs(60), "the load");
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(
        target.digest(),
        source.digest(),
        "the file it opened was loaded"
    );
}

#[test]
fn ctrl_c_while_an_embedding_request_is_in_flight_does_not_wait_for_it() {
    use common::embed_server::{EmbedServer, Protocol};
    let db = TestDb::with_sample();
    db.execute("UPDATE artifacts SET summary = 'the old summary'");
    let before = db.digest();
    let server = EmbedServer::start(Protocol::OpenAi);
    // Slower than the test's patience: only a run that leaves the request behind ends in time.
    server.delay(Duration::from_secs(60));
    let dir = workdir();
    let child = Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .args([
            "restore",
            "--replace",
            "--yes",
            "--embed-provider",
            "openai",
            "--embed-url",
        ])
        .arg(&server.url)
        .args(["--embed-timeout", "120", "--embed-no-cache"])
        .arg(sample_path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert!(eventually(Duration::from_secs(30), || server
        .request_count()
        > 0));
    signal(&child, libc::SIGINT);
    let output = wait_within(child, Duration::from_secs(20), "the replace");
    assert_interrupted(&output, "rolled back");
    assert_eq!(db.digest(), before);
}

#[test]
fn a_snapshot_with_statements_golden_dump_never_writes_is_refused_before_psql_runs_them() {
    let (_source, dir) = dumped_sample();
    let dump = std::fs::read_to_string(dir.path().join("data/golden_dataset_dump.sql")).unwrap();
    let target = TestDb::with_sample();
    target.execute("UPDATE artifacts SET summary = 'the old summary'");
    let before = target.digest();
    let copy_at = dump.find("COPY ").expect("the dump has a COPY");
    for injected in [
        "COMMIT;\nSELECT 1/0;\n",
        "\\set ON_ERROR_STOP off\nSELECT 1/0;\n",
        "\\echo 'golden: ready to commit'\n",
        "\\! touch injected-by-the-snapshot\n",
    ] {
        let crafted = format!("{}{injected}{}", &dump[..copy_at], &dump[copy_at..]);
        std::fs::write(dir.path().join("crafted.sql"), crafted).unwrap();
        let output = golden(Some(&target), dir.path())
            .args(["load", "--replace", "--input", "crafted.sql"])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{injected:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains("is not what `golden dump` writes"),
            "{injected:?}: {}",
            stderr_of(&output)
        );
        assert_eq!(
            target.digest(),
            before,
            "{injected:?}: the delete was not committed"
        );
        assert!(!dir.path().join("injected-by-the-snapshot").exists());
    }
    assert_eq!(
        target
            .count("SELECT count(*) FROM pg_indexes WHERE indexname = 'chunks_embedding_hnsw_idx'"),
        1,
        "the index is still there"
    );
}

#[test]
fn ctrl_c_during_a_loads_index_build_leaves_no_session_holding_locks() {
    let generated = Generated::new();
    let dir = workdir();
    golden(Some(&generated.db), dir.path())
        .arg("dump")
        .assert()
        .code(0);
    let target = TestDb::migrated();
    // A slow index build, long enough to be interrupted in.
    target.execute("DROP INDEX chunks_embedding_hnsw_idx");
    target.execute(
        "CREATE INDEX chunks_embedding_hnsw_idx ON chunks USING hnsw (embedding vector_cosine_ops) \
         WITH (m = 48, ef_construction = 600)",
    );
    let child = golden_child(&target, dir.path(), &["load"]);
    let output = ctrl_c_in_the_index_build(&target, child, "the load");
    assert_interrupted(&output, "the load was rolled back");
    // When golden has exited, psql's session has too: none goes on building, holding locks.
    assert_eq!(
        target.count(&format!(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = '{}' \
             AND application_name LIKE 'golden-load-%'",
            target.name
        )),
        0,
        "psql's session outlived golden"
    );
    let mut reader = target.conn();
    diesel::sql_query("SET lock_timeout = '3s'")
        .execute(&mut reader)
        .unwrap();
    let free = diesel::sql_query("SELECT count(*) FROM chunks").execute(&mut reader);
    assert!(
        free.is_ok(),
        "chunks is still locked after golden exited: {free:?}"
    );
    assert_eq!(target.count("SELECT count(*) FROM chunks"), 0);
}
