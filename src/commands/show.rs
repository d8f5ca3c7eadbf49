//! `golden show`: prints a backup file as the stable text of `crate::show`, the textconv
//! `golden git-setup` registers so that `git diff` and `git log -p` show records, not JSON.
//!
//! git runs a textconv on whatever the file holds, a working tree in the middle of a merge
//! (conflict markers) or a hand edit that broke the JSON included, and a failing textconv
//! stops the whole `git diff`. With `--raw-if-unreadable` such a file is printed as it is,
//! with a warning; the rendering is then held (on disk past a few megabytes) until the whole
//! file has been read, so that a file that breaks half-way is printed raw, not half rendered. A
//! path that is not a regular file (a FIFO, a device) is refused in both modes.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;

use color_eyre::Result;

use crate::backup_file::reader::ReadError;
use crate::backup_file::source::BackupSource;
use crate::backup_file::DEFAULT_BACKUP_PATH;
use crate::cli::GlobalArgs;
use crate::error::{exit_code_of, invalid_input, is_broken_pipe, Exit};
use crate::output::Output;
use crate::spill::Spill;
use crate::{paths, show};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The backup file to show (any dialect golden reads) [default: data/golden_dataset_backup.json]
    #[arg(value_name = "FILE")]
    pub file: Option<PathBuf>,

    /// When FILE is not a readable backup (conflict markers, broken JSON), print its bytes as
    /// they are with a warning on stderr and exit 0, as git's textconv needs
    #[arg(long)]
    pub raw_if_unreadable: bool,

    /// The layout git-setup registered in git's config; another one than this golden's warns
    /// that git-setup must run again (git's cache of renderings is keyed by the command line)
    #[arg(long, value_name = "N")]
    pub layout: Option<u32>,
}

/// Output buffer: one write to the pipe per 64 KB, not one per line.
const BUFFER: usize = 64 * 1024;

pub fn run(args: Args, global: &GlobalArgs, _output: Output) -> Result<Exit> {
    if global.json {
        return Err(invalid_input(
            "golden show prints text only (it is the file as lines for git); it has no --json \
             summary: drop --json (the backup itself is the JSON)",
        ));
    }
    if let Some(layout) = args.layout.filter(|&layout| layout != show::LAYOUT) {
        log::warn!(
            "this repository's git config asks for layout {layout} of golden show, this golden \
             writes layout {}: run golden git-setup in the repository again, so that git drops \
             the renderings it cached",
            show::LAYOUT
        );
    }
    let path = args
        .file
        .unwrap_or_else(|| PathBuf::from(DEFAULT_BACKUP_PATH));
    // Checked and opened first, in both modes: the raw bytes come from this regular file.
    let mut file = paths::open_regular(&path, "backup file")?;
    let stdout = BufWriter::with_capacity(BUFFER, io::stdout().lock());
    if !args.raw_if_unreadable {
        let source = BackupSource::open(&path).map_err(ReadError::into_report)?;
        log::debug!("read as {}", source.dialect_label());
        show::render(&source, stdout)?.flush()?;
        return Ok(Exit::Success);
    }
    match render_held(&path) {
        Ok(rendering) => copy_to(rendering, stdout)?,
        Err(report) if exit_code_of(&report) == Exit::InvalidInput && !is_broken_pipe(&report) => {
            log::warn!(
                "{} is not a readable backup ({report}); showing its bytes as they are",
                path.display()
            );
            // From its start: nothing has read this handle.
            copy_to(&mut file, stdout)?;
        }
        Err(report) => return Err(report),
    }
    Ok(Exit::Success)
}

/// The rendering of the file at `path`, held until it is complete.
fn render_held(path: &std::path::Path) -> Result<Box<dyn io::BufRead>> {
    let source = BackupSource::open(path).map_err(ReadError::into_report)?;
    log::debug!("read as {}", source.dialect_label());
    let held = show::render(
        &source,
        BufWriter::with_capacity(BUFFER, Held(Spill::new())),
    )?;
    let Held(spill) = held.into_inner().map_err(|e| e.into_error())?;
    Ok(spill.into_reader()?)
}

fn copy_to(mut from: impl io::Read, mut to: BufWriter<io::StdoutLock<'_>>) -> io::Result<()> {
    io::copy(&mut from, &mut to)?;
    to.flush()
}

/// A [`Spill`] as an `io::Write`.
struct Held(Spill);

impl Write for Held {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write(bytes)?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
