//! The operating system, behind one narrow interface: process hardening and signals, connecting
//! to a Unix socket and who is on its other end, descriptor flags, the terminal and the login
//! name. rustix where it offers the call safely; libc only where it does not (signal
//! dispositions, the password database). A port to another system starts here.
//!
//! One-shot commands behave like other Unix filters: a closed output pipe ends them quietly
//! (`ssmax-card verify … | head`). A server must not: a client that sends a request and goes
//! away before reading the answer would otherwise kill the agent or the SMTP front door for
//! everyone (SIGPIPE, exit 141). Servers ignore SIGPIPE, so such a write fails with EPIPE and
//! ends that one connection.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

/// A PIN passes through this process's memory: keep it out of core files and away from
/// same-user debuggers; a closed pipe ends a one-shot command quietly.
pub fn harden() {
    // SAFETY: setting a signal's disposition to its default installs no handler and touches no
    // memory.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let none = rustix::process::Rlimit { current: Some(0), maximum: Some(0) };
    let _ = rustix::process::setrlimit(rustix::process::Resource::Core, none);
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}

/// For long-running servers (agent, SMTP front door): a peer that vanishes costs its own
/// connection only; writes to it fail with EPIPE instead of killing the process.
pub fn survive_vanished_peers() {
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler and touches no
    // memory; it is process-wide, which is what a server wants.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
}

/// This process's user id.
pub fn uid() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The process and user on the other end of a Unix stream socket (SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub pid: i32,
    pub uid: u32,
}

pub fn peer_of(socket: impl AsFd) -> std::io::Result<Peer> {
    let cred = rustix::net::sockopt::socket_peercred(socket)?;
    Ok(Peer { pid: cred.pid.as_raw_nonzero().get(), uid: cred.uid.as_raw() })
}

/// Raise this process's soft limit on open descriptors towards `wanted`, as far as the hard
/// limit allows; returns the limit now in force.
pub fn allow_descriptors(wanted: u64) -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut lim = getrlimit(Resource::Nofile);
    let cur = lim.current.unwrap_or(u64::MAX);
    if cur >= wanted {
        return cur;
    }
    let to = lim.maximum.map_or(wanted, |max| wanted.min(max));
    lim.current = Some(to);
    match setrlimit(Resource::Nofile, lim) {
        Ok(()) => to,
        Err(_) => cur,
    }
}

/// Whether `fd` is closed when this process executes another program.
pub fn set_close_on_exec(fd: impl AsFd, close: bool) -> std::io::Result<()> {
    let flags = if close { rustix::io::FdFlags::CLOEXEC } else { rustix::io::FdFlags::empty() };
    Ok(rustix::io::fcntl_setfd(fd, flags)?)
}

/// The terminal on standard error, output or input, if any (so pinentry can ask there).
/// ttyname_r, not ttyname: the agent's clients run this from many threads.
pub fn terminal_name() -> Option<String> {
    [std::io::stderr().as_fd(), std::io::stdout().as_fd(), std::io::stdin().as_fd()]
        .into_iter()
        .filter(|fd| rustix::termios::isatty(fd))
        .find_map(|fd| rustix::termios::ttyname(fd, Vec::new()).ok())
        .map(|name| name.to_string_lossy().into_owned())
}

/// The login name (the password database, else $USER).
pub fn login_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is copied at once
    // and this runs before the front door starts threads.
    let from_passwd = unsafe {
        let pw = libc::getpwuid(libc::getuid());
        (!pw.is_null() && !(*pw).pw_name.is_null())
            .then(|| std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    };
    from_passwd.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "user".into())
}

