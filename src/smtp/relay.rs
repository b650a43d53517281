//! The way out: the organisation's submission server, reached with lettre (STARTTLS or TLS,
//! AUTH with the account whose password is in the OS keyring).

use super::{RelayTls, SmtpConfig};
use crate::error::{Exit, Failure};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{SmtpTransport, Transport};
use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;

pub struct Relay {
    transport: SmtpTransport,
    pub name: String,
}

/// What the relay said when it did not take a message.
#[derive(Debug)]
pub struct Refused {
    /// The relay will never take it (5xx): the client should not retry as it is.
    pub permanent: bool,
    pub message: String,
}

pub fn host_port(relay: &str) -> Result<(String, u16), Failure> {
    let bad = || Failure::new(Exit::Usage, format!("relay '{relay}' is not host:port"));
    let (host, port) = relay.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse::<u16>().map_err(|_| bad())?;
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.trim_start_matches('[').trim_end_matches(']').to_string(), port))
}

impl Relay {
    pub fn new(cfg: &SmtpConfig, password: Option<SecretString>) -> Result<Relay, Failure> {
        let relay = cfg.relay.as_deref().ok_or_else(|| Failure::new(Exit::Usage, "no relay: give --relay host:port or [smtp] relay in the config"))?;
        let (host, port) = host_port(relay)?;
        let tls_params = || -> Result<TlsParameters, Failure> {
            let mut b = TlsParameters::builder(host.clone());
            if let Some(ca) = &cfg.relay_ca {
                let pem = std::fs::read(ca).map_err(|e| Failure::new(Exit::Usage, format!("relay CA {}: {e}", ca.display())))?;
                b = b.add_root_certificate(Certificate::from_pem(&pem).map_err(|e| Failure::new(Exit::Usage, format!("relay CA {}: {e}", ca.display())))?);
            }
            b.build().map_err(|e| Failure::new(Exit::Usage, format!("TLS settings for {host}: {e}")))
        };
        let tls = match cfg.relay_tls {
            RelayTls::Starttls => Tls::Required(tls_params()?),
            RelayTls::Tls => Tls::Wrapper(tls_params()?),
            RelayTls::None => {
                // Credentials and signed mail in clear text are acceptable only on this machine.
                let local = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
                if !local {
                    return Err(Failure::new(Exit::Usage, format!("relay_tls = none is only allowed for a relay on this machine, not {host}")));
                }
                Tls::None
            }
        };
        let mut b = SmtpTransport::builder_dangerous(host.clone()).port(port).tls(tls).timeout(Some(Duration::from_secs(120)));
        if let (Some(user), Some(pw)) = (&cfg.relay_user, password) {
            b = b.credentials(Credentials::new(user.clone(), pw.expose_secret().to_string())).authentication(vec![Mechanism::Plain, Mechanism::Login]);
        }
        Ok(Relay { transport: b.build(), name: format!("{host}:{port}") })
    }

    /// Hand one message to the relay; Ok only when it answered 250 to the data.
    pub fn send(&self, from: &str, to: &[String], message: &[u8]) -> Result<(), Refused> {
        let addr = |a: &str| a.parse::<lettre::Address>().map_err(|e| Refused { permanent: true, message: format!("address '{a}': {e}") });
        let rcpts = to.iter().map(|t| addr(t)).collect::<Result<Vec<_>, _>>()?;
        let envelope = lettre::address::Envelope::new(Some(addr(from)?), rcpts).map_err(|e| Refused { permanent: true, message: e.to_string() })?;
        match self.transport.send_raw(&envelope, message) {
            Ok(_) => Ok(()),
            Err(e) => Err(Refused { permanent: e.is_permanent(), message: format!("relay {}: {e}", self.name) }),
        }
    }
}
