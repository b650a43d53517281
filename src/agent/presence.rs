//! Which tokens are there: the tokens the agent has used, watched for removal and return (through
//! PC/SC readers, or by probing the module from a child process), and the events that say so.

use super::lanes::{forget, rescan, Lanes};
use super::protocol::{Event, Response, VERSION};
use crate::config::AgentConfig;
use crate::token::presence::Readers;
use crate::token::uri::Pkcs11Uri;
use crate::token::Token;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Subscribers to agent events (`subscribe`).
/// One subscriber's way to its client (the event loop writes it).
pub(super) struct Subscriber {
    /// Set once its connection is closed: it is dropped from the list then.
    pub gone: Arc<std::sync::atomic::AtomicBool>,
    /// Hands an event to its connection; false once that is gone.
    pub send: Box<dyn Fn(Response) -> bool + Send>,
}
pub(super) type Events = Arc<Mutex<Vec<Subscriber>>>;

/// A token the agent has used, watched for removal and return.
#[derive(Clone)]
pub(super) struct Watch {
    pub(super) label: String,
    pub(super) serial: String,
    pub(super) module: PathBuf,
    pub(super) reinit: bool,
    pub(super) present: bool,
    /// Watched through this PC/SC reader instead of probing the module.
    pub(super) reader: Option<String>,
    /// pcscd's count of insertions and removals in that reader when the watch last looked.
    pub(super) events: Option<u32>,
    /// When a request last succeeded with it: a probe started before then that found nothing
    /// is stale, not a removal.
    pub(super) seen_at: Instant,
    /// Its module must be re-initialised (it left, came back, or was replaced) and requests
    /// using a module kept that from happening: new requests wait a moment (`Desk::rescan_wanted`).
    pub(super) waits_for_rescan: bool,
}

/// Probes of module-watched tokens run on their own thread: a probe starts a process that
/// initialises the module (10–30 ms), time the token would otherwise not be serving anyone.
/// When a batch of probes started, and what each found (Some(serial) when present).
pub(super) type ProbeResult = (Instant, Vec<(String, Option<String>)>);

pub(super) struct Prober {
    pub(super) tx: mpsc::Sender<Vec<(String, Watch)>>,
    pub(super) rx: Receiver<ProbeResult>,
    pub(super) busy: bool,
}

impl Prober {
    pub(super) fn start(base: Option<PathBuf>) -> Prober {
        let (tx, batches) = mpsc::channel::<Vec<(String, Watch)>>();
        let (result_tx, rx) = mpsc::channel();
        let _ = std::thread::Builder::new().name("presence-probe".into()).spawn(move || {
            for batch in batches {
                let started = Instant::now();
                let found = batch.iter().map(|(k, w)| (k.clone(), probe(base.as_deref(), w))).collect();
                if result_tx.send((started, found)).is_err() {
                    return;
                }
            }
        });
        Prober { tx, rx, busy: false }
    }
}

/// The PC/SC reader a token's presence follows: the config's binding, else the slot's reader
/// for tokens whose profile says PC/SC.
pub(super) fn reader_of(t: &Token, cfg: &AgentConfig) -> Option<(String, bool)> {
    if let Some(r) = cfg.presence_reader.get(&t.label) {
        return Some((r.clone(), true));
    }
    (t.profile.presence.method == crate::profile::PresenceMethod::Pcsc).then(|| (t.slot_description.clone(), false))
}

/// How long a presence probe may take (a module's C_Initialize plus slot listing).
pub(super) const PROBE_LIMIT: Duration = Duration::from_secs(10);

/// Is the token there, seen through a fresh module instance? A child process, because a loaded
/// SoftHSM2 keeps a stale view of its token directory until C_Finalize. Some(serial) or None.
pub(super) fn probe(base: Option<&Path>, w: &Watch) -> Option<String> {
    let uri = Pkcs11Uri { token: Some(w.label.clone()), module_path: Some(w.module.clone()), ..Default::default() };
    let exe = std::env::current_exe().ok()?;
    let mut c = std::process::Command::new(exe);
    c.args(["--agent", "never", "--token", &uri.to_string()])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    if let Some(cfg) = base {
        c.arg("--config").arg(cfg);
    }
    let mut child = c.arg("probe").stdout(std::process::Stdio::piped()).spawn().ok()?;
    // A probe stuck in a hung module is killed: the token counts as absent, which is what the
    // user sees anyway (it does not answer).
    let until = Instant::now() + PROBE_LIMIT;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    let text = out;
    let line = text.lines().next()?;
    let mut f = line.split('\t');
    (f.next() == Some("present")).then(|| f.nth(1).unwrap_or("").to_string())
}

pub(super) fn event(events: &Events, event: Event, note: String) {
    if let Ok(mut subs) = events.lock() {
        let ev = Response { v: VERSION, ok: true, event: Some(event), notes: vec![note], ..Default::default() };
        subs.retain(|s| (s.send)(ev.clone()));
    }
}

/// Tell subscribers about certificates on the token that expire within 30 days.
pub(super) fn warn_expiring(t: &Token, events: &Events) {
    let Ok(certs) = t.certificates() else { return };
    let now = std::time::SystemTime::now();
    for c in certs.iter().filter(|c| !c.anchor) {
        let Ok(parsed) = crate::cms::cert::parse(&c.der) else { continue };
        let until = crate::cms::cert::not_after(&parsed);
        let left = until.duration_since(now).unwrap_or_default();
        if left < Duration::from_secs(30 * 86400) {
            let when = crate::cms::cert::fmt_time(until);
            let note = if now > until {
                crate::tr!("event-certificate-expired", label = c.label, token = t.label, when = when)
            } else {
                let days = left.as_secs() / 86400;
                crate::tr!("event-certificate-expiring", label = c.label, token = t.label, when = when, days = days)
            };
            event(events, Event::CertExpiring, note);
        }
    }
}

