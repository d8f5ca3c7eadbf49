//! A backup file held open from its validation to its load, so that what `restore` loads is
//! exactly what it validated (CONTRACT.md).
//!
//! A restore reads its file twice: once to check all of it before writing anything, once to
//! load it (holding it whole would cost memory in proportion to the file). In between, the
//! file may be replaced (an editor's rename, a `git checkout`) or edited in place. So the file
//! is opened once and every pass reads that same open file; its identity (device, inode,
//! size, modification and change times) is checked again before every commit, through the
//! open file and through its path; and each pass hashes the bytes it reads, so that the load
//! proves, before its last commit, that it read the very bytes that were validated. A
//! difference stops the restore (exit 2) before the next commit.
//!
//! The file is opened without blocking and must be a regular file: a FIFO would be used up
//! by the first pass, a device might never end.
//!
//! A file of another tool's dialect is read once, by its own reader, into golden's format in
//! an anonymous temp file that nobody else can reach; the passes then read that. The original
//! is still checked unchanged before every commit.

use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::dialect::{self, Dialect, Normalized};
use super::reader::ReadError;

/// A backup file opened for reading.
pub struct BackupSource {
    path: PathBuf,
    file: File,
    identity: Identity,
    dialect: Dialect,
    /// Golden's format of a foreign file, and what its reader found wrong with it.
    normalized: Option<(File, Normalized)>,
}

/// What tells one state of a file from another without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Identity {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl Identity {
    #[cfg(unix)]
    fn of(metadata: &Metadata) -> Identity {
        use std::os::unix::fs::MetadataExt;
        Identity {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
}

impl BackupSource {
    /// Opens `path`, refusing what is not a regular file (exit 2).
    pub fn open(path: &Path) -> Result<BackupSource, ReadError> {
        let file = crate::paths::open_regular(path, "backup file")
            .map_err(|e| ReadError::Invalid(e.to_string()))?;
        BackupSource::of_open_file(file, path)
    }

    /// A file already open, named `path` in messages: a temp file with no name of its own
    /// (a git revision's blob), which nothing can leave behind, whatever ends the process.
    pub fn of_open_file(file: File, path: &Path) -> Result<BackupSource, ReadError> {
        let metadata = file
            .metadata()
            .map_err(|e| ReadError::Invalid(format!("cannot read {}: {e}", path.display())))?;
        let mut source = BackupSource {
            path: path.to_path_buf(),
            identity: Identity::of(&metadata),
            file,
            dialect: Dialect::Golden,
            normalized: None,
        };
        let shown = path.display().to_string();
        source.dialect = dialect::detect(source.original_pass(), &shown)?;
        if source.dialect != Dialect::Golden {
            let temp = tempfile::tempfile().map_err(|e| {
                ReadError::Invalid(format!("cannot create a temp file to read {shown}: {e}"))
            })?;
            let mut out = std::io::BufWriter::new(temp);
            let found =
                dialect::normalize(&source.dialect, source.original_pass(), &shown, &mut out)?;
            let temp = out.into_inner().map_err(|e| {
                ReadError::Invalid(format!("cannot write the temp file of {shown}: {e}"))
            })?;
            source.normalized = Some((temp, found));
        }
        Ok(source)
    }

    /// The dialect the file is written in.
    pub fn dialect(&self) -> &Dialect {
        &self.dialect
    }

    /// What the dialect's reader found wrong (problems) or worth a look (warnings), beyond
    /// what the checks of golden's format find.
    pub fn dialect_findings(&self) -> Option<&Normalized> {
        self.normalized.as_ref().map(|(_, found)| found)
    }

    /// A read of the file as it is on disk.
    fn original_pass(&self) -> Pass<'_> {
        Pass {
            file: &self.file,
            offset: 0,
            hasher: Sha256::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dialect the file was read as, for the first line of a command's output.
    pub fn dialect_label(&self) -> String {
        self.dialect.label()
    }

    /// A read of the whole file in golden's format from its start (the file itself, or its
    /// normalized form), hashing what it reads.
    pub fn pass(&self) -> Pass<'_> {
        Pass {
            file: self
                .normalized
                .as_ref()
                .map_or(&self.file, |(temp, _)| temp),
            offset: 0,
            hasher: Sha256::new(),
        }
    }

    /// Fails (exit 2) when the file changed since it was opened, or its path now names
    /// another file.
    pub fn check_unchanged(&self) -> color_eyre::Result<()> {
        let at_path = std::fs::metadata(&self.path).map(|m| Identity::of(&m));
        let now = self.file.metadata().map(|m| Identity::of(&m));
        let same_inode = |other: &Identity| {
            (other.device, other.inode) == (self.identity.device, self.identity.inode)
        };
        let what = match (at_path, now) {
            (Err(_), _) => "was removed or renamed",
            (Ok(at_path), _) if !same_inode(&at_path) => "was replaced by another file",
            (_, Ok(now)) if now != self.identity => "was changed",
            (_, Err(e)) => {
                return Err(color_eyre::eyre::eyre!(
                    "checking {}: {e}",
                    self.path.display()
                ))
            }
            _ => return Ok(()),
        };
        Err(crate::error::invalid_input(format!(
            "{} {what} during the restore, after it was validated; what it now holds was not \
             checked, so nothing more is written: run the restore again",
            self.path.display()
        )))
    }

    /// Fails (exit 2) unless `loaded` is the digest of the validated bytes.
    pub fn check_same_bytes(
        &self,
        validated: &[u8; 32],
        loaded: &[u8; 32],
    ) -> color_eyre::Result<()> {
        if validated == loaded {
            return Ok(());
        }
        Err(crate::error::invalid_input(format!(
            "{} changed during the restore: the bytes loaded are not the bytes validated; \
             nothing more is written: run the restore again",
            self.path.display()
        )))
    }
}

/// One read of a [`BackupSource`], positioned on its own (passes do not share an offset).
pub struct Pass<'a> {
    file: &'a File,
    offset: u64,
    hasher: Sha256,
}

impl Pass<'_> {
    /// The SHA-256 of every byte read so far.
    pub fn digest(&self) -> [u8; 32] {
        self.hasher.clone().finalize().into()
    }
}

impl Read for Pass<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        #[cfg(unix)]
        let read = std::os::unix::fs::FileExt::read_at(self.file, buf, self.offset)?;
        self.offset += read as u64;
        self.hasher.update(&buf[..read]);
        Ok(read)
    }
}
