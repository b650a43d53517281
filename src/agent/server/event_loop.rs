//! Every client connection on one thread. The loop reads what each client has sent without
//! waiting for the rest (incoming.rs), answers `ping` and holds subscriptions itself, and hands
//! each other request, once whole, to a request thread (at most `[agent] max_requests` run at
//! once; the rest wait here, within their own timeout). A connection that sends nothing costs
//! a few hundred bytes and no thread, so idle connections never keep a client out: at the
//! connection cap the one idle longest is closed to make room.
//!
//! The sockets stay blocking for the request threads that write answers (with their write
//! timeout); the loop reads and writes with MSG_DONTWAIT, and queues what a socket does not take.

use super::*;
use crate::agent::incoming::{Complete, Incoming, STEP};
use crate::agent::protocol::MAX_FDS;
use crate::deadlines::{Deadline, Deadlines};
use mio::unix::SourceFd;
use mio::{Interest, Poll, Token as Key, Waker};
use std::collections::VecDeque;

const LISTENER: Key = Key(0);
const WAKER: Key = Key(1);
/// Bytes of requests the loop may hold, read and not yet taken by a request thread. Past it, a
/// client's body is left in its socket (the client waits in its write) until room frees.
const READ_BUDGET: usize = 256 << 20;
/// What the loop reads from one connection before it serves the others: a client sending a
/// large body takes its turn with them.
const READ_TURN: usize = 4 << 20;
/// What a client may leave unread of the loop's answers and events before it is closed.
const MAX_UNREAD: usize = 1 << 20;
/// Descriptors the agent keeps for itself beyond its connections (modules, audit, probes).
const SPARE_DESCRIPTORS: u64 = 512;
/// Descriptors clients may have passed with requests the loop holds (read, or waiting for a
/// thread); past it, reading stops as it does for the byte budget. Kept beside the connections
/// and the spare, so a client passing descriptors can never use up the agent's.
const FD_BUDGET: usize = 2048;
/// A request thread with nothing to do for this long ends.
const WORKER_IDLE: Duration = Duration::from_secs(60);

/// Bytes and descriptors of requests read and not yet taken by a request thread (READ_BUDGET,
/// FD_BUDGET): charged by the loop, and by a request thread reading a client's next request.
#[derive(Default)]
struct Budget {
    bytes: AtomicUsize,
    fds: AtomicUsize,
    /// Whole requests waiting for a thread (a request thread gives its connection back rather
    /// than serve the same client again while others wait).
    queued: AtomicUsize,
    /// Connections paused for want of room (a request thread that frees some wakes the loop).
    paused: AtomicUsize,
}

impl Budget {
    /// Reserve what the next read into `incoming` may hold (a step of bytes if it grows, and
    /// the descriptors one read may bring), so readers on several threads never overshoot
    /// together; None when there is no room. Given back (`take`) once the read is charged.
    fn reserve(&self, incoming: &Incoming) -> Option<(usize, usize)> {
        let bytes = if incoming.grows() { STEP } else { 0 };
        let up = |limit: usize, by: usize| move |n: usize| (n + by <= limit).then_some(n + by);
        self.bytes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, up(READ_BUDGET, bytes)).ok()?;
        if self.fds.fetch_update(Ordering::SeqCst, Ordering::SeqCst, up(FD_BUDGET, MAX_FDS)).is_err() {
            self.bytes.fetch_sub(bytes, Ordering::SeqCst);
            return None;
        }
        Some((bytes, MAX_FDS))
    }

    fn room_for_step(&self) -> bool {
        self.bytes.load(Ordering::SeqCst) + STEP <= READ_BUDGET
            && self.fds.load(Ordering::SeqCst) + MAX_FDS <= FD_BUDGET
    }

    fn add(&self, bytes: usize, fds: usize) {
        self.bytes.fetch_add(bytes, Ordering::SeqCst);
        self.fds.fetch_add(fds, Ordering::SeqCst);
    }

    fn take(&self, bytes: usize, fds: usize) {
        self.bytes.fetch_sub(bytes, Ordering::SeqCst);
        self.fds.fetch_sub(fds, Ordering::SeqCst);
    }

    /// Move a holder's charge from what `charged` says to what `incoming` holds now.
    fn recharge(&self, charged: &mut (usize, usize), incoming: &Incoming) {
        let now = (incoming.held(), incoming.descriptors());
        self.add(now.0, now.1);
        self.take(charged.0, charged.1);
        *charged = now;
    }
}

