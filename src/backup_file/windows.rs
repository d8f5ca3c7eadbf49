//! A validated backup file read again a window of records at a time: what restore, its
//! dry-run plan and the comparison with a database each work on (a few queries per window,
//! never one per row). A window is bounded by chunks as well as by analyses, so memory stays
//! flat whatever the file's shape; and before the last window is handed out, the bytes read
//! are proven to be the bytes validated.

use color_eyre::Result;

use super::reader::ReadError;
use super::records::{read_records, Record};
use super::source::BackupSource;

/// Where windows end.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Chunks a window gathers before it may end.
    pub target_chunks: usize,
    /// A window ends only after a multiple of this many analyses (restore's batches of ten),
    /// unless it reaches `most_chunks`.
    pub analyses_per_step: usize,
    /// A window ends at an analysis boundary with this many analyses, whatever its chunks.
    pub most_analyses: usize,
    /// A window ends here even inside an analysis.
    pub most_chunks: usize,
}

/// Records gathered into one window.
pub struct Window {
    records: Vec<Record>,
    shape: Shape,
    chunks: usize,
    ends: usize,
}

impl Window {
    pub fn new(shape: Shape) -> Window {
        Window {
            records: Vec::new(),
            shape,
            chunks: 0,
            ends: 0,
        }
    }

    /// Adds `record`; true when the window is full and must be handed out.
    pub fn push(&mut self, record: Record) -> bool {
        let shape = self.shape;
        let ended = matches!(record, Record::End { .. });
        match &record {
            Record::Chunk { .. } => self.chunks += 1,
            Record::End { .. } => self.ends += 1,
            Record::Analysis(_) | Record::Artifact { .. } => {}
        }
        self.records.push(record);
        let at_step = ended && self.ends.is_multiple_of(shape.analyses_per_step.max(1));
        (at_step && (self.chunks >= shape.target_chunks || self.ends >= shape.most_analyses))
            || self.chunks >= shape.most_chunks
    }

    /// Takes the records, leaving an empty window.
    pub fn take(&mut self) -> Vec<Record> {
        self.chunks = 0;
        self.ends = 0;
        std::mem::take(&mut self.records)
    }
}

/// Reads `source` again in windows of `shape`, skipping the analyses at the positions `skip`
/// accepts, handing each window to `on_window`; before the last, fails (exit 2) unless the
/// bytes read hash to `validated_sha256`.
pub fn read_windows(
    source: &BackupSource,
    validated_sha256: &[u8; 32],
    shape: Shape,
    skip: impl Fn(usize) -> bool,
    mut on_window: impl FnMut(Vec<Record>) -> Result<()>,
) -> Result<()> {
    let mut window = Window::new(shape);
    let shown = source.path().display().to_string();
    let mut pass = source.pass();
    read_records(&mut pass, &shown, skip, |record| {
        if window.push(record) {
            on_window(window.take())?;
        }
        Ok(())
    })
    .map_err(ReadError::into_report)?;
    source.check_same_bytes(validated_sha256, &pass.digest())?;
    on_window(window.take())
}
