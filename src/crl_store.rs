//! Revocation evidence from the network: CRLs from the certificates' distribution points (RFC
//! 5280 §4.2.1.13), and OCSP answers (RFC 6960) from their responders for a certificate no current
//! CRL covers. Fetched over HTTP with a bound on size and on the time of all fetches together,
//! kept on disk until their nextUpdate and used from there while current, so a verification
//! makes no request when current evidence is cached. What cannot be had is said, and the
//! revocation policy judges what that means.

use crate::cms::ocsp;
use crate::cms::revocation::{self, Evidence, Shared};
use crate::cms::verify::ValidPath;
use der::Decode;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use x509_cert::ext::pkix::name::{DistributionPointName, GeneralName};
use x509_cert::ext::pkix::CrlDistributionPoints;
use x509_cert::Certificate;

/// Largest CRL fetched or read from the cache.
pub const MAX_CRL: u64 = crate::files::MAX_CERT_FILE;
/// At most this many distribution points are fetched for one verification.
const MAX_POINTS: usize = 8;

/// Where and whether lists are fetched.
#[derive(Debug, Clone)]
pub struct Store {
    pub dir: Option<PathBuf>,
    /// Fetch over the network (else the cache only: offline).
    pub fetch: bool,
    /// Bound on all the fetches of one verification together: connecting, sending, reading.
    pub timeout: Duration,
    /// A cached list or answer counts as current only while its nextUpdate is further away than
    /// this (zero for a verification; the agent's refreshing asks ahead).
    pub fresh_for: Duration,
}

/// At most this many cached entries are looked at by one refresh.
const MAX_REFRESH: usize = 256;

impl Store {
    pub fn from_config(config: &crate::config::Config) -> Store {
        let dir = config.crl_cache_dir.clone().or_else(|| {
            directories::ProjectDirs::from("jp", "SSMAX", "ssmax-card").map(|d| d.cache_dir().join("crls"))
        });
        let timeout = Duration::from_millis(config.crl_fetch_timeout_ms.unwrap_or(10_000));
        Store { dir, fetch: config.crl_fetch.unwrap_or(true), timeout, fresh_for: Duration::ZERO }
    }

