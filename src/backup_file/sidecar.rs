//! The metadata sidecar (`data/golden_dataset_metadata.json`): the backup's metadata in a few
//! hundred bytes, for quick stats and for tools that should not parse the whole backup.

use std::io;
use std::path::Path;

use serde::Serialize;

use super::writer::Written;
use super::FORMAT_VERSION;
use crate::atomic;

#[derive(Debug, Serialize)]
struct Sidecar<'a> {
    version: &'a str,
    created_at: &'a str,
    backup_file: String,
    total_analyses: u64,
    total_chunks: u64,
    total_artifacts: u64,
    status_filter: &'a str,
    checksum: &'a str,
}

/// The sidecar for `written`, ready in a temp file beside `path` (`None` when `path` already
/// holds these bytes); [`atomic::persist`] puts it in place.
pub fn prepare(
    path: &Path,
    backup_path: &Path,
    written: &Written,
    status_filter: &str,
) -> io::Result<Option<tempfile::NamedTempFile>> {
    let sidecar = Sidecar {
        version: FORMAT_VERSION,
        created_at: &written.created_at,
        backup_file: backup_path.file_name().map_or_else(
            || backup_path.display().to_string(),
            |name| name.to_string_lossy().into_owned(),
        ),
        total_analyses: written.totals.analyses,
        total_chunks: written.totals.chunks,
        total_artifacts: written.totals.artifacts,
        status_filter,
        checksum: &written.checksum,
    };
    let mut bytes = serde_json::to_vec_pretty(&sidecar).map_err(io::Error::other)?;
    bytes.push(b'\n');
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(None);
    }
    atomic::write_temp_beside(path, &bytes).map(Some)
}
