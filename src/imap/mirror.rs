//! What the door serves of a mailbox, and under which UIDs. The door has a UID space of its
//! own: each upstream message gets the next door UID when its view is first made, and keeps it,
//! with the same bytes, across restarts (the map is saved, sealed, in the cache). A mail that
//! could not be opened yet (card absent, PIN declined) is shown as a notice saying so; once it
//! opens, its view comes under a new UID and the notice's UID is expunged, so no UID ever
//! changes what it shows. UIDVALIDITY changes when the upstream's does (or the cache is lost).
//! A FETCH reads views from the cache and never waits on the card; the views are made here, in
//! the door's own refresh, as mail arrives.

use super::cache::{Cache, Saved};
use super::upstream::{Body, Fetched, Upstream, UpstreamError};
use crate::agent::client::{call_retrying, connect};
use crate::agent::protocol::{Call, Request, ViewArgs};
use crate::error::Exit;
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::flag::FlagFetch;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Most messages one mailbox may hold in the door.
pub const MAX_MESSAGES: usize = 100_000;

/// The largest message the door shows (the agent's frame bound, less room for its header).
pub const MAX_MESSAGE: usize = (64 << 20) - (64 << 10);

/// How a message is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shown {
    /// Its view (ops/view.rs): any mail as it is, SSMAX mail verified (or failed) and opened.
    View,
    /// A notice in its place, for good (too large; a mail the agent will not take).
    Notice,
    /// A notice for a mail that could not be opened yet; tried again until it opens.
    Waiting,
}

/// One message as the door serves it, saved in the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The door's UID.
    pub uid: u32,
    /// The upstream's UID of the mail shown.
    pub upstream: u32,
    pub size: u32,
    /// SHA-256 of the view: a view built again must be these bytes to keep this UID.
    pub digest: [u8; 32],
    pub shown: Shown,
    /// When it was last read (the state's clock): the least recently read views go first.
    pub used: u64,
    /// Whether its view is in the cache now.
    pub stored: bool,
    /// A mail that needs no card, taken in by its header alone: its view (the mail less our
    /// verdict's fields) is made from the upstream when first read; `size` is known from the
    /// header and the upstream's size, `digest` once made.
    #[serde(default)]
    pub lazy: bool,
    /// A mail that needs no card: its view is made from the upstream without the agent when it
    /// is first read (or read again after eviction).
    #[serde(default)]
    pub plain: bool,
    /// Digests of the parts the card opened (super::part_digests of the view, less those of
    /// the mail as it came): what a client may put in a message of its own (a forward, a
    /// draft, a Sent copy) is known as decrypted, and never uploaded (Shared::append).
    #[serde(default, with = "hex_digests")]
    pub parts: Vec<super::PartDigest>,
}

/// The door's UID map, as saved (sealed) in the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// The mailbox on the mail store, as the upstream names it ("" is INBOX, as it was when
    /// INBOX was all).
    #[serde(default)]
    pub mailbox: String,
    pub upstream_uidvalidity: u32,
    pub uidvalidity: u32,
    pub next_uid: u32,
    /// The highest upstream UID taken in.
    pub last_upstream: u32,
    pub clock: u64,
    /// In UID order: a message's sequence number is its place here, from 1.
    pub entries: Vec<Entry>,
}

/// What the upstream says of a message now (never saved: asked at every refresh).
#[derive(Clone, Default)]
pub struct Live {
    pub flags: Vec<FlagFetch<'static>>,
    pub internal_date: Option<DateTime>,
}

/// How long after a declined PIN the door asks again, for any mail: meanwhile mail is tried
/// without a prompt (it opens as soon as the PIN is cached another way). One decline is not a
/// prompt per arriving mail.
const ASK_AGAIN_AFTER: Duration = Duration::from_secs(10 * 60);

pub struct Mirror {
    pub state: State,
    pub live: HashMap<u32, Live>,
    /// No PIN is asked before this (a PIN was declined or wrong).
    ask_after: Option<Instant>,
    /// What the last refresh could not do, for the log.
    pub pending: Vec<String>,
    /// The state changed since it was last saved; `used` alone, since when.
    dirty: bool,
    used_since: Option<Instant>,
}

/// A view a refresh made, already in the cache under its UID.
pub struct Made {
    pub entry: Entry,
    pub live: Live,
    /// The door UID of the waiting notice it replaces.
    pub replaces: Option<u32>,
    /// Why it waits (for a waiting notice).
    pub waits: Option<Exit>,
}

/// What a refresh found, views made and stored. Made without holding the mirror: clients go on
/// fetching while the agent builds views (and maybe asks the PIN).
pub struct Update {
    /// The state started anew (a new UIDVALIDITY upstream): everything before is gone.
    pub fresh: Option<(u32, u32)>,
    pub live: HashMap<u32, Live>,
    pub made: Vec<Made>,
    pub last_upstream: u32,
    pub next_uid: u32,
    pub pending: Vec<String>,
    /// A PIN was asked and declined (or wrong): none is asked for ten minutes.
    pub declined: bool,
}

/// What a refresh needs to know from the mirror, taken under its lock.
pub struct Known {
    /// A PIN may be asked now (none was declined in the last ten minutes).
    may_ask: bool,
    upstream_uidvalidity: u32,
    uidvalidity: u32,
    last_upstream: u32,
    next_uid: u32,
    count: usize,
    /// Waiting mails: (door UID, upstream UID).
    due: Vec<(u32, u32)>,
}

