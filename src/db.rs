//! Connecting to PostgreSQL: which database (flag, environment, `.env`, or the local one of
//! `make db`, on GOLDEN_PGPORT), the embedded migrations, and error messages that never show
//! a password (see [`crate::conninfo`] for where libpq finds them).

use color_eyre::eyre::eyre;
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::Connection;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

use crate::cli::GlobalArgs;

/// The port of the local server `make db` starts when GOLDEN_PGPORT is not set.
pub const DEFAULT_LOCAL_PORT: &str = "54329";
/// Its database when GOLDEN_PGDATABASE is not set.
pub const DEFAULT_LOCAL_DATABASE: &str = "golden";

/// The port and database of the local server, as `scripts/db.sh` chooses them.
fn local_port_and_database() -> (String, String) {
    port_and_database_from(|name| std::env::var(name).ok())
}

fn port_and_database_from(lookup: impl Fn(&str) -> Option<String>) -> (String, String) {
    let variable = |name: &str, default: &str| {
        lookup(name)
            .map(|value| value.trim().to_string())
            .filter(|value| !value.is_empty())
            .unwrap_or_else(|| default.to_string())
    };
    (
        variable("GOLDEN_PGPORT", DEFAULT_LOCAL_PORT),
        variable("GOLDEN_PGDATABASE", DEFAULT_LOCAL_DATABASE),
    )
}

/// The database `make db` starts (on GOLDEN_PGPORT, named GOLDEN_PGDATABASE); used when no
/// URL is given anywhere.
pub fn local_database_url() -> String {
    let (port, database) = local_port_and_database();
    url_of_local(&port, &database)
}

fn url_of_local(port: &str, database: &str) -> String {
    let database: String = database
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("postgres://postgres@127.0.0.1:{port}/{database}")
}

/// The migrations of `migrations/`, compiled into the binary.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The database URL the user chose, or the local database.
pub fn database_url(global: &GlobalArgs) -> String {
    global
        .database_url
        .clone()
        .filter(|url| !url.trim().is_empty())
        .unwrap_or_else(local_database_url)
}

/// Opens a connection, with an error that says what to do when it fails.
pub fn connect(global: &GlobalArgs) -> Result<PgConnection> {
    // Set but empty (`DATABASE_URL=` in .env, a script's unset variable): not a request for
    // the local database, which a reset would then write to instead of the one meant.
    let given_empty = match &global.database_url {
        Some(url) => url.trim().is_empty(),
        None => std::env::var_os("DATABASE_URL").is_some_and(|url| url.is_empty()),
    };
    if given_empty {
        return Err(crate::error::invalid_input(
            "DATABASE_URL (or --database-url) is set but empty: give the database's URL, or unset \
             it to use the local database of `make db`; nothing was done",
        ));
    }
    let url = database_url(global);
    let mut conn = PgConnection::establish(&url).map_err(|e| {
        let local = global
            .database_url
            .as_deref()
            .is_none_or(|given| given.trim().is_empty());
        let hint = if local {
            let (port, _) = local_port_and_database();
            format!(
                "no DATABASE_URL is set, so this is the local database of `make db` on port {port} \
                 (GOLDEN_PGPORT, {DEFAULT_LOCAL_PORT} when unset): start it with `make db`, or set DATABASE_URL"
            )
        } else {
            "check DATABASE_URL (or --database-url) and that the server is running".to_string()
        };
        // libpq's own parse errors quote the words they stop at, which may be pieces of a
        // password: when the string does not parse, say where instead.
        let why = match crate::conninfo::parse(&url) {
            Err(parse_error) => format!("the connection string is not valid: {parse_error}"),
            Ok(_) => mask_password(e.to_string().trim()),
        };
        eyre!(
            "could not connect to the database at {}: {why}\n  hint: {hint}",
            crate::conninfo::mask(&url),
        )
    })?;
    register_for_cancel(&mut conn, &url)?;
    Ok(conn)
}

