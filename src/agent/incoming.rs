//! A request read in pieces, as its bytes come: the agent's event loop reads whatever a client
//! has sent without waiting for the rest, so a client that sends half a request (or nothing)
//! holds no thread. The frames and limits are those of `protocol::read_message`, which the
//! `agent_frame` fuzz target holds this to, split at every point.

use super::protocol::{frame_size, ProtocolError, Request, MAX_BODY, MAX_FDS, MAX_HEADER};
use std::os::fd::OwnedFd;

/// A header or body grows by at most this much per read, to exactly what was announced: a
/// client that announces 64 MiB and sends a byte holds one step, not 64 MiB.
pub const STEP: usize = 1 << 20;
/// The first step of a header (most are a few hundred bytes).
const HEADER_STEP: usize = 4096;

#[derive(Default)]
pub struct Incoming {
    stage: Stage,
    /// The header's length, then the body's.
    prefix: [u8; 4],
    /// The header, with the body's length after it while it is read.
    header: Vec<u8>,
    /// What `header` holds when whole.
    header_len: usize,
    body: Vec<u8>,
    body_len: usize,
    /// Bytes of the current piece (prefix, header, body) received so far.
    got: usize,
    fds: Vec<OwnedFd>,
}

#[derive(Default, Clone, Copy, PartialEq, Eq)]
enum Stage {
    #[default]
    Prefix,
    Header,
    Body,
}

/// A request read whole: its header, its body and the descriptors passed with it.
pub type Complete = (Request, Vec<u8>, Vec<OwnedFd>);

impl Incoming {
    /// Where the next bytes go; never empty while a request is not complete.
    pub fn room(&mut self) -> &mut [u8] {
        match self.stage {
            Stage::Prefix => &mut self.prefix[self.got..],
            Stage::Header => {
                let step = HEADER_STEP.max(self.header.len()).min(STEP);
                grow(&mut self.header, self.got, self.header_len, step);
                &mut self.header[self.got..]
            }
            Stage::Body => {
                grow(&mut self.body, self.got, self.body_len, STEP);
                &mut self.body[self.got..]
            }
        }
    }

    /// The next read would grow what is held (see `held`).
    pub fn grows(&self) -> bool {
        match self.stage {
            Stage::Prefix => false,
            Stage::Header => self.got == self.header.len(),
            Stage::Body => self.got == self.body.len(),
        }
    }

    /// Descriptors received with this request so far.
    pub fn descriptors(&self) -> usize {
        self.fds.len()
    }

    /// Bytes held for this request so far (what it costs the agent's reading budget).
    pub fn held(&self) -> usize {
        self.header.capacity() + self.body.capacity()
    }

    /// Nothing of a request has come yet.
    pub fn is_empty(&self) -> bool {
        self.stage == Stage::Prefix && self.got == 0 && self.fds.is_empty()
    }

    /// `n` bytes were written into `room()`, and `fds` came with them. Some(request) once it is
    /// whole, after which this reads the next one.
    pub fn filled(&mut self, n: usize, fds: Vec<OwnedFd>) -> Result<Option<Complete>, ProtocolError> {
        self.fds.extend(fds);
        if self.fds.len() > MAX_FDS {
            return Err(ProtocolError::TooManyFds);
        }
        self.got += n;
        loop {
            match self.stage {
                Stage::Prefix if self.got == self.prefix.len() => {
                    self.header_len = frame_size(self.prefix, MAX_HEADER, "header")? + 4;
                    (self.stage, self.got) = (Stage::Header, 0);
                }
                Stage::Header if self.got == self.header_len => {
                    let split = self.header.len() - 4;
                    self.prefix.copy_from_slice(&self.header[split..]);
                    self.header.truncate(split);
                    self.body_len = frame_size(self.prefix, MAX_BODY, "body")?;
                    (self.stage, self.got) = (Stage::Body, 0);
                }
                Stage::Body if self.got == self.body_len => {
                    let done = std::mem::take(self);
                    let req = serde_json::from_slice(&done.header)?;
                    return Ok(Some((req, done.body, done.fds)));
                }
                _ => return Ok(None),
            }
        }
    }
}

