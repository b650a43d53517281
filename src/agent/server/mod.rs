//! The agent as a whole: what its threads share, the housekeeper and the watchdog thread. Every
//! connection is read by one event loop (event_loop.rs); a whole request runs on a request
//! thread (connection.rs, job.rs), which serves the same client's next request too when it comes
//! at once; the part of it that uses a token waits for that token's turn (turnstile.rs, desk.rs),
//! so each token serves one request at a time, in arrival order, while the others serve theirs.
//! Audit entries go to their own thread (audit_writer.rs).

use super::audit::AuditLog;
use super::desk::Desk;
use super::presence::{reader_of, Events};
use super::protocol::{
    encode_message, write_message, Call, Event, Passed, ProtocolError, Request, Response, VerifyArgs, WriteUntil,
    MAX_BODY, VERSION,
};
use super::turnstile::{Refused, Turn};
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
use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

mod audit_writer;
mod connection;
mod door;
mod event_loop;
mod job;

use audit_writer::*;
use connection::*;
use door::*;
use job::*;

/// A poisoned lock here only means another thread panicked mid-update of plain data; the data is
/// still what we need to answer clients, so go on with it rather than give up.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the event loop, the request threads, the housekeeper and the watchdog share.
struct Agent {
    desk: Mutex<Desk>,
    /// Held for reading by every request while it may call into a module; a module is
    /// re-initialised (presence.rs) only under the write lock, taken without waiting.
    modules: RwLock<()>,
    /// A module waits to be re-initialised (Desk::rescan_wanted): new requests let it go first,
    /// for a moment (a burst of them never left it one, and went on failing on the old token).
    rescan_wanted: AtomicBool,
    /// Held by a request while it looks for tokens (opens every module, a session on each
    /// token): one looks at a time.
    looking: Mutex<()>,
    /// Numbers the requests (and the housekeeper, 0) for the watchdog.
    serials: AtomicU64,
    setup: Setup,
    cfg: AgentConfig,
    readers: Readers,
    events: Events,
    dog: Arc<Watchdog>,
    audit: Option<mpsc::Sender<AuditMsg>>,
    /// The requests that hold a token's turn, by serial: the watchdog answers one when its token
    /// hangs or its client's deadline passes.
    current: Mutex<HashMap<u64, Running>>,
}

