//! The listening side: socket (or systemd socket activation), peer credentials, one connection
//! thread per client, and the token worker that runs requests one at a time.

use super::audit::AuditLog;
use super::watchdog::{self, Owed, Watchdog};
use super::protocol::{read_message_with_fds, write_message, ProtocolError, Request, Response, MAX_BODY, VERSION};
use super::{AgentConfig, PinCache};
use crate::cli::common::Setup;
use crate::cli::ctx::{Ctx, Parts};
use crate::cli::Global;
use crate::error::{Exit, Failure};
use crate::token::pin::{PinPrompt, PinRequest, PinentryPin};
use crate::token::uri::Pkcs11Uri;
use crate::token::presence::Readers;
use crate::token::{Token, TokenError};
use secrecy::SecretString;
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

type Events = Arc<Mutex<Vec<mpsc::Sender<Response>>>>;
type Reply = mpsc::Sender<(Response, Vec<u8>)>;
/// The request the worker is running now: the watchdog answers it if the token hangs.
type Current = Arc<Mutex<Option<(u64, Reply)>>>;
/// The worker's queue, shared so the watchdog can answer what waits behind a hung call.
type Queue = Arc<Mutex<Receiver<Job>>>;

/// A poisoned lock here only means another thread panicked mid-update of plain data; the data is
/// still what we need to answer clients, so go on with it rather than give up.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Who is on the other end of a connection (SO_PEERCRED).
#[derive(Debug, Clone, Copy)]
struct Peer {
    pid: i32,
    uid: u32,
}

/// One audit entry on its way to the audit thread.
struct AuditEntry {
    op: String,
    pid: Option<i32>,
    exe: Option<String>,
    body_digest: [u8; 32],
    key: Option<String>,
    result: String,
}

enum AuditMsg {
    Entry(AuditEntry),
    /// Write out what came before, then stop (the agent is about to re-exec).
    Close(mpsc::Sender<()>),
}

struct Job {
    req: Request,
    body: Vec<u8>,
    /// SHA-256 of the body for the audit log, taken on the client's connection thread: clients
    /// hash in parallel, the one token worker never does.
    body_digest: [u8; 32],
    peer: Peer,
    reply: Reply,
    /// Where the command's product goes when the client passed a file for it.
    reply_file: Option<File>,
}

fn peer_of(stream: &UnixStream) -> std::io::Result<Peer> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `cred`, a plain C struct we own.
    let rc = unsafe { libc::getsockopt(stream.as_raw_fd(), libc::SOL_SOCKET, libc::SO_PEERCRED, &mut cred as *mut _ as *mut libc::c_void, &mut len) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Peer { pid: cred.pid, uid: cred.uid })
}

/// The socket handed over by our own re-exec (see watchdog.rs), or by systemd socket activation
/// (sd_listen_fds: fd 3 when LISTEN_PID is us and LISTEN_FDS is 1).
fn activated_listener() -> Option<UnixListener> {
    if let Some(fd) = std::env::var(watchdog::LISTEN_FD_VAR).ok().and_then(|v| v.parse::<i32>().ok()) {
        std::env::remove_var(watchdog::LISTEN_FD_VAR);
        // SAFETY: our previous image left this listening socket open for us under that number.
        let l = unsafe { UnixListener::from_raw_fd(fd) };
        // Closed on any further exec (the probe children must not inherit it).
        // SAFETY: fcntl on the descriptor we now own.
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
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
    Some(unsafe { UnixListener::from_raw_fd(3) })
}

fn bind(socket: &Path) -> Result<UnixListener, Failure> {
    let fail = |what: &str, e: std::io::Error| Failure::new(Exit::Io, format!("{what} {}: {e}", socket.display()));
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory of", e))?;
        // Only this user may even look up the socket.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(|e| fail("cannot protect the directory of", e))?;
    }
    if socket.exists() {
        if UnixStream::connect(socket).is_ok() {
            return Err(Failure::new(Exit::Usage, format!("an agent is already listening on {}", socket.display())));
        }
        std::fs::remove_file(socket).map_err(|e| fail("cannot remove the stale socket", e))?;
    }
    let l = UnixListener::bind(socket).map_err(|e| fail("cannot listen on", e))?;
    std::fs::set_permissions(socket, std::fs::Permissions::from_mode(0o600)).map_err(|e| fail("cannot protect", e))?;
    Ok(l)
}

pub struct AgentArgs {
    pub socket: PathBuf,
    pub audit_log: Option<PathBuf>,
}

