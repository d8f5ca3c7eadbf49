//! `golden merge` as git runs it: real repositories in temp folders, the driver registered
//! for the backup file, branches that edit the sample dataset and a `git merge` of them; the
//! conflict workflow (markers, `golden verify` refusing, `--finish`); the driver run by hand
//! (determinism, an empty BASE, an unreadable input).

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common::git::{git_output, BACKUP};
use common::{golden, sample_path, stderr_of, stdout_of, workdir};
use serde_json::{json, Value};

/// A git repository of its own, isolated from the machine's git configuration, whose backup
/// file merges with `golden merge`.
struct Repo {
    dir: tempfile::TempDir,
    home: tempfile::TempDir,
}

impl Repo {
    /// A repository holding the sample dataset on `main`.
    fn with_sample() -> Repo {
        let repo = Repo::empty();
        fs::create_dir_all(repo.path().join("data")).unwrap();
        fs::copy(sample_path(), repo.file()).unwrap();
        repo.commit_all("the sample dataset");
        repo
    }

    /// A repository with the driver configured and nothing committed but .gitattributes.
    fn empty() -> Repo {
        let repo = Repo {
            dir: workdir(),
            home: workdir(),
        };
        repo.git(&["init", "-q", "-b", "main"]);
        fs::write(
            repo.path().join(".gitattributes"),
            format!("{BACKUP} merge=golden\n"),
        )
        .unwrap();
        let driver = format!("{} merge %O %A %B --name %P", env!("CARGO_BIN_EXE_golden"));
        repo.git(&["config", "merge.golden.name", "golden backup merge"]);
        repo.git(&["config", "merge.golden.driver", &driver]);
        repo.commit_all("attributes");
        repo
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn file(&self) -> PathBuf {
        self.path().join(BACKUP)
    }

    /// Runs git in the repository, without the machine's configuration.
    fn run_git(&self, args: &[&str]) -> Output {
        git_output(self.path(), self.home.path(), args)
    }

    /// Runs git and fails the test if it fails.
    fn git(&self, args: &[&str]) -> String {
        let output = self.run_git(args);
        assert!(
            output.status.success(),
            "git {args:?}: {}{}",
            stdout_of(&output),
            stderr_of(&output)
        );
        stdout_of(&output)
    }

    fn commit_all(&self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", message]);
    }

    /// A new branch from `from`, checked out.
    fn branch(&self, name: &str, from: &str) {
        self.git(&["checkout", "-q", "-b", name, from]);
    }

    fn checkout(&self, name: &str) {
        self.git(&["checkout", "-q", name]);
    }

    /// Edits the backup file as a user would with a JSON tool, then lets golden write it in
    /// its canonical bytes (`convert --in-place`), and commits it.
    fn edit_and_commit(&self, message: &str, edit: impl FnOnce(&mut Value)) {
        edit_backup(&self.file(), edit);
        self.commit_all(message);
    }

    fn backup(&self) -> Value {
        read_json(&self.file())
    }
}

/// The sample with `edit` applied, as `name` in `dir`, in golden's bytes.
fn sample_edited_as(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
    let path = dir.join(name);
    fs::copy(sample_path(), &path).unwrap();
    edit_backup(&path, edit);
    path
}

/// Moves the chunk at `(analysis, position)` to the end of analysis `to`, at `chunk_index`.
fn move_chunk(
    backup: &mut Value,
    (analysis, position): (usize, usize),
    to: usize,
    chunk_index: i64,
) {
    let mut chunk = backup["analyses"][analysis]["chunks"]
        .as_array_mut()
        .unwrap()
        .remove(position);
    chunk["chunk_index"] = json!(chunk_index);
    backup["analyses"][to]["chunks"]
        .as_array_mut()
        .unwrap()
        .push(chunk);
}

fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

/// `edit` applied to the backup at `path`, with the totals fixed and the checksum removed,
/// then rewritten canonically by `golden convert --in-place` (which checks it, too).
fn edit_backup(path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut backup = read_json(path);
    edit(&mut backup);
    let analyses = backup["analyses"].as_array().unwrap();
    let chunks: usize = analyses
        .iter()
        .map(|analysis| analysis["chunks"].as_array().unwrap().len())
        .sum();
    let artifacts = analyses
        .iter()
        .filter(|analysis| !analysis["artifact"].is_null())
        .count();
    let totals = json!({
        "total_analyses": analyses.len(),
        "total_chunks": chunks,
        "total_artifacts": artifacts,
        "total_queries": backup["queries"].as_array().map_or(0, Vec::len),
    });
    let metadata = backup["metadata"].as_object_mut().unwrap();
    metadata.remove("checksum");
    for (key, value) in totals.as_object().unwrap() {
        metadata.insert(key.clone(), value.clone());
    }
    fs::write(path, serde_json::to_vec_pretty(&backup).unwrap()).unwrap();
    let output = golden(None, path.parent().unwrap())
        .arg("convert")
        .arg("--in-place")
        .arg(path)
        .output()
        .unwrap();
    assert!(output.status.success(), "convert: {}", stderr_of(&output));
}

/// Deletes the analysis at `position` and every query's expectation of its chunks.
fn delete_analysis(backup: &mut Value, position: usize) {
    let removed = backup["analyses"].as_array_mut().unwrap().remove(position);
    let chunks: Vec<Value> = removed["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|chunk| chunk["id"].clone())
        .collect();
    for query in backup["queries"].as_array_mut().unwrap() {
        query["expected_chunk_ids"]
            .as_array_mut()
            .unwrap()
            .retain(|id| !chunks.contains(id));
    }
}

fn verify(dir: &Path, file: &Path) -> Output {
    golden(None, dir).arg("verify").arg(file).output().unwrap()
}

/// Keeps one side of every conflict block: the ours lines or the theirs lines.
fn resolve(text: &str, keep_ours: bool) -> String {
    let mut out = String::new();
    let mut inside: Option<bool> = None;
    for line in text.split_inclusive('\n') {
        if line.starts_with("<<<<<<<") {
            inside = Some(true);
        } else if line.starts_with("=======") {
            inside = Some(false);
        } else if line.starts_with(">>>>>>>") {
            inside = None;
        } else if inside.is_none_or(|in_ours| in_ours == keep_ours) {
            out.push_str(line);
        }
    }
    out
}

fn chunk_ids_of(analysis: &Value) -> Vec<Value> {
    analysis["chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|chunk| chunk["id"].clone())
        .collect()
}

fn find_analysis<'a>(backup: &'a Value, id: &Value) -> Option<&'a Value> {
    backup["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .find(|analysis| analysis["id"] == *id)
}

#[test]
fn unrelated_edits_on_two_branches_merge_cleanly_in_golden_bytes() {
    let repo = Repo::with_sample();
    let sample = repo.backup();
    let edited_chunk = sample["analyses"][0]["chunks"][1]["id"].clone();
    let retitled = sample["analyses"][5]["id"].clone();
    let expected_by_new_query = sample["analyses"][9]["chunks"][0]["id"].clone();

    repo.branch("chunk-edit", "main");
    repo.edit_and_commit("edit a chunk", |backup| {
        backup["analyses"][0]["chunks"][1]["content"] = json!("A chunk text edited on one branch.");
    });
    repo.branch("title-and-query", "main");
    repo.edit_and_commit("retitle an analysis, add a query", |backup| {
        backup["analyses"][5]["title"] = json!("A title edited on the other branch");
        backup["queries"].as_array_mut().unwrap().push(json!({
            "id": "q-merge-test",
            "query": "Which chunk did the other branch point at?",
            "expected_chunk_ids": [expected_by_new_query],
            "category": "retrieval",
            "difficulty": "easy",
        }));
    });

    repo.checkout("chunk-edit");
    let merge = repo.run_git(&["merge", "--no-edit", "title-and-query"]);
    assert!(
        merge.status.success(),
        "git merge: {}{}",
        stdout_of(&merge),
        stderr_of(&merge)
    );
    let status = repo.git(&["status", "--porcelain"]);
    assert_eq!(status, "", "the merge is committed and the tree clean");

    let verified = verify(repo.path(), &repo.file());
    assert!(verified.status.success(), "{}", stdout_of(&verified));
    let merged = repo.backup();
    let chunk = merged["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|analysis| analysis["chunks"].as_array().unwrap())
        .find(|chunk| chunk["id"] == edited_chunk)
        .unwrap();
    assert_eq!(chunk["content"], "A chunk text edited on one branch.");
    assert_eq!(
        find_analysis(&merged, &retitled).unwrap()["title"],
        "A title edited on the other branch"
    );
    let queries = merged["queries"].as_array().unwrap();
    assert!(queries.iter().any(|query| query["id"] == "q-merge-test"));
    assert_eq!(merged["metadata"]["total_analyses"], 43);
    assert_eq!(merged["metadata"]["total_chunks"], 188);
    assert_eq!(merged["metadata"]["total_queries"], 49);

    // The bytes golden itself writes for this data.
    let converted = repo.path().join("converted.json");
    let output = golden(None, repo.path())
        .arg("convert")
        .arg(repo.file())
        .arg("--output")
        .arg(&converted)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(
        fs::read(&converted).unwrap(),
        fs::read(repo.file()).unwrap(),
        "the merge wrote other bytes than golden convert"
    );
}

/// Two branches that set one chunk's content differently, the first checked out.
fn repo_with_one_field_conflict() -> (Repo, Value) {
    let repo = Repo::with_sample();
    let chunk = repo.backup()["analyses"][3]["chunks"][0]["id"].clone();
    repo.branch("ours-branch", "main");
    repo.edit_and_commit("our wording", |backup| {
        backup["analyses"][3]["chunks"][0]["content"] = json!("Our wording of this chunk.");
        backup["analyses"][0]["title"] = json!("A clean edit beside the conflict");
    });
    repo.branch("theirs-branch", "main");
    repo.edit_and_commit("their wording", |backup| {
        backup["analyses"][3]["chunks"][0]["content"] = json!("Their wording of this chunk.");
    });
    repo.checkout("ours-branch");
    (repo, chunk)
}

fn content_of(backup: &Value, chunk: &Value) -> Value {
    backup["analyses"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|analysis| analysis["chunks"].as_array().unwrap())
        .find(|candidate| candidate["id"] == *chunk)
        .map(|candidate| candidate["content"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn a_field_changed_differently_on_both_sides_is_a_conflict_resolved_in_an_editor() {
    for keep_ours in [true, false] {
        let (repo, chunk) = repo_with_one_field_conflict();
        let merge = repo.run_git(&["merge", "--no-edit", "theirs-branch"]);
        assert!(
            !merge.status.success(),
            "git merge should stop on the conflict"
        );
        let report = stderr_of(&merge);
        let id = chunk.as_str().unwrap();
        assert!(report.contains(&format!("chunk {id}")), "{report}");
        assert!(report.contains("field content"), "{report}");
        assert!(report.contains("Our wording of this chunk."), "{report}");
        assert!(report.contains("Their wording of this chunk."), "{report}");
        assert!(report.contains("golden merge --finish"), "{report}");
        assert!(report.contains(&format!("git add {BACKUP}")), "{report}");
        let status = repo.git(&["status", "--porcelain"]);
        assert!(status.contains(&format!("UU {BACKUP}")), "{status}");

        let text = fs::read_to_string(repo.file()).unwrap();
        assert!(text.contains("<<<<<<< ours\n"), "{text}");
        assert!(text.contains("=======\n") && text.contains(">>>>>>> theirs\n"));
        // The header is no block: one sentinel checksum, ours' totals.
        let header = &text[..text.find("\"analyses\": [").unwrap()];
        assert!(!header.contains("<<<<<<<"), "{header}");
        assert!(
            header.contains("unresolved merge conflicts (1)"),
            "{header}"
        );

        let refused = verify(repo.path(), &repo.file());
        assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
        assert!(
            stderr_of(&refused).contains("has unresolved merge conflicts (the first at line"),
            "{}",
            stderr_of(&refused)
        );

        // Resolved in an editor, but not finished: verify still refuses the file.
        fs::write(repo.file(), resolve(&text, keep_ours)).unwrap();
        let unfinished = verify(repo.path(), &repo.file());
        assert_eq!(
            unfinished.status.code(),
            Some(3),
            "{}",
            stdout_of(&unfinished)
        );
        assert!(stdout_of(&unfinished).contains("golden merge --finish"));

        let finish = golden(None, repo.path())
            .args(["merge", "--finish", BACKUP])
            .output()
            .unwrap();
        assert!(finish.status.success(), "{}", stderr_of(&finish));
        assert!(stdout_of(&finish).contains(&format!("git add {BACKUP}")));
        let verified = verify(repo.path(), &repo.file());
        assert!(verified.status.success(), "{}", stdout_of(&verified));
        let merged = repo.backup();
        let wanted = if keep_ours {
            "Our wording of this chunk."
        } else {
            "Their wording of this chunk."
        };
        assert_eq!(content_of(&merged, &chunk), wanted);
        assert_eq!(
            merged["analyses"][0]["title"], "A clean edit beside the conflict",
            "the clean edit beside the conflict is kept"
        );
        repo.git(&["add", BACKUP]);
        repo.git(&["commit", "-q", "--no-edit"]);
    }
}

#[test]
fn finish_refuses_a_file_with_a_marker_left_and_names_its_line() {
    let (repo, _) = repo_with_one_field_conflict();
    // The driver as `golden git-setup` registers it, without git's %P: git's temp file is
    // not named, the path in git's own CONFLICT line is.
    let driver = format!("{} merge %O %A %B", env!("CARGO_BIN_EXE_golden"));
    repo.git(&["config", "merge.golden.driver", &driver]);
    let merge = repo.run_git(&["merge", "--no-edit", "theirs-branch"]);
    assert!(!merge.status.success());
    let report = stderr_of(&merge);
    assert!(!report.contains(".merge_file_"), "{report}");
    assert!(report.contains("golden merge --finish FILE"), "{report}");
    assert!(
        report.contains("the path git names in its CONFLICT line"),
        "{report}"
    );
    let before = fs::read(repo.file()).unwrap();
    let text = String::from_utf8(before.clone()).unwrap();
    let line = text
        .lines()
        .position(|line| line.starts_with("<<<<<<<"))
        .unwrap()
        + 1;
    let finish = golden(None, repo.path())
        .args(["merge", "--finish", BACKUP])
        .output()
        .unwrap();
    assert_eq!(finish.status.code(), Some(2));
    assert!(
        stderr_of(&finish).contains(&format!("conflict marker at line {line}")),
        "{}",
        stderr_of(&finish)
    );
    assert_eq!(
        fs::read(repo.file()).unwrap(),
        before,
        "nothing was written"
    );
}

#[test]
fn an_analysis_deleted_on_one_side_and_edited_on_the_other_is_one_conflict() {
    for keep_ours in [true, false] {
        let repo = Repo::with_sample();
        let sample = repo.backup();
        let analysis = sample["analyses"][7].clone();
        let edited_chunk = analysis["chunks"][1]["id"].clone();
        repo.branch("deleting", "main");
        repo.edit_and_commit("delete an analysis", |backup| delete_analysis(backup, 7));
        repo.branch("editing", "main");
        repo.edit_and_commit("edit a chunk of it", |backup| {
            backup["analyses"][7]["chunks"][1]["content"] =
                json!("Edited while the other branch deleted it.");
        });
        repo.checkout("deleting");
        let merge = repo.run_git(&["merge", "--no-edit", "editing"]);
        assert!(!merge.status.success(), "never resolved silently");
        let report = stderr_of(&merge);
        let id = analysis["id"].as_str().unwrap();
        assert!(
            report.contains(&format!("analysis {id}"))
                && report.contains("deleted by ours, changed by theirs"),
            "{report}"
        );
        assert!(report.contains(edited_chunk.as_str().unwrap()), "{report}");

        let text = fs::read_to_string(repo.file()).unwrap();
        fs::write(repo.file(), resolve(&text, keep_ours)).unwrap();
        let finish = golden(None, repo.path())
            .args(["merge", "--finish", BACKUP])
            .output()
            .unwrap();
        assert!(
            finish.status.success(),
            "{}{}",
            stdout_of(&finish),
            stderr_of(&finish)
        );
        let verified = verify(repo.path(), &repo.file());
        assert!(verified.status.success(), "{}", stdout_of(&verified));
        let merged = repo.backup();
        let all_chunks: Vec<Value> = merged["analyses"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(chunk_ids_of)
            .collect();
        if keep_ours {
            assert!(find_analysis(&merged, &analysis["id"]).is_none());
            for chunk in chunk_ids_of(&analysis) {
                assert!(!all_chunks.contains(&chunk), "none of the analysis is left");
            }
            assert_eq!(merged["metadata"]["total_analyses"], 42);
        } else {
            let back = find_analysis(&merged, &analysis["id"]).expect("the analysis is back");
            assert_eq!(
                chunk_ids_of(back),
                chunk_ids_of(&analysis),
                "all of its chunks"
            );
            assert_eq!(back["artifact"], analysis["artifact"]);
            assert_eq!(
                back["chunks"][1]["content"],
                "Edited while the other branch deleted it."
            );
            assert_eq!(merged["metadata"]["total_analyses"], 43);
            assert_eq!(merged["metadata"]["total_chunks"], 188);
        }
    }
}

#[test]
fn the_driver_gives_the_same_bytes_for_the_same_inputs_clean_or_conflicted() {
    let dir = workdir();
    let base = dir.path().join("base.json");
    fs::copy(sample_path(), &base).unwrap();
    let ours = sample_edited_as(dir.path(), "ours.json", |backup| {
        backup["analyses"][1]["chunks"][0]["content"] = json!("ours");
        delete_analysis(backup, 30);
    });
    let theirs_clean = sample_edited_as(dir.path(), "theirs_clean.json", |backup| {
        backup["analyses"][4]["url"] = json!("https://www.rfc-editor.org/rfc/rfc9110#section-1");
    });
    let theirs_conflicting = sample_edited_as(dir.path(), "theirs_conflicting.json", |backup| {
        backup["analyses"][1]["chunks"][0]["content"] = json!("theirs");
        backup["analyses"][30]["title"] = json!("kept and retitled");
    });
    for (theirs, clean) in [(&theirs_clean, true), (&theirs_conflicting, false)] {
        let mut results = Vec::new();
        for run in 0..2 {
            let result = dir.path().join(format!("result-{run}.json"));
            fs::copy(&ours, &result).unwrap();
            let output = golden(None, dir.path())
                .arg("merge")
                .args([&base, &result, theirs])
                .output()
                .unwrap();
            assert_eq!(
                output.status.code(),
                Some(if clean { 0 } else { 1 }),
                "{}",
                stderr_of(&output)
            );
            results.push(fs::read(&result).unwrap());
        }
        assert_eq!(results[0], results[1], "two runs, two results");
        if !clean {
            // Whichever side each block keeps, the file is JSON.
            let text = String::from_utf8(results[0].clone()).unwrap();
            // The chunk, the analysis, and the query that expected the analysis's chunks.
            let blocks = text.matches("<<<<<<<").count();
            assert_eq!(blocks, 3, "{text}");
            for choice in 0..(1u32 << blocks) {
                let mut block = 0;
                let mut inside = None;
                let mut out = String::new();
                for line in text.split_inclusive('\n') {
                    if line.starts_with("<<<<<<<") {
                        inside = Some(true);
                    } else if line.starts_with("=======") {
                        inside = Some(false);
                    } else if line.starts_with(">>>>>>>") {
                        inside = None;
                        block += 1;
                    } else if inside.is_none_or(|in_ours| in_ours == (choice & (1 << block) != 0)) {
                        out.push_str(line);
                    }
                }
                let parsed: Result<Value, _> = serde_json::from_str(&out);
                assert!(parsed.is_ok(), "choice {choice:b} does not parse");
            }
        }
    }
    // --output writes elsewhere and leaves OURS as it was.
    let before = fs::read(&ours).unwrap();
    let elsewhere = dir.path().join("elsewhere.json");
    let output = golden(None, dir.path())
        .arg("merge")
        .args([&base, &ours, &theirs_clean])
        .arg("--output")
        .arg(&elsewhere)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(fs::read(&ours).unwrap(), before);
    assert!(verify(dir.path(), &elsewhere).status.success());
}

#[test]
fn a_file_added_on_both_branches_merges_with_an_empty_base() {
    let repo = Repo::empty();
    let new_query = json!({
        "id": "q-added",
        "query": "What did only one branch add?",
        "expected_chunk_ids": [],
    });
    repo.branch("one", "main");
    fs::create_dir_all(repo.path().join("data")).unwrap();
    fs::copy(sample_path(), repo.file()).unwrap();
    repo.commit_all("add the dataset");
    repo.branch("two", "main");
    fs::create_dir_all(repo.path().join("data")).unwrap();
    fs::copy(sample_path(), repo.file()).unwrap();
    repo.edit_and_commit("add the dataset with one more query", |backup| {
        backup["queries"]
            .as_array_mut()
            .unwrap()
            .push(new_query.clone());
    });
    repo.checkout("one");
    let merge = repo.run_git(&["merge", "--no-edit", "two"]);
    assert!(
        merge.status.success(),
        "{}{}",
        stdout_of(&merge),
        stderr_of(&merge)
    );
    let merged = repo.backup();
    assert_eq!(merged["metadata"]["total_queries"], 49);
    assert!(verify(repo.path(), &repo.file()).status.success());

    // Run by hand: an empty BASE, both sides adding one record differently, is a conflict.
    let dir = workdir();
    let base = dir.path().join("empty.json");
    fs::write(&base, "").unwrap();
    let ours = dir.path().join("ours.json");
    let theirs = dir.path().join("theirs.json");
    fs::copy(sample_path(), &ours).unwrap();
    fs::copy(sample_path(), &theirs).unwrap();
    edit_backup(&theirs, |backup| {
        backup["analyses"][0]["title"] = json!("another title");
    });
    let output = golden(None, dir.path())
        .arg("merge")
        .args([&base, &ours, &theirs])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("added on both sides with different values"),
        "{}",
        stderr_of(&output)
    );
}

/// Found by the attack on the merge driver: one side moves a chunk out of an analysis into
/// another one's index 50 and deletes the analysis it left; the other side adds a chunk of its
/// own at that index and leaves the deleted analysis as it was. The deletion is clean; the
/// place is a conflict, whose theirs resolution has no place for the moved chunk (its place
/// on that side is in the deleted analysis). It was an internal error ("leaves chunk … without
/// its analysis"), so git kept OURS without markers.
#[test]
fn a_chunk_moved_out_of_an_analysis_deleted_cleanly_to_a_place_the_other_side_took_is_a_conflict() {
    let dir = workdir();
    let base = dir.path().join("base.json");
    fs::copy(sample_path(), &base).unwrap();
    let sample = read_json(&base);
    let left = sample["analyses"][2]["id"].clone();
    let target = sample["analyses"][1]["id"].clone();
    let moved = sample["analyses"][2]["chunks"][1]["id"].clone();
    let added = json!("00000000-0000-0000-0000-00000000004d");
    let mover = sample_edited_as(dir.path(), "mover.json", |backup| {
        move_chunk(backup, (2, 1), 1, 50);
        delete_analysis(backup, 2);
    });
    let adder = sample_edited_as(dir.path(), "adder.json", |backup| {
        let mut chunk = backup["analyses"][1]["chunks"][0].clone();
        chunk["id"] = added.clone();
        chunk["content"] = json!("A chunk the other side added at index 50.");
        chunk["chunk_index"] = json!(50);
        backup["analyses"][1]["chunks"]
            .as_array_mut()
            .unwrap()
            .push(chunk);
    });
    for (ours, theirs) in [(&mover, &adder), (&adder, &mover)] {
        let out = dir.path().join("out.json");
        let _ = fs::remove_file(&out);
        let output = golden(None, dir.path())
            .arg("merge")
            .args([&base, ours, theirs])
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        let report = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{report}");
        assert!(!report.contains("internal error"), "{report}");
        assert!(report.contains("chunk_index 50 of analysis"), "{report}");
        let text = fs::read_to_string(&out).unwrap();
        for keep_ours in [true, false] {
            let resolved = dir.path().join("resolved.json");
            fs::write(&resolved, resolve(&text, keep_ours)).unwrap();
            let finish = golden(None, dir.path())
                .arg("merge")
                .arg("--finish")
                .arg(&resolved)
                .output()
                .unwrap();
            assert!(finish.status.success(), "{}", stderr_of(&finish));
            let merged = read_json(&resolved);
            assert!(find_analysis(&merged, &left).is_none(), "deleted cleanly");
            let at_50: Vec<Value> = find_analysis(&merged, &target).unwrap()["chunks"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|chunk| chunk["chunk_index"] == 50)
                .map(|chunk| chunk["id"].clone())
                .collect();
            let kept_mover = (ours == &mover) == keep_ours;
            assert_eq!(
                at_50,
                vec![if kept_mover { &moved } else { &added }.clone()]
            );
        }
    }
}

/// Found by the attack on the merge driver too: one side moves a chunk out of an analysis
/// into a second one and deletes the first; the other side deletes the second. The second is
/// one conflict (deleted, and a chunk moved into it); its resolution as the deleting side
/// puts the chunk back where that side has it, in the first analysis, which the other side
/// deleted cleanly: that was an internal error too.
#[test]
fn a_chunk_moved_into_an_analysis_the_other_side_deleted_out_of_one_deleted_cleanly_is_a_conflict()
{
    let dir = workdir();
    let base = dir.path().join("base.json");
    fs::copy(sample_path(), &base).unwrap();
    let sample = read_json(&base);
    let into = sample["analyses"][3]["id"].clone();
    let moved = sample["analyses"][2]["chunks"][3]["id"].clone();
    let mover = sample_edited_as(dir.path(), "mover.json", |backup| {
        move_chunk(backup, (2, 3), 3, 50);
        delete_analysis(backup, 2);
    });
    let deleter = sample_edited_as(dir.path(), "deleter.json", |backup| {
        delete_analysis(backup, 3)
    });
    for (ours, theirs) in [(&mover, &deleter), (&deleter, &mover)] {
        let out = dir.path().join("out.json");
        let _ = fs::remove_file(&out);
        let output = golden(None, dir.path())
            .arg("merge")
            .args([&base, ours, theirs])
            .arg("--output")
            .arg(&out)
            .output()
            .unwrap();
        let report = stderr_of(&output);
        assert_eq!(output.status.code(), Some(1), "{report}");
        assert!(!report.contains("internal error"), "{report}");
        assert!(
            report.contains(&format!("moved chunk {}", moved.as_str().unwrap())),
            "{report}"
        );
        let text = fs::read_to_string(&out).unwrap();
        for keep_ours in [true, false] {
            let resolved = dir.path().join("resolved.json");
            fs::write(&resolved, resolve(&text, keep_ours)).unwrap();
            let finish = golden(None, dir.path())
                .arg("merge")
                .arg("--finish")
                .arg(&resolved)
                .output()
                .unwrap();
            assert!(finish.status.success(), "{}", stderr_of(&finish));
            let merged = read_json(&resolved);
            let kept_mover = (ours == &mover) == keep_ours;
            assert_eq!(find_analysis(&merged, &into).is_some(), kept_mover);
            assert_eq!(
                merged["metadata"]["total_analyses"],
                if kept_mover { 42 } else { 41 }
            );
        }
    }
}

/// The commands a conflict report and `--finish` give to copy name the path as one shell word:
/// `golden merge --finish my data/x.json` would be two arguments.
#[test]
fn the_commands_to_copy_quote_a_path_with_a_space() {
    let dir = workdir();
    let base = dir.path().join("base.json");
    fs::copy(sample_path(), &base).unwrap();
    let folder = dir.path().join("my data");
    fs::create_dir_all(&folder).unwrap();
    let side = |path: PathBuf, title: &str| {
        fs::copy(sample_path(), &path).unwrap();
        edit_backup(&path, |backup| {
            backup["analyses"][0]["title"] = json!(title)
        });
        path
    };
    let ours = side(folder.join("x y.json"), "ours");
    let theirs = side(dir.path().join("theirs.json"), "theirs");
    let output = golden(None, dir.path())
        .arg("merge")
        .args([&base, &ours, &theirs])
        .args(["--name", "my data/x y.json"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let report = stderr_of(&output);
    assert!(
        report.contains("golden merge --finish 'my data/x y.json'\n")
            && report.contains("git add 'my data/x y.json'"),
        "{report}"
    );
    fs::write(&ours, resolve(&fs::read_to_string(&ours).unwrap(), true)).unwrap();
    let finish = golden(None, dir.path())
        .args(["merge", "--finish", "my data/x y.json"])
        .output()
        .unwrap();
    assert!(finish.status.success(), "{}", stderr_of(&finish));
    let said = format!("{}{}", stdout_of(&finish), stderr_of(&finish));
    assert!(said.contains("now `git add 'my data/x y.json'`"), "{said}");
}

#[test]
fn an_input_that_is_no_backup_leaves_ours_untouched_and_exits_2() {
    let dir = workdir();
    let base = dir.path().join("base.json");
    let ours = dir.path().join("ours.json");
    let theirs = dir.path().join("theirs.json");
    fs::copy(sample_path(), &base).unwrap();
    fs::copy(sample_path(), &ours).unwrap();
    fs::write(&theirs, "{\"version\": \"1.0\", \"analyses\": [").unwrap();
    let before = fs::read(&ours).unwrap();
    let output = golden(None, dir.path())
        .arg("merge")
        .args([&base, &ours, &theirs])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    let message = stderr_of(&output);
    assert!(message.contains("THEIRS"), "{message}");
    assert!(message.contains("OURS was left as it was"), "{message}");
    assert_eq!(fs::read(&ours).unwrap(), before);
}

#[test]
fn an_interrupted_or_killed_merge_leaves_ours_whole_or_merged() {
    let dir = workdir();
    let base = dir.path().join("base.json");
    fs::copy(sample_path(), &base).unwrap();
    let ours = dir.path().join("ours.json");
    let theirs = dir.path().join("theirs.json");
    fs::copy(sample_path(), &ours).unwrap();
    fs::copy(sample_path(), &theirs).unwrap();
    edit_backup(&ours, |backup| {
        backup["analyses"][2]["chunks"][0]["content"] = json!("ours");
    });
    edit_backup(&theirs, |backup| {
        backup["analyses"][2]["chunks"][0]["content"] = json!("theirs");
        backup["analyses"][9]["title"] = json!("theirs' title");
    });
    let original = fs::read(&ours).unwrap();
    let reference = dir.path().join("reference.json");
    fs::copy(&ours, &reference).unwrap();
    let output = golden(None, dir.path())
        .arg("merge")
        .args([&base, &reference, &theirs])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let merged = fs::read(&reference).unwrap();

    for (step, signal) in (0..24).flat_map(|step| [(step, libc::SIGINT), (step, libc::SIGKILL)]) {
        let result = dir.path().join("result.json");
        fs::write(&result, &original).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_golden"))
            .current_dir(dir.path())
            .arg("merge")
            .args([&base, &result, &theirs])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(step * 8));
        // The process may have ended already: then the signal finds nothing, as it should.
        unsafe { libc::kill(child.id() as i32, signal) };
        let status = child.wait_with_output().unwrap().status;
        let now = fs::read(&result).unwrap();
        assert!(
            now == original || now == merged,
            "after signal {signal} at {} ms (exit {status:?}) OURS is neither as it was nor merged",
            step * 8
        );
        if signal == libc::SIGINT {
            // Before golden handles signals, SIGINT ends it as it ends any program.
            use std::os::unix::process::ExitStatusExt;
            assert!(
                matches!(status.code(), Some(1) | Some(130)) || status.signal() == Some(signal),
                "exit {status:?}"
            );
            let leftovers: Vec<_> = fs::read_dir(dir.path())
                .unwrap()
                .filter_map(|entry| entry.ok())
                .filter(|entry| entry.file_name().to_string_lossy().ends_with(".tmp"))
                .collect();
            assert!(leftovers.is_empty(), "{leftovers:?}");
        }
        fs::remove_file(&result).unwrap();
        for entry in fs::read_dir(dir.path()).unwrap().flatten() {
            if entry.file_name().to_string_lossy().ends_with(".tmp") {
                fs::remove_file(entry.path()).unwrap();
            }
        }
    }
}

#[test]
fn git_setup_registers_the_drivers_that_git_merge_and_git_diff_then_run() {
    // A repository set up by `golden git-setup`, not by hand.
    let repo = Repo {
        dir: workdir(),
        home: workdir(),
    };
    repo.git(&["init", "-q", "-b", "main"]);
    let setup = golden(None, repo.path())
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", repo.home.path())
        .arg("git-setup")
        .output()
        .unwrap();
    assert!(setup.status.success(), "{}", stderr_of(&setup));
    fs::create_dir_all(repo.path().join("data")).unwrap();
    fs::copy(sample_path(), repo.file()).unwrap();
    repo.commit_all("the sample dataset, golden's drivers");

    // Unrelated edits merge cleanly, through the registered driver.
    repo.branch("one", "main");
    repo.edit_and_commit("edit a chunk", |backup| {
        backup["analyses"][0]["chunks"][1]["content"] = json!("Edited on branch one.");
    });
    repo.branch("two", "main");
    repo.edit_and_commit("retitle", |backup| {
        backup["analyses"][5]["title"] = json!("Retitled on branch two");
    });
    repo.git(&["merge", "--no-edit", "one"]);
    let merged = repo.backup();
    assert_eq!(
        merged["analyses"][0]["chunks"][1]["content"],
        "Edited on branch one."
    );
    assert_eq!(merged["analyses"][5]["title"], "Retitled on branch two");
    assert!(verify(repo.path(), &repo.file()).status.success());
    // git diff reads the records through golden show: the edit is one record's lines.
    let diff = repo.git(&["diff", "HEAD~1", "--", BACKUP]);
    assert!(diff.contains("+    Edited on branch one."), "{diff}");
    assert!(!diff.contains("\"content\""), "{diff}");

    // Edits of one field on both sides: the driver names the real path in what to do next.
    repo.branch("three", "main");
    repo.edit_and_commit("three", |backup| {
        backup["analyses"][5]["title"] = json!("Retitled on branch three");
    });
    let conflict = repo.run_git(&["merge", "--no-edit", "two"]);
    assert!(!conflict.status.success());
    let report = stderr_of(&conflict);
    assert!(
        report.contains("Retitled on branch two") && report.contains("Retitled on branch three"),
        "{report}"
    );
    assert!(
        report.contains(&format!("golden merge --finish {BACKUP}")),
        "{report}"
    );
}

#[test]
fn finish_refuses_a_file_no_conflicted_merge_wrote_and_both_sides_of_a_block_kept() {
    // A backup that no conflicted merge wrote (an OURS a stopped merge left, a hand edit):
    // finishing it would bless it as a merge's result.
    let dir = workdir();
    let plain = dir.path().join("plain.json");
    fs::copy(sample_path(), &plain).unwrap();
    let before = fs::read(&plain).unwrap();
    let refused = golden(None, dir.path())
        .args(["merge", "--finish", "plain.json"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    assert!(
        stderr_of(&refused).contains("is not the result of a conflicted `golden merge`"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(fs::read(&plain).unwrap(), before);

    // Both sides of a block kept (an editor's "accept both"): the record holds the key
    // twice, which a JSON reader would read as the later one, silently.
    let (repo, _) = repo_with_one_field_conflict();
    let merge = repo.run_git(&["merge", "--no-edit", "theirs-branch"]);
    assert!(!merge.status.success());
    let text = fs::read_to_string(repo.file()).unwrap();
    let both: String = text
        .split_inclusive('\n')
        .filter(|line| {
            !(line.starts_with("<<<<<<<")
                || line.starts_with("=======")
                || line.starts_with(">>>>>>>"))
        })
        .collect();
    fs::write(repo.file(), &both).unwrap();
    let refused = golden(None, repo.path())
        .args(["merge", "--finish", BACKUP])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    assert!(
        stderr_of(&refused).contains("has the key \"content\" twice in one record"),
        "{}",
        stderr_of(&refused)
    );
    assert_eq!(fs::read_to_string(repo.file()).unwrap(), both);
    // Keeping one side finishes.
    fs::write(repo.file(), resolve(&text, true)).unwrap();
    let finished = golden(None, repo.path())
        .args(["merge", "--finish", BACKUP])
        .output()
        .unwrap();
    assert!(finished.status.success(), "{}", stderr_of(&finished));
}

#[test]
fn the_result_goes_only_to_a_regular_file_that_is_not_another_input() {
    let dir = workdir();
    for name in ["base.json", "ours.json", "theirs.json"] {
        fs::copy(sample_path(), dir.path().join(name)).unwrap();
    }
    let fifo = dir.path().join("fifo");
    common::make_fifo(&fifo);
    std::os::unix::fs::symlink("/dev/null", dir.path().join("null")).unwrap();
    for (args, said) in [
        (
            vec!["merge", "base.json", "ours.json", "ours.json"],
            "never writes an output over one of its inputs",
        ),
        (
            vec![
                "merge",
                "base.json",
                "ours.json",
                "theirs.json",
                "--output",
                "base.json",
            ],
            "never writes an output over one of its inputs",
        ),
        (
            vec!["merge", "base.json", "fifo", "theirs.json"],
            "not a regular file",
        ),
        (
            vec!["merge", "base.json", "null", "theirs.json"],
            "not a regular file",
        ),
    ] {
        let output = golden(None, dir.path()).args(&args).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).contains(said),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
    for name in ["base.json", "ours.json", "theirs.json"] {
        assert_eq!(
            fs::read(dir.path().join(name)).unwrap(),
            fs::read(sample_path()).unwrap()
        );
    }
}
