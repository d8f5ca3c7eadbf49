//! Paths that must not destroy anything: an output that is one of the command's inputs (by
//! any name: itself, a symlink, a hard link), the same path for two outputs, outputs and
//! inputs that are not regular files (a device, a FIFO, a socket, a folder), safety backups
//! that must never replace a file, and the order in which a backup puts its two files in
//! place.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::{golden, sample_path, stderr_of, workdir, TestDb};

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Asserts a usage error (exit 2) whose message says `why`.
fn assert_refused(output: &Output, why: &str, case: &str) {
    assert_eq!(
        output.status.code(),
        Some(2),
        "{case}: {}",
        stderr_of(output)
    );
    assert!(
        stderr_of(output).contains(why),
        "{case}: {}",
        stderr_of(output)
    );
}

fn replace_with(db: &TestDb, dir: &Path, extra: &[&str], input: &Path) -> Output {
    golden(Some(db), dir)
        .args(["restore", "--replace", "--yes", "--embed-provider", "hash"])
        .args(extra)
        .arg(input)
        .output()
        .unwrap()
}

/// Runs `golden` with `args` and fails if it has not ended after `limit` (a FIFO that blocks).
fn run_within(db: Option<&TestDb>, dir: &Path, args: &[&str], limit: Duration) -> Output {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .envs(db.map(|db| ("DATABASE_URL", db.url.clone())))
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            child.kill().unwrap();
            panic!("golden {args:?} still runs after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

#[test]
fn a_safety_backup_over_the_input_by_any_name_is_refused_before_anything_is_written() {
    let db = TestDb::with_sample();
    db.execute("UPDATE artifacts SET summary = 'the old summary'");
    let before = db.digest();
    let dir = workdir();
    let input = dir.path().join("new.json");
    fs::copy(sample_path(), &input).unwrap();
    let original = fs::read(&input).unwrap();
    std::os::unix::fs::symlink(&input, dir.path().join("link.json")).unwrap();
    fs::hard_link(&input, dir.path().join("hard.json")).unwrap();
    for name in [
        "new.json",
        "./new.json",
        "link.json",
        "hard.json",
        "nd/../new.json",
    ] {
        let output = replace_with(&db, dir.path(), &["--safety-backup", name], &input);
        assert_refused(&output, "is the input file", name);
        assert_eq!(
            fs::read(&input).unwrap(),
            original,
            "{name}: the input is intact"
        );
        assert_eq!(db.digest(), before, "{name}: nothing was written");
        assert!(!dir.path().join("nd").exists(), "{name}: nothing created");
    }
}

#[test]
fn backup_refuses_one_path_for_both_files() {
    let db = TestDb::with_sample();
    let dir = workdir();
    fs::write(dir.path().join("both.json"), "the previous backup").unwrap();
    std::os::unix::fs::symlink("both.json", dir.path().join("alias.json")).unwrap();
    for metadata in ["both.json", "alias.json", "./both.json"] {
        let output = golden(Some(&db), dir.path())
            .args(["backup", "--output", "both.json", "--metadata", metadata])
            .output()
            .unwrap();
        assert_refused(&output, "the same file", metadata);
        assert_eq!(
            fs::read_to_string(dir.path().join("both.json")).unwrap(),
            "the previous backup"
        );
    }
    // A symlink to a folder that does not exist yet: its path and the link's are one file.
    std::os::unix::fs::symlink("nd2", dir.path().join("lnk")).unwrap();
    for (output_path, metadata) in [("nd2/x.json", "lnk/x.json"), ("lnk/x.json", "nd2/x.json")] {
        let output = golden(Some(&db), dir.path())
            .args(["backup", "--output", output_path, "--metadata", metadata])
            .output()
            .unwrap();
        assert_refused(&output, "", &format!("{output_path} {metadata}"));
        assert!(!dir.path().join("nd2").exists(), "nothing created");
    }
    // Neither exists yet, nor its folder: the same new path for both is refused too.
    for (output_path, metadata) in [
        ("new.json", "./new.json"),
        ("nd/x.json", "nd/./x.json"),
        ("nd/x.json", "nd/../nd/x.json"),
        ("nd/sub/../x.json", "nd/x.json"),
    ] {
        let output = golden(Some(&db), dir.path())
            .args(["backup", "--output", output_path, "--metadata", metadata])
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{output_path} {metadata}: {}",
            stderr_of(&output)
        );
        assert!(!dir.path().join("new.json").exists());
        assert!(!dir.path().join("nd").exists(), "nothing created");
    }
}

#[test]
fn outputs_that_are_not_regular_files_are_refused_and_left_as_they_are() {
    let db = TestDb::with_sample();
    let dir = workdir();
    let fifo = dir.path().join("fifo.json");
    common::make_fifo(&fifo);
    let socket = dir.path().join("socket.json");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    fs::create_dir(dir.path().join("folder.json")).unwrap();
    // A character device of the test's own (as root; /dev/null's twin), so that a golden that
    // renames over devices damages nothing of the machine's. Without root, /dev/null itself:
    // a rename over it then fails anyway.
    let device = dir.path().join("null.json");
    let made = std::process::Command::new("mknod")
        .arg(&device)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|status| status.success());
    let device = if made { device } else { "/dev/null".into() };
    let device_before = fs::metadata(&device).unwrap();
    for (path, kind) in [
        (device.to_str().unwrap(), "a character device"),
        ("fifo.json", "a FIFO"),
        ("socket.json", "a socket"),
        ("folder.json", "a folder"),
    ] {
        for args in [
            vec!["backup", "--output", path],
            vec!["backup", "--metadata", path, "--output", "out.json"],
            vec!["dump", "--output", path],
        ] {
            let output = run_within(Some(&db), dir.path(), &args, Duration::from_secs(30));
            assert_refused(&output, kind, &format!("{args:?}"));
        }
    }
    let safety = run_within(
        Some(&db),
        dir.path(),
        &[
            "restore",
            "--replace",
            "--yes",
            "--embed-provider",
            "hash",
            "--safety-backup",
            "fifo.json",
            sample_path().to_str().unwrap(),
        ],
        Duration::from_secs(30),
    );
    assert_eq!(safety.status.code(), Some(2), "{}", stderr_of(&safety));
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::metadata(&device).unwrap().file_type().is_char_device());
    assert_eq!(
        std::os::unix::fs::MetadataExt::ino(&fs::metadata(&device).unwrap()),
        std::os::unix::fs::MetadataExt::ino(&device_before)
    );
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
    assert!(fs::symlink_metadata(&socket)
        .unwrap()
        .file_type()
        .is_socket());
    assert!(
        !dir.path().join("out.json").exists(),
        "nothing written beside"
    );
}

