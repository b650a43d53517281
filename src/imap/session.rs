//! One mail client's IMAP session with the door (imap-next's server flows over a blocking
//! socket): log in with the client secret, list the mail store's mailboxes, select one, fetch
//! from its mirror. What the door does not do is refused with NO, never half done.

use super::search::contains;
use super::structure::Tree;
use super::{Folder, Shared};
use imap_next::imap_types::auth::{AuthMechanism, AuthenticateData};
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::{IString, Literal, NString, Tag, Vec1};
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::fetch::{Macro, MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName, Section};
use imap_next::imap_types::flag::FlagFetch;
use imap_next::imap_types::flag::{Flag, FlagPerm, StoreResponse, StoreType};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Capability, Code, Data, Greeting, Status};
use imap_next::imap_types::search::SearchKey;
use imap_next::imap_types::sequence::{SeqOrUid, Sequence, SequenceSet};
use imap_next::server::{Event, Options, Server};
use imap_next::{Interrupt, Io, State};
use secrecy::ExposeSecret;
use std::io::{Read, Write};
use std::num::NonZeroU32;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Wrong logins on one connection before it is closed.
const MAX_AUTH_FAILURES: u32 = 3;

struct Session<'a, S: Read + Write + Idle> {
    stream: Link<S>,
    /// A STARTTLS answered, the handshake to come once the OK is written.
    starttls: Option<Tag<'static>>,
    server: Server,
    shared: &'a Shared,
    authed: bool,
    failures: u32,
    /// The mailbox selected.
    selected: Option<Arc<Folder>>,
    /// Selected with EXAMINE: no flag changes, no expunging.
    read_only: bool,
    /// The door's UIDVALIDITY when the client selected: every UID the client holds is under it.
    /// When it changes (the mail store's mailbox started anew) the client is told BYE, never
    /// shown other mail under UIDs it knows.
    validity: u32,
    /// An IDLE under way: its tag, and when the client last spoke.
    idling: Option<(Tag<'static>, std::time::Instant)>,
    /// The UIDs this client knows, in sequence-number order: sequence numbers change only when
    /// the client is told (EXPUNGE, EXISTS), whatever other clients' refreshes did meanwhile.
    known: Vec<NonZeroU32>,
    /// A FETCH being answered one message at a time, each written before the next is built.
    fetching: Option<Fetching>,
    /// Commands that arrived while a FETCH was being answered.
    deferred: std::collections::VecDeque<Event>,
    done: bool,
    /// An AUTHENTICATE waiting for the client's response.
    auth_tag: Option<Tag<'static>>,
    /// Bytes the client sent before it logged in.
    before_login: usize,
    /// Bytes sent since the last whole command; a large one holds a door-wide permit.
    pending: usize,
    big: Option<super::BigInput<'a>>,
}

/// A command past this size is a large one (super::BigInput).
const SMALL_COMMAND: usize = 1 << 20;
/// The longest a large command may take to arrive (64 MiB at 110 kB/s).
const BIG_INPUT_TIME: std::time::Duration = std::time::Duration::from_secs(600);
/// The longest pause inside a large command.
const BIG_INPUT_PAUSE: std::time::Duration = std::time::Duration::from_secs(60);

/// What a client may send before it logs in (login, capability, a few refused commands).
const PRE_LOGIN_BYTES: usize = 128 << 10;

struct Fetching {
    tag: Tag<'static>,
    names: Vec<MessageDataItemName<'static>>,
    uid: bool,
    /// (sequence number, UID) still to answer.
    todo: std::collections::VecDeque<(NonZeroU32, NonZeroU32)>,
    /// Messages whose view could not be had (evicted, and the card needed to build it again).
    unshown: u32,
}

/// Items one FETCH may name (the same item twice counts once).
const MAX_FETCH_ITEMS: usize = 32;
/// Bytes one message's FETCH response may carry: a client asking for the same 64 MiB many
/// times over gets NO, not the door's memory.
const MAX_RESPONSE_BYTES: usize = 160 << 20;

/// How long a connection may stay silent: short before login (any local user can connect, and
/// connections are few), the RFC's 30 minutes after.
pub trait Idle {
    fn set_idle(&mut self, limit: std::time::Duration);
}

impl Idle for std::net::TcpStream {
    fn set_idle(&mut self, limit: std::time::Duration) {
        let _ = self.set_read_timeout(Some(limit));
    }
}

/// Silence allowed before login.
pub const LOGIN_WITHIN: std::time::Duration = std::time::Duration::from_secs(60);
/// After login: RFC 3501 §5.4 asks at least 30 minutes.
pub const IDLE_AFTER_LOGIN: std::time::Duration = std::time::Duration::from_secs(31 * 60);
/// How long a SELECT waits for a refresh under way (new mail being made into views) before it
/// answers with what is there; a NOOP, less.
const SELECT_PATIENCE: std::time::Duration = std::time::Duration::from_secs(20);
const NOOP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(2);
/// How often an idling client is told what changed (the mirror itself is refreshed every 5 s).
const IDLE_TICK: std::time::Duration = std::time::Duration::from_secs(1);

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)
}

/// The client's connection: in the clear until STARTTLS, then TLS over the same socket.
enum Link<S: Read + Write + Idle> {
    Plain(S),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, S>>),
    /// Between the two.
    Moved,
}

fn moved() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "the connection is being secured")
}

impl<S: Read + Write + Idle> Read for Link<S> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
            Link::Moved => Err(moved()),
        }
    }
}

impl<S: Read + Write + Idle> Write for Link<S> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Link::Plain(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
            Link::Moved => Err(moved()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Link::Plain(s) => s.flush(),
            Link::Tls(s) => s.flush(),
            Link::Moved => Err(moved()),
        }
    }
}

impl<S: Read + Write + Idle> Idle for Link<S> {
    fn set_idle(&mut self, limit: std::time::Duration) {
        match self {
            Link::Plain(s) => s.set_idle(limit),
            Link::Tls(s) => s.sock.set_idle(limit),
            Link::Moved => {}
        }
    }
}

