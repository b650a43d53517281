//! Notices a token call that never returns, and gets the agent serving again.
//!
//! A PKCS#11 call cannot be cancelled, and a module with a call still running cannot be safely
//! finalised or re-initialised (PKCS#11 v2.40 §5.4: C_Finalize with other threads inside the
//! library is undefined). The only clean way out is to leave the process: the watchdog answers
//! every waiting client with a clear error, flushes the audit log, and re-executes the agent
//! binary in the same process, handing over the listening socket. The hung thread dies with the
//! old image, the module is loaded and initialised afresh, and the socket never stops accepting
//! (connections queue in the kernel during the few milliseconds of the exec). Cached PINs are
//! gone with the old image, which is what a user expects after a card misbehaved.

use std::collections::HashMap;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Environment variable that carries the listening socket's descriptor across the re-exec.
pub const LISTEN_FD_VAR: &str = "SSMAX_CARD_LISTEN_FD";

/// How many times this agent has restarted itself (shown in notes and the audit log).
pub const RESTARTS_VAR: &str = "SSMAX_CARD_AGENT_RESTARTS";

/// Shared between the holders of token turns (each says when it is inside the token layer, under
/// its own id), the event loop and request threads (which count answers still to be written) and the
/// watchdog thread.
pub struct Watchdog {
    pub limit: Duration,
    busy: Mutex<HashMap<u64, (Instant, String)>>,
    pub restarting: AtomicBool,
    /// Answers owed: a connection accepted but not yet answered once, or a request read and
    /// not yet answered. The re-exec waits for these, so no client sees a bare hang-up.
    pub in_flight: AtomicUsize,
    /// The event loop has seen `restarting` and accepts no more (the kernel queues new
    /// connections for the next image).
    pub accept_parked: AtomicBool,
    /// Subscribers told of the restart that have not yet written it to their client: the
    /// re-exec waits for them too (a loaded machine ran the exec before a subscriber's thread).
    pub events_owed: AtomicUsize,
}

impl Watchdog {
    pub fn new(limit: Duration) -> Arc<Self> {
        Arc::new(Watchdog {
            limit,
            busy: Mutex::new(HashMap::new()),
            restarting: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            accept_parked: AtomicBool::new(false),
            events_owed: AtomicUsize::new(0),
        })
    }

    /// Holder `id` enters the token layer for `what` (a request, a presence check).
    pub fn enter(&self, id: u64, what: &str) {
        if let Ok(mut b) = self.busy.lock() {
            b.insert(id, (Instant::now(), what.to_string()));
        }
    }

    /// Holder `id` is out of the token layer, or waiting for a person (a PIN prompt is not a
    /// hung card: it has its own deadline, the client's).
    pub fn leave(&self, id: u64) {
        if let Ok(mut b) = self.busy.lock() {
            b.remove(&id);
        }
    }

    /// The longest call running past the limit, if any.
    pub fn overdue(&self) -> Option<(String, Duration)> {
        let b = self.busy.lock().ok()?;
        let (since, what) = b.values().min_by_key(|(since, _)| *since)?;
        let took = since.elapsed();
        (took > self.limit).then(|| (what.clone(), took))
    }

    /// The watchdog wrote the answer a request thread owed (that thread is stuck in the
    /// token, or its client's deadline passed): the debt is settled here, and that thread calls
    /// `Owed::settled_elsewhere`.
    pub fn settled_for_another(&self) {
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
    }

    /// A subscriber wrote the restart event (`Event::AgentRestarting`) to its client.
    pub fn event_written(&self) {
        let _ = self.events_owed.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// Wait (bounded) until the event loop has stopped accepting and every answer and restart
    /// event owed has been written.
    pub fn drain_answers(&self, within: Duration) {
        let until = Instant::now() + within;
        while (!self.accept_parked.load(Ordering::SeqCst)
            || self.in_flight.load(Ordering::SeqCst) > 0
            || self.events_owed.load(Ordering::SeqCst) > 0)
            && Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

/// One answer owed to a client; dropping it settles the debt (also on every early return).
pub struct Owed {
    dog: Arc<Watchdog>,
    owed: bool,
}

impl Owed {
    /// Counted at accept: the client may already have sent its request.
    pub fn at_accept(dog: &Arc<Watchdog>) -> Owed {
        dog.in_flight.fetch_add(1, Ordering::SeqCst);
        Owed { dog: dog.clone(), owed: true }
    }

    /// A request was read: an answer is owed (again).
    pub fn owe(&mut self) {
        if !self.owed {
            self.dog.in_flight.fetch_add(1, Ordering::SeqCst);
            self.owed = true;
        }
    }

    /// The answer was written (or the client is gone).
    pub fn settle(&mut self) {
        if self.owed {
            self.dog.in_flight.fetch_sub(1, Ordering::SeqCst);
            self.owed = false;
        }
    }
}

impl Owed {
    /// The watchdog answered this request and settled for it (`Watchdog::settled_for_another`).
    pub fn settled_elsewhere(&mut self) {
        self.owed = false;
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        self.settle();
    }
}

/// Replace this process image with a fresh agent that keeps listening on `listener`.
/// Returns only if the exec failed.
pub fn reexec(listener: RawFd) -> std::io::Error {
    use std::os::unix::process::CommandExt;
    // The module workers are this image's children: the next would not know to collect them.
    crate::token::stop_workers();
    // SAFETY: the listening socket is ours and stays open for the whole call.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(listener) };
    // Clearing close-on-exec lets it survive the exec.
    if let Err(e) = crate::platform::set_close_on_exec(fd, false) {
        return e;
    }
    let restarts = std::env::var(RESTARTS_VAR).ok().and_then(|v| v.parse::<u64>().ok()).unwrap_or(0) + 1;
    let mut args = std::env::args_os();
    let argv0 = args.next().unwrap_or_else(|| "ssmax-card".into());
    // /proc/self/exe: the binary this process runs, even if a package upgrade replaced the file.
    std::process::Command::new("/proc/self/exe")
        .arg0(argv0)
        .args(args)
        .env(LISTEN_FD_VAR, listener.to_string())
        .env(RESTARTS_VAR, restarts.to_string())
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDS")
        .env_remove("LISTEN_FDNAMES")
        .exec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_prompt_or_an_idle_token_is_never_overdue() {
        let w = Watchdog::new(Duration::from_millis(1));
        assert!(w.overdue().is_none());
        w.enter(1, "sign");
        w.leave(1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(w.overdue().is_none());
    }

    #[test]
    fn a_call_past_the_limit_is_reported_with_what_it_was() {
        let w = Watchdog::new(Duration::from_millis(1));
        w.enter(1, "sign");
        std::thread::sleep(Duration::from_millis(5));
        w.enter(2, "decrypt");
        w.leave(2);
        let (what, took) = w.overdue().expect("overdue");
        assert_eq!(what, "sign");
        assert!(took >= Duration::from_millis(1));
    }
}
