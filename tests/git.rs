//! Issue 14, the dataset in git: `golden show` (the textconv that makes `git diff` of a backup
//! a diff of records) and `golden git-setup` (which registers it and the merge driver), run
//! as built, against real git repositories in temp folders. git runs isolated from the
//! developer's own config: its global config is a file of the test's, its system config is
//! off, HOME is the temp folder, and no GIT_* variable of the caller's comes through.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{dialects, sample_path, stderr_of, stdout_of};
use serde_json::Value;

const BACKUP: &str = "data/golden_dataset_backup.json";
const BINARY: &str = env!("CARGO_BIN_EXE_golden");

/// A repository in a temp folder, with the environment its git and golden run in.
struct Repo {
    /// Holds the repository (`root`), HOME and the global config file.
    _dir: tempfile::TempDir,
    home: PathBuf,
    root: PathBuf,
    global_config: PathBuf,
}

impl Repo {
    /// A new repository holding nothing, with a global config that holds a setting of its own
    /// (to prove it stays as it is).
    fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let home = fs::canonicalize(dir.path()).unwrap();
        let root = home.join("repo");
        fs::create_dir(&root).unwrap();
        let global_config = home.join("global.gitconfig");
        fs::write(&global_config, "[core]\n\tautocrlf = false\n").unwrap();
        let repo = Repo {
            _dir: dir,
            home,
            root,
            global_config,
        };
        repo.git_ok(&["init", "-q", "-b", "main"]);
        repo
    }

    /// The environment of every program a test runs here.
    fn isolate(&self, command: &mut Command) {
        for (key, _) in std::env::vars() {
            if key.starts_with("GIT_") {
                command.env_remove(key);
            }
        }
        command
            .env("HOME", &self.home)
            .env("GIT_CONFIG_GLOBAL", &self.global_config)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            // Never a repository above the temp folder.
            .env("GIT_CEILING_DIRECTORIES", self.home.parent().unwrap())
            .env("GIT_AUTHOR_NAME", "Golden Test")
            .env("GIT_AUTHOR_EMAIL", "golden@test.invalid")
            .env("GIT_COMMITTER_NAME", "Golden Test")
            .env("GIT_COMMITTER_EMAIL", "golden@test.invalid")
            .env("GIT_PAGER", "cat")
            .env_remove("RUST_LOG");
    }

    fn git(&self, args: &[&str]) -> Output {
        let mut command = Command::new("git");
        command.current_dir(&self.root).args(args);
        self.isolate(&mut command);
        command.output().unwrap()
    }

    fn git_ok(&self, args: &[&str]) -> String {
        let output = self.git(args);
        assert!(
            output.status.success(),
            "git {args:?}: {}{}",
            stdout_of(&output),
            stderr_of(&output)
        );
        stdout_of(&output)
    }

    /// `program` (golden, or a copy of it) with `args`, run in `folder`.
    fn run(&self, program: &Path, folder: &Path, args: &[&str]) -> Output {
        let mut command = Command::new(program);
        command.current_dir(folder).args(args);
        self.isolate(&mut command);
        command.output().unwrap()
    }

    fn golden(&self, args: &[&str]) -> Output {
        self.run(Path::new(BINARY), &self.root, args)
    }

    fn commit_all(&self, message: &str) {
        self.git_ok(&["add", "-A"]);
        self.git_ok(&["commit", "-q", "-m", message]);
    }

    /// The repository with the sample committed, after `golden git-setup`.
    fn with_sample_set_up() -> Repo {
        let repo = Repo::new();
        repo.put_sample();
        succeeded(repo.golden(&["git-setup"]), "git-setup");
        repo.commit_all("the sample");
        repo
    }

    fn put_sample(&self) {
        fs::create_dir_all(self.root.join("data")).unwrap();
        fs::copy(sample_path(), self.root.join(BACKUP)).unwrap();
    }

    fn config(&self, key: &str) -> String {
        self.git_ok(&["config", "--local", "--get", key])
            .trim_end()
            .to_string()
    }
}

fn succeeded(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed ({}): {}{}",
        output.status,
        stdout_of(&output),
        stderr_of(&output)
    );
    output
}

/// Edits the backup at `path` as a person would (a value changed, the checksum dropped, as
/// the README says to), then lets golden write it back in its canonical form.
fn edit_backup(repo: &Repo, path: &Path, edit: impl FnOnce(&mut Value)) {
    let mut file: Value = serde_json::from_slice(&fs::read(path).unwrap()).unwrap();
    edit(&mut file);
    file["metadata"].as_object_mut().unwrap().remove("checksum");
    fs::write(path, serde_json::to_vec(&file).unwrap()).unwrap();
    succeeded(
        repo.golden(&["convert", "--in-place", path.to_str().unwrap()]),
        "convert --in-place",
    );
}

