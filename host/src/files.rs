//! Reading files the user names (configs, plugins, bar files, audit logs)
//! without letting the file decide how long the host waits or how much it
//! holds: a FIFO, a device such as `/dev/zero`, a socket, or a file larger
//! than any sane input of its kind is refused before a byte is read.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest config file: a config is a few KiB of TOML; 1 MiB leaves room for
/// long comments and many grants while keeping a mistaken path harmless.
pub const CONFIG_MAX: u64 = 1 << 20;
/// Largest plugin `.wasm`: the reference slices are 0.1 to 3 MiB and a
/// componentize-py component with its interpreter is about 40 MiB; compiling
/// takes several times the file's size in memory, so 256 MiB is the ceiling.
pub const PLUGIN_MAX: u64 = 256 << 20;
/// Largest file the host reads whole for its own bookkeeping (an audit log,
/// a study's curves, a compiled-component cache entry): these grow with a
/// session's length, and 1 GiB is years of daily bars.
pub const RECORD_MAX: u64 = 1 << 30;

/// `O_NONBLOCK` of Linux (x86-64 and AArch64 alike), spelled out so the host
/// needs no libc binding for one flag.
const O_NONBLOCK: i32 = 0o4000;

/// Why a file cannot be read. Each message names the file and what it was for.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("cannot read {what} {}: {source}", .path.display())]
    Io { what: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cannot read {what} {}: it is {kind}, not a regular file", .path.display())]
    NotRegular { what: &'static str, path: PathBuf, kind: &'static str },
    #[error("cannot read {what} {}: it is {size} bytes, more than the {max} allowed", .path.display())]
    TooLarge { what: &'static str, path: PathBuf, size: u64, max: u64 },
}

impl ReadError {
    /// The underlying I/O error, when the file could not be opened or read.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            ReadError::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Opens `path` for reading and checks what it is, without blocking and
/// without reading: `O_NONBLOCK` keeps opening a FIFO with no writer from
/// waiting, and the type and size are taken from the opened handle (fstat),
/// so a symlink swapped between a check and the open cannot slip through.
pub fn open_regular(path: &Path, max: u64, what: &'static str) -> Result<(File, u64), ReadError> {
    let io = |source| ReadError::Io { what, path: path.to_owned(), source };
    let file = std::fs::OpenOptions::new().read(true).custom_flags(O_NONBLOCK).open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    let ty = meta.file_type();
    if !ty.is_file() {
        return Err(ReadError::NotRegular { what, path: path.to_owned(), kind: kind_of(&ty) });
    }
    if meta.len() > max {
        return Err(ReadError::TooLarge { what, path: path.to_owned(), size: meta.len(), max });
    }
    Ok((file, meta.len()))
}

/// The whole of a regular file of at most `max` bytes. Reads at most
/// `max + 1` bytes whatever the file claims, so a file that grows while it
/// is read is refused rather than followed.
pub fn read_bounded(path: &Path, max: u64, what: &'static str) -> Result<Vec<u8>, ReadError> {
    let (file, len) = open_regular(path, max, what)?;
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes).map_err(|source| ReadError::Io {
        what,
        path: path.to_owned(),
        source,
    })?;
    if bytes.len() as u64 > max {
        return Err(ReadError::TooLarge { what, path: path.to_owned(), size: bytes.len() as u64, max });
    }
    Ok(bytes)
}

/// Like [`read_bounded`], as UTF-8 text.
pub fn read_text_bounded(path: &Path, max: u64, what: &'static str) -> Result<String, ReadError> {
    let bytes = read_bounded(path, max, what)?;
    String::from_utf8(bytes).map_err(|e| ReadError::Io {
        what,
        path: path.to_owned(),
        source: std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not UTF-8 text: {}", e.utf8_error()),
        ),
    })
}

/// What a non-regular file is, for the message that refuses it.
pub fn kind_of(ty: &std::fs::FileType) -> &'static str {
    if ty.is_dir() {
        "a directory"
    } else if ty.is_fifo() {
        "a FIFO (named pipe)"
    } else if ty.is_char_device() {
        "a character device"
    } else if ty.is_block_device() {
        "a block device"
    } else if ty.is_socket() {
        "a socket"
    } else if ty.is_symlink() {
        "a symbolic link"
    } else {
        "not a regular file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_fifos_and_directories_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
        assert!(made.success());
        let link = dir.path().join("zero-link");
        std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
        for (path, kind) in [
            (fifo.as_path(), "FIFO"),
            (Path::new("/dev/zero"), "character device"),
            (link.as_path(), "character device"),
            (dir.path(), "directory"),
        ] {
            let err = read_bounded(path, CONFIG_MAX, "config file").unwrap_err().to_string();
            assert!(err.contains(kind) && err.contains(&path.display().to_string()), "{err}");
        }
    }

    #[test]
    fn sizes_over_the_cap_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        std::fs::write(&path, vec![b'x'; 11]).unwrap();
        // 10 bytes allowed, 11 present: one over.
        let err = read_bounded(&path, 10, "config file").unwrap_err().to_string();
        assert!(err.contains("11 bytes, more than the 10 allowed"), "{err}");
        assert_eq!(read_bounded(&path, 11, "config file").unwrap().len(), 11);
    }
}