pub fn run(g: &Global, setup: Setup, a: AgentArgs) -> Result<(), Failure> {
    let cfg = setup.config.agent.clone();
    let listener = match activated_listener() {
        Some(l) => l,
        None => bind(&a.socket)?,
    };
    let audit_path = a.audit_log.or_else(|| cfg.audit_log.clone()).or_else(default_audit_path);
    let audit = match &audit_path {
        Some(p) => Some(AuditLog::open(p).map_err(|e| Failure::new(Exit::Io, format!("audit log: {e}")))?),
        None => None,
    };
    // The audit log has its own thread: the token worker hands it each entry and goes on, instead
    // of waiting for the fsync. Entries keep their order and chain; a power cut can lose the last
    // few, which `audit verify` then reports as a cut-off end, never as an altered one.
    let audit = audit.map(|mut log| {
        let (atx, arx) = mpsc::channel::<AuditMsg>();
        let _ = std::thread::Builder::new().name("audit".into()).spawn(move || {
            for m in arx {
                match m {
                    AuditMsg::Entry(e) => {
                        if let Err(err) = log.append_digest(&e.op, e.pid, e.exe, e.body_digest, e.key, &e.result) {
                            eprintln!("ssmax-card agent: audit log: {err}");
                        }
                    }
                    AuditMsg::Close(done) => {
                        drop(log);
                        let _ = done.send(());
                        return;
                    }
                }
            }
        });
        atx
    });
    let (tx, rx) = mpsc::sync_channel::<Job>(cfg.queue_limit.max(1));
    let queue: Queue = Arc::new(Mutex::new(rx));
    let current: Current = Arc::new(Mutex::new(None));
    let dog = Watchdog::new(Duration::from_millis(cfg.token_timeout_ms.max(100)));
    let events: Events = Arc::new(Mutex::new(Vec::new()));
    let base = g.clone();
    let readers = Readers::watch();
    let w = Worker { queue: queue.clone(), current: current.clone(), dog: dog.clone(), audit: audit.clone(), events: events.clone() };
    std::thread::Builder::new()
        .name("token-worker".into())
        .spawn(move || worker(w, base, setup, cfg, readers))
        .map_err(|e| Failure::new(Exit::Io, format!("cannot start the token worker: {e}")))?;
    let (wdog, wevents, fd) = (dog.clone(), events.clone(), listener.as_raw_fd());
    let own_path = listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf));
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || watch_for_hangs(wdog, queue, current, audit, wevents, fd, own_path))
        .map_err(|e| Failure::new(Exit::Io, format!("cannot start the watchdog: {e}")))?;
    match std::env::var(watchdog::RESTARTS_VAR) {
        Ok(n) => eprintln!("ssmax-card agent: listening on {} (restart {n} after a hung token call)", a.socket.display()),
        Err(_) => eprintln!("ssmax-card agent: listening on {}", a.socket.display()),
    }
    // SAFETY: getuid cannot fail.
    let me = unsafe { libc::getuid() };
    loop {
        if dog.restarting.load(Ordering::SeqCst) {
            // The next image accepts from here on; the watchdog waits for this.
            dog.accept_parked.store(true, Ordering::SeqCst);
            loop {
                std::thread::park();
            }
        }
        let Ok((mut stream, _)) = listener.accept() else { continue };
        let owed = Owed::at_accept(&dog);
        let peer = match peer_of(&stream) {
            Ok(p) => p,
            Err(_) => continue,
        };
        if peer.uid != me {
            // In its own thread: a refused peer must not hold up the accept loop.
            let _ = std::thread::Builder::new().name("refuse".into()).spawn(move || {
                let _owed = owed;
                let refusal = Response { v: VERSION, ok: false, exit: Exit::Usage as u8, error: Some(format!("refused: this agent serves uid {me} only")), ..Default::default() };
                let _ = write_message(&mut stream, &refusal, &[]);
                // Close gently so the refusal is read, not lost to a reset; never wait long.
                let _ = stream.shutdown(std::net::Shutdown::Write);
                let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
                let _ = std::io::copy(&mut std::io::Read::take(&mut stream, 1 << 20), &mut std::io::sink());
            });
            continue;
        }
        let (tx, events, dog) = (tx.clone(), events.clone(), dog.clone());
        let _ = std::thread::Builder::new().name(format!("client-{}", peer.pid)).spawn(move || serve(stream, peer, tx, events, dog, owed));
    }
}

fn default_audit_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("jp", "SSMAX", "ssmax-card").map(|d| d.data_dir().join("audit.log"))
}

fn error_response(id: u64, exit: Exit, message: String) -> Response {
    Response { v: VERSION, id, ok: false, exit: exit as u8, error: Some(message), ..Default::default() }
}

/// For a request that never reached the token because the agent is restarting.
fn restarting_response(id: u64) -> Response {
    Response { retry_after_ms: Some(200), ..error_response(id, Exit::Busy, "busy: the agent is restarting after a token call hung; try again in a moment".into()) }
}