/// The server's flows, as at the start of a connection (and after STARTTLS, anew).
fn new_server() -> Server {
    let greeting = Greeting::ok(None, "ssmax-card IMAP front door ready (loopback only)")
        .unwrap_or_else(|_| Greeting::ok(None, "ready").expect("a constant greeting"));
    let mut options = Options::default();
    // APPEND carries a message (the door's bound, 64 MiB); before login a client gets far less
    // (PRE_LOGIN_BYTES).
    options.max_literal_size = super::mirror::MAX_MESSAGE as u32;
    options.max_command_size = (super::mirror::MAX_MESSAGE + (64 << 10)) as u32;
    Server::new(options, greeting)
}

/// Serve one client until it logs out, closes, or breaks the protocol.
pub fn serve<S: Read + Write + Idle>(mut stream: S, shared: &Shared) -> std::io::Result<()> {
    stream.set_idle(LOGIN_WITHIN);
    let mut s = Session {
        stream: Link::Plain(stream),
        server: new_server(),
        starttls: None,
        shared,
        authed: false,
        failures: 0,
        selected: None,
        read_only: true,
        validity: 0,
        idling: None,
        known: Vec::new(),
        fetching: None,
        deferred: std::collections::VecDeque::new(),
        done: false,
        auth_tag: None,
        before_login: 0,
        pending: 0,
        big: None,
    };
    s.run()
}

fn ok(tag: &Tag<'static>, text: &'static str) -> Status<'static> {
    Status::ok(Some(tag.clone()), None, text).expect("a constant text")
}

fn no(tag: &Tag<'static>, text: &'static str) -> Status<'static> {
    Status::no(Some(tag.clone()), None, text).expect("a constant text")
}

fn bad(tag: &Tag<'static>, text: &'static str) -> Status<'static> {
    Status::bad(Some(tag.clone()), None, text).expect("a constant text")
}

