//! The table of lanes the desk keeps and presence watching ends: each token the agent holds,
//! its turn, and what ends a token's sessions (removal, a module re-initialised). Its own module
//! so that the desk (which lends tokens) and presence (which finds them gone) both stand on it.

use super::turnstile::Turnstile;
use crate::token::objects::Shown;
use crate::token::Token;
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

/// One token the agent holds, and the turn that serves its requests one at a time.
pub(super) struct Lane {
    pub(super) gate: Arc<Turnstile>,
    /// None while a request has it out, or before it is first opened.
    pub(super) token: Option<Token>,
    /// What it showed when last given back: judged while a request has it out.
    pub(super) shown: Option<Shown>,
    /// It was found removed while a request had it out: it is not taken back.
    pub(super) stale: bool,
}

pub(super) type Lanes = HashMap<String, Lane>;

/// The token is gone: its sessions and login (cached PIN) end now, or, when a request has it
/// out, when that request gives it back.
pub(super) fn forget(lanes: &mut Lanes, key: &str) {
    if let Some(lane) = lanes.get_mut(key) {
        lane.shown = None;
        lane.stale = lane.token.take().is_none() && !lane.gate.is_idle();
    }
}

/// End every session through `module` and re-initialise it, so it sees the slot as it is now.
/// Only when no request uses the module (the caller holds the agent's module lock for writing).
pub(super) fn rescan(lanes: &mut Lanes, module: &Path) {
    // The same module by another name (a link) is the same module: its sessions end too.
    let real = std::fs::canonicalize(module).ok();
    let same = |p: &Path| p == module || (real.is_some() && std::fs::canonicalize(p).ok() == real);
    for lane in lanes.values_mut() {
        if lane.token.as_ref().is_some_and(|t| same(&t.module.path)) {
            lane.token = None;
            lane.shown = None;
        }
    }
    if let Some(m) = crate::token::Module::loaded(module) {
        let _ = m.finalize();
    }
}
