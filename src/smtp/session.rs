//! One client's SMTP session as a state machine over the bytes it sends: commands parsed by
//! smtp-proto, AUTH PLAIN / LOGIN against the per-user secret, DATA dot-unstuffed into a spool
//! file as it arrives. It does no I/O of its own, so the front door's event loop can hold many
//! sessions on one thread and give a thread only to a message being signed and relayed.

use super::server::Shared;
use secrecy::{ExposeSecret, SecretString};
use smtp_proto::request::receiver::DataReceiver;
use smtp_proto::{Error as ProtoError, Request as Cmd, AUTH_LOGIN, AUTH_PLAIN};
use std::fs::File;
use std::io::Write;
use subtle::ConstantTimeEq;

/// A command line longer than this is refused (RFC 5321 allows 512; AUTH lines are longer).
pub const MAX_LINE: usize = 4096;
/// Wrong logins on one connection before it is closed.
const MAX_AUTH_FAILURES: u32 = 3;
/// DATA goes to the spool in pieces of about this size.
const FLUSH_AT: usize = 64 * 1024;

pub const GREETING: &[u8] = b"220 localhost ssmax-card ESMTP submission front door (loopback only)\r\n";

#[derive(Default)]
pub struct Session {
    authed: bool,
    auth_failures: u32,
    from: Option<String>,
    rcpts: Vec<String>,
    state: State,
}

#[derive(Default)]
enum State {
    #[default]
    Command,
    /// The rest of an over-long line, dropped up to its end; true when it was an AUTH answer.
    Skipping(bool),
    /// AUTH PLAIN's credentials after a "334".
    AuthPlain,
    /// AUTH LOGIN's user name, then its secret.
    AuthLoginUser,
    AuthLoginPass(Vec<u8>),
    Data(Box<Data>),
    /// A message is being signed and relayed: nothing more is read until its reply.
    Submitting,
    Closed,
}

struct Data {
    receiver: DataReceiver,
    spool: Result<File, String>,
    buf: Vec<u8>,
    total: u64,
}

/// A whole message to sign and relay (`submit`), after which the session waits for the reply.
pub struct Submit {
    pub from: String,
    pub rcpts: Vec<String>,
    pub spool: File,
}

impl Session {
    /// Take what it can of `input` (what it took is drained), with its replies appended to `out`,
    /// until `out` holds `room` bytes (a client that does not read its replies gets no more).
    /// Some(message) when a message is whole: the session takes nothing more until `submitted`.
    pub fn feed(&mut self, input: &mut Vec<u8>, out: &mut Vec<u8>, room: usize, shared: &Shared) -> Option<Submit> {
        let mut at = 0;
        let mut submit = None;
        while at < input.len() && submit.is_none() && out.len() < room {
            match self.state {
                State::Submitting | State::Closed => break,
                State::Data(_) => {
                    let (used, s) = self.data(&input[at..], out, shared);
                    at += used;
                    submit = s;
                    if used == 0 && submit.is_none() {
                        break;
                    }
                }
                State::Skipping(auth) => match memchr::memchr(b'\n', &input[at..]) {
                    Some(i) => {
                        at += i + 1;
                        self.state = State::Command;
                        self.too_long(auth, out, shared);
                    }
                    None => at = input.len(),
                },
                _ => match memchr::memchr(b'\n', &input[at..]) {
                    Some(i) => {
                        let line = input[at..at + i + 1].to_vec();
                        at += i + 1;
                        if line.len() > MAX_LINE + 1 {
                            let auth = self.in_auth();
                            self.state = State::Command;
                            self.too_long(auth, out, shared);
                        } else {
                            self.line(&line, out, shared);
                        }
                    }
                    None if input.len() - at > MAX_LINE => {
                        at = input.len();
                        self.state = State::Skipping(self.in_auth());
                    }
                    None => break,
                },
            }
        }
        input.drain(..at);
        submit
    }

