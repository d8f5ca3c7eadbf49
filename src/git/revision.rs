//! A backup file as a git revision holds it (`HEAD~1:data/golden_dataset_backup.json`), for
//! `golden diff`. The blob is written by `git cat-file --filters` (what `git show REV:PATH`
//! prints, with the smudge filters a checkout would apply, so a file kept in Git LFS reads as
//! its content, not as its pointer) into a temp file that has no name (nothing is left behind
//! by a Ctrl-C or a kill), then read like any file. It streams from git into the file: a
//! large backup is never held in memory.

use std::path::Path;
use std::process::Stdio;

use std::fs::File;

use color_eyre::eyre::WrapErr;
use color_eyre::Result;

use super::Git;
use crate::error::invalid_input;

/// Whether `arg` names a revision's file (`REV:PATH`) rather than a file on disk: it is not
/// an existing path and has a `:` after its first character.
pub fn is_revision_spec(arg: &str) -> bool {
    std::fs::symlink_metadata(arg).is_err() && arg.find(':').is_some_and(|at| at > 0)
}

/// The spec of `path` at `revision`, relative to the working folder (git reads `REV:./PATH`
/// from there; a plain `REV:PATH` is from the repository's top).
pub fn spec_of(revision: &str, path: &Path) -> Result<String> {
    // `:PATH` is git's index, not a revision: an empty REV would compare the staged file.
    if revision.trim().is_empty() {
        return Err(invalid_input(
            "--git needs a revision (a branch, a tag, a commit, HEAD~1)",
        ));
    }
    let relative = if path.is_absolute() {
        let top = top_level()?;
        let canonical =
            crate::paths::canonical_even_if_missing(path).unwrap_or_else(|| path.to_path_buf());
        let inside = canonical.strip_prefix(&top).map_err(|_| {
            invalid_input(format!(
                "{} is not inside the git repository at {}",
                path.display(),
                top.display()
            ))
        })?;
        inside.display().to_string()
    } else {
        format!("./{}", path.display())
    };
    Ok(format!("{revision}:{relative}"))
}

/// Writes the blob `spec` names into a new temp file without a name.
pub fn read_blob(spec: &str) -> Result<File> {
    let temp = tempfile::tempfile().wrap_err("creating a temp file for a file read from git")?;
    let out = temp
        .try_clone()
        .wrap_err("creating a temp file for a file read from git")?;
    let step = format!("reading {spec}");
    let (_, output) = Git::in_folder(".")
        .output_with(
            &step,
            // A spec that starts with `-` is a revision's name, never an option of git's.
            ["cat-file", "--filters", "--end-of-options", spec],
            Stdio::from(out),
        )
        // diff(1)'s trouble, whatever it was.
        .map_err(|e| invalid_input(e.to_string()))?;
    if !output.status.success() {
        let said = String::from_utf8_lossy(&output.stderr);
        return Err(invalid_input(format!(
            "reading {spec} from git: {}",
            said.trim().trim_start_matches("fatal: ")
        )));
    }
    refuse_what_is_no_file(spec, &temp)?;
    Ok(temp)
}

/// The top folder of the repository the working folder is in, symlinks resolved.
fn top_level() -> Result<std::path::PathBuf> {
    let top = Git::in_folder(".").toplevel()?;
    Ok(std::fs::canonicalize(&top).unwrap_or(top))
}

/// What git gave for `spec` that is not a backup's content, said plainly: a folder's listing
/// (`HEAD:data`), or the pointer of a Git LFS file whose content git could not fetch.
fn refuse_what_is_no_file(spec: &str, blob: &File) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut start = [0_u8; 64];
    let read = blob
        .read_at(&mut start, 0)
        .wrap_err_with(|| format!("reading {spec} from its temp file"))?;
    let start = &start[..read];
    if start.starts_with(b"version https://git-lfs.github.com/spec/") {
        return Err(invalid_input(format!(
            "{spec} is a Git LFS pointer, not the file: install git-lfs (`git lfs install`) and \
             fetch the file (`git lfs pull`), then run the command again"
        )));
    }
    let kind = Git::in_folder(".")
        .output(
            &format!("reading {spec}"),
            ["cat-file", "-t", "--end-of-options", spec],
        )
        .ok()
        .filter(|(_, output)| output.status.success())
        .map(|(_, output)| String::from_utf8_lossy(&output.stdout).trim().to_string());
    match kind.as_deref() {
        Some("blob") | None => Ok(()),
        Some(other) => Err(invalid_input(format!(
            "{spec} names a {other} in git (a folder?), not a file: name the backup file \
             (REV:data/golden_dataset_backup.json, say)"
        ))),
    }
}
