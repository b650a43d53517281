//! One caller at a time, in arrival order, with a bounded line and a deadline for each waiter.
//!
//! Each token the agent holds has its own turnstile: a request uses a token while it holds that
//! token's turn, on its own request thread (a further hand-off to a thread per token would cost
//! more than the agent's own work on a small signature), and a request on another token never waits
//! for it. A `Mutex` alone would do for exclusion but not for the rest: it is not FIFO (a busy
//! client could starve others), has no deadline and no bound on the line, and cannot tell its
//! waiters that the agent is restarting. The turn passes straight to the next waiter, so a
//! newcomer never overtakes the line. A turn owns its turnstile (an `Arc`), so it can be kept
//! while the table of turnstiles changes.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::Thread;
use std::time::Instant;

/// Why no turn was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The line is full.
    Busy,
    /// The deadline passed while waiting.
    TimedOut,
    /// The turnstile was closed (the agent is restarting).
    Closed,
}

struct Line {
    held: bool,
    next_ticket: u64,
    waiting: VecDeque<(u64, Thread)>,
    /// The waiter the turn was passed to, until it notices.
    granted: Option<u64>,
    closed: bool,
}

pub struct Turnstile {
    line: Mutex<Line>,
    capacity: usize,
}

/// The turn, until dropped; then the next in line gets it.
pub struct Turn {
    gate: Arc<Turnstile>,
}

