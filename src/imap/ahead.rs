//! Reading ahead of a client's download. A client that downloads a mailbox (mbsync, a first
//! sync) asks for its messages one after another; a plain mail's first read goes to the mail
//! store, so the mail store's work and the door's (the view, its digest) came one after the
//! other for each message. Here one thread of the door's, on its own connection, reads the next
//! plain mails while a client is given this one: their views and digests are ready when asked.
//!
//! Bounded: at most AHEAD_BYTES of views read and not yet asked, and what waits longer than
//! KEPT goes. Only plain mail is read ahead (no card, no agent): a view of protected mail is
//! made by the refresh thread alone. A view read ahead is taken as a view read in the client's
//! thread is: the size promised, its digest from then on (`Shared::keep`).

use super::{mirror, upstream, Folder, Shared};
use sha2::Digest;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

/// Views read ahead and not yet asked for, in bytes, at most.
const AHEAD_BYTES: u64 = 16 << 20;
/// Bytes of messages one FETCH reads ahead: a client waiting for one of them waits for no more.
const BATCH_BYTES: u64 = 2 << 20;
/// Messages one FETCH reads ahead (its UID set a short line), and planned at once, at most.
const BATCH_MESSAGES: usize = 64;
const PLANNED: usize = 256;
/// After the mail store refused the connection, or an answer: no reading ahead for this long.
const PAUSE: Duration = Duration::from_secs(30);
/// How long a view read ahead waits for its client.
const KEPT: Duration = Duration::from_secs(60);
/// How long a client waits for a view being read ahead before it reads the mail itself.
const WAIT: Duration = Duration::from_secs(10);

/// A message of a mailbox, by the door's UIDVALIDITY and UID.
type Key = (String, u32, u32);

/// A plain mail's view, read ahead.
pub struct Ready {
    pub view: Vec<u8>,
    pub digest: [u8; 32],
    at: Instant,
}

/// What to read next: messages of one mailbox, in the order a client will ask for them.
struct Plan {
    /// Not held: a mailbox no session holds may be dropped from the door meanwhile.
    folder: Weak<Folder>,
    uidvalidity: u32,
    upstream_uidvalidity: u32,
    /// (door UID, upstream UID, size).
    next: Vec<(u32, u32, u32)>,
}

#[derive(Default)]
struct Inner {
    plan: Option<Plan>,
    ready: HashMap<Key, Ready>,
    reading: HashSet<Key>,
    /// Bytes of `ready` and `reading`.
    bytes: u64,
    /// A client waited for a batch in vain: none waits again until a batch is done.
    stalled: bool,
    /// No reading ahead before this (the mail store refused it).
    paused_until: Option<Instant>,
}

/// Messages being read: their mailbox, its UIDVALIDITY, the mail store's, and (door UID,
/// upstream UID, size) of each.
type Batch = (Arc<Folder>, u32, u32, Vec<(u32, u32, u32)>);

impl Inner {
    fn batch(&mut self) -> Option<Batch> {
        if self.paused_until.is_some_and(|t| Instant::now() < t) {
            self.plan = None;
            return None;
        }
        let p = self.plan.as_mut()?;
        let Some(folder) = p.folder.upgrade() else {
            self.plan = None;
            return None;
        };
        let (uidvalidity, upstream_uidvalidity) = (p.uidvalidity, p.upstream_uidvalidity);
        let mut batch = Vec::new();
        let mut batch_bytes = 0u64;
        let mut i = 0;
        while let Some(&(uid, up, size)) = p.next.get(i) {
            let key = (folder.name.clone(), uidvalidity, uid);
            if self.ready.contains_key(&key) || self.reading.contains(&key) {
                i += 1;
                continue;
            }
            let size = u64::from(size);
            if self.bytes + batch_bytes + size > AHEAD_BYTES
                || (!batch.is_empty() && batch_bytes + size > BATCH_BYTES)
                || batch.len() == BATCH_MESSAGES
            {
                break;
            }
            batch_bytes += size;
            batch.push((uid, up, size as u32));
            i += 1;
        }
        p.next.drain(..i);
        if p.next.is_empty() {
            self.plan = None;
        }
        if batch.is_empty() {
            return None;
        }
        for &(uid, _, _) in &batch {
            self.reading.insert((folder.name.clone(), uidvalidity, uid));
        }
        self.bytes += batch_bytes;
        Some((folder, uidvalidity, upstream_uidvalidity, batch))
    }

    /// Views no client came for go.
    fn expire(&mut self) {
        let bytes = &mut self.bytes;
        self.ready.retain(|_, r| {
            let keep = r.at.elapsed() < KEPT;
            if !keep {
                *bytes = bytes.saturating_sub(r.view.len() as u64);
            }
            keep
        });
    }
}

#[derive(Default)]
pub struct Ahead {
    inner: Mutex<Inner>,
    changed: Condvar,
}