/// What other threads tell the loop.
enum Note {
    /// A request thread wrote its answer: the connection is the loop's again, or is closed.
    Back { id: usize, owed: Option<Owed>, keep: bool, next: Handback },
    /// An event for the subscriber on connection `id`.
    Event { id: usize, ev: Box<Response> },
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Phase {
    /// Reading requests.
    Reading,
    /// Reading, stopped until the loop's reading budget has room.
    Paused,
    /// A whole request waits for a request thread.
    Queued,
    /// A request thread has the connection until it sends `Note::Back`.
    Working,
    /// Gets events; anything it sends, or its closing, ends it.
    Subscribed,
}

struct Conn {
    stream: Arc<UnixStream>,
    peer: Peer,
    /// None while a request thread holds the answer owed.
    owed: Option<Owed>,
    phase: Phase,
    incoming: Incoming,
    /// What `incoming` has added to the budget: bytes and descriptors.
    charged: (usize, usize),
    /// Listed in the loop's `again`.
    again: bool,
    out: Vec<u8>,
    sent: usize,
    close_when_sent: bool,
    /// When the connection must have sent its next whole request (or read what it was sent).
    deadline: Deadline,
    /// Since when it has had nothing under way (what the cap closes first).
    idle_since: Instant,
    /// For a subscriber: set once the connection is closed, so events stop being sent to it.
    gone: Option<Arc<AtomicBool>>,
}

/// Gives a connection back to the loop when its request thread is done with it, also when the
/// request panicked (the connection is then closed, and its place in `max_requests` freed).
struct GiveBack {
    id: usize,
    owed: Option<Owed>,
    keep: bool,
    next: Handback,
    tx: mpsc::Sender<Note>,
    waker: Arc<Waker>,
}

impl Drop for GiveBack {
    fn drop(&mut self) {
        let (id, keep) = (self.id, self.keep && self.owed.is_some());
        let next = std::mem::take(&mut self.next);
        let _ = self.tx.send(Note::Back { id, owed: self.owed.take(), keep, next });
        let _ = self.waker.wake();
    }
}

/// A request waiting for a thread.
struct Waiting {
    id: usize,
    req: Request,
    call: Call,
    body: Vec<u8>,
    fds: Vec<OwnedFd>,
    received: Instant,
}

/// One request, as its thread runs it.
type Work = Box<dyn FnOnce() + Send>;

/// The request threads: started as needed up to the loop's limit, each taking the next request
/// from one queue, ending after a minute with nothing to do.
struct Workers {
    tx: mpsc::Sender<Work>,
    rx: Arc<Mutex<mpsc::Receiver<Work>>>,
    idle: Arc<AtomicUsize>,
}

struct Loop {
    agent: Arc<Agent>,
    poll: Poll,
    waker: Arc<Waker>,
    tx: mpsc::Sender<Note>,
    rx: mpsc::Receiver<Note>,
    listener: UnixListener,
    accepting: bool,
    /// Accept failed for want of descriptors: try again then.
    retry_accept: Option<Instant>,
    conns: HashMap<usize, Conn>,
    next_id: usize,
    timers: Deadlines,
    /// Bytes of requests held by the loop (READ_BUDGET), and descriptors (FD_BUDGET).
    budget: Arc<Budget>,
    paused: VecDeque<usize>,
    /// Connections that had more to read when their turn ended.
    again: Vec<usize>,
    waiting: VecDeque<Waiting>,
    working: usize,
    workers: Workers,
    idle: Duration,
    cap: usize,
    max_requests: usize,
    door: TurnAway,
    me: u32,
}

/// Serve the agent's socket until the process ends (or re-executes itself).
pub(super) fn serve_connections(agent: Arc<Agent>, listener: UnixListener) -> Result<(), Failure> {
    let fail = |e: std::io::Error| Failure::new(Exit::Io, crate::tr!("agent-cannot-start", error = e.to_string()));
    let poll = Poll::new().map_err(fail)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER).map_err(fail)?);
    listener.set_nonblocking(true).map_err(fail)?;
    poll.registry().register(&mut SourceFd(&listener.as_raw_fd()), LISTENER, Interest::READABLE).map_err(fail)?;
    let wanted = agent.cfg.max_connections.max(1) as u64;
    // Beside the connections: the agent's own, those held for requests read, and those a
    // request thread holds while it runs (each up to MAX_FDS).
    let running = (agent.cfg.max_requests.max(1) * MAX_FDS) as u64;
    let kept = SPARE_DESCRIPTORS + FD_BUDGET as u64 + running;
    let room = crate::platform::allow_descriptors(wanted + kept);
    let cap = wanted.min(room.saturating_sub(kept).max(1)) as usize;
    if cap < agent.cfg.max_connections {
        eprintln!("ssmax-card agent: {}", crate::tr!("agent-connections-capped", limit = cap, descriptors = room));
    }
    let (tx, rx) = mpsc::channel();
    let (wtx, wrx) = mpsc::channel();
    let mut l = Loop {
        poll,
        waker,
        tx,
        rx,
        listener,
        accepting: true,
        retry_accept: None,
        conns: HashMap::new(),
        next_id: 2,
        timers: Deadlines::default(),
        budget: Arc::new(Budget::default()),
        paused: VecDeque::new(),
        again: Vec::new(),
        waiting: VecDeque::new(),
        working: 0,
        workers: Workers { tx: wtx, rx: Arc::new(Mutex::new(wrx)), idle: Arc::new(AtomicUsize::new(0)) },
        idle: Duration::from_millis(agent.cfg.idle_timeout_ms.max(100)),
        cap,
        max_requests: agent.cfg.max_requests.max(1),
        door: TurnAway::start()?,
        me: crate::platform::uid(),
        agent,
    };
    let mut happened = mio::Events::with_capacity(1024);
    loop {
        let now = Instant::now();
        let next = l.timers.next().into_iter().chain(l.retry_accept);
        let next = next.chain(l.waiting.iter().map(deadline_of)).min();
        let next = if l.again.is_empty() { next } else { Some(now) };
        if let Err(e) = l.poll.poll(&mut happened, next.map(|t| t.saturating_duration_since(now))) {
            if e.kind() != std::io::ErrorKind::Interrupted {
                std::thread::sleep(Duration::from_millis(10));
            }
            continue;
        }
        for ev in happened.iter() {
            match ev.token() {
                LISTENER => l.accept_all(),
                WAKER => {}
                Key(id) => l.ready(id, ev.is_readable() || ev.is_read_closed() || ev.is_error()),
            }
        }
        for id in std::mem::take(&mut l.again) {
            if let Some(c) = l.conns.get_mut(&id) {
                c.again = false;
            }
            l.read_requests(id);
        }
        l.take_notes();
        l.stop_for_restart();
        // Room freed by a request thread goes to the paused before any of them is judged idle.
        l.start_waiting();
        l.resume_paused();
        l.expire();
        l.start_waiting();
        l.resume_paused();
        l.budget.queued.store(l.waiting.len(), Ordering::SeqCst);
        l.budget.paused.store(l.paused.len(), Ordering::SeqCst);
    }
}

