//! The files a command reads and writes, checked before anything is written (CONTRACT.md: no
//! command replaces anything but a regular file, or writes an output over one of its inputs).
//!
//! An output is a regular file or does not exist yet: never a device (`--output /dev/null`
//! as root would otherwise rename a file full of the dataset over `/dev/null`), a FIFO (its
//! `open` blocks until a reader comes), a socket or a folder. A symlink to a regular file is
//! followed: the file it names is replaced and the link stays. An output is never one of the
//! command's inputs nor its other output, compared by the file itself (device and inode, so
//! hard links and symlinks count) and, for files that do not exist yet, by canonical path.
//!
//! An input must be a regular file too: a FIFO would be consumed by validation and then block
//! the load for ever, so streams are refused, not read (save them to a file first).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use color_eyre::Result;

use crate::error::invalid_input;

/// A checked output path.
#[derive(Debug, Clone)]
pub struct OutputPath {
    /// As the user wrote it, for messages.
    pub shown: PathBuf,
    /// Where the bytes go: the file a symlink names, else the path itself.
    pub target: PathBuf,
}

/// Checks that `path` may be written: absent or a regular file (through symlinks), and none of
/// `inputs`. Exit 2 otherwise, before anything is written.
pub fn output(path: &Path, what: &str, inputs: &[&Path]) -> Result<OutputPath> {
    let shown = path.display();
    let target = match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => path.to_path_buf(),
        Err(e) => {
            return Err(invalid_input(format!(
                "cannot use {shown} as the {what}: {e}"
            )))
        }
        Ok(link) if link.file_type().is_symlink() => match fs::canonicalize(path) {
            Ok(target) => target,
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(invalid_input(format!(
                "{shown} is a symlink that cannot be followed ({e}): give the {what} a real path"
            )))
            }
            Err(_) => {
                return Err(invalid_input(format!(
                "{shown} is a symlink to a file that does not exist; golden does not create files \
                     through dangling links: give the {what} a real path"
            )))
            }
        },
        Ok(_) => path.to_path_buf(),
    };
    if let Ok(metadata) = fs::metadata(&target) {
        if !metadata.is_file() {
            return Err(invalid_input(format!(
                "{shown} is {}, not a regular file: golden writes the {what} only to a regular file \
                 (or a new one), and never replaces anything else",
                describe(&metadata)
            )));
        }
    }
    // The nearest folder of the path that exists must be one: a dangling symlink there would
    // have golden create folders somewhere else than the path says.
    let mut ancestor = target.parent();
    while let Some(folder) = ancestor.filter(|folder| !folder.as_os_str().is_empty()) {
        match fs::symlink_metadata(folder) {
            Ok(found) => {
                if found.file_type().is_symlink() && fs::metadata(folder).is_err() {
                    return Err(invalid_input(format!(
                        "cannot write the {what} {shown}: {} is a symlink to a folder that does not \
                         exist",
                        folder.display()
                    )));
                }
                break;
            }
            Err(_) => ancestor = folder.parent(),
        }
    }
    if let Some(folder) = target.parent().filter(|p| !p.as_os_str().is_empty()) {
        if let Ok(metadata) = fs::metadata(folder) {
            if !metadata.is_dir() {
                return Err(invalid_input(format!(
                    "cannot write the {what} {shown}: {} is not a folder",
                    folder.display()
                )));
            }
        }
    }
    for input in inputs {
        if same_file(&target, input) {
            return Err(invalid_input(format!(
                "the {what} {shown} is the input file {}: golden never writes an output over one of \
                 its inputs; choose another path",
                input.display()
            )));
        }
    }
    Ok(OutputPath {
        shown: path.to_path_buf(),
        target,
    })
}

/// Checks that two outputs of one command are different files.
pub fn distinct(a: &OutputPath, a_what: &str, b: &OutputPath, b_what: &str) -> Result<()> {
    if same_file(&a.target, &b.target) {
        return Err(invalid_input(format!(
            "the {a_what} {} and the {b_what} {} are the same file; give them different paths",
            a.shown.display(),
            b.shown.display()
        )));
    }
    Ok(())
}

/// Opens `path` for reading without blocking (a FIFO would wait for a writer) and refuses
/// what is not a regular file (exit 2): what a command reads, it reads from the file it checked.
pub fn open_regular(path: &Path, what: &str) -> Result<fs::File> {
    let cannot = |e: io::Error| invalid_input(format!("cannot read {}: {e}", path.display()));
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK);
    let file = options.open(path).map_err(cannot)?;
    let metadata = file.metadata().map_err(cannot)?;
    if !metadata.is_file() {
        return Err(not_regular(path, &metadata, what));
    }
    Ok(file)
}

