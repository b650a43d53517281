//! The deadlines of an event loop's connections in one heap. A connection has at most one live
//! entry, at its earliest deadline: a deadline moved later is entered again when the earlier
//! entry comes due, and entries of connections gone are swept once they outnumber the live
//! ones, so the heap stays within a small multiple of the connections however often deadlines
//! move.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

#[derive(Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
}

/// One connection's deadline, and the entry it has in the heap.
#[derive(Default, Clone, Copy)]
pub struct Deadline {
    pub due: Option<Instant>,
    entered: Option<Instant>,
}

impl Deadlines {
    /// Set connection `id`'s deadline `d` to `due` (None: none).
    pub fn set(&mut self, id: usize, d: &mut Deadline, due: Option<Instant>) {
        d.due = due;
        if let Some(t) = due {
            if d.entered.is_none_or(|e| t < e) {
                d.entered = Some(t);
                self.heap.push(Reverse((t, id)));
            }
        }
    }

    /// The earliest entry: when the loop must look again.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((t, _))| *t)
    }

    /// Take out the entries due by `now`; each is then judged by `passed`.
    pub fn due_by(&mut self, now: Instant) -> Vec<(usize, Instant)> {
        let mut due = Vec::new();
        while let Some(&Reverse((t, id))) = self.heap.peek() {
            if t > now {
                break;
            }
            self.heap.pop();
            due.push((id, t));
        }
        due
    }

    /// Whether the entry (`id`, `at`) taken out by `due_by` means connection `id`'s deadline
    /// `d` has passed: false for a stale entry, and for a deadline moved later (entered again).
    pub fn passed(&mut self, id: usize, at: Instant, d: &mut Deadline, now: Instant) -> bool {
        if d.entered != Some(at) {
            return false;
        }
        d.entered = None;
        match d.due {
            Some(t) if t > now => {
                self.set(id, d, Some(t));
                false
            }
            Some(_) => true,
            None => false,
        }
    }

    /// Sweep out the entries of connections gone once they outnumber the live ones.
    pub fn sweep<'a>(&mut self, live: impl ExactSizeIterator<Item = (usize, &'a Deadline)>) {
        if self.heap.len() > 2 * live.len() + 1024 {
            self.heap = live.filter_map(|(id, d)| d.entered.map(|t| Reverse((t, id)))).collect();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_deadline_moved_later_passes_only_at_its_new_time_and_stays_one_entry() {
        let (mut ds, mut d, t0) = (Deadlines::default(), Deadline::default(), Instant::now());
        for i in 1..=1000 {
            ds.set(7, &mut d, Some(t0 + Duration::from_millis(i)));
        }
        assert_eq!(ds.heap.len(), 1);
        let now = t0 + Duration::from_millis(500);
        let due = ds.due_by(now);
        assert_eq!(due.len(), 1);
        assert!(!ds.passed(due[0].0, due[0].1, &mut d, now), "moved to 1000 ms");
        let later = t0 + Duration::from_millis(1000);
        let due = ds.due_by(later);
        assert!(ds.passed(due[0].0, due[0].1, &mut d, later));
    }

    #[test]
    fn entries_of_connections_gone_are_swept() {
        let (mut ds, t0) = (Deadlines::default(), Instant::now());
        for id in 0..5000 {
            ds.set(id, &mut Deadline::default(), Some(t0));
        }
        let live = [(1, Deadline { due: Some(t0), entered: Some(t0) })];
        ds.sweep(live.iter().map(|(id, d)| (*id, d)));
        assert_eq!(ds.heap.len(), 1);
    }
}
