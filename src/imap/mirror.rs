//! What the door serves of a mailbox: each upstream message under its UID with its flags, date
//! and view, the view built once by the agent as the message arrives. A FETCH reads from here
//! and never waits on the card. A message whose view cannot be built yet (card absent, PIN
//! declined) is left out and tried again at the next refresh.

use super::upstream::{Fetched, Upstream, UpstreamError};
use crate::agent::client::{call_retrying, connect};
use crate::agent::protocol::{Call, Request, ViewArgs};
use crate::error::Exit;
use imap_next::imap_types::datetime::DateTime;
use imap_next::imap_types::flag::FlagFetch;
use std::num::NonZeroU32;
use std::path::Path;
use std::sync::Arc;

/// Most messages one mailbox may hold in the door (each keeps its view in memory).
pub const MAX_MESSAGES: usize = 100_000;

pub struct Message {
    pub uid: NonZeroU32,
    pub flags: Vec<FlagFetch<'static>>,
    pub internal_date: Option<DateTime>,
    pub view: Arc<Vec<u8>>,
}

#[derive(Default)]
pub struct Mirror {
    pub uidvalidity: u32,
    /// In UID order: a message's sequence number is its place here, from 1.
    pub messages: Vec<Message>,
    /// What the last refresh could not do, for the log.
    pub pending: Vec<String>,
}

impl Mirror {
    pub fn uidnext(&self) -> u32 {
        self.messages.last().map(|m| m.uid.get().saturating_add(1)).unwrap_or(1)
    }

    /// What a refresh must ask the upstream from: its UIDVALIDITY and the last UID here.
    pub fn known(&self) -> (u32, u32) {
        (self.uidvalidity, self.messages.last().map(|m| m.uid.get()).unwrap_or(0))
    }

    /// Take in what a refresh found: a new UIDVALIDITY starts over; messages gone upstream go
    /// here too; flags are the upstream's; new messages come after the last one.
    pub fn apply(&mut self, u: Update) {
        if u.uidvalidity != self.uidvalidity {
            self.messages.clear();
            self.uidvalidity = u.uidvalidity;
        }
        self.messages.retain(|m| u.flags.contains_key(&m.uid.get()));
        for m in &mut self.messages {
            if let Some(f) = u.flags.get(&m.uid.get()) {
                m.flags = f.clone();
            }
        }
        let last = self.known().1;
        self.messages.extend(u.new.into_iter().filter(|m| m.uid.get() > last));
        self.pending = u.pending;
    }
}

/// What the upstream's INBOX has that the mirror does not, views built. Made without holding
/// the mirror: clients go on fetching while the agent builds views (and maybe asks the PIN).
pub struct Update {
    pub uidvalidity: u32,
    pub flags: std::collections::HashMap<u32, Vec<FlagFetch<'static>>>,
    pub new: Vec<Message>,
    pub pending: Vec<String>,
}

/// Ask the upstream what changed since `known` (`Mirror::known`).
pub fn update(up: &mut Upstream, agent: &Path, authserv_id: &str, known: (u32, u32)) -> Result<Update, UpstreamError> {
    let uidvalidity = up.examine("INBOX")?;
    let last = if uidvalidity == known.0 { known.1 } else { 0 };
    let now = up.fetch("1:*", false)?;
    let sizes: std::collections::HashMap<u32, u32> = now.iter().map(|f| (f.uid, f.size)).collect();
    let flags: std::collections::HashMap<u32, Vec<FlagFetch<'static>>> =
        now.into_iter().map(|f: Fetched| (f.uid, f.flags)).collect();
    let mut fresh: Vec<u32> = flags.keys().copied().filter(|&u| u > last).collect();
    fresh.sort_unstable();
    let mut u = Update { uidvalidity, flags, new: Vec::new(), pending: Vec::new() };
    for uid in fresh {
        if known.1 as usize + u.new.len() >= MAX_MESSAGES {
            u.pending.push(format!("more than {MAX_MESSAGES} messages: the rest are not shown"));
            break;
        }
        let Some(nz) = NonZeroU32::new(uid) else { continue };
        let flags_now = u.flags.get(&uid).cloned().unwrap_or_default();
        // Too large for a view: not fetched at all (the response would be over the door's
        // bounds), shown as a notice.
        if sizes.get(&uid).is_some_and(|&n| n as usize > MAX_MESSAGE) {
            let why = format!("it is larger than {} MiB", MAX_MESSAGE >> 20);
            u.new.push(Message { uid: nz, flags: flags_now, internal_date: None, view: Arc::new(notice(uid, &why)) });
            continue;
        }
        // One at a time: a 64 MiB message is held once, with its view.
        let Some(f) = up.fetch(&uid.to_string(), true)?.into_iter().find(|f| f.uid == uid) else { continue };
        match view_in_agent(agent, &f.body, authserv_id) {
            Ok(view) => {
                u.new.push(Message { uid: nz, flags: f.flags, internal_date: f.internal_date, view: Arc::new(view) })
            }
            // About the card or the person (absent, PIN declined, busy): this one and those after
            // it wait, so the client sees messages in UID order, none skipped.
            Err((exit, why)) if exit.is_temporary() => {
                u.pending.push(format!("message {uid}: {why}"));
                break;
            }
            // About the message itself: it will not get better; a notice stands in for it.
            Err((_, why)) => {
                let view = Arc::new(notice(uid, &why));
                u.new.push(Message { uid: nz, flags: f.flags, internal_date: f.internal_date, view });
            }
        }
    }
    Ok(u)
}

/// The largest message the door shows (the agent's frame bound, less room for its header).
pub const MAX_MESSAGE: usize = (64 << 20) - (64 << 10);

/// What stands in for a message the door cannot show: a short text saying why, the same bytes
/// for the same message and reason.
pub fn notice(uid: u32, why: &str) -> Vec<u8> {
    let text =
        format!("Message {uid} in your mail store could not be shown by ssmax-card: {}\n", crate::l10n::escaped(why));
    let mut out = b"From: ssmax-card <ssmax-card@localhost>\r\nSubject: [ssmax-card] a message could not be shown\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n".to_vec();
    out.extend_from_slice(&crate::mail::quoted_printable(text.as_bytes()));
    out
}

/// The agent's `view` of one message (PIN by its pinentry, as the cache policy says).
fn view_in_agent(agent: &Path, raw: &[u8], authserv_id: &str) -> Result<Vec<u8>, (Exit, String)> {
    let unreachable = |e: &dyn std::fmt::Display| (Exit::AgentUnreachable, e.to_string());
    let mut stream = connect(agent).map_err(|e| unreachable(&e))?;
    // PIN entry happens inside the time.
    let req = Request::from_door(&Call::View(ViewArgs { authserv_id: authserv_id.to_string() }), 300_000, false, false);
    let (resp, body) = call_retrying(&mut stream, agent, &req, raw, &[]).map_err(|e| unreachable(&e))?;
    if resp.ok {
        Ok(body)
    } else {
        Err((Exit::from_code(resp.exit), resp.error.unwrap_or_else(|| "the agent could not build the view".into())))
    }
}
