//! `golden load`: restores an SQL snapshot of `golden dump` with `psql`, in a single
//! transaction that stops at the first error and that golden commits (`child_process`), holding
//! the dataset lock. Non-empty tables are refused unless
//! `--replace`, which deletes the old rows in that same transaction. The vector index is
//! dropped before the rows go in and built once after, as `restore --replace` does.

use std::path::PathBuf;

use color_eyre::Result;
use serde::Serialize;

use super::dump::{current_schema, DEFAULT_DUMP_PATH};
use crate::child_process::PsqlSession;
use crate::cli::GlobalArgs;
use crate::db::{self, QueryContext};
use crate::error::{invalid_input, Exit};
use crate::output::Output;
use crate::pg_tools::PgTool;
use crate::restore::load;
use crate::schema::dataset_extras;
use crate::{interrupt, paths};
use diesel::prelude::*;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQL file to load
    #[arg(long, short, default_value = DEFAULT_DUMP_PATH)]
    pub input: PathBuf,

    /// Delete the current rows first (in the same transaction)
    #[arg(long)]
    pub replace: bool,

    /// Folder of the psql to use [default: PATH, then /usr/lib/postgresql/<server version>/bin]
    #[arg(long, env = "GOLDEN_PG_BIN", value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    interrupt::install();
    // Opened once and read by golden itself, so what psql loads is the file checked here.
    let snapshot = paths::open_regular(&args.input, "SQL snapshot").map_err(|e| {
        if args.input.exists() {
            e
        } else {
            invalid_input(format!(
                "cannot read {}: no such file (write one with `golden dump`)",
                args.input.display()
            ))
        }
    })?;
    let url = db::database_url(global);
    let mut conn = db::connect(global)?;
    let psql = PgTool::find("psql", args.pg_bin.as_deref(), &mut conn, &url)?;
    // Held until psql has committed: no restore or regeneration writes meanwhile.
    db::lock_dataset(&mut conn)?;
    let before = load::table_counts(&mut conn)?;
    let file_keys: i64 = dataset_extras::table
        .count()
        .get_result(&mut conn)
        .step("counting the file-level keys")?;
    if !args.replace && before.analyses + before.chunks + before.artifacts + file_keys as u64 > 0 {
        return Err(invalid_input(format!(
            "the database already holds {} analyses, {} chunks, {} artifacts, {file_keys} file-level keys; \
             load into empty tables, or pass --replace to delete them first (in the same transaction)",
            before.analyses, before.chunks, before.artifacts
        )));
    }
    let index_definitions: Vec<(String, String)> = load::vector_indexes(&mut conn)?
        .into_iter()
        .map(|index| (index.name, index.definition))
        .collect();
    let schema = current_schema(&mut conn)?;

    let mut before = String::new();
    if args.replace {
        before.push_str("DELETE FROM chunks; DELETE FROM artifacts; DELETE FROM artifact_versions; DELETE FROM analyses; DELETE FROM dataset_extras;\n");
    }
    for (name, _) in &index_definitions {
        before.push_str(&format!(
            "DROP INDEX {}.{};\n",
            db::quote_identifier(&schema),
            db::quote_identifier(name)
        ));
    }
    // pg_dump's file empties search_path; the index definitions name the extension's operator
    // class unqualified, as pg_indexes shows them.
    let mut after = String::from("RESET search_path; SET LOCAL maintenance_work_mem = '1GB';\n");
    for (_, definition) in &index_definitions {
        after.push_str(definition);
        after.push_str(";\n");
    }
    let application = format!("golden-load-{}", std::process::id());
    interrupt::register_application(&url, &application);
    interrupt::set_outcome("the load was rolled back: the database holds what it held before");
    let mut command = psql.command();
    command.env("PGOPTIONS", "-c client_min_messages=warning");
    let body = crate::snapshot::checked_lines(snapshot);
    PsqlSession::start(command, &application, before, body, after)?.run(&format!(
        "loading {} with psql (rolled back)",
        args.input.display()
    ))?;
    drop(conn);

    let mut conn = db::connect(global)?;
    let after = load::table_counts(&mut conn)?;
    output.line(format_args!(
        "loaded {} analyses, {} chunks, {} artifacts from {}{}",
        after.analyses,
        after.chunks,
        after.artifacts,
        args.input.display(),
        if args.replace {
            " (replacing the previous rows)"
        } else {
            ""
        }
    ))?;
    #[derive(Serialize)]
    struct Summary<'a> {
        file: &'a std::path::Path,
        analyses: u64,
        chunks: u64,
        artifacts: u64,
        replaced: bool,
    }
    output.summary(&Summary {
        file: &args.input,
        analyses: after.analyses,
        chunks: after.chunks,
        artifacts: after.artifacts,
        replaced: args.replace,
    })?;
    Ok(Exit::Success)
}
