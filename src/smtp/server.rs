//! The listening side: loopback only, AUTH before anything is accepted, one thread per client,
//! commands parsed by smtp-proto, and the reply to DATA given only after the relay took the
//! signed message.

use super::relay::Relay;
use super::SmtpConfig;
use crate::agent::client::{call_retrying, connect};
use crate::agent::protocol::{Call, Request, SendArgs};
use crate::error::{Exit, Failure};
use secrecy::{ExposeSecret, SecretString};
use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{Error as ProtoError, Request as Cmd, AUTH_LOGIN, AUTH_PLAIN};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// A command line longer than this is refused (RFC 5321 allows 512; AUTH lines are longer).
const MAX_LINE: usize = 4096;
/// Wrong logins on one connection before it is closed.
const MAX_AUTH_FAILURES: u32 = 3;
/// Connections served at once; more are told to come back (each holds a thread, and any local
/// user can connect to a loopback port, logged in or not).
const MAX_CONNECTIONS: usize = 32;

pub struct Shared {
    pub cfg: SmtpConfig,
    pub client_user: String,
    pub client_secret: SecretString,
    pub relay: Relay,
    /// The agent's socket.
    pub agent: PathBuf,
}

/// A door's listener: a loopback address only (exit 2 for another), and a vanished peer costs
/// its own connection only.
pub fn bind_loopback(listen: std::net::SocketAddr) -> Result<TcpListener, Failure> {
    crate::platform::survive_vanished_peers();
    if !listen.ip().is_loopback() {
        return Err(Failure::new(Exit::Usage, crate::tr!("smtp-loopback-only", listen = listen.to_string())));
    }
    TcpListener::bind(listen).map_err(|e| {
        Failure::new(Exit::Io, crate::tr!("smtp-cannot-listen", listen = listen.to_string(), error = e.to_string()))
    })
}

/// Listen and serve until the process is stopped.
pub fn run(shared: Shared) -> Result<(), Failure> {
    let listen = shared.cfg.listen;
    let listener = bind_loopback(listen)?;
    eprintln!(
        "ssmax-card smtp: {}",
        crate::tr!("smtp-listening", listen = listen.to_string(), relay = shared.relay.name)
    );
    let shared = Arc::new(shared);
    serve_loopback(listener, "smtp-client", b"421 4.7.0 too many connections; try again shortly\r\n", move |stream| {
        // A client that vanished or timed out only ends its own session.
        let _ = serve_tcp(stream, &shared);
    });
    Ok(())
}

