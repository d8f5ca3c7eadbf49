//! The backup file of CONTRACT.md (format "1.0"): its records, how it is read (streamed,
//! tolerant of the original Python tool's quirks) and written (streamed, deterministic, atomic).

pub mod checksum;
pub mod dialect;
pub mod extras;
pub mod reader;
pub mod record;
pub mod records;
pub mod sidecar;
pub mod source;
pub mod timestamp;
pub mod windows;
pub mod writer;

/// The format version this tool writes.
pub const FORMAT_VERSION: &str = "1.0";
/// The major version this tool reads; a file of another major version is refused.
pub const SUPPORTED_MAJOR: &str = "1";

/// Where `backup` writes and `restore`/`verify` read, relative to the working folder.
pub const DEFAULT_BACKUP_PATH: &str = "data/golden_dataset_backup.json";
/// The metadata sidecar, for quick stats without reading the backup.
pub const DEFAULT_METADATA_PATH: &str = "data/golden_dataset_metadata.json";
