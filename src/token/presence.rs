//! Card presence through PC/SC: one thread watches every reader with SCardGetStatusChange and
//! keeps a table of which readers hold a card. Tokens without PC/SC are probed by the agent.

use std::collections::HashMap;
use std::ffi::CString;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Reader name → (a card is in it, how many insertions and removals pcscd has counted there).
/// Empty while PC/SC is unavailable.
#[derive(Clone, Default)]
pub struct Readers {
    state: Arc<Mutex<HashMap<String, (bool, u32)>>>,
    available: Arc<Mutex<bool>>,
}

impl Readers {
    /// Start watching in the background (it retries while pcscd is not running).
    pub fn watch() -> Readers {
        let r = Readers::default();
        let w = r.clone();
        let _ = std::thread::Builder::new().name("pcsc-watch".into()).spawn(move || loop {
            if let Err(e) = w.watch_once() {
                w.set_unavailable();
                // pcscd not running or restarted: look again shortly.
                let _ = e;
                std::thread::sleep(Duration::from_secs(1));
            }
        });
        r
    }

    fn set_unavailable(&self) {
        if let Ok(mut a) = self.available.lock() {
            *a = false;
        }
        if let Ok(mut s) = self.state.lock() {
            s.clear();
        }
    }

    /// One PC/SC context: list readers, wait for changes (or a reader appearing), record them.
    fn watch_once(&self) -> Result<(), pcsc::Error> {
        let ctx = pcsc::Context::establish(pcsc::Scope::User)?;
        if let Ok(mut a) = self.available.lock() {
            *a = true;
        }
        let mut known: Vec<pcsc::ReaderState> = Vec::new();
        loop {
            let names = match ctx.list_readers_owned() {
                Ok(n) => n,
                Err(pcsc::Error::NoReadersAvailable) => Vec::new(),
                Err(e) => return Err(e),
            };
            // Keep what we know about readers still there; new ones start UNAWARE.
            let mut states: Vec<pcsc::ReaderState> =
                vec![pcsc::ReaderState::new(pcsc::PNP_NOTIFICATION(), pcsc::State::UNAWARE)];
            for n in &names {
                let prev = known
                    .iter()
                    .find(|k| k.name() == n.as_c_str())
                    .map(|k| k.event_state())
                    .unwrap_or(pcsc::State::UNAWARE);
                states.push(pcsc::ReaderState::new(CString::from(n.as_c_str()), prev - pcsc::State::CHANGED));
            }
            match ctx.get_status_change(Duration::from_secs(2), &mut states) {
                Ok(()) | Err(pcsc::Error::Timeout) => {}
                Err(pcsc::Error::UnknownReader) => continue,
                Err(e) => return Err(e),
            }
            if let Ok(mut s) = self.state.lock() {
                s.clear();
                for rs in states.iter().skip(1) {
                    let present = rs.event_state().contains(pcsc::State::PRESENT);
                    s.insert(rs.name().to_string_lossy().into_owned(), (present, rs.event_count()));
                }
            }
            for rs in states.iter_mut() {
                rs.sync_current_state();
            }
            known = states.into_iter().skip(1).collect();
        }
    }

    /// Whether the card leaves `reader` within `within`. An operation fails the moment the card
    /// goes, and pcscd may tell a moment later: the answer to "was it pulled?" is worth that wait.
    pub fn card_leaves(&self, reader: &str, within: Duration) -> bool {
        let until = std::time::Instant::now() + within;
        loop {
            if self.card_in(reader) == Some(false) {
                return true;
            }
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Some(card present) for a known reader; None when PC/SC is down or the reader is unknown.
    pub fn card_in(&self, reader: &str) -> Option<bool> {
        self.card_events(reader).map(|(present, _)| present)
    }

    /// Some((card present, pcscd's count of insertions and removals)) for a known reader: a
    /// count that moved says the card left, even when it is back by the time anyone looks.
    pub fn card_events(&self, reader: &str) -> Option<(bool, u32)> {
        if !self.available.lock().map(|a| *a).unwrap_or(false) {
            return None;
        }
        self.state.lock().ok()?.get(reader).copied()
    }
}