impl Mirror {
    /// The state of `mailbox` saved in `cache`, or a new one.
    pub fn load(cache: &Cache, mailbox: &str) -> Mirror {
        let mark = cache.mark();
        // Behind the mark: an older state put back in the directory (or a lost one's leftover).
        let behind = |s: &State| mark.is_some_and(|(v, n)| s.uidvalidity < v || (s.uidvalidity == v && s.next_uid < n));
        let state = cache
            .load_state()
            .and_then(|b| serde_json::from_slice::<State>(&b).ok())
            .filter(|s| s.valid() && !behind(s) && s.is_of(mailbox));
        let fresh = state.is_none();
        let mut state =
            state.unwrap_or_else(|| State { next_uid: 1, uidvalidity: new_uidvalidity(cache), ..State::default() });
        state.mailbox = mailbox.to_string();
        if fresh {
            // Views of a state that did not open are unreachable.
            cache.sweep(state.uidvalidity, |_| false);
        }
        Mirror { state, live: HashMap::new(), ask_after: None, pending: Vec::new(), dirty: fresh, used_since: None }
    }

    /// The mailbox whose state `cache` holds, if one opens.
    pub fn stored_name(cache: &Cache) -> Option<String> {
        let state: State = serde_json::from_slice(&cache.load_state()?).ok()?;
        Some(state.mailbox).filter(|n| !n.is_empty())
    }

    pub fn uidvalidity(&self) -> u32 {
        self.state.uidvalidity
    }

    pub fn uidnext(&self) -> u32 {
        self.state.next_uid
    }

    pub fn uids(&self) -> Vec<u32> {
        self.state.entries.iter().map(|e| e.uid).collect()
    }

    pub fn entry(&self, uid: u32) -> Option<&Entry> {
        let at = self.state.entries.binary_search_by_key(&uid, |e| e.uid).ok()?;
        self.state.entries.get(at)
    }

    /// The message `uid` was read now: `clock` is the door's (one for every mailbox, so the
    /// least recently read view of any mailbox goes first).
    pub fn touch(&mut self, uid: u32, stored: bool, clock: u64) {
        self.state.clock = self.state.clock.max(clock);
        if let Ok(at) = self.state.entries.binary_search_by_key(&uid, |e| e.uid) {
            let e = &mut self.state.entries[at];
            e.used = clock;
            e.dirty_stored(stored, &mut self.dirty);
        }
        self.used_since.get_or_insert_with(Instant::now);
    }

    /// A lazy mail's view was made (its size as promised): its digest, from now on the bytes
    /// its UID shows.
    pub fn made(&mut self, uid: u32, digest: [u8; 32]) {
        if let Ok(at) = self.state.entries.binary_search_by_key(&uid, |e| e.uid) {
            let e = &mut self.state.entries[at];
            e.digest = digest;
            e.lazy = false;
            self.dirty = true;
        }
    }

    /// A view built again came out different (a certificate expired meanwhile): this UID
    /// cannot show it; the mail is made again under a new UID at the next refresh.
    pub fn changed(&mut self, uid: u32) {
        if let Ok(at) = self.state.entries.binary_search_by_key(&uid, |e| e.uid) {
            self.state.entries[at].shown = Shown::Waiting;
            self.dirty = true;
        }
    }

    fn saved(&self) -> Option<Saved> {
        let bytes = serde_json::to_vec(&self.state).ok()?;
        Some(Saved { bytes, uidvalidity: self.state.uidvalidity, next_uid: self.state.next_uid })
    }

    /// These messages were expunged upstream by the door: gone here too, views and all. The
    /// state to save.
    pub fn forget(&mut self, uids: &[u32], cache: &Cache) -> Option<Saved> {
        let uidvalidity = self.state.uidvalidity;
        let uids: std::collections::HashSet<u32> = uids.iter().copied().collect();
        self.state.entries.retain(|e| {
            let gone = uids.contains(&e.uid);
            if gone {
                cache.remove_view(uidvalidity, e.uid);
            }
            !gone
        });
        self.saved()
    }

    /// What a refresh must know: the waiting mails, and whether a PIN may be asked now.
    pub fn known(&self) -> Known {
        let due =
            self.state.entries.iter().filter(|e| e.shown == Shown::Waiting).map(|e| (e.uid, e.upstream)).collect();
        Known {
            may_ask: self.ask_after.is_none_or(|t| Instant::now() >= t),
            upstream_uidvalidity: self.state.upstream_uidvalidity,
            uidvalidity: self.state.uidvalidity,
            last_upstream: self.state.last_upstream,
            next_uid: self.state.next_uid,
            count: self.state.entries.len(),
            due,
        }
    }

