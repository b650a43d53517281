//! The agent protocol (docs/agent-protocol.md): over a Unix stream socket, every message is a
//! JSON header frame followed by a body frame; each frame is a 4-byte big-endian length and
//! that many bytes. Bodies carry whole mails, binary-safe.

use serde::{Deserialize, Serialize};
use std::io::{Read, Write};

pub const VERSION: u32 = 1;
/// Largest header we read (JSON): requests are small.
pub const MAX_HEADER: u32 = 64 * 1024;
/// Largest body we read: the same limit as the CLI's input.
pub const MAX_BODY: u32 = 64 * 1024 * 1024;

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
}

/// What the client tells the agent about where the user is, so pinentry appears there.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientEnv {
    pub tty: Option<String>,
    pub term: Option<String>,
    pub display: Option<String>,
    pub wayland_display: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    pub id: u64,
    /// ping, status, sign, verify, decrypt, send, receive, forward, subscribe
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
    /// Give up after this long (the token operation itself cannot be interrupted).
    pub timeout_ms: u64,
    #[serde(default)]
    pub client: ClientEnv,
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
    /// Set on event messages of a subscription: token-inserted, token-removed, pin-needed, cert-expiring.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// Set when the request never reached the token (the agent is restarting): sending it again
    /// on a new connection after this many milliseconds is safe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

fn read_frame(r: &mut impl Read, limit: u32, what: &'static str) -> Result<Vec<u8>, ProtocolError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(ProtocolError::Closed),
        Err(e) => return Err(e.into()),
    }
    let size = u32::from_be_bytes(len);
    if size > limit {
        return Err(ProtocolError::TooLarge { what, size, limit });
    }
    let mut buf = vec![0u8; size as usize];
    r.read_exact(&mut buf).map_err(|e| if e.kind() == std::io::ErrorKind::UnexpectedEof { ProtocolError::Closed } else { e.into() })?;
    Ok(buf)
}

fn write_frame(w: &mut impl Write, data: &[u8]) -> Result<(), ProtocolError> {
    let len = u32::try_from(data.len()).map_err(|_| ProtocolError::TooLarge { what: "frame", size: u32::MAX, limit: MAX_BODY })?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(data)?;
    Ok(())
}

/// Read one message: a header of type `H` and its body.
pub fn read_message<H: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<(H, Vec<u8>), ProtocolError> {
    let header = read_frame(r, MAX_HEADER, "header")?;
    let body = read_frame(r, MAX_BODY, "body")?;
    Ok((serde_json::from_slice(&header)?, body))
}

pub fn write_message<H: Serialize>(w: &mut impl Write, header: &H, body: &[u8]) -> Result<(), ProtocolError> {
    let h = serde_json::to_vec(header)?;
    write_frame(w, &h)?;
    write_frame(w, body)?;
    w.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_binary_bodies() {
        let mut buf = Vec::new();
        let req = Request { v: VERSION, id: 7, method: "sign".into(), args: serde_json::json!({"pss": true}), token: None, key: None, allow_final_pin_try: false, timeout_ms: 1000, client: ClientEnv::default() };
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
}
