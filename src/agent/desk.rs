//! The agent's table of tokens: each open token (its session and login, which is the PIN cache)
//! in its own lane with its own turn, the cache policy applied between requests, and the
//! presence watching (presence.rs) started after each. The table itself is locked only for
//! moments, never across a token call that waits for a card or a person: a request takes its
//! token's turn, lends the token out of the table, uses it, and gives it back.

use super::lanes::{rescan, Lane, Lanes};
use super::presence::*;
use super::turnstile::{Refused, Turnstile};
use crate::config::AgentConfig;
use crate::error::Exit;
use crate::profile::PinCache;
use crate::token::objects::Shown;
use crate::token::presence::Readers;
use crate::token::Token;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a failed request waits for its card's reader to report a removal (OpenSC says
/// CKR_GENERAL_ERROR, not CKR_DEVICE_REMOVED, for a card pulled during a command).
const CARD_LEAVES_WITHIN: Duration = Duration::from_secs(1);

/// What the holders of token turns share, behind one short-held lock.
pub(super) struct Desk {
    /// By desk key (the settings' URI, or a token chosen under it).
    pub lanes: Lanes,
    watches: HashMap<String, Watch>,
    last_check: Instant,
    prober: Prober,
    /// The agent's config file, passed on to token probes.
    base: Option<PathBuf>,
    cfg: AgentConfig,
    events: Events,
    readers: Readers,
    /// The agent is restarting: every lane is closed, and so is every new one.
    closed: bool,
}

impl Desk {
    pub fn new(base: Option<PathBuf>, cfg: AgentConfig, events: Events, readers: Readers) -> Desk {
        Desk {
            lanes: HashMap::new(),
            watches: HashMap::new(),
            last_check: Instant::now(),
            prober: Prober::start(base.clone()),
            base,
            cfg,
            events,
            readers,
            closed: false,
        }
    }

    /// The turn that serves the token under `key` (a new lane when the agent has none yet).
    pub fn gate(&mut self, key: &str) -> Result<Arc<Turnstile>, Refused> {
        if self.closed {
            return Err(Refused::Closed);
        }
        let line = self.cfg.queue_limit.max(1);
        let lane = self.lanes.entry(key.to_string()).or_insert_with(|| Lane {
            gate: Turnstile::new(line),
            token: None,
            shown: None,
            stale: false,
        });
        Ok(lane.gate.clone())
    }

    /// Take the token under `key` out of the table; the caller holds its turn. A card pulled
    /// from its reader since the last look, even if back already, ends the login first: the PIN
    /// it cached was for the card as it was (cheap to ask: pcscd's table, no card command).
    /// Whatever PIN the token holds from an earlier request is a cached one from here on.
    pub fn lend(&mut self, key: &str) -> Option<Token> {
        if let Some(w) = self.watches.get_mut(key).filter(|w| w.reader.is_some()) {
            look(self.base.as_deref(), key, w, &mut self.lanes, &self.events, &self.readers, false);
        }
        let mut token = self.lanes.get_mut(key).and_then(|l| l.token.take());
        // Its module's worker was lost (crashed, hung): the session and login died with it.
        if token.as_ref().is_some_and(|t| t.module.lost()) {
            token = None;
        }
        if let Some(t) = token.as_mut() {
            t.pin_is_cached();
        }
        token
    }

    /// The tokens held under `base`, as they showed when last given back: those nobody uses or
    /// waits for first.
    pub fn known(&self, base: &str) -> Vec<(String, Shown)> {
        let mut known: Vec<(bool, String, Shown)> = self
            .lanes
            .iter()
            .filter(|(k, _)| key_selects(k, base))
            .filter_map(|(k, l)| l.shown.clone().map(|s| (!l.gate.is_idle(), k.clone(), s)))
            .collect();
        known.sort_by_key(|(busy, _, _)| *busy);
        known.into_iter().map(|(_, k, s)| (k, s)).collect()
    }

    /// Refuse every request from now on; wake whoever waits for a turn so they can say so.
    pub fn close(&mut self) {
        self.closed = true;
        for lane in self.lanes.values() {
            lane.gate.close();
        }
    }

    /// A request gives back the token it had out (`failed`: how the request failed, if it did),
    /// before it stops holding the modules: once back, a rescan ends it with the others.
    pub fn put_back(&mut self, key: &str, token: Option<Token>, shown: Option<Shown>, failed: Option<Exit>) {
        if let Some(lane) = self.lanes.get_mut(key) {
            // A token that went away is forgotten (and logged out): the next request finds it afresh.
            let lost = token.as_ref().is_some_and(|t| t.module.lost());
            if !std::mem::take(&mut lane.stale) && failed != Some(Exit::TokenNotPresent) && !lost {
                lane.token = token.or(lane.token.take());
                lane.shown = shown.or(lane.shown.take());
            } else {
                lane.shown = None;
            }
        }
    }