    fn in_auth(&self) -> bool {
        matches!(self.state, State::AuthPlain | State::AuthLoginUser | State::AuthLoginPass(_))
    }

    /// An over-long line: a command is refused; as the answer to a login it is a wrong login.
    fn too_long(&mut self, auth: bool, out: &mut Vec<u8>, shared: &Shared) {
        match auth {
            true => self.logged_in(None, out, shared),
            false => reply(out, "500 5.5.2 line too long"),
        }
    }

    /// The reply to the message `feed` handed out; the session reads commands again.
    pub fn submitted(&mut self, answer: &str, out: &mut Vec<u8>) {
        self.state = State::Command;
        reply(out, answer);
    }

    pub fn is_closed(&self) -> bool {
        matches!(self.state, State::Closed)
    }

    /// Logged in with the client secret.
    pub fn is_authed(&self) -> bool {
        self.authed
    }

    /// No message under way (a stranger's session never has one): what the door may close to
    /// make room.
    pub fn is_idle(&self) -> bool {
        match self.state {
            State::Data(_) | State::Submitting => false,
            _ => !self.authed || self.from.is_none(),
        }
    }

    /// A message is being signed and relayed.
    pub fn is_submitting(&self) -> bool {
        matches!(self.state, State::Submitting)
    }

    fn line(&mut self, line: &[u8], out: &mut Vec<u8>, shared: &Shared) {
        match std::mem::take(&mut self.state) {
            State::AuthPlain => {
                let creds = response(line).and_then(|r| decode(&r)).and_then(|raw| {
                    let mut it = raw.split(|&b| b == 0);
                    let (_authz, user, pass) = (it.next()?, it.next()?, it.next()?);
                    Some((user.to_vec(), SecretString::from(String::from_utf8_lossy(pass).into_owned())))
                });
                self.logged_in(creds, out, shared)
            }
            State::AuthLoginUser => match response(line).and_then(|u| decode(&u)) {
                Some(user) => {
                    self.state = State::AuthLoginPass(user);
                    reply(out, "334 UGFzc3dvcmQ6");
                }
                None => self.logged_in(None, out, shared),
            },
            State::AuthLoginPass(user) => {
                let pass = response(line).and_then(|p| decode(&p));
                let creds = pass.map(|p| (user, SecretString::from(String::from_utf8_lossy(&p).into_owned())));
                self.logged_in(creds, out, shared)
            }
            _ => self.command(line, out, shared),
        }
    }

