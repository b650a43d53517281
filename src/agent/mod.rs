//! The agent: one long-running process owns the token; mail clients and the CLI call it over a
//! Unix socket (docs/agent-protocol.md). Requests use the tokens one at a time, in arrival order,
//! with a bounded line; PINs come from pinentry on the client's terminal or display; the PIN is kept only as long as the cache policy says; every operation is audited.

pub mod audit;
pub mod client;
mod presence;
pub mod protocol;
pub mod server;
mod turnstile;
pub mod watchdog;

use serde::Deserialize;

/// How long a PIN (and the login it opened) is kept after an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum PinCache {
    /// Ask every time (default: a signature is a deliberate act).
    #[default]
    None,
    /// Keep for `pin_cache_seconds` after the PIN was entered.
    Ttl,
    /// Keep until the token is removed or the agent stops.
    UntilRemoved,
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
    /// A token call (PIN entry excluded) running longer than this is taken as hung: the agent
    /// answers the waiting clients and restarts itself in place (milliseconds).
    #[serde(default = "default_token_timeout")]
    pub token_timeout_ms: u64,
    /// Connections served at once (subscribers included); the next is answered "busy" and closed.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// A connection must deliver each full request within this long of opening or of its last
    /// answer, and read each answer within it; otherwise it is closed (milliseconds).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_ms: u64,
}

fn default_max_connections() -> usize {
    64
}

fn default_idle_timeout() -> u64 {
    60_000
}

fn default_token_timeout() -> u64 {
    30_000
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
            max_connections: default_max_connections(),
            idle_timeout_ms: default_idle_timeout(),
        }
    }
}