impl Loop {
    fn accept_all(&mut self) {
        while self.accepting {
            let stream = match self.listener.accept() {
                Ok((s, _)) => s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    // Out of descriptors (EMFILE), or a connection reset before it was taken:
                    // the rest wait in the kernel's queue for a moment, not in a spinning loop.
                    self.retry_accept = Some(Instant::now() + Duration::from_millis(10));
                    return;
                }
            };
            self.take_in(stream);
        }
    }

    fn take_in(&mut self, stream: UnixStream) {
        let dog = &self.agent.dog;
        let owed = Owed::at_accept(dog);
        let Ok(peer) = crate::platform::peer_of(&stream) else { return };
        if peer.uid != self.me {
            let answer = error_response(0, Exit::Usage, crate::tr!("agent-other-uid", uid = self.me.to_string()));
            return self.door.refuse(stream, owed, answer);
        }
        if self.conns.len() >= self.cap && !self.close_longest_idle() {
            let busy = Response {
                retry_after_ms: Some(200),
                ..error_response(0, Exit::Busy, crate::tr!("agent-busy-connections", limit = self.cap))
            };
            return self.door.refuse(stream, owed, busy);
        }
        // Some systems hand out accepted sockets non-blocking like their listener; the request
        // threads write blocking, bounded by the write timeout.
        if stream.set_nonblocking(false).is_err() || stream.set_write_timeout(Some(self.idle)).is_err() {
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let registered = self.poll.registry().register(
            &mut SourceFd(&stream.as_raw_fd()),
            Key(id),
            Interest::READABLE | Interest::WRITABLE,
        );
        if registered.is_err() {
            return;
        }
        let now = Instant::now();
        self.conns.insert(
            id,
            Conn {
                stream: Arc::new(stream),
                peer,
                owed: Some(owed),
                phase: Phase::Reading,
                incoming: Incoming::default(),
                charged: (0, 0),
                again: false,
                out: Vec::new(),
                sent: 0,
                close_when_sent: false,
                deadline: Deadline::default(),
                idle_since: now,
                gone: None,
            },
        );
        self.set_due(id, Some(now + self.idle));
        // The client may have sent its request before it was taken in.
        self.read_requests(id);
    }

    /// At the cap: close the connection that has waited longest with nothing under way (a
    /// subscriber is one), else the one whose request has been coming longest, telling it why.
    /// False when every connection has a whole request in the agent's hands.
    fn close_longest_idle(&mut self) -> bool {
        // Those with nothing under way first, then those whose request has been coming longest;
        // a request that is whole (waiting for a thread, or running) is never cut off.
        let longest = self
            .conns
            .iter()
            .filter(|(_, c)| matches!(c.phase, Phase::Reading | Phase::Paused | Phase::Subscribed))
            .min_by_key(|(_, c)| (!c.incoming.is_empty(), c.idle_since))
            .map(|(id, _)| *id);
        let Some(id) = longest else { return false };
        let msg = crate::tr!("agent-closing-idle-for-room", limit = self.cap);
        // It may come straight back: the client's retry takes a request it could not send
        // here to a new connection (client::call_retrying).
        let resp = Response { retry_after_ms: Some(10), ..error_response(0, Exit::Busy, msg) };
        self.answer(id, &resp, true);
        // Gone whether or not the socket took the answer: its place is the newcomer's.
        self.close(id);
        true
    }

    /// A connection's socket is ready; `readable` also when it was closed or failed.
    fn ready(&mut self, id: usize, readable: bool) {
        let Some(c) = self.conns.get(&id) else { return };
        match c.phase {
            Phase::Reading => {
                self.flush(id);
                self.read_requests(id);
            }
            Phase::Subscribed => {
                self.flush(id);
                if readable {
                    // A subscriber has nothing to send: anything it sends, or its leaving, ends it.
                    self.close(id);
                }
            }
            // Its turn comes (the budget frees, a thread takes it, the thread gives it back):
            // it is read then, and a closed one found closed.
            Phase::Paused | Phase::Queued | Phase::Working => {}
        }
    }

    /// Read whole requests from connection `id` for as long as it has sent some, answering or
    /// handing on each, and not while an answer to it is still on its way.
    fn read_requests(&mut self, id: usize) {
        let mut turn = 0;
        loop {
            let Some(c) = self.conns.get_mut(&id) else { return };
            if c.phase != Phase::Reading || !c.out.is_empty() {
                return;
            }
            if turn >= READ_TURN {
                if !c.again {
                    c.again = true;
                    self.again.push(id);
                }
                return;
            }
            let Some(reserved) = self.budget.reserve(&c.incoming) else {
                c.phase = Phase::Paused;
                self.paused.push_back(id);
                return;
            };
            let mut drained = false;
            let read = crate::platform::recv_with_descriptors_now(&c.stream, c.incoming.room());
            let step = match read {
                Ok(r) if r.truncated => Err(Some(ProtocolError::TooManyFds)),
                Ok(r) if r.bytes == 0 => Err(None),
                Ok(r) => {
                    turn += r.bytes;
                    c.incoming.filled(r.bytes, r.fds).map_err(Some)
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    drained = true;
                    Ok(None)
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Ok(None),
                Err(_) => Err(None),
            };
            self.budget.recharge(&mut c.charged, &c.incoming);
            self.budget.take(reserved.0, reserved.1);
            if !c.incoming.is_empty() {
                c.idle_since = Instant::now();
            }
            match step {
                // Nothing more has come.
                Ok(None) if drained => return,
                Ok(None) => {}
                Ok(Some(whole)) => self.route(id, whole),
                // Closed by the client, or its socket failed.
                Err(None) => return self.close(id),
                Err(Some(e)) => {
                    let resp = error_response(0, Exit::Usage, format!("bad request: {e}"));
                    return self.answer(id, &resp, true);
                }
            }
        }
    }

    /// A whole request: answered here (ping, subscribe, the malformed), or handed on.
    fn route(&mut self, id: usize, (req, body, fds): Complete) {
        let received = Instant::now();
        let Some(c) = self.conns.get_mut(&id) else { return };
        if let Some(o) = c.owed.as_mut() {
            o.owe();
        }
        c.idle_since = received;
        if req.v != VERSION {
            let resp = error_response(req.id, Exit::Usage, format!("protocol version {} is not {VERSION}", req.v));
            return self.answer(id, &resp, true);
        }
        let call = match req.call() {
            Ok(call) => call,
            Err(e) => {
                self.answer(id, &error_response(req.id, Exit::Usage, e.to_string()), false);
                return self.set_due(id, Some(received + self.idle));
            }
        };
        match call {
            Call::Ping => {
                self.answer(id, &ping_response(req.id), false);
                self.set_due(id, Some(received + self.idle));
            }
            Call::Subscribe => self.subscribe(id, req.id),
            call if self.agent.dog.restarting.load(Ordering::SeqCst) => {
                let _ = call;
                self.answer(id, &restarting_response(req.id), true);
            }
            call => {
                c.phase = Phase::Queued;
                self.budget.add(body.capacity(), fds.len());
                self.set_due(id, None);
                self.waiting.push_back(Waiting { id, req, call, body, fds, received });
            }
        }
    }

    fn subscribe(&mut self, id: usize, req_id: u64) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        let gone = Arc::new(AtomicBool::new(false));
        c.phase = Phase::Subscribed;
        c.gone = Some(gone.clone());
        let (tx, waker) = (self.tx.clone(), self.waker.clone());
        let flag = gone.clone();
        let send = Box::new(move |ev: Response| {
            if flag.load(Ordering::SeqCst) {
                return false;
            }
            let sent = tx.send(Note::Event { id, ev: Box::new(ev) }).is_ok();
            let _ = waker.wake();
            sent
        });
        lock(&self.agent.events).push(super::super::presence::Subscriber { gone, send });
        self.set_due(id, None);
        self.answer(id, &Response { v: VERSION, id: req_id, ok: true, ..Default::default() }, false);
        // A subscriber waits for events, not answers: it does not hold up a restart.
        if let Some(o) = self.conns.get_mut(&id).and_then(|c| c.owed.as_mut()) {
            o.settle();
        }
        // Anything it sent after its request (it has nothing to send) ends it now.
        if let Some(c) = self.conns.get(&id) {
            let mut byte = [0u8; 1];
            match crate::platform::recv_with_descriptors_now(&c.stream, &mut byte) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                _ => self.close(id),
            }
        }
    }

    /// Queue `resp` for connection `id` and send what its socket takes now.
    fn answer(&mut self, id: usize, resp: &Response, then_close: bool) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        match encode_message(resp, &[]) {
            Ok(bytes) => c.out.extend_from_slice(&bytes),
            Err(_) => c.close_when_sent = true,
        }
        c.close_when_sent |= then_close;
        self.flush(id);
    }

    /// Send what is queued for connection `id`, as far as its socket takes it now.
    fn flush(&mut self, id: usize) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        while c.sent < c.out.len() {
            match crate::platform::send_now(&c.stream, &c.out[c.sent..]) {
                Ok(n) => c.sent += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => return self.close(id),
            }
        }
        if c.sent < c.out.len() {
            if c.out.len() - c.sent > MAX_UNREAD {
                return self.close(id);
            }
            // What it was sent must be read within the idle time, like a request.
            if c.deadline.due.is_none() {
                let due = Some(Instant::now() + self.idle);
                return self.set_due(id, due);
            }
            return;
        }
        c.out.clear();
        c.sent = 0;
        if c.phase == Phase::Reading {
            if let Some(o) = c.owed.as_mut() {
                o.settle();
            }
        }
        if c.close_when_sent {
            self.close(id);
        } else if c.phase == Phase::Subscribed {
            self.set_due(id, None);
        }
    }

    fn close(&mut self, id: usize) {
        let Some(c) = self.conns.remove(&id) else { return };
        let _ = self.poll.registry().deregister(&mut SourceFd(&c.stream.as_raw_fd()));
        self.budget.take(c.charged.0, c.charged.1);
        if let Some(g) = &c.gone {
            g.store(true, Ordering::SeqCst);
            lock(&self.agent.events).retain(|s| !s.gone.load(Ordering::SeqCst));
        }
    }

    fn set_due(&mut self, id: usize, due: Option<Instant>) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        self.timers.set(id, &mut c.deadline, due);
        self.timers.sweep(self.conns.iter().map(|(id, c)| (*id, &c.deadline)));
    }

    /// Connections whose time is up: the idle are told and closed; those that left an answer
    /// unread are closed.
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
            match c.phase {
                _ if !c.out.is_empty() => self.close(id),
                Phase::Reading | Phase::Paused => {
                    let e = ProtocolError::TimedOut(self.idle);
                    let msg = format!("closing an idle connection: {e} ([agent] idle_timeout_ms)");
                    self.answer(id, &error_response(0, Exit::Usage, msg), true);
                }
                Phase::Queued | Phase::Working | Phase::Subscribed => {}
            }
        }
        // A request whose client's deadline passed while it waited for a thread.
        if !self.waiting.iter().any(|w| deadline_of(w) <= now) {
            return;
        }
        let (late, on_time): (Vec<Waiting>, Vec<Waiting>) = self.waiting.drain(..).partition(|w| deadline_of(w) <= now);
        self.waiting = on_time.into();
        for w in late {
            let ms = w.req.timeout_ms.clamp(1, 3_600_000);
            self.budget.take(w.body.capacity(), w.fds.len());
            self.back_to_reading(w.id);
            self.answer(w.id, &error_response(w.req.id, Exit::Io, crate::tr!("agent-timed-out", ms = ms)), false);
            // Whatever it sent meanwhile.
            self.read_requests(w.id);
        }
    }

    fn back_to_reading(&mut self, id: usize) {
        let now = Instant::now();
        if let Some(c) = self.conns.get_mut(&id) {
            c.phase = Phase::Reading;
            c.idle_since = now;
        }
        self.set_due(id, Some(now + self.idle));
    }

    /// Hand waiting requests to request threads, as many as may run.
    fn start_waiting(&mut self) {
        while self.working < self.max_requests {
            let Some(w) = self.waiting.pop_front() else { return };
            self.budget.take(w.body.capacity(), w.fds.len());
            let Some(c) = self.conns.get_mut(&w.id) else { continue };
            c.phase = Phase::Working;
            let (stream, peer) = (c.stream.clone(), c.peer);
            let mut owed = c.owed.take().unwrap_or_else(|| Owed::at_accept(&self.agent.dog));
            let agent = self.agent.clone();
            self.working += 1;
            let Waiting { id, req, call, body, fds, received } = w;
            let (tx, waker, budget, idle) = (self.tx.clone(), self.waker.clone(), self.budget.clone(), self.idle);
            let back = GiveBack { id, owed: None, keep: false, next: Handback::default(), tx, waker };
            self.workers.run(Box::new(move || {
                // The whole guard moves here (not its fields), so it is dropped on this thread.
                let mut back = back;
                let mut job = Some((req, call, body, fds, received));
                for run in 1.. {
                    if let Some((req, call, body, fds, received)) = job.take() {
                        back.keep = run_request(&agent, &stream, peer, &mut owed, req, call, body, fds, received);
                    }
                    // A client that asks again at once is served on this thread: no hand-off to
                    // the loop and back between one request and the next. Not while others
                    // wait for a thread, and not for ever.
                    let others = budget.queued.load(Ordering::SeqCst) > 0 || run >= LINGER_RUNS;
                    if !back.keep || others || agent.dog.restarting.load(Ordering::SeqCst) {
                        break;
                    }
                    // Owed before a byte is read: a restart meanwhile waits for its answer.
                    owed.owe();
                    match linger(&stream, &budget, &back.waker) {
                        Lingered::Call(next) => job = Some(*next),
                        Lingered::Ping(ping_id) => {
                            let until = Instant::now() + idle;
                            let written = write_message(
                                &mut WriteUntil { sock: &stream, deadline: until },
                                &ping_response(ping_id),
                                &[],
                            );
                            owed.settle();
                            back.keep = written.is_ok();
                        }
                        Lingered::Back(next) => {
                            // Nothing begun: nothing owed (the loop owes again for what it reads).
                            if matches!(&next, Handback::Nothing)
                                || matches!(&next, Handback::Partly(i) if i.is_empty())
                            {
                                owed.settle();
                            }
                            back.next = next;
                            break;
                        }
                    }
                }
                back.owed = Some(owed);
            }));
        }
    }

    /// Connections stopped for want of reading budget, read again while it has room.
    fn resume_paused(&mut self) {
        while self.budget.room_for_step() {
            let Some(id) = self.paused.pop_front() else { return };
            if let Some(c) = self.conns.get_mut(&id).filter(|c| c.phase == Phase::Paused) {
                c.phase = Phase::Reading;
                self.read_requests(id);
            }
        }
    }

    /// Take over what a request thread read of a connection's next request.
    fn resume(&mut self, id: usize, incoming: Incoming) {
        let Some(c) = self.conns.get_mut(&id) else { return };
        // The request thread charged the budget for it as it read; the charge is the loop's now.
        c.incoming = incoming;
        c.charged = (c.incoming.held(), c.incoming.descriptors());
    }

    fn take_notes(&mut self) {
        while let Ok(note) = self.rx.try_recv() {
            match note {
                Note::Back { id, owed, keep, next } => {
                    self.working -= 1;
                    let restarting = self.agent.dog.restarting.load(Ordering::SeqCst);
                    let Some(c) = self.conns.get_mut(&id).filter(|_| keep) else {
                        if let Handback::Partly(i) = &next {
                            self.budget.take(i.held(), i.descriptors());
                        }
                        self.close(id);
                        continue;
                    };
                    c.owed = owed;
                    self.back_to_reading(id);
                    // Taken over before anything else, so its charge is the loop's to give back.
                    let partly = matches!(&next, Handback::Partly(i) if !i.is_empty());
                    match next {
                        Handback::Partly(incoming) => self.resume(id, incoming),
                        // As the restart goes on, the loop answers it (route, stop_for_restart).
                        Handback::Other(whole) => self.route(id, *whole),
                        Handback::Broken(e) => {
                            let resp = error_response(0, Exit::Usage, format!("bad request: {e}"));
                            self.answer(id, &resp, true);
                        }
                        Handback::Nothing => {}
                    }
                    if restarting {
                        // As stop_for_restart does it: what came is read (a whole request is
                        // answered "restarting" by route); what had begun to come is answered so;
                        // the rest let go.
                        self.read_requests(id);
                        let begun = self.conns.get(&id).map(|c| partly || !c.incoming.is_empty() || !c.out.is_empty());
                        match begun {
                            Some(true) => self.answer(id, &restarting_response(0), true),
                            Some(false) => self.close(id),
                            None => {}
                        }
                        continue;
                    }
                    // Whatever it sent meanwhile (the next request, or its leaving).
                    self.read_requests(id);
                }
                Note::Event { id, ev } => {
                    let restart = ev.event == Some(Event::AgentRestarting);
                    if self.conns.get(&id).is_some_and(|c| c.phase == Phase::Subscribed) {
                        self.answer(id, &ev, false);
                    }
                    if restart {
                        self.agent.dog.event_written();
                    }
                }
            }
        }
    }

    /// The watchdog is restarting the agent: take no more connections (the kernel queues them
    /// for the next image), answer what was asked and let the rest go.
    fn stop_for_restart(&mut self) {
        if !self.accepting || !self.agent.dog.restarting.load(Ordering::SeqCst) {
            return;
        }
        self.accepting = false;
        let _ = self.poll.registry().deregister(&mut SourceFd(&self.listener.as_raw_fd()));
        for w in std::mem::take(&mut self.waiting) {
            self.budget.take(w.body.capacity(), w.fds.len());
            self.answer(w.id, &restarting_response(w.req.id), true);
        }
        let ids: Vec<usize> = self.conns.keys().copied().collect();
        for id in ids {
            // What came just now is answered "restarting", not cut off.
            self.read_requests(id);
            let Some(c) = self.conns.get(&id) else { continue };
            match c.phase {
                Phase::Reading | Phase::Paused if c.incoming.is_empty() && c.out.is_empty() => self.close(id),
                Phase::Reading | Phase::Paused => self.answer(id, &restarting_response(0), true),
                Phase::Queued | Phase::Working | Phase::Subscribed => {}
            }
        }
        self.agent.dog.accept_parked.store(true, Ordering::SeqCst);
    }
}