    /// Fetch again what the cache holds that runs out within `ahead`: the agent does this in the
    /// background, so a mail is not held up by a fetch when the cached entry runs out. What cannot
    /// be fetched is noted; the cached entry stays while it holds. Every entry remembers the
    /// issuer it was checked against; entries of the older layout that did not are removed
    /// (their URLs came from whatever a sender embedded, and are never asked again).
    pub fn refresh(&self, ahead: Duration) -> Vec<String> {
        let Some(dir) = &self.dir else { return Vec::new() };
        let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
        let store = Store { fresh_for: ahead, ..self.clone() };
        let until = std::time::Instant::now() + self.timeout;
        let mut notes = Vec::new();
        for path in entries.flatten().take(MAX_REFRESH).map(|e| e.path()) {
            if is_old_layout(&path) {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let left = until.saturating_duration_since(std::time::Instant::now());
            match path.extension().and_then(|x| x.to_str()) {
                Some("url") => {
                    let Ok(url) = crate::files::read_regular(&path, 4096) else { continue };
                    let url = String::from_utf8_lossy(&url).trim().to_string();
                    let Some([issuer_der]) = read_pems(&path.with_extension("issuer")) else { continue };
                    let Ok(issuer) = Certificate::from_der(&issuer_der) else { continue };
                    if let Err(why) = store.list(&url, &issuer_der, &issuer, left) {
                        notes.push(crate::tr!("crl-none-from", url = url, why = why));
                    }
                }
                Some("pair") => {
                    let Some([c, issuer]) = read_pems(&path) else { continue };
                    let (Ok(c), Ok(issuer)) = (Certificate::from_der(&c), Certificate::from_der(&issuer)) else {
                        continue;
                    };
                    if let Err(why) = store.answer(&c, &issuer, &ocsp::responders(&c), until) {
                        notes.push(crate::tr!("ocsp-none-for", subject = crate::cms::cert::subject(&c), why = why));
                    }
                }
                _ => {}
            }
        }
        notes
    }

    /// The evidence about each link of a validated `path`: the current lists its distribution
    /// points name, each signed by the link's issuer; then, for a link with an OCSP responder
    /// that no current list (`given` or fetched) covers, the responder's answer, checked against
    /// that issuer. And a note for each list or answer that could not be had. Nothing is asked
    /// about a certificate that is not on the path: a sender can put any certificate, with any
    /// URL, in a signature.
    pub fn evidence_for(&self, path: &ValidPath, given: &[Shared]) -> (Evidence, Vec<String>) {
        let links = path.links();
        let mut found = Evidence::default();
        let mut notes = Vec::new();
        // One timeout bounds all fetches of a verification together, however many points.
        let until = std::time::Instant::now() + self.timeout;
        let mut points = 0;
        for link in &links {
            for url in distribution_points(link.cert) {
                if points == MAX_POINTS {
                    break;
                }
                points += 1;
                let left = until.saturating_duration_since(std::time::Instant::now());
                match self.list(&url, link.issuer_der, link.issuer, left) {
                    Ok(c) if !found.crls.iter().any(|f| f.der == c.der) => found.crls.push(c),
                    Ok(_) => {}
                    Err(why) => notes.push(crate::tr!("crl-none-from", url = url, why = why)),
                }
            }
        }
        let now = SystemTime::now();
        let lists = [given, &found.crls].concat();
        let mut asked = 0;
        for link in &links {
            let urls = ocsp::responders(link.cert);
            let covered = revocation::list_for(link, &lists, now) == Some(true);
            if urls.is_empty() || covered || asked >= MAX_POINTS {
                continue;
            }
            asked += 1;
            match self.answer(link.cert, link.issuer, &urls, until) {
                Ok(a) => found.ocsp.push(a),
                Err(why) => {
                    notes.push(crate::tr!("ocsp-none-for", subject = crate::cms::cert::subject(link.cert), why = why))
                }
            }
        }
        (found, notes)
    }

    /// The answer about `c` from `issuer`: the cached one while current; else asked of its
    /// responders (and cached when it says until when it holds).
    fn answer(
        &self,
        c: &Certificate,
        issuer: &Certificate,
        urls: &[String],
        until: std::time::Instant,
    ) -> Result<ocsp::Shared, String> {
        let now = SystemTime::now();
        let path = self.answer_path(c, issuer);
        let cached = path
            .as_ref()
            .and_then(|p| crate::files::read_regular(p, ocsp::MAX_RESPONSE).ok())
            .and_then(|data| ocsp::check(&data, c, issuer, None, now).ok())
            .map(std::sync::Arc::new);
        if let Some(a) = &cached {
            if a.next_update.is_some_and(|n| n > now + self.fresh_for) {
                return Ok(a.clone());
            }
        }
        match self.ask(c, issuer, urls, until, path.as_deref()) {
            Ok(a) => Ok(a),
            // Still current, only due for a refresh.
            Err(why) => cached.ok_or(why),
        }
    }

    /// Ask `c`'s responders; a checked answer is cached at `path` when it says until when it
    /// holds, with what is needed to ask again.
    fn ask(
        &self,
        c: &Certificate,
        issuer: &Certificate,
        urls: &[String],
        until: std::time::Instant,
        path: Option<&Path>,
    ) -> Result<ocsp::Shared, String> {
        if !self.fetch {
            return Err(crate::tr!("fetch-off"));
        }
        let mut why = crate::tr!("ocsp-no-responder");
        for url in urls {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left < Duration::from_millis(100) {
                return Err(crate::tr!("ocsp-time-spent"));
            }
            let mut nonce = [0u8; 16];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut nonce);
            let request = ocsp::request(c, issuer, &nonce).map_err(|e| e.to_string())?;
            let body = match post(url, &request, left) {
                Ok(b) => b,
                Err(e) => {
                    why = format!("{url}: {e}");
                    continue;
                }
            };
            match ocsp::check(&body, c, issuer, Some(&nonce), SystemTime::now()) {
                Ok(a) => {
                    if let (Some(p), Some(_)) = (path, a.next_update) {
                        // A cache that cannot be written only costs the next request.
                        let _ = write_atomically(p, &a.der);
                        let _ = write_atomically(&p.with_extension("pair"), &pems(&[c, issuer]));
                    }
                    return Ok(std::sync::Arc::new(a));
                }
                Err(e) => why = format!("{url}: {e}"),
            }
        }
        Err(why)
    }