    /// Take in what a refresh found; evict views past the size bound. Returns the state to
    /// save, when it changed (serialised here, sealed and written by the caller unlocked).
    pub fn apply(&mut self, u: Update, cache: &Cache) -> Option<Saved> {
        if let Some((upstream_uidvalidity, uidvalidity)) = u.fresh {
            let mailbox = std::mem::take(&mut self.state.mailbox);
            self.state = State { mailbox, upstream_uidvalidity, uidvalidity, next_uid: 1, ..State::default() };
            self.dirty = true;
            // A view a client's read wrote under the old UIDVALIDITY since the update swept.
            cache.sweep(uidvalidity, |_| true);
        }
        // Gone upstream: gone here, views and all.
        let before = self.state.entries.len();
        self.state.entries.retain(|e| {
            let keep = u.live.contains_key(&e.upstream);
            if !keep {
                cache.remove_view(self.state.uidvalidity, e.uid);
            }
            keep
        });
        self.dirty |= before != self.state.entries.len();
        if u.declined {
            self.ask_after = Some(Instant::now() + ASK_AGAIN_AFTER);
        }
        for m in u.made {
            if let Some(old) = m.replaces {
                // Still waiting: the notice stays, under its UID.
                if m.waits.is_some() {
                    continue;
                }
                if let Ok(at) = self.state.entries.binary_search_by_key(&old, |e| e.uid) {
                    self.state.entries.remove(at);
                    cache.remove_view(self.state.uidvalidity, old);
                }
            }
            self.state.entries.push(m.entry);
            self.dirty = true;
        }
        self.state.entries.sort_by_key(|e| e.uid);
        self.state.last_upstream = self.state.last_upstream.max(u.last_upstream);
        self.state.next_uid = self.state.next_uid.max(u.next_uid);
        self.live = u.live;
        self.pending = u.pending;
        let used_long_ago = self.used_since.is_some_and(|t| t.elapsed() > Duration::from_secs(60));
        if self.dirty || used_long_ago {
            self.dirty = false;
            self.used_since = None;
            return self.saved();
        }
        None
    }

    /// The bytes of the views stored now.
    pub fn stored_bytes(&self) -> u64 {
        self.state.entries.iter().filter(|e| e.stored).map(|e| u64::from(e.size)).sum()
    }

    /// A save of the state when it changed (the views evicted).
    pub fn save_if_changed(&mut self) -> Option<Saved> {
        if !self.dirty {
            return None;
        }
        self.dirty = false;
        self.saved()
    }
}

/// Least recently read views out, of any mailbox, until the stored views of all fit `limit`.
/// Notices stay (they are small and cannot be made again without the reason).
pub fn evict(mirrors: &mut [(&mut Mirror, &Cache)], limit: u64) {
    let mut total: u64 = mirrors.iter().map(|(m, _)| m.stored_bytes()).sum();
    if total <= limit {
        return;
    }
    let mut order: Vec<(u64, usize, u32)> = Vec::new();
    for (i, (m, _)) in mirrors.iter().enumerate() {
        order.extend(m.state.entries.iter().filter(|e| e.stored && e.shown == Shown::View).map(|e| (e.used, i, e.uid)));
    }
    order.sort_unstable();
    for (_, i, uid) in order {
        if total <= limit {
            break;
        }
        let (m, cache) = &mut mirrors[i];
        if let Ok(at) = m.state.entries.binary_search_by_key(&uid, |e| e.uid) {
            let e = &mut m.state.entries[at];
            cache.remove_view(m.state.uidvalidity, uid);
            e.stored = false;
            total -= u64::from(e.size);
            m.dirty = true;
        }
    }
}

impl Entry {
    fn dirty_stored(&mut self, stored: bool, dirty: &mut bool) {
        if self.stored != stored {
            self.stored = stored;
            *dirty = true;
        }
    }
}

impl State {
    /// Whether this is the state of `mailbox` (a state saved before mailboxes had names is
    /// INBOX's).
    fn is_of(&self, mailbox: &str) -> bool {
        self.mailbox == mailbox || (self.mailbox.is_empty() && mailbox.eq_ignore_ascii_case("INBOX"))
    }

    /// Whether a loaded state holds together (UIDs ascending and below the next).
    fn valid(&self) -> bool {
        self.uidvalidity != 0
            && self.next_uid != 0
            && self.entries.windows(2).all(|w| w[0].uid < w[1].uid)
            && self.entries.last().is_none_or(|e| e.uid < self.next_uid)
            && self.entries.len() <= MAX_MESSAGES
    }
}

/// A UIDVALIDITY not given out before for this account: the time in seconds (RFC 3501
/// §2.3.1.1 suggests it), past the last one marked (a clock set back, two in one second),
/// marked.
pub fn new_uidvalidity(cache: &Cache) -> u32 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let now = u32::try_from(now).unwrap_or(u32::MAX);
    let last = cache.mark().map(|m| m.0).unwrap_or(0);
    let v = now.max(last.saturating_add(1)).max(1);
    cache.set_mark(v, 1);
    v
}