impl<S: Read + Write + Idle> Session<'_, S> {
    fn run(&mut self) -> std::io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            if let Some(tag) = self.starttls.take() {
                self.secure(&tag)?;
            }
            // A FETCH under way answers one message per turn, each written before the next is
            // built; commands the client sent along wait their turn, in order.
            if self.fetching.is_some() {
                self.fetch_next();
            } else if let Some(event) = self.deferred.pop_front() {
                self.on(event);
            }
            let busy = self.fetching.is_some() || !self.deferred.is_empty();
            match self.server.next() {
                Ok(event) => {
                    self.command_done();
                    if busy {
                        self.deferred.push_back(event)
                    } else {
                        self.on(event)
                    }
                }
                Err(Interrupt::Io(Io::Output(bytes))) => self.stream.write_all(&bytes)?,
                // Everything queued is written (BYE and the tagged OK of LOGOUT among it).
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    if self.done {
                        return Ok(());
                    }
                    if busy {
                        continue;
                    }
                    let n = match self.stream.read(&mut buf) {
                        // Idling: each quiet second, what changed is told (RFC 2177).
                        Err(e) if self.idling.is_some() && is_timeout(&e) && self.big.is_none() => {
                            if self.idling.as_ref().is_some_and(|(_, t)| t.elapsed() > IDLE_AFTER_LOGIN) {
                                return Ok(());
                            }
                            self.tell_changes();
                            continue;
                        }
                        r => r?,
                    };
                    if n == 0 {
                        return Ok(());
                    }
                    if !self.authed {
                        // Any local user can connect: before login, a few short commands.
                        self.before_login += n;
                        if self.before_login > PRE_LOGIN_BYTES {
                            return Ok(());
                        }
                    }
                    // Steady but slow is no way to keep the permit from others.
                    if self.big.as_ref().is_some_and(|b| b.1.elapsed() > BIG_INPUT_TIME) {
                        return Ok(());
                    }
                    self.pending += n;
                    if self.pending > SMALL_COMMAND && self.big.is_none() {
                        // A large command (an APPEND): one of a few at a time, door-wide, and
                        // sent without long pauses.
                        self.big = Some(self.shared.big_input());
                        self.stream.set_idle(BIG_INPUT_PAUSE);
                    }
                    self.server.enqueue_input(&buf[..n]);
                }
                // A line the parser could not take: said, under its tag when it has one (a
                // client waits for its tag), and the session goes on.
                Err(Interrupt::Error(e)) => {
                    // A line refused is a command ended, as far as the permit goes.
                    self.command_done();
                    let tag = match &e {
                        imap_next::server::Error::ExpectedCrlfGotLf { discarded_bytes }
                        | imap_next::server::Error::MalformedMessage { discarded_bytes }
                        | imap_next::server::Error::LiteralTooLong { discarded_bytes }
                        | imap_next::server::Error::CommandTooLong { discarded_bytes } => {
                            tag_of(discarded_bytes.declassify())
                        }
                    };
                    let status = Status::bad(
                        tag,
                        None,
                        "the command could not be read (too long, nested too deep, or not IMAP)",
                    )
                    .expect("a constant text");
                    self.server.enqueue_status(status);
                }
            }
        }
    }

    /// A whole command came: a large one's permit goes back.
    fn command_done(&mut self) {
        self.pending = 0;
        if self.big.take().is_some() {
            self.stream.set_idle(if self.idling.is_some() { IDLE_TICK } else { IDLE_AFTER_LOGIN });
        }
    }

    /// STARTTLS is offered before login, on a connection in the clear, when the door has its
    /// certificate.
    fn offers_tls(&self) -> bool {
        !self.authed && matches!(self.stream, Link::Plain(_)) && self.shared.tls.is_some()
    }

    /// Answer STARTTLS and secure the connection (RFC 3501 §6.2.1). Whatever the client sent
    /// after STARTTLS in the clear is dropped, never taken as a command under TLS (the STARTTLS
    /// command injection of CVE-2011-0411): the flows start anew.
    fn secure(&mut self, tag: &Tag<'static>) -> std::io::Result<()> {
        let Some(tls) = self.shared.tls.as_ref() else { return Ok(()) };
        self.server.enqueue_status(ok(tag, "begin TLS now"));
        loop {
            match self.server.next() {
                Err(Interrupt::Io(Io::Output(bytes))) => self.stream.write_all(&bytes)?,
                Err(Interrupt::Io(Io::NeedMoreInput)) => break,
                // Sent in the clear after STARTTLS: dropped.
                Ok(_) | Err(Interrupt::Error(_)) => {}
            }
        }
        self.server = new_server();
        self.deferred.clear();
        // The new flows' greeting is not sent: a client gets none after STARTTLS.
        while let Err(Interrupt::Io(Io::Output(_))) = self.server.next() {}
        let Link::Plain(sock) = std::mem::replace(&mut self.stream, Link::Moved) else {
            return Err(moved());
        };
        let conn = rustls::ServerConnection::new(tls.config.clone()).map_err(std::io::Error::other)?;
        let mut stream = rustls::StreamOwned::new(conn, sock);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        self.stream = Link::Tls(Box::new(stream));
        Ok(())
    }

    fn on(&mut self, event: Event) {
        // After BYE nothing more is done, whatever the client sent along.
        if self.done {
            return;
        }
        match event {
            Event::CommandReceived { command } => self.command(command),
            Event::CommandAuthenticateReceived { command_authenticate: a } => {
                if a.mechanism != AuthMechanism::Plain {
                    let _ = self.server.authenticate_finish(no(&a.tag, "only AUTHENTICATE PLAIN"));
                } else if let Some(initial) = a.initial_response {
                    let ok = self.plain(initial.declassify().as_ref());
                    self.finish_auth(&a.tag, ok);
                } else {
                    self.auth_tag = Some(a.tag);
                    // SASL: an empty challenge, "+ " (RFC 3501 §6.2.2).
                    let empty = imap_next::imap_types::response::CommandContinuationRequest::base64(Vec::new());
                    let _ = self.server.authenticate_continue(empty);
                }
            }
            Event::AuthenticateDataReceived { authenticate_data } => {
                let tag = self.auth_tag.take();
                let Some(tag) = tag else { return };
                match authenticate_data {
                    AuthenticateData::Continue(data) => {
                        let ok = self.plain(data.declassify().as_ref());
                        self.finish_auth(&tag, ok);
                    }
                    AuthenticateData::Cancel => {
                        let _ = self.server.authenticate_finish(bad(&tag, "authentication cancelled"));
                    }
                }
            }
            Event::IdleCommandReceived { tag } => {
                if !self.authed || self.selected.is_none() {
                    let _ = self.server.idle_reject(bad(&tag, "select a mailbox first"));
                    return;
                }
                let go = imap_next::imap_types::response::CommandContinuationRequest::basic(None, "idling")
                    .expect("a constant text");
                if self.server.idle_accept(go).is_ok() {
                    self.tell_changes();
                    self.stream.set_idle(IDLE_TICK);
                    self.idling = Some((tag, std::time::Instant::now()));
                }
            }
            Event::IdleDoneReceived => {
                if let Some((tag, _)) = self.idling.take() {
                    self.stream.set_idle(IDLE_AFTER_LOGIN);
                    self.server.enqueue_status(ok(&tag, "IDLE done"));
                }
            }
            _ => {}
        }
    }

    /// SASL PLAIN: authzid NUL authcid NUL password; the door's user and client secret.
    fn plain(&self, data: &[u8]) -> bool {
        let mut it = data.split(|&b| b == 0);
        let (Some(authz), Some(user), Some(secret), None) = (it.next(), it.next(), it.next(), it.next()) else {
            return false;
        };
        (authz.is_empty() || authz == user) && self.credentials(user, secret)
    }

    fn credentials(&self, user: &[u8], secret: &[u8]) -> bool {
        let want = self.shared.s.client_secret.expose_secret().as_bytes();
        let user_ok = user == self.shared.s.client_user.as_bytes();
        bool::from(secret.ct_eq(want)) && user_ok
    }

    fn finish_auth(&mut self, tag: &Tag<'static>, ok: bool) {
        if ok {
            self.authed = true;
            self.stream.set_idle(IDLE_AFTER_LOGIN);
            let _ = self.server.authenticate_finish(ok_status(tag, "logged in"));
        } else {
            let status = self.refused(tag);
            let _ = self.server.authenticate_finish(status);
        }
    }

    /// A wrong login: NO, and the connection closed at the third.
    fn refused(&mut self, tag: &Tag<'static>) -> Status<'static> {
        self.failures += 1;
        if self.failures >= MAX_AUTH_FAILURES {
            self.done = true;
            self.server.enqueue_status(Status::bye(None, "too many wrong logins").expect("a constant text"));
        }
        no(tag, "wrong user name or client secret (ssmax-card smtp client-secret shows them)")
    }

    fn command(&mut self, command: Command<'static>) {
        let tag = command.tag;
        let command_is_close = matches!(command.body, CommandBody::Close);
        let status = match command.body {
            CommandBody::Capability => {
                self.server.enqueue_data(capabilities(self.offers_tls()));
                ok(&tag, "capabilities listed")
            }
            CommandBody::Noop | CommandBody::Check => {
                if let Some(folder) = self.selected.clone() {
                    match self.refresh(&folder, NOOP_PATIENCE) {
                        Ok(_) => self.tell_changes(),
                        Err(why) => {
                            if let Ok(s) =
                                Status::no(None, Some(Code::Alert), format!("the mail store cannot be read: {why}"))
                            {
                                self.server.enqueue_status(s);
                            }
                        }
                    }
                }
                ok(&tag, "done")
            }
            CommandBody::StartTLS => {
                if !self.offers_tls() {
                    bad(&tag, "STARTTLS is not offered now (before login, once)")
                } else {
                    // Answered, and the connection secured, in the run loop.
                    self.starttls = Some(tag);
                    return;
                }
            }
            CommandBody::Logout => {
                self.done = true;
                self.server.enqueue_status(Status::bye(None, "logging out").expect("a constant text"));
                ok(&tag, "logged out")
            }
            CommandBody::Login { username, password } => {
                let user: &[u8] = username.as_ref();
                let secret = password.declassify();
                let secret: &[u8] = secret.as_ref();
                if self.credentials(user, secret) {
                    self.authed = true;
                    self.stream.set_idle(IDLE_AFTER_LOGIN);
                    ok(&tag, "logged in")
                } else {
                    self.refused(&tag)
                }
            }
            _ if !self.authed => no(&tag, "log in first"),
            body @ (CommandBody::List { .. } | CommandBody::Lsub { .. }) => self.list(&tag, body),
            CommandBody::Select { mailbox } => self.select_mailbox(&tag, &mailbox, false),
            CommandBody::Examine { mailbox } => self.select_mailbox(&tag, &mailbox, true),
            CommandBody::Status { mailbox, item_names } => self.status(&tag, &mailbox, &item_names),
            CommandBody::Copy { sequence_set, mailbox, uid } => self.copy(&tag, &sequence_set, &mailbox, uid, false),
            CommandBody::Move { sequence_set, mailbox, uid } => self.copy(&tag, &sequence_set, &mailbox, uid, true),
            CommandBody::Append { mailbox, flags, date, message } => self.append(&tag, &mailbox, flags, date, message),
            body @ (CommandBody::Create { .. }
            | CommandBody::Delete { .. }
            | CommandBody::Rename { .. }
            | CommandBody::Subscribe { .. }
            | CommandBody::Unsubscribe { .. }) => self.pass(&tag, body),
            CommandBody::Store { sequence_set, kind, response, flags, uid } => {
                if self.selected.is_none() {
                    bad(&tag, "select a mailbox first")
                } else if self.read_only {
                    no(&tag, "the mailbox is selected read-only (EXAMINE)")
                } else {
                    self.store(&tag, &sequence_set, kind, response, flags, uid)
                }
            }
            CommandBody::Search { charset, criteria, uid } => {
                if self.selected.is_none() {
                    bad(&tag, "select a mailbox first")
                } else if charset.as_ref().is_some_and(|c| {
                    let c: &str = c.as_ref();
                    !c.eq_ignore_ascii_case("utf-8") && !c.eq_ignore_ascii_case("us-ascii")
                }) {
                    Status::no(Some(tag.clone()), Some(Code::BadCharset { allowed: Vec::new() }), "UTF-8 or US-ASCII")
                        .unwrap_or_else(|_| no(&tag, "UTF-8 or US-ASCII"))
                } else if super::search::too_deep(criteria.as_ref()) {
                    bad(&tag, "the search nests too deep")
                } else {
                    self.search(&tag, criteria.as_ref(), uid)
                }
            }
            CommandBody::Expunge => self.expunge(&tag, None),
            CommandBody::ExpungeUid { sequence_set } => self.expunge(&tag, Some(&sequence_set)),
            CommandBody::Fetch { sequence_set, macro_or_item_names, uid } => {
                if self.selected.is_none() {
                    bad(&tag, "select a mailbox first")
                } else {
                    let status = self.fetch(&tag, &sequence_set, macro_or_item_names, uid);
                    if self.fetching.is_some() {
                        // Answered message by message from the run loop.
                        return;
                    }
                    status
                }
            }
            CommandBody::Close | CommandBody::Unselect => {
                // CLOSE removes what is marked \Deleted, without telling (RFC 3501 §6.4.2).
                if let (true, Some(folder), false) = (command_is_close, self.selected.clone(), self.read_only) {
                    if let Err(why) = self.shared.expunge(&folder, self.validity, &self.deleted(None)) {
                        eprintln!("ssmax-card imap: CLOSE could not expunge: {why}");
                    }
                }
                self.selected = None;
                self.known.clear();
                ok(&tag, "closed")
            }
            _ => no(&tag, "not offered by the door yet"),
        };
        self.server.enqueue_status(status);
    }

    /// Bring the mirror up to the upstream: the messages now there, or why the upstream could
    /// not be read (one line of printable text, for a NO).
    fn refresh(&mut self, folder: &Arc<Folder>, patience: std::time::Duration) -> Result<(), String> {
        self.shared.refresh_now(folder, patience, true).map_err(|e| one_line(&e))
    }

    fn select_mailbox(&mut self, tag: &Tag<'static>, mailbox: &Mailbox<'_>, read_only: bool) -> Status<'static> {
        // A SELECT that fails leaves no mailbox selected (RFC 3501 §6.3.1).
        self.selected = None;
        self.known.clear();
        let folder = match self.open(mailbox) {
            Ok(f) => f,
            Err(why) => return no_because(tag, &why),
        };
        self.read_only = read_only;
        self.select(tag, folder)
    }

    /// LIST or LSUB: the mail store's mailboxes, as it names them.
    fn list(&mut self, tag: &Tag<'static>, body: CommandBody<'static>) -> Status<'static> {
        match self.shared.list(body) {
            Ok(data) => {
                for d in data.into_iter().filter(|d| matches!(d, Data::List { .. } | Data::Lsub { .. })) {
                    self.server.enqueue_data(d);
                }
                ok(tag, "listed")
            }
            Err(why) => no_because(tag, &format!("the mail store cannot be read: {why}")),
        }
    }

    /// STATUS: the door's own numbers for the mailbox (its UIDs, not the mail store's), after
    /// a short wait for its refresh.
    fn status(
        &mut self,
        tag: &Tag<'static>,
        mailbox: &Mailbox<'static>,
        names: &[imap_next::imap_types::status::StatusDataItemName],
    ) -> Status<'static> {
        use imap_next::imap_types::status::{StatusDataItem as I, StatusDataItemName as N};
        let folder = match self.open(mailbox) {
            Ok(f) => f,
            Err(why) => return no_because(tag, &why),
        };
        if !folder.fresh_within(super::POLL) {
            if let Err(why) = self.shared.refresh_now(&folder, NOOP_PATIENCE, false) {
                return no_because(tag, &format!("the mail store cannot be read: {}", one_line(&why)));
            }
        }
        let m = folder.lock();
        let flagged = |flag: Flag<'static>| {
            m.state
                .entries
                .iter()
                .filter(|e| {
                    m.live.get(&e.upstream).is_some_and(|l| l.flags.iter().any(|f| *f == FlagFetch::Flag(flag.clone())))
                })
                .count() as u32
        };
        let mut items = Vec::new();
        for n in names {
            match n {
                N::Messages => items.push(I::Messages(m.state.entries.len() as u32)),
                N::Recent => items.push(I::Recent(0)),
                N::UidNext => items.extend(NonZeroU32::new(m.uidnext()).map(I::UidNext)),
                N::UidValidity => items.extend(NonZeroU32::new(m.uidvalidity()).map(I::UidValidity)),
                N::Unseen => {
                    // Of the messages whose flags the mail store told (all, once refreshed).
                    let told = m.state.entries.iter().filter(|e| m.live.contains_key(&e.upstream)).count() as u32;
                    items.push(I::Unseen(told.saturating_sub(flagged(Flag::Seen))))
                }
                N::Deleted => items.push(I::Deleted(flagged(Flag::Deleted))),
                _ => {}
            }
        }
        drop(m);
        self.server.enqueue_data(Data::Status { mailbox: mailbox.clone(), items: items.into() });
        ok(tag, "status")
    }

    /// COPY or MOVE: the originals, copied or moved on the mail store.
    fn copy(
        &mut self,
        tag: &Tag<'static>,
        set: &SequenceSet,
        to: &Mailbox<'static>,
        uid: bool,
        moving: bool,
    ) -> Status<'static> {
        let Some(folder) = self.selected.clone() else { return bad(tag, "select a mailbox first") };
        if moving && self.read_only {
            return no(tag, "the mailbox is selected read-only (EXAMINE)");
        }
        let uids = match self.resolve(set, uid) {
            Ok(u) => u,
            Err(why) => return bad(tag, why),
        };
        let to = match mailbox_name(to) {
            Ok(n) => n,
            Err(why) => return no_because(tag, &why),
        };
        match self.shared.copy(&folder, self.validity, &uids, &to, moving) {
            Ok(()) => {
                if moving {
                    // The moved messages are expunged here (RFC 6851 §3.3), before the OK.
                    self.tell_changes();
                }
                ok(tag, if moving { "moved" } else { "copied" })
            }
            Err(e) => not_taken(tag, &e),
        }
    }

    fn append(
        &mut self,
        tag: &Tag<'static>,
        to: &Mailbox<'static>,
        flags: Vec<Flag<'static>>,
        date: Option<DateTime>,
        message: imap_next::imap_types::extensions::binary::LiteralOrLiteral8<'static>,
    ) -> Status<'static> {
        use imap_next::imap_types::extensions::binary::LiteralOrLiteral8;
        let LiteralOrLiteral8::Literal(literal) = message else {
            return bad(tag, "BINARY is not offered");
        };
        let to = match mailbox_name(to) {
            Ok(n) => n,
            Err(why) => return no_because(tag, &why),
        };
        match self.shared.append(&to, literal, flags, date) {
            Ok(()) => ok(tag, "appended"),
            Err(e) => not_taken(tag, &e),
        }
    }

    /// CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE: the mail store's to do.
    fn pass(&mut self, tag: &Tag<'static>, body: CommandBody<'static>) -> Status<'static> {
        let what = body.name();
        let gone = match &body {
            CommandBody::Delete { mailbox } | CommandBody::Rename { from: mailbox, .. } => {
                match mailbox_name(mailbox) {
                    Ok(n) => Some(n),
                    Err(why) => return no_because(tag, &why),
                }
            }
            _ => None,
        };
        // The mailbox selected is not deleted or renamed under the client's feet.
        if gone.is_some() && self.selected.as_ref().is_some_and(|f| Some(&f.name) == gone.as_ref()) {
            return no(tag, "the mailbox is selected: close it first");
        }
        match self.shared.pass(body, what, gone.as_deref()) {
            Ok(()) => ok(tag, "done"),
            Err(why) => no_because(tag, &why),
        }
    }

    /// The door's state of `mailbox`.
    fn open(&self, mailbox: &Mailbox<'_>) -> Result<Arc<Folder>, String> {
        self.shared.existing_folder(&mailbox_name(mailbox)?)
    }

    fn select(&mut self, tag: &Tag<'static>, folder: Arc<Folder>) -> Status<'static> {
        match self.refresh(&folder, SELECT_PATIENCE) {
            Ok(_) => {}
            Err(why) => {
                self.selected = None;
                return Status::no(
                    Some(tag.clone()),
                    Some(Code::Alert),
                    format!("the mail store cannot be read: {why}"),
                )
                .unwrap_or_else(|_| no(tag, "the mail store cannot be read (the door's log says why)"));
            }
        }
        let mirror = folder.lock();
        self.known = mirror.uids().into_iter().filter_map(NonZeroU32::new).collect();
        self.validity = mirror.uidvalidity();
        self.server.enqueue_data(Data::Flags(vec![
            Flag::Seen,
            Flag::Answered,
            Flag::Flagged,
            Flag::Deleted,
            Flag::Draft,
        ]));
        self.server.enqueue_data(Data::Exists(self.known.len() as u32));
        self.server.enqueue_data(Data::Recent(0));
        if let Some(v) = NonZeroU32::new(mirror.uidvalidity()) {
            if let Ok(s) = Status::ok(None, Some(Code::UidValidity(v)), "UIDs valid") {
                self.server.enqueue_status(s);
            }
        }
        if let Some(n) = NonZeroU32::new(mirror.uidnext()) {
            if let Ok(s) = Status::ok(None, Some(Code::UidNext(n)), "predicted next UID") {
                self.server.enqueue_status(s);
            }
        }
        if !self.read_only {
            let mut permanent: Vec<FlagPerm<'static>> =
                [Flag::Seen, Flag::Answered, Flag::Flagged, Flag::Deleted, Flag::Draft]
                    .into_iter()
                    .map(FlagPerm::Flag)
                    .collect();
            permanent.push(FlagPerm::Asterisk);
            if let Ok(s) = Status::ok(None, Some(Code::PermanentFlags(permanent)), "flags are kept on the mail store") {
                self.server.enqueue_status(s);
            }
        }
        drop(mirror);
        self.selected = Some(folder);
        if self.read_only {
            Status::ok(Some(tag.clone()), Some(Code::ReadOnly), "selected, read-only").expect("a constant text")
        } else {
            Status::ok(Some(tag.clone()), Some(Code::ReadWrite), "selected").expect("a constant text")
        }
    }

    /// Tell the client what changed in the mailbox since it was last told: each message gone
    /// (EXPUNGE, highest sequence number first, so the others' numbers hold), then how many
    /// there are (EXISTS) when new ones came.
    fn tell_changes(&mut self) {
        let Some(folder) = self.selected.clone() else { return };
        // Selected (idling, too): kept up to date for as long.
        folder.watch();
        let (validity, now): (u32, Vec<NonZeroU32>) = {
            let m = folder.lock();
            (m.uidvalidity(), m.uids().into_iter().filter_map(NonZeroU32::new).collect())
        };
        if validity != self.validity {
            self.mailbox_changed();
            return;
        }
        for i in (0..self.known.len()).rev() {
            if now.binary_search(&self.known[i]).is_err() {
                self.known.remove(i);
                if let Some(seq) = NonZeroU32::new(i as u32 + 1) {
                    self.server.enqueue_data(Data::Expunge(seq));
                }
            }
        }
        let last = self.known.last().copied();
        let before = self.known.len();
        self.known.extend(now.into_iter().filter(|u| last.is_none_or(|l| *u > l)));
        if self.known.len() != before {
            self.server.enqueue_data(Data::Exists(self.known.len() as u32));
        }
    }

    /// The mail store's mailbox started anew under the client: its UIDs name nothing now. BYE
    /// (RFC 3501 §2.3.1.1: a client learns a new UIDVALIDITY at SELECT), nothing more done.
    fn mailbox_changed(&mut self) {
        self.done = true;
        self.fetching = None;
        let bye =
            Status::bye(None, "the mailbox changed on the mail store (new UIDVALIDITY); connect and select it again")
                .expect("a constant text");
        self.server.enqueue_status(bye);
    }

    /// The door UIDs `set` names (by UID or sequence number) among those the client knows.
    fn resolve(&self, set: &SequenceSet, uid: bool) -> Result<Vec<u32>, &'static str> {
        let last_seq = self.known.len() as u32;
        let last_uid = self.known.last().map(|u| u.get()).unwrap_or(0);
        if !uid && set.0.as_ref().iter().any(|s| past(s, last_seq)) {
            return Err("no message with that sequence number");
        }
        Ok(self
            .known
            .iter()
            .enumerate()
            .filter(
                |(i, k)| if uid { contains(set, k.get(), last_uid) } else { contains(set, *i as u32 + 1, last_seq) },
            )
            .map(|(_, k)| k.get())
            .collect())
    }

    fn store(
        &mut self,
        tag: &Tag<'static>,
        set: &SequenceSet,
        kind: StoreType,
        response: StoreResponse,
        flags: Vec<Flag<'static>>,
        uid: bool,
    ) -> Status<'static> {
        let uids = match self.resolve(set, uid) {
            Ok(u) => u,
            Err(why) => return bad(tag, why),
        };
        let Some(folder) = self.selected.clone() else { return bad(tag, "select a mailbox first") };
        match self.shared.store(&folder, self.validity, &uids, kind, flags) {
            Ok(changed) => {
                for (door, flags) in changed {
                    let Some(at) = self.known.iter().position(|k| k.get() == door) else { continue };
                    let (Some(seq), Some(u)) = (NonZeroU32::new(at as u32 + 1), NonZeroU32::new(door)) else {
                        continue;
                    };
                    if response == StoreResponse::Silent {
                        continue;
                    }
                    let mut items = vec![MessageDataItem::Flags(without_recent(&flags))];
                    if uid {
                        items.insert(0, MessageDataItem::Uid(u));
                    }
                    if let Ok(items) = Vec1::try_from(items) {
                        self.server.enqueue_data(Data::Fetch { seq, items });
                    }
                }
                ok(tag, "flags stored")
            }
            Err(why) => {
                eprintln!("ssmax-card imap: STORE: {why}");
                no(tag, "the mail store did not take the flags (the door's log says why)")
            }
        }
    }

    /// The door UIDs the client knows that are marked \Deleted (and in `set`, if given).
    fn deleted(&self, set: Option<&SequenceSet>) -> Vec<u32> {
        let within = set.map(|s| self.resolve(s, true).unwrap_or_default());
        let Some(folder) = self.selected.clone() else { return Vec::new() };
        let m = folder.lock();
        self.known
            .iter()
            .map(|k| k.get())
            .filter(|u| within.as_ref().is_none_or(|w| w.contains(u)))
            .filter(|u| {
                m.entry(*u)
                    .and_then(|e| m.live.get(&e.upstream))
                    .is_some_and(|l| l.flags.iter().any(|f| matches!(f, FlagFetch::Flag(Flag::Deleted))))
            })
            .collect()
    }

    /// SEARCH on the views (search.rs): the matching sequence numbers, or UIDs for UID SEARCH.
    fn search(&mut self, tag: &Tag<'static>, keys: &[SearchKey<'static>], uid: bool) -> Status<'static> {
        let last_seq = self.known.len() as u32;
        let last_uid = self.known.last().map(|u| u.get()).unwrap_or(0);
        let Some(folder) = self.selected.clone() else { return bad(tag, "select a mailbox first") };
        let mut found = Vec::new();
        for (i, known) in self.known.iter().enumerate() {
            let seq = i as u32 + 1;
            let Some((flags, date, size)) = ({
                let m = folder.lock();
                if m.uidvalidity() != self.validity {
                    drop(m);
                    self.mailbox_changed();
                    return no(tag, "the mailbox changed");
                }
                m.entry(known.get()).map(|e| {
                    let live = m.live.get(&e.upstream);
                    (
                        live.map(|l| l.flags.clone()).unwrap_or_default(),
                        live.and_then(|l| l.internal_date.clone()),
                        e.size,
                    )
                })
            }) else {
                continue;
            };
            let shared = self.shared;
            let door_uid = known.get();
            let validity = self.validity;
            let folder = &folder;
            let mut view = move || shared.view(folder, validity, door_uid).ok();
            let mut c = super::search::Candidate::new(
                seq,
                door_uid,
                last_seq,
                last_uid,
                &flags,
                date.as_ref(),
                size,
                &mut view,
            );
            if super::search::matches(keys, &mut c) {
                if let Some(n) = NonZeroU32::new(if uid { door_uid } else { seq }) {
                    found.push(n);
                }
            }
        }
        self.server.enqueue_data(Data::Search(found));
        ok(tag, "searched")
    }

    fn expunge(&mut self, tag: &Tag<'static>, set: Option<&SequenceSet>) -> Status<'static> {
        let Some(folder) = self.selected.clone() else { return bad(tag, "select a mailbox first") };
        if self.read_only {
            return no(tag, "the mailbox is selected read-only (EXAMINE)");
        }
        match self.shared.expunge(&folder, self.validity, &self.deleted(set)) {
            Ok(()) => {
                self.tell_changes();
                ok(tag, "expunged")
            }
            Err(why) => {
                eprintln!("ssmax-card imap: EXPUNGE: {why}");
                no(tag, "the mail store did not expunge (the door's log says why)")
            }
        }
    }

    fn fetch(
        &mut self,
        tag: &Tag<'static>,
        set: &SequenceSet,
        names: MacroOrMessageDataItemNames<'static>,
        uid: bool,
    ) -> Status<'static> {
        let names = match names {
            MacroOrMessageDataItemNames::Macro(m) => {
                use MessageDataItemName::{Body, Envelope, Flags, InternalDate, Rfc822Size};
                match m {
                    Macro::Fast => vec![Flags, InternalDate, Rfc822Size],
                    Macro::All => vec![Flags, InternalDate, Rfc822Size, Envelope],
                    Macro::Full => vec![Flags, InternalDate, Rfc822Size, Envelope, Body],
                    _ => return bad(tag, "unknown FETCH macro"),
                }
            }
            MacroOrMessageDataItemNames::MessageDataItemNames(n) => n,
        };
        // BINARY (RFC 3516) is not announced.
        if names
            .iter()
            .any(|n| matches!(n, MessageDataItemName::Binary { .. } | MessageDataItemName::BinarySize { .. }))
        {
            return bad(tag, "BINARY is not offered");
        }
        let mut unique: Vec<MessageDataItemName<'static>> = Vec::new();
        for n in names {
            if !unique.contains(&n) {
                unique.push(n);
            }
        }
        if unique.len() > MAX_FETCH_ITEMS {
            return bad(tag, "too many items in one FETCH");
        }
        let last_seq = self.known.len() as u32;
        let last_uid = self.known.last().map(|u| u.get()).unwrap_or(0);
        if !uid && set.0.as_ref().iter().any(|s| past(s, last_seq)) {
            return bad(tag, "no message with that sequence number");
        }
        let mut todo = std::collections::VecDeque::new();
        for (i, known) in self.known.iter().enumerate() {
            let seq = i as u32 + 1;
            let wanted = if uid { contains(set, known.get(), last_uid) } else { contains(set, seq, last_seq) };
            if let (true, Some(seq)) = (wanted, NonZeroU32::new(seq)) {
                todo.push_back((seq, *known));
            }
        }
        self.fetching = Some(Fetching { tag: tag.clone(), names: unique, uid, todo, unshown: 0 });
        // The tagged answer comes after the last message (fetch_next).
        Status::ok(None, None, "fetching").expect("a constant text")
    }

    /// Answer the next message of the FETCH under way, or end it.
    fn fetch_next(&mut self) {
        let Some(f) = self.fetching.as_mut() else { return };
        let Some((seq, uid)) = f.todo.pop_front() else {
            let tag = f.tag.clone();
            let unshown = f.unshown;
            self.fetching = None;
            self.server.enqueue_status(if unshown == 0 {
                ok(&tag, "fetched")
            } else {
                // RFC 3501 §6.4.5: NO when some of the data could not be fetched.
                no(&tag, "some messages cannot be shown now: they need the card again (the door's log says which)")
            });
            return;
        };
        let Some(folder) = self.selected.clone() else {
            self.fetching = None;
            return;
        };
        // What the client asks is read under the lock; the view, from the cache, outside it.
        if folder.lock().uidvalidity() != self.validity {
            self.mailbox_changed();
            return;
        }
        let Some(mut m) = ({
            let mirror = folder.lock();
            // Gone from the mirror since the client was last told: nothing to show (RFC 3501
            // §7.4.1 lets a server answer nothing for such a message) until EXPUNGE says so.
            mirror.entry(uid.get()).map(|e| Served {
                uid,
                flags: mirror.live.get(&e.upstream).map(|l| l.flags.clone()).unwrap_or_default(),
                internal_date: mirror.live.get(&e.upstream).and_then(|l| l.internal_date.clone()),
                size: e.size,
                view: None,
            })
        }) else {
            return;
        };
        if f.names.iter().any(needs_view) {
            match self.shared.view(&folder, self.validity, uid.get()) {
                Ok(v) => m.view = Some(v),
                Err(why) => {
                    eprintln!("ssmax-card imap: message {uid} cannot be shown now: {why}");
                    f.unshown += 1;
                    return;
                }
            }
        }
        let mut items = Vec::new();
        if f.uid {
            items.push(MessageDataItem::Uid(m.uid));
        }
        let mut bytes = 0usize;
        // The whole message asked and nothing else of its bytes (a client's download): the view
        // goes into the answer as it is, neither parsed nor copied.
        let mut whole = match f.names.iter().filter(|n| needs_view(n)).collect::<Vec<_>>()[..] {
            [n] if is_whole(n) => m.view.take(),
            _ => None,
        };
        // Sections, ENVELOPE and BODYSTRUCTURE all come from the view's bytes (structure.rs):
        // the same bytes give the same answers, for as long as the UID lives.
        let tree = m.view.as_deref().map(Tree::parse);
        for n in &f.names {
            if let Some(item) = item_for(&m, tree.as_ref(), n, &mut whole, &mut bytes) {
                if !(f.uid && matches!(item, MessageDataItem::Uid(_))) {
                    items.push(item);
                }
            }
            if bytes > MAX_RESPONSE_BYTES {
                let tag = f.tag.clone();
                self.fetching = None;
                self.server.enqueue_status(no(&tag, "the FETCH asks for too much of one message at once"));
                return;
            }
        }
        if let Ok(items) = Vec1::try_from(items) {
            self.server.enqueue_data(Data::Fetch { seq, items });
        }
    }
}

