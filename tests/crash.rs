//! Crash consistency: `restore` killed with SIGKILL at seeded random moments. A replace
//! leaves exactly the old data or exactly the new, never a mix; an append finishes, when run
//! again, with exactly the file's rows. Two restores at once do not corrupt each other, and a
//! run waiting for another's lock stops at once on Ctrl-C.

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::{sample_path, stderr_of, workdir, TestDb};

const TRIALS: u64 = 20;

/// The trial's delay before the kill: deterministic (seeded), spread over a restore's run.
fn delay(trial: u64) -> Duration {
    let mut x = 0x5eed_u64 ^ (trial.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    Duration::from_millis(x % 900)
}

fn restore_command(db: &TestDb, dir: &std::path::Path, replace: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_golden"));
    command
        .current_dir(dir)
        .env("DATABASE_URL", &db.url)
        .args([
            "restore",
            "-q",
            "--embed-provider",
            "hash",
            "--embed-batch-size",
            "16",
            "--embed-concurrency",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if replace {
        command.args(["--replace", "--yes"]);
    }
    command.arg(sample_path());
    command
}

/// The digest of a database holding exactly the sample, restored.
fn digest_of_the_sample() -> String {
    TestDb::with_sample().digest()
}

#[test]
fn a_killed_replace_leaves_the_old_data_or_the_new_never_a_mix() {
    let new = digest_of_the_sample();
    let db = TestDb::migrated();
    let dir = workdir();
    db.restore_sample();
    let make_old = || db.execute("UPDATE artifacts SET summary = 'the old summary'");
    make_old();
    let old = db.digest();
    assert_ne!(old, new);

    let mut outcomes = (0, 0);
    for trial in 0..TRIALS {
        let mut child = restore_command(&db, dir.path(), true).spawn().unwrap();
        std::thread::sleep(delay(trial));
        let _ = child.kill();
        let _ = child.wait();
        let now = db.digest();
        if now == old {
            outcomes.0 += 1;
        } else {
            assert_eq!(
                now,
                new,
                "trial {trial} ({:?}): neither the old data nor the new",
                delay(trial)
            );
            outcomes.1 += 1;
            make_old();
        }
    }
    assert!(
        outcomes.0 > 0,
        "some kills landed before the commit: {outcomes:?}"
    );
}

#[test]
fn a_killed_append_finishes_with_exactly_the_files_rows_when_run_again() {
    let new = digest_of_the_sample();
    let dir = workdir();
    for trial in 0..TRIALS {
        let db = TestDb::migrated();
        let mut child = restore_command(&db, dir.path(), false).spawn().unwrap();
        std::thread::sleep(delay(trial));
        let _ = child.kill();
        let _ = child.wait();
        let rerun = restore_command(&db, dir.path(), false).output().unwrap();
        assert_eq!(
            rerun.status.code(),
            Some(0),
            "trial {trial}: {}",
            stderr_of(&rerun)
        );
        assert_eq!(db.digest(), new, "trial {trial}");
    }
}

#[test]
fn two_restores_at_once_end_with_the_files_rows() {
    let new = digest_of_the_sample();
    let db = TestDb::migrated();
    let dir = workdir();
    let first = restore_command(&db, dir.path(), true).spawn().unwrap();
    let second = restore_command(&db, dir.path(), false).spawn().unwrap();
    let (first, second) = (
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert_eq!(first.status.code(), Some(0), "{}", stderr_of(&first));
    assert_eq!(second.status.code(), Some(0), "{}", stderr_of(&second));
    assert_eq!(db.digest(), new);
}

#[test]
fn a_killed_dimension_migration_leaves_every_old_vector_or_every_new_one() {
    let regenerate = |db: &TestDb, dims: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_golden"));
        command
            .env("DATABASE_URL", &db.url)
            .args([
                "regenerate-embeddings",
                "-q",
                "--embed-provider",
                "hash",
                "--embed-dims",
                dims,
            ])
            .args([
                "--embed-batch-size",
                "16",
                "--embed-concurrency",
                "1",
                "--commit-every",
                "10",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    let target = TestDb::with_sample();
    let old = target.digest();
    assert!(regenerate(&target, "1536").status().unwrap().success());
    let new = target.digest();
    assert!(regenerate(&target, "1024").status().unwrap().success());
    assert_eq!(target.digest(), old, "back to the same vectors");

    for trial in 0..TRIALS {
        let mut child = regenerate(&target, "1536").spawn().unwrap();
        std::thread::sleep(delay(trial) / 2);
        let _ = child.kill();
        let _ = child.wait();
        let now = target.digest();
        if now != old {
            assert_eq!(now, new, "trial {trial}: a mix of old and new vectors");
            assert!(regenerate(&target, "1024").status().unwrap().success());
        }
    }
    // Whatever the kills left in progress, a full run finishes the migration.
    assert!(regenerate(&target, "1536").status().unwrap().success());
    assert_eq!(target.digest(), new);
}

#[test]
fn a_restore_waits_for_another_writer_and_says_so() {
    let db = TestDb::migrated();
    let dir = workdir();
    let mut holder = db.hold_the_dataset_lock();
    let mut child = Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .args([
            "restore",
            "--embed-provider",
            "hash",
            sample_path().to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        child.try_wait().unwrap().is_none(),
        "it waits while the lock is held"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM analyses"),
        0,
        "and writes nothing meanwhile"
    );
    holder.release();
    let output = child.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stderr_of(&output).contains("another golden run is writing to this database; waiting"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(db.count("SELECT count(*) FROM analyses"), 43);
}

#[test]
fn ctrl_c_ends_a_wait_for_the_dataset_lock_at_once() {
    let db = TestDb::with_sample();
    let before = db.digest();
    let dir = workdir();
    let _holder = db.hold_the_dataset_lock();
    let mut child = Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir.path())
        .env("DATABASE_URL", &db.url)
        .args(["regenerate-embeddings", "--embed-provider", "hash", "--all"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read stderr on a thread; signal only once the run says it is waiting.
    let stderr = child.stderr.take().unwrap();
    let (lines, said) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut all = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = lines.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match said.recv_timeout(left) {
            Ok(line) if line.contains("waiting for it to finish") => break,
            Ok(_) => {}
            Err(e) => panic!("the run never said it was waiting: {e}"),
        }
    }
    assert!(child.try_wait().unwrap().is_none(), "it waits for the lock");
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("still waiting for the lock 10 s after Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The lock is still held: the run ended because of Ctrl-C, not because it got it.
    let status = child.wait().unwrap();
    let stderr = reader.join().unwrap();
    assert_eq!(status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted by Ctrl-C"), "{stderr}");
    assert_eq!(db.digest(), before);
}
