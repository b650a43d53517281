//! The listening side: socket (or systemd socket activation), peer credentials, one connection
//! thread per client. A request runs on its client's thread; the part of it that uses a token
//! waits for the token turn (turnstile.rs), so tokens serve one request at a time, in arrival
//! order, and a small signature costs no thread hand-off.

use super::audit::AuditLog;
use super::presence::{event, reader_of, Desk, Events};
use super::protocol::{
    read_message_with_fds_within, write_message, Call, Passed, ProtocolError, Request, Response, VerifyArgs, MAX_BODY,
    VERSION,
};
use super::turnstile::{Refused, Turn, Turnstile};
use super::watchdog::{self, Owed, Watchdog};
use crate::config::AgentConfig;
use crate::error::{Exit, Failure};
use crate::ops::ctx::{Ctx, Parts};
use crate::ops::setup::Setup;
use crate::platform::Peer;
use crate::prompt::PinentryPin;
use crate::token::pin::{PinPrompt, PinRequest};
use crate::token::presence::Readers;
use crate::token::uri::Pkcs11Uri;
use crate::token::{Token, TokenError};
use secrecy::SecretString;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// A poisoned lock here only means another thread panicked mid-update of plain data; the data is
/// still what we need to answer clients, so go on with it rather than give up.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the connection threads, the housekeeper and the watchdog share.
struct Agent {
    desk: Turnstile<Desk>,
    setup: Setup,
    cfg: AgentConfig,
    readers: Readers,
    events: Events,
    dog: Arc<Watchdog>,
    audit: Option<mpsc::Sender<AuditMsg>>,
    /// The request that holds the token turn: the watchdog answers it when the token hangs or
    /// its client's deadline passes.
    current: Mutex<Option<Running>>,
}

struct Running {
    id: u64,
    stream: Arc<UnixStream>,
    deadline: Instant,
    timeout: Duration,
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

/// The socket handed over by our own re-exec (see watchdog.rs), or by systemd socket activation
/// (sd_listen_fds: fd 3 when LISTEN_PID is us and LISTEN_FDS is 1).
fn activated_listener() -> Option<UnixListener> {
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
    Some(unsafe { UnixListener::from_raw_fd(3) })
}

fn bind(socket: &Path) -> Result<UnixListener, Failure> {
    let fail = |what: &str, e: std::io::Error| Failure::new(Exit::Io, format!("{what} {}: {e}", socket.display()));
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).map_err(|e| fail("cannot create the directory of", e))?;
        // Only this user may even look up the socket.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| fail("cannot protect the directory of", e))?;
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
    /// The config file the agent was started with, for the token probes it starts.
    pub config_path: Option<PathBuf>,
}