/// Accept loopback clients on `listener` until the process is stopped, each on a thread of its
/// own named `name`, at most `MAX_CONNECTIONS` at once (any local user can connect, logged in
/// or not); one more is told `busy` and closed. Shared by the SMTP and IMAP front doors.
pub fn serve_loopback(
    listener: TcpListener,
    name: &str,
    busy: &'static [u8],
    serve: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    let serve = Arc::new(serve);
    let open = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if !stream.peer_addr().is_ok_and(|a| a.ip().is_loopback()) {
            continue;
        }
        if open.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= MAX_CONNECTIONS {
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            let _ = stream.write_all(busy);
            continue;
        }
        let (serve, done) = (serve.clone(), open.clone());
        let spawned = std::thread::Builder::new().name(name.into()).spawn(move || {
            // The connection is counted out before it closes: a client that has seen it close
            // and comes straight back is not turned away as one too many.
            let closes_last = stream.try_clone();
            serve(stream);
            done.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            drop(closes_last);
        });
        if spawned.is_err() {
            open.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

fn serve_tcp(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(300)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    serve(BufReader::new(stream.try_clone()?), stream, shared)
}

/// One client's session over any byte streams (TCP here; memory in the fuzz target).
pub fn serve<R: BufRead, W: Write>(r: R, w: W, shared: &Shared) -> std::io::Result<()> {
    Session { r, w, shared, authed: false, auth_failures: 0, from: None, rcpts: Vec::new() }.serve()
}

struct Session<'a, R: BufRead, W: Write> {
    r: R,
    w: W,
    shared: &'a Shared,
    authed: bool,
    auth_failures: u32,
    from: Option<String>,
    rcpts: Vec<String>,
}

/// What a command line turned out to be.
enum Line {
    Text(Vec<u8>),
    TooLong,
    Closed,
}

impl<R: BufRead, W: Write> Session<'_, R, W> {
    fn reply(&mut self, text: &str) -> std::io::Result<()> {
        self.w.write_all(text.as_bytes())?;
        self.w.write_all(b"\r\n")
    }

    fn line(&mut self) -> std::io::Result<Line> {
        let mut buf = Vec::new();
        let n = (&mut self.r).take(MAX_LINE as u64 + 1).read_until(b'\n', &mut buf)?;
        if n == 0 {
            return Ok(Line::Closed);
        }
        if buf.last() != Some(&b'\n') {
            if buf.len() > MAX_LINE {
                // Skip the rest of the over-long line.
                let mut rest = Vec::new();
                self.r.read_until(b'\n', &mut rest)?;
                return Ok(Line::TooLong);
            }
            return Ok(Line::Closed);
        }
        Ok(Line::Text(buf))
    }

    fn serve(&mut self) -> std::io::Result<()> {
        self.reply("220 localhost ssmax-card ESMTP submission front door (loopback only)")?;
        loop {
            let line = match self.line()? {
                Line::Closed => return Ok(()),
                Line::TooLong => {
                    self.reply("500 5.5.2 line too long")?;
                    continue;
                }
                Line::Text(l) => l,
            };
            let cmd = match Cmd::parse(&mut line.iter()) {
                Ok(c) => c,
                Err(ProtoError::UnknownCommand) => {
                    self.reply("500 5.5.1 unknown command")?;
                    continue;
                }
                Err(e) => {
                    self.reply(&format!("501 5.5.4 syntax error: {e:?}"))?;
                    continue;
                }
            };
            match cmd {
                Cmd::Ehlo { .. } => {
                    let max = self.shared.cfg.max_message_bytes;
                    self.reply(&format!("250-localhost ssmax-card\r\n250-AUTH PLAIN LOGIN\r\n250-SIZE {max}\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES"))?;
                }
                Cmd::Helo { .. } => self.reply("250 localhost")?,
                Cmd::Auth { mechanism, initial_response } => {
                    let initial = initial_response.to_string();
                    if !self.auth(mechanism, &initial)? {
                        return Ok(());
                    }
                }
                Cmd::Mail { from } => {
                    if !self.authed {
                        self.reply("530 5.7.0 authentication required: log in with your ssmax-card client secret")?;
                    } else if from.size > self.shared.cfg.max_message_bytes {
                        self.reply(&format!(
                            "552 5.3.4 message larger than {} bytes",
                            self.shared.cfg.max_message_bytes
                        ))?;
                    } else {
                        self.from = Some(from.address.to_string());
                        self.rcpts.clear();
                        self.reply("250 2.1.0 sender ok")?;
                    }
                }
                Cmd::Rcpt { to } => {
                    if self.from.is_none() {
                        self.reply("503 5.5.1 MAIL first")?;
                    } else if self.rcpts.len() >= self.shared.cfg.max_recipients {
                        self.reply(&format!(
                            "452 4.5.3 more than {} recipients: send the rest in another message",
                            self.shared.cfg.max_recipients
                        ))?;
                    } else {
                        self.rcpts.push(to.address.to_string());
                        self.reply("250 2.1.5 recipient ok")?;
                    }
                }
                Cmd::Data => {
                    if self.from.is_none() || self.rcpts.is_empty() {
                        self.reply("503 5.5.1 MAIL and RCPT first")?;
                        continue;
                    }
                    self.reply("354 end data with <CR><LF>.<CR><LF>")?;
                    let data = self.data()?;
                    let (from, rcpts) = (self.from.take().unwrap_or_default(), std::mem::take(&mut self.rcpts));
                    let answer = match data {
                        Received::Spooled(spool) => submit(self.shared, &from, &rcpts, &spool),
                        Received::TooLarge => format!(
                            "552 5.3.4 message larger than {} bytes; not sent",
                            self.shared.cfg.max_message_bytes
                        ),
                        Received::SpoolFailed(e) => {
                            format!("451 4.3.0 cannot hold the message for signing ({e}); not sent, try again")
                        }
                    };
                    self.reply(&answer)?;
                }
                Cmd::Rset => {
                    self.from = None;
                    self.rcpts.clear();
                    self.reply("250 2.0.0 ok")?;
                }
                Cmd::Noop { .. } => self.reply("250 2.0.0 ok")?,
                Cmd::Quit => {
                    self.reply("221 2.0.0 bye")?;
                    return Ok(());
                }
                Cmd::StartTls => self.reply("502 5.5.1 STARTTLS is not offered on loopback")?,
                _ => self.reply("502 5.5.1 command not implemented")?,
            }
        }
    }

    /// AUTH PLAIN or LOGIN against the per-user secret; false when the connection must close.
    fn auth(&mut self, mechanism: u64, initial: &str) -> std::io::Result<bool> {
        if self.authed {
            self.reply("503 5.5.1 already authenticated")?;
            return Ok(true);
        }
        let creds = match mechanism {
            AUTH_PLAIN => {
                let response = if initial.is_empty() { self.challenge("")? } else { Some(initial.to_string()) };
                response.and_then(|r| decode(&r)).and_then(|raw| {
                    let mut it = raw.split(|&b| b == 0);
                    let (_authz, user, pass) = (it.next()?, it.next()?, it.next()?);
                    Some((
                        String::from_utf8_lossy(user).into_owned(),
                        SecretString::from(String::from_utf8_lossy(pass).into_owned()),
                    ))
                })
            }
            AUTH_LOGIN => {
                let user = if initial.is_empty() { self.challenge("VXNlcm5hbWU6")? } else { Some(initial.to_string()) };
                match user.and_then(|u| decode(&u)) {
                    Some(user) => self.challenge("UGFzc3dvcmQ6")?.and_then(|p| decode(&p)).map(|p| {
                        (
                            String::from_utf8_lossy(&user).into_owned(),
                            SecretString::from(String::from_utf8_lossy(&p).into_owned()),
                        )
                    }),
                    None => None,
                }
            }
            _ => {
                self.reply("504 5.5.4 use AUTH PLAIN or LOGIN")?;
                return Ok(true);
            }
        };
        let ok = creds.is_some_and(|(user, pass)| {
            let user_ok = user.as_bytes().ct_eq(self.shared.client_user.as_bytes());
            let pass_ok = pass.expose_secret().as_bytes().ct_eq(self.shared.client_secret.expose_secret().as_bytes());
            bool::from(user_ok & pass_ok)
        });
        if ok {
            self.authed = true;
            self.reply("235 2.7.0 authenticated")?;
            return Ok(true);
        }
        self.auth_failures += 1;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.reply("421 4.7.0 too many failed logins; closing")?;
            return Ok(false);
        }
        self.reply("535 5.7.8 wrong user name or client secret ('ssmax-card smtp client-secret' shows it)")?;
        Ok(true)
    }

    /// One "334" round; None when the client cancelled ("*") or sent nothing usable.
    fn challenge(&mut self, prompt: &str) -> std::io::Result<Option<String>> {
        self.reply(&format!("334 {prompt}"))?;
        Ok(match self.line()? {
            Line::Text(l) => {
                let t = String::from_utf8_lossy(&l).trim().to_string();
                (t != "*").then_some(t)
            }
            _ => None,
        })
    }

    /// The message after DATA, dot-unstuffed, written to a spool file as it arrives (a large
    /// mail is never held whole in this process). Too large or unspoolable: read to its end and
    /// dropped, so the session stays in step.
    fn data(&mut self) -> std::io::Result<Received> {
        const FLUSH_AT: usize = 64 * 1024;
        let max = self.shared.cfg.max_message_bytes as u64;
        let mut receiver = DataReceiver::new();
        // Unlinked from the start (O_TMPFILE under $TMPDIR, private to the unit with PrivateTmp):
        // nothing is left behind whatever happens next.
        let mut spool = tempfile::tempfile().map_err(|e| e.to_string());
        let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
        let mut total = 0u64;
        loop {
            let chunk = self.r.fill_buf()?;
            if chunk.is_empty() {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "client closed during DATA"));
            }
            let mut it = chunk.iter();
            let done = receiver.ingest(&mut it, &mut buf);
            let used = chunk.len() - it.as_slice().len();
            self.r.consume(used);
            if buf.len() >= FLUSH_AT || done {
                total += buf.len() as u64;
                if let (Ok(f), true) = (&mut spool, total <= max) {
                    if let Err(e) = f.write_all(&buf) {
                        spool = Err(e.to_string());
                    }
                }
                buf.clear();
            }
            if done {
                return Ok(match spool {
                    _ if total > max => Received::TooLarge,
                    Ok(f) => Received::Spooled(f),
                    Err(e) => Received::SpoolFailed(e),
                });
            }
        }
    }
}

