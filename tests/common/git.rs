//! Real git repositories in temp folders for the tests of the dataset in git (`diff`, `show`,
//! `merge`, `git-setup`): git run without the machine's global or system configuration, with
//! an identity of its own, so a developer's settings (a signing key, a default branch, hooks)
//! cannot change what a test sees.

use std::path::Path;
use std::process::{Command, Output};

use super::{sample_path, stderr_of, stdout_of};

/// The backup's path in the repositories.
pub const BACKUP: &str = "data/golden_dataset_backup.json";

/// `git` run in `dir`, isolated: no global or system config, `HOME` set to `home`, no
/// `GIT_*` or `GOLDEN_*` variable of the environment.
pub fn git_command(dir: &Path, home: &Path) -> Command {
    let mut command = Command::new("git");
    for (key, _) in std::env::vars() {
        let of_git = key.starts_with("GIT_") && key != "GIT_EXEC_PATH";
        if of_git || key.starts_with("GOLDEN_") {
            command.env_remove(key);
        }
    }
    command
        .current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", home)
        .env_remove("RUST_LOG")
        .env_remove("DATABASE_URL")
        .args([
            "-c",
            "user.name=Golden Test",
            "-c",
            "user.email=test@example.invalid",
        ])
        .args(["-c", "commit.gpgsign=false"]);
    command
}

/// [`git_command`] with `args`: its output, whatever its exit.
pub fn git_output(dir: &Path, home: &Path, args: &[&str]) -> Output {
    git_command(dir, home).args(args).output().unwrap()
}

/// [`git_output`] that must succeed: its stdout.
pub fn git_ok(dir: &Path, home: &Path, args: &[&str]) -> String {
    let output = git_output(dir, home, args);
    assert!(
        output.status.success(),
        "git {args:?}: {}{}",
        stdout_of(&output),
        stderr_of(&output)
    );
    stdout_of(&output)
}

/// A new repository in `dir` on branch `main` with the sample dataset committed at [`BACKUP`].
pub fn init_with_sample(dir: &Path, home: &Path) {
    git_ok(dir, home, &["init", "-q", "-b", "main"]);
    std::fs::create_dir_all(dir.join("data")).unwrap();
    std::fs::copy(sample_path(), dir.join(BACKUP)).unwrap();
    git_ok(dir, home, &["add", "-A"]);
    git_ok(dir, home, &["commit", "-q", "-m", "the sample dataset"]);
}
