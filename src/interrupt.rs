//! Ctrl-C, SIGTERM and SIGHUP as a request to stop, not a kill: the command stops at its next
//! step, rolls back what it has not committed, removes its temp files and exits 130.
//!
//! The promise it keeps (CONTRACT.md): an interruption that arrives before a commit rolls the
//! work back and exits 130; one that arrives after it says the work was saved and exits 0;
//! never both. Every commit of the tool passes [`commit_point`] as its last step, under the
//! same lock the signal handler takes: either an interruption came first, and the commit is
//! refused (the transaction rolls back), or the commit is marked as under way, and a later
//! interruption lets it finish and says so.
//!
//! A check between steps cannot stop a long statement in the server (an index build, a
//! `LOCK TABLE` waiting for another session). So every connection registers its backend, and
//! the first interruption cancels them all (`pg_cancel_backend` from a connection of its own,
//! again every moment until the process ends, so that a statement started just after the
//! signal is cancelled too). A second interruption quits at once; the server then rolls back
//! the open transaction when the connection closes.

use std::sync::{Mutex, MutexGuard, Once};
use std::time::Duration;

use crate::error::Exit;

/// How often the canceller repeats its cancels while the command winds down.
const CANCEL_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing is being committed: an interruption stops the work.
    Working,
    /// A commit is under way: an interruption lets it finish.
    Committing,
    /// The command's work is saved: an interruption only says so.
    Committed,
}

/// A server session of this process to cancel on an interruption.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Backend {
    /// One of golden's own connections, by process id and start time (a pid alone could by
    /// then belong to another session).
    Session { pid: i32, started: String },
    /// A client program golden runs (psql), by the application name it was given.
    Application(String),
}

struct State {
    signal: Option<&'static str>,
    /// Client programs golden runs, each leading a process group of its own: killed when
    /// golden must quit at once.
    children: Vec<u32>,
    phase: Phase,
    /// What an interruption now leaves behind, for the final message.
    outcome: Option<String>,
    /// The database URL of the backends, and the backends.
    url: Option<String>,
    backends: Vec<Backend>,
    canceller_started: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    signal: None,
    children: Vec::new(),
    phase: Phase::Working,
    outcome: None,
    url: None,
    backends: Vec::new(),
    canceller_started: false,
});

fn state() -> MutexGuard<'static, State> {
    // A panic while holding this lock leaves plain data behind; keep using it.
    STATE
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The error of a command stopped by an interruption (exit 130).
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}

/// Routes Ctrl-C, SIGTERM and SIGHUP to [`on_signal`]. Called by the commands that write.
pub fn install() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let mut signals = match signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) {
            Ok(signals) => signals,
            Err(e) => {
                log::debug!("interruption handler not installed: {e}");
                return;
            }
        };
        let spawned = std::thread::Builder::new()
            .name("golden-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    on_signal(match signal {
                        SIGTERM => "SIGTERM",
                        SIGHUP => "SIGHUP",
                        _ => "Ctrl-C",
                    });
                }
            });
        if let Err(e) = spawned {
            log::debug!("interruption handler not started: {e}");
        }
    });
}

fn on_signal(name: &'static str) {
    let mut state = state();
    if state.signal.is_some() {
        match state.phase {
            Phase::Committing => {
                eprintln!("{name}: a commit is under way; it finishes and its result follows")
            }
            Phase::Committed => {
                drop(state);
                eprintln!("{name} again: quitting; the work was saved");
                std::process::exit(Exit::Success as i32);
            }
            Phase::Working => {
                let children = std::mem::take(&mut state.children);
                let applications: Vec<String> = state
                    .backends
                    .iter()
                    .filter_map(|backend| match backend {
                        Backend::Application(name) => Some(name.clone()),
                        Backend::Session { .. } => None,
                    })
                    .collect();
                drop(state);
                for child in children {
                    crate::child_process::kill_group(child);
                }
                for application in applications {
                    end_sessions_of(&application);
                }
                crate::atomic::remove_unfinished_temp_files();
                eprintln!(
                    "{name} again: quitting at once; nothing more was committed (the server rolls \
                     back the open transaction)"
                );
                std::process::exit(Exit::Interrupted as i32);
            }
        }
        return;
    }
    state.signal = Some(name);
    match state.phase {
        Phase::Working => {
            eprintln!("\ninterrupted ({name}): stopping; nothing more is committed ({name} again to quit at once)");
            if !state.canceller_started {
                state.canceller_started = true;
                let spawned = std::thread::Builder::new()
                    .name("golden-cancel".into())
                    .spawn(cancel_until_exit);
                if let Err(e) = spawned {
                    log::debug!("could not start cancelling server statements: {e}");
                }
            }
        }
        Phase::Committing => {
            eprintln!("\ninterrupted ({name}) during a commit: it finishes, and its result follows")
        }
        Phase::Committed => {
            eprintln!("\ninterrupted ({name}) after the commit: the work is saved; finishing")
        }
    }
}