/// Ask the upstream what changed since `known`; make the views of new mail (and, in the door's
/// own refresh, of waiting mail), and store them in `cache` under the UIDs they get.
/// `interactive`: the door's own refresh, which may ask a PIN and makes waiting notices. A
/// client's refresh (SELECT, NOOP) is not: it never asks a PIN nor waits for a busy token, and
/// leaves an SSMAX mail it cannot open, and those after it, to the door's refresh.
pub fn update(
    up: &mut Upstream,
    mailbox: &str,
    cache: &Cache,
    agent: &Path,
    authserv_id: &str,
    known: Known,
    interactive: bool,
) -> Result<Update, UpstreamError> {
    let started = Instant::now();
    let upstream_uidvalidity = up.examine(mailbox)?;
    let mut known = known;
    let mut fresh = None;
    if upstream_uidvalidity != known.upstream_uidvalidity {
        // A new mailbox upstream (or the first look): every UID starts over, under a new
        // UIDVALIDITY of the door's, and no earlier view is kept.
        let uidvalidity = if known.upstream_uidvalidity == 0 && known.count == 0 {
            known.uidvalidity
        } else {
            new_uidvalidity(cache)
        };
        cache.sweep(uidvalidity, |_| false);
        fresh = Some((upstream_uidvalidity, uidvalidity));
        known = Known {
            upstream_uidvalidity,
            uidvalidity,
            last_upstream: 0,
            next_uid: 1,
            count: 0,
            due: Vec::new(),
            ..known
        };
    }
    let now = up.fetch("1:*", Body::None)?;
    let sizes: HashMap<u32, u32> = now.iter().map(|f| (f.uid, f.size)).collect();
    let live: HashMap<u32, Live> =
        now.into_iter().map(|f: Fetched| (f.uid, Live { flags: f.flags, internal_date: f.internal_date })).collect();
    let mut u = Update {
        fresh,
        live,
        made: Vec::new(),
        last_upstream: known.last_upstream,
        next_uid: known.next_uid,
        pending: Vec::new(),
        declined: false,
    };
    let may_ask = interactive && known.may_ask;
    let mut maker =
        Maker { up, agent, authserv_id, may_ask, card_waits: None, declined: false, fetched: HashMap::new() };
    let uidvalidity = known.uidvalidity;
    // Waiting mail first (the door's refresh only): when the card came, the mail that waited
    // longest opens first. One that still waits is enough to know the rest would.
    for (old, upstream) in known.due.into_iter().filter(|_| interactive) {
        let Some(live) = u.live.get(&upstream).cloned() else { continue };
        let Some((view, shown, waits, opened)) = maker.make(upstream, sizes.get(&upstream).copied())? else {
            continue;
        };
        if waits.is_some() {
            break;
        }
        let uid = u.next_uid;
        u.next_uid += 1;
        let stored = cache.put_view(uidvalidity, uid, &view).is_ok();
        let entry = entry_for(uid, upstream, &view, shown, stored, opened);
        u.made.push(Made { entry, live, replaces: Some(old), waits });
    }
    let mut fresh_uids: Vec<u32> = u.live.keys().copied().filter(|&x| x > known.last_upstream).collect();
    fresh_uids.sort_unstable();
    fresh_uids.truncate(MAX_MESSAGES.saturating_sub(known.count));
    // Their headers first: mail that needs no card is taken in by its header alone.
    // A batch is bounded by count and by the messages' sizes (a header is at most its
    // message): two mails of huge headers never make one answer past the door's bound.
    let mut headers: HashMap<u32, Vec<u8>> = HashMap::new();
    let mut batch: Vec<String> = Vec::new();
    let mut bytes = 0u64;
    for (i, u) in fresh_uids.iter().enumerate() {
        let size = u64::from(sizes.get(u).copied().unwrap_or(0));
        if size as usize <= MAX_MESSAGE {
            batch.push(u.to_string());
            bytes += size;
        }
        let next = fresh_uids.get(i + 1).and_then(|n| sizes.get(n)).map(|&n| u64::from(n)).unwrap_or(0);
        let full = batch.len() >= HEADERS_AT_ONCE || bytes + next > FETCH_AHEAD || i + 1 == fresh_uids.len();
        if full && !batch.is_empty() {
            for f in maker.up.fetch(&batch.join(","), Body::Header)? {
                headers.insert(f.uid, f.body);
            }
            batch.clear();
            bytes = 0;
        }
    }
    let card_uids: Vec<u32> =
        fresh_uids.iter().copied().filter(|u| headers.get(u).is_none_or(|h| header_needs_card(h))).collect();
    let mut card_at = 0;
    for &upstream in &fresh_uids {
        if known.count + u.made.len() >= MAX_MESSAGES {
            u.pending.push(format!("more than {MAX_MESSAGES} messages: the rest are not shown"));
            break;
        }
        let size = sizes.get(&upstream).copied();
        if let (Some(header), Some(size)) = (headers.get(&upstream), size) {
            if !header_needs_card(header) && size as usize <= MAX_MESSAGE {
                let live = u.live.get(&upstream).cloned().unwrap_or_default();
                let shown_header = crate::ops::view::untouched(header, authserv_id);
                let view_size = (size as usize).saturating_sub(header.len()).saturating_add(shown_header.len());
                let uid = u.next_uid;
                u.next_uid += 1;
                let entry = Entry {
                    uid,
                    upstream,
                    size: u32::try_from(view_size).unwrap_or(u32::MAX),
                    digest: [0; 32],
                    shown: Shown::View,
                    used: 0,
                    stored: false,
                    lazy: true,
                    plain: true,
                    parts: Vec::new(),
                };
                u.made.push(Made { entry, live, replaces: None, waits: None });
                u.last_upstream = upstream;
                continue;
            }
        }
        // A mailbox with much protected mail new to the door is opened over several rounds:
        // the other mailboxes (INBOX first) get theirs in between.
        if started.elapsed() > ROUND_BUDGET && !u.made.is_empty() {
            u.pending.push("more mail to open: next round".into());
            break;
        }
        maker.fetch_ahead(&card_uids, card_at, &sizes)?;
        card_at += usize::from(card_uids.get(card_at) == Some(&upstream));
        let live = u.live.get(&upstream).cloned().unwrap_or_default();
        if let Some((view, shown, waits, opened)) = maker.make(upstream, sizes.get(&upstream).copied())? {
            if let Some(why) = waits {
                // A client's refresh leaves it (and what comes after, to keep UID order) to the
                // door's refresh, which may ask the PIN and otherwise shows a notice.
                if !interactive {
                    break;
                }
                u.pending.push(format!("upstream message {upstream}: waits ({why:?})"));
            }
            let uid = u.next_uid;
            u.next_uid += 1;
            let stored = cache.put_view(uidvalidity, uid, &view).is_ok();
            let entry = entry_for(uid, upstream, &view, shown, stored, opened);
            u.made.push(Made { entry, live, replaces: None, waits });
        }
        u.last_upstream = upstream;
    }
    u.declined = maker.declined;
    Ok(u)
}

