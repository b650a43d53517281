//! The front door's connections on one thread (mio): each session (session.rs) is fed what its
//! client has sent, without waiting for the rest, and its replies are written as the socket
//! takes them. A connection costs no thread while it is idle or sending; a message being signed
//! and relayed (the agent's call, the relay's) runs on a thread of its own, at most
//! `MAX_SUBMITTING` at once, the rest waiting their turn. At `[smtp] max_connections` the connection
//! idle longest is closed to make room (`[smtp] max_connections`), so idle clients keep nobody out.

use super::server::{submit, Shared};
use super::session::{Session, Submit, GREETING};
use crate::deadlines::{Deadline, Deadlines};
use crate::error::{Exit, Failure};
use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Poll, Token as Key, Waker};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

const LISTENER: Key = Key(0);
const WAKER: Key = Key(1);
/// Messages signed and relayed at once.
pub const MAX_SUBMITTING: usize = 8;
/// A client that sends nothing (and reads nothing) for this long is closed (RFC 5321 §4.5.3.2
/// gives a server 5 minutes per command).
const IDLE: Duration = Duration::from_secs(300);
/// A client that has not logged in by then is closed: a mail client logs in at once, and a
/// stranger holding connections holds each no longer.
const LOGIN_TIME: Duration = Duration::from_secs(60);
/// What one read takes; a session keeps at most a line (session::MAX_LINE) of it unread.
const READ_CHUNK: usize = 16 * 1024;
/// What the loop reads from one client before it serves the others.
const READ_TURN: usize = 256 * 1024;
/// Connections taken in at a time before the sessions are served again.
const ACCEPT_TURN: usize = 64;
/// A stranger this new is not closed to make room (the newcomer is turned away instead): a mail
/// client between the greeting and its login is not pushed out by a flood of connections.
const LOGIN_GRACE: Duration = Duration::from_secs(2);
/// Replies a client leaves unread before the door stops reading its commands.
const UNREAD_REPLIES: usize = 64 * 1024;

struct Conn {
    stream: TcpStream,
    session: Session,
    input: Vec<u8>,
    out: Vec<u8>,
    sent: usize,
    deadline: Deadline,
    accepted: Instant,
    /// Listed in the door's `again`.
    again: bool,
}

impl Conn {
    /// When it is closed if nothing more happens after `now`: a stranger by its login time.
    fn next_due(&self, now: Instant) -> Instant {
        match self.session.is_authed() {
            true => now + IDLE,
            false => (now + IDLE).min(self.accepted + LOGIN_TIME),
        }
    }
}

/// A message's reply, from its thread.
struct Done {
    id: usize,
    reply: String,
}

/// Sends the reply back when its thread ends, also when signing or relaying panicked.
struct Reply {
    id: usize,
    reply: Option<String>,
    tx: mpsc::Sender<Done>,
    waker: Arc<Waker>,
}

impl Drop for Reply {
    fn drop(&mut self) {
        let reply = self.reply.take().unwrap_or_else(|| "451 4.3.0 internal error; not sent, try again".into());
        let _ = self.tx.send(Done { id: self.id, reply });
        let _ = self.waker.wake();
    }
}

struct Door {
    shared: Arc<Shared>,
    poll: Poll,
    waker: Arc<Waker>,
    tx: mpsc::Sender<Done>,
    rx: mpsc::Receiver<Done>,
    listener: TcpListener,
    conns: HashMap<usize, Conn>,
    next_id: usize,
    timers: Deadlines,
    waiting: VecDeque<(usize, Submit)>,
    submitting: usize,
    retry_accept: Option<Instant>,
    /// Clients that had more to read when their turn ended.
    again: Vec<usize>,
    /// The listener had more to take in when its turn ended.
    accept_again: bool,
}

