//! The IMAP front door (issue 28): mail clients read SSMAX mail through a loopback IMAP server
//! that shows each message as its view (ops/view.rs), built once by the agent, while the mail
//! itself stays as it is on the organisation's mail store.

mod ahead;
pub mod cache;
pub mod mirror;
pub mod search;
pub mod session;
pub mod structure;
pub mod tls;
pub mod upstream;

use crate::config::ImapConfig;
use crate::error::{Exit, Failure};
use secrecy::SecretString;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

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
    /// How far the door's UIDs have gone in each mailbox, out of the cache directory's reach
    /// (cache::Mark): the OS keyring.
    pub mark: Box<dyn cache::MarkStore>,
}

/// The marks in the OS keyring, beside the cache key.
pub struct KeyringMark(pub keyring::Entry);

impl cache::MarkStore for KeyringMark {
    fn load(&self) -> Option<String> {
        self.0.get_password().ok()
    }
    fn store(&self, text: &str) {
        if let Err(e) = self.0.set_password(text) {
            eprintln!("ssmax-card imap: the keyring did not keep how far the UIDs went: {e}");
        }
    }
}

/// One mailbox of the mail store, as the door serves it: its own UID space, views and state.
pub struct Folder {
    /// Its name, as the mail store and the client spell it ("INBOX" for the inbox).
    pub name: String,
    pub cache: cache::Cache,
    pub mirror: Mutex<mirror::Mirror>,
    /// Views whose digest was checked at their first read.
    checked: Mutex<HashSet<(u32, u32)>>,
    /// The refresh thread keeps it up to date until then (INBOX always): a mailbox a client
    /// selected or asked the STATUS of.
    watched_until: Mutex<Instant>,
    /// When its last refresh ended well.
    refreshed: Mutex<Option<Instant>>,
    /// When a client last named it (SELECT, STATUS, COPY to it).
    asked_at: Mutex<Instant>,
}

impl Folder {
    pub fn lock(&self) -> MutexGuard<'_, mirror::Mirror> {
        self.mirror.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn watch(&self) {
        let mut until = self.watched_until.lock().unwrap_or_else(|p| p.into_inner());
        *until = (*until).max(Instant::now() + WATCH_FOR);
    }

    /// Whether it was brought up to the mail store within `age` (a client's STATUS of every
    /// mailbox in turn does not cost a round of refreshes each).
    pub fn fresh_within(&self, age: Duration) -> bool {
        self.refreshed.lock().unwrap_or_else(|p| p.into_inner()).is_some_and(|t| t.elapsed() < age)
    }

    pub fn unwatch(&self) {
        *self.watched_until.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
    }

    fn watched(&self) -> bool {
        self.name == "INBOX" || *self.watched_until.lock().unwrap_or_else(|p| p.into_inner()) > Instant::now()
    }
}

pub struct Shared {
    pub s: Settings,
    /// The account's cache directory (INBOX's; other mailboxes' below it).
    dir: PathBuf,
    marks: Arc<cache::Marks>,
    /// The mailboxes the door has a state for, by name.
    folders: Mutex<BTreeMap<String, Arc<Folder>>>,
    /// The door's clock for "least recently read", one for every mailbox.
    clock: AtomicU64,
    /// The refresh's connection to the upstream, held by the one refresh under way.
    refreshing: Mutex<Option<upstream::Upstream>>,
    /// Clients asking the refresh thread for a refresh, and its answers.
    asked: Mutex<Asked>,
    wake: std::sync::Condvar,
    finished: std::sync::Condvar,
    /// Whether the refresh thread runs (else a client's refresh is made in its own thread,
    /// never asking a PIN).
    refresher: AtomicBool,
    /// The clients' connection to the upstream (views built again, lazy mail read, LIST).
    reader: Mutex<Option<upstream::Upstream>>,
    appending: Mutex<()>,
    /// The mail store's hierarchy delimiter, once a LIST said it.
    delimiter: Mutex<Option<char>>,
    /// Clients sending a large command now (BigInput).
    big_inputs: Mutex<usize>,
    big_freed: std::sync::Condvar,
    /// STARTTLS for clients: the door's own certificate (None: not offered).
    pub tls: Option<tls::DoorTls>,
    /// Plain mail read ahead of a client's download (ahead.rs).
    ahead: ahead::Ahead,
}

/// Rounds of refreshes asked for and done, by number, and how each mailbox's last went (in
/// which round).
struct Asked {
    asked: u64,
    done: u64,
    last: HashMap<String, (u64, Result<(), String>)>,
    /// Mailboxes to bring up once in the next round, though not watched (a STATUS).
    once: HashSet<String>,
}

/// Large commands being sent at once, door-wide.
const BIG_INPUTS: usize = 2;

/// A client's permit to send a large command (and since when it holds it); given back when
/// dropped.
pub struct BigInput<'a>(&'a Shared, pub Instant);

impl Drop for BigInput<'_> {
    fn drop(&mut self) {
        let mut busy = self.0.big_inputs.lock().unwrap_or_else(|p| p.into_inner());
        *busy = busy.saturating_sub(1);
        self.0.big_freed.notify_one();
    }
}

/// How often the door looks for new mail and tries waiting mail again.
pub(crate) const POLL: Duration = Duration::from_secs(5);
/// How long a mailbox other than INBOX is kept up to date after a client last looked at it.
const WATCH_FOR: Duration = Duration::from_secs(10 * 60);
/// Most mailboxes the door keeps a state for: a mail store with more is served for the first
/// ones a client opens.
pub const MAX_FOLDERS: usize = 1000;

