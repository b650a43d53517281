//! The config file: TOML at the platform config dir (`directories`), or `--config FILE`; every
//! table of it (`[agent]`, `[smtp]`) is typed here.

use crate::profile::PinCache;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{file}:{line}: {reason}")]
    Invalid { file: String, line: usize, reason: String },
    #[error("{}", crate::tr!("config-unreadable", error = .0.to_string()))]
    Read(#[from] crate::files::ReadError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PinSource {
    /// The terminal (rpassword); the default.
    #[default]
    Terminal,
    /// A pinentry program (Assuan), e.g. pinentry-gnome3 or pinentry-curses.
    Pinentry,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SignatureScheme {
    #[default]
    Pkcs1,
    Pss,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `pkcs11:` URI of the token (may carry `?module-path=`).
    pub token: Option<String>,
    /// `pkcs11:` URI of the signing key.
    pub key: Option<String>,
    #[serde(default)]
    pub pin_source: PinSource,
    pub pinentry_program: Option<PathBuf>,
    /// Extra trust anchors (PEM or DER files), added to the anchors on the token.
    #[serde(default)]
    pub anchors: Vec<PathBuf>,
    /// Certificate revocation lists (PEM or DER files) that verification checks chains against.
    #[serde(default)]
    pub crls: Vec<PathBuf>,
    /// How strictly revocation is checked (`require`, `prefer`, `off`); `prefer` when absent.
    pub revocation: Option<crate::cms::revocation::Policy>,
    /// How long past its nextUpdate a CRL still counts, with a note, under any policy (default 24).
    pub revocation_grace_hours: Option<u64>,
    /// Fetch CRLs from the certificates' distribution points (default true; false: the cache only).
    pub crl_fetch: Option<bool>,
    /// Where fetched CRLs are kept (default: the platform cache directory, …/ssmax-card/crls).
    pub crl_cache_dir: Option<PathBuf>,
    /// Bound on the CRL fetches of one operation, all together (default 10 000).
    pub crl_fetch_timeout_ms: Option<u64>,
    /// CA certificates (PEM or DER files) sent along with signatures when the token lacks them:
    /// a PIV or My Number card holds only its holder's certificates.
    #[serde(default)]
    pub intermediates: Vec<PathBuf>,
    /// The organisation certificate (PEM/DER) when the token does not hold one.
    pub org_certificate: Option<PathBuf>,
    /// Directory of extra PKCS#11 profiles (*.toml).
    pub profiles_dir: Option<PathBuf>,
    /// RSA signature scheme for new signatures.
    #[serde(default)]
    pub rsa_signature: SignatureScheme,
    /// The agent's PIN cache, queue and audit log.
    #[serde(default)]
    pub agent: AgentConfig,
    /// The SMTP submission front door (`ssmax-card smtp serve`).
    #[serde(default)]
    pub smtp: SmtpConfig,
    /// The IMAP front door (`ssmax-card imap`).
    #[serde(default)]
    pub imap: ImapConfig,
}

/// How long past nextUpdate a CRL still counts when the config says nothing.
pub const DEFAULT_GRACE_HOURS: u64 = 24;

impl Config {
    /// How long past its nextUpdate a CRL still counts (`revocation_grace_hours`).
    pub fn revocation_grace(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.revocation_grace_hours.unwrap_or(DEFAULT_GRACE_HOURS).saturating_mul(3600))
    }
}

pub fn default_path() -> Option<PathBuf> {
    directories::ProjectDirs::from("jp", "SSMAX", "ssmax-card").map(|d| d.config_dir().join("config.toml"))
}

/// Load `explicit` (must exist) or the default file (may be absent).
pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
    let (path, must_exist) = match explicit {
        Some(p) => (p.to_path_buf(), true),
        None => match default_path() {
            Some(p) => (p, false),
            None => return Ok(Config::default()),
        },
    };
    let file = path.display().to_string();
    let text = match crate::files::read_regular_text(&path, crate::files::MAX_TEXT_FILE) {
        Ok(t) => t,
        Err(e) if e.is_not_found() && !must_exist => return Ok(Config::default()),
        Err(e) => return Err(e.into()),
    };
    toml::from_str(&text).map_err(|e| ConfigError::Invalid {
        line: e.span().map(|s| text.as_bytes().iter().take(s.start).filter(|&&b| b == b'\n').count() + 1).unwrap_or(1),
        file,
        reason: e.message().to_string(),
    })
}

