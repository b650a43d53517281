//! What a module's worker answers the agent (token/worker/wire.rs): the worker runs a vendor's
//! PKCS#11 module, so its bytes are read like any outside input. Frames are decoded as the
//! agent decodes them, attributes checked for their type's length, faults turned into errors.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::token::worker::wire::{self, Answer, Call};

fuzz_target!(|data: &[u8]| {
    let Some((&first, data)) = data.split_first() else { return };
    let mut r = data;
    for _ in 0..64 {
        if first & 1 == 1 {
            // The worker's side reads the agent's calls the same way.
            match wire::read_frame::<Call>(&mut r, wire::MAX_CALL) {
                Ok(mut c) => {
                    let _ = c.function();
                    if let Call::Find { template, .. } = &c {
                        let _ = wire::attributes(template);
                    }
                    c.wipe();
                }
                Err(_) => break,
            }
            continue;
        }
        match wire::read_frame::<Answer>(&mut r, wire::MAX_ATTRIBUTES) {
            Ok(Answer::Attributes(a)) => {
                // As the agent reads an answer to its request for these types.
                let asked = [0x102, 0x3, 0x11, 0x0, 0x100, 0x108, 0x120, 0x180];
                let _ = wire::answered_attributes(&a, &asked);
                let _ = wire::attributes(&a);
            }
            Ok(Answer::Failed(f)) => {
                let _ = f.into_error(std::path::Path::new("/usr/lib/x.so")).to_string();
            }
            Ok(_) => {}
            Err(_) => break,
        }
    }
});