/// How long a request thread waits for a client's next request before it gives the connection
/// back to the loop: a client asking in a loop asks again within this.
const LINGER: Duration = Duration::from_millis(2);

/// A whole request a request thread may run itself: its parts, as `run_request` takes them.
type Job = (Request, Call, Vec<u8>, Vec<OwnedFd>, Instant);

fn ping_response(id: u64) -> Response {
    Response {
        v: VERSION,
        id,
        ok: true,
        notes: vec![format!("ssmax-card agent {}", env!("CARGO_PKG_VERSION"))],
        ..Default::default()
    }
}

/// At most this many requests are run one after the other on a request thread before the
/// connection goes back to the loop.
const LINGER_RUNS: usize = 64;

/// What a request thread found of a connection's next request.
enum Lingered {
    /// A whole one it runs itself.
    Call(Box<Job>),
    /// A ping it answers itself (with this id).
    Ping(u64),
    /// What the loop takes on from.
    Back(Handback),
}

/// What a request thread hands the loop with a connection.
#[derive(Default)]
enum Handback {
    #[default]
    Nothing,
    /// Part of a request (or none), charged to the budget: the loop reads on from there.
    Partly(Incoming),
    /// A whole one for the loop (ping, subscribe, a malformed one).
    Other(Box<Complete>),
    /// Bytes that are no request.
    Broken(ProtocolError),
}

