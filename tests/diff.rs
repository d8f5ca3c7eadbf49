//! `golden diff`: what a reviewer of a pull request that edits the golden dataset sees. The
//! facts of `--json` are checked against an independent reading of the files (each converted
//! to golden's format by `golden convert` and compared here, record by record, with
//! serde_json), for every pair of the dialect files the tests build; the text is checked for
//! what a reviewer reads: the changed word, the moved chunk, the query that lost its answer.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use common::dialects::{self, ok, run};
use common::git::{git_ok, init_with_sample, BACKUP};
use common::{json_of, sample_path, stderr_of, stdout_of, workdir};
use serde_json::{json, Value};

/// `golden diff --json OLD NEW` in `dir`: its exit code and facts.
fn diff_json(dir: &Path, old: &str, new: &str) -> (i32, Value) {
    let output = run(None, dir, &["diff", "--json", old, new]);
    let code = output.status.code().unwrap_or(-1);
    assert!(
        code == 0 || code == 1,
        "diff {old} {new} failed:\n{}",
        stderr_of(&output)
    );
    (code, json_of(&output))
}

/// The sample with the edits of a typical pull request; returns the file's path.
fn edited_sample(dir: &Path) -> PathBuf {
    let mut file: Value = serde_json::from_slice(&std::fs::read(sample_path()).unwrap()).unwrap();
    let analyses = file["analyses"].as_array_mut().unwrap();
    analyses[0]["title"] = json!("Specifying dependencies (edited)");
    let content = analyses[0]["chunks"][0]["content"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(content.contains("pulls"));
    analyses[0]["chunks"][0]["content"] = json!(content.replacen("pulls", "fetches", 1));
    // The fourth analysis goes, with its chunks and artifact.
    analyses.remove(3);
    // The last chunk of the second analysis moves to the end of the third.
    let mut moved = analyses[1]["chunks"].as_array_mut().unwrap().pop().unwrap();
    let to_index = analyses[2]["chunks"].as_array().unwrap().len();
    moved["chunk_index"] = json!(to_index);
    analyses[2]["chunks"].as_array_mut().unwrap().push(moved);
    analyses[4]["chunks"].as_array_mut().unwrap().push(json!({
        "id": "00000000-0000-0000-0000-000000000005",
        "content": "A brand new chunk.",
        "section_title": null,
        "section_path": null,
        "content_type": "text",
        "chunk_index": 99
    }));
    analyses[5]["reviewer"] = json!("ana");
    let first_chunk = analyses[0]["chunks"][0]["id"].clone();
    let queries = file["queries"].as_array_mut().unwrap();
    queries[0]["expected_chunk_ids"]
        .as_array_mut()
        .unwrap()
        .push(json!("00000000-0000-0000-0000-000000000005"));
    queries[1]["difficulty"] = json!("hard");
    queries.remove(2);
    queries
        .push(json!({"id": "q-new", "query": "What is new?", "expected_chunk_ids": [first_chunk]}));
    file["metadata"].as_object_mut().unwrap().remove("checksum");
    let path = dir.join("edited.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    path
}

/// [`edited_sample`] made a valid backup: no query expects a chunk it lacks, its totals right.
fn valid_edited_sample(dir: &Path) -> PathBuf {
    let path = edited_sample(dir);
    let mut file: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut chunks = BTreeSet::new();
    let (mut chunk_count, mut artifacts) = (0, 0);
    for analysis in file["analyses"].as_array().unwrap() {
        for chunk in analysis["chunks"].as_array().unwrap() {
            chunks.insert(chunk["id"].as_str().unwrap().to_string());
            chunk_count += 1;
        }
        artifacts += u64::from(!analysis["artifact"].is_null());
    }
    let analyses = file["analyses"].as_array().unwrap().len();
    for query in file["queries"].as_array_mut().unwrap() {
        query["expected_chunk_ids"]
            .as_array_mut()
            .unwrap()
            .retain(|id| chunks.contains(id.as_str().unwrap()));
    }
    let queries = file["queries"].as_array().unwrap().len();
    let metadata = &mut file["metadata"];
    metadata["total_analyses"] = json!(analyses);
    metadata["total_chunks"] = json!(chunk_count);
    metadata["total_artifacts"] = json!(artifacts);
    metadata["total_queries"] = json!(queries);
    let valid = dir.join("valid-edited.json");
    std::fs::write(&valid, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    valid
}

#[test]
fn a_file_compared_with_itself_prints_only_the_summary_and_exits_0() {
    let dir = workdir();
    let fixtures = [
        dialects::seed_template(dir.path()),
        dialects::skillforge_flat_1(dir.path()),
        dialects::skillforge_flat_2(dir.path()),
    ];
    let mut files: Vec<String> = vec![sample_path().display().to_string()];
    files.extend(fixtures.iter().map(|f| f.arg().to_string()));
    for file in &files {
        let output = run(None, dir.path(), &["diff", file, file]);
        assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
        let stdout = stdout_of(&output);
        assert_eq!(stdout.lines().count(), 1, "{stdout}");
        assert!(stdout.starts_with("no differences ("), "{stdout}");
        assert!(stderr_of(&output).is_empty(), "{}", stderr_of(&output));
    }
}

#[test]
fn a_pull_request_s_edits_are_reported_by_id_with_their_effect_on_evaluation() {
    let dir = workdir();
    let sample = sample_path().display().to_string();
    let edited = edited_sample(dir.path()).display().to_string();
    let (code, facts) = diff_json(dir.path(), &sample, &edited);
    assert_eq!(code, 1);
    assert_eq!(facts["same"], false);
    let summary = &facts["summary"];
    assert_eq!(
        summary["analysis"],
        json!({"added": 0, "removed": 1, "changed": 2, "moved": 0})
    );
    assert_eq!(
        summary["chunk"],
        json!({"added": 1, "removed": 5, "changed": 1, "moved": 1})
    );
    assert_eq!(
        summary["artifact"],
        json!({"added": 0, "removed": 1, "changed": 0, "moved": 0})
    );
    assert_eq!(
        summary["query"],
        json!({"added": 1, "removed": 1, "changed": 2, "moved": 0})
    );
    let changes = facts["changes"].as_array().unwrap();
    let find = |id: &str| {
        changes
            .iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("no change of {id}: {facts:#}"))
    };
    let title = find("0f823d06-d8a8-4993-91e9-29445a74d33c");
    assert_eq!(title["fields"][0]["field"], "title");
    assert_eq!(
        title["fields"][0]["new"],
        "Specifying dependencies (edited)"
    );
    let moved = find("b36c4f0a-8458-474e-a81a-8a811b6a7c6f");
    assert_eq!(moved["change"], "moved");
    assert_eq!(
        moved["moved"]["from"]["analysis_id"],
        "a816c9e5-a093-4889-9b0b-1554cde3f537"
    );
    assert_eq!(
        moved["moved"]["to"]["analysis_id"],
        "6cc563bd-9ce5-4322-ad69-41ed6a93d5c7"
    );
    let extra = find("66bd576b-4da2-4116-926e-d2a7af5e9f72");
    assert_eq!(
        extra["fields"],
        json!([{"field": "extra.reviewer", "new": "ana"}])
    );
    assert_eq!(
        find("q-101")["expected_added"],
        json!(["00000000-0000-0000-0000-000000000005"])
    );
    assert_eq!(find("q-102")["fields"][0]["new"], "hard");
    assert_eq!(find("q-103")["change"], "removed");
    assert_eq!(find("q-new")["change"], "added");
    let evaluation = &facts["evaluation"];
    assert_eq!(
        evaluation["queries_expecting_removed_chunks"],
        json!([{"query": "q-104", "chunk": "7807694a-2c3a-4db6-b4a2-f35bf7942ad2"}])
    );
    let changed: Vec<&str> = evaluation["queries_expecting_changed_chunks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["query"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["q-101", "q-new"]);
    assert_eq!(
        evaluation["chunks_no_longer_expected"],
        json!(["fda05b5a-2651-417e-bcd4-f7f98f6e9761"])
    );

    // The text a reviewer reads.
    let output = run(None, dir.path(), &["diff", &sample, &edited]);
    assert_eq!(output.status.code(), Some(1));
    let text = stdout_of(&output);
    assert!(
        text.contains("content: By default Cargo [-pulls-]{+fetches+} dependencies"),
        "{text}"
    );
    assert!(text.contains(
        "> chunk b36c4f0a-8458-474e-a81a-8a811b6a7c6f #5: moved from analysis a816c9e5-a093-4889-9b0b-1554cde3f537 #3"
    ));
    assert!(text.contains(
        "- analysis 54517aee-c148-40f0-a827-d0f7e96d88a1 \"Validating References with Lifetimes\" with 5 chunks and 1 artifact"
    ));
    assert!(text.contains("query q-104 expects chunk 7807694a-2c3a-4db6-b4a2-f35bf7942ad2, which the new file no longer holds"));
    let last = text.lines().last().unwrap();
    assert!(
        last.starts_with(
            "analyses: 1 removed, 2 changed; chunks: 1 added, 5 removed, 1 changed, 1 moved;"
        ),
        "{last}"
    );

    // Reversed, added and removed swap.
    let (_, back) = diff_json(dir.path(), &edited, &sample);
    assert_eq!(
        back["summary"]["chunk"],
        json!({"added": 5, "removed": 1, "changed": 1, "moved": 1})
    );
}

#[test]
fn the_order_of_records_in_the_file_is_no_difference() {
    let dir = workdir();
    let mut file: Value = serde_json::from_slice(&std::fs::read(sample_path()).unwrap()).unwrap();
    let analyses = file["analyses"].as_array_mut().unwrap();
    analyses.reverse();
    for analysis in analyses.iter_mut() {
        analysis["chunks"].as_array_mut().unwrap().reverse();
    }
    file["queries"].as_array_mut().unwrap().reverse();
    let path = dir.path().join("reversed.json");
    std::fs::write(&path, serde_json::to_vec(&file).unwrap()).unwrap();
    let (code, facts) = diff_json(
        dir.path(),
        sample_path().to_str().unwrap(),
        path.to_str().unwrap(),
    );
    assert_eq!(code, 0, "{facts:#}");
}

/// Each record of a file in golden's format, by kind and id, as the test reads it.
fn records_of(file: &Value) -> BTreeMap<(&'static str, String), Value> {
    let mut records = BTreeMap::new();
    for analysis in file["analyses"].as_array().unwrap() {
        let id = analysis["id"].as_str().unwrap().to_string();
        let mut head = analysis.as_object().unwrap().clone();
        for key in ["chunks", "artifact", "artifact_versions"] {
            head.remove(key);
        }
        records.insert(("analysis", id.clone()), Value::Object(head));
        for chunk in analysis["chunks"].as_array().unwrap() {
            let mut chunk = chunk.as_object().unwrap().clone();
            chunk.insert("(analysis)".into(), json!(id));
            records.insert(
                ("chunk", chunk["id"].as_str().unwrap().into()),
                Value::Object(chunk),
            );
        }
        let versions = analysis.get("artifact_versions").and_then(Value::as_array);
        let latest = analysis.get("artifact").filter(|a| !a.is_null());
        for (artifact, is_latest) in versions
            .into_iter()
            .flatten()
            .map(|a| (a, false))
            .chain(latest.map(|a| (a, true)))
        {
            let mut artifact = artifact.as_object().unwrap().clone();
            artifact.insert("(analysis)".into(), json!(id));
            artifact.insert("(latest)".into(), json!(is_latest));
            records.insert(
                ("artifact", artifact["id"].as_str().unwrap().into()),
                Value::Object(artifact),
            );
        }
    }
    for query in file["queries"].as_array().into_iter().flatten() {
        let mut query = query.as_object().unwrap().clone();
        // A set, for an evaluation.
        let expected: BTreeSet<String> = query["expected_chunk_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|id| id.as_str().unwrap().to_string())
            .collect();
        query.insert("expected_chunk_ids".into(), json!(expected));
        records.insert(
            ("query", query["id"].as_str().unwrap().into()),
            Value::Object(query),
        );
    }
    records
}

/// What `diff --json`'s summary must say of `old` and `new`, computed from their records.
fn expected_summary(old: &Value, new: &Value) -> Value {
    let (old, new) = (records_of(old), records_of(new));
    let mut summary: BTreeMap<&str, [u64; 4]> = BTreeMap::new();
    for kind in ["analysis", "chunk", "artifact", "query"] {
        summary.insert(kind, [0; 4]);
    }
    let without_place = |record: &Value| {
        let mut record = record.as_object().unwrap().clone();
        for key in ["(analysis)", "chunk_index"] {
            record.remove(key);
        }
        record
    };
    let place = |record: &Value| {
        (
            record.get("(analysis)").cloned(),
            record.get("chunk_index").cloned(),
        )
    };
    for ((kind, id), record) in &old {
        let counts = summary.get_mut(kind).unwrap();
        match new.get(&(*kind, id.clone())) {
            None => counts[1] += 1,
            Some(now) => {
                let moved = *kind != "analysis" && *kind != "query" && place(record) != place(now);
                let changed = without_place(record) != without_place(now);
                counts[2] += u64::from(changed);
                counts[3] += u64::from(moved);
            }
        }
    }
    for key in new.keys() {
        if !old.contains_key(key) {
            summary.get_mut(key.0).unwrap()[0] += 1;
        }
    }
    summary
        .into_iter()
        .map(|(kind, [added, removed, changed, moved])| {
            (
                kind.to_string(),
                json!({"added": added, "removed": removed, "changed": changed, "moved": moved}),
            )
        })
        .collect::<serde_json::Map<String, Value>>()
        .into()
}

#[test]
fn every_pair_of_dialect_files_is_reported_as_an_independent_reading_of_them_says() {
    let dir = workdir();
    let fixtures = [
        dialects::seed_template(dir.path()),
        dialects::skillforge_flat_1(dir.path()),
        dialects::skillforge_flat_2(dir.path()),
    ];
    let mut files: Vec<String> = vec![
        sample_path().display().to_string(),
        valid_edited_sample(dir.path()).display().to_string(),
    ];
    files.extend(fixtures.iter().map(|f| f.arg().to_string()));
    // Each file in golden's format, converted by `golden convert`, and read back here.
    let mut converted = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let name = format!("converted-{i}.json");
        ok(
            run(None, dir.path(), &["convert", file, "--output", &name]),
            "convert",
        );
        let value: Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(&name)).unwrap()).unwrap();
        converted.push((name, value));
    }
    // Pairs of different dialects hold records of the same ids with different fields: the
    // comparison is not only of ids.
    let mut pairs_with_changed_records = 0;
    for (i, old) in files.iter().enumerate() {
        // A file and its conversion hold the same records, and the same file-level keys:
        // they do not differ (a file that names no status_filter covers its analyses'
        // statuses, all "completed" here, which is what convert writes).
        let (code, facts) = diff_json(dir.path(), old, &converted[i].0);
        for kind in ["file", "analysis", "chunk", "artifact", "query"] {
            assert_eq!(
                facts["summary"][kind],
                json!({"added": 0, "removed": 0, "changed": 0, "moved": 0}),
                "{old} against its conversion: {facts:#}"
            );
        }
        assert_eq!(code, 0, "{old} against its conversion: {facts:#}");
        for (j, new) in files.iter().enumerate() {
            let (code, facts) = diff_json(dir.path(), old, new);
            let expected = expected_summary(&converted[i].1, &converted[j].1);
            let mut found = facts["summary"].clone();
            found.as_object_mut().unwrap().remove("file");
            assert_eq!(found, expected, "{old} → {new}");
            pairs_with_changed_records += u64::from(
                found
                    .as_object()
                    .unwrap()
                    .values()
                    .any(|counts| counts["changed"] != 0),
            );
            let records_differ = expected
                .as_object()
                .unwrap()
                .values()
                .any(|counts| counts.as_object().unwrap().values().any(|n| n != 0));
            let file_keys_differ = facts["summary"]["file"]["changed"] != 0;
            assert_eq!(
                code == 1,
                records_differ || file_keys_differ,
                "{old} → {new}: {facts:#}"
            );
            assert_eq!(i == j, code == 0, "{old} → {new}");
        }
    }
    assert!(
        pairs_with_changed_records >= 8,
        "{pairs_with_changed_records}"
    );
}

/// git in `repo`, isolated (its home is the repository itself).
fn git(repo: &Path, args: &[&str]) -> String {
    git_ok(repo, repo, args)
}

#[test]
fn a_side_may_be_a_git_revision_and_diff_git_compares_it_with_the_working_tree() {
    let dir = workdir();
    let repo = dir.path();
    init_with_sample(repo, repo);
    let file = repo.join(BACKUP);
    let edited = edited_sample(dir.path());
    std::fs::rename(&edited, &file).unwrap();

    // The working tree against HEAD, three ways.
    let (code, by_spec) = diff_json(
        repo,
        "HEAD:data/golden_dataset_backup.json",
        "data/golden_dataset_backup.json",
    );
    assert_eq!(code, 1);
    assert_eq!(by_spec["old"], "HEAD:data/golden_dataset_backup.json");
    let output = run(None, repo, &["diff", "--json", "--git", "HEAD"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    let by_git = json_of(&output);
    assert_eq!(by_git["summary"], by_spec["summary"]);
    assert_eq!(by_git["changes"], by_spec["changes"]);
    // From a subfolder, the file is named from there.
    std::fs::create_dir(repo.join("sub")).unwrap();
    let output = run(
        None,
        &repo.join("sub"),
        &[
            "diff",
            "--json",
            "--git",
            "HEAD",
            "../data/golden_dataset_backup.json",
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert_eq!(json_of(&output)["changes"], by_spec["changes"]);

    // Committed, the working tree equals HEAD; HEAD~1 still differs.
    git(repo, &["commit", "-q", "-am", "edits"]);
    let output = run(None, repo, &["diff", "--git", "HEAD"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr_of(&output));
    let (code, _) = diff_json(
        repo,
        "HEAD~1:data/golden_dataset_backup.json",
        "HEAD:data/golden_dataset_backup.json",
    );
    assert_eq!(code, 1);

    // A revision git cannot read is trouble: exit 2, said plainly.
    let output = run(None, repo, &["diff", "--git", "no-such-branch"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("no-such-branch"),
        "{}",
        stderr_of(&output)
    );
    // A folder of a revision is no file, nor is the pointer of a Git LFS file git could not
    // fetch.
    let output = run(None, repo, &["diff", "HEAD:data", BACKUP]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("HEAD:data names a tree"),
        "{}",
        stderr_of(&output)
    );
    std::fs::write(
        repo.join("data/pointer.json"),
        "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 12\n",
    )
    .unwrap();
    git(repo, &["add", "data/pointer.json"]);
    git(repo, &["commit", "-q", "-m", "a pointer"]);
    let output = run(None, repo, &["diff", "HEAD:data/pointer.json", BACKUP]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr_of(&output).contains("is a Git LFS pointer"),
        "{}",
        stderr_of(&output)
    );
}

#[test]
fn trouble_is_exit_2_as_in_diff_1() {
    let dir = workdir();
    let sample = sample_path().display().to_string();
    std::fs::write(
        dir.path().join("broken.json"),
        "{\"version\": \"1.0\", \"analyses\": [",
    )
    .unwrap();
    let fifo = dir.path().join("fifo");
    assert!(Process::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    for args in [
        vec!["diff", &sample, "missing.json"],
        vec!["diff", &sample, "broken.json"],
        vec!["diff", &sample, "fifo"],
        vec!["diff", &sample],
        vec!["diff", "--git", "HEAD", &sample, &sample],
    ] {
        let output = run(None, dir.path(), &args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr_of(&output)
        );
        assert!(
            stderr_of(&output).starts_with("error: "),
            "{args:?}: {}",
            stderr_of(&output)
        );
    }
    // Outside a repository, --git says so.
    let output = run(None, dir.path(), &["diff", "--git", "HEAD"]);
    assert_eq!(output.status.code(), Some(2));
}

/// The sample as a file of `name` with `edit` applied; returns its path.
fn sample_edited(dir: &Path, name: &str, edit: impl FnOnce(&mut Value)) -> String {
    let mut file: Value = serde_json::from_slice(&std::fs::read(sample_path()).unwrap()).unwrap();
    edit(&mut file);
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    path.display().to_string()
}

#[test]
fn a_file_of_the_original_tool_without_status_filter_equals_its_conversion() {
    let dir = workdir();
    let bare = sample_edited(dir.path(), "no-status-filter.json", |file| {
        let metadata = file["metadata"].as_object_mut().unwrap();
        metadata.remove("status_filter");
        metadata.remove("checksum");
    });
    ok(
        run(
            None,
            dir.path(),
            &["convert", &bare, "--output", "converted.json"],
        ),
        "convert",
    );
    let output = run(None, dir.path(), &["diff", &bare, "converted.json"]);
    assert_eq!(output.status.code(), Some(0), "{}", stdout_of(&output));
    // A status_filter that does change is still a difference.
    let all = sample_edited(dir.path(), "all.json", |file| {
        file["metadata"]["status_filter"] = json!("all");
    });
    let (code, facts) = diff_json(dir.path(), &bare, &all);
    assert_eq!(code, 1);
    assert_eq!(
        facts["changes"][0]["id"], "metadata.status_filter",
        "{facts:#}"
    );
}

#[test]
fn a_top_level_key_named_like_a_metadata_key_does_not_hide_a_change_of_it() {
    let dir = workdir();
    let sample = sample_path().display().to_string();
    // status_filter changes in `metadata`; a top-level key of the same dotted name is added.
    let masked = sample_edited(dir.path(), "masked.json", |file| {
        file["metadata"]["status_filter"] = json!("all");
        file["metadata.status_filter"] = json!("completed");
    });
    let (code, facts) = diff_json(dir.path(), &sample, &masked);
    assert_eq!(code, 1, "{facts:#}");
    assert_eq!(facts["summary"]["file"]["changed"], 2, "{facts:#}");
    // A key moved from `metadata` to the top level is a change of both.
    let in_metadata = sample_edited(dir.path(), "in-metadata.json", |file| {
        file["metadata"]["reviewer"] = json!("ana");
    });
    let at_top = sample_edited(dir.path(), "at-top.json", |file| {
        file["metadata.reviewer"] = json!("ana");
    });
    let (code, facts) = diff_json(dir.path(), &in_metadata, &at_top);
    assert_eq!(code, 1, "{facts:#}");
}

#[test]
fn a_reader_that_stops_early_still_gets_exit_1_when_the_files_differ() {
    use std::process::Stdio;
    let dir = workdir();
    let sample = sample_path().display().to_string();
    let edited = edited_sample(dir.path()).display().to_string();
    for (old, new, expected) in [(&sample, &edited, 1), (&sample, &sample, 0)] {
        // `golden diff OLD NEW | head -0`: the pipe is closed before golden writes.
        let mut child = golden_process(dir.path())
            .args(["diff", old, new])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(expected),
            "{old} {new}: {}",
            stderr_of(&output)
        );
        assert!(stderr_of(&output).is_empty(), "{}", stderr_of(&output));
    }
}

#[test]
fn a_revision_is_never_read_as_an_option_of_git_and_an_empty_one_is_refused() {
    let dir = workdir();
    let repo = dir.path();
    init_with_sample(repo, repo);
    let file = repo.join(BACKUP);
    // Staged but not committed: an empty REV would read the index (`:PATH`) and find no
    // difference.
    std::fs::copy(edited_sample(dir.path()), &file).unwrap();
    git(repo, &["add", "."]);
    let output = run(None, repo, &["diff", "--git", ""]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout_of(&output));
    assert!(
        stderr_of(&output).starts_with("error: "),
        "{}",
        stderr_of(&output)
    );
    for spec in [
        "-p:data/golden_dataset_backup.json",
        "--batch-all-objects:x",
    ] {
        let output = run(
            None,
            repo,
            &["diff", "--", spec, "data/golden_dataset_backup.json"],
        );
        assert_eq!(output.status.code(), Some(2));
        let said = stderr_of(&output);
        assert!(said.starts_with("error: reading "), "{said}");
        assert!(!said.contains("usage: git cat-file"), "{said}");
        assert!(!said.contains("cannot be used together"), "{said}");
    }
}

/// The built binary as a plain process in `dir` (its pipes and its wait are the test's).
fn golden_process(dir: &Path) -> Process {
    let mut command = Process::new(env!("CARGO_BIN_EXE_golden"));
    command
        .current_dir(dir)
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL");
    command
}

/// The peak resident memory of `golden args` in `dir`, in kilobytes, and its exit code.
// The child is reaped by wait4, which clippy does not see.
#[allow(clippy::zombie_processes)]
fn peak_rss_kb(dir: &Path, args: &[&str]) -> (i64, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;
    let child = golden_process(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own unreaped child.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = child.id() as libc::pid_t;
    // SAFETY: wait4 on our own child's pid with valid pointers.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    assert_eq!(waited, pid);
    (
        usage.ru_maxrss,
        std::process::ExitStatus::from_raw(status).code(),
    )
}

/// A file of `analyses` analyses of two chunks, each chunk of `content_bytes` of text and
/// with an extra of `extra_bytes` bytes, written as it goes (the test's own memory stays
/// small: a child's peak starts at its parent's); `reversed` lists the analyses and chunks in
/// the other order.
fn file_with_large_records(
    path: &Path,
    analyses: usize,
    (content_bytes, extra_bytes): (usize, usize),
    reversed: bool,
) {
    use std::io::Write;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let notes = "n".repeat(extra_bytes);
    let text = "t".repeat(content_bytes);
    write!(
        out,
        r#"{{"version": "1.0", "created_at": "2026-01-01T00:00:00Z", "metadata": {{"total_analyses": {analyses}, "total_chunks": {}, "total_artifacts": 0}}, "analyses": ["#,
        analyses * 2
    )
    .unwrap();
    let order: Vec<usize> = if reversed {
        (0..analyses).rev().collect()
    } else {
        (0..analyses).collect()
    };
    for (n, i) in order.into_iter().enumerate() {
        let chunks: Vec<String> = (0..2)
            .map(|j| {
                format!(
                    r#"{{"id": "00000000-0000-4000-8000-{:06x}{:06x}", "content": "chunk {j} of {i} {text}", "section_title": null, "section_path": null, "content_type": "article", "chunk_index": {j}, "notes": "{notes}"}}"#,
                    i, j
                )
            })
            .collect();
        let chunks = if reversed {
            format!("{}, {}", chunks[1], chunks[0])
        } else {
            chunks.join(", ")
        };
        write!(
            out,
            r#"{}{{"id": "00000000-0000-4000-9000-{i:012x}", "url": "https://example.com/{i}", "title": "Doc {i}", "content_type": "article", "status": "completed", "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "chunks": [{chunks}], "artifact": null}}"#,
            if n == 0 { "" } else { ", " }
        )
        .unwrap();
    }
    writeln!(out, "]}}").unwrap();
}

#[test]
fn records_that_wait_stay_within_the_budget_whatever_the_size_of_their_extras() {
    let dir = workdir();
    // Two 48 MB files in opposite orders: most of one file waits for the other, nearly all
    // of it in the chunks' extras.
    file_with_large_records(&dir.path().join("a.json"), 2000, (0, 12_000), false);
    file_with_large_records(&dir.path().join("b.json"), 2000, (0, 12_000), true);
    let (peak, code) = peak_rss_kb(dir.path(), &["diff", "a.json", "b.json"]);
    assert_eq!(code, Some(0));
    // The process itself takes about 27 MB before reading anything (a debug build, the binary's
    // pages counted); the waiting room keeps at most 8 MB of records in memory. Holding either
    // file's records would take well over 100 MB.
    assert!(
        peak < 56 * 1024,
        "golden diff of two 48 MB files in different orders peaked at {peak} KB"
    );
}

#[test]
fn large_records_in_the_same_order_do_not_pile_up_between_the_reading_threads() {
    let dir = workdir();
    // Two 60 MB files alike, chunks of 100 kB: a few hundred records are most of a file.
    for name in ["a.json", "b.json"] {
        file_with_large_records(&dir.path().join(name), 300, (100_000, 0), false);
    }
    let mut peaks = Vec::new();
    for _ in 0..3 {
        let (peak, code) = peak_rss_kb(dir.path(), &["diff", "a.json", "b.json"]);
        assert_eq!(code, Some(0));
        peaks.push(peak);
    }
    assert!(
        peaks.iter().all(|&peak| peak < 40 * 1024),
        "golden diff of two 60 MB files in the same order peaked at {peaks:?} KB"
    );
}

#[test]
fn an_id_given_twice_or_queries_that_are_not_a_list_are_trouble_not_a_difference() {
    let dir = workdir();
    let sample = sample_path().display().to_string();
    let chunk_twice = sample_edited(dir.path(), "chunk-twice.json", |file| {
        let chunk = file["analyses"][0]["chunks"][0].clone();
        file["analyses"][1]["chunks"]
            .as_array_mut()
            .unwrap()
            .push(chunk);
    });
    let analysis_twice = sample_edited(dir.path(), "analysis-twice.json", |file| {
        let analysis = file["analyses"][0].clone();
        let mut copy = analysis.clone();
        copy["chunks"] = json!([]);
        copy["artifact"] = Value::Null;
        file["analyses"].as_array_mut().unwrap().push(copy);
    });
    let query_twice = sample_edited(dir.path(), "query-twice.json", |file| {
        let query = file["queries"][0].clone();
        file["queries"].as_array_mut().unwrap().push(query);
    });
    let queries_object = sample_edited(dir.path(), "queries-object.json", |file| {
        file["queries"] = json!({"a": 1});
    });
    for (file, said) in [
        (
            &chunk_twice,
            "holds chunk 9c8a0f3b-4845-4efe-ac33-8dd76a91886d twice",
        ),
        (
            &analysis_twice,
            "holds analysis 0f823d06-d8a8-4993-91e9-29445a74d33c twice",
        ),
        (&query_twice, "holds query q-101 twice"),
        (&queries_object, "are not a list"),
    ] {
        for args in [
            ["diff", file.as_str(), file.as_str()],
            ["diff", sample.as_str(), file.as_str()],
        ] {
            let output = run(None, dir.path(), &args);
            assert_eq!(
                output.status.code(),
                Some(2),
                "{args:?}: {}",
                stdout_of(&output)
            );
            assert!(
                stderr_of(&output).contains(said),
                "{args:?}: {}",
                stderr_of(&output)
            );
        }
    }
}

#[test]
fn a_new_expectation_of_a_chunk_neither_file_holds_is_named() {
    let dir = workdir();
    let sample = sample_path().display().to_string();
    let typo = "9c8a0f3b-4845-4efe-ac33-000000000000";
    let edited = sample_edited(dir.path(), "typo.json", |file| {
        file["queries"][0]["expected_chunk_ids"]
            .as_array_mut()
            .unwrap()
            .push(json!(typo));
        file["queries"].as_array_mut().unwrap().push(json!({
            "id": "q-new", "query": "new", "expected_chunk_ids": [typo]
        }));
    });
    let (code, facts) = diff_json(dir.path(), &sample, &edited);
    assert_eq!(code, 1);
    assert_eq!(
        facts["evaluation"]["queries_expecting_chunks_in_neither_file"],
        json!([{"query": "q-101", "chunk": typo}, {"query": "q-new", "chunk": typo}])
    );
    // A file that already had it does not name it again.
    let (_, facts) = diff_json(dir.path(), &edited, &edited);
    assert_eq!(
        facts["evaluation"]["queries_expecting_chunks_in_neither_file"],
        json!([])
    );
    let text = stdout_of(&run(None, dir.path(), &["diff", &sample, &edited]));
    assert!(
        text.contains(&format!(
            "query q-new expects chunk {typo}, which neither file holds"
        )),
        "{text}"
    );
}

#[test]
fn the_text_shows_control_characters_escaped_and_is_the_same_on_every_run() {
    let dir = workdir();
    // A long rewrite of random words (a diff whose cost a time limit would cut short) and a
    // terminal escape with a carriage return that would hide what precedes it.
    let mut seed = 7_u64;
    let mut word = || {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        format!("w{}", (seed >> 33) % 500)
    };
    let old_text: Vec<String> = (0..3000).map(|_| word()).collect();
    let new_text: Vec<String> = old_text
        .iter()
        .enumerate()
        .map(|(i, w)| if i % 3 == 0 { word() } else { w.clone() })
        .collect();
    let old = sample_edited(dir.path(), "old.json", |file| {
        file["analyses"][0]["chunks"][0]["content"] = json!(old_text.join(" "));
    });
    let new = sample_edited(dir.path(), "new.json", |file| {
        file["analyses"][0]["chunks"][0]["content"] = json!(new_text.join(" "));
        file["analyses"][0]["chunks"][1]["content"] = json!("hidden \u{1b}[31mred\rOVER");
    });
    let first = stdout_of(&run(None, dir.path(), &["diff", &old, &new]));
    for _ in 0..3 {
        assert_eq!(
            stdout_of(&run(None, dir.path(), &["diff", &old, &new])),
            first
        );
    }
    assert!(
        !first.contains('\u{1b}') && !first.contains('\r'),
        "{first}"
    );
    assert!(first.contains("\\u{1b}[31mred\\u{d}OVER"), "{first}");
}

#[test]
fn removed_analyses_are_listed_where_the_old_file_had_them() {
    let dir = workdir();
    let sample = sample_path().display().to_string();
    let edited = sample_edited(dir.path(), "removed-and-edited.json", |file| {
        let analyses = file["analyses"].as_array_mut().unwrap();
        for analysis in &mut analyses[9..13] {
            analysis["title"] = json!("edited");
        }
        analyses.drain(5..9);
    });
    let text = stdout_of(&run(None, dir.path(), &["diff", &sample, &edited]));
    let signs: String = text
        .lines()
        .filter(|line| line.starts_with("  - analysis") || line.starts_with("  ~ analysis"))
        .map(|line| line.as_bytes()[2] as char)
        .collect();
    // The four removed where they were, before the four edited that followed them.
    assert_eq!(signs, "----~~~~", "{text}");
}