/// Connect to the Unix stream socket at `path`, waiting at most `patience` for room in its queue
/// of new connections. A blocking connect would wait for ever on a listener that stopped
/// accepting, and some kernels answer a full queue with EAGAIN even to a blocking socket: a
/// non-blocking connect, tried again until `patience` runs out, behaves the same everywhere.
/// A queue still full then is `ErrorKind::WouldBlock`: somebody listens but takes nobody in.
pub fn connect_unix(path: &Path, patience: Duration) -> std::io::Result<UnixStream> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let addr = SocketAddrUnix::new(path)?;
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    let deadline = Instant::now() + patience;
    let mut pause = Duration::from_millis(1);
    loop {
        match rustix::net::connect(&sock, &addr) {
            Ok(()) => break,
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Err(std::io::ErrorKind::WouldBlock.into());
                }
                std::thread::sleep(pause.min(left));
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Err(e) => return Err(e.into()),
        }
    }
    // A Unix stream connect completes at once or not at all: nothing is in progress here.
    rustix::io::ioctl_fionbio(&sock, false)?;
    Ok(UnixStream::from(sock))
}

/// Why a directory is not this user's private one.
#[derive(Debug)]
pub enum NotPrivate {
    /// It is a symbolic link (to wherever its maker chose).
    Symlink,
    NotADirectory,
    /// It belongs to this user id.
    Owner(u32),
    /// Group or others have these permission bits on it.
    Open(u32),
    Io(std::io::Error),
}

/// Make `dir` (mode 0700, its parents as needed) unless it exists, then check that it is this
/// user's own, private directory: not a symbolic link, owned by this uid, no access for group or
/// others. Nothing is changed on a directory that exists: one made by someone else stays theirs,
/// and is refused.
pub fn private_dir(dir: &Path) -> Result<(), NotPrivate> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent).map_err(NotPrivate::Io)?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(NotPrivate::Io(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(NotPrivate::Io)?;
    if meta.file_type().is_symlink() {
        return Err(NotPrivate::Symlink);
    }
    if !meta.is_dir() {
        return Err(NotPrivate::NotADirectory);
    }
    if meta.uid() != uid() {
        return Err(NotPrivate::Owner(meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return Err(NotPrivate::Open(meta.mode() & 0o777));
    }
    Ok(())
}

/// Close every descriptor from 3 up, for a process that must hold nothing it inherited by
/// mistake (a module worker: a socket handed over without close-on-exec, by systemd or by the
/// agent's own re-exec racing a worker's start, is the agent's and not the module's). Then
/// standard input, `keep`'s descriptor before, is /dev/null.
pub fn keep_only(keep: std::os::fd::OwnedFd) -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::AsRawFd;
    // From 3 up: on 0-2 the copy would be lost to the /dev/null below.
    let kept = rustix::io::fcntl_dupfd_cloexec(&keep, 3)?;
    drop(keep);
    let at = kept.as_raw_fd();
    for (from, to) in [(3, at - 1), (at + 1, i32::MAX)] {
        if from > to {
            continue;
        }
        // SAFETY: closes descriptors only; nothing in this process uses any of them (the
        // worker calls this first, before it opens a file or starts a thread).
        if unsafe { libc::close_range(from as u32, to as u32, 0) } != 0 {
            // A kernel before 5.9: each descriptor still open, one by one.
            let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd >= from && fd <= to)
                .collect();
            for fd in open {
                // SAFETY: as above; the directory's own descriptor may be among them, closed
                // already by its drop, and closing a closed one only fails.
                unsafe { libc::close(fd) };
            }
        }
    }
    let null = std::fs::File::open("/dev/null")?;
    rustix::stdio::dup2_stdin(&null)?;
    Ok(kept)
}

/// The most descriptors one message may carry here, in either direction.
pub const MAX_DESCRIPTORS: usize = 32;

/// Send `slices` with `fds` attached to the first byte (SCM_RIGHTS), never raising SIGPIPE.
/// Returns how many bytes went; the caller sends the rest plainly.
pub fn send_with_descriptors(
    sock: &UnixStream,
    slices: &[IoSlice<'_>],
    fds: &[BorrowedFd<'_>],
) -> std::io::Result<usize> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_DESCRIPTORS))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if fds.len() > MAX_DESCRIPTORS || (!fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds))) {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "descriptors do not fit"));
    }
    Ok(sendmsg(sock, slices, &mut control, SendFlags::NOSIGNAL)?)
}