/// Is this watched token there now? Some(serial) or None. Synchronous (probes a module).
pub(super) fn observe(base: Option<&Path>, w: &Watch, readers: &Readers) -> Option<String> {
    match &w.reader {
        Some(r) => (readers.card_in(r) == Some(true)).then(|| w.serial.clone()),
        None => probe(base, w),
    }
}

/// Whether the card left the reader since the watch last looked (pcscd's count of insertions
/// and removals moved), even if it is back now; the watch remembers the count it saw.
fn left_since_last_look(w: &mut Watch, readers: &Readers) -> bool {
    let Some((_, count)) = w.reader.as_deref().and_then(|r| readers.card_events(r)) else { return false };
    let moved = w.events.is_some_and(|seen| seen != count);
    w.events = Some(count);
    moved
}

/// Look at a watched token and act on it: a card pulled and put back between two looks is a
/// removal too (its login, the PIN cache, ends) and then an insertion. Returns whether the
/// token the agent held is gone.
pub(super) fn look(
    base: Option<&Path>,
    key: &str,
    w: &mut Watch,
    lanes: &mut Lanes,
    events: &Events,
    readers: &Readers,
    may_rescan: bool,
) -> bool {
    let now = observe(base, w, readers);
    let left = left_since_last_look(w, readers) && apply_presence(key, w, None, lanes, events, may_rescan);
    apply_presence(key, w, now, lanes, events, may_rescan) || left
}

/// Act on what was observed: removal drops the token's sessions and cached PIN at once.
/// Returns whether the token the agent held is gone (removed or replaced). Re-initialising its
/// module waits while a request uses a module (`may_rescan` false): it is done at the first
/// look when none does (`Watch::waits_for_rescan`; new requests let it go first).
pub(super) fn apply_presence(
    key: &str,
    w: &mut Watch,
    now: Option<String>,
    lanes: &mut Lanes,
    events: &Events,
    may_rescan: bool,
) -> bool {
    let by_module = w.reinit && w.reader.is_none();
    let reinit = |lanes: &mut Lanes, w: &mut Watch| {
        if may_rescan {
            rescan(lanes, &w.module);
        }
        w.waits_for_rescan = !may_rescan;
    };
    match (w.present, now) {
        (true, None) => {
            forget(lanes, key);
            if by_module {
                reinit(lanes, w);
            }
            w.present = false;
            let note = match &w.reader {
                Some(r) => crate::tr!("event-token-removed-from", token = w.label, reader = r),
                None => crate::tr!("event-token-removed", token = w.label),
            };
            event(events, Event::TokenRemoved, note);
            true
        }
        (true, Some(serial)) if serial != w.serial => {
            forget(lanes, key);
            reinit(lanes, w);
            event(events, Event::TokenRemoved, crate::tr!("event-token-replaced", token = w.label, serial = w.serial));
            event(events, Event::TokenInserted, crate::tr!("event-token-inserted", token = w.label, serial = serial));
            w.serial = serial;
            true
        }
        (false, Some(serial)) => {
            if by_module {
                reinit(lanes, w);
            }
            w.present = true;
            event(events, Event::TokenInserted, crate::tr!("event-token-inserted", token = w.label, serial = serial));
            w.serial = serial;
            false
        }
        _ => false,
    }
}

/// One synchronous look at every watched token (after a failed request: was it removal?).
pub(super) fn check_presence(
    base: Option<&Path>,
    lanes: &mut Lanes,
    watches: &mut HashMap<String, Watch>,
    events: &Events,
    readers: &Readers,
    may_rescan: bool,
) -> Vec<String> {
    let mut removed = Vec::new();
    for (key, w) in watches.iter_mut() {
        // Gone now, or away (or back) since an earlier look while its module still holds what
        // it had before: a request that failed on it failed because it left.
        if look(base, key, w, lanes, events, readers, may_rescan) || !w.present || w.waits_for_rescan {
            removed.push(key.clone());
        }
    }
    removed
}

/// The periodic look: readers at once, modules through the prober (results applied as they come).
pub(super) fn poll_presence(
    base: Option<&Path>,
    lanes: &mut Lanes,
    watches: &mut HashMap<String, Watch>,
    events: &Events,
    readers: &Readers,
    prober: &mut Prober,
    may_rescan: bool,
) {
    for (key, w) in watches.iter_mut().filter(|(_, w)| w.reader.is_some()) {
        look(base, key, w, lanes, events, readers, may_rescan);
    }
    if !prober.busy {
        let batch: Vec<(String, Watch)> =
            watches.iter().filter(|(_, w)| w.reader.is_none()).map(|(k, w)| (k.clone(), w.clone())).collect();
        if !batch.is_empty() && prober.tx.send(batch).is_ok() {
            prober.busy = true;
        }
    }
}

/// Apply finished probes. A "not there" from a probe that started before a request last
/// succeeded with the token is stale and ignored.
pub(super) fn take_probe_results(
    lanes: &mut Lanes,
    watches: &mut HashMap<String, Watch>,
    events: &Events,
    prober: &mut Prober,
    may_rescan: bool,
) {
    while let Ok((started, found)) = prober.rx.try_recv() {
        prober.busy = false;
        for (key, now) in found {
            if let Some(w) = watches.get_mut(&key) {
                if now.is_none() && w.seen_at > started {
                    continue;
                }
                apply_presence(&key, w, now, lanes, events, may_rescan);
            }
        }
    }
}
