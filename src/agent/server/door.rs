//! The front door of the agent's socket: the listener (our own re-exec's, systemd's or a new
//! one) and the connections it turns away, answered by one thread.

use super::*;

/// The socket handed over by our own re-exec (see watchdog.rs), or by systemd socket activation
/// (sd_listen_fds: fd 3 when LISTEN_PID is us and LISTEN_FDS is 1).
pub(super) fn activated_listener() -> Option<UnixListener> {
    if let Some(fd) = std::env::var(watchdog::LISTEN_FD_VAR).ok().and_then(|v| v.parse::<i32>().ok()) {
        std::env::remove_var(watchdog::LISTEN_FD_VAR);
        // SAFETY: our previous image left this listening socket open for us under that number.
        let l = unsafe { UnixListener::from_raw_fd(fd) };
        // Closed on any further exec (the probe children must not inherit it).
        let _ = crate::platform::set_close_on_exec(&l, true);
        return Some(l);
    }
    let pid: u32 = std::env::var("LISTEN_PID").ok()?.parse().ok()?;
    let fds: u32 = std::env::var("LISTEN_FDS").ok()?.parse().ok()?;
    if pid != std::process::id() || fds != 1 {
        return None;
    }
    std::env::remove_var("LISTEN_PID");
    std::env::remove_var("LISTEN_FDS");
    std::env::remove_var("LISTEN_FDNAMES");
    // SAFETY: systemd passed us this listening socket as fd 3 and nothing else owns it.
    let l = unsafe { UnixListener::from_raw_fd(3) };
    // systemd hands it over inheritable: the module workers and probes must not get it.
    let _ = crate::platform::set_close_on_exec(&l, true);
    Some(l)
}

pub(super) fn bind(socket: &Path) -> Result<UnixListener, Failure> {
    let fail = |what: String, e: std::io::Error| Failure::new(Exit::Io, format!("{what}: {e}"));
    // Only this user may even look up the socket: a directory someone else made first (under
    // /tmp anyone can) would let them replace the socket, or listen in its place.
    if let Some(dir) = socket.parent().filter(|d| !d.as_os_str().is_empty()) {
        use crate::platform::NotPrivate;
        let dir_name = dir.display().to_string();
        crate::platform::private_dir(dir).map_err(|e| match e {
            NotPrivate::Io(e) => fail(crate::tr!("agent-socket-mkdir", socket = socket), e),
            NotPrivate::Symlink => Failure::new(Exit::Usage, crate::tr!("agent-socket-dir-symlink", dir = dir_name)),
            NotPrivate::NotADirectory => {
                Failure::new(Exit::Usage, crate::tr!("agent-socket-dir-not-dir", dir = dir_name))
            }
            NotPrivate::Owner(uid) => {
                Failure::new(Exit::Usage, crate::tr!("agent-socket-dir-not-ours", dir = dir_name, uid = uid))
            }
            NotPrivate::Open(mode) => Failure::new(
                Exit::Usage,
                crate::tr!("agent-socket-dir-open", dir = dir_name, mode = format!("{mode:o}")),
            ),
        })?;
    }
    if socket.exists() {
        // A full queue is somebody listening too: never take the socket from a busy agent.
        let probe = crate::platform::connect_unix(socket, std::time::Duration::ZERO);
        if probe.is_ok() || probe.is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock) {
            return Err(Failure::new(Exit::Usage, crate::tr!("agent-already-listening", socket = socket)));
        }
        std::fs::remove_file(socket).map_err(|e| fail(crate::tr!("agent-socket-stale", socket = socket), e))?;
    }
    let l = UnixListener::bind(socket).map_err(|e| fail(crate::tr!("agent-socket-listen", socket = socket), e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| fail(crate::tr!("agent-socket-protect", socket = socket), e))?;
    Ok(l)
}

/// Read and drop what a client sends until it closes or `deadline` passes.
pub(super) fn drain_until(stream: &UnixStream, deadline: Instant) {
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            return;
        }
        match std::io::Read::read(&mut &*stream, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

pub(super) const TURN_AWAY_QUEUE: usize = 64;

impl TurnAway {
    pub(super) fn start() -> Result<TurnAway, Failure> {
        let (tx, rx) = mpsc::sync_channel::<(UnixStream, Owed, Response)>(TURN_AWAY_QUEUE);
        std::thread::Builder::new()
            .name("turn-away".into())
            .spawn(move || {
                for (mut stream, _owed, answer) in rx {
                    let _ = stream.set_write_timeout(Some(Duration::from_millis(200)));
                    let _ = write_message(&mut stream, &answer, &[]);
                    // Close gently so the answer is read, not lost to a reset (the client may
                    // have sent its request already); never longer than a moment in all.
                    let _ = stream.shutdown(std::net::Shutdown::Write);
                    drain_until(&stream, Instant::now() + Duration::from_millis(200));
                }
            })
            .map_err(|e| Failure::new(Exit::Io, crate::tr!("agent-cannot-start", error = e.to_string())))?;
        Ok(TurnAway(tx))
    }

    pub(super) fn refuse(&self, stream: UnixStream, owed: Owed, answer: Response) {
        let _ = self.0.try_send((stream, owed, answer));
    }
}