/// How the door names a mailbox: INBOX in any case is INBOX (RFC 3501 §5.1); other names as
/// they are.
pub fn folder_name(name: &str) -> String {
    if name.eq_ignore_ascii_case("INBOX") {
        "INBOX".to_string()
    } else {
        name.to_string()
    }
}

/// The directory and key scope of a mailbox's cache: INBOX's is the account's directory
/// itself (as it was when INBOX was all); another's is named by a digest of its name, so no
/// mailbox name is written in the clear.
fn folder_scope(name: &str) -> String {
    use sha2::Digest;
    if name == "INBOX" {
        return String::new();
    }
    let d = sha2::Sha256::digest(format!("mailbox\0{name}"));
    base16ct::lower::encode_string(&d[..8])
}

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
        let store = std::mem::replace(&mut s.mark, Box::new(cache::MemoryStore::default()));
        let dir =
            cache_dir(&s).ok_or_else(|| Failure::new(Exit::Usage, "no cache directory: set cache_dir in [imap]"))?;
        let shared = Shared {
            s,
            dir,
            marks: cache::Marks::new(store),
            folders: Mutex::new(BTreeMap::new()),
            clock: AtomicU64::new(0),
            refreshing: Mutex::new(None),
            // A first round at once: mail that came while the door was not running is taken in
            // before a client asks.
            asked: Mutex::new(Asked { asked: 1, done: 0, last: HashMap::new(), once: HashSet::new() }),
            wake: std::sync::Condvar::new(),
            finished: std::sync::Condvar::new(),
            refresher: AtomicBool::new(false),
            reader: Mutex::new(None),
            appending: Mutex::new(()),
            delimiter: Mutex::new(None),
            big_inputs: Mutex::new(0),
            big_freed: std::sync::Condvar::new(),
            tls: None,
            ahead: ahead::Ahead::default(),
        };
        let mut shared = shared;
        shared.folder("INBOX").map_err(|e| Failure::new(Exit::Io, e))?;
        match tls::door_tls(&shared.dir, &shared.s.cache_key) {
            Ok(t) => shared.tls = Some(t),
            Err(e) => eprintln!("ssmax-card imap: STARTTLS is not offered: {e}"),
        }
        // Every mailbox with views in the cache counts in its bound, read or not this time.
        for name in shared.cached_folder_names() {
            if let Err(e) = shared.folder(&name) {
                eprintln!("ssmax-card imap: the cache of mailbox {name}: {e}");
            }
        }
        let clock = shared.all_folders().iter().map(|f| f.lock().state.clock).max().unwrap_or(0);
        shared.clock.store(clock, Ordering::SeqCst);
        Ok(shared)
    }

    fn folder_dir(&self, scope: &str) -> PathBuf {
        if scope.is_empty() {
            self.dir.clone()
        } else {
            self.dir.join("boxes").join(scope)
        }
    }

    fn open_cache(&self, scope: &str) -> Result<cache::Cache, String> {
        let mark = Box::new(cache::ScopedMark { marks: self.marks.clone(), scope: scope.to_string() });
        cache::Cache::open_scoped(&self.folder_dir(scope), self.s.cache_key.clone(), mark, scope)
            .map_err(|e| e.to_string())
    }

    /// The names of the mailboxes other than INBOX with a cache directory (their states say).
    fn cached_folder_names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("boxes")) else { return Vec::new() };
        let mut names = Vec::new();
        for e in entries.flatten().take(MAX_FOLDERS) {
            let Some(scope) = e.file_name().to_str().map(str::to_string) else { continue };
            let Ok(cache) = self.open_cache(&scope) else { continue };
            match mirror::Mirror::stored_name(&cache) {
                // A directory is a mailbox's only under the name its digest is of.
                Some(name) if folder_scope(&name) == scope => names.push(name),
                _ => cache.destroy(),
            }
        }
        names
    }

    /// The door's state of mailbox `name`, opened (from the cache, or anew) at first use.
    pub fn folder(&self, name: &str) -> Result<Arc<Folder>, String> {
        let name = folder_name(name);
        let mut folders = self.folders.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = folders.get(&name) {
            *f.asked_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            return Ok(f.clone());
        }
        if folders.len() >= MAX_FOLDERS {
            // The mailbox no client asked of for longest, and none has selected, makes room
            // (its views go; it comes back under a new UIDVALIDITY if a client opens it again).
            let oldest = folders
                .values()
                .filter(|f| f.name != "INBOX" && !f.watched() && Arc::strong_count(f) == 1)
                .min_by_key(|f| *f.asked_at.lock().unwrap_or_else(|p| p.into_inner()))
                .map(|f| f.name.clone());
            let Some(oldest) = oldest else {
                return Err(format!("the door serves at most {MAX_FOLDERS} mailboxes at once"));
            };
            if let Some(f) = folders.remove(&oldest) {
                f.cache.destroy();
            }
        }
        let cache = self.open_cache(&folder_scope(&name))?;
        let mirror = mirror::Mirror::load(&cache, &name);
        let folder = Arc::new(Folder {
            name: name.clone(),
            cache,
            mirror: Mutex::new(mirror),
            checked: Mutex::new(HashSet::new()),
            watched_until: Mutex::new(Instant::now()),
            refreshed: Mutex::new(None),
            asked_at: Mutex::new(Instant::now()),
        });
        folders.insert(name, folder.clone());
        Ok(folder)
    }

    /// The door's state of mailbox `name` when the mail store has that mailbox: a client
    /// naming mailboxes that do not exist makes no state.
    pub fn existing_folder(&self, name: &str) -> Result<Arc<Folder>, String> {
        let name = folder_name(name);
        if let Some(f) = self.folders.lock().unwrap_or_else(|p| p.into_inner()).get(&name) {
            *f.asked_at.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
            return Ok(f.clone());
        }
        self.reading(|up| up.examine(&name).map_err(|e| e.to_string()))?;
        self.folder(&name)
    }

    pub fn all_folders(&self) -> Vec<Arc<Folder>> {
        self.folders.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    /// The mailbox is gone from the mail store (deleted, renamed): its state and views go.
    fn drop_folder(&self, name: &str) {
        let name = folder_name(name);
        // INBOX cannot be deleted; renamed, it stays (empty), and its refresh sees what went.
        if name == "INBOX" {
            return;
        }
        let mut folders = self.folders.lock().unwrap_or_else(|p| p.into_inner());
        // Its children go with it (a RENAME moves them): the name, the hierarchy delimiter the
        // mail store's LIST gave, more.
        let delimiter = *self.delimiter.lock().unwrap_or_else(|p| p.into_inner());
        let gone: Vec<String> = folders
            .keys()
            .filter(|k| {
                k.as_str() == name
                    || delimiter.is_some_and(|d| k.strip_prefix(&name).is_some_and(|rest| rest.starts_with(d)))
            })
            .cloned()
            .collect();
        for g in gone {
            // Its mark stays: a mailbox made again under the name gets a UIDVALIDITY past it.
            if let Some(f) = folders.remove(&g) {
                f.cache.destroy();
            }
        }
    }

    /// A permit to send a large command (an APPEND of up to 64 MiB, held in memory until it
    /// is whole): a few at a time, door-wide, so many clients at once cost a few messages'
    /// memory, not one each. Others wait their turn.
    pub fn big_input(&self) -> BigInput<'_> {
        let mut busy = self.big_inputs.lock().unwrap_or_else(|p| p.into_inner());
        while *busy >= BIG_INPUTS {
            busy = self.big_freed.wait(busy).unwrap_or_else(|p| p.into_inner());
        }
        *busy += 1;
        BigInput(self, Instant::now())
    }

    fn tick(&self) -> u64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// A refresh of `folder` for a client (SELECT, STATUS, NOOP): the refresh thread is asked
    /// for one and waited for, up to `patience` (it may be waiting on a PIN: then what is there
    /// is served). A client's thread never asks a PIN itself, nor waits on a card. `watch`: kept
    /// up to date from now on (a mailbox selected), else brought up once (a STATUS). How the
    /// refresh went, as one line for a NO.
    pub fn refresh_now(&self, folder: &Arc<Folder>, patience: Duration, watch: bool) -> Result<(), String> {
        if watch {
            folder.watch();
        }
        if !self.refresher.load(Ordering::SeqCst) {
            return refresh(self, folder, false).map_err(|e| e.to_string());
        }
        let deadline = Instant::now() + patience;
        let mut a = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        a.asked += 1;
        let want = a.asked;
        if !watch && a.once.len() < MAX_FOLDERS {
            a.once.insert(folder.name.clone());
        }
        self.wake.notify_all();
        // Answered as soon as this mailbox is done, not the whole round.
        loop {
            if let Some((round, result)) = a.last.get(&folder.name) {
                if *round >= want {
                    return result.clone();
                }
            }
            if a.done >= want {
                return Ok(());
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else { return Ok(()) };
            a = self.finished.wait_timeout(a, left).unwrap_or_else(|p| p.into_inner()).0;
        }
    }

    /// The refresh thread: a round every POLL, or as soon as a client asks: each mailbox
    /// watched is brought up to the mail store, then the cache is held to its bound.
    fn refresh_loop(&self) {
        self.refresher.store(true, Ordering::SeqCst);
        loop {
            let (target, once) = {
                let mut a = self.asked.lock().unwrap_or_else(|p| p.into_inner());
                if a.asked == a.done {
                    a = self.wake.wait_timeout(a, POLL).unwrap_or_else(|p| p.into_inner()).0;
                }
                (a.asked, std::mem::take(&mut a.once))
            };
            // INBOX first: new mail is looked for there before any other mailbox.
            let mut round: Vec<Arc<Folder>> =
                self.all_folders().into_iter().filter(|f| f.watched() || once.contains(&f.name)).collect();
            round.sort_by_key(|f| f.name != "INBOX");
            for folder in round {
                // A refresh that panics (a bug, a crate's on some mail) costs its mailbox this
                // round, never the thread every mailbox's new mail comes through.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| refresh(self, &folder, true)))
                    .unwrap_or_else(|_| {
                        // Its connection may be in the middle of an answer: not used again.
                        *self.refreshing.lock().unwrap_or_else(|p| p.into_inner()) = None;
                        Err(upstream::UpstreamError::Protocol(folder.name.clone(), "the refresh failed".into()))
                    });
                match &result {
                    // Gone from the mail store (another client deleted or renamed it):
                    // forgotten here, views and all.
                    Err(upstream::UpstreamError::NoMailbox(_, "EXAMINE", _)) => self.drop_folder(&folder.name),
                    // Not readable now (in use, the server's fault): looked at again when a
                    // client asks.
                    Err(upstream::UpstreamError::Refused(_, "EXAMINE", _)) => folder.unwatch(),
                    _ => {}
                }
                let result = result.map_err(|e| {
                    eprintln!("ssmax-card imap: {}: {e}", folder.name);
                    e.to_string()
                });
                let mut a = self.asked.lock().unwrap_or_else(|p| p.into_inner());
                a.last.insert(folder.name.clone(), (target, result));
                self.finished.notify_all();
            }
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.evict())).is_err() {
                eprintln!("ssmax-card imap: the cache could not be held to its bound this round");
            }
            let mut a = self.asked.lock().unwrap_or_else(|p| p.into_inner());
            a.done = a.done.max(target);
            let known: HashSet<String> = self.all_folders().iter().map(|f| f.name.clone()).collect();
            a.last.retain(|name, _| known.contains(name));
            self.finished.notify_all();
        }
    }

    /// Least recently read views out, of every mailbox, until the cache fits its bound.
    fn evict(&self) {
        let folders = self.all_folders();
        let mut saves = Vec::new();
        {
            // In the folders' (name) order, the only place two mirrors are held at once.
            let mut guards: Vec<_> = folders.iter().map(|f| f.lock()).collect();
            let mut pairs: Vec<(&mut mirror::Mirror, &cache::Cache)> =
                guards.iter_mut().zip(folders.iter()).map(|(g, f)| (&mut **g, &f.cache)).collect();
            mirror::evict(&mut pairs, self.s.cfg.cache_size);
            for (i, g) in guards.iter_mut().enumerate() {
                if let Some(save) = g.save_if_changed() {
                    saves.push((i, save));
                }
            }
        }
        for (i, save) in saves {
            if let Err(e) = folders[i].cache.save_state(&save) {
                eprintln!("ssmax-card imap: {e}");
            }
        }
    }

    fn login(&self) -> Result<upstream::Upstream, upstream::UpstreamError> {
        let s = &self.s;
        upstream::Upstream::login(&s.upstream, &s.upstream_host, &s.security, &s.upstream_user, &s.upstream_password)
    }

    /// The view of `uid`: from the cache, or built again from the upstream (never asking a
    /// PIN) when it was evicted. A view built again that is not the bytes this UID showed is
    /// not shown under it (the mail comes back under a new UID). None, and why, otherwise.
    pub fn view(&self, folder: &Arc<Folder>, uidvalidity: u32, uid: u32) -> Result<Vec<u8>, String> {
        let (upstream_uidvalidity, entry) = {
            let m = folder.lock();
            if m.uidvalidity() != uidvalidity {
                return Err("the mailbox changed".into());
            }
            (m.state.upstream_uidvalidity, m.entry(uid).cloned().ok_or("gone")?)
        };
        // A sealed file is this UID's only if it is the bytes the UID was given: an older file
        // put back in the cache directory opens, but is another mail's. Checked at its first
        // read by this process (a UID is never given twice under one UIDVALIDITY, cache::Mark,
        // so no later file of this name can hold other bytes).
        if let Some(v) = folder.cache.view(uidvalidity, uid) {
            let mut checked = folder.checked.lock().unwrap_or_else(|p| p.into_inner());
            if checked.contains(&(uidvalidity, uid))
                || <sha2::Sha256 as sha2::Digest>::digest(&v).as_slice() == entry.digest
            {
                if checked.len() < mirror::MAX_MESSAGES {
                    checked.insert((uidvalidity, uid));
                }
                drop(checked);
                folder.lock().touch(uid, true, self.tick());
                return Ok(v);
            }
        }
        // A plain mail's first read: the client is downloading; the next ones are read ahead.
        if entry.plain && entry.lazy {
            let ready = self.ahead.take(folder, uidvalidity, uid);
            self.ahead.plan_after(folder, uidvalidity, uid);
            if let Some(r) = ready {
                self.keep(folder, uidvalidity, uid, &entry, &r.view, Some(r.digest))?;
                return Ok(r.view);
            }
        }
        let view = self.reading(|up| {
            mirror::rebuild(
                up,
                &folder.name,
                &self.s.agent,
                &self.s.cfg.authserv_id,
                upstream_uidvalidity,
                entry.upstream,
            )
        })?;
        self.keep(folder, uidvalidity, uid, &entry, &view, None)?;
        Ok(view)
    }

    /// Take a view built again (or for the first time, for mail taken in by its header) as
    /// UID `uid`'s when it is the bytes the UID was given (a lazy one: of the size it was
    /// given, its digest from now on). Sealed and written outside the mirror's lock.
    ///
    /// A plain mail's view is stored at its second read, not its first: it is the mail
    /// store's own bytes, made again at any time without the card, and most clients read a
    /// message once and keep it. One pass over a mailbox (a client's first sync, a search)
    /// then writes nothing to the disk and evicts no view that needs the card to be made.
    fn keep(
        &self,
        folder: &Folder,
        uidvalidity: u32,
        uid: u32,
        entry: &mirror::Entry,
        view: &[u8],
        digest: Option<[u8; 32]>,
    ) -> Result<(), String> {
        let digest: [u8; 32] = digest.unwrap_or_else(|| <sha2::Sha256 as sha2::Digest>::digest(view).into());
        let same = if entry.lazy { view.len() == entry.size as usize } else { digest == entry.digest };
        let still = |m: &mirror::Mirror| {
            m.uidvalidity() == uidvalidity && m.entry(uid).is_some_and(|e| e.upstream == entry.upstream)
        };
        if !same {
            let mut m = folder.lock();
            if still(&m) {
                m.changed(uid);
            }
            return Err("the message changed; it comes back as a new message".into());
        }
        let first_read = entry.plain && entry.lazy;
        let stored = !first_read && folder.cache.put_view(uidvalidity, uid, view).is_ok();
        let mut m = folder.lock();
        // Expunged, or the mailbox started anew, while it was being built: not kept, not taken
        // for another mail of the same number.
        if !still(&m) {
            folder.cache.remove_view(uidvalidity, uid);
            return Err("the message is gone".into());
        }
        if m.entry(uid).is_some_and(|e| e.lazy) {
            m.made(uid, digest);
        }
        m.touch(uid, stored, self.tick());
        Ok(())
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
    fn upstream_of(&self, folder: &Folder, uidvalidity: u32, uids: &[u32]) -> Result<(u32, Vec<(u32, u32)>), String> {
        let m = folder.lock();
        if m.uidvalidity() != uidvalidity {
            return Err("the mailbox changed on the mail store; select it again".into());
        }
        let pairs = uids.iter().filter_map(|&u| m.entry(u).map(|e| (u, e.upstream))).collect();
        Ok((m.state.upstream_uidvalidity, pairs))
    }

    /// The upstream mailbox, selected read-write, when it is still the mailbox the UIDs are of.
    fn writable(&self, folder: &Folder, upstream_uidvalidity: u32) -> Result<upstream::Upstream, String> {
        let mut up = self.login().map_err(|e| e.to_string())?;
        if up.select(&folder.name).map_err(|e| e.to_string())? != upstream_uidvalidity {
            return Err("the mail store's mailbox changed; select it again".into());
        }
        Ok(up)
    }

    /// Change flags on the upstream (they are the mail's, not the view's): the flags of each
    /// door UID afterwards.
    pub fn store(
        &self,
        folder: &Folder,
        uidvalidity: u32,
        uids: &[u32],
        kind: imap_next::imap_types::flag::StoreType,
        flags: Vec<imap_next::imap_types::flag::Flag<'static>>,
    ) -> Result<Vec<(u32, Vec<imap_next::imap_types::flag::FlagFetch<'static>>)>, String> {
        let (validity, pairs) = self.upstream_of(folder, uidvalidity, uids)?;
        if pairs.is_empty() {
            return Ok(Vec::new());
        }
        let mut up = self.writable(folder, validity)?;
        let upstream: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        let got = up.store(&upstream, kind, flags).map_err(|e| e.to_string())?;
        let mut m = folder.lock();
        for (u, f) in &got {
            m.live.entry(*u).or_default().flags = f.clone();
        }
        Ok(pairs
            .iter()
            .filter_map(|(door, upstream)| got.iter().find(|(u, _)| u == upstream).map(|(_, f)| (*door, f.clone())))
            .collect())
    }

    /// Remove these messages from the upstream, and from the mirror (a refresh follows).
    pub fn expunge(&self, folder: &Folder, uidvalidity: u32, uids: &[u32]) -> Result<(), String> {
        let (validity, pairs) = self.upstream_of(folder, uidvalidity, uids)?;
        if pairs.is_empty() {
            return Ok(());
        }
        let mut up = self.writable(folder, validity)?;
        let upstream: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        up.uid_expunge(&upstream).map_err(|e| e.to_string())?;
        self.gone(folder, &pairs);
        Ok(())
    }

    /// Gone now, whatever refresh is under way: the client is told before its OK.
    fn gone(&self, folder: &Folder, pairs: &[(u32, u32)]) {
        let gone: Vec<u32> = pairs.iter().map(|p| p.0).collect();
        if let Some(save) = folder.lock().forget(&gone, &folder.cache) {
            if let Err(e) = folder.cache.save_state(&save) {
                eprintln!("ssmax-card imap: {e}");
            }
        }
    }

    /// COPY (or MOVE) these messages to mailbox `to`: the originals, on the mail store (a view
    /// is never uploaded); they show in `to` as its refresh makes their views. Moved ones are
    /// gone from `folder` here too.
    pub fn copy(
        &self,
        folder: &Folder,
        uidvalidity: u32,
        uids: &[u32],
        to: &str,
        moving: bool,
    ) -> Result<(), NotTaken> {
        let (validity, pairs) = self.upstream_of(folder, uidvalidity, uids)?;
        if pairs.is_empty() {
            return Ok(());
        }
        let mut up = self.writable(folder, validity)?;
        let upstream: Vec<u32> = pairs.iter().map(|p| p.1).collect();
        up.copy(&upstream, &folder_name(to), moving)?;
        if moving {
            self.gone(folder, &pairs);
        }
        self.after_change(to);
        Ok(())
    }

    /// A mailbox changed on the mail store by the door: it is watched, and refreshed soon.
    fn after_change(&self, name: &str) {
        if let Ok(f) = self.folder(name) {
            f.watch();
        }
        let mut a = self.asked.lock().unwrap_or_else(|p| p.into_inner());
        a.asked += 1;
        self.wake.notify_all();
    }

    /// APPEND a message to mailbox `to`. A view of the door's (a client moving mail between
    /// accounts, or back) is never uploaded: its original is copied on the mail store instead.
    /// A message carrying the door's verdict that is no view the door has (a view changed,
    /// forwarded inside another, or its original gone) is refused: it may hold what was
    /// decrypted. Any other message (Sent, Drafts) goes as it is.
    pub fn append(
        &self,
        to: &str,
        literal: imap_next::imap_types::core::Literal<'static>,
        flags: Vec<imap_next::imap_types::flag::Flag<'static>>,
        date: Option<imap_next::imap_types::datetime::DateTime>,
    ) -> Result<(), NotTaken> {
        let message = literal.data();
        // One at a time: each holds a message of up to 64 MiB, and its copy on the way out.
        let _one = self.appending.lock().unwrap_or_else(|p| p.into_inner());
        // mbsync puts its X-TUID field in what it uploads.
        let digest: [u8; 32] = <sha2::Sha256 as sha2::Digest>::digest(without_tuid(message)).into();
        for folder in self.all_folders() {
            let found = {
                let m = folder.lock();
                m.state
                    .entries
                    .iter()
                    .find(|e| !e.lazy && e.digest == digest)
                    .map(|e| (m.state.upstream_uidvalidity, e.upstream))
            };
            let Some((validity, upstream)) = found else { continue };
            let mut up = self.writable(&folder, validity)?;
            // Still there (a UID COPY of a UID gone copies nothing, and says OK).
            if !up.fetch(&upstream.to_string(), upstream::Body::None)?.iter().any(|f| f.uid == upstream) {
                continue;
            }
            up.copy(&[upstream], &folder_name(to), false)?;
            self.after_change(to);
            return Ok(());
        }
        if carries_verdict(message, &self.s.cfg.authserv_id) {
            return Err(APPEND_REFUSED.to_string().into());
        }
        let opened: HashSet<PartDigest> = self
            .all_folders()
            .iter()
            .flat_map(|f| f.lock().state.entries.iter().flat_map(|e| e.parts.clone()).collect::<Vec<_>>())
            .collect();
        if !opened.is_empty() {
            // A message that cannot be read through is not known to hold nothing opened.
            let holds = part_digests(message).is_none_or(|ds| ds.iter().any(|d| opened.contains(d)));
            if holds {
                return Err(APPEND_HOLDS_OPENED.to_string().into());
            }
        }
        let mut up = self.login()?;
        up.append(&folder_name(to), literal, flags, date)?;
        self.after_change(to);
        Ok(())
    }

    /// A command that changes only mailboxes (CREATE, DELETE, RENAME, SUBSCRIBE, UNSUBSCRIBE),
    /// passed to the mail store as the client sent it. What is deleted or renamed away is
    /// forgotten here with its views.
    pub fn pass(
        &self,
        body: imap_next::imap_types::command::CommandBody<'static>,
        what: &'static str,
        gone: Option<&str>,
    ) -> Result<(), String> {
        let mut up = self.login().map_err(|e| e.to_string())?;
        up.pass(body, what).map_err(|e| e.to_string())?;
        if let Some(name) = gone {
            self.drop_folder(name);
        }
        Ok(())
    }

    /// LIST or LSUB, answered by the mail store: the door serves its mailboxes as they are.
    pub fn list(
        &self,
        body: imap_next::imap_types::command::CommandBody<'static>,
    ) -> Result<Vec<imap_next::imap_types::response::Data<'static>>, String> {
        let data = self.reading(|up| up.pass(body.clone(), "LIST").map_err(|e| e.to_string()))?;
        // The hierarchy delimiter, for what a RENAME or DELETE takes with it.
        let said = data.iter().find_map(|d| match d {
            imap_next::imap_types::response::Data::List { delimiter: Some(c), .. } => Some(c.inner()),
            _ => None,
        });
        if let Some(c) = said {
            *self.delimiter.lock().unwrap_or_else(|p| p.into_inner()) = Some(c);
        }
        Ok(data)
    }
}

