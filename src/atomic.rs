//! Atomic file replacement, as cargo's `write_atomic`: write a temp file in the destination's
//! folder (same file system, so the rename is atomic), flush and fsync it, rename it over the
//! destination, fsync the folder. A crash or error at any point leaves the old file whole;
//! at worst a `.golden-*.tmp` file stays behind (git-ignored).

use std::fs::{self, File};
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

/// The folder a destination lives in ("." for a bare file name).
fn folder_of(dest: &Path) -> PathBuf {
    match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A new temp file beside `dest`, creating the folder if needed.
pub fn temp_file_beside(dest: &Path) -> io::Result<NamedTempFile> {
    let folder = folder_of(dest);
    fs::create_dir_all(&folder)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".golden-").suffix(".tmp");
    // A temp file is private (0600) by default; the result is an ordinary file, so ask for
    // what `File::create` asks for and let the umask decide.
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o666));
    builder.tempfile_in(&folder)
}

/// Makes the temp file durable and renames it over `dest`.
pub fn persist(temp: NamedTempFile, dest: &Path) -> io::Result<()> {
    // Replacing a file keeps its permissions, as an editor saving it would.
    if let Ok(existing) = fs::metadata(dest) {
        temp.as_file().set_permissions(existing.permissions())?;
    }
    temp.as_file().sync_all()?;
    temp.persist(dest).map_err(|e| e.error)?;
    // The rename is durable only once the folder is synced; not every platform allows it.
    if let Ok(folder) = File::open(folder_of(dest)) {
        let _ = folder.sync_all();
    }
    Ok(())
}

/// Replaces `dest` with `bytes` atomically.
pub fn write_atomic(dest: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut temp = temp_file_beside(dest)?;
    temp.write_all(bytes)?;
    temp.flush()?;
    persist(temp, dest)
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
