//! Virtual smart cards on the vpcd reader (vsmartcard): pcscd sees a real reader, OpenSC's real
//! drivers talk to it, and the card side is answered here, command by command. Every command that
//! reaches the card is recorded, so a test can say what an operation cost on a real card, where
//! each command is a round trip of 5–50 ms.
//!
//! The vpcd protocol (vsmartcard's documentation): vpcd listens on 127.0.0.1:35963 + reader
//! index; the card connects; each message is a 2-byte big-endian length and a body. A body of one
//! byte is a control: 0 power off, 1 power on, 2 reset, 4 "send your ATR". Anything else is a
//! command APDU, answered with a response APDU.

pub mod jpki;
pub mod piv;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The first vpcd reader's port; reader n listens on this + n ("Virtual PCD 00 0n").
const VPCD_PORT: u16 = 35963;

/// A command APDU, chaining already undone.
#[derive(Debug, Clone)]
pub struct Apdu {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    pub data: Vec<u8>,
    /// Expected response length; 0 when the command expects none.
    pub le: usize,
}

/// What the card answers: data and status word.
pub struct Reply {
    pub data: Vec<u8>,
    pub sw: u16,
}

impl Reply {
    pub fn ok(data: Vec<u8>) -> Reply {
        Reply { data, sw: 0x9000 }
    }
    pub fn sw(sw: u16) -> Reply {
        Reply { data: Vec::new(), sw }
    }
}

/// Status words (ISO 7816-4) the applets answer with.
pub mod sw {
    pub const OK: u16 = 0x9000;
    pub const WRONG_LENGTH: u16 = 0x6700;
    pub const SECURITY_NOT_SATISFIED: u16 = 0x6982;
    pub const AUTH_BLOCKED: u16 = 0x6983;
    pub const CONDITIONS_NOT_SATISFIED: u16 = 0x6985;
    pub const NO_EF_SELECTED: u16 = 0x6986;
    pub const WRONG_DATA: u16 = 0x6A80;
    pub const NOT_FOUND: u16 = 0x6A82;
    pub const WRONG_P1P2: u16 = 0x6A86;
    pub const REF_NOT_FOUND: u16 = 0x6A88;
    pub const OFFSET_BEYOND: u16 = 0x6B00;
    pub const INS_NOT_SUPPORTED: u16 = 0x6D00;
    pub const CLA_NOT_SUPPORTED: u16 = 0x6E00;
    /// 63Cx: verification failed, x tries left.
    pub fn tries_left(n: u8) -> u16 {
        0x63C0 | u16::from(n.min(15))
    }
}

/// The card's application: what a real card's operating system and applet would do.
pub trait Applet: Send {
    fn atr(&self) -> Vec<u8>;
    /// Power on or reset: the security state (verified PINs) is lost; retry counters are not.
    fn reset(&mut self);
    fn command(&mut self, apdu: &Apdu) -> Reply;
}

/// A card with no application: an ISO 7816 card that answers every command "instruction not
/// supported". Enough to stand for "the card is in the reader".
pub struct Blank;

impl Applet for Blank {
    fn atr(&self) -> Vec<u8> {
        vec![0x3B, 0x95, 0x13, 0x81, 0x01, 0x80, 0x73, 0xFF, 0x01, 0x00, 0x0B]
    }
    fn reset(&mut self) {}
    fn command(&mut self, _: &Apdu) -> Reply {
        Reply::sw(sw::INS_NOT_SUPPORTED)
    }
}

/// One command as it reached the card (each chained part and each GET RESPONSE counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub cla: u8,
    pub ins: u8,
    pub p1: u8,
    pub p2: u8,
    /// Bytes of command data (a VERIFY without data only asks for the retry counter).
    pub lc: usize,
}

impl Seen {
    /// A short name for tables: the instruction as ISO 7816-4 / SP 800-73-4 name it.
    pub fn name(&self) -> String {
        let n = match self.ins {
            0xA4 => "SELECT",
            0xB0 => "READ BINARY",
            0xCB => "GET DATA",
            0xC0 => "GET RESPONSE",
            0x20 if self.lc == 0 => "VERIFY (status only)",
            0x20 => "VERIFY",
            0x24 => "CHANGE REFERENCE DATA",
            0x2C => "RESET RETRY COUNTER",
            0x87 => "GENERAL AUTHENTICATE",
            0x2A => "COMPUTE DIGITAL SIGNATURE",
            0x84 => "GET CHALLENGE",
            _ => return format!("INS {:02X}", self.ins),
        };
        if self.cla & 0x10 != 0 {
            format!("{n} (chained part)")
        } else {
            n.to_string()
        }
    }
}