/// Records this connection's server session, so that an interruption cancels the statement
/// it runs (an index build, a lock wait) instead of waiting for it to end.
fn register_for_cancel(conn: &mut PgConnection, url: &str) -> Result<()> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Session {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        pid: i32,
        #[diesel(sql_type = diesel::sql_types::Text)]
        started: String,
    }
    let session: Session = diesel::sql_query(
        "SELECT pid, backend_start::text AS started FROM pg_stat_activity WHERE pid = pg_backend_pid()",
    )
    .get_result(conn)
    .step("asking the server for this session's id")?;
    crate::interrupt::register_session(url, session.pid, session.started);
    Ok(())
}

/// Applies the pending embedded migrations and returns the versions it applied.
pub fn run_pending_migrations(conn: &mut PgConnection) -> Result<Vec<String>> {
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(|e| eyre!("applying migrations failed: {e}"))?;
    Ok(applied.iter().map(|version| version.to_string()).collect())
}

/// Turns "relation does not exist" into the hint a user needs: the tables are missing.
pub fn explain_query_error(error: diesel::result::Error, step: &str) -> color_eyre::Report {
    let text = error.to_string();
    let report = eyre!("{step}: {}", mask_password(&text));
    if text.contains("does not exist") && text.contains("relation") {
        report.wrap_err("the database has no golden tables; run `golden migrate` first")
    } else {
        report
    }
}

/// Replaces with `***` the passwords of a connection string (libpq's URI or key/value form,
/// as libpq reads them, see [`crate::conninfo`]), or of any connection string inside a
/// message.
pub fn mask_password(text: &str) -> String {
    if crate::conninfo::is_connection_string(text) {
        crate::conninfo::mask(text)
    } else {
        crate::conninfo::mask_in_text(text)
    }
}

/// Runs `f` in a read-only REPEATABLE READ transaction: one consistent snapshot of the
/// dataset. Its tables are locked in ACCESS SHARE mode first, before the snapshot is taken:
/// a `restore --replace` or a regeneration's swap in progress (TRUNCATE and write back) is
/// waited for, and then seen whole. A snapshot taken before such a commit would see the
/// truncated tables empty.
pub fn in_snapshot<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> Result<T>,
) -> Result<T> {
    use diesel::RunQueryDsl;
    let result = conn
        .build_transaction()
        .read_only()
        .repeatable_read()
        .run(|conn| {
            diesel::sql_query(
                "LOCK TABLE analyses, chunks, artifacts, queries IN ACCESS SHARE MODE",
            )
            .execute(conn)
            .map_err(|e| {
                TransactionError::Inner(explain_query_error(
                    e,
                    "locking the dataset's tables for reading",
                ))
            })?;
            f(conn).map_err(TransactionError::Inner)
        });
    result.map_err(|e| e.into_report("the read-only snapshot transaction"))
}

/// Runs `f` in a transaction, committed when `f` succeeds and rolled back when it fails or
/// an interruption came first (see `interrupt::commit_point`). One step of a command's work:
/// an interruption after this commit still stops the command (exit 130).
pub fn in_transaction<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> Result<T>,
) -> Result<T> {
    transaction_ending_work(conn, false, f)
}

/// [`in_transaction`] for the commit that saves all of a command's work: an interruption
/// after it only says so, and the command ends with success.
pub fn in_final_transaction<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> Result<T>,
) -> Result<T> {
    transaction_ending_work(conn, true, f)
}

fn transaction_ending_work<T>(
    conn: &mut PgConnection,
    last: bool,
    f: impl FnOnce(&mut PgConnection) -> Result<T>,
) -> Result<T> {
    let result = conn.transaction::<_, TransactionError, _>(|conn| {
        let value = f(conn).map_err(TransactionError::Inner)?;
        crate::interrupt::commit_point().map_err(TransactionError::Inner)?;
        Ok(value)
    });
    crate::interrupt::after_commit(result.is_ok(), last);
    result.map_err(|e| e.into_report("the transaction"))
}

