//! The listening side: loopback only, AUTH before anything is accepted (session.rs), every
//! client on one event loop (event_loop.rs), and the reply to DATA given only after the relay
//! took the signed message.

use super::relay::Relay;
use super::session::{Session, GREETING};
use super::SmtpConfig;
use crate::agent::client::{call_retrying, connect};
use crate::agent::protocol::{Call, Request, SendArgs};
use crate::error::{Exit, Failure};
use secrecy::SecretString;
use std::fs::File;
use std::io::{BufRead, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

/// Connections the IMAP door serves at once; more are told to come back (each holds a thread,
/// and any local user can connect to a loopback port, logged in or not).
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
    super::event_loop::serve_connections(listener, shared)
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

/// One client's session over any byte streams, read and written blocking (memory in the fuzz
/// target); a message is signed and relayed in line. The door itself drives the same session
/// from its event loop (event_loop.rs).
pub fn serve<R: BufRead, W: Write>(mut r: R, mut w: W, shared: &Shared) -> std::io::Result<()> {
    let (mut session, mut input, mut out) = (Session::default(), Vec::new(), GREETING.to_vec());
    loop {
        w.write_all(&out)?;
        out.clear();
        if session.is_closed() {
            return Ok(());
        }
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(());
        }
        input.extend_from_slice(chunk);
        let n = chunk.len();
        r.consume(n);
        while let Some(m) = session.feed(&mut input, &mut out, usize::MAX, shared) {
            let reply = submit(shared, &m.from, &m.rcpts, &m.spool);
            session.submitted(&reply, &mut out);
        }
    }
}

/// A header block longer than this is refused (it is read into memory to find From).
const MAX_HEADER_BLOCK: usize = 1024 * 1024;

/// SSMAX send in the agent, then the relay; the SMTP reply for the client.
pub(super) fn submit(shared: &Shared, envelope_from: &str, rcpts: &[String], spool: &File) -> String {
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
