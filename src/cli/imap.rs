//! `ssmax-card imap serve | set-upstream-password` (`imap view` is a local operation).

use super::{common, Global, ImapCommand};
use crate::config::RelayTls;
use crate::error::{Exit, Failure};
use crate::smtp::{login_name, relay::host_port, secrets};

pub fn run(g: &Global, what: ImapCommand) -> Result<(), Failure> {
    let setup = common::setup(g)?;
    let mut cfg = setup.config.imap.clone();
    match what {
        ImapCommand::View { .. } => Err(Failure::new(Exit::Usage, "internal: imap view runs locally")),
        ImapCommand::Serve { listen, upstream, upstream_user, upstream_tls, upstream_ca } => {
            cfg.listen = listen.unwrap_or(cfg.listen);
            cfg.upstream = upstream.or(cfg.upstream);
            cfg.upstream_user = upstream_user.or(cfg.upstream_user);
            cfg.upstream_tls = upstream_tls.unwrap_or(cfg.upstream_tls);
            cfg.upstream_ca = upstream_ca.or(cfg.upstream_ca);
            let upstream =
                cfg.upstream.clone().ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("imap-give-upstream")))?;
            let user = cfg
                .upstream_user
                .clone()
                .ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("imap-give-upstream-user")))?;
            let (host, _) = host_port(&upstream)?;
            let ca = match &cfg.upstream_ca {
                Some(f) => crate::cms::cert::load_file(f)?,
                None => Vec::new(),
            };
            let tls = || {
                crate::imap::upstream::tls_config(&ca).map_err(|e| {
                    Failure::new(Exit::Usage, crate::tr!("smtp-tls-settings", host = host.as_str(), error = e))
                })
            };
            let security = match cfg.upstream_tls {
                RelayTls::Tls => crate::imap::upstream::Security::Tls(tls()?),
                RelayTls::Starttls => crate::imap::upstream::Security::Starttls(tls()?),
                RelayTls::None => {
                    // The account's password and the mail in clear text: on this machine only.
                    let loopback = std::net::ToSocketAddrs::to_socket_addrs(&upstream.as_str())
                        .map(|mut a| a.all(|a| a.ip().is_loopback()))
                        .unwrap_or(false);
                    if !loopback {
                        return Err(Failure::new(
                            Exit::Usage,
                            crate::tr!("imap-plain-loopback-only", upstream = upstream),
                        ));
                    }
                    crate::imap::upstream::Security::Plain
                }
            };
            let client_user = setup.config.smtp.client_user.clone().unwrap_or_else(login_name);
            // Read now, so a locked keyring shows at start, not at the first client.
            let client_secret = secrets::client_secret(&client_user, false)?;
            let upstream_password = secrets::upstream_password(&host, &user)?;
            let agent = crate::agent::client::socket_path(g.socket.as_deref());
            let cache_key = secrets::imap_cache_key(&host, &user)?;
            let mark = Box::new(crate::imap::KeyringMark(secrets::imap_cache_mark(&host, &user)?));
            crate::imap::run(crate::imap::Settings {
                cfg,
                upstream,
                upstream_host: host,
                security,
                upstream_user: user,
                upstream_password,
                client_user,
                client_secret,
                agent,
                cache_key,
                mark,
            })
        }
        ImapCommand::SetUpstreamPassword { upstream, upstream_user, password_fd } => {
            let upstream =
                upstream.or(cfg.upstream).ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("imap-give-upstream")))?;
            let user = upstream_user
                .or(cfg.upstream_user)
                .ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("imap-give-upstream-user")))?;
            let host = host_port(&upstream)?.0;
            let password = super::smtp::account_password(password_fd, &user, &host)?;
            secrets::store_upstream_password(&host, &user, &password)?;
            eprintln!("ssmax-card: {}", crate::tr!("smtp-password-stored", user = user, host = host));
            Ok(())
        }
    }
}
