//! `ssmax-card smtp`: a loopback SMTP submission front door. Any mail client submits to it;
//! each message goes through SSMAX send in the agent (protected attachments encrypted to the
//! sending organisation, the whole mail signed on the card, the PIN asked by the agent's
//! pinentry) and is relayed to the organisation's submission server. The client hears "250"
//! only once the relay has accepted the signed message; any failure is a clear SMTP error and
//! the message stays with the client.

pub mod relay;
pub mod secrets;
pub mod server;

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

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
        }
    }
}

/// The login name, the default SMTP user of the front door.
pub fn login_name() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; the name is copied at once
    // and this runs before the front door starts threads.
    let from_passwd = unsafe {
        let pw = libc::getpwuid(libc::getuid());
        (!pw.is_null() && !(*pw).pw_name.is_null())
            .then(|| std::ffi::CStr::from_ptr((*pw).pw_name).to_string_lossy().into_owned())
    };
    from_passwd.or_else(|| std::env::var("USER").ok()).unwrap_or_else(|| "user".into())
}