/// Replaces the first `old` of the content of the chunk at `analysis`, `chunk` with `new`;
/// returns the chunk's id and its content before and after.
fn edit_chunk_word(
    file: &mut Value,
    analysis: usize,
    chunk: usize,
    old: &str,
    new: &str,
) -> (String, String, String) {
    let chunk = &mut file["analyses"][analysis]["chunks"][chunk];
    let before = chunk["content"].as_str().unwrap().to_string();
    assert!(before.contains(old), "the chunk holds {old:?}");
    let after = before.replacen(old, new, 1);
    chunk["content"] = Value::String(after.clone());
    (chunk["id"].as_str().unwrap().to_string(), before, after)
}

/// The changed lines of a diff: (`-` lines, `+` lines), file headers left out.
fn changed_lines(diff: &str) -> (Vec<&str>, Vec<&str>) {
    let lines: Vec<&str> = diff
        .lines()
        .filter(|line| !line.starts_with("---") && !line.starts_with("+++"))
        .collect();
    (
        lines
            .iter()
            .copied()
            .filter(|l| l.starts_with('-'))
            .collect(),
        lines
            .iter()
            .copied()
            .filter(|l| l.starts_with('+'))
            .collect(),
    )
}

#[test]
fn git_diff_of_a_one_word_edit_is_one_line_of_one_chunk() {
    let repo = Repo::with_sample_set_up();
    let backup = repo.root.join(BACKUP);
    let mut edited = None;
    edit_backup(&repo, &backup, |file| {
        edited = Some(edit_chunk_word(file, 0, 1, "fetches", "downloads"));
    });
    let (chunk_id, before, after) = edited.unwrap();
    repo.commit_all("one word of one chunk");

    let diff = repo.git_ok(&["diff", "HEAD~1", "HEAD", "--", BACKUP]);
    let (removed, added) = changed_lines(&diff);
    assert_eq!(removed, vec![format!("-    {before}")], "{diff}");
    assert_eq!(added, vec![format!("+    {after}")], "{diff}");
    // The hunk header names the record (git's default: the last line starting with a letter).
    let hunks: Vec<&str> = diff.lines().filter(|l| l.starts_with("@@")).collect();
    assert_eq!(hunks.len(), 1, "{diff}");
    assert!(hunks[0].contains(&format!("chunk {chunk_id}")), "{diff}");

    // Without the textconv the JSON diff also has the checksum: the driver did the work.
    let raw = repo.git_ok(&["diff", "--no-textconv", "HEAD~1", "HEAD", "--", BACKUP]);
    assert!(raw.contains("checksum"), "{raw}");

    // `git log -p` goes through it too, the commit that added the file included, and keeps
    // the renderings in git's cache.
    let log = repo.git_ok(&["log", "-p", "--format=commit %s", "--", BACKUP]);
    assert!(log.contains(&format!("+    {after}")), "{log}");
    assert!(log.contains("\n+backup\n+  version: 1.0\n"), "{log}");
    repo.git_ok(&["rev-parse", "--verify", "refs/notes/textconv/golden"]);
}

#[test]
fn show_is_the_same_bytes_every_time_and_leaves_out_what_changes_on_every_backup() {
    let repo = Repo::new();
    repo.put_sample();
    let first = succeeded(repo.golden(&["show", BACKUP]), "show").stdout;
    let second = succeeded(repo.golden(&["show", BACKUP]), "show").stdout;
    assert_eq!(first, second);
    let text = String::from_utf8(first).unwrap();
    assert!(
        text.starts_with("backup\n  version: 1.0\n  status_filter: completed\n\nanalysis "),
        "{}",
        &text[..200]
    );
    assert_eq!(text.matches("\nanalysis ").count(), 43);
    assert_eq!(text.matches("\nchunk ").count(), 188);
    assert_eq!(text.matches("\nartifact ").count(), 43);
    assert_eq!(text.matches("\nquery ").count(), 48);
    for left_out in ["sha256:", "total_chunks", "2026-11-26T10:05:33"] {
        assert!(!text.contains(left_out), "{left_out}");
    }

    // A new backup of the same data (another created_at, a checksum recomputed) renders the
    // same.
    let mut file: Value =
        serde_json::from_slice(&fs::read(repo.root.join(BACKUP)).unwrap()).unwrap();
    file["created_at"] = Value::String("2030-01-01T00:00:00.000000Z".into());
    file["metadata"].as_object_mut().unwrap().remove("checksum");
    fs::write(
        repo.root.join("again.json"),
        serde_json::to_vec(&file).unwrap(),
    )
    .unwrap();
    succeeded(
        repo.golden(&["convert", "--in-place", "again.json"]),
        "convert",
    );
    let again = succeeded(repo.golden(&["show", "again.json"]), "show").stdout;
    assert_eq!(String::from_utf8(again).unwrap(), text);
}