/// The error type diesel's transactions need: one that `From<diesel::result::Error>` builds.
enum TransactionError {
    Inner(color_eyre::Report),
    Db(diesel::result::Error),
}

impl TransactionError {
    fn into_report(self, what: &str) -> color_eyre::Report {
        match self {
            TransactionError::Inner(report) => report,
            TransactionError::Db(e) => eyre!("{what} failed: {}", mask_password(&e.to_string())),
        }
    }
}

impl From<diesel::result::Error> for TransactionError {
    fn from(e: diesel::result::Error) -> Self {
        TransactionError::Db(e)
    }
}

/// The advisory lock that keeps two writing runs of golden (restore, regenerate) from
/// interleaving on one database: "golden" in ASCII.
const DATASET_LOCK_KEY: i64 = 0x676f_6c64_656e;

/// Takes the dataset lock for this session, waiting (and saying so) while another run holds
/// it. PostgreSQL releases it when the connection closes, however the process ends. The wait
/// polls instead of blocking in the server, so a Ctrl-C handler already installed ends it at
/// once (without one, Ctrl-C ends the process, and the wait with it).
pub fn lock_dataset(conn: &mut PgConnection) -> Result<()> {
    if try_lock_dataset(conn)? {
        return Ok(());
    }
    log::warn!("another golden run is writing to this database; waiting for it to finish");
    loop {
        crate::interrupt::sleep(std::time::Duration::from_millis(200))?;
        if try_lock_dataset(conn)? {
            return Ok(());
        }
    }
}

fn try_lock_dataset(conn: &mut PgConnection) -> Result<bool> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    let got: Locked = diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked")
        .bind::<diesel::sql_types::BigInt, _>(DATASET_LOCK_KEY)
        .get_result(conn)
        .step("taking the dataset lock")?;
    Ok(got.locked)
}

/// `name` as an SQL identifier, for the statements diesel's DSL cannot build (DDL on names
/// read from the catalog).
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Adds `context` to a diesel error, for `?` in code that returns `color_eyre::Result`.
pub trait QueryContext<T> {
    fn step(self, step: &str) -> Result<T>;
}

impl<T> QueryContext<T> for diesel::QueryResult<T> {
    fn step(self, step: &str) -> Result<T> {
        self.map_err(|e| explain_query_error(e, step))
    }
}

#[cfg(test)]
mod tests {
    use super::mask_password;

    #[test]
    fn the_local_url_follows_golden_pgport() {
        let url = |port: Option<&str>, database: Option<&str>| {
            let (port, database) = super::port_and_database_from(|name| match name {
                "GOLDEN_PGPORT" => port.map(String::from),
                "GOLDEN_PGDATABASE" => database.map(String::from),
                _ => None,
            });
            super::url_of_local(&port, &database)
        };
        assert_eq!(
            url(Some("6543"), Some("my db")),
            "postgres://postgres@127.0.0.1:6543/my%20db"
        );
        assert_eq!(
            url(None, Some(" ")),
            "postgres://postgres@127.0.0.1:54329/golden"
        );
    }

    #[test]
    fn masks_url_and_keyword_passwords() {
        assert_eq!(
            mask_password("postgres://alice:s3cret@db:5432/golden"),
            "postgres://alice:***@db:5432/golden"
        );
        assert_eq!(
            mask_password("host=db user=alice password=s3cret dbname=golden"),
            "host=db user=alice password=*** dbname=golden"
        );
        assert_eq!(
            mask_password("postgres://alice@db/golden"),
            "postgres://alice@db/golden"
        );
        assert_eq!(
            mask_password("failed: postgres://u:p@h/d and postgresql://v:q@i/e"),
            "failed: postgres://u:***@h/d and postgresql://v:***@i/e"
        );
        assert_eq!(
            mask_password("postgres://alice:a#b c@db/golden"),
            "postgres://alice:***@db/golden"
        );
        assert_eq!(
            mask_password("host=db password = 'a b' password=c"),
            "host=db password = *** password=***"
        );
    }
}
