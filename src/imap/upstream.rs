//! The door's connection to the organisation's mail store: an IMAP client (imap-next's flows,
//! imap-codec's parser) over a blocking socket, bounded in what it reads and how long it waits.
//! The upstream is mail the door only reads and passes on: it never gets a decrypted byte.

use imap_next::client::{Client, Event, Options};
use imap_next::imap_types::command::{Command, CommandBody};
use imap_next::imap_types::core::{AString, Tag};
use imap_next::imap_types::fetch::{MacroOrMessageDataItemNames, MessageDataItem, MessageDataItemName};
use imap_next::imap_types::flag::{Flag, FlagFetch, StoreResponse, StoreType};
use imap_next::imap_types::mailbox::Mailbox;
use imap_next::imap_types::response::{Code, Data, Status, StatusKind};
use imap_next::imap_types::sequence::SequenceSet;
use imap_next::{Interrupt, Io, State};
use secrecy::{ExposeSecret, SecretString};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::Duration;

/// The largest response the door takes from the upstream: one message with room for a
/// response's framing (the door serves messages up to 64 MiB).
const MAX_RESPONSE: u32 = 64 << 20 | 1 << 16;

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("the mail store {0}: {1}")]
    Io(String, std::io::Error),
    #[error("the mail store {0} answered what the door cannot read: {1}")]
    Protocol(String, String),
    #[error("the mail store {0} refused {1}: {2}")]
    Refused(String, &'static str, String),
    #[error("the mail store {0} closed the connection")]
    Closed(String),
    #[error("the mail store {0} refused {1}: {2}")]
    /// Refused with TRYCREATE: the mailbox named does not exist (RFC 3501 §6.3.11).
    NoMailbox(String, &'static str, String),
}

/// What of each message a FETCH brings, besides UID, flags, date and size.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Body {
    None,
    /// BODY.PEEK[HEADER]: the header fields and the blank line.
    Header,
    /// BODY.PEEK[]: the whole message.
    Whole,
}

/// One message as the upstream holds it.
pub struct Fetched {
    pub uid: u32,
    pub size: u32,
    pub flags: Vec<FlagFetch<'static>>,
    pub internal_date: Option<imap_next::imap_types::datetime::DateTime>,
    pub body: Vec<u8>,
}

/// How the door talks to the upstream: TLS from the first byte, STARTTLS (required, never
/// opportunistic), or plain (the caller allows it for a loopback upstream only).
#[derive(Clone)]
pub enum Security {
    Tls(Arc<rustls::ClientConfig>),
    Starttls(Arc<rustls::ClientConfig>),
    Plain,
}

/// The system's roots and `extra` (the config's upstream_ca, DER), for rustls with ring.
pub fn tls_config(extra: &[Vec<u8>]) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for c in native.certs {
        // One unreadable system root does not stop the others.
        let _ = roots.add(c);
    }
    for der in extra {
        roots.add(rustls_pki_types::CertificateDer::from(der.clone())).map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

enum Conn {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, TcpStream>>),
    /// Between the plain socket and its TLS wrapping.
    Moved,
}

fn moved() -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::NotConnected, "the connection is being secured")
}

impl Read for Conn {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf),
            Conn::Tls(s) => s.read(buf),
            Conn::Moved => Err(moved()),
        }
    }
}

impl Write for Conn {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.write(buf),
            Conn::Tls(s) => s.write(buf),
            Conn::Moved => Err(moved()),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => s.flush(),
            Conn::Tls(s) => s.flush(),
            Conn::Moved => Err(moved()),
        }
    }
}

/// `tcp` wrapped in TLS for `host`; the handshake completes here, so a certificate the roots do
/// not vouch for is this error, never a fallback.
fn wrap(tcp: TcpStream, host: &str, config: &Arc<rustls::ClientConfig>) -> std::io::Result<Conn> {
    let name = rustls_pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let conn = rustls::ClientConnection::new(config.clone(), name).map_err(std::io::Error::other)?;
    let mut stream = rustls::StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(Conn::Tls(Box::new(stream)))
}

/// The most characters of one UID set the door sends.
const MAX_SET_TEXT: usize = 8 << 10;

