//! What a local mail client sends the SMTP front door: commands, AUTH exchanges and DATA, one
//! whole session per input. The agent is absent, so an accepted message ends in a 451 reply;
//! the relay is never reached. The same input, cut into pieces where its first byte says (as
//! the door's event loop may read it), must get the same replies.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::smtp::session::Session;
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

/// The session fed `data` in pieces of `step` bytes: its replies and the messages it handed out.
fn talk(data: &[u8], step: usize) -> (Vec<u8>, Vec<(String, Vec<String>)>) {
    let (mut s, mut pending, mut out, mut sent) = (Session::default(), Vec::new(), Vec::new(), Vec::new());
    for piece in data.chunks(step) {
        pending.extend_from_slice(piece);
        while let Some(m) = s.feed(&mut pending, &mut out, usize::MAX, shared()) {
            sent.push((m.from, m.rcpts));
            s.submitted("250 2.0.0 relayed", &mut out);
        }
    }
    (out, sent)
}

fuzz_target!(|data: &[u8]| {
    // The whole session, the message (if any) through the front door's checks to the absent agent.
    let _ = server::serve(data, std::io::sink(), shared());
    // However the client's bytes are cut up on the way, the session answers the same.
    let Some((&cut, rest)) = data.split_first() else { return };
    assert!(talk(rest, usize::from(cut % 32) + 1) == talk(rest, usize::MAX));
});