/// A card that can be put into a vpcd reader and pulled out again, keeping its state (retry
/// counters, keys) between insertions as a real card does.
pub struct VirtualCard<A> {
    applet: Arc<Mutex<A>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Leave the reader when this instruction arrives, before answering it.
    pull_at: Arc<Mutex<Option<u8>>>,
}

impl<A> Clone for VirtualCard<A> {
    fn clone(&self) -> Self {
        VirtualCard { applet: self.applet.clone(), seen: self.seen.clone(), pull_at: self.pull_at.clone() }
    }
}

/// The card while it sits in a reader; dropping it pulls the card out.
pub struct Inserted {
    stream: TcpStream,
    thread: Option<JoinHandle<()>>,
}

impl<A: Applet + 'static> VirtualCard<A> {
    pub fn new(applet: A) -> VirtualCard<A> {
        VirtualCard { applet: Arc::new(Mutex::new(applet)), seen: Arc::default(), pull_at: Arc::default() }
    }

    /// Put the card into vpcd reader `reader` (0 → "Virtual PCD 00 00"). Waits up to 10 s for
    /// vpcd to listen (pcscd may still be starting).
    pub fn insert(&self, reader: u16) -> Inserted {
        let start = Instant::now();
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", VPCD_PORT + reader)) {
                Ok(s) => break s,
                Err(e) if start.elapsed() > Duration::from_secs(10) => panic!("vpcd reader {reader}: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let _ = stream.set_nodelay(true);
        let mut link = Link { stream: stream.try_clone().expect("clone"), pending: Vec::new(), chain: Vec::new() };
        let card = self.clone();
        let thread = std::thread::spawn(move || while link.serve_one(&card).is_ok() {});
        Inserted { stream, thread: Some(thread) }
    }

    /// The user pulls the card out the moment instruction `ins` reaches it (mid-operation).
    pub fn pull_when(&self, ins: u8) {
        *self.pull_at.lock().unwrap() = Some(ins);
    }

    /// Every command the card has received since the last `take_seen`.
    pub fn take_seen(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }

    /// Run `f` on the applet (to read or set its state in a test).
    pub fn with<R>(&self, f: impl FnOnce(&mut A) -> R) -> R {
        f(&mut self.applet.lock().unwrap())
    }
}

impl Inserted {
    /// Pull the card out, as a user does mid-operation: the reader sees it gone at once.
    pub fn pull(mut self) {
        self.close();
    }