fn entry_for(uid: u32, upstream: u32, view: &[u8], shown: Shown, stored: bool, parts: Vec<super::PartDigest>) -> Entry {
    Entry {
        uid,
        upstream,
        size: u32::try_from(view.len()).unwrap_or(u32::MAX),
        digest: sha2::Sha256::digest(view).into(),
        shown,
        used: 0,
        stored,
        lazy: false,
        plain: false,
        parts,
    }
}

/// A view, how it is shown, and why it waits if it does.
/// A view, how it is shown, why it waits if it does, and the digests of what the card opened.
type Shaped = (Vec<u8>, Shown, Option<Exit>, Vec<super::PartDigest>);

/// The most opened parts remembered of one mail (each part may count twice, part_digests): the
/// state stays bounded whatever a mail holds (100,000 mails of 24 take about 110 MB, under the
/// state's bound).
const MAX_OPENED_PARTS: usize = 24;

/// The parts of `view` that are not parts of the mail as it came (`raw`): what the card
/// decrypted (SSMAX attachments, an enveloped mail's content) and the door's own report. A
/// mail only signed, or for another key, opens nothing.
fn opened_parts(view: &[u8], raw: &[u8]) -> Vec<super::PartDigest> {
    let came: std::collections::HashSet<super::PartDigest> =
        super::part_digests(raw).unwrap_or_default().into_iter().collect();
    let mut out: Vec<super::PartDigest> = Vec::new();
    for d in super::part_digests(view).unwrap_or_default() {
        if !came.contains(&d) && !out.contains(&d) && out.len() < MAX_OPENED_PARTS {
            out.push(d);
        }
    }
    out
}

/// Part digests in the state as hex text (a JSON array of numbers is three times the size).
mod hex_digests {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[super::super::PartDigest], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|d| base16ct::lower::encode_string(d)))
    }

    /// Hex text, or (as states written before hex was) an array of numbers: either reads.
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Written {
        Hex(String),
        Bytes(Vec<u8>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<super::super::PartDigest>, D::Error> {
        let written = Vec::<Written>::deserialize(d)?;
        Ok(written
            .iter()
            .filter_map(|w| {
                let mut out = [0u8; 16];
                match w {
                    Written::Hex(t) => {
                        base16ct::lower::decode(t, &mut out).ok().filter(|b| b.len() == 16)?;
                    }
                    Written::Bytes(b) => out.copy_from_slice(b.get(..16)?),
                }
                Some(out)
            })
            .collect())
    }
}

struct Maker<'a> {
    up: &'a mut Upstream,
    agent: &'a Path,
    authserv_id: &'a str,
    /// Whether the agent may ask the PIN.
    may_ask: bool,
    /// Why an SSMAX mail waited in this refresh: the next ones wait for the same, not taken to
    /// the agent (a card away, or a PIN declined, is not a call or a prompt per mail).
    card_waits: Option<Exit>,
    /// A PIN was asked for and not given (declined, wrong).
    declined: bool,
    /// Messages fetched ahead, several in one FETCH (`fetch_ahead`).
    fetched: HashMap<u32, Fetched>,
}

/// Bytes of messages one FETCH brings ahead: few round trips, bounded memory.
const FETCH_AHEAD: u64 = 16 << 20;

impl Maker<'_> {
    /// Fetch the next messages of `uids` from `at` in one FETCH, as many as fit FETCH_AHEAD
    /// (at least one), unless the next one is fetched already.
    fn fetch_ahead(&mut self, uids: &[u32], at: usize, sizes: &HashMap<u32, u32>) -> Result<(), UpstreamError> {
        if uids.get(at).is_none_or(|u| self.fetched.contains_key(u)) {
            return Ok(());
        }
        let mut batch = Vec::new();
        let mut bytes = 0u64;
        for u in uids.iter().skip(at) {
            let size = u64::from(sizes.get(u).copied().unwrap_or(0));
            // One too large for a view is never fetched (make shows a notice).
            if size as usize > MAX_MESSAGE || (!batch.is_empty() && bytes + size > FETCH_AHEAD) {
                break;
            }
            bytes += size;
            batch.push(u.to_string());
        }
        if batch.is_empty() {
            return Ok(());
        }
        for f in self.up.fetch(&batch.join(","), Body::Whole)? {
            self.fetched.insert(f.uid, f);
        }
        Ok(())
    }
}

