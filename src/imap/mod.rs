//! The IMAP front door (issue 28): mail clients read SSMAX mail through a loopback IMAP server
//! that shows each message as its view (ops/view.rs), built once by the agent, while the mail
//! itself stays as it is on the organisation's mail store.

pub mod cache;
pub mod mirror;
pub mod search;
pub mod session;
pub mod structure;
pub mod upstream;

use crate::config::ImapConfig;
use crate::error::{Exit, Failure};
use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// What `imap serve` was given, resolved from options and config.
pub struct Settings {
    pub cfg: ImapConfig,
    pub upstream: String,
    /// The upstream's host name, as its TLS certificate names it.
    pub upstream_host: String,
    pub security: upstream::Security,
    pub upstream_user: String,
    pub upstream_password: SecretString,
    pub client_user: String,
    pub client_secret: SecretString,
    /// The agent's socket.
    pub agent: PathBuf,
    pub cache_key: zeroize::Zeroizing<[u8; 32]>,
    /// How far the door's UIDs have gone, out of the cache directory's reach (cache::Mark).
    pub mark: Box<dyn cache::Mark>,
}

/// The mark in the OS keyring, beside the cache key.
pub struct KeyringMark(pub keyring::Entry);

impl cache::Mark for KeyringMark {
    fn get(&self) -> Option<(u32, u32)> {
        let text = self.0.get_password().ok()?;
        let (v, n) = text.split_once(' ')?;
        Some((v.parse().ok()?, n.parse().ok()?))
    }
    fn set(&self, uidvalidity: u32, next_uid: u32) {
        if let Err(e) = self.0.set_password(&format!("{uidvalidity} {next_uid}")) {
            eprintln!("ssmax-card imap: the keyring did not keep how far the UIDs went: {e}");
        }
    }
}

pub struct Shared {
    pub s: Settings,
    pub cache: cache::Cache,
    pub mirror: Mutex<mirror::Mirror>,
    /// The refresh's connection to the upstream, held by the one refresh under way.
    refreshing: Mutex<Option<upstream::Upstream>>,
    /// Clients asking the refresh thread for a refresh, and its answers.
    asked: Mutex<Asked>,
    wake: std::sync::Condvar,
    finished: std::sync::Condvar,
    /// Whether the refresh thread runs (else a client's refresh is made in its own thread,
    /// never asking a PIN).
    refresher: std::sync::atomic::AtomicBool,
    /// Views whose digest was checked at their first read.
    checked: Mutex<std::collections::HashSet<(u32, u32)>>,
    /// The clients' connection to the upstream (views built again, lazy mail read).
    reader: Mutex<Option<upstream::Upstream>>,
}

/// Refreshes asked for and done, by number, and how the last one went.
struct Asked {
    asked: u64,
    done: u64,
    last: Result<(), String>,
}

/// How often the door looks for new mail and tries waiting mail again.
const POLL: std::time::Duration = std::time::Duration::from_secs(5);

/// The cache directory of one upstream account: the user's cache, a name from the account.
fn cache_dir(s: &Settings) -> Option<PathBuf> {
    use sha2::Digest;
    if let Some(d) = &s.cfg.cache_dir {
        return Some(d.clone());
    }
    let account = sha2::Sha256::digest(format!("{}\0{}", s.upstream, s.upstream_user));
    let name = base16ct::lower::encode_string(&account[..8]);
    directories::ProjectDirs::from("jp", "SSMAX", "ssmax-card").map(|d| d.cache_dir().join("imap").join(name))
}

impl Shared {
    pub fn open(mut s: Settings) -> Result<Shared, Failure> {
        let mark = std::mem::replace(&mut s.mark, Box::new(cache::MemoryMark::default()));
        let dir =
            cache_dir(&s).ok_or_else(|| Failure::new(Exit::Usage, "no cache directory: set cache_dir in [imap]"))?;
        let cache =
            cache::Cache::open(&dir, s.cache_key.clone(), mark).map_err(|e| Failure::new(Exit::Io, e.to_string()))?;
        let mirror = mirror::Mirror::load(&cache, s.cfg.cache_size);
        Ok(Shared {
            s,
            cache,
            mirror: Mutex::new(mirror),
            refreshing: Mutex::new(None),
            asked: Mutex::new(Asked { asked: 0, done: 0, last: Ok(()) }),
            wake: std::sync::Condvar::new(),
            finished: std::sync::Condvar::new(),
            refresher: std::sync::atomic::AtomicBool::new(false),
            checked: Mutex::new(std::collections::HashSet::new()),
            reader: Mutex::new(None),
        })
    }

