//! `ssmax-card smtp serve | set-relay-password | client-secret`.

use super::{common, Global, SmtpCommand};
use crate::error::{Exit, Failure};
use crate::smtp::{login_name, relay::host_port, relay::Relay, secrets, server};
use secrecy::{ExposeSecret, SecretString};

pub fn run(g: &Global, what: SmtpCommand) -> Result<(), Failure> {
    let setup = common::setup(g)?;
    let mut cfg = setup.config.smtp.clone();
    match what {
        SmtpCommand::Serve { listen, relay, relay_tls, relay_user, relay_ca } => {
            cfg.listen = listen.unwrap_or(cfg.listen);
            cfg.relay = relay.or(cfg.relay);
            cfg.relay_tls = relay_tls.unwrap_or(cfg.relay_tls);
            cfg.relay_user = relay_user.or(cfg.relay_user);
            cfg.relay_ca = relay_ca.or(cfg.relay_ca);
            let client_user = cfg.client_user.clone().unwrap_or_else(login_name);
            // Both secrets are read now, so a locked keyring shows at start, not at the first mail.
            let client_secret = secrets::client_secret(&client_user, false)?;
            let password = match (&cfg.relay, &cfg.relay_user) {
                (Some(r), Some(u)) => Some(secrets::relay_password(&host_port(r)?.0, u)?),
                _ => None,
            };
            let relay = Relay::new(&cfg, password)?;
            let agent = crate::agent::client::socket_path(g.socket.as_deref());
            server::run(server::Shared { cfg, client_user, client_secret, relay, agent })
        }
        SmtpCommand::SetRelayPassword { relay, relay_user, password_fd } => {
            let relay = relay.or(cfg.relay).ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("smtp-give-relay")))?;
            let user = relay_user
                .or(cfg.relay_user)
                .ok_or_else(|| Failure::new(Exit::Usage, crate::tr!("smtp-give-relay-user")))?;
            let host = host_port(&relay)?.0;
            let password = account_password(password_fd, &user, &host)?;
            secrets::store_relay_password(&host, &user, &password)?;
            eprintln!("ssmax-card: {}", crate::tr!("smtp-password-stored", user = user, host = host));
            Ok(())
        }
        SmtpCommand::ClientSecret { renew } => {
            let user = cfg.client_user.clone().unwrap_or_else(login_name);
            let secret = secrets::client_secret(&user, renew)?;
            // Shown once for the mail client's password field; it lives in the OS keyring.
            println!("user: {user}\nsecret: {}", secret.expose_secret());
            Ok(())
        }
    }
}

/// An account's password from `--password-fd`, else asked on the terminal; never empty.
pub(super) fn account_password(password_fd: Option<i32>, user: &str, host: &str) -> Result<SecretString, Failure> {
    let password = match password_fd {
        Some(fd) => crate::prompt::secret_from_fd(fd, "--password-fd", &crate::tr!("secret-password"))
            .map_err(|e| Failure::new(Exit::Usage, e))?,
        None => SecretString::from(
            rpassword::prompt_password(format!("{} ", crate::tr!("smtp-password-prompt", user = user, host = host)))
                .map_err(|e| Failure::new(Exit::Io, crate::tr!("smtp-password-unread", error = e.to_string())))?,
        ),
    };
    if password.expose_secret().is_empty() {
        return Err(Failure::new(Exit::Usage, crate::tr!("smtp-password-empty")));
    }
    Ok(password)
}