/// One client connection: requests in order; a client that goes away only ends this thread.
fn serve(mut stream: UnixStream, peer: Peer, queue: SyncSender<Job>, events: Events, dog: Arc<Watchdog>, mut owed: Owed) {
    loop {
        let (req, body, fds) = match read_message_with_fds::<Request>(&stream) {
            Ok(m) => {
                owed.owe();
                m
            }
            Err(ProtocolError::Closed) => return,
            Err(e) => {
                let _ = write_message(&mut stream, &error_response(0, Exit::Usage, format!("bad request: {e}")), &[]);
                return;
            }
        };
        if req.v != VERSION {
            let _ = write_message(&mut stream, &error_response(req.id, Exit::Usage, format!("protocol version {} is not {VERSION}", req.v)), &[]);
            return;
        }
        match req.method.as_str() {
            "ping" => {
                let r = Response { v: VERSION, id: req.id, ok: true, notes: vec![format!("ssmax-card agent {}", env!("CARGO_PKG_VERSION"))], ..Default::default() };
                let written = write_message(&mut stream, &r, &[]);
                owed.settle();
                if written.is_err() {
                    return;
                }
            }
            "subscribe" => {
                let (tx, rx) = mpsc::channel();
                if let Ok(mut subs) = events.lock() {
                    subs.push(tx);
                }
                let r = Response { v: VERSION, id: req.id, ok: true, ..Default::default() };
                let written = write_message(&mut stream, &r, &[]);
                // A subscriber waits for events, not answers: it does not hold up a restart.
                owed.settle();
                if written.is_err() {
                    return;
                }
                for ev in rx {
                    if write_message(&mut stream, &ev, &[]).is_err() {
                        return;
                    }
                }
                return;
            }
            _ => {
                let (rtx, rrx) = mpsc::channel();
                let id = req.id;
                let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 3_600_000));
                if dog.restarting.load(Ordering::SeqCst) {
                    let r = restarting_response(id);
                    let _ = write_message(&mut stream, &r, &[]);
                    return;
                }
                let (body, reply_file) = match passed_files(&req, body, fds) {
                    Ok(b) => b,
                    Err(msg) => {
                        let written = write_message(&mut stream, &error_response(id, Exit::Usage, msg), &[]);
                        owed.settle();
                        if written.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let body_digest = super::audit::body_digest(&body);
                let resp = match queue.try_send(Job { req, body, body_digest, peer, reply: rtx, reply_file }) {
                    Err(TrySendError::Full(_)) => (error_response(id, Exit::Busy, "busy: too many requests are waiting for the token; try again shortly".into()), Vec::new()),
                    Err(TrySendError::Disconnected(_)) => (error_response(id, Exit::Io, "the token worker has stopped; restart the agent".into()), Vec::new()),
                    Ok(()) => match rrx.recv_timeout(timeout) {
                        Ok(r) => r,
                        Err(RecvTimeoutError::Timeout) => (error_response(id, Exit::Io, format!("timed out after {} ms waiting for the token", timeout.as_millis())), Vec::new()),
                        Err(RecvTimeoutError::Disconnected) => (error_response(id, Exit::Io, "the token worker dropped the request".into()), Vec::new()),
                    },
                };
                let written = write_message(&mut stream, &resp.0, &resp.1);
                owed.settle();
                if written.is_err() {
                    return;
                }
            }
        }
    }
}

/// The body and the reply file a request passed as descriptors. Regular files only: a pipe or a
/// socket could hold this thread or the token worker for as long as its writer liked.
fn passed_files(req: &Request, body: Vec<u8>, fds: Vec<OwnedFd>) -> Result<(Vec<u8>, Option<File>), String> {
    let wanted = usize::from(req.body_in_fd) + usize::from(req.reply_in_fd);
    if fds.len() != wanted {
        return Err(format!("bad request: it names {wanted} file descriptor(s) and passed {}", fds.len()));
    }
    let regular = |f: File| -> Result<(File, u64), String> {
        let m = f.metadata().map_err(|e| format!("bad request: a passed file descriptor: {e}"))?;
        if !m.file_type().is_file() {
            return Err("bad request: a passed file descriptor is not a regular file".into());
        }
        Ok((f, m.len()))
    };
    // In this order: the body's file, then the reply's.
    let mut files = fds.into_iter().map(File::from);
    let body_file = if req.body_in_fd { files.next() } else { None };
    let reply_file = if req.reply_in_fd { files.next() } else { None };
    let body = match body_file {
        Some(f) => {
            if !body.is_empty() {
                return Err("bad request: a body both in the message and in a file descriptor".into());
            }
            let (f, len) = regular(f)?;
            if len > u64::from(MAX_BODY) {
                return Err(format!("body of {len} bytes is over the limit of {MAX_BODY}"));
            }
            // One allocation of the exact size, read from offset 0 whatever the client's position.
            let mut buf = vec![0u8; len as usize];
            f.read_exact_at(&mut buf, 0).map_err(|e| format!("reading the body from its file descriptor: {e}"))?;
            buf
        }
        None => body,
    };
    let reply = match reply_file {
        Some(f) => Some(regular(f)?.0),
        None => None,
    };
    Ok((body, reply))
}

