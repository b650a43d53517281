//! The door's memory on disk, in the user's cache directory: the door's UID map (its state) and
//! the view of each message, every file sealed with AES-256-GCM under a key from the OS
//! keyring, so no decrypted byte is written in the clear. Each file has its own key, derived
//! with HKDF-SHA256 from the cache key, a random salt and what the file is (the state, or the
//! view of one UID under one UIDVALIDITY): a file moved onto another's name does not open.
//! A file that does not open is as good as absent: the state is started anew (under a new
//! UIDVALIDITY), a view is built again.

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM};
use ring::hkdf::{Salt, HKDF_SHA256};
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

/// What a sealed file begins with: the format, then the salt.
const MAGIC: &[u8; 8] = b"SSMXIMC1";
const SALT_LEN: usize = 32;
/// The largest state file read (about 250 bytes per message and up to 840 of opened parts'
/// digests, 100,000 messages, and room).
const MAX_STATE: u64 = 256 << 20;
/// The largest view file read: a 64 MiB message with its framing.
const MAX_VIEW: u64 = (64 << 20) + 4096;

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("the IMAP door's cache {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("the IMAP door's cache {0} is not a private directory of this user")]
    NotPrivate(PathBuf),
}

pub struct Cache {
    dir: PathBuf,
    key: Zeroizing<[u8; 32]>,
    mark: Box<dyn Mark>,
    /// Which mailbox's cache this is, in every file's key: a file moved from one mailbox's
    /// directory to another's does not open. Empty for INBOX (as it was when INBOX was all).
    scope: String,
}

/// How far the door's UIDs have gone — (UIDVALIDITY, next UID) — kept where whoever can write
/// the cache directory cannot (the OS keyring): an older sealed state put back opens, but is
/// seen to be behind, and is not taken (its UIDs would name other mail than the client holds).
pub trait Mark: Send + Sync {
    fn get(&self) -> Option<(u32, u32)>;
    fn set(&self, uidvalidity: u32, next_uid: u32);
}

/// A state to save, and how far its UIDs have gone.
pub struct Saved {
    pub bytes: Vec<u8>,
    pub uidvalidity: u32,
    pub next_uid: u32,
}

/// Where the marks of an account's mailboxes are kept, as one text: the OS keyring's entry.
pub trait MarkStore: Send + Sync {
    fn load(&self) -> Option<String>;
    fn store(&self, text: &str);
}

/// The marks of every mailbox of one account, a line each in one store: `v n` for INBOX (as
/// it was when INBOX was all), `scope v n` for another mailbox.
pub struct Marks {
    store: Box<dyn MarkStore>,
    /// One change at a time: each is read, changed and written whole.
    lock: std::sync::Mutex<()>,
}

/// Most marks kept: a mailbox past these is not cached (super::MAX_FOLDERS is below).
const MAX_MARKS: usize = 1024;

impl Marks {
    pub fn new(store: Box<dyn MarkStore>) -> std::sync::Arc<Marks> {
        std::sync::Arc::new(Marks { store, lock: std::sync::Mutex::new(()) })
    }

    fn read(&self) -> Vec<(String, u32, u32)> {
        let text = self.store.load().unwrap_or_default();
        text.lines()
            .take(MAX_MARKS + 1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split(' ').collect();
                let (scope, v, n) = match f.as_slice() {
                    [v, n] => ("", v, n),
                    [s, v, n] => (*s, v, n),
                    _ => return None,
                };
                Some((scope.to_string(), v.parse().ok()?, n.parse().ok()?))
            })
            .collect()
    }

    fn get(&self, scope: &str) -> Option<(u32, u32)> {
        self.read().into_iter().find(|m| m.0 == scope).map(|m| (m.1, m.2))
    }

    /// Set the mark of `scope`.
    fn change(&self, scope: &str, to: (u32, u32)) {
        let _one = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.read();
        all.retain(|m| m.0 != scope);
        all.push((scope.to_string(), to.0, to.1));
        // The oldest other mailbox's mark makes room; INBOX's stays.
        while all.len() > MAX_MARKS {
            let Some(at) = all.iter().position(|m| !m.0.is_empty()) else { break };
            all.remove(at);
        }
        let text: Vec<String> = all
            .iter()
            .map(|(s, v, n)| if s.is_empty() { format!("{v} {n}") } else { format!("{s} {v} {n}") })
            .collect();
        self.store.store(&text.join("\n"));
    }
}

/// One mailbox's mark among an account's.
pub struct ScopedMark {
    pub marks: std::sync::Arc<Marks>,
    pub scope: String,
}