/// Send what the socket takes at once (WouldBlock when it takes nothing), never raising
/// SIGPIPE; the socket itself stays blocking for the threads that write to it.
pub fn send_now(sock: &UnixStream, bytes: &[u8]) -> std::io::Result<usize> {
    use rustix::net::{send, SendFlags};
    Ok(send(sock, bytes, SendFlags::DONTWAIT | SendFlags::NOSIGNAL)?)
}

/// `send_now` of several slices in one call.
pub fn send_vectored_now(sock: &UnixStream, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
    use rustix::net::{sendmsg, SendAncillaryBuffer, SendFlags};
    Ok(sendmsg(sock, bufs, &mut SendAncillaryBuffer::default(), SendFlags::DONTWAIT | SendFlags::NOSIGNAL)?)
}

/// Wait until `sock` can take more bytes, for at most `limit`; false when it could not in time.
pub fn wait_writable(sock: &UnixStream, limit: std::time::Duration) -> std::io::Result<bool> {
    wait_for(sock, rustix::event::PollFlags::OUT, limit)
}

/// Wait until `sock` has something to read (or was closed), for at most `limit`.
pub fn wait_readable(sock: &UnixStream, limit: std::time::Duration) -> std::io::Result<bool> {
    wait_for(sock, rustix::event::PollFlags::IN, limit)
}

/// false when the wait ran out, or a signal cut it short.
fn wait_for(sock: &UnixStream, flags: rustix::event::PollFlags, limit: std::time::Duration) -> std::io::Result<bool> {
    use rustix::event::{poll, PollFd, Timespec};
    let t = Timespec { tv_sec: limit.as_secs() as i64, tv_nsec: i64::from(limit.subsec_nanos()) };
    let mut fds = [PollFd::new(sock, flags)];
    match poll(&mut fds, Some(&t)) {
        Ok(n) => Ok(n > 0),
        Err(rustix::io::Errno::INTR) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A socket read that gives up at a deadline, however the bytes are spread out: a client that
/// sends one byte a minute gets no longer than one that sends nothing.
pub struct ReadUntil<'s> {
    pub sock: &'s UnixStream,
    pub deadline: std::time::Instant,
}

impl ReadUntil<'_> {
    /// Arm the socket's receive timeout with what is left; Err once nothing is.
    pub fn arm(&self) -> std::io::Result<()> {
        let left = self.deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.sock.set_read_timeout(Some(left))
    }
}

impl std::io::Read for ReadUntil<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.arm()?;
        std::io::Read::read(&mut &*self.sock, buf)
    }
}

/// A socket write that gives up at a deadline, however slowly the reader takes the bytes: a
/// client that reads a byte a minute holds its writer no longer than one that reads nothing.
/// (The socket's own send timeout starts again with each piece the kernel finds room for.)
pub struct WriteUntil<'s> {
    pub sock: &'s UnixStream,
    pub deadline: std::time::Instant,
}

impl WriteUntil<'_> {
    fn send(&self, send: impl Fn() -> std::io::Result<usize>) -> std::io::Result<usize> {
        loop {
            match send() {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                r => return r,
            }
            let left = self.deadline.saturating_duration_since(std::time::Instant::now());
            // A wait cut short (a signal) just goes round again.
            let ready = !left.is_zero() && wait_writable(self.sock, left)?;
            if !ready && std::time::Instant::now() >= self.deadline {
                return Err(std::io::ErrorKind::TimedOut.into());
            }
        }
    }
}