/// The record blocks of a rendering, in order (the `backup` block left out).
fn records(rendering: &str) -> Vec<&str> {
    rendering
        .split("\n\n")
        .filter(|block| !block.starts_with("backup\n"))
        .map(|block| block.trim_end_matches('\n'))
        .collect()
}

#[test]
fn the_same_data_in_another_dialect_renders_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for fixture in [
        dialects::seed_template(dir.path()),
        dialects::skillforge_flat_1(dir.path()),
        dialects::skillforge_flat_2(dir.path()),
    ] {
        let converted = dir.path().join(format!("{}.golden.json", fixture.label));
        let convert = Command::new(BINARY)
            .args(["convert", fixture.arg(), "--output"])
            .arg(&converted)
            .output()
            .unwrap();
        succeeded(convert, "convert");
        let show = |path: &Path| {
            let output = Command::new(BINARY).arg("show").arg(path).output().unwrap();
            String::from_utf8(succeeded(output, "show").stdout).unwrap()
        };
        let foreign = show(&fixture.path);
        let golden = show(&converted);
        // The original names no status filter; convert names the status its analyses have.
        // The rest of the header (the file's own metadata keys) is the same.
        let header = |rendering: &str| -> Vec<String> {
            rendering
                .split("\n\n")
                .next()
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect()
        };
        let (mut foreign_header, golden_header) = (header(&foreign), header(&golden));
        assert_eq!(
            foreign_header[2], "  status_filter: (none)",
            "{}",
            fixture.label
        );
        assert_eq!(
            golden_header[2], "  status_filter: completed",
            "{}",
            fixture.label
        );
        foreign_header[2] = golden_header[2].clone();
        assert_eq!(foreign_header, golden_header, "{}", fixture.label);
        let (mut foreign_records, mut golden_records) = (records(&foreign), records(&golden));
        if fixture.label.starts_with("SkillForge") {
            // Its reader puts the records in golden's order, as convert does.
            assert_eq!(foreign_records, golden_records, "{}", fixture.label);
        } else {
            // The seed template's analyses stay in the file's order, which convert sorts.
            assert_ne!(foreign_records, golden_records);
            foreign_records.sort_unstable();
            golden_records.sort_unstable();
            assert_eq!(foreign_records, golden_records, "{}", fixture.label);
        }
        if fixture.label == "SkillForge flat 2.0" {
            // Every kind of block and value of the layout is there.
            for expected in [
                "older version)\n",
                "latest)\n",
                &format!("\n  unresolved: {}\n", dialects::UNRESOLVED_REFERENCE),
                "\n  extra.path: [",
                "\nfile extra fixtures\n  {\n",
                "\nfile extra orphan_artifacts\n",
                "\n  metadata.",
            ] {
                assert!(foreign.contains(expected), "{expected:?} in\n{foreign}");
            }
        }
    }
}

