//! git, for the commands that work with the repository a backup is committed to. golden runs
//! the `git` program rather than reading `.git` itself: git's config files, attributes and
//! object store stay git's to read and write (its locking included), and what golden does
//! is what the same `git` commands would do by hand. Every failure names the step and what to
//! do.

pub mod revision;
pub mod setup;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use color_eyre::eyre::eyre;
use color_eyre::Result;

use crate::error::invalid_input;

/// git, run in one folder.
#[derive(Debug, Clone)]
pub struct Git {
    folder: PathBuf,
}

impl Git {
    /// git run in `folder` (`git -C folder …`).
    pub fn in_folder(folder: impl Into<PathBuf>) -> Git {
        Git {
            folder: folder.into(),
        }
    }

    pub fn folder(&self) -> &Path {
        &self.folder
    }

    /// Runs `git args…` and returns what it printed on stdout; fails, naming `step` and
    /// quoting git's stderr, unless it exits 0.
    pub fn run<I, S>(&self, step: &str, args: I) -> Result<Vec<u8>>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let (shown, output) = self.output(step, args)?;
        if !output.status.success() {
            return Err(eyre!(
                "{step}: `{shown}` failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(output.stdout)
    }

    /// [`Git::run`], its stdout as text without the final newline.
    pub fn run_text<I, S>(&self, step: &str, args: I) -> Result<String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let stdout = self.run(step, args)?;
        let text = String::from_utf8(stdout)
            .map_err(|_| eyre!("{step}: git printed something that is not UTF-8 text"))?;
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_string())
    }

    /// Runs `git args…` and returns its output whatever its exit status, for the commands
    /// whose status is an answer (`git config --get` exits 1 for a key that is not set), with
    /// the command line as it reads in messages.
    pub fn output<I, S>(&self, step: &str, args: I) -> Result<(String, Output)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.output_with(step, args, Stdio::piped())
    }

    /// [`Git::output`] with git's stdout sent to `stdout` (a file: a blob of any size is never
    /// held in memory); the output's `stdout` is then empty.
    pub fn output_with<I, S>(&self, step: &str, args: I, stdout: Stdio) -> Result<(String, Output)>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = Command::new("git");
        command.arg("-C").arg(&self.folder);
        let mut shown = String::from("git");
        for arg in args {
            shown.push(' ');
            shown.push_str(&arg.as_ref().to_string_lossy());
            command.arg(arg);
        }
        let output = command
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => eyre!(
                    "{step}: git is not installed (no `git` on PATH): install git (Debian: apt-get \
                     install git), then run the command again"
                ),
                _ => eyre!("{step}: cannot run git: {e}"),
            })?;
        Ok((shown, output))
    }

    /// The root of the work tree the folder is in. Outside of one (or in a bare repository):
    /// exit 2, saying so.
    pub fn toplevel(&self) -> Result<PathBuf> {
        let step = "finding the repository";
        let (_, output) = self.output(step, ["rev-parse", "--show-toplevel"])?;
        if !output.status.success() {
            return Err(invalid_input(format!(
                "{} is not inside a git work tree ({}): run golden in the repository the backup \
                 is committed to (`git init` makes one)",
                self.folder.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        let mut stdout = output.stdout;
        if stdout.last() == Some(&b'\n') {
            stdout.pop();
        }
        Ok(path_of_bytes(stdout))
    }
}

#[cfg(unix)]
fn path_of_bytes(bytes: Vec<u8>) -> PathBuf {
    use std::os::unix::ffi::OsStringExt;
    PathBuf::from(std::ffi::OsString::from_vec(bytes))
}

#[cfg(not(unix))]
fn path_of_bytes(bytes: Vec<u8>) -> PathBuf {
    PathBuf::from(String::from_utf8_lossy(&bytes).into_owned())
}