    /// Where the answer about `c` from `issuer` is cached: named by the issuer's key and the
    /// serial, so two issuers of one name never share an entry.
    fn answer_path(&self, c: &Certificate, issuer: &Certificate) -> Option<PathBuf> {
        let mut h = Sha256::new();
        h.update(ocsp::key_hash(issuer));
        h.update(c.tbs_certificate.serial_number.as_bytes());
        self.dir.as_ref().map(|d| d.join(format!("answer-{}.der", hex(&h.finalize()))))
    }

    /// One list from `url`, which must be signed by `issuer` (the issuer of the certificate
    /// that names it, on a validated path): the cached one while current; else fetched (and
    /// cached); else the cached one however old (the policy judges an out-of-date list).
    fn list(&self, url: &str, issuer_der: &[u8], issuer: &Certificate, time_left: Duration) -> Result<Shared, String> {
        let path = self.cache_path(url, issuer);
        let cached = path.as_ref().and_then(|p| {
            let data = crate::files::read_regular(p, MAX_CRL).ok()?;
            revocation::load_bytes(&data, url).ok()?.into_iter().next()
        });
        let cached = cached.filter(|c| revocation::signed_by_issuer(c, issuer_der));
        if let Some(c) = &cached {
            if c.current_at(SystemTime::now() + self.fresh_for) {
                return Ok(c.clone());
            }
        }
        if !self.fetch {
            return cached.ok_or_else(|| crate::tr!("fetch-off"));
        }
        if time_left < Duration::from_millis(100) {
            return cached.ok_or_else(|| crate::tr!("crl-time-spent"));
        }
        let fetched = self.fetch(url, time_left).and_then(|c| {
            if revocation::signed_by_issuer(&c, issuer_der) {
                Ok(c)
            } else {
                Err(crate::tr!("crl-not-from-issuer", issuer = crate::cms::cert::subject(issuer)))
            }
        });
        match fetched {
            Ok(c) => {
                if let Some(p) = path {
                    // A cache that cannot be written only costs the next fetch.
                    let _ = write_atomically(&p, &c.der);
                    let _ = write_atomically(&p.with_extension("url"), url.as_bytes());
                    let _ = write_atomically(&p.with_extension("issuer"), &pems(&[issuer]));
                }
                Ok(c)
            }
            Err(why) => cached.ok_or(why),
        }
    }

    fn fetch(&self, url: &str, timeout: Duration) -> Result<Shared, String> {
        let agent = ureq::AgentBuilder::new().timeout(timeout).redirects(0).build();
        let response = agent.get(url).call().map_err(|e| match e {
            ureq::Error::Status(code, _) => crate::tr!("crl-http-status", code = code),
            ureq::Error::Transport(t) => crate::tr!("crl-transport", kind = t.kind().to_string()),
        })?;
        let body = read_bounded(response, MAX_CRL)?;
        revocation::load_bytes(&body, url)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or_else(|| crate::tr!("crl-empty-answer"))
    }