/// Wait up to LINGER for the connection's next request, reading within the loop's budget.
fn linger(stream: &UnixStream, budget: &Budget, waker: &Waker) -> Lingered {
    let deadline = Instant::now() + LINGER;
    let (mut incoming, mut charged) = (Incoming::default(), (0, 0));
    let partly = |incoming: Incoming, mut charged: (usize, usize)| {
        budget.recharge(&mut charged, &incoming);
        Lingered::Back(Handback::Partly(incoming))
    };
    loop {
        let Some(reserved) = budget.reserve(&incoming) else {
            return partly(incoming, charged);
        };
        let read = crate::platform::recv_with_descriptors_now(stream, incoming.room());
        // What the read holds is charged below (or given back); the reservation goes now.
        let release = || budget.take(reserved.0, reserved.1);
        match read {
            Ok(r) if r.truncated => {
                release();
                budget.take(charged.0, charged.1);
                return Lingered::Back(Handback::Broken(ProtocolError::TooManyFds));
            }
            // Closed: the loop finds it so.
            Ok(r) if r.bytes == 0 => {
                release();
                return partly(incoming, charged);
            }
            Ok(r) => {
                let filled = incoming.filled(r.bytes, r.fds);
                budget.recharge(&mut charged, &incoming);
                release();
                if charged == (0, 0) && budget.paused.load(Ordering::SeqCst) > 0 {
                    // A whole request left the budget: a paused client may go on.
                    let _ = waker.wake();
                }
                match filled {
                    Ok(None) => {}
                    Ok(Some((req, body, fds))) => {
                        return match req.call() {
                            Ok(Call::Ping) if req.v == VERSION => Lingered::Ping(req.id),
                            Ok(call) if req.v == VERSION && !matches!(call, Call::Subscribe) => {
                                Lingered::Call(Box::new((req, call, body, fds, Instant::now())))
                            }
                            _ => Lingered::Back(Handback::Other(Box::new((req, body, fds)))),
                        }
                    }
                    Err(e) => {
                        budget.take(charged.0, charged.1);
                        return Lingered::Back(Handback::Broken(e));
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => release(),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                release();
                let left = deadline.saturating_duration_since(Instant::now());
                // Part of a request came: the loop reads the rest, however long it takes.
                if left.is_zero()
                    || !incoming.is_empty()
                    || !crate::platform::wait_readable(stream, left).unwrap_or(false)
                {
                    return partly(incoming, charged);
                }
            }
            Err(_) => {
                release();
                return partly(incoming, charged);
            }
        }
    }
}

fn deadline_of(w: &Waiting) -> Instant {
    w.received + Duration::from_millis(w.req.timeout_ms.clamp(1, 3_600_000))
}

impl Workers {
    /// Run `work` on a request thread: one that waits for work if there is one, else a new one.
    fn run(&self, work: Work) {
        if self.tx.send(work).is_err() {
            return;
        }
        // A waiting thread is promised this request by taking it out of `idle`; one that ends
        // must first take itself out, so no request is promised to a thread that is gone.
        if self.idle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
            return;
        }
        let (rx, idle) = (self.rx.clone(), self.idle.clone());
        // Without a new thread the request waits in the queue for the next thread that finishes.
        let _ = std::thread::Builder::new().name("request".into()).spawn(move || loop {
            let work = {
                let queue = lock(&rx);
                loop {
                    match queue.recv_timeout(WORKER_IDLE) {
                        Ok(w) => break w,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                        Err(mpsc::RecvTimeoutError::Timeout) => {
                            if idle.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                                return;
                            }
                        }
                    }
                }
            };
            work();
            idle.fetch_add(1, Ordering::SeqCst);
        });
    }
}