/// `uids` (in any order, repeats allowed) as texts of comma-separated ranges, each at most
/// MAX_SET_TEXT long.
fn uid_ranges(uids: &[u32]) -> Vec<String> {
    let mut sorted = uids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut sets = Vec::new();
    let mut text = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while sorted.get(i + 1).is_some_and(|&n| Some(n) == end.checked_add(1)) {
            i += 1;
            end = sorted[i];
        }
        i += 1;
        let range = if start == end { start.to_string() } else { format!("{start}:{end}") };
        if !text.is_empty() && text.len() + 1 + range.len() > MAX_SET_TEXT {
            sets.push(std::mem::take(&mut text));
        }
        if !text.is_empty() {
            text.push(',');
        }
        text.push_str(&range);
    }
    if !text.is_empty() {
        sets.push(text);
    }
    sets
}

/// The longest line (what is outside the literals) of an answer the door takes.
const MAX_LINE: usize = 8 << 20;

/// Literals at least this long are held here, not handed to the parser: imap-codec copies
/// what it is given into its message a byte at a time (`Vec::extend` from a `VecDeque`
/// drain), which was a quarter of the door's time in a first sync (about 2 ns a byte), and then
/// copies the message again into owned data. Smaller ones (flags, headers of short mail) pass.
const HELD_LITERAL: u32 = 4096;

/// The framing of the upstream's input as imap-codec's fragmentizer sees it: lines, each to its
/// first LF, and literals, each announced by `{n}` or `{n+}` ending its line before CRLF or LF.
/// A large literal is taken out and the parser gets a short literal in its place naming it
/// (`placeholder`); `take` gives the bytes back. The placeholders carry a random number of this
/// connection's, so no bytes the mail store sends can pass for one.
struct Literals {
    /// The line read so far, handed on whole (its announcement, if any, rewritten).
    line: Vec<u8>,
    /// Bytes of the literal under way still to come, and whether it is held.
    literal: Option<(u32, bool)>,
    /// The held literal being read, made its full length when announced (at most
    /// MAX_RESPONSE, as the bytes themselves would take), and how much of it has come.
    held: Vec<u8>,
    filled: usize,
    prefix: Vec<u8>,
    next: u64,
    taken: std::collections::HashMap<u64, Vec<u8>>,
    /// Literals this long and longer are held (HELD_LITERAL; the fuzz target, less).
    hold_from: u32,
}

/// What the parser gets of some input, and each held literal: (placeholder, bytes).
#[doc(hidden)]
pub type Framed = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

/// For the fuzz target `imap_upstream_framing`, which checks the framing against imap-codec's
/// own fragmentizer: `input` framed in pieces of `cut` bytes, literals from `hold_from` bytes
/// held: what the parser gets, and each held literal with its placeholder.
#[doc(hidden)]
pub fn frame_for_fuzzing(input: &[u8], cut: usize, hold_from: u32) -> Result<Framed, &'static str> {
    let mut l = Literals::new();
    l.hold_from = hold_from.max(1);
    let mut out = Vec::new();
    for piece in input.chunks(cut.max(1)) {
        // As a connection reads: into a held literal's room when one is under way.
        let room = l.room();
        let n = room.len().min(piece.len());
        room[..n].copy_from_slice(&piece[..n]);
        l.came(n);
        l.frame(&piece[n..], &mut out)?;
    }
    let held = (0..l.next).filter_map(|id| Some((l.placeholder(id), l.taken.get(&id)?.clone()))).collect();
    Ok((out, held))
}

impl Literals {
    fn new() -> Literals {
        let mut nonce = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
        let prefix = format!("ssmax-door held literal {:032x} ", u128::from_be_bytes(nonce)).into_bytes();
        Literals {
            line: Vec::new(),
            literal: None,
            held: Vec::new(),
            filled: 0,
            prefix,
            next: 0,
            taken: std::collections::HashMap::new(),
            hold_from: HELD_LITERAL,
        }
    }