/// Cancels every registered backend, again and again, while the command winds down.
fn cancel_until_exit() {
    use diesel::Connection;
    let mut connection: Option<diesel::PgConnection> = None;
    loop {
        let (url, backends) = {
            let state = state();
            if state.phase != Phase::Working {
                return;
            }
            (state.url.clone(), state.backends.clone())
        };
        if let (Some(url), false) = (url, backends.is_empty()) {
            if connection.is_none() {
                connection = diesel::PgConnection::establish(&url).ok();
            }
            if let Some(conn) = connection.as_mut() {
                if cancel(conn, &backends).is_err() {
                    connection = None;
                }
            }
        }
        std::thread::sleep(CANCEL_EVERY);
    }
}

fn cancel(conn: &mut diesel::PgConnection, backends: &[Backend]) -> diesel::QueryResult<()> {
    use diesel::sql_types::{Integer, Text};
    use diesel::RunQueryDsl;
    for backend in backends {
        match backend {
            Backend::Session { pid, started } => diesel::sql_query(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                 WHERE pid = $1 AND backend_start = $2::timestamptz AND state = 'active'",
            )
            .bind::<Integer, _>(*pid)
            .bind::<Text, _>(started)
            .execute(conn)?,
            Backend::Application(name) => diesel::sql_query(
                "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
                 WHERE application_name = $1 AND state = 'active' AND pid <> pg_backend_pid()",
            )
            .bind::<Text, _>(name)
            .execute(conn)?,
        };
    }
    Ok(())
}

/// Records a client program golden started (leading its own process group), to kill if
/// golden must quit at once.
pub fn register_child(pid: u32) {
    state().children.push(pid);
}

/// The program ended: forget it.
pub fn unregister_child(pid: u32) {
    state().children.retain(|child| *child != pid);
}

/// Ends the server sessions of the client program named `application` (its process has
/// been killed, its session would go on with a statement in progress) and waits, a few
/// seconds at most, for them to be gone.
pub fn end_sessions_of(application: &str) {
    use diesel::sql_types::{BigInt, Text};
    use diesel::{Connection, RunQueryDsl};
    #[derive(diesel::QueryableByName)]
    struct Left {
        #[diesel(sql_type = BigInt)]
        left: i64,
    }
    let Some(url) = state().url.clone() else {
        return;
    };
    let Ok(mut conn) = diesel::PgConnection::establish(&url) else {
        return;
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = diesel::sql_query(
            "SELECT count(pg_terminate_backend(pid)) AS left FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind::<Text, _>(application)
        .get_result::<Left>(&mut conn);
        match left {
            Ok(Left { left: 0 }) | Err(_) => return,
            Ok(_) if std::time::Instant::now() > deadline => return,
            Ok(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// Records a session of this process, to cancel its statement on an interruption.
pub fn register_session(url: &str, pid: i32, started: String) {
    register(url, Backend::Session { pid, started });
}

/// Records a client program's sessions (by their `application_name`), likewise.
pub fn register_application(url: &str, application_name: &str) {
    register(url, Backend::Application(application_name.to_string()));
}

fn register(url: &str, backend: Backend) {
    let mut state = state();
    state.url.get_or_insert_with(|| url.to_string());
    if !state.backends.contains(&backend) {
        state.backends.push(backend);
    }
}

/// Says what an interruption from now on leaves behind ("the database holds what it held
/// before"), for the message the command ends with.
pub fn set_outcome(outcome: impl Into<String>) {
    state().outcome = Some(outcome.into());
}

/// The interruption that stopped the work, if one came before its last commit: the command
/// then exits 130 with [`outcome`].
pub fn stopped_by() -> Option<&'static str> {
    let state = state();
    state.signal.filter(|_| state.phase != Phase::Committed)
}

/// What the interruption left, as the command last described it.
pub fn outcome() -> String {
    state()
        .outcome
        .clone()
        .unwrap_or_else(|| "nothing was changed".to_string())
}

/// Fails with [`Interrupted`] once an interruption came (and the work is not saved yet).
pub fn check() -> color_eyre::Result<()> {
    if stopped_by().is_some() {
        Err(color_eyre::Report::new(Interrupted))
    } else {
        Ok(())
    }
}

/// The last step before a commit: fails if an interruption came (the caller then rolls
/// back); otherwise marks the commit as under way, so that an interruption from now on lets
/// it finish. Follow it with [`after_commit`].
pub fn commit_point() -> color_eyre::Result<()> {
    let mut state = state();
    match (state.signal, state.phase) {
        (_, Phase::Committed) => Ok(()),
        (Some(_), _) => Err(color_eyre::Report::new(Interrupted)),
        (None, _) => {
            state.phase = Phase::Committing;
            Ok(())
        }
    }
}

/// After a commit attempt. `saved`: it succeeded. `last`: that commit saved all of the
/// command's work, so a later interruption only says so and the command exits 0.
pub fn after_commit(saved: bool, last: bool) {
    let mut state = state();
    if state.phase == Phase::Committed {
        return;
    }
    state.phase = if saved && last {
        Phase::Committed
    } else {
        Phase::Working
    };
}

/// Sleeps for `duration`, waking early to fail when an interruption comes.
pub fn sleep(duration: Duration) -> color_eyre::Result<()> {
    let deadline = std::time::Instant::now() + duration;
    loop {
        check()?;
        let now = std::time::Instant::now();
        if now >= deadline {
            return Ok(());
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}