/// What DATA left us with.
enum Received {
    Spooled(File),
    TooLarge,
    SpoolFailed(String),
}

fn decode(b64: &str) -> Option<Vec<u8>> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim()).ok()
}

/// A header block longer than this is refused (it is read into memory to find From).
const MAX_HEADER_BLOCK: usize = 1024 * 1024;

/// SSMAX send in the agent, then the relay; the SMTP reply for the client.
fn submit(shared: &Shared, envelope_from: &str, rcpts: &[String], spool: &File) -> String {
    let head = match header_block(spool) {
        Ok(h) => h,
        Err(e) => return format!("554 5.6.0 {e}; not sent"),
    };
    let header_from = match crate::mail::Entity::parse(&head).map(|m| m.from_address()) {
        Ok(Ok(from)) => from,
        Ok(Err(crate::mail::FromError::Missing)) => {
            return "554 5.6.0 the message has no From address; not sent".into()
        }
        // RFC 5321 replies are ASCII: the reason in English, whatever the locale.
        Ok(Err(e)) => {
            return format!("554 5.6.0 {}; not sent", crate::l10n::speaking(crate::l10n::Lang::En, || e.to_string()))
        }
        Err(e) => return format!("554 5.6.0 {e}; not sent"),
    };
    // The signature binds the From header; the envelope must not claim someone else.
    if !header_from.eq_ignore_ascii_case(envelope_from) {
        return format!("553 5.7.1 MAIL FROM <{envelope_from}> is not the From address <{header_from}> the card signs for; not sent");
    }
    let signed = match sign_in_agent(shared, spool) {
        Ok(s) => s,
        Err(reply) => return reply,
    };
    match shared.relay.send(envelope_from, rcpts, &signed) {
        Ok(()) => format!("250 2.0.0 signed on the card and relayed to {}", shared.relay.name),
        Err(r) if r.permanent => format!("554 5.0.0 {}; not sent", one_line(&r.message)),
        Err(r) => format!("451 4.4.0 {}; not sent, try again", one_line(&r.message)),
    }
}