/// Why the mail store (or the door) did not take a COPY, MOVE or APPEND.
pub struct NotTaken {
    pub why: String,
    /// The mailbox named does not exist: a client may CREATE it and try again.
    pub try_create: bool,
}

impl From<String> for NotTaken {
    fn from(why: String) -> NotTaken {
        NotTaken { why, try_create: false }
    }
}

impl From<upstream::UpstreamError> for NotTaken {
    fn from(e: upstream::UpstreamError) -> NotTaken {
        let try_create = matches!(e, upstream::UpstreamError::NoMailbox(..));
        NotTaken { why: e.to_string(), try_create }
    }
}

/// Why an APPEND holding a part of a view the card opened is refused.
pub const APPEND_HOLDS_OPENED: &str = "this message holds an attachment the door decrypted from a protected mail; it is not uploaded to the mail store in the clear (keep the copy locally, or send the attachment again through the SMTP door)";

/// The most parts of one message whose digests are taken.
const MAX_DIGESTED_PARTS: usize = 1000;

/// A part's digest: SHA-256 of its decoded bytes, its first half (a match by chance is as
/// unlikely as ever, and a mailbox of 100,000 mails keeps a small state).
pub type PartDigest = [u8; 16];

/// The digest of each part of `message` that is not empty, decoded (base64, quoted-printable;
/// text as UTF-8, as mail-parser reads it), in forwarded messages too: the same attachment in
/// a view and in a client's own message has the same digest however each encodes it. Each
/// part counts twice: as mail-parser reads it (text in UTF-8), and as its bytes came with only
/// the transfer encoding taken off and line ends made LF (a Shift_JIS CSV re-attached as
/// octet-stream, or with CRLF, is the same part); a forwarded message counts whole too, and
/// the content of an opaque signature inside (signed, then encrypted) is read as a message.
/// None when mail-parser cannot take the message (it panics).
pub fn part_digests(message: &[u8]) -> Option<Vec<PartDigest>> {
    std::panic::catch_unwind(|| digests_of_parts(message)).ok()
}

