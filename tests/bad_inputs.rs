//! The broken files of `tests/corpus/`: each is refused with a clear one-line reason, no panic,
//! and the database exactly as it was (a digest of its tables before and after).

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use common::{golden, stderr_of, stdout_of, workdir, TestDb};
use serde::Deserialize;

#[derive(Deserialize)]
struct Expected {
    verify: i32,
    message: String,
    /// Where the problem is (a record id or a JSON path), named on the message's line.
    #[serde(default)]
    place: Option<String>,
}

fn corpus() -> BTreeMap<String, Expected> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    serde_json::from_slice(&fs::read(folder.join("expected.json")).unwrap()).unwrap()
}

fn corpus_file(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn every_broken_file_is_refused_clearly_and_nothing_is_written() {
    let cases = corpus();
    assert!(cases.len() >= 25, "a corpus of at least 25 files");
    let db = TestDb::with_sample();
    let dir = workdir();
    let before = db.digest();

    for (name, expected) in &cases {
        let path = corpus_file(name);
        let verify = golden(None, dir.path())
            .args(["verify", &path])
            .output()
            .unwrap();
        let (stdout, stderr) = (stdout_of(&verify), stderr_of(&verify));
        assert_eq!(
            verify.status.code(),
            Some(expected.verify),
            "{name}: verify\n{stdout}{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{name}: {stderr}");
        let said = if expected.verify == 2 {
            &stderr
        } else {
            &stdout
        };
        let place = expected.place.as_deref().unwrap_or_default();
        assert!(
            said.lines()
                .any(|line| line.contains(&expected.message) && line.contains(place)),
            "{name}: expected {:?} at {place:?} in\n{said}",
            expected.message
        );
        if expected.verify == 2 {
            assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        }

        for mode in [&["restore"][..], &["restore", "--replace", "--yes"][..]] {
            let restore = golden(Some(&db), dir.path())
                .args(mode)
                .args(["--embed-provider", "hash", &path])
                .output()
                .unwrap();
            assert_eq!(
                restore.status.code(),
                Some(2),
                "{name} {mode:?}: {}",
                stderr_of(&restore)
            );
            assert!(
                stderr_of(&restore).contains("nothing was written") || expected.verify == 2,
                "{name}"
            );
        }
    }
    assert_eq!(db.digest(), before, "no broken file changed the database");
}

#[test]
fn files_made_on_the_fly_deep_nesting_and_a_10_mb_chunk() {
    let dir = workdir();
    let deep = format!(
        "{{\"version\": \"1.0\", \"analyses\": [{}{}]}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    fs::write(dir.path().join("deep.json"), deep).unwrap();
    let output = golden(None, dir.path())
        .args(["verify", "deep.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("recursion limit"),
        "{}",
        stderr_of(&output)
    );

    // A 10 MB chunk is unusual but valid: read, checked and restored without trouble.
    let mut big: serde_json::Value =
        serde_json::from_slice(&fs::read(corpus_file("../corpus/checksum-mismatch.json")).unwrap())
            .unwrap();
    big["metadata"].as_object_mut().unwrap().remove("checksum");
    big["analyses"][0]["chunks"][0]["content"] = serde_json::json!("word ".repeat(2_000_000));
    fs::write(
        dir.path().join("big.json"),
        serde_json::to_vec(&big).unwrap(),
    )
    .unwrap();
    golden(None, dir.path())
        .args(["verify", "big.json"])
        .assert()
        .code(0);
    let db = TestDb::migrated();
    golden(Some(&db), dir.path())
        .args(["restore", "--embed-provider", "hash", "big.json"])
        .assert()
        .code(0);
    assert_eq!(
        db.count("SELECT max(length(content)) FROM chunks"),
        10_000_000
    );
}