/// Close every token's line, for the restart. A hung call may hold the table's lock: then the
/// waiters are left to their deadlines (or to the restart).
fn close_lanes(agent: &Agent) {
    for _ in 0..100 {
        match agent.desk.try_lock() {
            Ok(mut d) => return d.close(),
            Err(std::sync::TryLockError::Poisoned(e)) => return e.into_inner().close(),
            Err(std::sync::TryLockError::WouldBlock) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// The watchdog's name for the housekeeper.
const HOUSEKEEPER: u64 = 0;

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

pub struct AgentArgs {
    pub socket: PathBuf,
    pub audit_log: Option<PathBuf>,
    /// The config file the agent was started with, for the token probes it starts.
    pub config_path: Option<PathBuf>,
}

pub fn run(setup: Setup, a: AgentArgs) -> Result<(), Failure> {
    crate::platform::survive_vanished_peers();
    let cfg = setup.config.agent.clone();
    if cfg.module_workers {
        crate::token::run_modules_in_workers(Duration::from_millis(cfg.token_timeout_ms.max(100)));
    }
    let listener = match activated_listener() {
        Some(l) => l,
        None => bind(&a.socket)?,
    };
    let audit_path = a.audit_log.or_else(|| cfg.audit_log.clone()).or_else(default_audit_path);
    let audit = match &audit_path {
        Some(p) => Some(AuditLog::open(p).map_err(|e| Failure::new(Exit::Io, crate::tr!("audit-failed", error = e)))?),
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
        desk: Mutex::new(Desk::new(a.config_path.clone(), cfg.clone(), events.clone(), readers.clone())),
        modules: RwLock::new(()),
        rescan_wanted: AtomicBool::new(false),
        looking: Mutex::new(()),
        serials: AtomicU64::new(HOUSEKEEPER + 1),
        setup,
        readers,
        events,
        dog: Watchdog::new(dog_limit(&cfg)),
        audit,
        current: Mutex::new(HashMap::new()),
        cfg,
    });
    let house = agent.clone();
    std::thread::Builder::new()
        .name("housekeeper".into())
        .spawn(move || housekeeper(&house))
        .map_err(|e| Failure::new(Exit::Io, crate::tr!("agent-start-presence", error = e.to_string())))?;
    let refresh = Duration::from_millis(agent.cfg.revocation_refresh_ms);
    let revocation_off = agent.setup.config.revocation == Some(crate::cms::revocation::Policy::Off);
    if !refresh.is_zero() && !revocation_off {
        let fresh = agent.clone();
        std::thread::Builder::new()
            .name("revocation-refresh".into())
            .spawn(move || refresh_revocation(&fresh, refresh))
            .map_err(|e| Failure::new(Exit::Io, crate::tr!("agent-start-refresher", error = e.to_string())))?;
    }
    let (wagent, fd) = (agent.clone(), listener.as_raw_fd());
    let own_path = listener.local_addr().ok().and_then(|a| a.as_pathname().map(Path::to_path_buf));
    std::thread::Builder::new()
        .name("watchdog".into())
        .spawn(move || watch_for_hangs(&wagent, fd, own_path))
        .map_err(|e| Failure::new(Exit::Io, crate::tr!("agent-start-watchdog", error = e.to_string())))?;
    match std::env::var(watchdog::RESTARTS_VAR) {
        Ok(n) => eprintln!("ssmax-card agent: {}", crate::tr!("agent-listening-again", socket = a.socket, restart = n)),
        Err(_) => eprintln!("ssmax-card agent: {}", crate::tr!("agent-listening", socket = a.socket)),
    }
    event_loop::serve_connections(agent, listener)
}

/// How long a request may stay in the token layer before the watchdog restarts the agent in
/// place. With module workers each call is bounded by `token_timeout_ms` on its own (the worker
/// is stopped, the agent lives on), so the restart is only the last resort behind that.
fn dog_limit(cfg: &crate::config::AgentConfig) -> Duration {
    let call = Duration::from_millis(cfg.token_timeout_ms.max(100));
    if cfg.module_workers {
        call * 4
    } else {
        call
    }
}

/// Connections the agent will not serve (another user's, one over the cap) get their answer
/// from one thread, one at a time: turning clients away must not cost a thread each. Past
/// `TURN_AWAY_QUEUE` waiting, the rest are closed unanswered.
struct TurnAway(mpsc::SyncSender<(UnixStream, Owed, Response)>);

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

/// What a request passed: its body (from the message or a descriptor), the files it passed for
/// the command (read), and the file for the reply.
struct Received {
    body: Vec<u8>,
    passed: Vec<(Passed, Vec<u8>)>,
    reply: Option<File>,
}

/// A request as its request thread runs it.
struct Job<'r> {
    req: &'r Request,
    peer: Peer,
    /// Where the command's product goes when the client passed a file for it.
    reply_file: Option<&'r File>,
    stream: &'r Arc<UnixStream>,
    deadline: Instant,
    timeout: Duration,
}

/// What the audit log will say about a request, gathered before the body moves on.
struct Audit<'a> {
    log: &'a mpsc::Sender<AuditMsg>,
    pid: i32,
    body_digest: [u8; 32],
    exe: Option<String>,
}

/// The housekeeper: forgets PINs whose time is up and looks for removed and returned tokens,
/// among the tokens no request has out.
fn housekeeper(agent: &Agent) {
    let mut wait = Duration::from_millis(agent.cfg.presence_poll_ms.max(100));
    loop {
        std::thread::sleep(wait);
        // Re-initialising a module waits for a moment when no request uses one.
        let unused = agent.modules.try_write().ok();
        let mut desk = lock(&agent.desk);
        if desk.is_closed() {
            return;
        }
        agent.dog.enter(HOUSEKEEPER, "presence check");
        wait = desk.housekeeping(unused.is_some()).0;
        agent.rescan_wanted.store(desk.rescan_wanted(), Ordering::SeqCst);
        agent.dog.leave(HOUSEKEEPER);
    }
}

/// Fetches again, ahead of their nextUpdate, the CRLs and OCSP answers the cache holds (those
/// the agent's requests fetched), so no request waits for a fetch when its entry runs out.
fn refresh_revocation(agent: &Agent, every: Duration) {
    let store = crate::crl_store::Store::from_config(&agent.setup.config);
    let ahead = Duration::from_secs(agent.cfg.revocation_refresh_ahead_minutes.saturating_mul(60));
    while !agent.dog.restarting.load(Ordering::SeqCst) {
        std::thread::sleep(every);
        for note in store.refresh(ahead) {
            eprintln!("ssmax-card agent: {}", crate::tr!("agent-revocation-refresh", note = note));
        }
    }
}

