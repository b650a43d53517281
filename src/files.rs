//! Reading the files a user or a config names. Every such read goes through here so that it
//! stops at a documented limit, and so that a path that is not a regular file (a FIFO, a
//! device such as /dev/zero, a directory) is refused before anything is read from it: a
//! wrong `--ca` must cost an error line, not the machine's memory or a process that never ends.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Mail, detached content, attachments: the CLI's and the agent's input limit.
pub const MAX_MAIL: u64 = 64 * 1024 * 1024;
/// A file of certificates (PEM bundle or one DER). The Mozilla bundle is about 220 KiB.
pub const MAX_CERT_FILE: u64 = 4 * 1024 * 1024;
/// Config, profiles and PEM keys: small text.
pub const MAX_TEXT_FILE: u64 = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("{}", crate::tr!("file-cannot-read", path = .path, error = .source.to_string()))]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}", crate::tr!("file-not-regular", path = .path, kind = .kind.text()))]
    NotRegular { path: PathBuf, kind: FileKind },
    #[error("{}", crate::tr!("file-too-large", path = .path, limit = size(*.limit)))]
    TooLarge { path: PathBuf, limit: u64 },
}

impl ReadError {
    /// The path is wrong (missing, unreadable, not a file, too large) rather than the machine
    /// failing to read a good one.
    pub fn is_usage(&self) -> bool {
        match self {
            ReadError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::PermissionDenied
                        | std::io::ErrorKind::IsADirectory
                )
            }
            ReadError::NotRegular { .. } | ReadError::TooLarge { .. } => true,
        }
    }

    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// "64 MiB", "4 MiB", "512 KiB".
pub fn size(bytes: u64) -> String {
    if bytes.is_multiple_of(1024 * 1024) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{} KiB", bytes >> 10)
    }
}

/// Open `path` for reading if it is a regular file. O_NONBLOCK keeps the open itself from
/// waiting for a writer when the path is a FIFO; the type is then checked on the open file,
/// so a path swapped between a check and the open cannot slip through.
pub fn open_regular(path: &Path) -> Result<File, ReadError> {
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| ReadError::Io { path: path.to_path_buf(), source };
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(io)?;
    let kind = file.metadata().map_err(io)?.file_type();
    if !kind.is_file() {
        return Err(ReadError::NotRegular { path: path.to_path_buf(), kind: describe(kind) });
    }
    Ok(file)
}

/// The whole of a regular file of at most `limit` bytes.
pub fn read_regular(path: &Path, limit: u64) -> Result<Vec<u8>, ReadError> {
    let file = open_regular(path)?;
    read_limited(file, limit)
        .map_err(|source| ReadError::Io { path: path.to_path_buf(), source })?
        .ok_or_else(|| ReadError::TooLarge { path: path.to_path_buf(), limit })
}

/// As `read_regular`, for text.
pub fn read_regular_text(path: &Path, limit: u64) -> Result<String, ReadError> {
    String::from_utf8(read_regular(path, limit)?).map_err(|_| ReadError::Io {
        path: path.to_path_buf(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"),
    })
}

/// Everything `file` holds, or None when it holds more than `limit` bytes. The buffer is sized
/// once from the file's length (growing by doubling would briefly hold 1.5× the data) but the
/// read itself never goes past `limit + 1`, whatever the length said.
pub fn read_limited(file: File, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    if len > limit {
        return Ok(None);
    }
    let mut buf = Vec::with_capacity(len as usize + 1);
    read_stream(file, limit, &mut buf)?;
    Ok((buf.len() as u64 <= limit).then_some(buf))
}

/// Read from a stream (standard input, a pipe) into `buf`, stopping one byte past `limit` so
/// the caller can tell "exactly the limit" from "more".
pub fn read_stream(r: impl Read, limit: u64, buf: &mut Vec<u8>) -> std::io::Result<()> {
    r.take(limit + 1).read_to_end(buf).map(drop)
}

/// What stands at a path where a regular file was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    Directory,
    Fifo,
    CharDevice,
    BlockDevice,
    Socket,
    Other,
}

impl FileKind {
    fn text(self) -> String {
        match self {
            FileKind::Directory => crate::tr!("file-kind-directory"),
            FileKind::Fifo => crate::tr!("file-kind-fifo"),
            FileKind::CharDevice => crate::tr!("file-kind-char-device"),
            FileKind::BlockDevice => crate::tr!("file-kind-block-device"),
            FileKind::Socket => crate::tr!("file-kind-socket"),
            FileKind::Other => crate::tr!("file-kind-other"),
        }
    }
}

fn describe(t: std::fs::FileType) -> FileKind {
    use std::os::unix::fs::FileTypeExt;
    if t.is_dir() {
        FileKind::Directory
    } else if t.is_fifo() {
        FileKind::Fifo
    } else if t.is_char_device() {
        FileKind::CharDevice
    } else if t.is_block_device() {
        FileKind::BlockDevice
    } else if t.is_socket() {
        FileKind::Socket
    } else {
        FileKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_device_is_refused_before_anything_is_read() {
        let e = read_regular(Path::new("/dev/zero"), MAX_CERT_FILE).unwrap_err();
        assert!(matches!(e, ReadError::NotRegular { kind: FileKind::CharDevice, .. }), "{e}");
        assert!(e.is_usage());
    }

    #[test]
    fn a_fifo_without_a_writer_is_refused_without_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("f");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        assert!(matches!(read_regular(&fifo, 10), Err(ReadError::NotRegular { kind: FileKind::Fifo, .. })));
    }

    #[test]
    fn a_file_at_the_limit_is_read_and_one_byte_more_is_refused() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&[7u8; 100]).unwrap();
        assert_eq!(read_regular(f.path(), 100).unwrap().len(), 100);
        let e = read_regular(f.path(), 99).unwrap_err();
        assert!(matches!(e, ReadError::TooLarge { limit: 99, .. }));
    }

    #[test]
    fn a_directory_is_refused_as_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let e = read_regular(dir.path(), 10).unwrap_err();
        assert!(e.to_string().contains("a directory"), "{e}");
    }

    #[test]
    fn a_stream_is_read_one_byte_past_the_limit_and_no_further() {
        let mut buf = Vec::new();
        read_stream(std::io::repeat(1), 1000, &mut buf).unwrap();
        assert_eq!(buf.len(), 1001);
    }
}