/// The message's header block, up to its empty line (or the whole message if it has no body).
fn header_block(spool: &File) -> Result<Vec<u8>, String> {
    let mut head = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n =
            spool.read_at(&mut chunk, head.len() as u64).map_err(|e| format!("reading the spooled message: {e}"))?;
        head.extend_from_slice(&chunk[..n]);
        if let Some((end, _)) = crate::mail::header_end(&head) {
            head.truncate(end);
            return Ok(head);
        }
        if n == 0 {
            return Ok(head);
        }
        if head.len() > MAX_HEADER_BLOCK {
            return Err(format!("the header block is longer than {MAX_HEADER_BLOCK} bytes"));
        }
    }
}

/// The agent's `send`: protected attachments encrypted to the organisation, signed on the card
/// (the PIN through the agent's pinentry). The message goes to the agent as the spool's
/// descriptor and comes back in another file: neither crosses the socket. Err is the SMTP reply.
fn sign_in_agent(shared: &Shared, spool: &File) -> Result<memmap2::Mmap, String> {
    let unreachable =
        |e: &dyn std::fmt::Display| format!("451 4.3.0 {}; not sent, try again", one_line(&e.to_string()));
    let local = |e: std::io::Error| format!("451 4.3.0 cannot hold the signed message ({e}); not sent, try again");
    let signed = tempfile::tempfile().map_err(local)?;
    let mut stream = connect(&shared.agent).map_err(|e| unreachable(&e))?;
    // PIN entry happens inside the time.
    let req = Request::from_door(&Call::Send(SendArgs { pss: false }), 300_000, true, true);
    let (resp, _) = call_retrying(&mut stream, &shared.agent, &req, &[], &[spool.as_fd(), signed.as_fd()])
        .map_err(|e| unreachable(&e))?;
    if resp.ok {
        let len =
            resp.body_in_fd.ok_or_else(|| unreachable(&"the agent did not say how long the signed message is"))?;
        // Mapped, not read: the relay takes it in pieces straight from the page cache. A read
        // error there would be a SIGBUS before the final dot, so the relay drops the message
        // rather than deliver part of it.
        // SAFETY: the file is unlinked and this process's own; the agent, the only other holder,
        // has finished writing it (it answered), so nothing changes or truncates it under the map.
        let map = unsafe { memmap2::Mmap::map(&signed) }.map_err(local)?;
        if map.len() as u64 != len {
            return Err(unreachable(&format!("the agent wrote {} bytes but said {len}", map.len())));
        }
        return Ok(map);
    }
    let exit = Exit::from_code(resp.exit);
    let msg = reply_text(resp.error.as_deref().unwrap_or("the agent refused the message"), exit);
    Err(match exit {
        // The card or the person can fix these; the client keeps the message.
        Exit::TokenNotPresent | Exit::WrongPin | Exit::Busy | Exit::Io | Exit::AgentUnreachable => {
            format!("451 4.7.0 {msg}; not sent, try again")
        }
        Exit::PinLocked => format!("554 5.7.0 {msg}; not sent"),
        Exit::NoKey => format!("554 5.7.1 {msg}; not sent"),
        _ => format!("554 5.6.0 {msg}; not sent"),
    })
}

/// The agent answers in the user's language (its PIN prompt is for them); an SMTP reply is
/// ASCII (RFC 5321 §4.2). A message that is not goes to the log, the reply says what kind it was.
fn reply_text(message: &str, exit: Exit) -> String {
    let line = one_line(message);
    if line.is_ascii() {
        return line;
    }
    eprintln!("ssmax-card smtp: {line}");
    let kind = match exit {
        Exit::TokenNotPresent => "the card or token is not present",
        Exit::WrongPin => "the PIN was not accepted",
        Exit::PinLocked => "the PIN is locked",
        Exit::NoKey => "no usable key or certificate on the card",
        Exit::Busy => "the agent is busy",
        Exit::VerificationFailed => "a certificate check failed",
        _ => "the agent refused the message",
    };
    format!("{kind} (the ssmax-card smtp log has the details)")
}

/// SMTP replies are one line: fold whatever a message carries.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