/// Serve the front door's clients until the process is stopped.
pub fn serve_connections(listener: std::net::TcpListener, shared: Arc<Shared>) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(Exit::Io, crate::tr!("agent-cannot-start", error = e.to_string()));
    listener.set_nonblocking(true).map_err(fail)?;
    let mut listener = TcpListener::from_std(listener);
    let poll = Poll::new().map_err(fail)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(fail)?);
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE).map_err(fail)?;
    let cap = shared.cfg.max_connections.max(1);
    crate::platform::allow_descriptors(cap as u64 + 256);
    let (tx, rx) = mpsc::channel();
    let mut door = Door {
        shared,
        poll,
        waker,
        tx,
        rx,
        listener,
        conns: HashMap::new(),
        next_id: 2,
        timers: Deadlines::default(),
        waiting: VecDeque::new(),
        submitting: 0,
        retry_accept: None,
        again: Vec::new(),
        accept_again: false,
    };
    let mut events = mio::Events::with_capacity(256);
    loop {
        let now = Instant::now();
        let next = door.timers.next().into_iter().chain(door.retry_accept).min();
        let next = if door.again.is_empty() && !door.accept_again { next } else { Some(now) };
        if let Err(e) = door.poll.poll(&mut events, next.map(|t| t.saturating_duration_since(now))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        for ev in events.iter() {
            match ev.token() {
                LISTENER => door.accept_all(),
                WAKER => {}
                Key(id) => door.pump(id),
            }
        }
        if std::mem::take(&mut door.accept_again) {
            door.accept_all();
        }
        for id in std::mem::take(&mut door.again) {
            if let Some(c) = door.conns.get_mut(&id) {
                c.again = false;
            }
            door.pump(id);
        }
        door.take_replies();
        door.expire();
        door.start_waiting();
    }
}