/// The watchdog thread: answers a request holding a token's turn when its client's deadline
/// passes; when a token has been inside a call past the limit, answers everyone who waits, then
/// restarts the agent in place (see watchdog.rs for why in place).
fn watch_for_hangs(agent: &Agent, listener: std::os::fd::RawFd, own_path: Option<PathBuf>) {
    let dog = &agent.dog;
    let tick = (dog.limit / 10).clamp(Duration::from_millis(50), Duration::from_secs(1));
    let (what, took) = loop {
        // Wake in time for the earliest deadline of the requests that hold a turn.
        let until_deadline =
            lock(&agent.current).values().map(|r| r.deadline.saturating_duration_since(Instant::now())).min();
        std::thread::sleep(until_deadline.map_or(tick, |d| d.min(tick)).max(Duration::from_millis(5)));
        if let Some(o) = dog.overdue() {
            break o;
        }
        let now = Instant::now();
        let late: Vec<Running> = {
            let mut current = lock(&agent.current);
            let ids: Vec<u64> = current.iter().filter(|(_, r)| now >= r.deadline).map(|(id, _)| *id).collect();
            ids.iter().filter_map(|id| current.remove(id)).collect()
        };
        for r in late {
            // The operation goes on (a token call cannot be interrupted); its product is dropped.
            let msg = crate::tr!("agent-timed-out", ms = r.timeout.as_millis() as u64);
            let _ = write_message(&mut &*r.stream, &error_response(r.id, Exit::Io, msg), &[]);
            dog.settled_for_another();
        }
    };
    dog.restarting.store(true, Ordering::SeqCst);
    let msg = crate::tr!(
        "agent-token-hung",
        seconds = format!("{:.1}", took.as_secs_f64()),
        what = what,
        limit = dog.limit.as_millis() as u64
    );
    eprintln!("ssmax-card agent: {msg}");
    // The hung call's client, and every other client a token serves right now (the restart ends
    // their calls too), are told why.
    let running: Vec<Running> = lock(&agent.current).drain().map(|(_, r)| r).collect();
    for r in running {
        let _ = write_message(&mut &*r.stream, &error_response(r.id, Exit::Io, msg.clone()), &[]);
        dog.settled_for_another();
    }
    // Whoever waits for a turn is told it may simply ask again once the agent is back. The table
    // is not locked if a hung call holds it: its lanes are closed through their own turnstiles.
    close_lanes(agent);
    {
        // Each subscriber told owes the event's writing (Watchdog::events_owed).
        let mut subs = lock(&agent.events);
        let before = subs.len();
        dog.events_owed.store(before, Ordering::SeqCst);
        let ev = Response {
            v: VERSION,
            ok: true,
            event: Some(Event::AgentRestarting),
            notes: vec![msg.clone()],
            ..Default::default()
        };
        subs.retain(|s| (s.send)(ev.clone()));
        // Those gone already owe nothing.
        for _ in subs.len()..before {
            dog.event_written();
        }
    }
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
    // Wake the event loop (blocked in its poll) so it sees the flag and stops accepting; a
    // request it has read meanwhile is answered "restarting" before the exec, never cut off. A
    // full queue wakes it as well, so this never waits.
    if let Some(p) = &own_path {
        drop(crate::platform::connect_unix(p, Duration::ZERO));
    }
    dog.drain_answers(Duration::from_secs(2));
    let err = watchdog::reexec(listener);
    // Without the exec the hung call still holds the turn: stop, so a supervisor (systemd's
    // Restart=on-failure) starts a clean agent, rather than keep a socket nobody serves.
    eprintln!("ssmax-card agent: {}", crate::tr!("agent-cannot-restart", error = err.to_string()));
    std::process::exit(Exit::Io as i32);
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
    /// This request's number for the watchdog.
    serial: u64,
    /// Taken when the command first asks for a token, held until it is done with it.
    held: Option<Held>,
    /// While the command may call into a module (see Agent::modules).
    modules: Option<RwLockReadGuard<'w, ()>>,
    /// While the command looks at every token present (between use_held or holds_token finding
    /// none and adopt_token).
    looking: Option<MutexGuard<'w, ()>>,
    refused: Option<Refused>,
    /// The watchdog answered while this request held the turn (deadline passed, token hung).
    answered_elsewhere: bool,
    /// The token used, for the audit log.
    key: Option<String>,
    token_key: String,
    prompt: EventPrompt,
}

/// pinentry on the client's terminal or display, announcing "pin-needed" to subscribers first.
struct EventPrompt {
    inner: PinentryPin,
    events: Events,
    dog: Arc<Watchdog>,
    /// The request's number for the watchdog.
    serial: u64,
    method: String,
    /// The caller asked that no PIN be asked (the IMAP door's FETCH): a PIN not cached fails.
    quiet: bool,
}