#[test]
fn values_read_one_way_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("odd.json");
    let analysis = |id: &str, title: Value, content: &str| {
        serde_json::json!({
            "id": id, "url": "https://docs.rs/serde", "title": title,
            "content_type": "documentation", "status": "completed",
            "created_at": "2025-01-01T00:00:00.000000Z", "updated_at": "2025-01-01T00:00:00.000000Z",
            "chunks": [{
                "id": "00000000-0000-4000-8000-00000000000c", "content": content,
                "section_title": "", "section_path": null,
                "content_type": "documentation", "chunk_index": 0
            }],
            "artifact": null
        })
    };
    let file = serde_json::json!({
        "version": "1.0",
        "created_at": "2026-01-31T12:00:00.000000Z",
        "metadata": {"total_analyses": 2, "total_chunks": 2, "total_artifacts": 0,
                     "status_filter": "completed", "team": "search"},
        "analyses": [
            analysis("00000000-0000-4000-8000-00000000000a", Value::Null, "first\n\n  indented \ntrailing\n"),
            analysis("00000000-0000-4000-8000-00000000000b", Value::String(" (none)".into()), ""),
        ],
        "queries": [{"id": "q 1", "query": "two\nlines", "expected_chunk_ids": [], "modes": ["a"]}]
    });
    fs::write(&path, serde_json::to_vec_pretty(&file).unwrap()).unwrap();
    let output = Command::new(BINARY)
        .arg("show")
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(succeeded(output, "show").stdout).unwrap();
    for expected in [
        // serde_json sorts keys: "analyses" comes before "metadata" and "version".
        "extra.modes: [\"a\"]\n\nbackup\n  version: 1.0\n  status_filter: completed\n  metadata.team: \"search\"\n",
        "  title: (none)\n",
        "  title: \" (none)\"\n",
        "  section_title: \"\"\n  section_path: (none)\n",
        "  content:\n    first\n    \"\"\n    \"  indented \"\n    trailing\n    \"\"\n\n",
        "  content:\n    \"\"\n\nquery",
        "query q 1\n  query: \"two\\nlines\"\n  category: (none)\n  difficulty: (none)\n  \
         expected: (none)\n  extra.modes: [\"a\"]\n",
    ] {
        assert!(text.contains(expected), "{expected:?} in\n{text}");
    }
}

#[test]
fn an_unreadable_file_is_printed_as_it_is_with_raw_if_unreadable_and_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let sample = fs::read_to_string(sample_path()).unwrap();
    let conflicted = dir.path().join("conflicted.json");
    let marked = sample.replacen(
        "  \"analyses\": [\n",
        "<<<<<<< ours\n  \"analyses\": [\n=======\n  \"analyses\": [ \n>>>>>>> theirs\n",
        1,
    );
    fs::write(&conflicted, &marked).unwrap();
    let truncated = dir.path().join("truncated.json");
    fs::write(&truncated, &sample.as_bytes()[..sample.len() / 2]).unwrap();
    for (path, bytes) in [
        (&conflicted, marked.as_bytes()),
        (&truncated, &sample.as_bytes()[..sample.len() / 2]),
    ] {
        let raw = Command::new(BINARY)
            .args(["show", "--raw-if-unreadable"])
            .arg(path)
            .output()
            .unwrap();
        assert!(raw.status.success(), "{}", stderr_of(&raw));
        assert_eq!(raw.stdout, bytes, "the file's bytes, unchanged");
        let warning = stderr_of(&raw);
        assert_eq!(warning.lines().count(), 1, "{warning}");
        assert!(
            warning.starts_with("warning: ") && warning.contains("showing its bytes as they are"),
            "{warning}"
        );

        let refused = Command::new(BINARY).arg("show").arg(path).output().unwrap();
        assert_eq!(refused.status.code(), Some(2), "{}", stderr_of(&refused));
    }

    // What is not a regular file is refused in both modes: a device, a FIFO, a link to one.
    let fifo = dir.path().join("fifo");
    common::make_fifo(&fifo);
    let link = dir.path().join("link-to-zero");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    for path in [Path::new("/dev/zero"), &fifo, &link] {
        for flag in [&["--raw-if-unreadable"][..], &[]] {
            let output = Command::new(BINARY)
                .arg("show")
                .args(flag)
                .arg(path)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{path:?} {flag:?}");
            assert!(output.stdout.is_empty());
            assert!(
                stderr_of(&output).contains("not a regular file"),
                "{}",
                stderr_of(&output)
            );
        }
    }
}

#[test]
fn git_diff_of_a_working_tree_with_conflict_markers_still_works() {
    let repo = Repo::with_sample_set_up();
    let backup = repo.root.join(BACKUP);
    let text = fs::read_to_string(&backup).unwrap();
    fs::write(
        &backup,
        text.replacen(
            "  \"metadata\": {\n",
            "<<<<<<< HEAD\n  \"metadata\": {\n=======\n",
            1,
        ),
    )
    .unwrap();
    let diff = repo.git(&["diff", "--", BACKUP]);
    assert!(diff.status.success(), "{}", stderr_of(&diff));
    let shown = stdout_of(&diff);
    assert!(shown.contains("\n+<<<<<<< HEAD\n"), "{shown}");
    assert!(
        shown.contains("\n-analysis "),
        "the old side is rendered: {shown}"
    );
    assert!(stderr_of(&diff).contains("showing its bytes as they are"));
}