/// `[agent]` in the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Overrides the profile's `pin.cache`; when neither says, `none`.
    #[serde(default)]
    pub pin_cache: Option<PinCache>,
    #[serde(default = "default_ttl")]
    pub pin_cache_seconds: u64,
    /// Requests waiting for the token beyond this get a "busy" answer.
    #[serde(default = "default_queue")]
    pub queue_limit: usize,
    pub audit_log: Option<std::path::PathBuf>,
    /// How often tokens without PC/SC are looked for (milliseconds).
    #[serde(default = "default_poll")]
    pub presence_poll_ms: u64,
    /// Token label → PC/SC reader: the token counts as present only while a card is in that
    /// reader (for modules that do not name their reader, or a card paired with a token).
    #[serde(default)]
    pub presence_reader: std::collections::HashMap<String, String>,
    /// A token call (PIN entry excluded) running longer than this is taken as hung: its
    /// module's worker is stopped and the request fails (milliseconds). Without workers, the
    /// agent answers the waiting clients and restarts itself in place.
    #[serde(default = "default_token_timeout")]
    pub token_timeout_ms: u64,
    /// Each PKCS#11 module runs in a worker process of its own (`ssmax-card module-worker`),
    /// so a module that crashes or hangs costs its requests, never the agent. false loads
    /// modules into the agent itself (a module that will not run in a child process).
    #[serde(default = "default_true")]
    pub module_workers: bool,
    /// Connections held open at once (subscribers included). At the limit the connection idle
    /// longest is closed to make room; only when none is idle is the next answered "busy".
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Requests worked on at once, each on a thread of its own while it runs (pings and
    /// subscriptions excepted); the rest wait for one to finish, within their own timeout.
    #[serde(default = "default_max_requests")]
    pub max_requests: usize,
    /// A connection must deliver each full request within this long of opening or of its last
    /// answer, and read each answer within it; otherwise it is closed (milliseconds).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
    /// How often the agent fetches again the cached CRLs and OCSP answers that run out soon
    /// (milliseconds; 0: never).
    #[serde(default = "default_refresh")]
    pub revocation_refresh_ms: u64,
    /// "Soon": within this many minutes of their nextUpdate.
    #[serde(default = "default_refresh_ahead")]
    pub revocation_refresh_ahead_minutes: u64,
}

fn default_refresh() -> u64 {
    300_000
}

fn default_refresh_ahead() -> u64 {
    60
}

fn default_max_connections() -> usize {
    16_384
}

/// Above the default queue_limit, so one token's full line leaves room for the others.
fn default_max_requests() -> usize {
    128
}

fn default_idle_timeout() -> u64 {
    60_000
}

fn default_token_timeout() -> u64 {
    30_000
}

fn default_true() -> bool {
    true
}

fn default_poll() -> u64 {
    1000
}

fn default_ttl() -> u64 {
    300
}

fn default_queue() -> usize {
    64
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            pin_cache: None,
            pin_cache_seconds: default_ttl(),
            queue_limit: default_queue(),
            audit_log: None,
            presence_poll_ms: default_poll(),
            presence_reader: Default::default(),
            token_timeout_ms: default_token_timeout(),
            module_workers: true,
            max_connections: default_max_connections(),
            max_requests: default_max_requests(),
            idle_timeout_ms: default_idle_timeout(),
            revocation_refresh_ms: default_refresh(),
            revocation_refresh_ahead_minutes: default_refresh_ahead(),
        }
    }
}

/// How the front door talks to the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum RelayTls {
    /// Plain connection upgraded with STARTTLS (port 587); refused if the relay does not offer it.
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// No TLS: only for a relay on this machine (refused for any other host).
    None,
}