    /// Append to `out` what the parser is to get of `input`.
    fn frame(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), &'static str> {
        while !input.is_empty() {
            if let Some((left, hold)) = self.literal {
                let n = input.len().min(left as usize);
                let (now, rest) = input.split_at(n);
                input = rest;
                if hold {
                    self.room()[..n].copy_from_slice(now);
                    self.came(n);
                    continue;
                }
                out.extend_from_slice(now);
                // n is at most `left`, a u32.
                let left = left - n as u32;
                self.literal = (left > 0).then_some((left, false));
                continue;
            }
            let lf = memchr::memchr(b'\n', input);
            let (now, rest) = input.split_at(lf.map_or(input.len(), |i| i + 1));
            // A line is a response's words, its literals apart: no answer the door asks for
            // has one of megabytes.
            if self.line.len() + now.len() > MAX_LINE {
                return Err("a line longer than any the door takes");
            }
            self.line.extend_from_slice(now);
            input = rest;
            if lf.is_none() {
                return Ok(());
            }
            match announcement(&self.line) {
                Some((open, length)) if length >= self.hold_from => {
                    if length > MAX_RESPONSE {
                        return Err("a literal larger than any the door takes");
                    }
                    // `{n}` (or `{n+}`) and the line's end after it: the length changes, the
                    // rest stays as it was (an LF alone still makes the parser refuse the line).
                    let close = self.line[open..].iter().position(|&b| b == b'}').map_or(self.line.len(), |c| open + c);
                    let placeholder = self.placeholder(self.next);
                    out.extend_from_slice(&self.line[..open]);
                    out.extend_from_slice(format!("{{{}}}", placeholder.len()).as_bytes());
                    out.extend_from_slice(&self.line[(close + 1).min(self.line.len())..]);
                    out.extend_from_slice(&placeholder);
                    self.held = vec![0; length as usize];
                    self.filled = 0;
                    self.literal = Some((length, true));
                }
                Some((_, length)) => {
                    out.extend_from_slice(&self.line);
                    self.literal = (length > 0).then_some((length, false));
                }
                None => out.extend_from_slice(&self.line),
            }
            self.line.clear();
            if self.line.capacity() > 1 << 20 {
                self.line = Vec::new();
            }
        }
        Ok(())
    }

    /// Where the next bytes of a held literal go: read there straight from the connection,
    /// not through the read buffer (a message is not copied once more). Empty when no held
    /// literal is under way.
    fn room(&mut self) -> &mut [u8] {
        match self.literal {
            Some((_, true)) => &mut self.held[self.filled..],
            _ => &mut [],
        }
    }

    /// `n` bytes came into `room`.
    fn came(&mut self, n: usize) {
        let Some((left, true)) = self.literal else { return };
        self.filled += n;
        // `room` is `left` bytes long.
        let left = left - n as u32;
        if left > 0 {
            self.literal = Some((left, true));
            return;
        }
        self.literal = None;
        let id = self.next;
        self.next += 1;
        self.taken.insert(id, std::mem::take(&mut self.held));
    }

    fn placeholder(&self, id: u64) -> Vec<u8> {
        let mut p = self.prefix.clone();
        p.extend_from_slice(id.to_string().as_bytes());
        p
    }

    /// The held literal `data` stands for, if it is a placeholder of this connection's.
    fn take(&mut self, data: &[u8]) -> Option<Vec<u8>> {
        let id = std::str::from_utf8(data.strip_prefix(self.prefix.as_slice())?).ok()?.parse().ok()?;
        self.taken.remove(&id)
    }
}

/// Where the literal announcement ending `line` (its last byte an LF) begins, and its length,
/// as imap-codec's fragmentizer reads it (the same states, byte for byte): `{`, digits that
/// fit a u32, an optional `+`, `}`, then CRLF or LF.
fn announcement(line: &[u8]) -> Option<(usize, u32)> {
    #[derive(Clone, Copy)]
    enum S {
        Other,
        Open,
        Digit(u32),
        Plus(u32),
        Close(u32),
        Cr(Option<u32>),
    }
    let (_, body) = line.split_last()?;
    let mut s = S::Other;
    let mut open = 0;
    for (i, &b) in body.iter().enumerate() {
        s = match (s, b) {
            (S::Close(n), b'\r') => S::Cr(Some(n)),
            (_, b'\r') => S::Cr(None),
            (_, b'{') => {
                open = i;
                S::Open
            }
            (S::Open, b'0'..=b'9') => S::Digit(u32::from(b - b'0')),
            (S::Digit(n), b'0'..=b'9') => {
                n.checked_mul(10).and_then(|n| n.checked_add(u32::from(b - b'0'))).map_or(S::Other, S::Digit)
            }
            (S::Digit(n), b'+') => S::Plus(n),
            (S::Digit(n) | S::Plus(n), b'}') => S::Close(n),
            _ => S::Other,
        };
    }
    match s {
        S::Close(n) | S::Cr(Some(n)) => Some((open, n)),
        _ => None,
    }
}

pub struct Upstream {
    name: String,
    stream: Conn,
    client: Client,
    tags: u32,
    /// Bytes read and time taken since the command under way was sent: a mail store that
    /// answers without end, or a byte a minute, costs one refresh, not the door's memory or a
    /// refresh for ever.
    read: usize,
    since: std::time::Instant,
    /// Reads are taken in large pieces: the parser looks at what it has after each, and a
    /// message of a MiB in 64 KiB pieces was looked at sixteen times.
    buf: Vec<u8>,
    /// Large literals are taken out of the input before the parser sees them (`Literals`).
    literals: Literals,
    /// What `literals` hands on to the parser, reused.
    framed: Vec<u8>,
    /// The mailbox this connection has open read-only, and its UIDVALIDITY (which a server
    /// does not change under an open mailbox: Dovecot says BYE).
    examined: Option<(String, u32)>,
    /// Whether `examined` was taken as it was (`reexamine`) since the last EXAMINE: mail that
    /// came since may not be seen yet.
    reused: bool,
}