    /// After a request on `key` (`failed`: how, if it did): watch every token the agent now
    /// holds, and when a request on a watched token failed as a removed one would, look now
    /// (`may_rescan`: no request uses any module, see `rescan`). Returns whether that token
    /// turned out to be gone.
    pub fn after_request(&mut self, key: &str, failed: Option<Exit>, may_rescan: bool) -> bool {
        let ok = failed.is_none();
        let (base, cfg, events, readers) = (&self.base, &self.cfg, &self.events, &self.readers);
        for (k, t) in self.lanes.iter().filter_map(|(k, l)| l.token.as_ref().map(|t| (k, t))) {
            if !self.watches.contains_key(k) {
                warn_expiring(t, events);
            }
            let w = self.watches.entry(k.clone()).or_insert_with(|| Watch {
                label: t.label.clone(),
                serial: t.serial.clone(),
                module: t.module.path.clone(),
                reinit: t.profile.presence.reinitialise_to_rescan,
                present: true,
                reader: reader_of(t, cfg).map(|(r, _)| r),
                events: reader_of(t, cfg).and_then(|(r, _)| readers.card_events(&r)).map(|(_, n)| n),
                seen_at: Instant::now(),
                waits_for_rescan: false,
            });
            w.present = true;
            w.serial = t.serial.clone();
            if ok && k == key {
                w.seen_at = Instant::now();
            }
        }
        let mut gone = false;
        if may_have_left(failed) && self.watches.contains_key(key) {
            gone = check_presence(base.as_deref(), &mut self.lanes, &mut self.watches, events, readers, may_rescan)
                .iter()
                .any(|k| k == key);
            self.last_check = Instant::now();
        }
        apply_cache_policy(&mut self.lanes, cfg);
        gone
    }

    /// The PC/SC reader a failed request's token is watched through, if it failed as a removed
    /// one would: the caller waits for the reader to say (without this lock), then gives back.
    pub fn reader_to_ask(&self, key: &str, failed: Option<Exit>) -> Option<String> {
        may_have_left(failed).then(|| self.watches.get(key).and_then(|w| w.reader.clone())).flatten()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// A module waits to be re-initialised until no request uses one.
    pub fn rescan_wanted(&self) -> bool {
        self.watches.values().any(|w| w.waits_for_rescan)
    }

    /// The token under `key` was seen gone, or came back before its module was re-read: its
    /// label.
    pub fn away(&self, key: &str) -> Option<String> {
        self.watches.get(key).filter(|w| !w.present || w.waits_for_rescan).map(|w| w.label.clone())
    }

    /// Re-initialise, once each, the modules waiting for it (the caller holds the modules for
    /// writing): every watch on such a module is done with it.
    fn rescan_waiting(&mut self) {
        let modules: std::collections::BTreeSet<PathBuf> =
            self.watches.values().filter(|w| w.waits_for_rescan).map(|w| w.module.clone()).collect();
        for module in modules {
            rescan(&mut self.lanes, &module);
            for w in self.watches.values_mut().filter(|w| w.module == module) {
                w.waits_for_rescan = false;
            }
        }
    }

    /// Between requests: forget PINs whose time is up, apply finished probes, start the next
    /// look when one is due (`may_rescan`: no request uses any module). Returns how long until
    /// it should run again, and whether it called into a module (a look).
    pub fn housekeeping(&mut self, may_rescan: bool) -> (Duration, bool) {
        if may_rescan {
            self.rescan_waiting();
        }
        let (base, cfg, events, readers) = (&self.base, &self.cfg, &self.events, &self.readers);
        let poll = Duration::from_millis(cfg.presence_poll_ms.max(100));
        apply_cache_policy(&mut self.lanes, cfg);
        let due = self.last_check.elapsed() >= poll && !self.watches.is_empty();
        let looked = self.prober.busy || due;
        if looked {
            take_probe_results(&mut self.lanes, &mut self.watches, events, &mut self.prober, may_rescan);
            if due {
                poll_presence(
                    base.as_deref(),
                    &mut self.lanes,
                    &mut self.watches,
                    events,
                    readers,
                    &mut self.prober,
                    may_rescan,
                );
                self.last_check = Instant::now();
            }
        }
        // While a probe runs, come back soon to apply its result; so too while a module waits
        // for the moment no request uses one.
        let soon = self.prober.busy || self.rescan_wanted();
        let next = if soon { poll.min(Duration::from_millis(20)) } else { poll };
        (next, looked)
    }
}

fn may_have_left(failed: Option<Exit>) -> bool {
    matches!(failed, Some(Exit::NoKey | Exit::Io))
}

/// Wait (at most CARD_LEAVES_WITHIN) for `reader` to report its card gone.
pub(super) fn wait_for_leaving(readers: &Readers, reader: &str) {
    readers.card_leaves(reader, CARD_LEAVES_WITHIN);
}

/// Whether a desk key belongs to the settings' URI: the URI itself, or a token chosen under it.
pub(super) fn key_selects(key: &str, base: &str) -> bool {
    key == base || key.strip_prefix(base).is_some_and(|rest| rest.starts_with('\u{0}'))
}

/// Log out the tokens at rest whose PIN may no longer be kept (the one a request has out is
/// judged when it comes back).
fn apply_cache_policy(lanes: &mut Lanes, cfg: &AgentConfig) {
    for t in lanes.values_mut().filter_map(|l| l.token.as_mut()) {
        let policy = cfg.pin_cache.or(t.profile.pin.cache).unwrap_or_default();
        let keep = match policy {
            PinCache::None => false,
            PinCache::Ttl => t
                .login_time
                .is_some_and(|at| at.elapsed().map(|e| e.as_secs() < cfg.pin_cache_seconds).unwrap_or(false)),
            PinCache::UntilRemoved => true,
        };
        if !keep && t.login_time.is_some() {
            t.logout();
            t.login_time = None;
        }
    }
}
