//! What a client sends the agent: frames and request headers, read whole (`read_message`, as
//! the CLI reads answers) and in pieces as they come (`Incoming`, as the agent's event loop reads
//! requests). The first byte says where the pieces are cut; both readers must agree.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::agent::incoming::Incoming;
use ssmax_card::agent::protocol::{read_message, Request};

fuzz_target!(|data: &[u8]| {
    let Some((&cut, data)) = data.split_first() else { return };
    let mut whole = Vec::new();
    let mut r = data;
    loop {
        match read_message::<Request>(&mut r) {
            Ok((req, body)) => {
                let _ = req.token.as_deref().map(ssmax_card::token::uri::Pkcs11Uri::parse);
                let _ = req.key.as_deref().map(ssmax_card::token::uri::Pkcs11Uri::parse);
                whole.push((req.id, req.method, body));
            }
            Err(_) => break,
        }
    }
    let step = usize::from(cut % 16) + 1;
    let (mut inc, mut pieces, mut at) = (Incoming::default(), Vec::new(), 0);
    while at < data.len() {
        let room = inc.room();
        assert!(!room.is_empty(), "a reader that takes no more bytes");
        let n = room.len().min(step).min(data.len() - at);
        room[..n].copy_from_slice(&data[at..at + n]);
        at += n;
        match inc.filled(n, Vec::new()) {
            Ok(Some((req, body, _))) => pieces.push((req.id, req.method, body)),
            Ok(None) => {}
            Err(_) => break,
        }
    }
    // Every request the whole reader read, the piecewise one read the same, and no other.
    assert_eq!(pieces, whole);
});
