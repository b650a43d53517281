//! The client side: what the CLI uses to reach a running agent.

use super::protocol::{read_message, write_message, ProtocolError, Request, Response};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

/// `--socket`, else $SSMAX_CARD_SOCKET, else $XDG_RUNTIME_DIR/ssmax-card/agent.sock, else a
/// per-user directory under /tmp.
pub fn socket_path(explicit: Option<&Path>) -> PathBuf {
    if let Some(p) = explicit {
        return p.to_path_buf();
    }
    if let Some(p) = std::env::var_os("SSMAX_CARD_SOCKET").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let base = directories::BaseDirs::new().and_then(|b| b.runtime_dir().map(Path::to_path_buf));
    match base {
        Some(dir) => dir.join("ssmax-card").join("agent.sock"),
        // SAFETY: getuid cannot fail.
        None => PathBuf::from(format!("/tmp/ssmax-card-{}", unsafe { libc::getuid() })).join("agent.sock"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the agent at {path} is not reachable ({reason}); start it with 'ssmax-card agent' or use --agent never")]
    Unreachable { path: String, reason: String },
    #[error("the agent at {path} broke off the request ({reason}); it may have stopped — run the command again")]
    Broken { path: String, reason: String },
}

pub fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    UnixStream::connect(path).map_err(|e| ClientError::Unreachable { path: path.display().to_string(), reason: e.to_string() })
}

/// One request, one response.
pub fn call(stream: &mut UnixStream, path: &Path, req: &Request, body: &[u8]) -> Result<(Response, Vec<u8>), ClientError> {
    let broken = |e: ProtocolError| ClientError::Broken { path: path.display().to_string(), reason: e.to_string() };
    if let Err(e) = write_message(stream, req, body) {
        // The agent may have answered (a refusal) and closed before reading us: read that first.
        return read_message::<Response>(stream).map_err(|_| broken(e));
    }
    read_message::<Response>(stream).map_err(broken)
}