    /// A refresh for a client (SELECT, NOOP): the refresh thread is asked for one and waited
    /// for, up to `patience` (it may be waiting on a PIN: then what is there is served). A
    /// client's thread never asks a PIN itself, nor waits on a card. How the refresh went, as
    /// one line for a NO.
    pub fn refresh_now(&self, patience: std::time::Duration) -> Result<(), String> {
        if !self.refresher.load(std::sync::atomic::Ordering::SeqCst) {
            return refresh(self, false).map_err(|e| e.to_string());
        }
        let deadline = std::time::Instant::now() + patience;
        let mut a = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        a.asked += 1;
        let want = a.asked;
        self.wake.notify_all();
        while a.done < want {
            let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) else { return Ok(()) };
            a = self.finished.wait_timeout(a, left).unwrap_or_else(|p| p.into_inner()).0;
        }
        a.last.clone()
    }

    /// The refresh thread: a refresh every POLL, or as soon as a client asks.
    fn refresh_loop(&self) {
        self.refresher.store(true, std::sync::atomic::Ordering::SeqCst);
        loop {
            let target = {
                let mut a = self.asked.lock().unwrap_or_else(|p| p.into_inner());
                if a.asked == a.done {
                    a = self.wake.wait_timeout(a, POLL).unwrap_or_else(|p| p.into_inner()).0;
                }
                a.asked
            };
            let result = refresh(self, true).map_err(|e| {
                eprintln!("ssmax-card imap: {e}");
                e.to_string()
            });
            let mut a = self.asked.lock().unwrap_or_else(|p| p.into_inner());
            a.done = a.done.max(target);
            a.last = result;
            self.finished.notify_all();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, mirror::Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn login(&self) -> Result<upstream::Upstream, upstream::UpstreamError> {
        let s = &self.s;
        upstream::Upstream::login(&s.upstream, &s.upstream_host, &s.security, &s.upstream_user, &s.upstream_password)
    }

    /// The view of `uid`: from the cache, or built again from the upstream (never asking a
    /// PIN) when it was evicted. A view built again that is not the bytes this UID showed is
    /// not shown under it (the mail comes back under a new UID). None, and why, otherwise.
    pub fn view(&self, uidvalidity: u32, uid: u32) -> Result<Vec<u8>, String> {
        let (upstream_uidvalidity, entry) = {
            let m = self.lock();
            if m.uidvalidity() != uidvalidity {
                return Err("the mailbox changed".into());
            }
            (m.state.upstream_uidvalidity, m.entry(uid).cloned().ok_or("gone")?)
        };
        // A sealed file is this UID's only if it is the bytes the UID was given: an older file
        // put back in the cache directory opens, but is another mail's. Checked at its first
        // read by this process (a UID is never given twice under one UIDVALIDITY, cache::Mark,
        // so no later file of this name can hold other bytes).
        if let Some(v) = self.cache.view(uidvalidity, uid) {
            let mut checked = self.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.contains(&(uidvalidity, uid))
                || <sha2::Sha256 as sha2::Digest>::digest(&v).as_slice() == entry.digest
            {
                if checked.len() < mirror::MAX_MESSAGES {
                    checked.insert((uidvalidity, uid));
                }
                drop(checked);
                self.lock().touch(uid, true);
                return Ok(v);
            }
        }
        let view = self.reading(|up| {
            mirror::rebuild(up, &self.s.agent, &self.s.cfg.authserv_id, upstream_uidvalidity, entry.upstream)
        })?;
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(&view).into();
        // A lazy mail shows, the first time, the bytes of the size it was given.
        let same = if entry.lazy { view.len() == entry.size as usize } else { digest == entry.digest };
        let mut m = self.lock();
        // Expunged, or the mailbox started anew, while it was being built: not stored, not
        // taken for another mail of the same number.
        if m.uidvalidity() != uidvalidity || m.entry(uid).is_none_or(|e| e.upstream != entry.upstream) {
            return Err("the message is gone".into());
        }
        if !same {
            m.changed(uid);
            return Err("the message changed; it comes back as a new message".into());
        }
        if entry.lazy {
            m.made(uid, digest);
        }
        let stored = self.cache.put_view(uidvalidity, uid, &view).is_ok();
        m.touch(uid, stored);
        Ok(view)
    }
}

impl Shared {
    /// `read` on the clients' kept connection to the upstream (one at a time), made again once
    /// when it broke (the upstream may have restarted or timed it out).
    fn reading<T>(&self, read: impl Fn(&mut upstream::Upstream) -> Result<T, String>) -> Result<T, String> {
        let mut conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        for fresh in [false, true] {
            if fresh || conn.is_none() {
                *conn = Some(self.login().map_err(|e| e.to_string())?);
            }
            let Some(up) = conn.as_mut() else { continue };
            match read(up) {
                Ok(t) => return Ok(t),
                Err(e) if fresh => {
                    *conn = None;
                    return Err(e);
                }
                Err(_) => *conn = None,
            }
        }
        Err("the mail store cannot be read".into())
    }

    /// The upstream UIDs of door UIDs (those still here), and the UIDVALIDITY they are under,
    /// when the door's UIDVALIDITY is still the one the client selected.
    fn upstream_of(&self, uidvalidity: u32, uids: &[u32]) -> Result<(u32, Vec<(u32, u32)>), String> {
        let m = self.lock();
        if m.uidvalidity() != uidvalidity {
            return Err("the mailbox changed on the mail store; select it again".into());
        }
        let pairs = uids.iter().filter_map(|&u| m.entry(u).map(|e| (u, e.upstream))).collect();
        Ok((m.state.upstream_uidvalidity, pairs))
    }

    /// The upstream INBOX, selected read-write, when it is still the mailbox the UIDs are of.
    fn writable(&self, upstream_uidvalidity: u32) -> Result<upstream::Upstream, String> {
        let mut up = self.login().map_err(|e| e.to_string())?;
        if up.select("INBOX").map_err(|e| e.to_string())? != upstream_uidvalidity {
            return Err("the mail store's mailbox changed; select it again".into());
        }
        Ok(up)
    }

    /// Change flags on the upstream (they are the mail's, not the view's): the flags of each
    /// door UID afterwards.
    pub fn store(
        &self,
        uidvalidity: u32,
        uids: &[u32],
        kind: imap_next::imap_types::flag::StoreType,
        flags: Vec<imap_next::imap_types::flag::Flag<'static>>,
    ) -> Result<Vec<(u32, Vec<imap_next::imap_types::flag::FlagFetch<'static>>)>, String> {
        let (validity, pairs) = self.upstream_of(uidvalidity, uids)?;
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let mut up = self.writable(validity)?;
        let upstream: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let got = up.store(&upstream, kind, flags).map_err(|e| e.to_string())?;
        let mut m = self.lock();
        for (u, f) in &got {
            m.live.entry(*u).or_default().flags = f.clone();
        }
        Ok(pairs
            .iter()
            .filter_map(|(door, upstream)| got.iter().find(|(u, _)| u == upstream).map(|(_, f)| (*door, f.clone())))
            .collect())
    }

    /// Remove these messages from the upstream, and from the mirror (a refresh follows).
    pub fn expunge(&self, uidvalidity: u32, uids: &[u32]) -> Result<(), String> {
        let (validity, pairs) = self.upstream_of(uidvalidity, uids)?;
        if pairs.is_empty() {
            return Ok(());
        }
        let mut up = self.writable(validity)?;
        let upstream: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        up.uid_expunge(&upstream).map_err(|e| e.to_string())?;
        // Gone now, whatever refresh is under way: the client is told before its OK.
        let gone: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        if let Some(save) = self.lock().forget(&gone, &self.cache) {
            if let Err(e) = self.cache.save_state(&save) {
                eprintln!("ssmax-card imap: {e}");
            }
        }
        Ok(())
    }
}

/// Bring the mirror up to the upstream. One refresh at a time, on one kept connection (made
/// again when it broke: the upstream may have restarted); a client that asks meanwhile is
/// served what is there. The mirror is locked only to read what it knows and to take in the
/// result; views are made and stored unlocked.
/// `interactive`: the door's own refresh thread, the only one that asks a PIN (mirror::update).
fn refresh(shared: &Shared, interactive: bool) -> Result<(), upstream::UpstreamError> {
    let mut conn = shared.refreshing.lock().unwrap_or_else(|p| p.into_inner());
    let started = std::time::Instant::now();
    let s = &shared.s;
    let mut tried_fresh = false;
    let update = loop {
        if conn.is_none() {
            *conn = Some(shared.login()?);
            tried_fresh = true;
        }
        let Some(up) = conn.as_mut() else { continue };
        let known = shared.lock().known();
        match mirror::update(up, &shared.cache, &s.agent, &s.cfg.authserv_id, known, interactive) {
            Ok(u) => break u,
            // A kept connection the upstream dropped meanwhile: once more, on a new one.
            Err(_) if !tried_fresh => *conn = None,
            Err(e) => {
                *conn = None;
                return Err(e);
            }
        }
    };
    for p in &update.pending {
        eprintln!("ssmax-card imap: not shown yet: {p}");
    }
    if !update.made.is_empty() {
        eprintln!("ssmax-card imap: {} new views in {:.1} s", update.made.len(), started.elapsed().as_secs_f64());
    }
    let save = shared.lock().apply(update, &shared.cache);
    if let Some(state) = save {
        if let Err(e) = shared.cache.save_state(&state) {
            eprintln!("ssmax-card imap: {e}");
        }
    }
    Ok(())
}

/// Listen on loopback and serve until the process is stopped.
pub fn run(settings: Settings) -> Result<(), Failure> {
    let listen = settings.cfg.listen;
    let listener = crate::smtp::server::bind_loopback(listen)?;
    eprintln!("ssmax-card imap: listening on {listen}, reading {}", settings.upstream);
    let shared = Arc::new(Shared::open(settings)?);
    // Mail is made into views here, as it arrives, never in a client's thread.
    let polling = shared.clone();
    std::thread::Builder::new()
        .name("imap-refresh".into())
        .spawn(move || polling.refresh_loop())
        .map_err(|e| Failure::new(Exit::Io, e.to_string()))?;
    crate::smtp::server::serve_loopback(
        listener,
        "imap-client",
        b"* BYE too many connections; try again shortly\r\n",
        move |stream| {
            // The silence allowed is the session's to set (session::Idle).
            let _ = stream.set_write_timeout(Some(std::time::Duration::from_secs(60)));
            // A client that vanished or timed out only ends its own session.
            let _ = session::serve(stream, &shared);
        },
    );
    Ok(())
}