#[test]
fn a_reader_that_stops_reading_is_not_an_error() {
    let mut child = Command::new(BINARY)
        .arg("show")
        .arg(sample_path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is gone: golden's next write meets a closed pipe.
    let output = child.wait_with_output().unwrap();
    assert_eq!(first, "backup\n");
    assert!(output.status.success(), "{}", stderr_of(&output));
    assert_eq!(stderr_of(&output), "");
}

#[test]
fn show_has_no_json_summary() {
    let output = Command::new(BINARY)
        .args(["show", "--json"])
        .arg(sample_path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(output.stdout.is_empty());
    assert!(
        stderr_of(&output).contains("text only"),
        "{}",
        stderr_of(&output)
    );
}

/// Every file under `folder` and its bytes.
fn snapshot(folder: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut pending = vec![folder.to_path_buf()];
    while let Some(next) = pending.pop() {
        for entry in fs::read_dir(&next).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                let relative = path.strip_prefix(folder).unwrap().to_path_buf();
                files.insert(relative, fs::read(&path).unwrap());
            }
        }
    }
    files
}

/// The files that differ between two snapshots.
fn changed_files(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
) -> Vec<PathBuf> {
    let mut changed: Vec<PathBuf> = after
        .iter()
        .filter(|(path, bytes)| before.get(*path) != Some(*bytes))
        .map(|(path, _)| path.clone())
        .collect();
    changed.extend(
        before
            .keys()
            .filter(|path| !after.contains_key(*path))
            .cloned(),
    );
    changed
}

#[test]
fn git_setup_writes_the_attributes_and_the_repository_config_only_and_a_second_run_changes_nothing()
{
    let repo = Repo::new();
    repo.put_sample();
    fs::write(
        repo.root.join(".gitattributes"),
        "# the team's\n*.png binary\ndata/golden_dataset_backup.json text eol=lf\n*.sh text eol=lf\n",
    )
    .unwrap();
    let before = snapshot(&repo.home);

    let output = succeeded(repo.golden(&["git-setup"]), "git-setup");
    let said = stdout_of(&output);
    let after = snapshot(&repo.home);
    assert_eq!(
        changed_files(&before, &after),
        vec![
            PathBuf::from("repo/.git/config"),
            PathBuf::from("repo/.gitattributes")
        ],
        "{said}"
    );
    assert_eq!(
        fs::read_to_string(repo.root.join(".gitattributes")).unwrap(),
        "# the team's\n*.png binary\ndata/golden_dataset_backup.json text eol=lf diff=golden merge=golden\n*.sh text eol=lf\n"
    );
    let golden = BINARY;
    assert_eq!(
        repo.config("diff.golden.textconv"),
        format!("{golden} show --raw-if-unreadable --layout 1")
    );
    assert_eq!(repo.config("diff.golden.cachetextconv"), "true");
    assert_eq!(
        repo.config("merge.golden.name"),
        "golden three-way merge by id"
    );
    assert_eq!(
        repo.config("merge.golden.driver"),
        format!("{golden} merge %O %A %B --name %P")
    );
    // Criss-cross merges keep the common ancestor as their virtual base.
    assert_eq!(repo.config("merge.golden.recursive"), "binary");
    assert!(said.contains(&format!("run {golden}")), "{said}");
    assert!(
        said.contains(
            ".gitattributes: data/golden_dataset_backup.json text eol=lf diff=golden merge=golden"
        ),
        "{said}"
    );
    let attributes = repo.git_ok(&["check-attr", "diff", "merge", "text", "--", BACKUP]);
    assert_eq!(
        attributes,
        format!("{BACKUP}: diff: golden\n{BACKUP}: merge: golden\n{BACKUP}: text: set\n")
    );

    let again = succeeded(repo.golden(&["git-setup"]), "git-setup again");
    assert!(
        stdout_of(&again).starts_with("already set up"),
        "{}",
        stdout_of(&again)
    );
    assert!(changed_files(&after, &snapshot(&repo.home)).is_empty());
    let summary: Value = serde_json::from_slice(
        &succeeded(repo.golden(&["git-setup", "--json"]), "git-setup --json").stdout,
    )
    .unwrap();
    assert_eq!(summary["changed"], Value::Bool(false));
    assert!(changed_files(&after, &snapshot(&repo.home)).is_empty());
}

