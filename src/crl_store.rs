//! CRLs from the certificates' distribution points (RFC 5280 §4.2.1.13): fetched over HTTP with
//! a bound on size and time, kept on disk until their nextUpdate, and used from there while
//! current, so a verification makes no request when a current list is cached. A list that
//! cannot be had is said, and the revocation policy judges what that means.

use crate::cms::revocation::{self, Shared};
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
}

impl Store {
    pub fn from_config(config: &crate::config::Config) -> Store {
        let dir = config.crl_cache_dir.clone().or_else(|| {
            directories::ProjectDirs::from("jp", "SSMAX", "ssmax-card").map(|d| d.cache_dir().join("crls"))
        });
        let timeout = Duration::from_millis(config.crl_fetch_timeout_ms.unwrap_or(10_000));
        Store { dir, fetch: config.crl_fetch.unwrap_or(true), timeout }
    }

    /// The current lists for the distribution points `certs` (DER) name, and a note for each
    /// point whose list could not be had.
    pub fn lists_for(&self, certs: &[&[u8]]) -> (Vec<Shared>, Vec<String>) {
        let mut urls: Vec<String> = Vec::new();
        for der in certs {
            let Ok(c) = Certificate::from_der(der) else { continue };
            for u in distribution_points(&c) {
                if !urls.contains(&u) && urls.len() < MAX_POINTS {
                    urls.push(u);
                }
            }
        }
        let mut crls = Vec::new();
        let mut notes = Vec::new();
        // One timeout bounds all fetches of a verification together, however many points.
        let until = std::time::Instant::now() + self.timeout;
        for url in urls {
            let left = until.saturating_duration_since(std::time::Instant::now());
            match self.list(&url, left) {
                Ok(c) => crls.push(c),
                Err(why) => notes.push(format!("no CRL from {url}: {why}")),
            }
        }
        (crls, notes)
    }

    /// One list: the cached one while current; else fetched (and cached); else the cached one
    /// however old (the policy judges an out-of-date list).
    fn list(&self, url: &str, time_left: Duration) -> Result<Shared, String> {
        let cached = self.cache_path(url).and_then(|p| {
            let data = crate::files::read_regular(&p, MAX_CRL).ok()?;
            revocation::load_bytes(&data, url).ok()?.into_iter().next()
        });
        if let Some(c) = &cached {
            if next_update(&c.der).is_some_and(|n| n > SystemTime::now()) {
                return Ok(c.clone());
            }
        }
        if !self.fetch {
            return cached.ok_or_else(|| "not in the cache, and fetching is off (crl_fetch = false)".into());
        }
        if time_left < Duration::from_millis(100) {
            return cached.ok_or_else(|| "not fetched: the time for fetching (crl_fetch_timeout_ms) is spent".into());
        }
        match self.fetch(url, time_left) {
            Ok(c) => {
                if let Some(p) = self.cache_path(url) {
                    // A cache that cannot be written only costs the next fetch.
                    let _ = write_atomically(&p, &c.der);
                }
                Ok(c)
            }
            Err(why) => cached.ok_or(why),
        }
    }

    fn fetch(&self, url: &str, timeout: Duration) -> Result<Shared, String> {
        let agent = ureq::AgentBuilder::new().timeout(timeout).redirects(0).build();
        let response = agent.get(url).call().map_err(|e| match e {
            ureq::Error::Status(code, _) => format!("the server answered HTTP {code}"),
            ureq::Error::Transport(t) => format!("cannot fetch it ({})", t.kind()),
        })?;
        let mut body = Vec::new();
        response
            .into_reader()
            .take(MAX_CRL + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("reading it failed ({e})"))?;
        if body.len() as u64 > MAX_CRL {
            return Err(format!("it is larger than {} MiB; refused", MAX_CRL >> 20));
        }
        revocation::load_bytes(&body, url)
            .map_err(|e| e.to_string())?
            .into_iter()
            .next()
            .ok_or_else(|| "the answer holds no CRL".into())
    }

    fn cache_path(&self, url: &str) -> Option<PathBuf> {
        let name: String = Sha256::digest(url.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        self.dir.as_ref().map(|d| d.join(format!("{name}.crl")))
    }
}

/// The lists the distribution points of `certs` (DER) name, under `config`'s store, unless the
/// policy is off; and a note for each that could not be had.
pub fn lists_for(
    certs: &[&[u8]],
    policy: revocation::Policy,
    config: &crate::config::Config,
) -> (Vec<Shared>, Vec<String>) {
    if policy == revocation::Policy::Off {
        return (Vec::new(), Vec::new());
    }
    Store::from_config(config).lists_for(certs)
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

fn next_update(der: &[u8]) -> Option<SystemTime> {
    let list = x509_cert::crl::CertificateList::from_der(der).ok()?;
    list.tbs_cert_list.next_update.map(|t| t.to_system_time())
}

fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().ok_or(std::io::ErrorKind::InvalidInput)?;
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(".{}.tmp", std::process::id()));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, path)
}
