//! Running PostgreSQL's own `pg_dump` and `psql` for the SQL snapshot (`dump`/`load`): the
//! binary of the server's major version, the connection without any password on the command
//! line, whatever form the connection string takes (the password goes in PGPASSWORD, out of
//! `ps`), and errors that say what to install.

use std::path::{Path, PathBuf};
use std::process::Command;

use color_eyre::eyre::{bail, eyre};
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::RunQueryDsl;

use crate::conninfo;
use crate::db::{mask_password, QueryContext};

/// A PostgreSQL client program of the right version, ready to connect.
pub struct PgTool {
    pub program: PathBuf,
    /// The connection as a key/value string without the password: what `ps` may show.
    connection_without_password: String,
    password: Option<String>,
}

impl PgTool {
    /// Finds `name` (pg_dump, psql) of the server's major version: in `bin_dir` if given,
    /// else on PATH, else in Debian's /usr/lib/postgresql/N/bin.
    pub fn find(
        name: &str,
        bin_dir: Option<&Path>,
        conn: &mut PgConnection,
        url: &str,
    ) -> Result<PgTool> {
        let server = server_major(conn)?;
        let candidates: Vec<PathBuf> = match bin_dir {
            Some(dir) => vec![dir.join(name)],
            None => vec![
                PathBuf::from(name),
                PathBuf::from(format!("/usr/lib/postgresql/{server}/bin/{name}")),
            ],
        };
        let mut found_versions = Vec::new();
        for candidate in &candidates {
            let Some(major) = client_major(candidate) else {
                continue;
            };
            if major == server {
                let (connection_without_password, password) = split_password(url)?;
                return Ok(PgTool {
                    program: candidate.clone(),
                    connection_without_password,
                    password,
                });
            }
            found_versions.push(format!("{} is version {major}", candidate.display()));
        }
        if found_versions.is_empty() {
            bail!(
                "{name} was not found ({}); install the PostgreSQL {server} client (Debian: postgresql-client-{server}) \
                 or point --pg-bin at its folder",
                candidates.iter().map(|c| c.display().to_string()).collect::<Vec<_>>().join(", ")
            );
        }
        bail!(
            "the server is PostgreSQL {server} but {}; install postgresql-client-{server} or point --pg-bin at a \
             folder with {name} {server}",
            found_versions.join(", ")
        )
    }

    /// A command for the program, connected to the database.
    pub fn command(&self) -> Command {
        let mut command = Command::new(&self.program);
        command
            .arg("--dbname")
            .arg(&self.connection_without_password);
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password);
        }
        command
    }

    /// Runs `command` and fails with its stderr (passwords masked) when it fails; an
    /// interruption stops it (see `child_process`).
    pub fn run(&self, command: Command, what: &str) -> Result<()> {
        let (status, stderr) = crate::child_process::run_to_end(command, what)?;
        if !status.success() {
            bail!("{what} failed ({status}): {}", mask_password(stderr.trim()));
        }
        Ok(())
    }
}

fn server_major(conn: &mut PgConnection) -> Result<u32> {
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        version: i32,
    }
    let version: Version =
        diesel::sql_query("SELECT current_setting('server_version_num')::int AS version")
            .get_result(conn)
            .step("asking the server's version")?;
    Ok(version.version as u32 / 10_000)
}

/// The major version a client program reports ("pg_dump (PostgreSQL) 15.18 (Debian …)").
fn client_major(program: &Path) -> Option<u32> {
    let output = Command::new(program).arg("--version").output().ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    text.split_whitespace()
        .find_map(|word| word.split('.').next().and_then(|major| major.parse().ok()))
}

/// The connection string rewritten as a key/value string without its password, and the
/// password libpq would use (the last one given, in the userinfo or a `?password=` parameter
/// of a URI, or a `password` keyword), decoded.
fn split_password(url: &str) -> Result<(String, Option<String>)> {
    let info = conninfo::parse(url).map_err(|e| {
        eyre!("the database connection string cannot be passed to pg_dump/psql without its password: {e}")
    })?;
    let password = info.password().map(String::from);
    Ok((info.to_keyword_value_without_password(), password))
}

#[cfg(test)]
mod tests {
    use super::split_password;

    #[test]
    fn passwords_leave_the_connection_string() {
        assert_eq!(
            split_password("postgres://alice:s%40cret@db:5432/golden").unwrap(),
            (
                "user='alice' host='db' port='5432' dbname='golden'".into(),
                Some("s@cret".into())
            )
        );
        assert_eq!(
            split_password("postgres://alice@db/golden").unwrap(),
            ("user='alice' host='db' dbname='golden'".into(), None)
        );
        assert_eq!(
            split_password("host=db dbname=x").unwrap(),
            ("host='db' dbname='x'".into(), None)
        );
        assert_eq!(
            split_password(r"host=db password = 'a b\'c' password=last dbname=x").unwrap(),
            ("host='db' dbname='x'".into(), Some("last".into()))
        );
        assert_eq!(
            split_password("postgres://u:first@db/x?password=second&sslmode=disable").unwrap(),
            (
                "user='u' host='db' dbname='x' sslmode='disable'".into(),
                Some("second".into())
            )
        );
        assert!(split_password("host=db password='unclosed").is_err());
    }
}