#[test]
fn inputs_that_are_not_regular_files_are_refused_at_once() {
    let db = TestDb::migrated();
    let before = db.digest();
    let dir = workdir();
    let fifo = dir.path().join("fifo.json");
    common::make_fifo(&fifo);
    fs::create_dir(dir.path().join("folder.json")).unwrap();
    for input in ["fifo.json", "/dev/zero", "/dev/null", "folder.json"] {
        for args in [
            vec!["verify", input],
            vec!["restore", "--embed-provider", "hash", input],
            vec![
                "restore",
                "--replace",
                "--yes",
                "--embed-provider",
                "hash",
                input,
            ],
            vec!["load", "--input", input],
        ] {
            // No writer will ever open the FIFO: a reader that opened it would wait for ever.
            let output = run_within(Some(&db), dir.path(), &args, Duration::from_secs(30));
            assert_refused(&output, "not a regular file", &format!("{args:?}"));
        }
    }
    assert_eq!(db.digest(), before);
}

#[test]
fn a_symlinked_backup_is_written_through_the_link_and_a_dangling_one_is_refused() {
    let db = TestDb::with_sample();
    let dir = workdir();
    fs::create_dir_all(dir.path().join("store")).unwrap();
    fs::write(dir.path().join("store/real.json"), "the previous backup").unwrap();
    std::os::unix::fs::symlink("store/real.json", dir.path().join("link.json")).unwrap();
    golden(Some(&db), dir.path())
        .args(["backup", "--output", "link.json", "--metadata", "meta.json"])
        .assert()
        .code(0);
    assert!(fs::symlink_metadata(dir.path().join("link.json"))
        .unwrap()
        .file_type()
        .is_symlink());
    let checksum = |path: &Path| -> serde_json::Value {
        serde_json::from_slice::<serde_json::Value>(&fs::read(path).unwrap())
            .map(|file| file["metadata"]["checksum"].clone())
            .unwrap_or_default()
    };
    assert_eq!(
        checksum(&dir.path().join("store/real.json")),
        checksum(&sample_path()),
        "the file the link names is the backup of the sample"
    );

    std::os::unix::fs::symlink("store/missing.json", dir.path().join("dangling.json")).unwrap();
    let output = golden(Some(&db), dir.path())
        .args([
            "backup",
            "--output",
            "dangling.json",
            "--metadata",
            "meta2.json",
        ])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(!dir.path().join("store/missing.json").exists());
}

