//! Running PostgreSQL's client programs so that an interruption is golden's to handle: each
//! runs in a process group of its own (a Ctrl-C at the terminal reaches golden only), golden
//! stops it on an interruption, and its stderr is read while it runs (a full pipe would
//! stall it).
//!
//! Two ways to run one. [`run_to_end`] for a program whose work golden throws away when
//! interrupted (`pg_dump` writing into a temp file): it is killed. [`PsqlSession`] for the one
//! that writes (`psql` loading a snapshot): golden feeds it the script on its standard input,
//! the snapshot read from the file golden opened and checked, inside a transaction, and sends
//! `COMMIT` itself, only after its own commit point (`interrupt::commit_point`). An
//! interruption before it kills psql, whose transaction the server then rolls back; one after
//! it lets the commit finish, as for golden's own transactions. If golden must quit at once
//! (a second Ctrl-C), it kills them first: none outlives it.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
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
    interrupt::register_child(child.id());
    let stderr = read_in_background(child.stderr.take());
    loop {
        if let Some(status) = child.try_wait()? {
            interrupt::unregister_child(child.id());
            return Ok((status, collect(stderr)));
        }
        if let Err(interrupted) = interrupt::check() {
            kill_group(child.id());
            let _ = child.wait();
            interrupt::unregister_child(child.id());
            return Err(interrupted);
        }
        std::thread::sleep(POLL);
    }
}

/// A psql that runs a script in one transaction and commits only when golden says so.
pub struct PsqlSession {
    child: Child,
    /// psql's `application_name`: its server session, to end with it.
    application: String,
    /// The script's end: `COMMIT;` or `ROLLBACK;`, for the thread that feeds psql.
    end: std::sync::mpsc::Sender<&'static str>,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<JoinHandle<String>>,
    /// Why the body was not fed whole (a line it refused), if it was not.
    refused: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The line psql prints once the script ran without error, before the commit.
const READY: &str = "golden: ready to commit";

/// The last statement before the commit: fails if the script is no longer inside the
/// transaction it began (something in it committed or rolled back on its own).
const STILL_IN_THE_TRANSACTION: &str = "DO $golden$ BEGIN IF now() = statement_timestamp() THEN \
     RAISE EXCEPTION 'golden: the load is no longer inside its transaction'; END IF; END $golden$;";

impl PsqlSession {
    /// Starts `psql` (a command from `PgTool`, connected, with `application` as its
    /// `application_name`) and feeds it, on its standard input: `BEGIN`, `before`, the lines
    /// of `body` (a line that is an error stops the feed: psql never sees it), `after`, a check
    /// that it is all still one transaction, and a line that says it all ran; psql stops at the
    /// first error.
    pub fn start(
        mut psql: Command,
        application: &str,
        before: String,
        body: impl Iterator<Item = Result<Vec<u8>, String>> + Send + 'static,
        after: String,
    ) -> Result<PsqlSession> {
        own_process_group(&mut psql);
        psql.args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-o", "/dev/null"])
            .env("PGAPPNAME", application)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = psql
            .spawn()
            .map_err(|e| eyre!("cannot run {:?}: {e}", psql.get_program()))?;
        interrupt::register_child(child.id());
        let stderr = read_in_background(child.stderr.take());
        let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            bail!("internal error: psql started without its pipes");
        };
        let refused = std::sync::Arc::new(std::sync::Mutex::new(None));
        let refusal = std::sync::Arc::clone(&refused);
        let (end, ending) = std::sync::mpsc::channel::<&'static str>();
        std::thread::spawn(move || {
            // psql reads as it goes: a broken pipe means it stopped at an error (its stderr
            // says which) or was stopped.
            let fed = (|| -> std::io::Result<bool> {
                stdin.write_all(format!("BEGIN;\n{before}\n").as_bytes())?;
                for line in body {
                    match line {
                        Ok(line) => stdin.write_all(&line)?,
                        Err(why) => {
                            if let Ok(mut slot) = refusal.lock() {
                                *slot = Some(why);
                            }
                            return Ok(false);
                        }
                    }
                }
                stdin.write_all(
                    format!("\n{after}\n{STILL_IN_THE_TRANSACTION}\n\\echo '{READY}'\n").as_bytes(),
                )?;
                stdin.flush()?;
                Ok(true)
            })();
            // Refused or failed: psql gets the end of its input without a COMMIT.
            if let Ok(true) = fed {
                if let Ok(end) = ending.recv() {
                    let _ = writeln!(stdin, "{end}");
                }
            }
        });
        let (send, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|line| line.ok()) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Ok(PsqlSession {
            child,
            application: application.to_string(),
            end,
            lines,
            stderr,
            refused,
        })
    }

    /// Waits for the script to run, then commits at golden's commit point (or rolls back when
    /// an interruption came first). An interruption before that kills psql: it has not
    /// committed, so the server rolls its transaction back.
    pub fn run(mut self, what: &str) -> Result<()> {
        loop {
            match self.lines.recv_timeout(POLL) {
                Ok(line) if line.trim_end() == READY => break,
                Ok(_) => {}
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(interrupted) = interrupt::check() {
                        self.kill();
                        return Err(interrupted);
                    }
                }
                Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    return Err(self.failed(what))
                }
            }
        }
        let verdict = interrupt::commit_point();
        let end = if verdict.is_ok() {
            "COMMIT;"
        } else {
            "ROLLBACK;"
        };
        let _ = self.end.send(end);
        let status = self.child.wait()?;
        interrupt::unregister_child(self.child.id());
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

    /// Stops psql and the programs of its process group at once, and ends its server
    /// session: the server would otherwise go on with a statement in progress (an index
    /// build) and hold its locks until it noticed the client gone.
    fn kill(&mut self) {
        kill_group(self.child.id());
        let _ = self.child.wait();
        interrupt::unregister_child(self.child.id());
        interrupt::end_sessions_of(&self.application);
    }

    /// psql stopped before the end of the script: it rolled back; say why.
    fn failed(&mut self, what: &str) -> color_eyre::Report {
        let status = self.child.wait();
        interrupt::unregister_child(self.child.id());
        interrupt::end_sessions_of(&self.application);
        let stderr = collect(self.stderr.take());
        if let Err(interrupted) = interrupt::check() {
            return interrupted;
        }
        let refused = self.refused.lock().ok().and_then(|mut slot| slot.take());
        if let Some(why) = refused {
            return crate::error::invalid_input(format!("{why}; nothing was loaded"));
        }
        let status = status.map_or_else(|e| e.to_string(), |status| status.to_string());
        eyre!(
            "{what} failed ({status}): {}",
            crate::db::mask_password(stderr.trim())
        )
    }
}

/// Kills the process group that `pid` leads (the programs golden starts lead their own).
pub fn kill_group(pid: u32) {
    #[cfg(unix)]
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no memory.
    unsafe {
        libc::kill(-(pid as libc::pid_t), libc::SIGKILL);
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