impl Maker<'_> {
    /// The view of upstream message `upstream`, how it is shown, and why it waits if it does.
    /// None when the upstream no longer has it.
    fn make(&mut self, upstream: u32, size: Option<u32>) -> Result<Option<Shaped>, UpstreamError> {
        // Too large for a view: not fetched at all, shown as a notice.
        if size.is_some_and(|n| n as usize > MAX_MESSAGE) {
            let why = format!("it is larger than {} MiB", MAX_MESSAGE >> 20);
            return Ok(Some((notice(upstream, &why), Shown::Notice, None, Vec::new())));
        }
        let f = match self.fetched.remove(&upstream) {
            Some(f) => f,
            None => match self.up.fetch(&upstream.to_string(), Body::Whole)?.into_iter().find(|f| f.uid == upstream) {
                Some(f) => f,
                None => return Ok(None),
            },
        };
        // Mail that is neither SSMAX nor S/MIME needs no card and no agent: made here.
        if !needs_card(&f.body) {
            return Ok(Some((
                crate::ops::view::untouched_owned(f.body, self.authserv_id),
                Shown::View,
                None,
                Vec::new(),
            )));
        }
        if let Some(exit) = self.card_waits {
            let text = waiting_notice(&crate::tr!("imap-waiting-earlier"));
            return Ok(Some((text, Shown::Waiting, Some(exit), Vec::new())));
        }
        Ok(Some(match view_in_agent(self.agent, &f.body, self.authserv_id, !self.may_ask) {
            Ok(view) => {
                let opened = opened_parts(&view, &f.body);
                (view, Shown::View, None, opened)
            }
            // The agent turns what is wrong with the mail into a failed view: an error is about
            // the card, the person or the agent itself (absent, PIN declined, busy, another
            // version). A notice says what to do, and the mail is tried again.
            Err((exit, why)) => {
                self.card_waits = Some(exit);
                self.declined |= self.may_ask && exit == Exit::WrongPin;
                (waiting_notice(&why), Shown::Waiting, Some(exit), Vec::new())
            }
        }))
    }
}

/// Build the view of upstream message `upstream` again, for a FETCH: from the upstream,
/// without asking a PIN (a FETCH never waits on a person). The bytes, or why not.
pub fn rebuild(
    up: &mut Upstream,
    mailbox: &str,
    agent: &Path,
    authserv_id: &str,
    upstream_uidvalidity: u32,
    upstream: u32,
) -> Result<Vec<u8>, String> {
    // The UID names the same mail only under the same UIDVALIDITY.
    if up.reexamine(mailbox).map_err(|e| e.to_string())? != upstream_uidvalidity {
        return Err("the mail store's mailbox changed".into());
    }
    let f = up
        .fetch(&upstream.to_string(), Body::Whole)
        .map_err(|e| e.to_string())?
        .into_iter()
        .find(|f| f.uid == upstream)
        .ok_or_else(|| "the mail store no longer has it".to_string())?;
    if !needs_card(&f.body) {
        return Ok(crate::ops::view::untouched_owned(f.body, authserv_id));
    }
    view_in_agent(agent, &f.body, authserv_id, true).map_err(|(_, why)| why)
}

/// The views of plain mails `uids` of `mailbox`, read in one FETCH (for reading ahead of a
/// client, ahead.rs): by upstream UID, those the mail store still has and that need no card.
pub fn read_plain(
    up: &mut Upstream,
    mailbox: &str,
    authserv_id: &str,
    upstream_uidvalidity: u32,
    uids: &[u32],
) -> Result<HashMap<u32, Vec<u8>>, UpstreamError> {
    if uids.is_empty() || up.reexamine(mailbox)? != upstream_uidvalidity {
        return Ok(HashMap::new());
    }
    let set = uids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    Ok(up
        .fetch(&set, Body::Whole)?
        .into_iter()
        .filter(|f| uids.contains(&f.uid) && !needs_card(&f.body))
        .map(|f| (f.uid, crate::ops::view::untouched_owned(f.body, authserv_id)))
        .collect())
}

/// How long one mailbox's update may go on opening protected mail before it leaves the rest to
/// the next round.
const ROUND_BUDGET: Duration = Duration::from_secs(10);

/// Headers fetched in one FETCH.
const HEADERS_AT_ONCE: usize = 200;

/// Whether a mail with this header block needs the card for its view: its top Content-Type is
/// what SSMAX and S/MIME mail have (multipart/signed, pkcs7-mime), or it cannot be read.
fn header_needs_card(header: &[u8]) -> bool {
    let Ok(e) = crate::mail::Entity::parse(header) else { return true };
    matches!(e.content_type().mime.as_str(), "multipart/signed" | "application/pkcs7-mime" | "application/x-pkcs7-mime")
}

/// Whether the view of `raw` is made by the agent: SSMAX and S/MIME mail (verified against the
/// card's anchors, decrypted with its key).
fn needs_card(raw: &[u8]) -> bool {
    crate::ops::view::is_ssmax(raw) || crate::ops::view::is_smime(raw)
}

/// What stands in for a message the door cannot show: a short text saying why, the same bytes
/// for the same message and reason.
pub fn notice(uid: u32, why: &str) -> Vec<u8> {
    let text =
        format!("Message {uid} in your mail store could not be shown by ssmax-card: {}\n", crate::l10n::escaped(why));
    notice_mail("[ssmax-card] a message could not be shown", &text)
}