impl Ahead {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A client is reading `uid` of `folder` for the first time: the plain mails after it, not
    /// yet read, are read next. What was read ahead of this mailbox before `uid`, the client
    /// went past.
    pub fn plan_after(&self, folder: &Arc<Folder>, uidvalidity: u32, uid: u32) {
        if self.lock().paused_until.is_some_and(|t| Instant::now() < t) {
            return;
        }
        let (upstream_uidvalidity, next) = {
            let m = folder.lock();
            if m.uidvalidity() != uidvalidity {
                return;
            }
            let entries = &m.state.entries;
            let after = entries.partition_point(|e| e.uid <= uid);
            let mut bytes = 0u64;
            let next: Vec<(u32, u32, u32)> = entries[after..]
                .iter()
                .filter(|e| e.plain && e.lazy)
                .take(PLANNED)
                .take_while(|e| {
                    bytes += u64::from(e.size);
                    bytes <= AHEAD_BYTES
                })
                .map(|e| (e.uid, e.upstream, e.size))
                .collect();
            (m.state.upstream_uidvalidity, next)
        };
        let mut a = self.lock();
        let Inner { ready, bytes, .. } = &mut *a;
        ready.retain(|(name, validity, u), r| {
            let passed = name == &folder.name && *validity == uidvalidity && *u <= uid;
            if passed {
                *bytes = bytes.saturating_sub(r.view.len() as u64);
            }
            !passed
        });
        a.expire();
        a.plan = Some(Plan { folder: Arc::downgrade(folder), uidvalidity, upstream_uidvalidity, next });
        self.changed.notify_all();
    }

    /// The view of `uid` if it was read ahead, waiting for it if it is being read (up to WAIT
    /// for one FETCH: a read that stalls is waited for once, not once for each message in it).
    pub fn take(&self, folder: &Folder, uidvalidity: u32, uid: u32) -> Option<Ready> {
        let key = (folder.name.clone(), uidvalidity, uid);
        let deadline = Instant::now() + WAIT;
        let mut a = self.lock();
        while a.reading.contains(&key) {
            let left = deadline.checked_duration_since(Instant::now()).filter(|_| !a.stalled);
            let Some(left) = left else {
                a.stalled = true;
                return None;
            };
            a = self.changed.wait_timeout(a, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        let r = a.ready.remove(&key)?;
        a.bytes = a.bytes.saturating_sub(r.view.len() as u64);
        Some(r)
    }

    /// The next messages to read, as many as fit one batch and the bound, marked as being read.
    /// None when there was nothing to read for KEPT.
    fn next_batch(&self) -> Option<Batch> {
        let mut a = self.lock();
        loop {
            if let Some(batch) = a.batch() {
                return Some(batch);
            }
            // Nothing to read, or no room: until a client asks for more, or takes some.
            let (g, waited) = self.changed.wait_timeout(a, KEPT).unwrap_or_else(|p| p.into_inner());
            a = g;
            a.expire();
            if waited.timed_out() {
                return None;
            }
        }
    }

    /// A batch was read: its views ready (those the mail store still had, as plain mail).
    fn done(&self, folder: &Folder, uidvalidity: u32, batch: &[(u32, u32, u32)], views: HashMap<u32, Vec<u8>>) {
        // Digests outside the lock: a client waiting for another view is not held up.
        let mut views: HashMap<u32, Ready> = views
            .into_iter()
            .map(|(up, view)| {
                let digest = sha2::Sha256::digest(&view).into();
                (up, Ready { view, digest, at: Instant::now() })
            })
            .collect();
        let mut a = self.lock();
        a.stalled = false;
        for &(uid, up, size) in batch {
            let key = (folder.name.clone(), uidvalidity, uid);
            a.reading.remove(&key);
            a.bytes = a.bytes.saturating_sub(u64::from(size));
            if let Some(r) = views.remove(&up) {
                a.bytes += r.view.len() as u64;
                a.ready.insert(key, r);
            }
        }
        self.changed.notify_all();
    }
}

impl Shared {
    /// The reading-ahead thread: batches as clients' downloads plan them, on a connection of
    /// its own (made when first needed, made again when it broke). Ends never; sleeps when
    /// there is nothing to read.
    pub(super) fn read_ahead_loop(&self) {
        let mut conn: Option<upstream::Upstream> = None;
        loop {
            let Some((folder, uidvalidity, upstream_uidvalidity, batch)) = self.ahead.next_batch() else {
                // Idle for a while: the connection goes (the mail store need not keep it).
                conn = None;
                continue;
            };
            let uids: Vec<u32> = batch.iter().map(|&(_, up, _)| up).collect();
            // A mail store that refuses the connection or an answer (or a panic reading it)
            // costs the reading ahead, for PAUSE: clients read their mail themselves meanwhile.
            let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if conn.is_none() {
                    conn = Some(self.login().map_err(|e| e.to_string())?);
                }
                let up = conn.as_mut().ok_or("no connection")?;
                mirror::read_plain(up, &folder.name, &self.s.cfg.authserv_id, upstream_uidvalidity, &uids)
                    .map_err(|e| e.to_string())
            }));
            let views = match read {
                Ok(Ok(views)) => views,
                _ => {
                    conn = None;
                    self.ahead.lock().paused_until = Some(Instant::now() + PAUSE);
                    HashMap::new()
                }
            };
            self.ahead.done(&folder, uidvalidity, &batch, views);
        }
    }
}