impl Mark for ScopedMark {
    fn get(&self) -> Option<(u32, u32)> {
        self.marks.get(&self.scope)
    }
    fn set(&self, uidvalidity: u32, next_uid: u32) {
        self.marks.change(&self.scope, (uidvalidity, next_uid))
    }
}

/// Marks held in memory (tests, the fuzz target).
#[derive(Default, Clone)]
pub struct MemoryStore(pub std::sync::Arc<std::sync::Mutex<Option<String>>>);

impl MarkStore for MemoryStore {
    fn load(&self) -> Option<String> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
    fn store(&self, text: &str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(text.to_string());
    }
}

/// A mark held in memory (tests; a door without a keyring would lose it at exit).
#[derive(Default, Clone)]
pub struct MemoryMark(std::sync::Arc<std::sync::Mutex<Option<(u32, u32)>>>);

impl Mark for MemoryMark {
    fn get(&self) -> Option<(u32, u32)> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn set(&self, uidvalidity: u32, next_uid: u32) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some((uidvalidity, next_uid));
    }
}

impl Cache {
    /// The cache in `dir` (made 0700 unless it exists; refused unless it is this user's own),
    /// sealed under `key`.
    pub fn open(dir: &Path, key: Zeroizing<[u8; 32]>, mark: Box<dyn Mark>) -> Result<Cache, CacheError> {
        Cache::open_scoped(dir, key, mark, "")
    }

    /// The cache of one mailbox, `scope` naming it (empty: INBOX).
    pub fn open_scoped(
        dir: &Path,
        key: Zeroizing<[u8; 32]>,
        mark: Box<dyn Mark>,
        scope: &str,
    ) -> Result<Cache, CacheError> {
        if let Some(parent) = dir.parent().filter(|_| !scope.is_empty()) {
            crate::platform::private_dir(parent).map_err(|_| CacheError::NotPrivate(parent.to_path_buf()))?;
        }
        crate::platform::private_dir(dir).map_err(|_| CacheError::NotPrivate(dir.to_path_buf()))?;
        let views = dir.join("views");
        crate::platform::private_dir(&views).map_err(|_| CacheError::NotPrivate(views))?;
        Ok(Cache { dir: dir.to_path_buf(), key, mark, scope: scope.to_string() })
    }

    /// Every file of this mailbox's cache, and its mark: the mailbox was deleted.
    pub fn destroy(&self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }

    /// How far the UIDs have gone, as last marked.
    pub fn mark(&self) -> Option<(u32, u32)> {
        self.mark.get()
    }

    pub fn set_mark(&self, uidvalidity: u32, next_uid: u32) {
        self.mark.set(uidvalidity, next_uid)
    }

    fn state_context(&self) -> Vec<u8> {
        if self.scope.is_empty() {
            b"state".to_vec()
        } else {
            format!("state {}", self.scope).into_bytes()
        }
    }

    fn view_context(&self, uidvalidity: u32, uid: u32) -> Vec<u8> {
        if self.scope.is_empty() {
            format!("view {uidvalidity} {uid}").into_bytes()
        } else {
            format!("view {} {uidvalidity} {uid}", self.scope).into_bytes()
        }
    }

    fn state_path(&self) -> PathBuf {
        self.dir.join("state")
    }

    fn view_path(&self, uidvalidity: u32, uid: u32) -> PathBuf {
        self.dir.join("views").join(format!("{uidvalidity}-{uid}"))
    }

    /// The state as last saved, or None when there is none or it does not open.
    pub fn load_state(&self) -> Option<Vec<u8>> {
        let sealed = read_file(&self.state_path(), MAX_STATE)?;
        open(&self.key, &self.state_context(), &sealed)
    }

    /// Save the state (serialised), then mark how far its UIDs have gone: a state saved but
    /// not marked (a crash between) is ahead of the mark, and taken.
    pub fn save_state(&self, state: &Saved) -> Result<(), CacheError> {
        self.write(&self.state_path(), &seal(&self.key, &self.state_context(), &state.bytes), true)?;
        self.set_mark(state.uidvalidity, state.next_uid);
        Ok(())
    }

    /// The view of `uid`, or None when it was never stored, was evicted or does not open.
    pub fn view(&self, uidvalidity: u32, uid: u32) -> Option<Vec<u8>> {
        let sealed = read_file(&self.view_path(uidvalidity, uid), MAX_VIEW)?;
        open(&self.key, &self.view_context(uidvalidity, uid), &sealed)
    }