    fn command(&mut self, line: &[u8], out: &mut Vec<u8>, shared: &Shared) {
        let cmd = match Cmd::parse(&mut line.iter()) {
            Ok(c) => c,
            Err(ProtoError::UnknownCommand) => return reply(out, "500 5.5.1 unknown command"),
            Err(e) => return reply(out, &format!("501 5.5.4 syntax error: {e:?}")),
        };
        let max = shared.cfg.max_message_bytes;
        match cmd {
            Cmd::Ehlo { .. } => reply(
                out,
                &format!("250-localhost ssmax-card\r\n250-AUTH PLAIN LOGIN\r\n250-SIZE {max}\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES"),
            ),
            Cmd::Helo { .. } => reply(out, "250 localhost"),
            Cmd::Auth { mechanism, initial_response } => self.auth(mechanism, initial_response.as_bytes(), out, shared),
            Cmd::Mail { from } => {
                if !self.authed {
                    reply(out, "530 5.7.0 authentication required: log in with your ssmax-card client secret")
                } else if from.size > max {
                    reply(out, &format!("552 5.3.4 message larger than {max} bytes"))
                } else {
                    self.from = Some(from.address.to_string());
                    self.rcpts.clear();
                    reply(out, "250 2.1.0 sender ok")
                }
            }
            Cmd::Rcpt { to } => {
                if self.from.is_none() {
                    reply(out, "503 5.5.1 MAIL first")
                } else if self.rcpts.len() >= shared.cfg.max_recipients {
                    let n = shared.cfg.max_recipients;
                    reply(out, &format!("452 4.5.3 more than {n} recipients: send the rest in another message"))
                } else {
                    self.rcpts.push(to.address.to_string());
                    reply(out, "250 2.1.5 recipient ok")
                }
            }
            Cmd::Data if self.from.is_none() || self.rcpts.is_empty() => reply(out, "503 5.5.1 MAIL and RCPT first"),
            Cmd::Data => {
                // Unlinked from the start (O_TMPFILE under $TMPDIR, private to the unit with
                // PrivateTmp): nothing is left behind whatever happens next.
                let spool = tempfile::tempfile().map_err(|e| e.to_string());
                let mut buf = Vec::with_capacity(FLUSH_AT + 4096);
                // The DATA command's own CRLF comes first: a "." on the first line is stuffed, and a
                // lone "." there ends an empty message (the receiver starts as if mid-line).
                let mut receiver = DataReceiver::new();
                receiver.ingest(&mut b"\r\n".iter(), &mut buf);
                buf.clear();
                self.state = State::Data(Box::new(Data { receiver, spool, buf, total: 0 }));
                reply(out, "354 end data with <CR><LF>.<CR><LF>")
            }
            Cmd::Rset => {
                self.from = None;
                self.rcpts.clear();
                reply(out, "250 2.0.0 ok")
            }
            Cmd::Noop { .. } => reply(out, "250 2.0.0 ok"),
            Cmd::Quit => {
                self.state = State::Closed;
                reply(out, "221 2.0.0 bye")
            }
            Cmd::StartTls => reply(out, "502 5.5.1 STARTTLS is not offered on loopback"),
            _ => reply(out, "502 5.5.1 command not implemented"),
        }
    }

    /// AUTH PLAIN or LOGIN, with the credentials on the command line or asked for after it.
    fn auth(&mut self, mechanism: u64, initial: &[u8], out: &mut Vec<u8>, shared: &Shared) {
        if self.authed {
            return reply(out, "503 5.5.1 already authenticated");
        }
        let initial = String::from_utf8_lossy(initial).trim().to_string();
        match mechanism {
            AUTH_PLAIN if initial.is_empty() => {
                self.state = State::AuthPlain;
                reply(out, "334 ");
            }
            AUTH_PLAIN => self.line_as(State::AuthPlain, &initial, out, shared),
            AUTH_LOGIN if initial.is_empty() => {
                self.state = State::AuthLoginUser;
                reply(out, "334 VXNlcm5hbWU6");
            }
            AUTH_LOGIN => self.line_as(State::AuthLoginUser, &initial, out, shared),
            _ => reply(out, "504 5.5.4 use AUTH PLAIN or LOGIN"),
        }
    }

    /// An initial response given with AUTH reads as the answer to the first "334".
    fn line_as(&mut self, state: State, text: &str, out: &mut Vec<u8>, shared: &Shared) {
        self.state = state;
        self.line(text.as_bytes(), out, shared);
    }

    fn logged_in(&mut self, creds: Option<(Vec<u8>, SecretString)>, out: &mut Vec<u8>, shared: &Shared) {
        let ok = creds.is_some_and(|(user, pass)| {
            let user_ok = user.as_slice().ct_eq(shared.client_user.as_bytes());
            let pass_ok = pass.expose_secret().as_bytes().ct_eq(shared.client_secret.expose_secret().as_bytes());
            bool::from(user_ok & pass_ok)
        });
        if ok {
            self.authed = true;
            return reply(out, "235 2.7.0 authenticated");
        }
        self.auth_failures += 1;
        if self.auth_failures >= MAX_AUTH_FAILURES {
            self.state = State::Closed;
            return reply(out, "421 4.7.0 too many failed logins; closing");
        }
        reply(out, "535 5.7.8 wrong user name or client secret ('ssmax-card smtp client-secret' shows it)")
    }

