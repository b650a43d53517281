//! The desk the holder of the token turn works at: the open tokens (their sessions and logins,
//! which are the PIN cache), the cache policy applied between requests, and the presence
//! watching (presence.rs) started after each.

use super::presence::*;
use crate::config::AgentConfig;
use crate::error::Exit;
use crate::profile::PinCache;
use crate::token::presence::Readers;
use crate::token::Token;
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long a failed request waits for its card's reader to report a removal (OpenSC says
/// CKR_GENERAL_ERROR, not CKR_DEVICE_REMOVED, for a card pulled during a command).
const CARD_LEAVES_WITHIN: Duration = Duration::from_secs(1);

/// What the holder of the token turn works with.
pub(super) struct Desk {
    /// Open tokens by URI: sessions and logins (the PIN cache) live here.
    pub tokens: HashMap<String, Token>,
    watches: HashMap<String, Watch>,
    last_check: Instant,
    prober: Prober,
    /// The agent's config file, passed on to token probes.
    base: Option<PathBuf>,
    cfg: AgentConfig,
    events: Events,
    readers: Readers,
}

impl Desk {
    pub fn new(base: Option<PathBuf>, cfg: AgentConfig, events: Events, readers: Readers) -> Desk {
        Desk {
            tokens: HashMap::new(),
            watches: HashMap::new(),
            last_check: Instant::now(),
            prober: Prober::start(base.clone()),
            base,
            cfg,
            events,
            readers,
        }
    }

    /// After a request on `request_key` (`failed`: how, if it did): watch every token the agent
    /// now holds sessions on, and when a request on a watched token failed as a removed one
    /// would, look now. Returns whether that token turned out to be gone.
    pub fn after_request(&mut self, request_key: &str, failed: Option<Exit>) -> bool {
        let ok = failed.is_none();
        let (base, cfg, events, readers) = (&self.base, &self.cfg, &self.events, &self.readers);
        for (k, t) in self.tokens.iter() {
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
                seen_at: Instant::now(),
            });
            w.present = true;
            w.serial = t.serial.clone();
            if ok && k == request_key {
                w.seen_at = Instant::now();
            }
        }
        let mut gone = false;
        if matches!(failed, Some(Exit::NoKey | Exit::Io)) && self.watches.contains_key(request_key) {
            if let Some(reader) = self.watches.get(request_key).and_then(|w| w.reader.clone()) {
                readers.card_leaves(&reader, CARD_LEAVES_WITHIN);
            }
            gone = check_presence(base.as_deref(), &mut self.tokens, &mut self.watches, events, readers)
                .iter()
                .any(|k| k == request_key);
            self.last_check = Instant::now();
        }
        apply_cache_policy(&mut self.tokens, cfg);
        gone
    }

    /// Between requests: forget PINs whose time is up, apply finished probes, start the next
    /// look when one is due. Returns how long until it should run again.
    pub fn housekeeping(&mut self, dog: &super::watchdog::Watchdog) -> Duration {
        let (base, cfg, events, readers) = (&self.base, &self.cfg, &self.events, &self.readers);
        let poll = Duration::from_millis(cfg.presence_poll_ms.max(100));
        apply_cache_policy(&mut self.tokens, cfg);
        let due = self.last_check.elapsed() >= poll && !self.watches.is_empty();
        if self.prober.busy || due {
            dog.enter("presence check");
            take_probe_results(&mut self.tokens, &mut self.watches, events, &mut self.prober);
            if due {
                poll_presence(base.as_deref(), &mut self.tokens, &mut self.watches, events, readers, &mut self.prober);
                self.last_check = Instant::now();
            }
            dog.leave();
        }
        // While a probe runs, come back soon to apply its result.
        if self.prober.busy {
            poll.min(Duration::from_millis(20))
        } else {
            poll
        }
    }
}

fn apply_cache_policy(tokens: &mut HashMap<String, Token>, cfg: &AgentConfig) {
    for t in tokens.values_mut() {
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