/// The most one command's answer may be: one message at its largest, or the flags of every
/// message of a mailbox at the door's bound, with room.
const MAX_ANSWER: usize = 96 << 20;
/// The longest one command may take.
const MAX_COMMAND_TIME: Duration = Duration::from_secs(600);

impl Upstream {
    /// Connect to `addr` (`host` names it for TLS), secured as `security` says, and log in.
    pub fn login(
        addr: &str,
        host: &str,
        security: &Security,
        user: &str,
        password: &SecretString,
    ) -> Result<Upstream, UpstreamError> {
        let name = addr.to_string();
        let io = |e| UpstreamError::Io(name.clone(), e);
        let tcp = TcpStream::connect(addr).map_err(io)?;
        tcp.set_read_timeout(Some(Duration::from_secs(120))).map_err(io)?;
        tcp.set_write_timeout(Some(Duration::from_secs(60))).map_err(io)?;
        let stream = match security {
            Security::Tls(config) => wrap(tcp, host, config).map_err(io)?,
            _ => Conn::Plain(tcp),
        };
        let mut options = Options::default();
        options.max_response_size = MAX_RESPONSE;
        let mut up = Upstream {
            name,
            stream,
            client: Client::new(options.clone()),
            tags: 0,
            read: 0,
            since: std::time::Instant::now(),
            buf: vec![0; 1 << 20],
            literals: Literals::new(),
            framed: Vec::new(),
            examined: None,
            reused: false,
        };
        loop {
            if let Event::GreetingReceived { .. } = up.next()? {
                break;
            }
        }
        if let Security::Starttls(config) = security {
            up.run(CommandBody::StartTLS, "STARTTLS")?;
            let Conn::Plain(tcp) = std::mem::replace(&mut up.stream, Conn::Moved) else {
                return Err(UpstreamError::Protocol(up.name.clone(), "TLS twice".into()));
            };
            up.stream = wrap(tcp, host, config).map_err(|e| UpstreamError::Io(up.name.clone(), e))?;
            // Whatever came in the clear behind the STARTTLS OK (a man in the middle's answers)
            // is dropped with the flows that read it: new ones start under TLS (they expect a
            // greeting, which under STARTTLS none sends: one of ours).
            up.client = Client::new(options);
            up.literals = Literals::new();
            up.client.enqueue_input(b"* OK secured\r\n");
            loop {
                if let Event::GreetingReceived { .. } = up.next()? {
                    break;
                }
            }
        }
        let login = CommandBody::login(
            AString::try_from(user.to_string())
                .map_err(|e| UpstreamError::Protocol(up.name.clone(), format!("user name: {e}")))?,
            AString::try_from(password.expose_secret().to_string())
                .map_err(|_| UpstreamError::Protocol(up.name.clone(), "the password cannot be sent".into()))?,
        )
        .map_err(|e| UpstreamError::Protocol(up.name.clone(), e.to_string()))?;
        up.run(login, "LOGIN")?;
        Ok(up)
    }

    fn next(&mut self) -> Result<Event, UpstreamError> {
        loop {
            match self.client.next() {
                Ok(event) => return Ok(event),
                Err(Interrupt::Io(Io::Output(bytes))) => {
                    self.stream.write_all(&bytes).map_err(|e| UpstreamError::Io(self.name.clone(), e))?
                }
                Err(Interrupt::Io(Io::NeedMoreInput)) => {
                    if self.read > MAX_ANSWER || self.since.elapsed() > MAX_COMMAND_TIME {
                        return Err(UpstreamError::Protocol(
                            self.name.clone(),
                            "an answer larger or slower than any the door asks for".into(),
                        ));
                    }
                    let room = self.literals.room();
                    if !room.is_empty() {
                        let n = self.stream.read(room).map_err(|e| UpstreamError::Io(self.name.clone(), e))?;
                        if n == 0 {
                            return Err(UpstreamError::Closed(self.name.clone()));
                        }
                        self.read += n;
                        self.literals.came(n);
                        continue;
                    }
                    let n = self.stream.read(&mut self.buf).map_err(|e| UpstreamError::Io(self.name.clone(), e))?;
                    if n == 0 {
                        return Err(UpstreamError::Closed(self.name.clone()));
                    }
                    self.read += n;
                    // A buffer grown by one large answer does not stay that size for the
                    // connection's life.
                    if self.framed.capacity() > 4 << 20 {
                        self.framed = Vec::new();
                    }
                    self.framed.clear();
                    self.literals
                        .frame(&self.buf[..n], &mut self.framed)
                        .map_err(|e| UpstreamError::Protocol(self.name.clone(), e.into()))?;
                    if !self.framed.is_empty() {
                        self.client.enqueue_input(&self.framed);
                    }
                }
                Err(Interrupt::Error(e)) => return Err(UpstreamError::Protocol(self.name.clone(), e.to_string())),
            }
        }
    }