    /// DATA bytes: dot-unstuffed into the spool (a large mail is never held whole). Too large or
    /// unspoolable: read to its end and dropped, so the session stays in step. Returns how much
    /// of `input` it took, and the message once whole.
    fn data(&mut self, input: &[u8], out: &mut Vec<u8>, shared: &Shared) -> (usize, Option<Submit>) {
        let State::Data(d) = &mut self.state else { return (0, None) };
        let max = shared.cfg.max_message_bytes as u64;
        let mut it = input.iter();
        let done = d.receiver.ingest(&mut it, &mut d.buf);
        let used = input.len() - it.as_slice().len();
        if d.buf.len() >= FLUSH_AT || done {
            d.total += d.buf.len() as u64;
            if let (Ok(f), true) = (&mut d.spool, d.total <= max) {
                if let Err(e) = f.write_all(&d.buf) {
                    d.spool = Err(e.to_string());
                }
            }
            d.buf.clear();
        }
        if !done {
            return (used, None);
        }
        let State::Data(d) = std::mem::take(&mut self.state) else { return (used, None) };
        let (from, rcpts) = (self.from.take().unwrap_or_default(), std::mem::take(&mut self.rcpts));
        match d.spool {
            _ if d.total > max => reply(out, &format!("552 5.3.4 message larger than {max} bytes; not sent")),
            Ok(spool) => {
                self.state = State::Submitting;
                return (used, Some(Submit { from, rcpts, spool }));
            }
            Err(e) => reply(out, &format!("451 4.3.0 cannot hold the message for signing ({e}); not sent, try again")),
        }
        (used, None)
    }
}

