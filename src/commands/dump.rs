//! `golden dump`: the fast alternative to a JSON backup that keeps the vectors: `pg_dump`
//! of the three tables' data (embeddings included) into an SQL file, written atomically.
//! Large and model-specific, so it does not belong in git (`data/*.sql` is ignored).

use std::path::PathBuf;

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use serde::Serialize;

use crate::atomic;
use crate::cli::GlobalArgs;
use crate::db::{self, QueryContext};
use crate::error::Exit;
use crate::output::Output;
use crate::pg_tools::PgTool;
use crate::restore::load;
use crate::{interrupt, paths};

pub const DEFAULT_DUMP_PATH: &str = "data/golden_dataset_dump.sql";
/// The tables of the dataset, in the order their rows can be loaded.
pub const DATASET_TABLES: [&str; 5] = [
    "analyses",
    "chunks",
    "artifacts",
    "artifact_versions",
    "dataset_extras",
];

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The SQL file to write
    #[arg(long, short, default_value = DEFAULT_DUMP_PATH)]
    pub output: PathBuf,

    /// Folder of the pg_dump to use [default: PATH, then /usr/lib/postgresql/<server version>/bin]
    #[arg(long, env = "GOLDEN_PG_BIN", value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    interrupt::install();
    let destination = paths::output(&args.output, "dump file", &[])?;
    interrupt::set_outcome("the previous dump file is untouched");
    let url = db::database_url(global);
    let mut conn = db::connect(global)?;
    // Held until pg_dump is done: pg_dump takes its snapshot before its table locks, so a
    // restore or regeneration committing a TRUNCATE in between would leave it empty tables.
    db::lock_dataset(&mut conn)?;
    let pg_dump = PgTool::find("pg_dump", args.pg_bin.as_deref(), &mut conn, &url)?;
    let schema = current_schema(&mut conn)?;
    let counts = load::table_counts(&mut conn)?;

    let temp = atomic::temp_file_beside(&destination.target)
        .wrap_err_with(|| format!("creating a temp file beside {}", args.output.display()))?;
    let mut command = pg_dump.command();
    command
        .args(["--data-only", "--no-owner", "--no-privileges", "--file"])
        .arg(temp.path());
    for table in DATASET_TABLES {
        command.arg(format!("--table={schema}.{table}"));
    }
    pg_dump.run(command, "pg_dump")?;
    let bytes = std::fs::metadata(temp.path())?.len();
    interrupt::commit_point()?;
    let persisted = atomic::persist(temp, &destination.target);
    interrupt::after_commit(persisted.is_ok(), true);
    persisted.wrap_err_with(|| format!("writing {}", args.output.display()))?;

    output.line(format_args!(
        "{} analyses, {} chunks (with embeddings), {} artifacts → {} ({:.1} MB)",
        counts.analyses,
        counts.chunks,
        counts.artifacts,
        args.output.display(),
        bytes as f64 / 1e6
    ))?;
    #[derive(Serialize)]
    struct Summary<'a> {
        file: &'a std::path::Path,
        bytes: u64,
        analyses: u64,
        chunks: u64,
        artifacts: u64,
    }
    output.summary(&Summary {
        file: &args.output,
        bytes,
        analyses: counts.analyses,
        chunks: counts.chunks,
        artifacts: counts.artifacts,
    })?;
    Ok(Exit::Success)
}

pub fn current_schema(conn: &mut diesel::PgConnection) -> Result<String> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Schema {
        #[diesel(sql_type = diesel::sql_types::Text)]
        schema: String,
    }
    let schema: Schema = diesel::sql_query("SELECT current_schema() AS schema")
        .get_result(conn)
        .step("asking the current schema")?;
    Ok(schema.schema)
}
