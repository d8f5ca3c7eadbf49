//! Running PostgreSQL's client programs so that an interruption is golden's to handle: each
//! runs in a process group of its own (a Ctrl-C at the terminal reaches golden only), golden
//! stops it on an interruption, and its stderr is read while it runs (a full pipe would
//! stall it).
//!
//! Two ways to run one. [`run_to_end`] for a program whose work golden throws away when
//! interrupted (`pg_dump` writing into a temp file): it is killed. [`PsqlSession`] for the one
//! that writes (`psql` loading a snapshot): golden feeds it the script on its standard input
//! inside a transaction and sends `COMMIT` itself, only after its own commit point
//! (`interrupt::commit_point`), so an interruption before it rolls the load back and one
//! after it lets the commit finish, as for golden's own transactions.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::Duration;

use color_eyre::eyre::{bail, eyre};
use color_eyre::Result;

use crate::interrupt;

/// How often a running program is checked on.
const POLL: Duration = Duration::from_millis(50);

/// Runs `command` to its end and returns its stderr; kills it when an interruption comes.
pub fn run_to_end(mut command: Command, what: &str) -> Result<(ExitStatus, String)> {
    own_process_group(&mut command);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .map_err(|e| eyre!("{what}: cannot run {:?}: {e}", command.get_program()))?;
    let stderr = read_in_background(child.stderr.take());
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok((status, collect(stderr)));
        }
        if let Err(interrupted) = interrupt::check() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(interrupted);
        }
        std::thread::sleep(POLL);
    }
}

/// A psql that runs a script in one transaction and commits only when golden says so.
pub struct PsqlSession {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<std::process::ChildStdout>,
    stderr: Option<JoinHandle<String>>,
}

/// The line psql prints once the script ran without error, before the commit.
const READY: &str = "golden: ready to commit";

impl PsqlSession {
    /// Starts `psql` (a command from `PgTool`, connected) and sends it `script`, opened by
    /// `BEGIN` and followed by a line that says it ran; psql stops at the first error.
    pub fn start(mut psql: Command, script: &str) -> Result<PsqlSession> {
        own_process_group(&mut psql);
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = psql
            .spawn()
            .map_err(|e| eyre!("cannot run {:?}: {e}", psql.get_program()))?;
        let stderr = read_in_background(child.stderr.take());
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("internal error: psql started without its pipes");
        };
        // psql reads the script as it goes: a broken pipe means it stopped at an error, which
        // `run` reports from its stderr.
        let _ = writeln!(stdin, "BEGIN;\n{script}\n\\echo '{READY}'");
        let _ = stdin.flush();
        Ok(PsqlSession {
            child,
            stdin: Some(stdin),
            stdout: BufReader::new(stdout),
            stderr,
        })
    }

    /// Waits for the script to run, then commits at golden's commit point (or rolls back when
    /// an interruption came first). An interruption meanwhile cancels psql's statement
    /// (`interrupt` cancels the sessions of its application name), so psql stops at once.
    pub fn run(mut self, what: &str) -> Result<()> {
        let mut line = String::new();
        let mut ready = false;
        while self.stdout.read_line(&mut line)? > 0 {
            if line.trim_end() == READY {
                ready = true;
                break;
            }
            line.clear();
        }
        if !ready {
            return Err(self.failed(what));
        }
        let verdict = interrupt::commit_point();
        let end = if verdict.is_ok() {
            "COMMIT;"
        } else {
            "ROLLBACK;"
        };
        if let Some(mut stdin) = self.stdin.take() {
            let _ = writeln!(stdin, "{end}");
        }
        let status = self.child.wait()?;
        let stderr = collect(self.stderr.take());
        let committed = verdict.is_ok() && status.success();
        interrupt::after_commit(committed, true);
        verdict?;
        if !committed {
            bail!(
                "{what} failed at the commit ({status}): {}",
                crate::db::mask_password(stderr.trim())
            );
        }
        Ok(())
    }

    /// psql stopped before the end of the script: it rolled back; say why.
    fn failed(&mut self, what: &str) -> color_eyre::Report {
        drop(self.stdin.take());
        let status = self.child.wait();
        let stderr = collect(self.stderr.take());
        if let Err(interrupted) = interrupt::check() {
            return interrupted;
        }
        let status = status.map_or_else(|e| e.to_string(), |status| status.to_string());
        eyre!(
            "{what} failed ({status}): {}",
            crate::db::mask_password(stderr.trim())
        )
    }
}

fn own_process_group(command: &mut Command) {
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(command, 0);
}

fn read_in_background<R: Read + Send + 'static>(pipe: Option<R>) -> Option<JoinHandle<String>> {
    pipe.map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        })
    })
}

fn collect(reader: Option<JoinHandle<String>>) -> String {
    reader
        .and_then(|reader| reader.join().ok())
        .unwrap_or_default()
}