impl Door {
    fn accept_all(&mut self) {
        for taken in 0.. {
            if taken == ACCEPT_TURN {
                self.accept_again = true;
                return;
            }
            let (mut stream, peer) = match self.listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // Out of descriptors: the rest wait in the kernel's queue for a moment.
                    self.retry_accept = Some(Instant::now() + Duration::from_millis(10));
                    return;
                }
            };
            if !peer.ip().is_loopback() {
                continue;
            }
            if self.conns.len() >= self.shared.cfg.max_connections.max(1) && !self.close_longest_idle() {
                let _ = stream.write(b"421 4.7.0 too many connections; try again shortly\r\n");
                continue;
            }
            let id = self.next_id;
            self.next_id += 1;
            if self.poll.registry().register(&mut stream, Key(id), Interest::READABLE | Interest::WRITABLE).is_err() {
                continue;
            }
            let now = Instant::now();
            let conn = Conn {
                stream,
                session: Session::default(),
                input: Vec::new(),
                out: GREETING.to_vec(),
                sent: 0,
                deadline: Deadline::default(),
                accepted: now,
                again: false,
            };
            self.conns.insert(id, conn);
            self.set_due(id, now + LOGIN_TIME.min(IDLE));
            self.pump(id);
        }
    }

    /// At the cap: a stranger (not logged in) is told and closed, the one there longest but not
    /// one that came within LOGIN_GRACE; only when no stranger is there at all, the logged-in
    /// session with no message under way there longest. False when there is no such session.
    fn close_longest_idle(&mut self) -> bool {
        // While strangers hold places, a logged-in client never gives up its own for a newcomer.
        let strangers = self.conns.values().any(|c| !c.session.is_authed());
        let longest = self
            .conns
            .iter()
            .filter(|(_, c)| match strangers {
                true => !c.session.is_authed() && c.accepted.elapsed() >= LOGIN_GRACE,
                false => c.session.is_idle(),
            })
            .min_by_key(|(_, c)| c.accepted)
            .map(|(id, _)| *id);
        let Some(id) = longest else { return false };
        if let Some(c) = self.conns.get_mut(&id) {
            let _ = c.stream.write(b"421 4.4.2 closing an idle connection to make room; try again\r\n");
        }
        self.close(id);
        true
    }

    /// Write what the session has to say, feed it what its client sent, read more; until the
    /// socket would block, the session waits for its message's reply, or it is over.
    fn pump(&mut self, id: usize) {
        let mut turn = 0;
        loop {
            let Some(c) = self.conns.get_mut(&id) else { return };
            // Replies first, as far as the socket takes them.
            while c.sent < c.out.len() {
                match c.stream.write(&c.out[c.sent..]) {
                    Ok(0) => return self.close(id),
                    Ok(n) => {
                        c.sent += n;
                        let due = c.next_due(Instant::now());
                        self.timers.set(id, &mut c.deadline, Some(due));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => return self.close(id),
                }
            }
            if c.sent == c.out.len() {
                c.out.clear();
                c.sent = 0;
                if c.out.capacity() > UNREAD_REPLIES {
                    c.out = Vec::new();
                }
                if c.session.is_closed() {
                    return self.close(id);
                }
            }
            if c.out.len() - c.sent > UNREAD_REPLIES {
                // Its replies unread: no more of its commands until it reads them.
                return;
            }
            let before = c.out.len();
            let room = c.sent + UNREAD_REPLIES;
            let submit = c.session.feed(&mut c.input, &mut c.out, room, &self.shared);
            if let Some(s) = submit {
                self.waiting.push_back((id, s));
                continue;
            }
            if c.out.len() > before {
                continue;
            }
            // Signing its message, or over: its next commands wait in the socket. Its replies
            // not yet taken: it is read again once they are (a writable event).
            if c.session.is_submitting() || c.session.is_closed() || c.sent < c.out.len() {
                return;
            }
            if turn >= READ_TURN {
                if !c.again {
                    c.again = true;
                    self.again.push(id);
                }
                return;
            }
            let have = c.input.len();
            c.input.resize(have + READ_CHUNK, 0);
            let read = c.stream.read(&mut c.input[have..]);
            c.input.truncate(have + *read.as_ref().unwrap_or(&0));
            match read {
                Ok(0) => return self.close(id),
                Ok(n) => {
                    turn += n;
                    let due = c.next_due(Instant::now());
                    self.timers.set(id, &mut c.deadline, Some(due));
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => return self.close(id),
            }
        }
    }

    fn close(&mut self, id: usize) {
        if let Some(mut c) = self.conns.remove(&id) {
            let _ = self.poll.registry().deregister(&mut c.stream);
        }
    }

    fn set_due(&mut self, id: usize, due: Instant) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        self.timers.set(id, &mut c.deadline, Some(due));
        self.timers.sweep(self.conns.iter().map(|(id, c)| (*id, &c.deadline)));
    }

    fn expire(&mut self) {
        let now = Instant::now();
        if self.retry_accept.is_some_and(|t| t <= now) {
            self.retry_accept = None;
            self.accept_all();
        }
        for (id, at) in self.timers.due_by(now) {
            let Some(c) = self.conns.get_mut(&id) else { continue };
            if !self.timers.passed(id, at, &mut c.deadline, now) {
                continue;
            }
            if c.session.is_submitting() {
                // Its message has its own time (the agent's and the relay's); it is judged again after.
                self.timers.set(id, &mut c.deadline, Some(now + IDLE));
                continue;
            }
            let bye: &[u8] = match c.session.is_authed() {
                true => b"421 4.4.2 closing: nothing from the client for 300 s\r\n",
                false => b"421 4.7.0 closing: not logged in within 60 s\r\n",
            };
            let _ = c.stream.write(bye);
            self.close(id);
        }
    }

    /// Messages waiting for a thread, started while fewer than MAX_SUBMITTING run.
    fn start_waiting(&mut self) {
        while self.submitting < MAX_SUBMITTING {
            let Some((id, s)) = self.waiting.pop_front() else { return };
            if !self.conns.contains_key(&id) {
                continue;
            }
            self.submitting += 1;
            let reply = Reply { id, reply: None, tx: self.tx.clone(), waker: self.waker.clone() };
            let shared = self.shared.clone();
            let spawned = std::thread::Builder::new().name("smtp-submit".into()).spawn(move || {
                // The whole guard moves here (not its field), so it answers from this thread.
                let mut reply = reply;
                reply.reply = Some(submit(&shared, &s.from, &s.rcpts, &s.spool));
            });
            // Without a thread the Reply was dropped with the closure: the client hears 451.
            let _ = spawned;
        }
    }

    fn take_replies(&mut self) {
        while let Ok(Done { id, reply }) = self.rx.try_recv() {
            self.submitting -= 1;
            let Some(c) = self.conns.get_mut(&id) else { continue };
            c.session.submitted(&reply, &mut c.out);
            let due = c.next_due(Instant::now());
            self.timers.set(id, &mut c.deadline, Some(due));
            // Its next commands (pipelined, or sent while it waited) are in the socket.
            self.pump(id);
        }
    }
}