fn digests_of_parts(message: &[u8]) -> Vec<PartDigest> {
    use mail_parser::{Encoding, PartType};
    fn push(out: &mut Vec<PartDigest>, bytes: &[u8]) {
        if out.len() >= MAX_DIGESTED_PARTS || bytes.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let full = <sha2::Sha256 as sha2::Digest>::digest(bytes);
        let mut d = [0u8; 16];
        d.copy_from_slice(&full[..16]);
        if !out.contains(&d) {
            out.push(d);
        }
    }
    fn lf_only(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len());
        for (i, &b) in bytes.iter().enumerate() {
            if !(b == b'\r' && bytes.get(i + 1) == Some(&b'\n')) {
                out.push(b);
            }
        }
        out
    }
    fn walk(msg: &mail_parser::Message<'_>, out: &mut Vec<PartDigest>, depth: usize) {
        if depth > 8 {
            return;
        }
        for part in &msg.parts {
            if out.len() >= MAX_DIGESTED_PARTS {
                return;
            }
            let raw = msg.raw_message.get(part.offset_body as usize..part.offset_end as usize).unwrap_or_default();
            let decoded = match part.encoding {
                Encoding::Base64 => crate::mail::decode_base64(raw).ok(),
                Encoding::QuotedPrintable => mail_parser::decoders::quoted_printable::quoted_printable_decode(raw),
                Encoding::None => Some(raw.to_vec()),
            };
            match &part.body {
                PartType::Text(t) | PartType::Html(t) => push(out, t.as_bytes()),
                PartType::Binary(b) | PartType::InlineBinary(b) => {
                    push(out, b);
                    if let Some(inner) = opaque_content(b) {
                        if let Some(m) = mail_parser::MessageParser::default().parse(&inner) {
                            walk(&m, out, depth + 1);
                        }
                    }
                }
                PartType::Message(m) => {
                    push(out, &m.raw_message);
                    walk(m, out, depth + 1);
                    continue;
                }
                PartType::Multipart(_) => continue,
            }
            if let Some(d) = decoded {
                push(out, &lf_only(&d));
            }
        }
    }
    let mut out = Vec::new();
    if let Some(msg) = mail_parser::MessageParser::default().parse(message) {
        walk(&msg, &mut out, 0);
    }
    out
}