#[test]
fn safety_backups_never_collide_never_replace_and_are_private() {
    let (db, other) = (TestDb::with_sample(), TestDb::with_sample());
    let dir = workdir();
    // Two replaces of two databases from one folder at the same moment, five times: ten
    // safety backups, none lost to another with the same name.
    for _ in 0..5 {
        let children: Vec<_> = [&db, &other]
            .iter()
            .map(|target| {
                std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
                    .current_dir(dir.path())
                    .env("DATABASE_URL", &target.url)
                    .args(["restore", "--replace", "--yes", "--embed-provider", "hash"])
                    .arg(sample_path())
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in children {
            let run = child.wait_with_output().unwrap();
            assert_eq!(run.status.code(), Some(0), "{}", stderr_of(&run));
        }
    }
    let folder = dir.path().join("data/safety");
    let backups: Vec<_> = fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(backups.len(), 10, "{backups:?}");
    assert_eq!(
        mode_of(&folder),
        0o700,
        "the folder golden created is private"
    );
    for backup in &backups {
        assert_eq!(mode_of(backup), 0o600, "{}", backup.display());
        golden(None, dir.path())
            .arg("verify")
            .arg(backup)
            .assert()
            .code(0);
    }

    // An explicit path that exists is never replaced.
    fs::write(dir.path().join("keep.json"), "an older safety backup").unwrap();
    let before = db.digest();
    let output = replace_with(
        &db,
        dir.path(),
        &["--safety-backup", "keep.json"],
        &sample_path(),
    );
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert_eq!(
        fs::read_to_string(dir.path().join("keep.json")).unwrap(),
        "an older safety backup"
    );
    assert_eq!(db.digest(), before);
}

#[test]
fn a_new_backup_is_private_and_a_replaced_one_keeps_its_permissions() {
    let db = TestDb::with_sample();
    let dir = workdir();
    golden(Some(&db), dir.path()).arg("backup").assert().code(0);
    let backup = dir.path().join("data/golden_dataset_backup.json");
    assert_eq!(mode_of(&backup), 0o600);
    assert_eq!(
        mode_of(&dir.path().join("data/golden_dataset_metadata.json")),
        0o600
    );
    assert_eq!(mode_of(&dir.path().join("data")), 0o700);
    fs::set_permissions(&backup, fs::Permissions::from_mode(0o644)).unwrap();
    db.execute("UPDATE artifacts SET summary = 'changed'");
    golden(Some(&db), dir.path()).arg("backup").assert().code(0);
    assert_eq!(mode_of(&backup), 0o644, "a team's choice is kept");
}

#[test]
fn a_metadata_file_that_cannot_be_written_leaves_both_files_as_they_were() {
    let db = TestDb::with_sample();
    let dir = workdir();
    fs::create_dir_all(dir.path().join("data")).unwrap();
    fs::write(
        dir.path().join("data/golden_dataset_backup.json"),
        "the previous backup",
    )
    .unwrap();
    // The metadata's folder cannot be created: a file is in the way.
    fs::write(dir.path().join("blocked"), "a file, not a folder").unwrap();
    let output = golden(Some(&db), dir.path())
        .args(["backup", "--metadata", "blocked/metadata.json"])
        .output()
        .unwrap();
    assert_ne!(output.status.code(), Some(0), "{}", stderr_of(&output));
    assert_eq!(
        fs::read_to_string(dir.path().join("data/golden_dataset_backup.json")).unwrap(),
        "the previous backup",
        "the backup was not replaced: {}",
        stderr_of(&output)
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|name| name.to_string_lossy().starts_with(".golden-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}