/// What stands in for a protected mail until it can be opened: why, and what to do.
fn waiting_notice(why: &str) -> Vec<u8> {
    let text = crate::tr!("imap-waiting-notice", reason = crate::l10n::escaped(why));
    notice_mail("[ssmax-card] a protected mail waits for your card", &format!("{text}\n"))
}

fn notice_mail(subject: &str, text: &str) -> Vec<u8> {
    let mut out = format!("From: ssmax-card <ssmax-card@localhost>\r\nSubject: {subject}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n").into_bytes();
    out.extend_from_slice(&crate::mail::quoted_printable(text.as_bytes()));
    out
}

/// The agent's `view` of one message (PIN by its pinentry, as the cache policy says; never
/// when `quiet`).
fn view_in_agent(agent: &Path, raw: &[u8], authserv_id: &str, quiet: bool) -> Result<Vec<u8>, (Exit, String)> {
    let unreachable = |e: &dyn std::fmt::Display| (Exit::AgentUnreachable, e.to_string());
    let mut stream = connect(agent).map_err(|e| unreachable(&e))?;
    // PIN entry happens inside the time; without one, a token busy with someone else's PIN
    // prompt is not waited for.
    let args = ViewArgs { authserv_id: authserv_id.to_string(), no_prompt: quiet };
    let req = Request::from_door(&Call::View(args), if quiet { 3_000 } else { 300_000 }, false, false);
    let (resp, body) = call_retrying(&mut stream, agent, &req, raw, &[]).map_err(|e| unreachable(&e))?;
    if resp.ok {
        Ok(body)
    } else {
        Err((Exit::from_code(resp.exit), resp.error.unwrap_or_else(|| "the agent could not build the view".into())))
    }
}

#[cfg(test)]
mod tests {
    use super::super::cache::MemoryMark;
    use super::*;
    use zeroize::Zeroizing;

    fn entry(uid: u32, upstream: u32, size: u32, used: u64) -> Entry {
        Entry {
            uid,
            upstream,
            size,
            digest: [0; 32],
            shown: Shown::View,
            used,
            stored: true,
            lazy: false,
            plain: false,
            parts: Vec::new(),
        }
    }

    fn mirror(dir: &Path) -> (Cache, Mirror) {
        let cache = Cache::open(&dir.join("c"), Zeroizing::new([9; 32]), Box::new(MemoryMark::default())).unwrap();
        let m = Mirror::load(&cache, "INBOX");
        (cache, m)
    }

    fn update(live: &[u32], made: Vec<Made>) -> Update {
        let next_uid = made.iter().map(|m| m.entry.uid + 1).max().unwrap_or(0);
        Update {
            fresh: None,
            live: live.iter().map(|&u| (u, Live::default())).collect(),
            made,
            last_upstream: live.iter().copied().max().unwrap_or(0),
            next_uid,
            pending: Vec::new(),
            declined: false,
        }
    }

    fn made(e: Entry, replaces: Option<u32>, waits: Option<Exit>) -> Made {
        Made { entry: e, live: Live::default(), replaces, waits }
    }

    #[test]
    fn the_uid_map_comes_back_from_the_cache_and_a_lost_or_older_one_gets_a_new_uidvalidity() {
        let dir = tempfile::tempdir().unwrap();
        let mark = MemoryMark::default();
        let open = |k: u8| Cache::open(&dir.path().join("c"), Zeroizing::new([k; 32]), Box::new(mark.clone())).unwrap();
        let cache = open(9);
        let mut m = Mirror::load(&cache, "INBOX");
        let first = m.uidvalidity();
        let saved = m.apply(update(&[10], vec![made(entry(1, 10, 5, 0), None, None)]), &cache);
        cache.save_state(&saved.unwrap()).unwrap();
        let older = std::fs::read(dir.path().join("c/state")).unwrap();
        let saved = m.apply(update(&[10, 11], vec![made(entry(2, 11, 5, 0), None, None)]), &cache);
        cache.save_state(&saved.unwrap()).unwrap();
        let again = Mirror::load(&open(9), "INBOX");
        assert_eq!(again.state, m.state);
        assert_eq!(again.uids(), [1, 2]);
        // An older state put back opens, but is behind the mark: not taken, a new UIDVALIDITY.
        std::fs::write(dir.path().join("c/state"), &older).unwrap();
        let rolled = Mirror::load(&open(9), "INBOX");
        assert!(rolled.uids().is_empty());
        assert!(rolled.uidvalidity() > first);
        // Under another key the state does not open: started anew, past every UIDVALIDITY before.
        let lost = Mirror::load(&open(8), "INBOX");
        assert!(lost.uids().is_empty());
        assert!(lost.uidvalidity() > rolled.uidvalidity(), "{} {}", lost.uidvalidity(), rolled.uidvalidity());
    }

