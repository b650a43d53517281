//! The IMAP front door (issue 28): mail clients read SSMAX mail through a loopback IMAP server
//! that shows each message as its view (ops/view.rs), built once by the agent, while the mail
//! itself stays as it is on the organisation's mail store.

pub mod mirror;
pub mod session;
pub mod upstream;

use crate::config::ImapConfig;
use crate::error::{Exit, Failure};
use secrecy::SecretString;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

pub struct Shared {
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
    pub mirror: Mutex<mirror::Mirror>,
    /// Held by the one refresh under way.
    pub refreshing: Mutex<()>,
}

/// Bring the mirror up to the upstream (a connection per refresh: the upstream may have
/// restarted in between; nothing is kept open that a dead peer could hold). One refresh at a
/// time; a client that asks meanwhile is served what is there. The mirror is locked only to
/// read what it knows and to take in the result.
pub fn refresh(shared: &Shared) -> Result<(), upstream::UpstreamError> {
    let Ok(_one) = shared.refreshing.try_lock() else { return Ok(()) };
    let known = shared.mirror.lock().unwrap_or_else(|p| p.into_inner()).known();
    let mut up = upstream::Upstream::login(
        &shared.upstream,
        &shared.upstream_host,
        &shared.security,
        &shared.upstream_user,
        &shared.upstream_password,
    )?;
    let update = mirror::update(&mut up, &shared.agent, &shared.cfg.authserv_id, known)?;
    for p in &update.pending {
        eprintln!("ssmax-card imap: not shown yet: {p}");
    }
    shared.mirror.lock().unwrap_or_else(|p| p.into_inner()).apply(update);
    Ok(())
}

/// Listen on loopback and serve until the process is stopped.
pub fn run(shared: Shared) -> Result<(), Failure> {
    crate::platform::survive_vanished_peers();
    let listen = shared.cfg.listen;
    if !listen.ip().is_loopback() {
        return Err(Failure::new(Exit::Usage, crate::tr!("smtp-loopback-only", listen = listen.to_string())));
    }
    let listener = TcpListener::bind(listen).map_err(|e| {
        Failure::new(Exit::Io, crate::tr!("smtp-cannot-listen", listen = listen.to_string(), error = e.to_string()))
    })?;
    eprintln!("ssmax-card imap: listening on {listen}, reading {}", shared.upstream);
    let shared = Arc::new(shared);
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