/// One message as a FETCH answers it: what the mirror knows, and its view when an item needs it.
struct Served {
    uid: NonZeroU32,
    flags: Vec<FlagFetch<'static>>,
    internal_date: Option<DateTime>,
    size: u32,
    view: Option<Vec<u8>>,
}

/// Whether answering `name` takes the message's bytes.
fn needs_view(name: &MessageDataItemName<'_>) -> bool {
    !matches!(
        name,
        MessageDataItemName::Uid
            | MessageDataItemName::Flags
            | MessageDataItemName::InternalDate
            | MessageDataItemName::Rfc822Size
    )
}

/// Whether `name` asks for the whole message (of which a FETCH may want a range).
fn is_whole(name: &MessageDataItemName<'_>) -> bool {
    matches!(name, MessageDataItemName::Rfc822 | MessageDataItemName::BodyExt { section: None, .. })
}

/// \Recent is the upstream's session's, not this one's (SELECT says 0 RECENT).
fn without_recent(flags: &[FlagFetch<'static>]) -> Vec<FlagFetch<'static>> {
    flags.iter().filter(|f| !matches!(f, FlagFetch::Recent)).cloned().collect()
}

/// The tag a command line begins with, if it begins with one.
fn tag_of(line: &[u8]) -> Option<Tag<'static>> {
    let end = line.iter().position(|&b| b == b' ').unwrap_or(0);
    Tag::try_from(String::from_utf8(line[..end].to_vec()).ok()?).ok()
}

fn ok_status(tag: &Tag<'static>, text: &'static str) -> Status<'static> {
    ok(tag, text)
}