pub fn run(setup: Setup, a: AgentArgs) -> Result<(), Failure> {
    crate::platform::survive_vanished_peers();
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
    // The audit log has its own thread: a request hands it the entry and goes on, instead of
    // waiting for the fsync. Entries keep their order and chain; a power cut can lose the last
    // few, which `audit verify` then reports as a cut-off end, never as an altered one.
    let audit = audit.map(|log| {
        let (atx, arx) = mpsc::channel::<AuditMsg>();
        let _ = std::thread::Builder::new().name("audit".into()).spawn(move || write_audit(log, arx));
        atx
    });
    let (readers, events): (Readers, Events) = (Readers::watch(), Arc::new(Mutex::new(Vec::new())));
    let agent = Arc::new(Agent {
        desk: Turnstile::new(
            Desk::new(a.config_path.clone(), cfg.clone(), events.clone(), readers.clone()),
            cfg.queue_limit.max(1),
        ),
        setup,
        readers,
        events,
        dog: Watchdog::new(Duration::from_millis(cfg.token_timeout_ms.max(100))),
        audit,
        current: Mutex::new(None),
        cfg,
    });
    let house = agent.clone();
    std::thread::Builder::new()
        .name("housekeeper".into())
        .spawn(move || housekeeper(&house))
        .map_err(|e| Failure::new(Exit::Io, format!("cannot start the presence watcher: {e}")))?;
    let (wagent, fd) = (agent.clone(), listener.as_raw_fd());
    let own_path = listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf));
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || watch_for_hangs(&wagent, fd, own_path))
        .map_err(|e| Failure::new(Exit::Io, format!("cannot start the watchdog: {e}")))?;
    match std::env::var(watchdog::RESTARTS_VAR) {
        Ok(n) => {
            eprintln!("ssmax-card agent: listening on {} (restart {n} after a hung token call)", a.socket.display())
        }
        Err(_) => eprintln!("ssmax-card agent: listening on {}", a.socket.display()),
    }
    let me = crate::platform::uid();
    let dog = agent.dog.clone();
    let door = TurnAway::start()?;
    let open = Arc::new(AtomicUsize::new(0));
    let cap = agent.cfg.max_connections.max(1);
    loop {
        if dog.restarting.load(Ordering::SeqCst) {
            // The next image accepts from here on; the watchdog waits for this.
            dog.accept_parked.store(true, Ordering::SeqCst);
            loop {
                std::thread::park();
            }
        }
        let Ok((stream, _)) = listener.accept() else {
            // Out of descriptors (EMFILE) or a connection reset before it was taken: wait a
            // moment rather than spin on an accept that fails at once.
            std::thread::sleep(Duration::from_millis(10));
            continue;
        };
        let owed = Owed::at_accept(&dog);
        let peer = match crate::platform::peer_of(&stream) {
            Ok(p) => p,
            Err(_) => continue,
        };
        if peer.uid != me {
            door.refuse(
                stream,
                owed,
                error_response(0, Exit::Usage, format!("refused: this agent serves uid {me} only")),
            );
            continue;
        }
        if open.load(Ordering::SeqCst) >= cap {
            let busy = Response {
                retry_after_ms: Some(200),
                ..error_response(0, Exit::Busy, format!("busy: the agent is serving {cap} connections, its limit ([agent] max_connections); try again in a moment"))
            };
            door.refuse(stream, owed, busy);
            continue;
        }
        let counted = Counted::new(&open);
        let agent = agent.clone();
        let spawned = std::thread::Builder::new().name(format!("client-{}", peer.pid)).spawn(move || {
            let stream = Arc::new(stream);
            // The connection is counted out before it closes: a client that has seen it close
            // and comes straight back is not turned away as one too many.
            let closes_last = stream.clone();
            serve(stream, peer, &agent, owed);
            drop(counted);
            drop(closes_last);
        });
        // Without a thread the closure (and the count it holds) is dropped here.
        let _ = spawned;
    }
}

