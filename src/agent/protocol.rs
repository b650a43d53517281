//! The agent protocol (docs/agent-protocol.md): over a Unix stream socket, every message is a
//! JSON header frame followed by a body frame; each frame is a 4-byte big-endian length and
//! that many bytes. Bodies carry whole mails, binary-safe. A large body may instead travel as
//! a file descriptor passed with the message (SCM_RIGHTS), and so may the reply's.

use serde::{Deserialize, Serialize};
use std::io::{IoSlice, Read, Write};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;

pub use crate::prompt::ClientEnv;

pub const VERSION: u32 = 1;
/// Largest header we read (JSON): requests are small.
pub const MAX_HEADER: u32 = 64 * 1024;
/// Largest body we read: the same limit as the CLI's input.
pub const MAX_BODY: u32 = 64 * 1024 * 1024;
/// Files a request may pass besides its body and its reply (`Request::passed`).
pub const MAX_PASSED: usize = 16;
/// Descriptors a request may carry: its body, the passed files and the file for the reply.
pub const MAX_FDS: usize = 2 + MAX_PASSED;
const _: () = assert!(MAX_FDS <= crate::platform::MAX_DESCRIPTORS);

#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("connection closed")]
    Closed,
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("{what} of {size} bytes is over the limit of {limit}")]
    TooLarge { what: &'static str, size: u32, limit: u32 },
    #[error("bad header: {0}")]
    Json(#[from] serde_json::Error),
    #[error("more than {MAX_FDS} file descriptors with one message")]
    TooManyFds,
    #[error("no full request within {}", seconds(.0))]
    TimedOut(std::time::Duration),
}

/// "60 s", "1.5 s", "0.6 s".
fn seconds(d: &std::time::Duration) -> String {
    format!("{} s", d.as_millis() as f64 / 1000.0)
}

/// A request's method with its arguments: one type for the client that writes it and the agent
/// that reads it. On the wire they stay two fields, `method` and `args` (docs/agent-protocol.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Ping,
    Status,
    Subscribe,
    Sign(SignArgs),
    /// Certificates and detached content come as `Request::passed` files, never as paths.
    Verify(VerifyArgs),
    Decrypt,
    Send(SendArgs),
    Receive,
    Forward(ForwardArgs),
    /// The IMAP door's view of one mail (ops/view.rs).
    View(ViewArgs),
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SignArgs {
    pub pss: bool,
    /// Sign the MIME entity a mail client will send and answer with the detached signature only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature_only_from: Option<String>,
    /// The user confirmed signing with a personal certificate (`--personal-certificate`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub personal_certificate: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VerifyArgs {
    pub no_token: bool,
    /// The client wants the verified content back.
    pub out: bool,
    /// `--revocation`, when given (else the agent's config says).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revocation: Option<crate::cms::revocation::Policy>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SendArgs {
    pub pss: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ViewArgs {
    /// The authserv-id of the view's Authentication-Results; empty: the default.
    pub authserv_id: String,
    /// Never ask for a PIN: a view the token needs a PIN for fails (exit 4) unless it is cached.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_prompt: bool,
}

pub use crate::ops::forward::ForwardArgs;

/// Why a request's method and arguments are not a `Call`.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("unknown method '{0}'")]
    UnknownMethod(String),
    #[error("bad arguments for {method}: {source}")]
    BadArgs { method: &'static str, source: serde_json::Error },
}

impl Call {
    pub fn method(&self) -> &'static str {
        match self {
            Call::Ping => "ping",
            Call::Status => "status",
            Call::Subscribe => "subscribe",
            Call::Sign(_) => "sign",
            Call::Verify(_) => "verify",
            Call::Decrypt => "decrypt",
            Call::Send(_) => "send",
            Call::Receive => "receive",
            Call::Forward(_) => "forward",
            Call::View(_) => "view",
        }
    }

    /// The `args` object on the wire.
    pub fn args(&self) -> serde_json::Value {
        let value = match self {
            Call::Sign(a) => serde_json::to_value(a),
            Call::Verify(a) => serde_json::to_value(a),
            Call::Send(a) => serde_json::to_value(a),
            Call::Forward(a) => serde_json::to_value(a),
            Call::View(a) => serde_json::to_value(a),
            Call::Ping | Call::Status | Call::Subscribe | Call::Decrypt | Call::Receive => {
                return serde_json::Value::Object(Default::default())
            }
        };
        // Plain structs of bools, strings and lists always serialise.
        value.unwrap_or_default()
    }

    /// Read `method` and `args` as sent: absent or null arguments are the defaults; arguments a
    /// method does not take are refused by name (a path in verify's `ca` among them). Methods
    /// without arguments ignore whatever comes with them.
    pub fn from_wire(method: &str, args: &serde_json::Value) -> Result<Call, CallError> {
        fn parse<T: for<'de> Deserialize<'de> + Default>(
            method: &'static str,
            args: &serde_json::Value,
        ) -> Result<T, CallError> {
            if args.is_null() {
                return Ok(T::default());
            }
            T::deserialize(args).map_err(|source| CallError::BadArgs { method, source })
        }
        Ok(match method {
            "ping" => Call::Ping,
            "status" => Call::Status,
            "subscribe" => Call::Subscribe,
            "decrypt" => Call::Decrypt,
            "receive" => Call::Receive,
            "sign" => Call::Sign(parse("sign", args)?),
            "verify" => Call::Verify(parse("verify", args)?),
            "send" => Call::Send(parse("send", args)?),
            "forward" => Call::Forward(parse("forward", args)?),
            "view" => Call::View(parse("view", args)?),
            other => return Err(CallError::UnknownMethod(other.to_string())),
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    pub id: u64,
    /// ping, status, sign, verify, decrypt, send, receive, forward, view, subscribe
    pub method: String,
    #[serde(default)]
    pub args: serde_json::Value,
    /// The token and key the client named (`pkcs11:` URIs), if any.
    #[serde(default)]
    pub token: Option<String>,
    #[serde(default)]
    pub key: Option<String>,
    #[serde(default)]
    pub allow_final_pin_try: bool,
    /// The client's revocation policy (`--revocation`), over the agent's config for this request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<crate::cms::revocation::Policy>,
    /// Give up after this long (the token operation itself cannot be interrupted).
    pub timeout_ms: u64,
    #[serde(default)]
    pub client: ClientEnv,
    /// The body is not in the body frame but in the first descriptor passed with the message:
    /// a regular file, read whole from offset 0.
    #[serde(default, skip_serializing_if = "is_false")]
    pub body_in_fd: bool,
    /// Write the reply's body into the last descriptor passed (a regular file, from offset 0)
    /// instead of the body frame; the response says how many bytes (`body_in_fd`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub reply_in_fd: bool,
    /// Files the client opened for the request (the agent never opens a path a client names:
    /// it would read with the agent's rights, not the client's). One descriptor each, after
    /// the body's and before the reply's, in this order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub passed: Vec<Passed>,
}

/// What a passed file holds. Each is a regular file, read whole from offset 0 within its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Passed {
    /// verify: the detached content (`--content`); at most `MAX_BODY` bytes.
    Content,
    /// verify: trust anchors (`--ca`), PEM or DER; at most `files::MAX_CERT_FILE` bytes.
    Anchors,
    /// verify: intermediate certificates (`--certfile`), likewise.
    Intermediates,
    /// verify: CRLs (`--crl`), PEM or DER, likewise.
    Crls,
}

impl Passed {
    pub fn name(self) -> &'static str {
        match self {
            Passed::Content => "content",
            Passed::Anchors => "anchors",
            Passed::Intermediates => "intermediates",
            Passed::Crls => "crls",
        }
    }

    pub fn limit(self) -> u64 {
        match self {
            Passed::Content => u64::from(MAX_BODY),
            Passed::Anchors | Passed::Intermediates | Passed::Crls => crate::files::MAX_CERT_FILE,
        }
    }
}

impl Request {
    /// A front door's request for `call` in this process's name, with the user's environment
    /// (the agent's pinentry appears where they are) and no token named: the agent chooses.
    pub fn from_door(call: &Call, timeout_ms: u64, body_in_fd: bool, reply_in_fd: bool) -> Request {
        Request {
            v: VERSION,
            id: u64::from(std::process::id()),
            method: call.method().into(),
            args: call.args(),
            token: None,
            key: None,
            allow_final_pin_try: false,
            revocation: None,
            timeout_ms,
            client: crate::agent::client::client_env(),
            body_in_fd,
            reply_in_fd,
            passed: Vec::new(),
        }
    }

    /// The method and arguments as a `Call`.
    pub fn call(&self) -> Result<Call, CallError> {
        Call::from_wire(&self.method, &self.args)
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// What a subscriber is told, by the name the protocol gives it (docs/agent-protocol.md, Events).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    /// Just before pinentry is started for a token and an operation.
    PinNeeded,
    /// A token the agent used is gone or was replaced: its sessions and PIN are gone.
    TokenRemoved,
    /// It is back (the next request asks for a fresh PIN).
    TokenInserted,
    /// A certificate on a token just opened expires within 30 days, or has.
    CertExpiring,
    /// The agent restarts in place (a token call hung); subscribers reconnect.
    AgentRestarting,
    /// An event a newer agent sends that this program does not know.
    #[serde(other)]
    Other,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub id: u64,
    pub ok: bool,
    /// The exit code the CLI would have used (README: exit codes).
    pub exit: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default)]
    pub notes: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// Set on event messages of a subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Event>,
    /// Set when the request never reached the token (the agent is restarting): sending it again
    /// on a new connection after this many milliseconds is safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
    /// The reply's body went into the descriptor the request passed: this many bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_in_fd: Option<u64>,
}

fn read_exactly(r: &mut impl Read, buf: &mut [u8]) -> Result<(), ProtocolError> {
    r.read_exact(buf).map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            ProtocolError::Closed
        } else {
            e.into()
        }
    })
}