/// The content of an opaque S/MIME signature (`application/pkcs7-mime; smime-type=signed-data`,
/// DER or BER): the message a client shows once it takes the signature off.
fn opaque_content(der: &[u8]) -> Option<Vec<u8>> {
    let sd = crate::cms::signed::parse(der).ok()?;
    crate::cms::signed::econtent(&sd)
}

/// `message` without the X-TUID fields of its header (mbsync's mark on what it uploads).
fn without_tuid(message: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let name = b"x-tuid:";
    let mut out = Vec::new();
    let mut at = 0;
    let mut dropped = false;
    while at < message.len() {
        let end = memchr::memchr(b'\n', &message[at..]).map_or(message.len(), |i| at + i + 1);
        let line = &message[at..end];
        if line == b"\r\n" || line == b"\n" {
            break;
        }
        let field = line.len() >= name.len() && line[..name.len()].eq_ignore_ascii_case(name);
        if field {
            dropped = true;
        } else {
            out.extend_from_slice(line);
        }
        at = end;
    }
    if !dropped {
        return std::borrow::Cow::Borrowed(message);
    }
    out.extend_from_slice(&message[at..]);
    std::borrow::Cow::Owned(out)
}

/// Why an APPEND of a changed view is refused.
pub const APPEND_REFUSED: &str = "this message holds a view the door made (decrypted content) that it no longer has as it was; it is not uploaded: move or copy the original mail instead";

