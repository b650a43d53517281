//! What a client sends the agent: frames and request headers.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::agent::protocol::{read_message, Request};

fuzz_target!(|data: &[u8]| {
    let mut r = data;
    while let Ok((req, _body)) = read_message::<Request>(&mut r) {
        let _ = req.token.as_deref().map(ssmax_card::token::uri::Pkcs11Uri::parse);
        let _ = req.key.as_deref().map(ssmax_card::token::uri::Pkcs11Uri::parse);
    }
});