    /// Where the list from `url` signed by `issuer` is cached.
    fn cache_path(&self, url: &str, issuer: &Certificate) -> Option<PathBuf> {
        let mut h = Sha256::new();
        h.update(ocsp::key_hash(issuer));
        h.update(url.as_bytes());
        self.dir.as_ref().map(|d| d.join(format!("list-{}.crl", hex(&h.finalize()))))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A cache entry of the layout before entries named their issuer: `<sha256>.crl` / `.url`,
/// `ocsp-<sha256>.der` / `.for`.
fn is_old_layout(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else { return false };
    let hex64 = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
    match name.rsplit_once('.') {
        Some((stem, "crl" | "url")) => hex64(stem),
        Some((stem, "der" | "for")) => stem.strip_prefix("ocsp-").is_some_and(hex64),
        _ => false,
    }
}

/// The certificates of a PEM file the cache wrote, as DER (None if it cannot be read).
fn read_pems<const N: usize>(path: &Path) -> Option<[Vec<u8>; N]> {
    let pem = crate::files::read_regular(path, ocsp::MAX_RESPONSE).ok()?;
    crate::cms::cert::load_bytes(&pem, "a cache entry").ok()?.try_into().ok()
}

/// The evidence about a validated `path` under `config`'s store beside the lists `given`, unless
/// the policy is off; and a note for each piece that could not be had.
pub fn evidence_for(
    path: &ValidPath,
    given: &[Shared],
    policy: revocation::Policy,
    config: &crate::config::Config,
) -> (Evidence, Vec<String>) {
    if policy == revocation::Policy::Off {
        return (Evidence::default(), Vec::new());
    }
    Store::from_config(config).evidence_for(path, given)
}

/// POST an OCSP request; the answer's body, bounded.
fn post(url: &str, request: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
    let agent = ureq::AgentBuilder::new().timeout(timeout).redirects(0).build();
    let response =
        agent.post(url).set("Content-Type", "application/ocsp-request").send_bytes(request).map_err(|e| match e {
            ureq::Error::Status(code, _) => crate::tr!("ocsp-http-status", code = code),
            ureq::Error::Transport(t) => crate::tr!("ocsp-transport", kind = t.kind().to_string()),
        })?;
    read_bounded(response, ocsp::MAX_RESPONSE)
}

/// A response's body, refused past `max` bytes (read no further than one byte beyond).
fn read_bounded(response: ureq::Response, max: u64) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    response
        .into_reader()
        .take(max + 1)
        .read_to_end(&mut body)
        .map_err(|e| crate::tr!("fetch-read-failed", error = e.to_string()))?;
    if body.len() as u64 > max {
        let size = if max >= 1 << 20 { format!("{} MiB", max >> 20) } else { format!("{} KiB", max >> 10) };
        return Err(crate::tr!("fetch-too-large", size = size));
    }
    Ok(body)
}

/// The http: URIs of a certificate's CRL distribution points (LDAP and others are not fetched).
pub fn distribution_points(c: &Certificate) -> Vec<String> {
    let Ok(Some((_, points))) = c.tbs_certificate.get::<CrlDistributionPoints>() else { return Vec::new() };
    points
        .0
        .iter()
        .filter_map(|p| match &p.distribution_point {
            Some(DistributionPointName::FullName(names)) => Some(names),
            _ => None,
        })
        .flatten()
        .filter_map(|n| match n {
            GeneralName::UniformResourceIdentifier(u) if u.as_str().starts_with("http://") => Some(u.to_string()),
            _ => None,
        })
        .collect()
}

/// Certificates as PEM: what a refresh needs to ask about an entry again.
fn pems(certs: &[&Certificate]) -> Vec<u8> {
    use der::EncodePem;
    certs.iter().filter_map(|x| x.to_pem(der::pem::LineEnding::LF).ok()).collect::<String>().into_bytes()
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or(std::io::ErrorKind::InvalidInput)?;
    std::fs::create_dir_all(dir)?;
    // A name of its own per write: the agent's refreshing and its requests may write at once.
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.persist(path).map(|_| ()).map_err(|e| e.error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_removes_the_older_cache_layout_and_asks_none_of_its_urls() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/orgca.crl", listener.local_addr().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let old = [format!("{}.url", "a".repeat(64)), format!("{}.crl", "b".repeat(64))];
        let old_ocsp = [format!("ocsp-{}.der", "c".repeat(64)), format!("ocsp-{}.for", "c".repeat(64))];
        for name in old.iter().chain(&old_ocsp) {
            std::fs::write(dir.path().join(name), &url).unwrap();
        }
        // Not ours to remove: names of another shape.
        std::fs::write(dir.path().join("notes.txt"), "keep").unwrap();
        let store = Store {
            dir: Some(dir.path().into()),
            fetch: true,
            timeout: Duration::from_secs(2),
            fresh_for: Duration::ZERO,
        };
        assert!(store.refresh(Duration::from_secs(3600)).is_empty());
        for name in old.iter().chain(&old_ocsp) {
            assert!(!dir.path().join(name).exists(), "{name} was removed");
        }
        assert!(dir.path().join("notes.txt").exists());
        assert!(listener.accept().is_err(), "no request was made to a URL of the old layout");
    }

    #[test]
    fn only_the_older_layout_is_taken_for_it() {
        let hex = "0123456789abcdef".repeat(4);
        assert!(is_old_layout(Path::new(&format!("/c/{hex}.url"))));
        assert!(is_old_layout(Path::new(&format!("/c/ocsp-{hex}.der"))));
        assert!(!is_old_layout(Path::new(&format!("/c/list-{hex}.crl"))));
        assert!(!is_old_layout(Path::new(&format!("/c/answer-{hex}.der"))));
        assert!(!is_old_layout(Path::new("/c/ocsp-short.der")));
        assert!(!is_old_layout(Path::new(&format!("/c/{}.url", &hex[1..]))));
    }
}