fn reply(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// The answer to a "334": None when the client cancelled ("*").
fn response(line: &[u8]) -> Option<String> {
    let t = String::from_utf8_lossy(line).trim().to_string();
    (t != "*").then_some(t)
}

fn decode(b64: &str) -> Option<Vec<u8>> {
    base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64.trim()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::{relay::Relay, RelayTls, SmtpConfig};

    fn shared() -> Shared {
        let cfg = SmtpConfig {
            relay: Some("127.0.0.1:9".into()),
            relay_tls: RelayTls::None,
            max_message_bytes: 64 * 1024,
            max_recipients: 2,
            ..Default::default()
        };
        let relay = Relay::new(&cfg, None).unwrap();
        Shared {
            cfg,
            client_user: "alice".into(),
            client_secret: "s3cret".to_string().into(),
            relay,
            agent: "/nonexistent/agent.sock".into(),
        }
    }

    /// A message as the session handed it out: envelope sender, recipients, the spooled bytes.
    type Sent = (String, Vec<String>, Vec<u8>);

    /// Feed `input` in pieces of `step` bytes; the replies, and the messages it handed out.
    fn talk(input: &[u8], step: usize) -> (String, Vec<Sent>) {
        let (shared, mut s, mut pending, mut out, mut sent) =
            (shared(), Session::default(), Vec::new(), Vec::new(), Vec::new());
        for piece in input.chunks(step) {
            pending.extend_from_slice(piece);
            while let Some(m) = s.feed(&mut pending, &mut out, usize::MAX, &shared) {
                let mut body = Vec::new();
                std::io::Seek::rewind(&mut &m.spool).unwrap();
                std::io::Read::read_to_end(&mut &m.spool, &mut body).unwrap();
                sent.push((m.from, m.rcpts, body));
                s.submitted("250 2.0.0 relayed", &mut out);
            }
        }
        (String::from_utf8(out).unwrap(), sent)
    }

    const SESSION: &[u8] = b"EHLO me\r\nAUTH PLAIN AGFsaWNlAHMzY3JldA==\r\nMAIL FROM:<alice@example.jp>\r\n\
        RCPT TO:<bob@example.com>\r\nDATA\r\nFrom: alice@example.jp\r\n\r\n..dot-stuffed\r\nbody\r\n.\r\n\
        NOOP\r\nQUIT\r\nNOOP\r\n";

    #[test]
    fn a_session_fed_a_byte_at_a_time_answers_as_one_fed_all_at_once() {
        let whole = talk(SESSION, usize::MAX);
        assert!(whole.0.starts_with("250-localhost"), "{}", whole.0);
        assert!(whole.0.contains("235 2.7.0 authenticated\r\n"));
        assert!(whole.0.ends_with("250 2.0.0 relayed\r\n250 2.0.0 ok\r\n221 2.0.0 bye\r\n"), "{}", whole.0);
        assert_eq!(whole.1.len(), 1);
        assert_eq!(whole.1[0].2, b"From: alice@example.jp\r\n\r\n.dot-stuffed\r\nbody\r\n");
        for step in [1, 2, 7, 64] {
            assert_eq!(talk(SESSION, step), whole, "in pieces of {step}");
        }
    }

    #[test]
    fn an_over_long_line_is_refused_whole_and_the_session_goes_on() {
        let mut input = vec![b'A'; 3 * MAX_LINE];
        input.extend_from_slice(b"\r\nNOOP\r\n");
        for step in [1, 100, usize::MAX] {
            let (out, _) = talk(&input, step);
            assert_eq!(out, "500 5.5.2 line too long\r\n250 2.0.0 ok\r\n", "in pieces of {step}");
        }
    }

    #[test]
    fn an_over_long_login_answer_is_a_wrong_login_however_it_arrives() {
        let mut input = b"AUTH LOGIN\r\n".to_vec();
        input.extend(vec![b'A'; 2 * MAX_LINE]);
        input.extend_from_slice(b"\r\nNOOP\r\n");
        for step in [1, 100, usize::MAX] {
            let (out, _) = talk(&input, step);
            assert!(out.starts_with("334 VXNlcm5hbWU6\r\n535 "), "in pieces of {step}: {out}");
            assert!(out.ends_with("250 2.0.0 ok\r\n"), "in pieces of {step}: {out}");
        }
    }

    #[test]
    fn a_dot_on_the_first_line_of_data_is_unstuffed_and_a_lone_one_ends_an_empty_message() {
        let login = "AUTH PLAIN AGFsaWNlAHMzY3JldA==\r\nMAIL FROM:<alice@example.jp>\r\nRCPT TO:<b@c>\r\n";
        let (_, sent) = talk(format!("{login}DATA\r\n..first\r\n.\r\n").as_bytes(), 1);
        assert_eq!(sent[0].2, b".first\r\n");
        let (out, sent) = talk(format!("{login}DATA\r\n.\r\nNOOP\r\n").as_bytes(), usize::MAX);
        assert_eq!(sent[0].2, b"");
        assert!(out.ends_with("250 2.0.0 relayed\r\n250 2.0.0 ok\r\n"), "{out}");
    }

    #[test]
    fn a_client_that_reads_no_replies_gets_no_more_read_than_its_room() {
        let (shared, mut s, mut out) = (shared(), Session::default(), Vec::new());
        let mut input = b"\n".repeat(10_000);
        assert!(s.feed(&mut input, &mut out, 1000, &shared).is_none());
        assert!(out.len() < 1000 + 64, "{} bytes of replies", out.len());
        assert!(!input.is_empty(), "the rest waits");
    }

    #[test]
    fn a_stranger_is_closed_after_three_wrong_logins_and_is_never_past_mail() {
        let input = b"MAIL FROM:<a@b>\r\nAUTH LOGIN\r\nYWxpY2U=\r\nd3Jvbmc=\r\nAUTH PLAIN *\r\nAUTH PLAIN AGFsaWNlAHdyb25n\r\nNOOP\r\n";
        let (out, sent) = talk(input, 3);
        assert!(sent.is_empty());
        let lines: Vec<&str> = out.lines().map(|l| &l[..3]).collect();
        assert_eq!(lines, ["530", "334", "334", "535", "535", "421"], "{out}");
    }
}
