//! Where results go: the human summary or the single `--json` object on stdout, everything
//! else (logs, progress) on stderr, so `golden … --json | jq` always gets clean JSON.

use std::io::{self, Write};

use serde::Serialize;

/// How the command should present its result.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
    pub quiet: bool,
}

impl Output {
    /// Prints a line of the human-readable result on stdout (nothing in `--json` mode).
    pub fn line(&self, text: impl std::fmt::Display) -> io::Result<()> {
        if self.json {
            return Ok(());
        }
        let mut stdout = io::stdout().lock();
        writeln!(stdout, "{}", crate::secrets::redact(&text.to_string()))?;
        stdout.flush()
    }

    /// Prints the `--json` summary object on stdout (nothing in human mode).
    pub fn summary<T: Serialize>(&self, summary: &T) -> io::Result<()> {
        if !self.json {
            return Ok(());
        }
        let mut stdout = io::stdout().lock();
        serde_json::to_writer_pretty(&mut stdout, summary)?;
        writeln!(stdout)?;
        stdout.flush()
    }

    /// Whether progress bars may be drawn (on stderr, only when it is a terminal).
    pub fn progress_allowed(&self) -> bool {
        !self.quiet
    }
}

/// "1 retry", "2 retries": a count with its noun.
pub fn counted(n: u64, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}
