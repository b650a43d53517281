//! The agent: one long-running process owns the token; mail clients and the CLI call it over a
//! Unix socket (docs/agent-protocol.md). Requests use the tokens one at a time, in arrival order,
//! with a bounded line; PINs come from pinentry on the client's terminal or display; the PIN is kept only as long as the cache policy says; every operation is audited.

pub mod audit;
pub mod client;
mod desk;
pub mod incoming;
mod lanes;
mod presence;
pub mod protocol;
pub mod server;
mod turnstile;
pub mod watchdog;
