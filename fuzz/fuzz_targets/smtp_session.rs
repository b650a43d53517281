//! What a local mail client sends the SMTP front door: commands, AUTH exchanges and DATA, one
//! whole session per input. The agent is absent, so an accepted message ends in a 451 reply;
//! the relay is never reached.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::smtp::{relay::Relay, server, RelayTls, SmtpConfig};
use std::sync::OnceLock;

fn shared() -> &'static server::Shared {
    static SHARED: OnceLock<server::Shared> = OnceLock::new();
    SHARED.get_or_init(|| {
        let cfg = SmtpConfig {
            relay: Some("127.0.0.1:9".into()),
            relay_tls: RelayTls::None,
            max_message_bytes: 64 * 1024,
            max_recipients: 8,
            ..Default::default()
        };
        let relay = Relay::new(&cfg, None).expect("relay settings");
        server::Shared {
            cfg,
            client_user: "fuzz".into(),
            client_secret: "fuzz-secret".to_string().into(),
            relay,
            agent: "/nonexistent/ssmax-card-agent.sock".into(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let _ = server::serve(data, std::io::sink(), shared());
});
