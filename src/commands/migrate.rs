//! `golden migrate`: applies the embedded migrations. Idempotent, like `diesel migration run`.

use color_eyre::Result;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::db;
use crate::error::Exit;
use crate::output::Output;

#[derive(Debug, clap::Args)]
pub struct Args {}

#[derive(Serialize)]
struct Summary {
    applied: Vec<String>,
}

pub fn run(_args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    let mut conn = db::connect(global)?;
    let applied = db::run_pending_migrations(&mut conn)?;
    if applied.is_empty() {
        output.line("the database is up to date: no pending migrations")?;
    } else {
        for version in &applied {
            output.line(format_args!("applied migration {version}"))?;
        }
    }
    output.summary(&Summary { applied })?;
    Ok(Exit::Success)
}