/// A poisoned lock only means a holder panicked; the line is still what the next caller needs,
/// so go on with it.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Turnstile {
    /// `capacity`: how many may wait while one holds the turn.
    pub fn new(capacity: usize) -> Arc<Self> {
        Arc::new(Turnstile {
            line: Mutex::new(Line {
                held: false,
                next_ticket: 0,
                waiting: VecDeque::new(),
                granted: None,
                closed: false,
            }),
            capacity,
        })
    }

    /// Wait for the turn until `deadline`.
    pub fn take(self: &Arc<Self>, deadline: Instant) -> Result<Turn, Refused> {
        let mut line = lock(&self.line);
        if line.closed {
            return Err(Refused::Closed);
        }
        if !line.held && line.waiting.is_empty() {
            line.held = true;
            return Ok(Turn { gate: self.clone() });
        }
        if line.waiting.len() >= self.capacity {
            return Err(Refused::Busy);
        }
        let me = line.next_ticket;
        line.next_ticket += 1;
        line.waiting.push_back((me, std::thread::current()));
        loop {
            let granted = line.granted == Some(me);
            if granted {
                line.granted = None;
            }
            if line.closed {
                line.waiting.retain(|(t, _)| *t != me);
                if granted {
                    Self::pass_on(line);
                }
                return Err(Refused::Closed);
            }
            if granted {
                return Ok(Turn { gate: self.clone() });
            }
            let now = Instant::now();
            if now >= deadline {
                // Under the lock, and not granted: the turn cannot be passed to us any more.
                line.waiting.retain(|(t, _)| *t != me);
                return Err(Refused::TimedOut);
            }
            drop(line);
            // Spurious wake-ups (or a token left by someone else's unpark) just loop.
            std::thread::park_timeout(deadline - now);
            line = lock(&self.line);
        }
    }

    /// Nobody holds the turn or waits for it.
    pub fn is_idle(&self) -> bool {
        let line = lock(&self.line);
        !line.held && line.waiting.is_empty()
    }

    /// Refuse everyone from now on, and wake whoever waits so they can say so.
    pub fn close(&self) {
        let mut line = lock(&self.line);
        line.closed = true;
        for (_, t) in &line.waiting {
            t.unpark();
        }
    }

    /// How many wait for the turn now.
    #[cfg(test)]
    pub fn waiting(&self) -> usize {
        lock(&self.line).waiting.len()
    }

    fn pass_on(mut line: MutexGuard<'_, Line>) {
        match line.waiting.pop_front() {
            Some((ticket, thread)) => {
                // `held` stays set: the turn goes to this waiter, not to whoever comes next.
                line.granted = Some(ticket);
                drop(line);
                thread.unpark();
            }
            None => line.held = false,
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        Turnstile::pass_on(lock(&self.gate.line));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn soon(ms: u64) -> Instant {
        Instant::now() + Duration::from_millis(ms)
    }

    /// Start a waiter that notes `n` in `seen` when given the turn; return once it is in line.
    fn queue_up(
        gate: &Arc<Turnstile>,
        seen: &Arc<Mutex<Vec<u32>>>,
        n: u32,
        deadline_ms: u64,
    ) -> std::thread::JoinHandle<Result<(), Refused>> {
        let before = gate.waiting();
        let (g, seen) = (gate.clone(), seen.clone());
        let h = std::thread::spawn(move || g.take(soon(deadline_ms)).map(|_turn| lock(&seen).push(n)));
        while gate.waiting() == before && !h.is_finished() {
            std::thread::sleep(Duration::from_millis(1));
        }
        h
    }

    #[test]
    fn waiters_get_the_turn_in_the_order_they_came() {
        let (gate, seen) = (Turnstile::new(16), Arc::new(Mutex::new(Vec::new())));
        let first = gate.take(soon(1000)).expect("free");
        let hs: Vec<_> = (0..6).map(|n| queue_up(&gate, &seen, n, 10_000)).collect();
        drop(first);
        for h in hs {
            h.join().expect("thread").expect("turn");
        }
        assert_eq!(*lock(&seen), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_full_line_is_refused_at_once_as_busy() {
        let (gate, seen) = (Turnstile::new(1), Arc::new(Mutex::new(Vec::new())));
        let held = gate.take(soon(1000)).expect("free");
        let waiter = queue_up(&gate, &seen, 1, 10_000);
        let t = Instant::now();
        assert_eq!(gate.take(soon(10_000)).err(), Some(Refused::Busy));
        assert!(t.elapsed() < Duration::from_secs(5));
        drop(held);
        assert_eq!(waiter.join().expect("thread"), Ok(()));
    }

    #[test]
    fn a_waiter_past_its_deadline_leaves_the_line_and_is_never_given_the_turn() {
        let (gate, seen) = (Turnstile::new(4), Arc::new(Mutex::new(Vec::new())));
        let held = gate.take(soon(1000)).expect("free");
        let late = queue_up(&gate, &seen, 1, 30);
        let patient = queue_up(&gate, &seen, 2, 10_000);
        assert_eq!(late.join().expect("thread"), Err(Refused::TimedOut));
        assert_eq!(gate.waiting(), 1);
        drop(held);
        assert_eq!(patient.join().expect("thread"), Ok(()));
        assert_eq!(*lock(&seen), vec![2]);
    }

    #[test]
    fn closing_wakes_every_waiter_with_closed_and_refuses_newcomers() {
        let (gate, seen) = (Turnstile::new(8), Arc::new(Mutex::new(Vec::new())));
        let _stuck = gate.take(soon(1000)).expect("free");
        let hs: Vec<_> = (0..3).map(|n| queue_up(&gate, &seen, n, 60_000)).collect();
        let t = Instant::now();
        gate.close();
        for h in hs {
            assert_eq!(h.join().expect("thread"), Err(Refused::Closed));
        }
        assert!(t.elapsed() < Duration::from_secs(5), "waiters were woken, not left to their deadline");
        assert_eq!(gate.take(soon(1000)).err(), Some(Refused::Closed));
    }

    #[test]
    fn idle_only_when_nobody_holds_the_turn_or_waits_for_it() {
        let (gate, seen) = (Turnstile::new(4), Arc::new(Mutex::new(Vec::new())));
        assert!(gate.is_idle());
        let held = gate.take(soon(1000)).expect("free");
        assert!(!gate.is_idle());
        let waiter = queue_up(&gate, &seen, 1, 10_000);
        drop(held);
        assert_eq!(waiter.join().expect("thread"), Ok(()));
        assert!(gate.is_idle());
    }

    #[test]
    fn only_one_holds_the_turn_at_a_time_under_contention() {
        let gate = Turnstile::new(64);
        let inside = Arc::new(AtomicUsize::new(0));
        let count = Arc::new(AtomicUsize::new(0));
        let hs: Vec<_> = (0..8)
            .map(|_| {
                let (gate, inside, count) = (gate.clone(), inside.clone(), count.clone());
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        let _turn = gate.take(soon(60_000)).expect("turn");
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders at once");
                        count.fetch_add(1, Ordering::SeqCst);
                        inside.fetch_sub(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().expect("no holder saw another");
        }
        assert_eq!(count.load(Ordering::SeqCst), 4000);
    }
}