pub(super) fn frame_size(len: [u8; 4], limit: u32, what: &'static str) -> Result<usize, ProtocolError> {
    let size = u32::from_be_bytes(len);
    if size > limit {
        return Err(ProtocolError::TooLarge { what, size, limit });
    }
    Ok(size as usize)
}

fn frame_len(data: &[u8]) -> Result<[u8; 4], ProtocolError> {
    let len = u32::try_from(data.len()).map_err(|_| ProtocolError::TooLarge {
        what: "frame",
        size: u32::MAX,
        limit: MAX_BODY,
    })?;
    Ok(len.to_be_bytes())
}

/// Write every slice, in as few calls as the kernel allows. A message goes out in one write, so
/// the other end wakes once for it rather than once per frame.
fn write_all_slices(w: &mut impl Write, mut bufs: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut bufs, 0);
    while !bufs.is_empty() {
        match w.write_vectored(bufs) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut bufs, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Read one message: a header of type `H` and its body.
pub fn read_message<H: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<(H, Vec<u8>), ProtocolError> {
    let mut len = [0u8; 4];
    read_exactly(r, &mut len)?;
    // The header and the body's length in one read.
    let mut header = vec![0u8; frame_size(len, MAX_HEADER, "header")? + 4];
    read_exactly(r, &mut header)?;
    let split = header.len() - 4;
    len.copy_from_slice(&header[split..]);
    header.truncate(split);
    let mut body = vec![0u8; frame_size(len, MAX_BODY, "body")?];
    read_exactly(r, &mut body)?;
    Ok((serde_json::from_slice(&header)?, body))
}

pub fn write_message<H: Serialize>(w: &mut impl Write, header: &H, body: &[u8]) -> Result<(), ProtocolError> {
    let h = serde_json::to_vec(header)?;
    let (hl, bl) = (frame_len(&h)?, frame_len(body)?);
    write_all_slices(w, &mut [IoSlice::new(&hl), IoSlice::new(&h), IoSlice::new(&bl), IoSlice::new(body)])?;
    w.flush()?;
    Ok(())
}

/// A message as the bytes `write_message` writes, for a writer that cannot wait (the agent's
/// event loop queues what the socket does not take at once).
pub fn encode_message<H: Serialize>(header: &H, body: &[u8]) -> Result<Vec<u8>, ProtocolError> {
    let mut out = Vec::new();
    write_message(&mut out, header, body)?;
    Ok(out)
}

/// `write_message`, with `fds` passed alongside (attached to the first byte of the message).
pub fn write_message_with_fds<H: Serialize>(
    sock: &UnixStream,
    header: &H,
    body: &[u8],
    fds: &[BorrowedFd<'_>],
) -> Result<(), ProtocolError> {
    if fds.len() > MAX_FDS {
        return Err(ProtocolError::TooManyFds);
    }
    let h = serde_json::to_vec(header)?;
    let (hl, bl) = (frame_len(&h)?, frame_len(body)?);
    let mut slices = [IoSlice::new(&hl), IoSlice::new(&h), IoSlice::new(&bl), IoSlice::new(body)];
    let sent = crate::platform::send_with_descriptors(sock, &slices, fds)?;
    // The descriptors rode on the first byte; whatever did not go, goes plainly.
    let mut rest = &mut slices[..];
    IoSlice::advance_slices(&mut rest, sent);
    write_all_slices(&mut &*sock, rest)?;
    Ok(())
}

use crate::platform::ReadUntil as Until;
pub use crate::platform::WriteUntil;

/// `read_message_with_fds`, which must have the whole message within `limit` from now.
pub fn read_message_with_fds_within<H: for<'de> Deserialize<'de>>(
    sock: &UnixStream,
    limit: std::time::Duration,
) -> Result<(H, Vec<u8>, Vec<OwnedFd>), ProtocolError> {
    let deadline = std::time::Instant::now() + limit;
    let timed = |e: ProtocolError| match e {
        ProtocolError::Io(io) if matches!(io.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
            ProtocolError::TimedOut(limit)
        }
        e => e,
    };
    read_with_fds(sock, Some(Until { sock, deadline })).map_err(timed)
}

/// `read_message` from a socket, with the descriptors passed alongside (close-on-exec). The
/// first bytes of every message are read with recvmsg: a plain read would discard them.
pub fn read_message_with_fds<H: for<'de> Deserialize<'de>>(
    sock: &UnixStream,
) -> Result<(H, Vec<u8>, Vec<OwnedFd>), ProtocolError> {
    read_with_fds(sock, None)
}

fn read_with_fds<H: for<'de> Deserialize<'de>>(
    sock: &UnixStream,
    until: Option<Until<'_>>,
) -> Result<(H, Vec<u8>, Vec<OwnedFd>), ProtocolError> {
    let mut prefix = [0u8; 4];
    let mut got = 0;
    let mut fds = Vec::new();
    while got < prefix.len() {
        if let Some(u) = &until {
            u.arm()?;
        }
        let r = match crate::platform::recv_with_descriptors(sock, &mut prefix[got..]) {
            Ok(r) => r,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e.into()),
        };
        fds.extend(r.fds);
        // The kernel closed what did not fit; the request cannot be what the client meant.
        if r.truncated || fds.len() > MAX_FDS {
            return Err(ProtocolError::TooManyFds);
        }
        if r.bytes == 0 {
            return Err(ProtocolError::Closed);
        }
        got += r.bytes;
    }
    let (header, body) = match until {
        Some(u) => read_message(&mut prefix.as_slice().chain(u))?,
        None => read_message(&mut prefix.as_slice().chain(sock))?,
    };
    Ok((header, body, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_travel_by_their_protocol_names_and_an_unknown_one_is_still_read() {
        let names = [
            (Event::PinNeeded, "pin-needed"),
            (Event::TokenRemoved, "token-removed"),
            (Event::TokenInserted, "token-inserted"),
            (Event::CertExpiring, "cert-expiring"),
            (Event::AgentRestarting, "agent-restarting"),
        ];
        for (event, name) in names {
            assert_eq!(serde_json::to_string(&event).unwrap(), format!("\"{name}\""));
        }
        let r: Response = serde_json::from_str(r#"{"v":1,"id":0,"ok":true,"exit":0,"event":"battery-low"}"#).unwrap();
        assert_eq!(r.event, Some(Event::Other));
    }

    #[test]
    fn every_call_reads_back_from_the_wire_as_written() {
        let calls = [
            Call::Ping,
            Call::Status,
            Call::Subscribe,
            Call::Sign(SignArgs {
                pss: true,
                signature_only_from: Some("alice@example.jp".into()),
                personal_certificate: false,
            }),
            Call::Verify(VerifyArgs { no_token: true, out: true, revocation: None }),
            Call::Decrypt,
            Call::Send(SendArgs { pss: false }),
            Call::Receive,
            Call::Forward(ForwardArgs {
                to: vec!["carol@example.jp".into()],
                keep: vec!["Report".into()],
                ..Default::default()
            }),
        ];
        for c in calls {
            let wire = serde_json::to_string(&c.args()).unwrap();
            assert_eq!(Call::from_wire(c.method(), &serde_json::from_str(&wire).unwrap()).unwrap(), c, "{wire}");
        }
    }

    #[test]
    fn arguments_a_method_does_not_take_are_refused_by_name() {
        let e = Call::from_wire("verify", &serde_json::json!({"ca": ["/dev/zero"]})).unwrap_err();
        assert!(e.to_string().starts_with("bad arguments for verify: unknown field `ca`"), "{e}");
        assert!(
            matches!(Call::from_wire("sing", &serde_json::Value::Null), Err(CallError::UnknownMethod(m)) if m == "sing")
        );
        // Absent arguments are the defaults; methods without any ignore what comes.
        assert_eq!(Call::from_wire("sign", &serde_json::Value::Null).unwrap(), Call::Sign(SignArgs::default()));
        assert_eq!(Call::from_wire("ping", &serde_json::json!({})).unwrap(), Call::Ping);
    }

    #[test]
    fn messages_round_trip_binary_bodies() {
        let mut buf = Vec::new();
        let req = Request {
            v: VERSION,
            id: 7,
            method: "sign".into(),
            args: serde_json::json!({"pss": true}),
            token: None,
            key: None,
            allow_final_pin_try: false,
            revocation: None,
            timeout_ms: 1000,
            client: ClientEnv::default(),
            body_in_fd: false,
            reply_in_fd: false,
            passed: Vec::new(),
        };
        write_message(&mut buf, &req, &[0, 255, 13, 10]).unwrap();
        let (back, body): (Request, Vec<u8>) = read_message(&mut buf.as_slice()).unwrap();
        assert_eq!(back.id, 7);
        assert_eq!(body, vec![0, 255, 13, 10]);
    }

    #[test]
    fn oversized_frames_are_refused_before_allocation() {
        let mut buf = Vec::new();
        buf.extend_from_slice(&(MAX_HEADER + 1).to_be_bytes());
        assert!(matches!(read_message::<Request>(&mut buf.as_slice()), Err(ProtocolError::TooLarge { .. })));
    }

    #[test]
    fn descriptors_travel_with_their_message_and_the_next_message_reads_plainly() {
        use std::os::fd::AsFd;
        use std::os::unix::fs::FileExt;
        let (a, b) = UnixStream::pair().unwrap();
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"body in a file").unwrap();
        let req = Request {
            v: VERSION,
            id: 1,
            method: "sign".into(),
            args: serde_json::Value::Null,
            token: None,
            key: None,
            allow_final_pin_try: false,
            revocation: None,
            timeout_ms: 1,
            client: ClientEnv::default(),
            body_in_fd: true,
            reply_in_fd: false,
            passed: Vec::new(),
        };
        write_message_with_fds(&a, &req, &[], &[file.as_fd()]).unwrap();
        write_message(&mut &a, &req, b"inline").unwrap();
        let (first, body, fds): (Request, _, _) = read_message_with_fds(&b).unwrap();
        assert!(first.body_in_fd && body.is_empty());
        assert_eq!(fds.len(), 1);
        let passed = std::fs::File::from(fds.into_iter().next().unwrap());
        let mut buf = [0u8; 14];
        passed.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"body in a file");
        let (_, body, fds): (Request, _, _) = read_message_with_fds(&b).unwrap();
        assert_eq!((body.as_slice(), fds.len()), (&b"inline"[..], 0));
    }

    #[test]
    fn more_descriptors_than_allowed_are_refused() {
        use std::os::fd::AsFd;
        let (a, _b) = UnixStream::pair().unwrap();
        let f = tempfile::tempfile().unwrap();
        let too_many = vec![f.as_fd(); MAX_FDS + 1];
        assert!(matches!(
            write_message_with_fds(&a, &Response::default(), &[], &too_many),
            Err(ProtocolError::TooManyFds)
        ));
    }
}