/// Read and drop what a client sends until it closes or `deadline` passes.
fn drain_until(stream: &UnixStream, deadline: Instant) {
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

/// One open client connection, counted while it lives.
struct Counted(Arc<AtomicUsize>);

impl Counted {
    fn new(open: &Arc<AtomicUsize>) -> Counted {
        open.fetch_add(1, Ordering::SeqCst);
        Counted(open.clone())
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Connections the agent will not serve (another user's, one over the cap) get their answer
/// from one thread, one at a time: turning clients away must not cost a thread each. Past
/// `TURN_AWAY_QUEUE` waiting, the rest are closed unanswered.
struct TurnAway(mpsc::SyncSender<(UnixStream, Owed, Response)>);

const TURN_AWAY_QUEUE: usize = 64;

impl TurnAway {
    fn start() -> Result<TurnAway, Failure> {
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
            .map_err(|e| Failure::new(Exit::Io, format!("cannot start the agent: {e}")))?;
        Ok(TurnAway(tx))
    }

    fn refuse(&self, stream: UnixStream, owed: Owed, answer: Response) {
        let _ = self.0.try_send((stream, owed, answer));
    }
}

/// How long the audit thread gathers entries before making them durable together. An fsync
/// costs more CPU than the agent's own work on a request (a virtio flush here); the answer to the
/// client never waits for it either way.
const AUDIT_WINDOW: Duration = Duration::from_millis(5);
const AUDIT_BATCH: usize = 256;

/// The audit thread: entries in the order they come, written and made durable in batches.
fn write_audit(mut log: AuditLog, rx: mpsc::Receiver<AuditMsg>) {
    while let Ok(first) = rx.recv() {
        let until = Instant::now() + AUDIT_WINDOW;
        let mut batch = Vec::new();
        let mut close = None;
        let mut next = Some(first);
        while let Some(m) = next.take() {
            match m {
                AuditMsg::Entry(e) => batch.push(super::audit::NewEntry {
                    op: e.op,
                    client_pid: e.pid,
                    client_exe: e.exe,
                    digest: e.body_digest,
                    key: e.key,
                    result: e.result,
                }),
                AuditMsg::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if batch.len() < AUDIT_BATCH {
                next = rx.recv_timeout(until.saturating_duration_since(Instant::now())).ok();
            }
        }
        if let Err(err) = log.append_all(batch) {
            eprintln!("ssmax-card agent: audit log: {err}");
        }
        if let Some(done) = close {
            drop(log);
            let _ = done.send(());
            return;
        }
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
    Response {
        retry_after_ms: Some(200),
        ..error_response(
            id,
            Exit::Busy,
            "busy: the agent is restarting after a token call hung; try again in a moment".into(),
        )
    }
}

fn serve(stream: Arc<UnixStream>, peer: Peer, agent: &Agent, mut owed: Owed) {
    let dog = &agent.dog;
    let idle = Duration::from_millis(agent.cfg.idle_timeout_ms.max(100));
    // A client that does not read its answer holds this thread no longer than one that sends
    // nothing.
    let _ = stream.set_write_timeout(Some(idle));
    loop {
        let (req, body, fds) = match read_message_with_fds_within::<Request>(&stream, idle) {
            Ok(m) => {
                owed.owe();
                m
            }
            Err(ProtocolError::Closed) => return,
            Err(e @ ProtocolError::TimedOut(_)) => {
                let msg = format!("closing an idle connection: {e} ([agent] idle_timeout_ms)");
                let _ = write_message(&mut &*stream, &error_response(0, Exit::Usage, msg), &[]);
                return;
            }
            Err(e) => {
                let _ = write_message(&mut &*stream, &error_response(0, Exit::Usage, format!("bad request: {e}")), &[]);
                return;
            }
        };
        let received = Instant::now();
        if req.v != VERSION {
            let _ = write_message(
                &mut &*stream,
                &error_response(req.id, Exit::Usage, format!("protocol version {} is not {VERSION}", req.v)),
                &[],
            );
            return;
        }
        let call = match req.call() {
            Ok(c) => c,
            Err(e) => {
                let written = write_message(&mut &*stream, &error_response(req.id, Exit::Usage, e.to_string()), &[]);
                owed.settle();
                if written.is_err() {
                    return;
                }
                continue;
            }
        };
        match call {
            Call::Ping => {
                let r = Response {
                    v: VERSION,
                    id: req.id,
                    ok: true,
                    notes: vec![format!("ssmax-card agent {}", env!("CARGO_PKG_VERSION"))],
                    ..Default::default()
                };
                let written = write_message(&mut &*stream, &r, &[]);
                owed.settle();
                if written.is_err() {
                    return;
                }
            }
            Call::Subscribe => {
                let (tx, rx) = mpsc::channel();
                lock(&agent.events).push(tx);
                let r = Response { v: VERSION, id: req.id, ok: true, ..Default::default() };
                let written = write_message(&mut &*stream, &r, &[]);
                // A subscriber waits for events, not answers: it does not hold up a restart.
                owed.settle();
                if written.is_err() {
                    return;
                }
                // Events as they come; between them, a subscriber that has gone (or sends
                // anything: it has nothing to send) ends the subscription and frees its place.
                loop {
                    match rx.recv_timeout(SUBSCRIBER_CHECK) {
                        Ok(ev) => {
                            if write_message(&mut &*stream, &ev, &[]).is_err() {
                                return;
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) if readable_or_closed(&stream) => return,
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
            }
            call => {
                let id = req.id;
                if dog.restarting.load(Ordering::SeqCst) {
                    let _ = write_message(&mut &*stream, &restarting_response(id), &[]);
                    return;
                }
                let Received { body, passed, reply } = match passed_files(&req, body, fds) {
                    Ok(b) => b,
                    Err(msg) => {
                        let written = write_message(&mut &*stream, &error_response(id, Exit::Usage, msg), &[]);
                        owed.settle();
                        if written.is_err() {
                            return;
                        }
                        continue;
                    }
                };
                let timeout = Duration::from_millis(req.timeout_ms.clamp(1, 3_600_000));
                let job = Job {
                    req: &req,
                    peer,
                    reply_file: reply.as_ref(),
                    stream: &stream,
                    deadline: received + timeout,
                    timeout,
                };
                let Some((resp, out)) = run_job(agent, job, call, body, passed) else {
                    // The watchdog answered it (a hung token, or the client's deadline).
                    owed.settled_elsewhere();
                    if dog.restarting.load(Ordering::SeqCst) {
                        return;
                    }
                    continue;
                };
                let written = write_message(&mut &*stream, &resp, &out);
                owed.settle();
                if written.is_err() {
                    return;
                }
            }
        }
    }
}

/// How often a quiet subscription checks that its client is still there.
const SUBSCRIBER_CHECK: Duration = Duration::from_secs(1);

/// The client closed its end or sent something (poll without waiting).
fn readable_or_closed(stream: &UnixStream) -> bool {
    use rustix::event::{poll, PollFd, PollFlags};
    let mut fds = [PollFd::new(stream, PollFlags::IN)];
    poll(&mut fds, Some(&rustix::event::Timespec { tv_sec: 0, tv_nsec: 0 })).is_ok_and(|n| n > 0)
}

/// What a request passed: its body (from the message or a descriptor), the files it passed for
/// the command (read), and the file for the reply.
struct Received {
    body: Vec<u8>,
    passed: Vec<(Passed, Vec<u8>)>,
    reply: Option<File>,
}

/// Read the descriptors a request passed. Regular files only: a pipe or a socket could hold
/// this thread (and the token turn) for as long as its writer liked; each within its limit.
fn passed_files(req: &Request, body: Vec<u8>, fds: Vec<OwnedFd>) -> Result<Received, String> {
    let wanted = usize::from(req.body_in_fd) + req.passed.len() + usize::from(req.reply_in_fd);
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
    // In this order: the body's file, the passed files, then the reply's.
    let mut files = fds.into_iter().map(File::from);
    let body_file = if req.body_in_fd { files.next() } else { None };
    let mut passed = Vec::with_capacity(req.passed.len());
    for (kind, f) in req.passed.iter().zip(files.by_ref()) {
        let (f, len) = regular(f)?;
        if len > kind.limit() {
            return Err(format!(
                "a passed {} file of {len} bytes is over the limit of {}",
                kind.name(),
                crate::files::size(kind.limit())
            ));
        }
        let mut buf = vec![0u8; len as usize];
        f.read_exact_at(&mut buf, 0).map_err(|e| format!("reading a passed {} file: {e}", kind.name()))?;
        passed.push((*kind, buf));
    }
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
    Ok(Received { body, passed, reply })
}

/// A request as its connection thread runs it.
struct Job<'r> {
    req: &'r Request,
    peer: Peer,
    /// Where the command's product goes when the client passed a file for it.
    reply_file: Option<&'r File>,
    stream: &'r Arc<UnixStream>,
    deadline: Instant,
    timeout: Duration,
}

/// Run one request. The command parses its input here, in parallel with other clients, and takes
/// the token turn when it first needs the token, keeping it to the end. None when the watchdog
/// has answered the request meanwhile (a hung token, or the client's deadline).
fn run_job(
    agent: &Agent,
    job: Job<'_>,
    call: Call,
    body: Vec<u8>,
    passed: Vec<(Passed, Vec<u8>)>,
) -> Option<(Response, Vec<u8>)> {
    let req = job.req;
    // The audit log gets a digest of the body, taken before the body moves on to the command (a
    // large mail is held once, not twice).
    let audit = agent.audit.as_ref().map(|log| Audit {
        log,
        pid: job.peer.pid,
        body_digest: super::audit::body_digest(&body),
        exe: std::fs::read_link(format!("/proc/{}/exe", job.peer.pid)).ok().map(|p| p.display().to_string()),
    });
    let mut s = agent.setup.clone();
    let parsed = (|| -> Result<(), Failure> {
        if let Some(t) = &req.token {
            s.token_uri = Pkcs11Uri::parse(t)?.or(&agent.setup.token_uri);
        }
        if let Some(k) = &req.key {
            s.key_uri = Some(Pkcs11Uri::parse(k)?);
        }
        Ok(())
    })();
    let wants_output = match &call {
        Call::Verify(v) => v.out,
        _ => true,
    };
    let prompt = EventPrompt {
        inner: PinentryPin::for_client(s.config.pinentry_program.clone(), req.client.clone()),
        events: agent.events.clone(),
        dog: agent.dog.clone(),
        method: req.method.clone(),
    };
    let token_key = s.token_uri.to_string();
    let mut ctx = AgentCtx {
        allow_final_pin_try: req.allow_final_pin_try,
        s,
        input: Some(body),
        output: Vec::new(),
        reply_file: job.reply_file.map(|f| (f, 0)),
        wants_output,
        notes: Vec::new(),
        report: None,
        agent,
        job: &job,
        turn: None,
        refused: None,
        answered_elsewhere: false,
        key: None,
        token_key,
        prompt,
    };
    let result = parsed.and_then(|()| dispatch(&mut ctx, call, passed));
    let body_in_fd = ctx.reply_file.map(|(_, written)| written);
    let mut resp = Response {
        v: VERSION,
        id: req.id,
        ok: result.is_ok(),
        exit: 0,
        notes: std::mem::take(&mut ctx.notes),
        report: ctx.report.take(),
        body_in_fd,
        ..Default::default()
    };
    if let Err(f) = &result {
        resp.exit = f.exit as u8;
        resp.error = Some(f.message.clone());
    }
    if ctx.refused == Some(Refused::Closed) {
        resp = restarting_response(req.id);
    }
    // The turn is still held when the command failed on the token or never said it was done.
    if ctx.release(resp.ok, resp.exit) {
        resp.exit = Exit::TokenNotPresent as u8;
        resp.error = Some("the token was removed while the request ran; insert it and try again".into());
    }
    log_request(audit, req, &resp, ctx.key.take());
    (!ctx.answered_elsewhere).then(|| (resp, std::mem::take(&mut ctx.output)))
}

/// What the audit log will say about a request, gathered before the body moves on.
struct Audit<'a> {
    log: &'a mpsc::Sender<AuditMsg>,
    pid: i32,
    body_digest: [u8; 32],
    exe: Option<String>,
}

fn log_request(audit: Option<Audit<'_>>, req: &Request, resp: &Response, key: Option<String>) {
    if let Some(a) = audit {
        let result = if resp.ok { "ok".to_string() } else { resp.error.clone().unwrap_or_default() };
        let _ = a.log.send(AuditMsg::Entry(AuditEntry {
            op: req.method.clone(),
            pid: Some(a.pid),
            exe: a.exe,
            body_digest: a.body_digest,
            key,
            result,
        }));
    }
}

/// The housekeeper: between requests, takes the turn to forget PINs whose time is up and to
/// look for removed and returned tokens.
fn housekeeper(agent: &Agent) {
    let mut wait = Duration::from_millis(agent.cfg.presence_poll_ms.max(100));
    loop {
        std::thread::sleep(wait);
        match agent.desk.take(Instant::now() + Duration::from_secs(3600)) {
            Ok(mut desk) => wait = desk.housekeeping(&agent.dog),
            Err(Refused::Closed) => return,
            // A full line: the requests come first, look again next time.
            Err(_) => {}
        }
    }
}

/// The watchdog thread: answers the request holding the turn when its client's deadline passes;
/// when the token has been inside a call past the limit, answers everyone who waits, then
/// restarts the agent in place (see watchdog.rs for why in place).
fn watch_for_hangs(agent: &Agent, listener: std::os::fd::RawFd, own_path: Option<PathBuf>) {
    let dog = &agent.dog;
    let tick = (dog.limit / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let (what, took) = loop {
        // Wake in time for the deadline of the request that holds the turn.
        let until_deadline =
            lock(&agent.current).as_ref().map(|r| r.deadline.saturating_duration_since(Instant::now()));
        std::thread::sleep(until_deadline.map_or(tick, |d| d.min(tick)).max(Duration::from_millis(5)));
        if let Some(o) = dog.overdue() {
            break o;
        }
        let mut current = lock(&agent.current);
        if current.as_ref().is_some_and(|r| Instant::now() >= r.deadline) {
            if let Some(r) = current.take() {
                drop(current);
                // The operation goes on (a token call cannot be interrupted); its product is dropped.
                let msg = format!("timed out after {} ms waiting for the token", r.timeout.as_millis());
                let _ = write_message(&mut &*r.stream, &error_response(r.id, Exit::Io, msg), &[]);
                dog.settled_for_another();
            }
        }
    };
    dog.restarting.store(true, Ordering::SeqCst);
    let msg = format!(
        "the token did not answer for {:.1} s during '{what}' (limit {} ms, [agent] token_timeout_ms): the agent abandoned the call and restarts with the token module loaded afresh; check the card and reader, then try again",
        took.as_secs_f64(),
        dog.limit.as_millis()
    );
    eprintln!("ssmax-card agent: {msg}");
    let hung = lock(&agent.current).take();
    if let Some(r) = hung {
        let _ = write_message(&mut &*r.stream, &error_response(r.id, Exit::Io, msg.clone()), &[]);
        dog.settled_for_another();
    }
    // Whoever waits behind the hung call is told it may simply ask again once the agent is back.
    agent.desk.close();
    event(&agent.events, "agent-restarting", msg.clone());
    if let Some(log) = &agent.audit {
        let _ = log.send(AuditMsg::Entry(AuditEntry {
            op: "watchdog".into(),
            pid: None,
            exe: None,
            body_digest: super::audit::body_digest(&[]),
            key: None,
            result: msg,
        }));
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
    // Without the exec the hung call still holds the turn: stop, so a supervisor (systemd's
    // Restart=on-failure) starts a clean agent, rather than keep a socket nobody serves.
    eprintln!("ssmax-card agent: cannot restart in place ({err}); exiting");
    std::process::exit(Exit::Io as i32);
}

fn dispatch(ctx: &mut AgentCtx<'_>, call: Call, passed: Vec<(Passed, Vec<u8>)>) -> Result<(), Failure> {
    use crate::ops::{decrypt, forward, receive, send, sign, status, verify};
    if !passed.is_empty() && !matches!(call, Call::Verify(_)) {
        return Err(Failure::new(Exit::Usage, format!("bad request: {} takes no passed files", call.method())));
    }
    match call {
        Call::Status => status::run(ctx),
        Call::Sign(a) => match &a.signature_only_from {
            Some(from) => sign::run_signature_only(ctx, a.pss, from),
            None => sign::run(ctx, a.pss),
        },
        Call::Verify(a) => verify::run(ctx, &verify_args(&a, passed)?),
        Call::Decrypt => decrypt::run(ctx),
        Call::Send(a) => send::run(ctx, Vec::new(), a.pss),
        Call::Receive => {
            let raw = ctx.input()?;
            receive::receive(ctx, &raw)
        }
        Call::Forward(a) => forward::run(ctx, &a),
        Call::Ping | Call::Subscribe => Err(Failure::new(Exit::Usage, "internal: answered by the connection")),
    }
}

/// verify's options from its wire arguments and the files its client passed.
fn verify_args(a: &VerifyArgs, passed: Vec<(Passed, Vec<u8>)>) -> Result<crate::ops::verify::VerifyArgs, Failure> {
    let mut v = crate::ops::verify::VerifyArgs { no_token: a.no_token, ..Default::default() };
    for (kind, data) in passed {
        match kind {
            Passed::Anchors => v.anchors.extend(crate::cms::cert::load_bytes(&data, "a passed --ca file")?),
            Passed::Intermediates => {
                v.intermediates.extend(crate::cms::cert::load_bytes(&data, "a passed --certfile file")?)
            }
            Passed::Content if v.content.is_none() => v.content = Some(data),
            Passed::Content => return Err(Failure::new(Exit::Usage, "bad request: more than one content file")),
        }
    }
    Ok(v)
}

struct AgentCtx<'w> {
    allow_final_pin_try: bool,
    s: Setup,
    input: Option<Vec<u8>>,
    output: Vec<u8>,
    /// The client's file for the product, and how much is in it.
    reply_file: Option<(&'w File, u64)>,
    wants_output: bool,
    notes: Vec<String>,
    report: Option<String>,
    agent: &'w Agent,
    job: &'w Job<'w>,
    /// Taken when the command first asks for the token, held until the request is answered.
    turn: Option<Turn<'w, Desk>>,
    refused: Option<Refused>,
    /// The watchdog answered while this request held the turn (deadline passed, token hung).
    answered_elsewhere: bool,
    /// The token used, for the audit log.
    key: Option<String>,
    token_key: String,
    prompt: EventPrompt,
}

impl AgentCtx<'_> {
    /// Give the turn back, after noting what the request did to the tokens. `ok`, `exit`: how
    /// the token part went. Returns whether the token turned out to be removed.
    fn release(&mut self, ok: bool, exit: u8) -> bool {
        let Some(mut desk) = self.turn.take() else { return false };
        self.key = desk.tokens.get(&self.token_key).map(|t| t.description.clone());
        // A token that went away is forgotten (and logged out): the next request finds it afresh.
        if exit == Exit::TokenNotPresent as u8 {
            desk.tokens.remove(&self.token_key);
        }
        // A failure on a watched token may be its removal: look now, and say so.
        let gone = desk.after_request(&self.token_key, ok, exit);
        self.agent.dog.leave();
        self.answered_elsewhere = lock(&self.agent.current).take().is_none();
        drop(desk);
        gone
    }

    fn take_turn(&mut self) -> Result<(), Failure> {
        match self.agent.desk.take(self.job.deadline) {
            Ok(turn) => {
                self.agent.dog.enter(&self.job.req.method);
                *lock(&self.agent.current) = Some(Running {
                    id: self.job.req.id,
                    stream: self.job.stream.clone(),
                    deadline: self.job.deadline,
                    timeout: self.job.timeout,
                });
                self.turn = Some(turn);
                Ok(())
            }
            Err(r) => {
                self.refused = Some(r);
                Err(match r {
                    Refused::Busy => {
                        Failure::new(Exit::Busy, "busy: too many requests are waiting for the token; try again shortly")
                    }
                    Refused::TimedOut => Failure::new(
                        Exit::Io,
                        format!("timed out after {} ms waiting for the token", self.job.timeout.as_millis()),
                    ),
                    Refused::Closed => Failure::new(
                        Exit::Busy,
                        "busy: the agent is restarting after a token call hung; try again in a moment",
                    ),
                })
            }
        }
    }
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
            file.write_all_at(p, *written)
                .map_err(|e| Failure::new(Exit::Io, format!("writing the product to the client's file: {e}")))?;
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
    fn done_with_token(&mut self) {
        self.release(true, 0);
    }
    fn token(&mut self) -> Result<Parts<'_>, Failure> {
        if self.turn.is_none() {
            self.take_turn()?;
        }
        let Some(desk) = self.turn.as_deref_mut() else {
            return Err(Failure::new(Exit::Io, "internal: the token turn vanished"));
        };
        if !desk.tokens.contains_key(&self.token_key) {
            let t = Token::open(&self.s.token_uri, &self.s.profiles)?;
            desk.tokens.insert(self.token_key.clone(), t);
        }
        // Possession first: a token bound to a reader is there only while its card is.
        let gate = desk
            .tokens
            .get(&self.token_key)
            .and_then(|t| reader_of(t, &self.s.config.agent).map(|(r, strict)| (t.label.clone(), r, strict)));
        if let Some((label, reader, strict)) = gate {
            let refuse = match self.agent.readers.card_in(&reader) {
                Some(true) => None,
                Some(false) => Some(format!("token '{label}' is not present: insert the card in reader '{reader}'")),
                None if strict => Some(format!("token '{label}' follows reader '{reader}', which PC/SC does not show (is pcscd running, is the reader connected?)")),
                None => None,
            };
            if let Some(msg) = refuse {
                desk.tokens.remove(&self.token_key);
                return Err(TokenError::NotPresent(msg).into());
            }
        }
        let token = desk
            .tokens
            .get_mut(&self.token_key)
            .ok_or_else(|| Failure::new(Exit::Io, "internal: token vanished from the agent's table"))?;
        Ok(Parts { allow_final_pin_try: self.allow_final_pin_try, s: &self.s, token, prompt: &self.prompt })
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
            let ev = Response {
                v: VERSION,
                ok: true,
                event: Some("pin-needed".into()),
                notes: vec![format!("token '{}': {}", request.token, request.operation)],
                ..Default::default()
            };
            subs.retain(|s| s.send(ev.clone()).is_ok());
        }
        // A person typing a PIN is not a hung card: the watchdog looks away meanwhile.
        self.dog.leave();
        let pin = self.inner.ask(request);
        self.dog.enter(&self.method);
        pin
    }
}