/// A mailbox's name as the door and the mail store use it (UTF-8: modified UTF-7 is ASCII).
fn mailbox_name(mailbox: &Mailbox<'_>) -> Result<String, String> {
    match mailbox {
        Mailbox::Inbox => Ok("INBOX".into()),
        Mailbox::Other(o) => std::str::from_utf8(o.as_ref())
            .map(super::folder_name)
            .map_err(|_| "the mailbox name is not UTF-8".to_string()),
    }
}

/// One line of printable text, at most 300 characters: what a status response may carry.
fn one_line(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { ' ' } else { c }).take(300).collect()
}

/// NO, with `why` (made one line).
fn no_because(tag: &Tag<'static>, why: &str) -> Status<'static> {
    Status::no(Some(tag.clone()), None, one_line(why)).unwrap_or_else(|_| no(tag, "refused (the door's log says why)"))
}

/// NO for a COPY, MOVE or APPEND not taken, with TRYCREATE when the mailbox does not exist.
fn not_taken(tag: &Tag<'static>, e: &super::NotTaken) -> Status<'static> {
    eprintln!("ssmax-card imap: {}", e.why);
    let code = e.try_create.then_some(Code::TryCreate);
    Status::no(Some(tag.clone()), code, one_line(&e.why))
        .unwrap_or_else(|_| no(tag, "refused (the door's log says why)"))
}

fn capabilities(starttls: bool) -> Data<'static> {
    let mut caps = vec![
        Capability::Imap4Rev1,
        Capability::Auth(AuthMechanism::Plain),
        Capability::Idle,
        Capability::UidPlus,
        Capability::Unselect,
        Capability::Move,
    ];
    if starttls {
        caps.push(Capability::StartTls);
    }
    Data::Capability(Vec1::try_from(caps).expect("capabilities"))
}

/// Whether `value` is in `set` (`*` being `largest`): looked up, never expanded, so `1:4294967295`
/// costs what `1:2` does.
/// Whether `s` names a sequence number past `last` (`*` never does).
fn past(s: &Sequence, last: u32) -> bool {
    let over = |v: &SeqOrUid| matches!(v, SeqOrUid::Value(n) if n.get() > last);
    match s {
        Sequence::Single(a) => over(a),
        Sequence::Range(a, b) => over(a) && over(b),
    }
}

/// The bytes as an IMAP literal (NIL for what a literal cannot carry: a NUL byte). Taken, not
/// copied, and checked with memchr: imap-types' own check goes a byte at a time, and with the
/// copy it was about 8% of the door's CPU time in a first sync of 1 MiB mails.
fn literal(bytes: Vec<u8>) -> NString<'static> {
    if memchr::memchr(0, &bytes).is_some() {
        return NString(None);
    }
    NString(Some(IString::Literal(Literal::unvalidated(bytes))))
}