/// `[smtp]` in the config file; command-line flags override each field.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpConfig {
    /// Where mail clients connect: a loopback address only.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The organisation's submission server, host:port.
    pub relay: Option<String>,
    #[serde(default)]
    pub relay_tls: RelayTls,
    /// The account on the relay; its password is in the OS keyring (`smtp set-relay-password`).
    pub relay_user: Option<String>,
    /// A CA certificate (PEM) to trust for the relay, besides the system's.
    pub relay_ca: Option<PathBuf>,
    /// The user name mail clients authenticate with (default: the login name).
    pub client_user: Option<String>,
    /// Largest message accepted from a client (bytes; the agent's frame limit bounds it).
    #[serde(default = "default_max_message")]
    pub max_message_bytes: usize,
    /// Most recipients per message.
    #[serde(default = "default_max_recipients")]
    pub max_recipients: usize,
    /// Client connections held open at once; at the limit a stranger's (or an idle one's) is
    /// closed to make room.
    #[serde(default = "default_smtp_connections")]
    pub max_connections: usize,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 10587))
}

/// Encrypted attachments grow by a third in base64 and the signed mail must fit the agent's
/// 64 MiB frame: 40 MiB in leaves room.
fn default_max_message() -> usize {
    40 << 20
}

fn default_max_recipients() -> usize {
    100
}

fn default_smtp_connections() -> usize {
    1024
}

/// `[imap]` in the config file: the IMAP front door. Command-line flags override each field.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImapConfig {
    /// The mail store the door reads from, host:port.
    pub upstream: Option<String>,
    /// The account there; its password is in the OS keyring (`imap set-upstream-password`).
    pub upstream_user: Option<String>,
    /// `tls` (the default: port 993), `starttls`, or `none` (a loopback upstream only).
    #[serde(default = "default_upstream_tls")]
    pub upstream_tls: RelayTls,
    /// A CA certificate (PEM) to trust for the upstream, besides the system's.
    pub upstream_ca: Option<PathBuf>,
    /// Where mail clients connect: a loopback address only.
    #[serde(default = "default_imap_listen")]
    pub listen: SocketAddr,
    /// The authserv-id of the door's Authentication-Results (RFC 8601).
    #[serde(default = "default_authserv_id")]
    pub authserv_id: String,
    /// Where the door keeps its UID map and views, sealed; default: the user's cache directory.
    pub cache_dir: Option<PathBuf>,
    /// How much the stored views may take ("1 GiB", "500 MiB", "64 KiB", or bytes).
    #[serde(default = "default_cache_size", deserialize_with = "size")]
    pub cache_size: u64,
}

fn default_cache_size() -> u64 {
    1 << 30
}

/// A size as people write it: a number and an optional binary unit (B, KiB, MiB, GiB).
fn size<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Given {
        Bytes(u64),
        Text(String),
    }
    let text = match Given::deserialize(d)? {
        Given::Bytes(n) => return Ok(n),
        Given::Text(t) => t,
    };
    parse_size(&text).ok_or_else(|| serde::de::Error::custom(crate::tr!("imap-cache-size", value = text.as_str())))
}

pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let n: u64 = t[..digits].parse().ok()?;
    let shift = match t[digits..].trim() {
        "" | "B" => 0,
        "KiB" => 10,
        "MiB" => 20,
        "GiB" => 30,
        _ => return None,
    };
    n.checked_mul(1 << shift)
}

fn default_upstream_tls() -> RelayTls {
    RelayTls::Tls
}

fn default_imap_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 1143))
}

fn default_authserv_id() -> String {
    crate::mail::auth_results::AUTHSERV_ID.to_string()
}

impl Default for ImapConfig {
    fn default() -> Self {
        ImapConfig {
            upstream: None,
            upstream_user: None,
            upstream_tls: default_upstream_tls(),
            upstream_ca: None,
            listen: default_imap_listen(),
            authserv_id: default_authserv_id(),
            cache_dir: None,
            cache_size: default_cache_size(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> Self {
        SmtpConfig {
            listen: default_listen(),
            relay: None,
            relay_tls: RelayTls::default(),
            relay_user: None,
            relay_ca: None,
            client_user: None,
            max_message_bytes: default_max_message(),
            max_recipients: default_max_recipients(),
            max_connections: default_smtp_connections(),
        }
    }
}