/// Make room in `v` (of which `got` bytes are filled) for the next `step` of `want` bytes, allocating
/// exactly that (a doubling Vec would hold up to twice what came).
fn grow(v: &mut Vec<u8>, got: usize, want: usize, step: usize) {
    if got == v.len() && v.len() < want {
        let to = want.min(v.len() + step);
        v.reserve_exact(to - v.len());
        v.resize(to, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::protocol::{read_message, write_message};

    fn message(body: &[u8]) -> Vec<u8> {
        let req = serde_json::json!({"v": 1, "id": 7, "method": "ping", "timeout_ms": 1000, "client": {}});
        let mut out = Vec::new();
        write_message(&mut out, &req, body).unwrap();
        out
    }

    /// Feed `data` in pieces of `step` bytes (as a client's writes may arrive).
    fn feed(data: &[u8], step: usize) -> Result<Vec<Complete>, ProtocolError> {
        let (mut inc, mut done, mut at) = (Incoming::default(), Vec::new(), 0);
        while at < data.len() {
            let room = inc.room();
            let n = room.len().min(step).min(data.len() - at);
            room[..n].copy_from_slice(&data[at..at + n]);
            at += n;
            done.extend(inc.filled(n, Vec::new())?);
        }
        Ok(done)
    }

    #[test]
    fn a_request_split_anywhere_reads_as_the_whole_does() {
        let body = (0..3 * STEP as u32 + 17).map(|i| i as u8).collect::<Vec<u8>>();
        let mut two = message(b"first");
        two.extend(message(&body));
        let whole = read_message::<Request>(&mut two.as_slice()).unwrap();
        for step in [1, 3, 4, 5, 64, 4096, usize::MAX] {
            let got = feed(&two, step).unwrap();
            assert_eq!(got.len(), 2, "step {step}");
            assert_eq!(got[0].0.id, whole.0.id);
            assert_eq!(got[0].1, b"first");
            assert_eq!(got[1].1, body, "step {step}");
        }
    }

    #[test]
    fn an_announced_body_is_held_only_as_far_as_it_came() {
        let mut data = message(&vec![9u8; 64 << 20]);
        data.truncate(data.len() - (64 << 20) + 10);
        let mut inc = Incoming::default();
        let mut at = 0;
        while at < data.len() {
            let room = inc.room();
            let n = room.len().min(data.len() - at);
            room[..n].copy_from_slice(&data[at..at + n]);
            at += n;
            assert!(inc.filled(n, Vec::new()).unwrap().is_none());
        }
        assert!(inc.held() <= STEP + 4096, "{} bytes held for 10 of the body", inc.held());
        assert!(!inc.is_empty());
    }

    #[test]
    fn oversized_frames_are_refused_before_anything_is_held() {
        let mut inc = Incoming::default();
        inc.room().copy_from_slice(&(MAX_HEADER + 1).to_be_bytes());
        assert!(matches!(inc.filled(4, Vec::new()), Err(ProtocolError::TooLarge { what: "header", .. })));
        let mut inc = Incoming::default();
        let header = br#"{"v":1}"#;
        let mut data = (header.len() as u32).to_be_bytes().to_vec();
        data.extend(header);
        data.extend((MAX_BODY + 1).to_be_bytes());
        let mut at = 0;
        let mut last = Ok(None);
        while at < data.len() && last.is_ok() {
            let room = inc.room();
            let n = room.len().min(data.len() - at);
            room[..n].copy_from_slice(&data[at..at + n]);
            at += n;
            last = inc.filled(n, Vec::new());
        }
        assert!(matches!(last, Err(ProtocolError::TooLarge { what: "body", .. })));
    }
}