    #[test]
    fn a_mailbox_state_keeps_its_name_when_the_mail_store_starts_it_anew() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open_scoped(
            &dir.path().join("c/boxes/aa"),
            Zeroizing::new([9; 32]),
            Box::new(MemoryMark::default()),
            "aa",
        )
        .unwrap();
        let mut m = Mirror::load(&cache, "Archive");
        let mut u = update(&[10], vec![made(entry(1, 10, 5, 0), None, None)]);
        u.fresh = Some((77, m.uidvalidity()));
        cache.save_state(&m.apply(u, &cache).unwrap()).unwrap();
        assert_eq!(Mirror::stored_name(&cache).as_deref(), Some("Archive"));
        assert_eq!(Mirror::load(&cache, "Archive").uids(), [1]);
        // Another mailbox's name: not this state.
        assert!(Mirror::load(&cache, "Other").uids().is_empty());
    }

    #[test]
    fn only_what_the_card_opened_is_remembered_as_opened_and_it_is_saved_as_hex() {
        let raw = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHello.\r\n--b\r\nContent-Type: application/pkcs7-mime\r\nContent-Transfer-Encoding: base64\r\n\r\nMIAGCSqGSIb3DQEHA6CAMIACAQA=\r\n--b--\r\n";
        let signed_only = [&b"Authentication-Results: ssmax-card.local; smime=pass\r\n"[..], raw].concat();
        assert!(opened_parts(&signed_only, raw).is_empty(), "nothing was decrypted");
        let view = b"Subject: s\r\nContent-Type: multipart/mixed; boundary=v\r\n\r\n--v\r\nContent-Type: text/plain\r\n\r\nHello.\r\n--v\r\nContent-Type: text/csv\r\n\r\nQ3 revenue: 1,234\r\n--v--\r\n";
        let opened = opened_parts(view, raw);
        assert_eq!(opened.len(), 1, "the decrypted attachment, not the text that came in the clear");
        let mut e = entry(1, 10, 5, 0);
        e.parts = opened.clone();
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(&base16ct::lower::encode_string(&opened[0])), "{json}");
        assert_eq!(serde_json::from_str::<Entry>(&json).unwrap().parts, opened);
    }

    #[test]
    fn a_mail_that_opens_later_replaces_its_notice_under_a_new_uid() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, mut m) = mirror(dir.path());
        let mut waiting = entry(1, 10, 5, 0);
        waiting.shown = Shown::Waiting;
        m.apply(
            update(
                &[10, 11],
                vec![made(waiting, None, Some(Exit::TokenNotPresent)), made(entry(2, 11, 5, 0), None, None)],
            ),
            &cache,
        );
        let k = m.known();
        assert_eq!(k.due, [(1, 10)]);
        assert!(k.may_ask);
        // Still absent: the notice keeps its UID.
        let mut still = entry(3, 10, 5, 0);
        still.shown = Shown::Waiting;
        m.apply(update(&[10, 11], vec![made(still, Some(1), Some(Exit::TokenNotPresent))]), &cache);
        assert_eq!(m.uids(), [1, 2]);
        // Opened: UID 1 goes, the view comes as UID 3.
        m.apply(update(&[10, 11], vec![made(entry(3, 10, 50, 0), Some(1), None)]), &cache);
        assert_eq!(m.uids(), [2, 3]);
        assert!(m.known().due.is_empty());
    }

    #[test]
    fn a_declined_pin_means_no_prompt_for_any_mail_for_ten_minutes() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, mut m) = mirror(dir.path());
        let mut waiting = entry(1, 10, 5, 0);
        waiting.shown = Shown::Waiting;
        let mut u = update(&[10], vec![made(waiting, None, Some(Exit::WrongPin))]);
        u.declined = true;
        m.apply(u, &cache);
        let k = m.known();
        assert_eq!(k.due, [(1, 10)]);
        assert!(!k.may_ask, "tried quietly, for this mail and any new one");
        // A card away is no decline: the next refresh may ask.
        let (cache, mut m) = mirror(&dir.path().join("other"));
        let mut waiting = entry(1, 10, 5, 0);
        waiting.shown = Shown::Waiting;
        m.apply(update(&[10], vec![made(waiting, None, Some(Exit::TokenNotPresent))]), &cache);
        assert!(m.known().may_ask);
    }

    #[test]
    fn views_past_the_bound_go_least_recently_read_first_and_notices_stay() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, mut m) = mirror(dir.path());
        let mut notice = entry(4, 13, 10, 0);
        notice.shown = Shown::Notice;
        m.apply(
            update(
                &[10, 11, 12, 13],
                vec![
                    made(entry(1, 10, 100, 0), None, None),
                    made(entry(2, 11, 100, 0), None, None),
                    made(entry(3, 12, 100, 0), None, None),
                    made(notice, None, None),
                ],
            ),
            &cache,
        );
        evict(&mut [(&mut m, &cache)], 250);
        // Nothing read yet: the oldest UID goes.
        let stored: Vec<u32> = m.state.entries.iter().filter(|e| e.stored).map(|e| e.uid).collect();
        assert_eq!(stored, [2, 3, 4]);
        m.touch(1, true, 1);
        m.touch(2, true, 2);
        evict(&mut [(&mut m, &cache)], 250);
        let stored: Vec<u32> = m.state.entries.iter().filter(|e| e.stored).map(|e| e.uid).collect();
        assert_eq!(stored, [1, 2, 4]);
    }

    #[test]
    fn mail_gone_upstream_is_gone_here_with_its_view() {
        let dir = tempfile::tempdir().unwrap();
        let (cache, mut m) = mirror(dir.path());
        cache.put_view(m.uidvalidity(), 1, b"x").unwrap();
        m.apply(
            update(&[10, 11], vec![made(entry(1, 10, 1, 0), None, None), made(entry(2, 11, 1, 0), None, None)]),
            &cache,
        );
        m.apply(update(&[11], Vec::new()), &cache);
        assert_eq!(m.uids(), [2]);
        assert_eq!(cache.view(m.uidvalidity(), 1), None);
    }
}