/// The exit-2 error for an input that is not a regular file.
pub fn not_regular(path: &Path, metadata: &fs::Metadata, what: &str) -> color_eyre::Report {
    invalid_input(format!(
        "{} is {}, not a regular file: golden reads the {what} from a regular file only (it reads it \
         more than once); save it to a file first",
        path.display(),
        describe(metadata)
    ))
}

/// Whether `a` and `b` name the same file: the same inode when both exist, else the same
/// canonical path.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) {
        return same_inode(&ma, &mb);
    }
    match (canonical_even_if_missing(a), canonical_even_if_missing(b)) {
        (Some(a), Some(b)) => a == b,
        // A path that cannot be resolved (a loop of links) might be either: say the same,
        // and refuse rather than risk one file over the other.
        _ => true,
    }
}

#[cfg(unix)]
fn same_inode(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_inode(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    false
}

/// The canonical path of `path` even where it does not exist yet: its deepest existing
/// ancestor canonicalized (symlinks resolved), and the rest of the path normalized by its
/// components (`.` dropped, `..` taking one away): what does not exist cannot be a symlink.
pub fn canonical_even_if_missing(path: &Path) -> Option<PathBuf> {
    resolve(path, 0)
}

/// The most symlinks followed while resolving one path, as the system's own limit.
const MOST_LINKS: usize = 40;

fn resolve(path: &Path, links: usize) -> Option<PathBuf> {
    use std::path::Component;
    if links > MOST_LINKS {
        return None;
    }
    if let Ok(canonical) = fs::canonicalize(path) {
        return Some(canonical);
    }
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().ok()?.join(path)
    };
    // Component by component: what exists is resolved as the system would (symlinks
    // included, dangling ones by their target), so a `..` after it goes where the system's
    // would.
    let components: Vec<Component> = absolute.components().collect();
    let mut resolved = PathBuf::new();
    for (i, component) in components.iter().enumerate() {
        match component {
            Component::Prefix(_) | Component::RootDir => resolved.push(component),
            Component::CurDir => {}
            Component::ParentDir => {
                resolved.pop();
            }
            Component::Normal(name) => {
                let next = resolved.join(name);
                match fs::symlink_metadata(&next) {
                    Ok(found) if found.file_type().is_symlink() => {
                        if let Ok(canonical) = fs::canonicalize(&next) {
                            resolved = canonical;
                            continue;
                        }
                        // A dangling link: where it points, then the rest of the path.
                        let target = fs::read_link(&next).ok()?;
                        let mut rest = resolved.join(target);
                        for later in &components[i + 1..] {
                            rest.push(later);
                        }
                        return resolve(&rest, links + 1);
                    }
                    Ok(_) => resolved = fs::canonicalize(&next).ok()?,
                    Err(_) => resolved = next,
                }
            }
        }
    }
    Some(resolved)
}

/// "a FIFO", "a character device", …: what a non-regular file is, for messages.
pub fn describe(metadata: &fs::Metadata) -> &'static str {
    let kind = metadata.file_type();
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a folder"
    } else if kind.is_symlink() {
        "a symlink"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::canonical_even_if_missing;

    #[test]
    fn paths_that_do_not_exist_yet_compare_by_their_components() {
        let dir = tempfile::tempdir().unwrap();
        let base = std::fs::canonicalize(dir.path()).unwrap();
        let plain = canonical_even_if_missing(&dir.path().join("nd/x.json")).unwrap();
        assert_eq!(plain, base.join("nd/x.json"));
        for same in [
            "nd/./x.json",
            "nd/../nd/x.json",
            "./nd//x.json",
            "nd/sub/../x.json",
        ] {
            assert_eq!(
                canonical_even_if_missing(&dir.path().join(same)).unwrap(),
                plain,
                "{same}"
            );
        }
        assert_ne!(
            canonical_even_if_missing(&dir.path().join("nd/y.json")).unwrap(),
            plain
        );
        // Through a symlink to a folder that does not exist yet.
        std::os::unix::fs::symlink("nd", dir.path().join("link")).unwrap();
        assert_eq!(
            canonical_even_if_missing(&dir.path().join("link/x.json")).unwrap(),
            plain
        );
    }
}
