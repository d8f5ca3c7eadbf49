//! `golden backup`: writes the dataset to the JSON backup file and its metadata sidecar
//! (the reading and writing is `crate::backup`'s). Both outputs are checked before anything
//! is written, made ready before either is put in place, and replaced atomically and only
//! when their content changed.

use std::path::{Path, PathBuf};

use color_eyre::eyre::WrapErr;
use color_eyre::Result;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::backup::{write_backup, BackedUp, ALL_STATUSES};
use crate::backup_file::{sidecar, DEFAULT_BACKUP_PATH, DEFAULT_METADATA_PATH};
use crate::cli::GlobalArgs;
use crate::db;
use crate::error::Exit;
use crate::interrupt;
use crate::output::Output;
use crate::schema::analyses;
use crate::{atomic, paths};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file to write
    #[arg(long, short, default_value = DEFAULT_BACKUP_PATH)]
    pub output: PathBuf,

    /// The metadata sidecar to write
    #[arg(long, default_value = DEFAULT_METADATA_PATH)]
    pub metadata: PathBuf,

    /// Back up analyses with this status; `all` backs up every analysis
    #[arg(long, default_value = "completed")]
    pub status: String,

    /// Analyses read per query (memory use grows with it)
    #[arg(long, default_value_t = 500, hide = true, value_parser = clap::value_parser!(i64).range(1..))]
    pub page_size: i64,
}

#[derive(Serialize)]
struct Summary<'a> {
    analyses: u64,
    chunks: u64,
    artifacts: u64,
    queries: u64,
    file: &'a Path,
    changed: bool,
    metadata_file: &'a Path,
    created_at: &'a str,
    checksum: &'a str,
    status_filter: &'a str,
}

pub fn run(args: Args, global: &GlobalArgs, output: Output) -> Result<Exit> {
    interrupt::install();
    interrupt::set_outcome("the previous backup file is untouched");
    let backup_path = paths::output(&args.output, "backup file", &[])?;
    let metadata_path = paths::output(&args.metadata, "metadata file", &[])?;
    paths::distinct(&backup_path, "backup file", &metadata_path, "metadata file")?;
    let mut conn = db::connect(global)?;
    let status = (args.status != ALL_STATUSES).then_some(args.status.as_str());
    let progress = progress_bar(output);
    let BackedUp { prepared, problems } = write_backup(
        &mut conn,
        &backup_path.target,
        status,
        args.page_size,
        &progress,
    )?;
    progress.finish_and_clear();
    // Both files are complete before either is put in place: a sidecar that cannot be
    // written leaves the backup as it was too.
    let sidecar = sidecar::prepare(
        &metadata_path.target,
        &args.output,
        &prepared.written,
        &args.status,
    )
    .wrap_err_with(|| {
        format!(
            "writing the metadata file {}; neither file was changed",
            args.metadata.display()
        )
    })?;
    interrupt::commit_point()?;
    let written = prepared.persist().wrap_err_with(|| {
        format!(
            "putting {} in place; neither file was changed",
            args.output.display()
        )
    });
    let written = match written {
        Ok(written) => written,
        Err(report) => {
            interrupt::after_commit(false, true);
            return Err(report);
        }
    };
    if let Some(sidecar) = sidecar {
        let persisted = atomic::persist(sidecar, &metadata_path.target);
        interrupt::after_commit(true, true);
        persisted.wrap_err_with(|| {
            format!(
                "{} was written, but its metadata file {} could not be replaced and still describes \
                 the previous backup; run the backup again",
                args.output.display(),
                args.metadata.display()
            )
        })?;
    } else {
        interrupt::after_commit(true, true);
    }

    warn_about_problems(&problems);
    if written.totals.analyses == 0 {
        if let Some(status) = status {
            warn_when_other_statuses_exist(&mut conn, status);
        }
    }
    let t = &written.totals;
    output.line(format_args!(
        "{} analyses, {} chunks, {} artifacts{} → {}{}",
        t.analyses,
        t.chunks,
        t.artifacts,
        if t.queries > 0 {
            format!(", {} queries", t.queries)
        } else {
            String::new()
        },
        args.output.display(),
        if written.changed { "" } else { " (unchanged)" }
    ))?;
    output.summary(&Summary {
        analyses: t.analyses,
        chunks: t.chunks,
        artifacts: t.artifacts,
        queries: t.queries,
        file: &args.output,
        changed: written.changed,
        metadata_file: &args.metadata,
        created_at: &written.created_at,
        checksum: &written.checksum,
        status_filter: &args.status,
    })?;
    Ok(Exit::Success)
}

fn progress_bar(output: Output) -> ProgressBar {
    if !output.progress_allowed() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("backup {bar:40} {pos}/{len} analyses ({eta})")
    {
        bar.set_style(style);
    }
    bar
}

/// The database may hold what the file checks reject (another tool wrote a localhost URL, an
/// empty field): say so now, since `verify` will fail and `restore` will refuse the file.
fn warn_about_problems(problems: &[crate::validate::Problem]) {
    if problems.is_empty() {
        return;
    }
    log::warn!(
        "the database holds {} thing(s) that `golden verify` rejects and `golden restore` refuses; \
         fix them in the database and back up again:",
        problems.len()
    );
    for problem in problems.iter().take(20) {
        log::warn!("  {problem}");
    }
    if problems.len() > 20 {
        log::warn!("  … and {} more", problems.len() - 20);
    }
}

fn warn_when_other_statuses_exist(conn: &mut PgConnection, status: &str) {
    let others: QueryResult<i64> = analyses::table
        .filter(analyses::status.ne(status))
        .count()
        .get_result(conn);
    if let Ok(others) = others.map(|n| n as u64) {
        if others > 0 {
            log::warn!(
                "no analysis has status {status:?}, but {others} have another status; \
                 back them up with --status <STATUS> or --status all"
            );
        }
    }
}