/// A token the agent has used, watched for removal and return.
#[derive(Clone)]
struct Watch {
    label: String,
    serial: String,
    module: PathBuf,
    reinit: bool,
    present: bool,
    /// Watched through this PC/SC reader instead of probing the module.
    reader: Option<String>,
    /// When a request last succeeded with it: a probe started before then that found nothing
    /// is stale, not a removal.
    seen_at: std::time::Instant,
}

/// Probes of module-watched tokens run on their own thread: a probe starts a process that
/// initialises the module (10–30 ms), time the token worker would otherwise not be serving.
struct Prober {
    tx: mpsc::Sender<Vec<(String, Watch)>>,
    rx: Receiver<(std::time::Instant, Vec<(String, Option<String>)>)>,
    busy: bool,
}

impl Prober {
    fn start(base: Global) -> Prober {
        let (tx, batches) = mpsc::channel::<Vec<(String, Watch)>>();
        let (result_tx, rx) = mpsc::channel();
        let _ = std::thread::Builder::new().name("presence-probe".into()).spawn(move || {
            for batch in batches {
                let started = std::time::Instant::now();
                let found = batch.iter().map(|(k, w)| (k.clone(), probe(&base, w))).collect();
                if result_tx.send((started, found)).is_err() {
                    return;
                }
            }
        });
        Prober { tx, rx, busy: false }
    }
}

/// The PC/SC reader a token's presence follows: the config's binding, else the slot's reader
/// for tokens whose profile says PC/SC.
fn reader_of(t: &Token, cfg: &AgentConfig) -> Option<(String, bool)> {
    if let Some(r) = cfg.presence_reader.get(&t.label) {
        return Some((r.clone(), true));
    }
    (t.profile.presence.method == crate::profile::PresenceMethod::Pcsc).then(|| (t.slot_description.clone(), false))
}

/// How long a presence probe may take (a module's C_Initialize plus slot listing).
const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// Is the token there, seen through a fresh module instance? A child process, because a loaded
/// SoftHSM2 keeps a stale view of its token directory until C_Finalize. Some(serial) or None.
fn probe(base: &Global, w: &Watch) -> Option<String> {
    let uri = Pkcs11Uri { token: Some(w.label.clone()), module_path: Some(w.module.clone()), ..Default::default() };
    let exe = std::env::current_exe().ok()?;
    let mut c = std::process::Command::new(exe);
    c.args(["--agent", "never", "--token", &uri.to_string()]).stdin(std::process::Stdio::null()).stderr(std::process::Stdio::null());
    if let Some(cfg) = &base.config {
        c.arg("--config").arg(cfg);
    }
    let mut child = c.arg("probe").stdout(std::process::Stdio::piped()).spawn().ok()?;
    // A probe stuck in a hung module is killed: the token counts as absent, which is what the
    // user sees anyway (it does not answer).
    let until = std::time::Instant::now() + PROBE_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if std::time::Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    let text = out;
    let line = text.lines().next()?;
    let mut f = line.split('\t');
    (f.next() == Some("present")).then(|| f.nth(1).unwrap_or("").to_string())
}

/// End every session through `module` and re-initialise it, so it sees the slot as it is now.
fn rescan(tokens: &mut HashMap<String, Token>, module: &Path) {
    tokens.retain(|_, t| t.module.path != module);
    if let Ok(m) = crate::token::Module::load(module) {
        let _ = m.finalize();
    }
}

fn event(events: &Events, name: &str, note: String) {
    if let Ok(mut subs) = events.lock() {
        let ev = Response { v: VERSION, ok: true, event: Some(name.into()), notes: vec![note], ..Default::default() };
        subs.retain(|s| s.send(ev.clone()).is_ok());
    }
}

/// Tell subscribers about certificates on the token that expire within 30 days.
fn warn_expiring(t: &Token, events: &Events) {
    let Ok(certs) = t.certificates() else { return };
    let now = std::time::SystemTime::now();
    for c in certs.iter().filter(|c| !c.anchor) {
        let Ok(parsed) = crate::cms::cert::parse(&c.der) else { continue };
        let until = crate::cms::cert::not_after(&parsed);
        let left = until.duration_since(now).unwrap_or_default();
        if left < Duration::from_secs(30 * 86400) {
            let when = crate::cms::cert::fmt_time(until);
            let state = if now > until { format!("expired on {when}") } else { format!("expires on {when} (in {} days)", left.as_secs() / 86400) };
            event(events, "cert-expiring", format!("certificate '{}' on token '{}' {state}: renew it", c.label, t.label));
        }
    }
}

