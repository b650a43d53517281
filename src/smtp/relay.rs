//! The way out: the organisation's submission server, reached with lettre (STARTTLS or TLS,
//! AUTH with the account whose password is in the OS keyring).

use super::{RelayTls, SmtpConfig};
use crate::error::{Exit, Failure};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, SmtpConnection, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

/// Pieces the message goes to the relay in: lettre dot-stuffs each into a buffer of its size.
const CHUNK: usize = 256 * 1024;
const TIMEOUT: Duration = Duration::from_secs(120);

pub struct Relay {
    host: String,
    port: u16,
    secure: Secure,
    /// The account, its password kept as a secret (zeroized on drop) for the door's lifetime.
    credentials: Option<(String, SecretString)>,
    pub name: String,
}

enum Secure {
    /// STARTTLS, and no message without it.
    Starttls(TlsParameters),
    /// TLS from the first byte (port 465).
    Wrapper(TlsParameters),
    /// Only for a relay on this machine.
    Plain,
}

/// What the relay said when it did not take a message.
#[derive(Debug)]
pub struct Refused {
    /// The relay will never take it (5xx): the client should not retry as it is.
    pub permanent: bool,
    pub message: String,
}

pub fn host_port(relay: &str) -> Result<(String, u16), Failure> {
    let bad = || Failure::new(Exit::Usage, crate::tr!("smtp-relay-not-host-port", relay = relay));
    let (host, port) = relay.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

impl Relay {
    pub fn new(cfg: &SmtpConfig, password: Option<SecretString>) -> Result<Relay, Failure> {
        let relay = cfg.relay.as_deref().ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("smtp-no-relay")))?;
        let (host, port) = host_port(relay)?;
        let tls_params = || -> Result<TlsParameters, Failure> {
            let mut b = TlsParameters::builder(host.clone());
            if let Some(ca) = &cfg.relay_ca {
                let pem = crate::files::read_regular(ca, crate::files::MAX_CERT_FILE)
                    .map_err(|e| Failure::new(Exit::Usage, crate::tr!("smtp-relay-ca", error = e.to_string())))?;
                b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| {
                    Failure::new(Exit::Usage, crate::tr!("smtp-relay-ca-file", path = ca, error = e.to_string()))
                })?);
            }
            b.build().map_err(|e| {
                Failure::new(Exit::Usage, crate::tr!("smtp-tls-settings", host = host, error = e.to_string()))
            })
        };
        let secure = match cfg.relay_tls {
            RelayTls::Starttls => Secure::Starttls(tls_params()?),
            RelayTls::Tls => Secure::Wrapper(tls_params()?),
            RelayTls::None => {
                // Credentials and signed mail in clear text are acceptable only on this machine.
                let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !local {
                    return Err(Failure::new(Exit::Usage, crate::tr!("smtp-plain-not-local", host = host)));
                }
                Secure::Plain
            }
        };
        let credentials = match (&cfg.relay_user, password) {
            (Some(user), Some(pw)) => Some((user.clone(), pw)),
            _ => None,
        };
        Ok(Relay { name: format!("{host}:{port}"), host, port, secure, credentials })
    }

    /// A connection ready for MAIL: encrypted as configured, logged in.
    fn connect(&self) -> Result<SmtpConnection, lettre::transport::smtp::Error> {
        let hello = ClientId::default();
        let wrapper = match &self.secure {
            Secure::Wrapper(p) => Some(p),
            _ => None,
        };
        let mut conn = SmtpConnection::connect((self.host.as_str(), self.port), Some(TIMEOUT), &hello, wrapper, None)?;
        if let Secure::Starttls(p) = &self.secure {
            // Fails when the relay does not offer STARTTLS: required, not opportunistic.
            conn.starttls(p, &hello)?;
        }
        if let Some((user, password)) = &self.credentials {
            // lettre takes the password as a plain String: made for this AUTH, dropped after it.
            let c = Credentials::new(user.clone(), password.expose_secret().to_string());
            let authenticated = conn.auth(&[Mechanism::Plain, Mechanism::Login], &c);
            drop(c);
            authenticated?;
        }
        Ok(conn)
    }

    /// Hand one message to the relay; Ok only when it answered 250 to the data. The message
    /// goes out in pieces (lettre's SMTP connection, as its transport would drive it, but with
    /// an iterator), so a large mail is not copied whole once more here.
    pub fn send(&self, from: &str, to: &[String], message: &[u8]) -> Result<(), Refused> {
        let addr = |a: &str| {
            a.parse::<lettre::Address>()
                .map_err(|e| Refused { permanent: true, message: format!("address '{a}': {e}") })
        };
        let from = addr(from)?;
        let rcpts = to.iter().map(|t| addr(t)).collect::<Result<Vec<_>, _>>()?;
        let refused = |e: lettre::transport::smtp::Error| Refused {
            permanent: e.is_permanent(),
            message: format!("relay {}: {e}", self.name),
        };
        let mut conn = self.connect().map_err(refused)?;
        let mut params = Vec::new();
        let needs_utf8 = std::iter::once(&from).chain(&rcpts).any(|a| !AsRef::<str>::as_ref(a).is_ascii());
        if needs_utf8 {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                conn.abort();
                return Err(Refused {
                    permanent: true,
                    message: format!("relay {} does not take non-ASCII addresses (no SMTPUTF8)", self.name),
                });
            }
            params.push(MailParameter::SmtpUtfEight);
        }
        if !message.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                conn.abort();
                return Err(Refused {
                    permanent: true,
                    message: format!("relay {} does not take 8-bit text (no 8BITMIME)", self.name),
                });
            }
            params.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let sent = (|| {
            conn.command(Mail::new(Some(from), params))?;
            for r in rcpts {
                conn.command(Rcpt::new(r, vec![]))?;
            }
            conn.command(Data)?;
            conn.message_iter(message.chunks(CHUNK))
        })();
        match sent {
            Ok(_) => {
                // Taken: a failing QUIT changes nothing about that.
                let _ = conn.quit();
                Ok(())
            }
            Err(e) => {
                conn.abort();
                Err(refused(e))
            }
        }
    }
}
