//! The client side: what the CLI uses to reach a running agent.

use super::protocol::{read_message, write_message_with_fds, ClientEnv, ProtocolError, Request, Response};
use std::os::fd::BorrowedFd;
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
        None => PathBuf::from(format!("/tmp/ssmax-card-{}", crate::platform::uid())).join("agent.sock"),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{}", crate::tr!("agent-unreachable", path = .path, reason = .reason))]
    Unreachable { path: String, reason: String },
    #[error("{}", crate::tr!("agent-broke-off", path = .path, reason = .reason))]
    Broken { path: String, reason: String },
    /// The socket's listener runs as another user: someone else's process, not our agent.
    #[error("{}", crate::tr!("agent-not-ours", path = .path, uid = *.uid))]
    NotOurs { path: String, uid: u32 },
}

/// How long a client waits for room in the agent's queue of new connections.
const CONNECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);

/// Connect to the agent at `path`, and make sure it is ours before a byte is sent: the listener
/// must run as this user (SO_PEERCRED). A socket under /tmp can be made first by anyone.
pub fn connect(path: &Path) -> Result<UnixStream, ClientError> {
    let stream = connect_any(path)?;
    let peer = crate::platform::peer_of(&stream)
        .map_err(|e| ClientError::Unreachable { path: path.display().to_string(), reason: e.to_string() })?;
    if peer.uid != crate::platform::uid() {
        return Err(ClientError::NotOurs { path: path.display().to_string(), uid: peer.uid });
    }
    Ok(stream)
}

fn connect_any(path: &Path) -> Result<UnixStream, ClientError> {
    crate::platform::connect_unix(path, CONNECT_PATIENCE).map_err(|e| {
        let reason = match e.kind() {
            std::io::ErrorKind::WouldBlock => {
                crate::tr!("agent-queue-full", seconds = CONNECT_PATIENCE.as_secs())
            }
            _ => e.to_string(),
        };
        ClientError::Unreachable { path: path.display().to_string(), reason }
    })
}

/// One request, one response; `fds` travel with the request (see `Request::body_in_fd`).
pub fn call(
    stream: &mut UnixStream,
    path: &Path,
    req: &Request,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(Response, Vec<u8>), ClientError> {
    let broken = |e: ProtocolError| ClientError::Broken { path: path.display().to_string(), reason: e.to_string() };
    if let Err(e) = write_message_with_fds(stream, req, body, fds) {
        // The agent may have answered (a refusal) and closed before reading us: read that first.
        return read_message::<Response>(stream).map_err(|_| broken(e));
    }
    read_message::<Response>(stream).map_err(broken)
}

/// How long a request the agent could not take (it was restarting) is re-sent.
const RETRY_BUDGET: std::time::Duration = std::time::Duration::from_secs(10);

/// `call`, then, while the agent answers that the request never reached the token (it is
/// restarting after a hung card: `retry_after_ms`), the same request again on a new connection,
/// for at most 10 s. Nothing else is ever re-sent, and no PIN has been asked for such a request
/// (nor anything written to a reply descriptor: the agent writes those from offset 0).
pub fn call_retrying(
    stream: &mut UnixStream,
    path: &Path,
    req: &Request,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(Response, Vec<u8>), ClientError> {
    let (mut resp, mut out) = call(stream, path, req, body, fds)?;
    let mut waited = std::time::Duration::ZERO;
    while let Some(ms) = resp.retry_after_ms.filter(|_| !resp.ok && waited < RETRY_BUDGET) {
        let pause = std::time::Duration::from_millis(ms.clamp(10, 2_000));
        std::thread::sleep(pause);
        waited += pause;
        // The old image may close a connection as it is replaced: that, too, is "not yet".
        let Ok(mut again) = connect(path) else { continue };
        match call(&mut again, path, req, body, fds) {
            Ok(r) => (resp, out) = r,
            Err(e) if waited >= RETRY_BUDGET => return Err(e),
            Err(_) => continue,
        }
    }
    Ok((resp, out))
}

/// Where the user is, so the agent's pinentry appears on their terminal or display.
pub fn client_env() -> ClientEnv {
    let tty = crate::platform::terminal_name();
    ClientEnv {
        tty,
        term: std::env::var("TERM").ok(),
        display: std::env::var("DISPLAY").ok(),
        wayland_display: std::env::var("WAYLAND_DISPLAY").ok(),
        lang: Some(crate::l10n::current().tag().to_string()),
    }
}