/// One FETCH item of a message, from its view (or from `whole`, the view moved out of `m`
/// for the one item that asks for the whole message).
fn item_for(
    m: &Served,
    tree: Option<&Tree<'_>>,
    name: &MessageDataItemName<'static>,
    whole: &mut Option<Vec<u8>>,
    bytes: &mut usize,
) -> Option<MessageDataItem<'static>> {
    let view = m.view.as_deref().unwrap_or_default();
    let mut all = || whole.take().unwrap_or_else(|| view.to_vec());
    let section = |s: Option<&Section<'_>>| tree.and_then(|t| t.section(s)).unwrap_or_default();
    // What the answer holds from the view, counted against the bound: the header for ENVELOPE
    // and BODYSTRUCTURE (their strings come from header fields).
    let header_len = || section(Some(&Section::Header(None))).len();
    let mut literal = |b: Vec<u8>| {
        *bytes = bytes.saturating_add(b.len());
        literal(b)
    };
    Some(match name {
        MessageDataItemName::Uid => MessageDataItem::Uid(m.uid),
        // \Recent is the upstream's session's, not this one's (SELECT says 0 RECENT).
        MessageDataItemName::Flags => MessageDataItem::Flags(without_recent(&m.flags)),
        MessageDataItemName::InternalDate => MessageDataItem::InternalDate(m.internal_date.clone()?),
        MessageDataItemName::Rfc822Size => MessageDataItem::Rfc822Size(m.size),
        MessageDataItemName::Rfc822 => MessageDataItem::Rfc822(literal(all())),
        MessageDataItemName::Rfc822Header => {
            MessageDataItem::Rfc822Header(literal(section(Some(&Section::Header(None)))))
        }
        MessageDataItemName::Rfc822Text => MessageDataItem::Rfc822Text(literal(section(Some(&Section::Text(None))))),
        MessageDataItemName::Envelope => {
            *bytes = bytes.saturating_add(header_len());
            MessageDataItem::Envelope(tree?.envelope())
        }
        MessageDataItemName::BodyStructure => {
            *bytes = bytes.saturating_add(header_len());
            MessageDataItem::BodyStructure(tree?.body_structure(true))
        }
        MessageDataItemName::Body => {
            *bytes = bytes.saturating_add(header_len());
            MessageDataItem::Body(tree?.body_structure(false))
        }
        MessageDataItemName::BodyExt { section: asked, partial, .. } => {
            // A part that is not there is an empty string (RFC 3501 leaves it to the server;
            // Dovecot does the same).
            let whole: Vec<u8> = match asked {
                None => all(),
                Some(s) => section(Some(s)),
            };
            let (data, origin) = match partial {
                // The origin as the client asked, even past the end (RFC 3501 §6.4.5).
                Some((start, len)) => {
                    let from = (*start as usize).min(whole.len());
                    let end = from.saturating_add(len.get() as usize).min(whole.len());
                    (whole[from..end].to_vec(), Some(*start))
                }
                None => (whole, None),
            };
            MessageDataItem::BodyExt { section: asked.clone(), origin, data: literal(data) }
        }
        _ => return None,
    })
}