/// Is this watched token there now? Some(serial) or None. Synchronous (probes a module).
fn observe(base: &Global, w: &Watch, readers: &Readers) -> Option<String> {
    match &w.reader {
        Some(r) => (readers.card_in(r) == Some(true)).then(|| w.serial.clone()),
        None => probe(base, w),
    }
}

/// Act on what was observed: removal drops the token's sessions and cached PIN at once.
/// Returns whether the token the agent held is gone (removed or replaced).
fn apply_presence(key: &str, w: &mut Watch, now: Option<String>, tokens: &mut HashMap<String, Token>, events: &Events) -> bool {
    match (w.present, now) {
        (true, None) => {
            tokens.remove(key);
            if w.reinit && w.reader.is_none() {
                rescan(tokens, &w.module);
            }
            w.present = false;
            let from = w.reader.as_ref().map(|r| format!(" from reader '{r}'")).unwrap_or_default();
            event(events, "token-removed", format!("token '{}' was removed{from}: sessions closed, PIN forgotten", w.label));
            true
        }
        (true, Some(serial)) if serial != w.serial => {
            tokens.remove(key);
            rescan(tokens, &w.module);
            event(events, "token-removed", format!("token '{}' (serial {}) was replaced: sessions closed, PIN forgotten", w.label, w.serial));
            event(events, "token-inserted", format!("token '{}' (serial {serial}) is present", w.label));
            w.serial = serial;
            true
        }
        (false, Some(serial)) => {
            if w.reinit && w.reader.is_none() {
                rescan(tokens, &w.module);
            }
            w.present = true;
            event(events, "token-inserted", format!("token '{}' (serial {serial}) is present", w.label));
            w.serial = serial;
            false
        }
        _ => false,
    }
}

/// One synchronous look at every watched token (after a failed request: was it removal?).
fn check_presence(base: &Global, tokens: &mut HashMap<String, Token>, watches: &mut HashMap<String, Watch>, events: &Events, readers: &Readers) -> Vec<String> {
    let mut removed = Vec::new();
    for (key, w) in watches.iter_mut() {
        let now = observe(base, w, readers);
        if apply_presence(key, w, now, tokens, events) {
            removed.push(key.clone());
        }
    }
    removed
}

/// The periodic look: readers at once, modules through the prober (results applied as they come).
fn poll_presence(base: &Global, tokens: &mut HashMap<String, Token>, watches: &mut HashMap<String, Watch>, events: &Events, readers: &Readers, prober: &mut Prober) {
    for (key, w) in watches.iter_mut().filter(|(_, w)| w.reader.is_some()) {
        let now = observe(base, w, readers);
        apply_presence(key, w, now, tokens, events);
    }
    if !prober.busy {
        let batch: Vec<(String, Watch)> = watches.iter().filter(|(_, w)| w.reader.is_none()).map(|(k, w)| (k.clone(), w.clone())).collect();
        if !batch.is_empty() && prober.tx.send(batch).is_ok() {
            prober.busy = true;
        }
    }
}

/// Apply finished probes. A "not there" from a probe that started before a request last
/// succeeded with the token is stale and ignored.
fn take_probe_results(tokens: &mut HashMap<String, Token>, watches: &mut HashMap<String, Watch>, events: &Events, prober: &mut Prober) {
    while let Ok((started, found)) = prober.rx.try_recv() {
        prober.busy = false;
        for (key, now) in found {
            if let Some(w) = watches.get_mut(&key) {
                if now.is_none() && w.seen_at > started {
                    continue;
                }
                apply_presence(&key, w, now, tokens, events);
            }
        }
    }
}

/// What the token worker shares with the rest of the agent.
struct Worker {
    queue: Queue,
    current: Current,
    dog: Arc<Watchdog>,
    audit: Option<mpsc::Sender<AuditMsg>>,
    events: Events,
}