    /// Send one command; the untagged data that came with it, and its tagged OK.
    fn run(&mut self, body: CommandBody<'static>, what: &'static str) -> Result<Vec<Data<'static>>, UpstreamError> {
        self.tags += 1;
        let tag = Tag::try_from(format!("s{}", self.tags))
            .map_err(|e| UpstreamError::Protocol(self.name.clone(), e.to_string()))?;
        self.read = 0;
        self.since = std::time::Instant::now();
        // What the last command's caller did not take goes: held literals are bounded by one
        // answer.
        self.literals.taken.clear();
        self.client.enqueue_command(Command { tag: tag.clone(), body });
        let mut data = Vec::new();
        loop {
            match self.next()? {
                Event::DataReceived { data: d } => data.push(d),
                Event::StatusReceived { status: Status::Tagged(t) } if t.tag == tag => {
                    let text = t.body.text.to_string();
                    return match (t.body.kind, t.body.code) {
                        (StatusKind::Ok, _) => Ok(data),
                        (_, Some(Code::TryCreate)) => Err(UpstreamError::NoMailbox(self.name.clone(), what, text)),
                        _ => Err(UpstreamError::Refused(self.name.clone(), what, text)),
                    };
                }
                Event::StatusReceived { status: Status::Bye(b) } => {
                    return Err(UpstreamError::Refused(self.name.clone(), what, b.text.to_string()))
                }
                Event::CommandRejected { status, .. } => {
                    return Err(UpstreamError::Refused(self.name.clone(), what, format!("{status:?}")))
                }
                _ => {}
            }
        }
    }

    /// SELECT (read-only: EXAMINE) a mailbox: its UIDVALIDITY.
    pub fn examine(&mut self, mailbox: &str) -> Result<u32, UpstreamError> {
        self.open_mailbox(mailbox, false)
    }

    /// As `examine`, without asking again when this connection has the mailbox open already:
    /// a round trip, and the mail store opening the mailbox, for each message read. A message
    /// `fetch` does not find then (mail that came since) is looked for again after an EXAMINE.
    pub fn reexamine(&mut self, mailbox: &str) -> Result<u32, UpstreamError> {
        match &self.examined {
            Some((m, v)) if m == mailbox => {
                self.reused = true;
                Ok(*v)
            }
            _ => self.examine(mailbox),
        }
    }

    /// SELECT a mailbox read-write (for STORE and EXPUNGE): its UIDVALIDITY.
    pub fn select(&mut self, mailbox: &str) -> Result<u32, UpstreamError> {
        self.open_mailbox(mailbox, true)
    }

    fn open_mailbox(&mut self, mailbox: &str, write: bool) -> Result<u32, UpstreamError> {
        self.examined = None;
        self.reused = false;
        let name = mailbox;
        let mailbox = Mailbox::try_from(mailbox.to_string())
            .map_err(|e| UpstreamError::Protocol(self.name.clone(), e.to_string()))?;
        self.tags += 1;
        let tag = Tag::try_from(format!("s{}", self.tags))
            .map_err(|e| UpstreamError::Protocol(self.name.clone(), e.to_string()))?;
        let body = if write { CommandBody::Select { mailbox } } else { CommandBody::Examine { mailbox } };
        self.read = 0;
        self.since = std::time::Instant::now();
        self.literals.taken.clear();
        self.client.enqueue_command(Command { tag: tag.clone(), body });
        let mut validity = None;
        loop {
            match self.next()? {
                Event::StatusReceived { status: Status::Untagged(u) } => {
                    if let Some(Code::UidValidity(v)) = u.code {
                        validity = Some(v.get());
                    }
                }
                Event::StatusReceived { status: Status::Tagged(t) } if t.tag == tag => {
                    if t.body.kind != StatusKind::Ok {
                        let text = t.body.text.to_string();
                        // RFC 5530 NONEXISTENT (or TRYCREATE, as some stores say it): the mailbox
                        // is not there (forgotten by the door), as opposed to a NO for now (in
                        // use, a server's fault).
                        let gone = matches!(&t.body.code, Some(Code::TryCreate))
                            || matches!(&t.body.code, Some(Code::Other(c)) if c.inner().eq_ignore_ascii_case(b"NONEXISTENT"));
                        return Err(if gone {
                            UpstreamError::NoMailbox(self.name.clone(), "EXAMINE", text)
                        } else {
                            UpstreamError::Refused(self.name.clone(), "EXAMINE", text)
                        });
                    }
                    let validity = validity.ok_or_else(|| {
                        UpstreamError::Protocol(self.name.clone(), "no UIDVALIDITY for the mailbox".into())
                    })?;
                    if !write {
                        self.examined = Some((name.to_string(), validity));
                    }
                    return Ok(validity);
                }
                // Going away (shutting down): the connection, not the mailbox.
                Event::StatusReceived { status: Status::Bye(_) } => {
                    return Err(UpstreamError::Closed(self.name.clone()))
                }
                _ => {}
            }
        }
    }

    /// Every message whose UID is in `uids` (`n:*`), with its flags, date and whole body.
    pub fn fetch(&mut self, uids: &str, body: Body) -> Result<Vec<Fetched>, UpstreamError> {
        let out = self.fetch_once(uids, body)?;
        match self.examined.clone() {
            Some((mailbox, validity)) if out.is_empty() && self.reused => {
                // Opened again: the same mailbox still, or nothing of it is taken.
                if self.examine(&mailbox)? != validity {
                    return Ok(Vec::new());
                }
                self.fetch_once(uids, body)
            }
            _ => Ok(out),
        }
    }

    fn fetch_once(&mut self, uids: &str, body: Body) -> Result<Vec<Fetched>, UpstreamError> {
        let wants_body = !matches!(body, Body::None);
        let set = SequenceSet::try_from(uids).map_err(|e| UpstreamError::Protocol(self.name.clone(), e.to_string()))?;
        let mut items = vec![
            MessageDataItemName::Uid,
            MessageDataItemName::Flags,
            MessageDataItemName::InternalDate,
            MessageDataItemName::Rfc822Size,
        ];
        match body {
            Body::None => {}
            Body::Header => items.push(MessageDataItemName::BodyExt {
                section: Some(imap_next::imap_types::fetch::Section::Header(None)),
                partial: None,
                peek: true,
            }),
            Body::Whole => items.push(MessageDataItemName::BodyExt { section: None, partial: None, peek: true }),
        }
        let body = CommandBody::Fetch {
            sequence_set: set,
            macro_or_item_names: MacroOrMessageDataItemNames::MessageDataItemNames(items),
            uid: true,
        };
        let mut out = Vec::new();
        for d in self.run(body, "FETCH")? {
            let Data::Fetch { items, .. } = d else { continue };
            let mut f = Fetched { uid: 0, size: 0, flags: Vec::new(), internal_date: None, body: Vec::new() };
            let mut got_body = false;
            for item in items.into_iter() {
                match item {
                    MessageDataItem::Uid(u) => f.uid = u.get(),
                    MessageDataItem::Rfc822Size(n) => f.size = n,
                    MessageDataItem::Flags(fl) => f.flags = fl,
                    MessageDataItem::InternalDate(d) => f.internal_date = Some(d),
                    MessageDataItem::BodyExt { data, .. } => {
                        got_body = true;
                        f.body = data
                            .0
                            .map(|s| self.literals.take(s.as_ref()).unwrap_or_else(|| s.as_ref().to_vec()))
                            .unwrap_or_default()
                    }
                    _ => {}
                }
            }
            // A FETCH the mail store sends of its own (flags another client changed, with the
            // UID under a UID command) is not this message's answer: taken as one, its bytes
            // would be none.
            if f.uid != 0 && (got_body || !wants_body) {
                out.push(f);
            }
        }
        // What was held and not taken (an item the door does not read) goes now.
        self.literals.taken.clear();
        Ok(out)
    }

    /// UID STORE on the selected mailbox: the flags each message has afterwards, by UID.
    pub fn store(
        &mut self,
        uids: &[u32],
        kind: StoreType,
        flags: Vec<Flag<'static>>,
    ) -> Result<Vec<(u32, Vec<FlagFetch<'static>>)>, UpstreamError> {
        let mut answers = Vec::new();
        for sequence_set in self.uid_sets(uids)? {
            let body = CommandBody::Store {
                sequence_set,
                kind,
                response: StoreResponse::Answer,
                flags: flags.clone(),
                uid: true,
            };
            answers.extend(self.run(body, "STORE")?);
        }
        let mut out = Vec::new();
        for d in answers {
            let Data::Fetch { items, .. } = d else { continue };
            let (mut uid, mut flags) = (0, None);
            for item in items.into_iter() {
                match item {
                    MessageDataItem::Uid(u) => uid = u.get(),
                    MessageDataItem::Flags(f) => flags = Some(f),
                    _ => {}
                }
            }
            if let (true, Some(f)) = (uid != 0, flags) {
                out.push((uid, f));
            }
        }
        Ok(out)
    }

    /// UID EXPUNGE (RFC 4315) on the selected mailbox: only these messages go, whatever else
    /// another client marked \Deleted meanwhile.
    pub fn uid_expunge(&mut self, uids: &[u32]) -> Result<(), UpstreamError> {
        for sequence_set in self.uid_sets(uids)? {
            self.run(CommandBody::ExpungeUid { sequence_set }, "UID EXPUNGE")?;
        }
        Ok(())
    }

    /// A command as a client sent it (CREATE, LIST, …): the untagged data that came with it.
    pub fn pass(
        &mut self,
        body: CommandBody<'static>,
        what: &'static str,
    ) -> Result<Vec<Data<'static>>, UpstreamError> {
        self.run(body, what)
    }

    /// UID COPY (or UID MOVE, RFC 6851) from the selected mailbox to `to`.
    pub fn copy(&mut self, uids: &[u32], to: &str, moving: bool) -> Result<(), UpstreamError> {
        let mailbox = self.mailbox(to)?;
        for sequence_set in self.uid_sets(uids)? {
            let mailbox = mailbox.clone();
            let (body, what) = if moving {
                (CommandBody::Move { sequence_set, mailbox, uid: true }, "MOVE")
            } else {
                (CommandBody::Copy { sequence_set, mailbox, uid: true }, "COPY")
            };
            self.run(body, what)?;
        }
        Ok(())
    }

    /// APPEND `message` to mailbox `to`.
    pub fn append(
        &mut self,
        to: &str,
        message: imap_next::imap_types::core::Literal<'static>,
        flags: Vec<Flag<'static>>,
        date: Option<imap_next::imap_types::datetime::DateTime>,
    ) -> Result<(), UpstreamError> {
        let mailbox = self.mailbox(to)?;
        // The client's literal itself, not a copy of its 64 MiB (sent synchronising: whether the
        // mail store takes LITERAL+ is not asked).
        let message = imap_next::imap_types::extensions::binary::LiteralOrLiteral8::Literal(message.into_sync());
        self.run(CommandBody::Append { mailbox, flags, date, message }, "APPEND").map(|_| ())
    }

    fn mailbox(&self, name: &str) -> Result<Mailbox<'static>, UpstreamError> {
        Mailbox::try_from(name.to_string()).map_err(|e| UpstreamError::Protocol(self.name.clone(), e.to_string()))
    }

    /// `uids` as UID sets of ranges (`3:7,9`), each short enough for any mail store's command
    /// line (Dovecot's is 64 KiB): a thousand scattered UIDs are a few commands.
    fn uid_sets(&self, uids: &[u32]) -> Result<Vec<SequenceSet>, UpstreamError> {
        uid_ranges(uids)
            .iter()
            .map(|t| SequenceSet::try_from(t.as_str()))
            .collect::<Result<_, _>>()
            .map_err(|e| UpstreamError::Protocol(self.name.clone(), e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mail store on loopback that answers each command line with `answer(line)`.
    fn scripted_store(answer: fn(&str) -> String) -> String {
        use std::io::{BufRead, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut out = stream.try_clone().unwrap();
            out.write_all(b"* OK ready\r\n").unwrap();
            for line in std::io::BufReader::new(stream).lines() {
                let Ok(line) = line else { return };
                if out.write_all(answer(&line).as_bytes()).is_err() {
                    return;
                }
            }
        });
        addr
    }

    #[test]
    fn a_fetch_the_store_sends_of_its_own_is_not_taken_for_the_message_asked_for() {
        // Flags another client changed, sent with the UID (as under a UID command) before and
        // after the answer: the message's bytes are the answer's, not none.
        let addr = scripted_store(|line| {
            let tag = line.split(' ').next().unwrap_or("*");
            if line.contains("FETCH") {
                format!("* 1 FETCH (UID 12 FLAGS (\\Seen))\r\n* 1 FETCH (UID 12 FLAGS () RFC822.SIZE 5 BODY[] {{5}}\r\nhello)\r\n* 1 FETCH (FLAGS (\\Seen) UID 12)\r\n{tag} OK done\r\n")
            } else {
                format!("{tag} OK done\r\n")
            }
        });
        let mut up = Upstream::login(&addr, "127.0.0.1", &Security::Plain, "bob", &"pw".to_string().into()).unwrap();
        let got = up.fetch("12", Body::Whole).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!((got[0].uid, got[0].body.as_slice()), (12, &b"hello"[..]));
        // Asked for flags alone, every FETCH with a UID counts.
        assert_eq!(up.fetch("12", Body::None).unwrap().len(), 3);
    }

    #[test]
    fn uids_go_as_ranges_in_sets_no_mail_store_finds_too_long() {
        assert_eq!(uid_ranges(&[9, 3, 4, 5, 7, 4]), ["3:5,7,9"]);
        assert_eq!(uid_ranges(&[u32::MAX, u32::MAX - 1]), [format!("{}:{}", u32::MAX - 1, u32::MAX)]);
        assert!(uid_ranges(&[]).is_empty());
        let scattered: Vec<u32> = (0..20_000).map(|i| i * 2 + 1).collect();
        let sets = uid_ranges(&scattered);
        assert!(sets.len() > 1 && sets.iter().all(|s| s.len() <= super::MAX_SET_TEXT));
        let back: Vec<u32> = sets.iter().flat_map(|s| s.split(',')).map(|n| n.parse().unwrap()).collect();
        assert_eq!(back, scattered);
    }

    #[test]
    fn a_literal_is_announced_as_the_fragmentizer_reads_it() {
        assert_eq!(announcement(b"* 1 FETCH (BODY[] {5}\r\n"), Some((18, 5)));
        assert_eq!(announcement(b"* 1 FETCH (BODY[] {5}\n"), Some((18, 5)));
        assert_eq!(announcement(b"x {{0012+}\r\n"), Some((3, 12)));
        assert_eq!(announcement(b"x ~{7}\r\n"), Some((3, 7)));
        for no in [
            &b"x {5} \r\n"[..],
            b"x {5}\r\r\n",
            b"x {}\r\n",
            b"x {+}\r\n",
            b"x {5+3}\r\n",
            b"x {99999999999}\r\n",
            b"x 5}\r\n",
            b"\n",
        ] {
            assert_eq!(announcement(no), None, "{:?}", String::from_utf8_lossy(no));
        }
    }

    #[test]
    fn a_large_literal_is_held_and_the_parser_gets_its_placeholder_however_the_input_is_cut() {
        let body: Vec<u8> = (0..HELD_LITERAL as usize + 10).map(|i| b"ab{9}\r\n"[i % 7]).collect();
        let mut input = format!("* 1 FETCH (UID 4 BODY[] {{{}}}\r\n", body.len()).into_bytes();
        input.extend_from_slice(&body);
        input.extend_from_slice(b" FLAGS (\\Seen {x})\r\n* 2 FETCH (BODY[HEADER] {3}\r\nA\r\n)\r\ns1 OK done\r\n");
        let mut first: Option<(Vec<u8>, Vec<u8>)> = None;
        for cut in [1, 2, 3, 7, 100, 4096, input.len()] {
            let mut l = Literals::new();
            let mut out = Vec::new();
            for piece in input.chunks(cut) {
                l.frame(piece, &mut out).unwrap();
            }
            let placeholder = l.placeholder(0);
            let want = [
                format!("* 1 FETCH (UID 4 BODY[] {{{}}}\r\n", placeholder.len()).as_bytes(),
                &placeholder,
                b" FLAGS (\\Seen {x})\r\n* 2 FETCH (BODY[HEADER] {3}\r\nA\r\n)\r\ns1 OK done\r\n",
            ]
            .concat();
            assert_eq!(out, want, "cut {cut}");
            assert_eq!(l.take(&placeholder).as_deref(), Some(body.as_slice()));
            // Given once; another connection's placeholder, or the bytes themselves, are not one.
            assert_eq!(l.take(&placeholder), None);
            assert_eq!(l.take(&Literals::new().placeholder(0)), None);
            first.get_or_insert((out, placeholder));
        }
        assert!(first.is_some());
        let mut l = Literals::new();
        let too_large = format!("* 1 FETCH (BODY[] {{{}}}\r\n", MAX_RESPONSE + 1);
        assert!(l.frame(too_large.as_bytes(), &mut Vec::new()).is_err());
    }
}