    fn close(&mut self) {
        let _ = self.stream.shutdown(Shutdown::Both);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Inserted {
    fn drop(&mut self) {
        self.close();
    }
}

/// One connection to vpcd: response chaining (61xx + GET RESPONSE) and command chaining (CLA
/// bit 0x10) are the transport's business, as in a card's operating system.
struct Link {
    stream: TcpStream,
    pending: Vec<u8>,
    chain: Vec<u8>,
}

impl Link {
    fn serve_one<A: Applet>(&mut self, card: &VirtualCard<A>) -> std::io::Result<()> {
        let mut len = [0u8; 2];
        // vpcd writes the length and the body apart; with Nagle on its side, the body waits for
        // our ACK of the length, which Linux delays by 40 ms unless asked not to (every read).
        let _ = rustix::net::sockopt::set_tcp_quickack(&self.stream, true);
        self.stream.read_exact(&mut len)?;
        let _ = rustix::net::sockopt::set_tcp_quickack(&self.stream, true);
        let mut body = vec![0u8; usize::from(u16::from_be_bytes(len))];
        self.stream.read_exact(&mut body)?;
        let answer = match body.as_slice() {
            [0] => None,
            [1] | [2] => {
                card.applet.lock().unwrap().reset();
                self.pending.clear();
                self.chain.clear();
                None
            }
            [4] => Some(card.applet.lock().unwrap().atr()),
            [_] => None,
            [_, ins, ..] if card.pull_at.lock().unwrap().take_if(|i| i == ins).is_some() => {
                let _ = self.stream.shutdown(Shutdown::Both);
                return Err(std::io::ErrorKind::ConnectionAborted.into());
            }
            apdu => Some(self.command(card, apdu)),
        };
        if let Some(a) = answer {
            let n = u16::try_from(a.len()).expect("short answer");
            self.stream.write_all(&[n.to_be_bytes().as_slice(), &a].concat())?;
        }
        Ok(())
    }

    fn command<A: Applet>(&mut self, card: &VirtualCard<A>, raw: &[u8]) -> Vec<u8> {
        let Some(apdu) = parse(raw) else { return sw::WRONG_LENGTH.to_be_bytes().to_vec() };
        card.seen.lock().unwrap().push(Seen {
            cla: apdu.cla,
            ins: apdu.ins,
            p1: apdu.p1,
            p2: apdu.p2,
            lc: apdu.data.len(),
        });
        if apdu.ins == 0xC0 && apdu.cla & 0x80 == 0 {
            let rest = std::mem::take(&mut self.pending);
            return self.respond(Reply::ok(rest), apdu.le);
        }
        self.pending.clear();
        if apdu.cla & 0x10 != 0 {
            self.chain.extend_from_slice(&apdu.data);
            return sw::OK.to_be_bytes().to_vec();
        }
        let mut whole = apdu.clone();
        if !self.chain.is_empty() {
            whole.data = std::mem::take(&mut self.chain);
            whole.data.extend_from_slice(&apdu.data);
        }
        let reply = card.applet.lock().unwrap().command(&whole);
        self.respond(reply, apdu.le)
    }

    /// Give at most `le` bytes (256 for a short Le of 0) and keep the rest for GET RESPONSE.
    fn respond(&mut self, reply: Reply, le: usize) -> Vec<u8> {
        let mut data = reply.data;
        let max = if le == 0 { 256 } else { le.min(65536) };
        let mut sw = reply.sw;
        if data.len() > max {
            self.pending = data.split_off(max);
            sw = 0x6100 | self.pending.len().min(255) as u16;
            if self.pending.len() > 255 {
                sw = 0x6100;
            }
        }
        data.extend_from_slice(&sw.to_be_bytes());
        data
    }
}

/// Short and extended command APDUs (ISO 7816-4 cases 1–4).
fn parse(b: &[u8]) -> Option<Apdu> {
    let [cla, ins, p1, p2, rest @ ..] = b else { return None };
    let mut a = Apdu { cla: *cla, ins: *ins, p1: *p1, p2: *p2, data: Vec::new(), le: 0 };
    match rest {
        [] => {}
        [le] => a.le = if *le == 0 { 256 } else { usize::from(*le) },
        [0, hi, lo] => a.le = usize::from(u16::from_be_bytes([*hi, *lo])).max(1),
        [0, hi, lo, body @ ..] => {
            let lc = usize::from(u16::from_be_bytes([*hi, *lo]));
            if body.len() < lc {
                return None;
            }
            a.data = body[..lc].to_vec();
            if let [h, l] = body[lc..] {
                a.le = match u16::from_be_bytes([h, l]) {
                    0 => 65536,
                    n => usize::from(n),
                };
            }
        }
        [lc, body @ ..] => {
            let lc = usize::from(*lc);
            if body.len() < lc {
                return None;
            }
            a.data = body[..lc].to_vec();
            match body[lc..] {
                [] => {}
                [le] => a.le = if le == 0 { 256 } else { usize::from(le) },
                _ => return None,
            }
        }
    }
    Some(a)
}

/// An ATR with its check byte (TCK: the XOR of every byte after TS), needed when T=1 is offered.
pub fn with_tck(atr: &[u8]) -> Vec<u8> {
    let tck = atr[1..].iter().fold(0u8, |x, b| x ^ b);
    [atr, &[tck]].concat()
}

/// BER-TLV with a one- or two-byte tag (ISO 7816-4 / SP 800-73-4 data objects).
pub fn tlv(tag: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = tag.to_vec();
    let n = value.len();
    match n {
        0..=0x7F => out.push(n as u8),
        0x80..=0xFF => out.extend_from_slice(&[0x81, n as u8]),
        _ => out.extend_from_slice(&[0x82, (n >> 8) as u8, n as u8]),
    }
    out.extend_from_slice(value);
    out
}

/// The value of the first `tag` (one byte) in a run of BER-TLVs, or None.
pub fn find_tag(mut b: &[u8], tag: u8) -> Option<&[u8]> {
    while let [t, rest @ ..] = b {
        let (len, rest) = match rest {
            [n @ 0..=0x7F, r @ ..] => (usize::from(*n), r),
            [0x81, n, r @ ..] => (usize::from(*n), r),
            [0x82, h, l, r @ ..] => (usize::from(u16::from_be_bytes([*h, *l])), r),
            _ => return None,
        };
        if rest.len() < len {
            return None;
        }
        if *t == tag {
            return Some(&rest[..len]);
        }
        b = &rest[len..];
    }
    None
}