/// The one thread that talks to the tokens: requests run here one at a time, in order.
fn worker(w: Worker, base: Global, setup: Setup, cfg: AgentConfig, readers: Readers) {
    let Worker { queue, current, dog, audit, events } = w;
    let mut tokens: HashMap<String, Token> = HashMap::new();
    let mut watches: HashMap<String, Watch> = HashMap::new();
    let poll = Duration::from_millis(cfg.presence_poll_ms.max(100));
    let mut last_check = std::time::Instant::now();
    let mut prober = Prober::start(base.clone());
    loop {
        // While a probe runs, wake soon to apply its result.
        let wait = if prober.busy { poll.min(Duration::from_millis(20)) } else { poll };
        let next = lock(&queue).recv_timeout(wait);
        if dog.restarting.load(Ordering::SeqCst) {
            // The watchdog has taken over; this thread only waits for the exec now.
            return;
        }
        match next {
            Ok(mut job) => {
                *lock(&current) = Some((job.req.id, job.reply.clone()));
                // The body moves on to the command (a large mail is held once, not twice); the
                // audit log gets its digest.
                let body = std::mem::take(&mut job.body);
                dog.enter(&job.req.method);
                let (mut resp, out, key) = run_job(&job, body, &base, &setup, &mut tokens, &events, &readers, &dog);
                let request_key = job.req.token.as_deref().map(|t| Pkcs11Uri::parse(t).map(|u| u.or(&setup.token_uri).to_string()).unwrap_or_default()).unwrap_or_else(|| setup.token_uri.to_string());
                // Remember what to watch: tokens the agent now holds sessions on.
                for (k, t) in tokens.iter() {
                    if !watches.contains_key(k) {
                        warn_expiring(t, &events);
                    }
                    let w = watches.entry(k.clone()).or_insert_with(|| Watch {
                        label: t.label.clone(),
                        serial: t.serial.clone(),
                        module: t.module.path.clone(),
                        reinit: t.profile.presence.reinitialise_to_rescan,
                        present: true,
                        reader: reader_of(t, &cfg).map(|(r, _)| r),
                        seen_at: std::time::Instant::now(),
                    });
                    w.present = true;
                    w.serial = t.serial.clone();
                    if resp.ok && *k == request_key {
                        w.seen_at = std::time::Instant::now();
                    }
                }
                // A failure on a watched token may be its removal: look now, and say so.
                if !resp.ok && (resp.exit == Exit::NoKey as u8 || resp.exit == Exit::Io as u8) && watches.contains_key(&request_key) {
                    let gone = check_presence(&base, &mut tokens, &mut watches, &events, &readers);
                    last_check = std::time::Instant::now();
                    if gone.contains(&request_key) {
                        resp.exit = Exit::TokenNotPresent as u8;
                        resp.error = Some("the token was removed while the request ran; insert it and try again".into());
                    }
                }
                dog.leave();
                if lock(&current).take().is_none() {
                    // The watchdog already answered this request and is restarting the agent.
                    return;
                }
                if let Some(log) = audit.as_ref() {
                    let exe = std::fs::read_link(format!("/proc/{}/exe", job.peer.pid)).ok().map(|p| p.display().to_string());
                    let result = if resp.ok { "ok".to_string() } else { resp.error.clone().unwrap_or_default() };
                    let _ = log.send(AuditMsg::Entry(AuditEntry { op: job.req.method.clone(), pid: Some(job.peer.pid), exe, body_digest: job.body_digest, key, result }));
                }
                apply_cache_policy(&mut tokens, &cfg);
                // The client may have gone away; that must not stop the worker.
                let _ = job.reply.send((resp, out));
            }
            Err(RecvTimeoutError::Timeout) => apply_cache_policy(&mut tokens, &cfg),
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let due = last_check.elapsed() >= poll && !watches.is_empty();
        // Only when there is something to do: this runs after every request.
        if prober.busy || due {
            dog.enter("presence check");
            take_probe_results(&mut tokens, &mut watches, &events, &mut prober);
            if due {
                poll_presence(&base, &mut tokens, &mut watches, &events, &readers, &mut prober);
                last_check = std::time::Instant::now();
            }
            dog.leave();
        }
    }
}

/// The watchdog thread: when the worker has been inside the token layer past the limit, answer
/// everyone who waits, then restart the agent in place (see watchdog.rs for why in place).
fn watch_for_hangs(dog: Arc<Watchdog>, queue: Queue, current: Current, audit: Option<mpsc::Sender<AuditMsg>>, events: Events, listener: std::os::fd::RawFd, own_path: Option<PathBuf>) {
    let tick = (dog.limit / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let (what, took) = loop {
        std::thread::sleep(tick);
        if let Some(o) = dog.overdue() {
            break o;
        }
    };
    dog.restarting.store(true, Ordering::SeqCst);
    let msg = format!(
        "the token did not answer for {:.1} s during '{what}' (limit {} ms, [agent] token_timeout_ms): the agent abandoned the call and restarts with the token module loaded afresh; check the card and reader, then try again",
        took.as_secs_f64(),
        dog.limit.as_millis()
    );
    eprintln!("ssmax-card agent: {msg}");
    if let Some((id, reply)) = lock(&current).take() {
        let _ = reply.send((error_response(id, Exit::Io, msg.clone()), Vec::new()));
    }
    // Whoever queued behind the hung call may simply ask again once the agent is back.
    {
        let rx = lock(&queue);
        while let Ok(job) = rx.try_recv() {
            let _ = job.reply.send((restarting_response(job.req.id), Vec::new()));
        }
    }
    event(&events, "agent-restarting", msg.clone());
    if let Some(log) = audit {
        let _ = log.send(AuditMsg::Entry(AuditEntry { op: "watchdog".into(), pid: None, exe: None, body_digest: super::audit::body_digest(&[]), key: None, result: msg }));
        let (done, wait) = mpsc::channel();
        if log.send(AuditMsg::Close(done)).is_ok() {
            let _ = wait.recv_timeout(Duration::from_secs(5));
        }
    }
    // Wake the accept loop (blocked in accept) so it sees the flag and parks; a connection it
    // accepts meanwhile is answered "restarting" before the exec, never cut off.
    if let Some(p) = &own_path {
        drop(UnixStream::connect(p));
    }
    dog.drain_answers(Duration::from_secs(2));
    let err = watchdog::reexec(listener);
    // Without the exec the hung call still holds the worker: stop, so a supervisor (systemd's
    // Restart=on-failure) starts a clean agent, rather than keep a socket nobody serves.
    eprintln!("ssmax-card agent: cannot restart in place ({err}); exiting");
    std::process::exit(Exit::Io as i32);
}

fn apply_cache_policy(tokens: &mut HashMap<String, Token>, cfg: &AgentConfig) {
    for t in tokens.values_mut() {
        let policy = cfg.pin_cache.or(t.profile.pin.cache).unwrap_or_default();
        let keep = match policy {
            PinCache::None => false,
            PinCache::Ttl => t.login_time.is_some_and(|at| at.elapsed().map(|e| e.as_secs() < cfg.pin_cache_seconds).unwrap_or(false)),
            PinCache::UntilRemoved => true,
        };
        if !keep && t.login_time.is_some() {
            t.logout();
            t.login_time = None;
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn run_job(job: &Job, body: Vec<u8>, base: &Global, setup: &Setup, tokens: &mut HashMap<String, Token>, events: &Events, readers: &Readers, dog: &Arc<Watchdog>) -> (Response, Vec<u8>, Option<String>) {
    let req = &job.req;
    let mut g = base.clone();
    g.allow_final_pin_try = req.allow_final_pin_try;
    let mut s = setup.clone();
    let parsed = (|| -> Result<(), Failure> {
        if let Some(t) = &req.token {
            s.token_uri = Pkcs11Uri::parse(t)?.or(&setup.token_uri);
        }
        if let Some(k) = &req.key {
            s.key_uri = Some(Pkcs11Uri::parse(k)?);
        }
        Ok(())
    })();
    if let Err(f) = parsed {
        return (error_response(req.id, f.exit, f.message), Vec::new(), None);
    }
    let wants_output = req.args.get("out").and_then(|v| v.as_bool()).unwrap_or(true);
    let prompt = EventPrompt { inner: PinentryPin::for_client(s.config.pinentry_program.clone(), req.client.clone()), events: events.clone(), dog: dog.clone(), method: req.method.clone() };
    let token_key = s.token_uri.to_string();
    let reply_file = job.reply_file.as_ref().map(|f| (f, 0));
    let mut ctx = AgentCtx { g, s, input: Some(body), output: Vec::new(), reply_file, wants_output, notes: Vec::new(), report: None, tokens, token_key: token_key.clone(), prompt, readers: readers.clone() };
    let result = dispatch(&mut ctx, &req.method, &req.args);
    let key = ctx.tokens.get(&token_key).map(|t| t.description.clone());
    if let Err(f) = &result {
        // A token that went away is forgotten (and logged out): the next request finds it afresh.
        if f.exit == Exit::TokenNotPresent {
            ctx.tokens.remove(&token_key);
        }
    }
    let body_in_fd = ctx.reply_file.map(|(_, written)| written);
    let mut resp = Response { v: VERSION, id: req.id, ok: result.is_ok(), exit: 0, notes: std::mem::take(&mut ctx.notes), report: ctx.report.take(), body_in_fd, ..Default::default() };
    if let Err(f) = result {
        resp.exit = f.exit as u8;
        resp.error = Some(f.message);
    }
    (resp, std::mem::take(&mut ctx.output), key)
}

fn dispatch(ctx: &mut AgentCtx<'_>, method: &str, args: &serde_json::Value) -> Result<(), Failure> {
    use crate::cli::{decrypt, forward, receive, send, sign, status, verify};
    let bad = |e: serde_json::Error| Failure::new(Exit::Usage, format!("bad arguments for {method}: {e}"));
    let flag = |name: &str| args.get(name).and_then(|v| v.as_bool()).unwrap_or(false);
    match method {
        "status" => status::run(ctx),
        "sign" => match args.get("signature_only_from").and_then(|v| v.as_str()) {
            Some(from) => sign::run_signature_only(ctx, flag("pss"), from),
            None => sign::run(ctx, flag("pss")),
        },
        "verify" => verify::run(ctx, &serde_json::from_value(args.clone()).map_err(bad)?),
        "decrypt" => decrypt::run(ctx),
        "send" => send::run(ctx, Vec::new(), flag("pss")),
        "receive" => {
            let raw = ctx.input()?;
            receive::receive(ctx, &raw)
        }
        "forward" => forward::run(ctx, &serde_json::from_value(args.clone()).map_err(bad)?),
        other => Err(Failure::new(Exit::Usage, format!("unknown method '{other}'"))),
    }
}

struct AgentCtx<'w> {
    g: Global,
    s: Setup,
    input: Option<Vec<u8>>,
    output: Vec<u8>,
    /// The client's file for the product, and how much is in it.
    reply_file: Option<(&'w File, u64)>,
    wants_output: bool,
    notes: Vec<String>,
    report: Option<String>,
    tokens: &'w mut HashMap<String, Token>,
    token_key: String,
    prompt: EventPrompt,
    readers: Readers,
}

impl Ctx for AgentCtx<'_> {
    fn setup(&self) -> &Setup {
        &self.s
    }
    fn input(&mut self) -> Result<Vec<u8>, Failure> {
        Ok(self.input.take().unwrap_or_default())
    }
    fn output(&mut self, data: Vec<u8>) -> Result<(), Failure> {
        match self.reply_file {
            Some(_) => self.output_pieces(&[&data]),
            None => {
                self.output = data;
                Ok(())
            }
        }
    }
    fn output_pieces(&mut self, pieces: &[&[u8]]) -> Result<(), Failure> {
        let Some((file, written)) = &mut self.reply_file else {
            return self.output(pieces.concat());
        };
        for p in pieces {
            file.write_all_at(p, *written).map_err(|e| Failure::new(Exit::Io, format!("writing the product to the client's file: {e}")))?;
            *written += p.len() as u64;
        }
        Ok(())
    }
    fn wants_output(&self) -> bool {
        self.wants_output
    }
    fn report(&mut self, text: String) {
        self.report = Some(text);
    }
    fn note(&mut self, line: String) {
        self.notes.push(line);
    }
    fn token(&mut self) -> Result<Parts<'_>, Failure> {
        if !self.tokens.contains_key(&self.token_key) {
            let t = Token::open(&self.s.token_uri, &self.s.profiles)?;
            self.tokens.insert(self.token_key.clone(), t);
        }
        // Possession first: a token bound to a reader is there only while its card is.
        let gate = self.tokens.get(&self.token_key).and_then(|t| reader_of(t, &self.s.config.agent).map(|(r, strict)| (t.label.clone(), r, strict)));
        if let Some((label, reader, strict)) = gate {
            let refuse = match self.readers.card_in(&reader) {
                Some(true) => None,
                Some(false) => Some(format!("token '{label}' is not present: insert the card in reader '{reader}'")),
                None if strict => Some(format!("token '{label}' follows reader '{reader}', which PC/SC does not show (is pcscd running, is the reader connected?)")),
                None => None,
            };
            if let Some(msg) = refuse {
                self.tokens.remove(&self.token_key);
                return Err(TokenError::NotPresent(msg).into());
            }
        }
        let token = self.tokens.get_mut(&self.token_key).ok_or_else(|| Failure::new(Exit::Io, "internal: token vanished from the agent's table"))?;
        Ok(Parts { g: &self.g, s: &self.s, token, prompt: &self.prompt })
    }
}

/// pinentry on the client's terminal or display, announcing "pin-needed" to subscribers first.
struct EventPrompt {
    inner: PinentryPin,
    events: Events,
    dog: Arc<Watchdog>,
    method: String,
}

impl PinPrompt for EventPrompt {
    fn ask(&self, request: &PinRequest<'_>) -> Result<SecretString, TokenError> {
        if let Ok(mut subs) = self.events.lock() {
            let ev = Response { v: VERSION, ok: true, event: Some("pin-needed".into()), notes: vec![format!("token '{}': {}", request.token, request.operation)], ..Default::default() };
            subs.retain(|s| s.send(ev.clone()).is_ok());
        }
        // A person typing a PIN is not a hung card: the watchdog looks away meanwhile.
        self.dog.leave();
        let pin = self.inner.ask(request);
        self.dog.enter(&self.method);
        pin
    }
}