#[test]
fn git_setup_from_a_subfolder_writes_the_root_attributes_for_each_file() {
    let repo = Repo::new();
    let sub = repo.root.join("tools/scripts");
    fs::create_dir_all(&sub).unwrap();
    let output = succeeded(
        repo.run(
            Path::new(BINARY),
            &sub,
            &[
                "git-setup",
                "--file",
                "../../data/golden_dataset_backup.json",
                "--file",
                "eval set/queries [v2].json",
                "--command",
                "golden",
            ],
        ),
        "git-setup from a subfolder",
    );
    assert!(!sub.join(".gitattributes").exists());
    assert_eq!(
        fs::read_to_string(repo.root.join(".gitattributes")).unwrap(),
        "data/golden_dataset_backup.json diff=golden merge=golden\n\
         \"tools/scripts/eval set/queries \\\\[v2].json\" diff=golden merge=golden\n"
    );
    for path in [BACKUP, "tools/scripts/eval set/queries [v2].json"] {
        let attributes = repo.git_ok(&["check-attr", "diff", "--", path]);
        assert!(attributes.ends_with(": diff: golden\n"), "{attributes}");
    }
    // Not the file of the same name in another folder.
    let elsewhere = repo.git_ok(&[
        "check-attr",
        "diff",
        "--",
        "other/data/golden_dataset_backup.json",
    ]);
    assert!(elsewhere.ends_with(": diff: unspecified\n"), "{elsewhere}");
    assert_eq!(
        repo.config("diff.golden.textconv"),
        "golden show --raw-if-unreadable --layout 1"
    );
    assert_eq!(
        repo.config("merge.golden.driver"),
        "golden merge %O %A %B --name %P"
    );
    assert!(
        stdout_of(&output).contains("now run golden;"),
        "{}",
        stdout_of(&output)
    );
}

#[test]
fn git_setup_outside_a_repository_or_without_git_says_what_to_do() {
    let repo = Repo::new();
    let outside = repo.home.join("not-a-repository");
    fs::create_dir(&outside).unwrap();
    let output = repo.run(Path::new(BINARY), &outside, &["git-setup"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("is not inside a git work tree"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(
        fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written"
    );

    // A .gitattributes golden cannot edit as text stops the setup before anything is written.
    fs::write(
        repo.root.join(".gitattributes"),
        b"*.bin binary\n\xff\xfe\n",
    )
    .unwrap();
    let config_before = fs::read(repo.root.join(".git/config")).unwrap();
    let output = repo.golden(&["git-setup"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("not UTF-8"),
        "{}",
        stderr_of(&output)
    );
    assert_eq!(
        fs::read(repo.root.join(".git/config")).unwrap(),
        config_before
    );
    fs::remove_file(repo.root.join(".gitattributes")).unwrap();

    let no_git = repo.home.join("empty-path");
    fs::create_dir(&no_git).unwrap();
    let mut command = Command::new(BINARY);
    command.current_dir(&repo.root).arg("git-setup");
    repo.isolate(&mut command);
    let output = command.env("PATH", &no_git).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr_of(&output));
    assert!(
        stderr_of(&output).contains("git is not installed"),
        "{}",
        stderr_of(&output)
    );
    assert!(
        stderr_of(&output).contains("install git"),
        "{}",
        stderr_of(&output)
    );
    assert!(!repo.root.join(".gitattributes").exists());
}

#[test]
fn a_golden_whose_path_has_spaces_and_quotes_runs_as_git_diff_textconv() {
    let repo = Repo::new();
    let folder = repo.home.join("my tools/it's here");
    fs::create_dir_all(&folder).unwrap();
    let copy = folder.join("golden");
    fs::copy(BINARY, &copy).unwrap();
    repo.put_sample();
    succeeded(repo.run(&copy, &repo.root, &["git-setup"]), "git-setup");
    let quoted = format!("'{}'", copy.display().to_string().replace('\'', r"'\''"));
    assert_eq!(
        repo.config("diff.golden.textconv"),
        format!("{quoted} show --raw-if-unreadable --layout 1")
    );
    repo.commit_all("the sample");

    let backup = repo.root.join(BACKUP);
    let mut edited = None;
    edit_backup(&repo, &backup, |file| {
        edited = Some(edit_chunk_word(file, 2, 0, " the ", " a "));
    });
    let (chunk_id, _, after) = edited.unwrap();
    // The working tree against the index: git hands the textconv the file itself, or a temp
    // copy of the blob.
    let diff = repo.git_ok(&["diff", "--", BACKUP]);
    let (removed, added) = changed_lines(&diff);
    assert_eq!((removed.len(), added.len()), (1, 1), "{diff}");
    assert_eq!(added[0], format!("+    {after}"));
    assert!(diff.contains(&format!("chunk {chunk_id}")), "{diff}");
}