    /// Not synced to the disk: a view lost or torn in a crash does not open, and is built
    /// again with the same bytes (its digest is in the state).
    pub fn put_view(&self, uidvalidity: u32, uid: u32, view: &[u8]) -> Result<(), CacheError> {
        self.write(
            &self.view_path(uidvalidity, uid),
            &seal(&self.key, &self.view_context(uidvalidity, uid), view),
            false,
        )
    }

    pub fn remove_view(&self, uidvalidity: u32, uid: u32) {
        // Already gone is what was wanted.
        let _ = std::fs::remove_file(self.view_path(uidvalidity, uid));
    }

    /// Every view file not of `uidvalidity`, or of a UID `keep` rejects: left behind by a
    /// UIDVALIDITY that changed or a state that was lost.
    pub fn sweep(&self, uidvalidity: u32, keep: impl Fn(u32) -> bool) {
        let Ok(entries) = std::fs::read_dir(self.dir.join("views")) else { return };
        for e in entries.flatten() {
            let name = e.file_name();
            let ours = name
                .to_str()
                .and_then(|n| n.split_once('-'))
                .and_then(|(v, u)| Some((v.parse::<u32>().ok()?, u.parse::<u32>().ok()?)))
                .is_some_and(|(v, u)| v == uidvalidity && keep(u));
            if !ours {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Written whole or not at all: a temporary file in the same directory, then renamed;
    /// `sync`: on the disk before the rename.
    fn write(&self, path: &Path, bytes: &[u8], sync: bool) -> Result<(), CacheError> {
        let io = |e: std::io::Error| CacheError::Io(path.to_path_buf(), e);
        let dir = path.parent().unwrap_or(&self.dir);
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
        tmp.write_all(bytes).map_err(io)?;
        if sync {
            tmp.as_file().sync_data().map_err(io)?;
        }
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

fn read_file(path: &Path, limit: u64) -> Option<Vec<u8>> {
    crate::files::read_regular(path, limit).ok()
}

/// The key of one file: HKDF-SHA256 of the cache key with the file's salt, for what it is.
fn file_key(key: &[u8; 32], salt: &[u8], what: &[u8]) -> Option<LessSafeKey> {
    let prk = Salt::new(HKDF_SHA256, salt).extract(key);
    let info = [b"ssmax-card imap cache\0".as_slice(), what];
    let okm = prk.expand(&info, &AES_256_GCM).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

/// MAGIC, a fresh salt, and `plain` sealed under the file's own key. A key is used for one
/// file once, so the nonce can be zero.
pub fn seal(key: &[u8; 32], what: &[u8], plain: &[u8]) -> Vec<u8> {
    let mut salt = [0u8; SALT_LEN];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    let mut out = Vec::with_capacity(MAGIC.len() + SALT_LEN + plain.len() + AES_256_GCM.tag_len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&salt);
    let body = out.len();
    out.extend_from_slice(plain);
    let sealing = file_key(key, &salt, what).expect("HKDF gives 32 bytes");
    let tag = sealing
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::from(MAGIC), &mut out[body..])
        .expect("a message under GCM's length limit");
    out.extend_from_slice(tag.as_ref());
    out
}

/// What `seal` sealed for `what`, or None for anything else.
pub fn open(key: &[u8; 32], what: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let rest = sealed.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < SALT_LEN + AES_256_GCM.tag_len() {
        return None;
    }
    let (salt, body) = rest.split_at(SALT_LEN);
    let mut body = body.to_vec();
    let opening = file_key(key, salt, what)?;
    let plain_len =
        opening.open_in_place(Nonce::assume_unique_for_key([0; 12]), Aad::from(MAGIC), &mut body).ok()?.len();
    body.truncate(plain_len);
    Some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> Zeroizing<[u8; 32]> {
        Zeroizing::new([b; 32])
    }

    #[test]
    fn a_view_opens_under_its_own_uid_only_and_not_under_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c"), key(1), Box::<MemoryMark>::default()).unwrap();
        cache.put_view(7, 1, b"Subject: secret contract\r\n\r\nbody").unwrap();
        cache.put_view(7, 2, b"other").unwrap();
        assert_eq!(cache.view(7, 1).unwrap(), b"Subject: secret contract\r\n\r\nbody");
        // Nothing of the view is on the disk in the clear.
        let raw = std::fs::read(dir.path().join("c/views/7-1")).unwrap();
        assert!(memchr::memmem::find(&raw, b"secret").is_none());
        // Moved onto another's name, or under another UIDVALIDITY: does not open.
        std::fs::copy(dir.path().join("c/views/7-1"), dir.path().join("c/views/7-2")).unwrap();
        assert_eq!(cache.view(7, 2), None);
        std::fs::copy(dir.path().join("c/views/7-1"), dir.path().join("c/views/8-1")).unwrap();
        assert_eq!(cache.view(8, 1), None);
        let other = Cache::open(&dir.path().join("c"), key(2), Box::<MemoryMark>::default()).unwrap();
        assert_eq!(other.view(7, 1), None);
    }

    #[test]
    fn a_file_of_one_mailbox_does_not_open_as_another_mailboxs() {
        let dir = tempfile::tempdir().unwrap();
        let inbox = Cache::open(&dir.path().join("c"), key(1), Box::<MemoryMark>::default()).unwrap();
        let archive =
            Cache::open_scoped(&dir.path().join("c/boxes/aa"), key(1), Box::<MemoryMark>::default(), "aa").unwrap();
        archive.put_view(7, 1, b"archived").unwrap();
        archive.save_state(&Saved { bytes: b"{}".to_vec(), uidvalidity: 7, next_uid: 2 }).unwrap();
        assert_eq!(archive.view(7, 1).unwrap(), b"archived");
        std::fs::copy(dir.path().join("c/boxes/aa/views/7-1"), dir.path().join("c/views/7-1")).unwrap();
        std::fs::copy(dir.path().join("c/boxes/aa/state"), dir.path().join("c/state")).unwrap();
        assert_eq!(inbox.view(7, 1), None);
        assert_eq!(inbox.load_state(), None);
        // INBOX's view sweep leaves the other mailboxes' directories alone.
        inbox.sweep(7, |_| false);
        assert_eq!(archive.view(7, 1).unwrap(), b"archived");
    }

    #[test]
    fn each_mailbox_has_its_mark_and_inbox_reads_the_mark_written_before_there_were_others() {
        let store = MemoryStore::default();
        store.store("17 5");
        let marks = Marks::new(Box::new(store.clone()));
        let inbox = ScopedMark { marks: marks.clone(), scope: String::new() };
        let archive = ScopedMark { marks: marks.clone(), scope: "aa".into() };
        assert_eq!(inbox.get(), Some((17, 5)));
        assert_eq!(archive.get(), None);
        archive.set(20, 3);
        inbox.set(17, 6);
        assert_eq!((inbox.get(), archive.get()), (Some((17, 6)), Some((20, 3))));
        // Past MAX_MARKS, the oldest other mailbox's mark makes room; INBOX's stays.
        for i in 0..MAX_MARKS {
            ScopedMark { marks: marks.clone(), scope: format!("s{i}") }.set(1, 1);
        }
        assert_eq!((inbox.get(), archive.get()), (Some((17, 6)), None));
        let newest = ScopedMark { marks: marks.clone(), scope: format!("s{}", MAX_MARKS - 1) };
        assert_eq!(newest.get(), Some((1, 1)));
        assert_eq!(store.load().unwrap_or_default().lines().count(), MAX_MARKS);
    }

    #[test]
    fn a_sealed_file_changed_in_any_byte_does_not_open() {
        let sealed = seal(&[3; 32], b"state", b"{\"uidvalidity\":5}");
        assert_eq!(open(&[3; 32], b"state", &sealed).unwrap(), b"{\"uidvalidity\":5}");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x20;
            assert_eq!(open(&[3; 32], b"state", &bad), None, "byte {i}");
        }
        assert_eq!(open(&[3; 32], b"state", &sealed[..sealed.len() - 1]), None);
        assert_eq!(open(&[3; 32], b"view 1 1", &sealed), None);
        // Two seals of the same bytes differ (a fresh salt each).
        assert_ne!(seal(&[3; 32], b"state", b"x"), seal(&[3; 32], b"state", b"x"));
    }

    #[test]
    fn sweep_removes_views_of_another_uidvalidity_and_those_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(&dir.path().join("c"), key(1), Box::<MemoryMark>::default()).unwrap();
        for (v, u) in [(1, 1), (1, 2), (2, 1), (2, 5)] {
            cache.put_view(v, u, b"x").unwrap();
        }
        std::fs::write(dir.path().join("c/views/stray"), b"x").unwrap();
        cache.sweep(2, |u| u == 5);
        let mut left: Vec<String> = std::fs::read_dir(dir.path().join("c/views"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["2-5"]);
    }
}
