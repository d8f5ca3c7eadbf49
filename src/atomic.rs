//! Atomic file replacement, as cargo's `write_atomic`: write a temp file in the destination's
//! folder (same file system, so the rename is atomic), flush and fsync it, rename it over the
//! destination, fsync the folder. A crash or error at any point leaves the old file whole;
//! at worst a `.golden-*.tmp` file stays behind (git-ignored), and not even that when the
//! process is interrupted: interrupted runs remove theirs.
//!
//! What golden writes holds the whole dataset, so a new file is readable by its owner only
//! (0600), and a folder golden creates for it too (0700). Replacing a file keeps that file's
//! permissions, as an editor saving it would.

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tempfile::NamedTempFile;

/// Temp files created and not yet renamed into place: removed when the process must quit at
/// once (a second Ctrl-C), where no destructor runs.
static UNFINISHED: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

fn unfinished() -> std::sync::MutexGuard<'static, Vec<PathBuf>> {
    UNFINISHED
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Removes every temp file not yet renamed into place (best effort).
pub fn remove_unfinished_temp_files() {
    for path in unfinished().drain(..) {
        let _ = fs::remove_file(path);
    }
}

/// The folder a destination lives in ("." for a bare file name).
pub fn folder_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Creates `folder` and its missing parents, private to the owner.
pub fn create_private_folder(folder: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(folder)
}

/// A new temp file beside `dest` (0600), creating the folder if needed.
pub fn temp_file_beside(dest: &Path) -> io::Result<NamedTempFile> {
    let folder = folder_of(dest);
    create_private_folder(&folder)?;
    let temp = tempfile::Builder::new()
        .prefix(".golden-")
        .suffix(".tmp")
        .tempfile_in(&folder)?;
    unfinished().push(temp.path().to_path_buf());
    Ok(temp)
}

fn finished(path: &Path) {
    unfinished().retain(|unfinished| unfinished != path);
}

/// Makes the temp file durable and renames it over `dest`.
pub fn persist(temp: NamedTempFile, dest: &Path) -> io::Result<()> {
    if let Ok(existing) = fs::metadata(dest) {
        temp.as_file().set_permissions(existing.permissions())?;
    }
    temp.as_file().sync_all()?;
    let temp_path = temp.path().to_path_buf();
    temp.persist(dest).map_err(|e| e.error)?;
    finished(&temp_path);
    sync_folder(dest);
    Ok(())
}

/// Makes the temp file durable and gives it the name `dest`, failing (and leaving the temp
/// file to be removed) if `dest` exists: what must never replace anything, a safety backup.
pub fn persist_new(temp: NamedTempFile, dest: &Path) -> io::Result<()> {
    temp.as_file().sync_all()?;
    let temp_path = temp.path().to_path_buf();
    temp.persist_noclobber(dest).map_err(|e| e.error)?;
    finished(&temp_path);
    sync_folder(dest);
    Ok(())
}

/// The rename is durable only once the folder is synced; not every platform allows it.
fn sync_folder(dest: &Path) {
    if let Ok(folder) = File::open(folder_of(dest)) {
        let _ = folder.sync_all();
    }
}

/// A temp file beside `dest` holding `bytes`, ready to be persisted.
pub fn write_temp_beside(dest: &Path, bytes: &[u8]) -> io::Result<NamedTempFile> {
    let mut temp = temp_file_beside(dest)?;
    temp.write_all(bytes)?;
    temp.flush()?;
    Ok(temp)
}

/// True when both files exist and hold the same bytes.
pub fn same_contents(a: &Path, b: &Path) -> io::Result<bool> {
    let (file_a, file_b) = match (File::open(a), File::open(b)) {
        (Ok(fa), Ok(fb)) => (fa, fb),
        _ => return Ok(false),
    };
    if file_a.metadata()?.len() != file_b.metadata()?.len() {
        return Ok(false);
    }
    let mut reader_a = BufReader::with_capacity(64 * 1024, file_a);
    let mut reader_b = BufReader::with_capacity(64 * 1024, file_b);
    let mut buf_a = vec![0u8; 64 * 1024];
    let mut buf_b = vec![0u8; 64 * 1024];
    loop {
        let n = read_full(&mut reader_a, &mut buf_a)?;
        let m = read_full(&mut reader_b, &mut buf_b)?;
        if n != m || buf_a[..n] != buf_b[..m] {
            return Ok(false);
        }
        if n == 0 {
            return Ok(true);
        }
    }
}

/// Reads until `buf` is full or the end of the input.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Reads `len` bytes at `offset` of `path`, if the file is that long.
pub fn read_at(path: &Path, offset: u64, len: usize) -> io::Result<Option<Vec<u8>>> {
    use std::io::{Seek, SeekFrom};
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; len];
    match file.read_exact(&mut buf) {
        Ok(()) => Ok(Some(buf)),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}
