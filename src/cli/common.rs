//! What every command run from the command line shares: its settings, the PIN source, and I/O.

use super::{Global, InOut};
use crate::config::{Config, PinSource};
use crate::error::{Exit, Failure};
use crate::files;
use crate::ops::setup::Setup;
use crate::prompt::{FdPin, PinentryPin, TtyPin};
use crate::token::pin::PinPrompt;
use std::io::Write;
use std::path::Path;

/// Largest mail we accept; bigger input is refused before it is parsed.
pub const MAX_INPUT: usize = crate::files::MAX_MAIL as usize;

/// The settings for a command run from this command line (`--config`, `--token`, `--key`).
pub fn setup(g: &Global) -> Result<Setup, Failure> {
    let mut s = Setup::load(g.config.as_deref(), g.token.as_deref(), g.key.as_deref())?;
    if g.revocation.is_some() {
        s.config.revocation = g.revocation;
    }
    Ok(s)
}

/// PIN sources in order of preference: an explicit --pin-fd (the caller chose it), pinentry when
/// configured, else the terminal.
pub fn prompt(g: &Global, config: &Config, io: Option<&InOut>) -> Result<Box<dyn PinPrompt>, Failure> {
    if let Some(fd) = g.pin_fd {
        if fd == 0 && io.is_some_and(|io| io.input.is_none()) {
            return Err(Failure::new(Exit::Usage, crate::tr!("cli-pin-fd-stdin")));
        }
        return Ok(Box::new(FdPin::new(fd)));
    }
    Ok(match config.pin_source {
        PinSource::Pinentry => Box::new(PinentryPin { program: config.pinentry_program.clone(), client: None }),
        PinSource::Terminal => Box::new(TtyPin),
    })
}

/// The mail: `--in FILE` or standard input, at most `MAX_INPUT` bytes. `--in` may name a pipe
/// (`--in <(…)`, a FIFO) as standard input may be one; a device or a directory is refused.
pub fn read_input(io: &InOut) -> Result<Vec<u8>, Failure> {
    let Some(p) = &io.input else {
        let mut buf = Vec::new();
        files::read_stream(std::io::stdin().lock(), files::MAX_MAIL, &mut buf)
            .map_err(|e| Failure::new(Exit::Io, crate::tr!("cli-cannot-read-stdin", error = e.to_string())))?;
        if buf.len() as u64 > files::MAX_MAIL {
            return Err(too_large());
        }
        return Ok(buf);
    };
    read_opened_input(open_input(p)?, p)
}

/// The rest of `read_input`, for a caller that has opened `--in` itself.
pub fn read_opened_input(f: std::fs::File, p: &Path) -> Result<Vec<u8>, Failure> {
    files::read_limited(f, files::MAX_MAIL)
        .map_err(|source| Failure::from(files::ReadError::Io { path: p.to_path_buf(), source }))?
        .ok_or_else(too_large)
}

fn too_large() -> Failure {
    Failure::new(Exit::Usage, crate::tr!("cli-input-too-large", limit = files::size(files::MAX_MAIL)))
}

/// `--in FILE` opened for reading: a regular file or a pipe, nothing else.
pub fn open_input(p: &Path) -> Result<std::fs::File, Failure> {
    use std::os::unix::fs::FileTypeExt;
    let io = |source| Failure::from(files::ReadError::Io { path: p.to_path_buf(), source });
    // A blocking open: a FIFO named here is meant to be waited for, as `cat` would.
    let f = std::fs::File::open(p).map_err(io)?;
    let t = f.metadata().map_err(io)?.file_type();
    if t.is_file() || t.is_fifo() {
        return Ok(f);
    }
    match files::open_regular(p) {
        Err(e) => Err(e.into()),
        Ok(_) => Err(io(std::io::Error::other("changed while it was opened"))),
    }
}

/// A file named by an option (`--content`, `--attach`, a key): a regular file of at most `limit`.
pub fn read_file(p: &Path, limit: u64) -> Result<Vec<u8>, Failure> {
    Ok(files::read_regular(p, limit)?)
}

/// Write to --out atomically (temp file in the same directory, then rename), or to stdout.
pub fn write_output(io: &InOut, data: &[u8]) -> Result<(), Failure> {
    write_output_pieces(io, &[data])
}

/// `--out` names something that is there and is not a file (`/dev/null`, a FIFO, a terminal):
/// written into, never renamed over (that would put a regular file in a device's place).
pub fn writes_in_place(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| !m.is_file() && !m.is_dir())
}

pub fn write_output_pieces(io: &InOut, pieces: &[&[u8]]) -> Result<(), Failure> {
    match &io.output {
        // "-": standard output, for commands that print nothing there unless asked (verify).
        Some(path) if path.as_os_str() == "-" => write_stdout(pieces),
        Some(path) if writes_in_place(path) => {
            let mut f = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| output_failure(path, &e))?;
            pieces.iter().try_for_each(|p| f.write_all(p)).map_err(|e| output_failure(path, &e))
        }
        Some(path) => {
            let mut tmp = output_temp(path)?;
            for p in pieces {
                tmp.write_all(p).map_err(|e| output_failure(path, &e))?;
            }
            persist_output(tmp, path)
        }
        None => write_stdout(pieces),
    }
}

fn output_failure(path: &Path, e: &dyn std::fmt::Display) -> Failure {
    Failure::new(Exit::Io, crate::tr!("cli-cannot-write", path = path, error = e.to_string()))
}

/// The temp file an --out file is written as (same directory, so the rename is atomic).
pub fn output_temp(path: &Path) -> Result<tempfile::NamedTempFile, Failure> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    tempfile::Builder::new().prefix(".ssmax-card-").tempfile_in(dir).map_err(|e| output_failure(path, &e))
}

/// Make the finished temp file the --out file: on disk first, then renamed over it.
pub fn persist_output(tmp: tempfile::NamedTempFile, path: &Path) -> Result<(), Failure> {
    tmp.as_file().sync_all().map_err(|e| output_failure(path, &e))?;
    tmp.persist(path).map_err(|e| output_failure(path, &e.error))?;
    Ok(())
}

fn write_stdout(pieces: &[&[u8]]) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    pieces
        .iter()
        .try_for_each(|p| out.write_all(p))
        .and_then(|_| out.flush())
        .map_err(|e| Failure::new(Exit::Io, crate::tr!("cli-cannot-write-stdout", error = e.to_string())))
}