impl std::io::Write for WriteUntil<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.send(|| send_now(self.sock, buf))
    }

    fn write_vectored(&mut self, bufs: &[std::io::IoSlice<'_>]) -> std::io::Result<usize> {
        self.send(|| send_vectored_now(self.sock, bufs))
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What one receive brought: bytes, the descriptors that rode on them (close-on-exec), and
/// whether the kernel had to drop descriptors that did not fit.
pub struct Received {
    pub bytes: usize,
    pub fds: Vec<OwnedFd>,
    pub truncated: bool,
}

/// Receive into `buf`, with room for up to `MAX_DESCRIPTORS` passed alongside.
pub fn recv_with_descriptors(sock: &UnixStream, buf: &mut [u8]) -> std::io::Result<Received> {
    receive(sock, buf, rustix::net::RecvFlags::empty())
}

/// `recv_with_descriptors` that takes only what has come (WouldBlock when nothing has), on a
/// socket others use blocking: the flag is this call's, not the socket's.
pub fn recv_with_descriptors_now(sock: &UnixStream, buf: &mut [u8]) -> std::io::Result<Received> {
    receive(sock, buf, rustix::net::RecvFlags::DONTWAIT)
}

fn receive(sock: &UnixStream, buf: &mut [u8], flags: rustix::net::RecvFlags) -> std::io::Result<Received> {
    use rustix::net::{recvmsg, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags};
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(MAX_DESCRIPTORS))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let msg = recvmsg(sock, &mut [IoSliceMut::new(buf)], &mut control, flags | RecvFlags::CMSG_CLOEXEC)?;
    let mut fds = Vec::new();
    for m in control.drain() {
        if let RecvAncillaryMessage::ScmRights(received) = m {
            fds.extend(received);
        }
    }
    Ok(Received { bytes: msg.bytes, fds, truncated: msg.flags.contains(ReturnFlags::CTRUNC) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    /// A listener whose queue of new connections holds one, filled and not accepted.
    fn full_listener(dir: &Path) -> (std::path::PathBuf, OwnedFd, UnixStream) {
        use rustix::net::{AddressFamily, SocketAddrUnix, SocketType};
        let path = dir.join("full.sock");
        let l = rustix::net::socket(AddressFamily::UNIX, SocketType::STREAM, None).unwrap();
        rustix::net::bind(&l, &SocketAddrUnix::new(&path).unwrap()).unwrap();
        rustix::net::listen(&l, 0).unwrap();
        let first = UnixStream::connect(&path).unwrap();
        (path, l, first)
    }

    #[test]
    fn connect_waits_for_room_in_a_full_queue_and_gets_in_once_the_listener_accepts() {
        let dir = tempfile::tempdir().unwrap();
        let (path, listener, _first) = full_listener(dir.path());
        let listener = UnixListener::from(listener);
        let acceptor = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(200));
            let a = listener.accept().unwrap().0;
            let b = listener.accept().unwrap().0;
            (a, b)
        });
        let mut s = connect_unix(&path, Duration::from_secs(30)).unwrap();
        let (_a, mut b) = acceptor.join().unwrap();
        // It is an ordinary blocking stream once in.
        std::io::Write::write_all(&mut s, b"hello").unwrap();
        let mut got = [0u8; 5];
        std::io::Read::read_exact(&mut b, &mut got).unwrap();
        assert_eq!(&got, b"hello");
        assert!(!rustix::fs::fcntl_getfl(&s).unwrap().contains(rustix::fs::OFlags::NONBLOCK));
    }

    #[test]
    fn connect_to_a_queue_that_stays_full_gives_up_with_would_block_after_its_patience() {
        let dir = tempfile::tempdir().unwrap();
        let (path, _listener, _first) = full_listener(dir.path());
        let start = Instant::now();
        let e = connect_unix(&path, Duration::from_millis(300)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::WouldBlock, "{e}");
        assert!(start.elapsed() >= Duration::from_millis(300), "{:?}", start.elapsed());
    }

    #[test]
    fn connect_to_no_socket_or_one_nobody_listens_on_fails_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.sock");
        let e = connect_unix(&missing, Duration::from_secs(30)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::NotFound, "{e}");
        let stale = dir.path().join("stale.sock");
        drop(UnixListener::bind(&stale).unwrap());
        let e = connect_unix(&stale, Duration::from_secs(30)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    }
}
