//! `ssmax-card smtp`: a loopback SMTP submission front door. Any mail client submits to it;
//! each message goes through SSMAX send in the agent (protected attachments encrypted to the
//! sending organisation, the whole mail signed on the card, the PIN asked by the agent's
//! pinentry) and is relayed to the organisation's submission server. The client hears "250"
//! only once the relay has accepted the signed message; any failure is a clear SMTP error and
//! the message stays with the client.

mod event_loop;
pub mod relay;
pub mod secrets;
pub mod server;
pub mod session;

pub use crate::config::{RelayTls, SmtpConfig};

/// The login name, the default SMTP user of the front door.
pub fn login_name() -> String {
    crate::platform::login_name()
}