/// Whether `message` carries, in any header block (its own, or of a message inside it), an
/// Authentication-Results field of the door's: what the door showed, decrypted, not what the
/// mail store holds.
fn carries_verdict(message: &[u8], authserv_id: &str) -> bool {
    let name = b"authentication-results:";
    // Each line's start (a field, not words inside a line), read in place: a message may be
    // 64 MiB.
    let starts = std::iter::once(0).chain(memchr::memchr_iter(b'\n', message).map(|i| i + 1));
    for start in starts {
        let Some(head) = message.get(start..start + name.len()) else { continue };
        if !head.eq_ignore_ascii_case(name) {
            continue;
        }
        let at = start + name.len();
        let rest = &message[at..message.len().min(at + 1024)];
        let id: Vec<u8> = rest
            .iter()
            .skip_while(|b| b.is_ascii_whitespace() || **b == b'"')
            .take_while(|b| !b.is_ascii_whitespace() && **b != b';' && **b != b'"')
            .copied()
            .collect();
        if id.eq_ignore_ascii_case(authserv_id.as_bytes()) {
            return true;
        }
    }
    false
}

/// Bring the mirror up to the upstream. One refresh at a time, on one kept connection (made
/// again when it broke: the upstream may have restarted); a client that asks meanwhile is
/// served what is there. The mirror is locked only to read what it knows and to take in the
/// result; views are made and stored unlocked.
/// `interactive`: the door's own refresh thread, the only one that asks a PIN (mirror::update).
fn refresh(shared: &Shared, folder: &Folder, interactive: bool) -> Result<(), upstream::UpstreamError> {
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
        let known = folder.lock().known();
        match mirror::update(up, &folder.name, &folder.cache, &s.agent, &s.cfg.authserv_id, known, interactive) {
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
        eprintln!("ssmax-card imap: {}: not shown yet: {p}", folder.name);
    }
    if !update.made.is_empty() {
        let (n, secs) = (update.made.len(), started.elapsed().as_secs_f64());
        eprintln!("ssmax-card imap: {}: {n} new views in {secs:.1} s", folder.name);
    }
    let save = folder.lock().apply(update, &folder.cache);
    *folder.refreshed.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    if let Some(state) = save {
        if let Err(e) = folder.cache.save_state(&state) {
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
    if let Some(t) = &shared.tls {
        eprintln!(
            "ssmax-card imap: STARTTLS with the certificate {} (SHA-256 {})",
            t.certificate.display(),
            t.fingerprint
        );
    }
    // Mail is made into views here, as it arrives, never in a client's thread.
    let polling = shared.clone();
    std::thread::Builder::new()
        .name("imap-refresh".into())
        .spawn(move || polling.refresh_loop())
        .map_err(|e| Failure::new(Exit::Io, e.to_string()))?;
    let reading = shared.clone();
    std::thread::Builder::new()
        .name("imap-ahead".into())
        .spawn(move || reading.read_ahead_loop())
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

#[cfg(test)]
mod tests {
    use super::carries_verdict;

    #[test]
    fn a_part_has_the_same_digest_however_it_is_encoded_and_x_tuid_is_not_the_message() {
        let b64 = b"Subject: a\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\nContent-Type: text/plain\r\n\r\nhi\r\n--x\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\nUTMgcmV2ZW51\r\nZTogMSwyMzQ=\r\n--x--\r\n";
        let qp = b"Subject: b\r\nContent-Type: multipart/mixed; boundary=y\r\n\r\n--y\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\nQ3 reve=\r\nnue: 1,234\r\n--y--\r\n";
        let secret = super::part_digests(b64).unwrap();
        assert_eq!(secret.len(), 2);
        assert!(super::part_digests(qp).unwrap().iter().all(|d| secret.contains(d)));
        // A Shift_JIS CSV as the view shows it (text, its charset named, CRLF) and as a client
        // re-attaches it (octet-stream, base64 of the bytes with LF): one part.
        let sjis: &[u8] = b"\x94\x84\x8f\xe3,1234\r\n\x97\x98\x89v,56\r\n";
        let view = [&b"Subject: v\r\nContent-Type: multipart/mixed; boundary=v\r\n\r\n--v\r\nContent-Type: text/csv; charset=shift_jis\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"[..], sjis, b"\r\n--v--\r\n"].concat();
        let lf: Vec<u8> = sjis.iter().copied().filter(|&b| b != b'\r').collect();
        let b64 = String::from_utf8(crate::mail::base64_lines(&lf)).unwrap();
        let copy = format!("Subject: c\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\n--c\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--c--\r\n");
        let opened = super::part_digests(&view).unwrap();
        assert!(super::part_digests(copy.as_bytes()).unwrap().iter().any(|d| opened.contains(d)));
        let tagged = b"Subject: a\r\nX-TUID: abc\r\n\r\nX-TUID: in the text\r\n";
        assert_eq!(&*super::without_tuid(tagged), b"Subject: a\r\n\r\nX-TUID: in the text\r\n");
        assert_eq!(&*super::without_tuid(b"Subject: a\r\n\r\nx"), b"Subject: a\r\n\r\nx");
    }

    #[test]
    fn a_message_carrying_the_doors_verdict_anywhere_in_its_headers_is_known_as_a_view() {
        let id = "ssmax-card.local";
        assert!(carries_verdict(b"Authentication-Results: ssmax-card.local; smime=pass\r\n\r\nx", id));
        assert!(carries_verdict(b"authentication-results:\r\n  SSMAX-Card.Local; smime=fail\r\n\r\n", id));
        // A view forwarded inside another message.
        let forwarded = b"Subject: Fwd\r\nContent-Type: message/rfc822\r\n\r\nAuthentication-Results: ssmax-card.local; smime=pass\r\nSubject: s\r\n\r\nx";
        assert!(carries_verdict(forwarded, id));
        // Another server's verdict, or the words inside a line, are not the door's.
        assert!(!carries_verdict(b"Authentication-Results: mx.example.jp; dkim=pass\r\n\r\nx", id));
        assert!(!carries_verdict(b"Subject: x\r\n\r\nsee Authentication-Results: ssmax-card.local; in the log", id));
        assert!(!carries_verdict(b"Authentication-Results: ssmax-card.local.example; smime=pass\r\n", id));
    }
}
