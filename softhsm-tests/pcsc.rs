//! PC/SC presence with a real pcscd and the vpcd/vicc virtual reader and card. Its own test
//! binary: while the virtual card is in, OpenSC takes seconds to give up on it, so nothing else
//! should be searching all modules at the same time (cargo runs test binaries one by one).

#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "support/mod.rs"]
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::agent::*;
use support::*;

/// The vicc card (vsmartcard's Python emulator of a plain ISO 7816 card).
fn vicc() -> Child {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/target/vicc-venv/bin/python");
    assert!(Path::new(venv).exists(), "run softhsm-tests/test.sh (it makes the vicc venv)");
    Command::new(venv)
        .env("PYTHONPATH", "/usr/lib/python3/site-packages/virtualsmartcard")
        .args(["/usr/bin/vicc", "-t", "iso7816"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("vicc (Debian package vsmartcard-vpicc)")
}

#[test]
fn token_bound_to_a_pcsc_reader_follows_the_card_in_it() {
    let _pcscd = Pcscd::start();
    let tok = Tok::new();
    let agent = start_agent_with(&tok, "token = \"pkcs11:token=ssmax%20test?module-path=/usr/lib/softhsm/libsofthsm2.so\"\n", "pin_cache = \"until-removed\"\npresence_poll_ms = 200\n[agent.presence_reader]\n\"ssmax test\" = \"Virtual PCD 00 00\"\n", "0");
    let input = tok.write("mail.eml", MAIL);
    // No card in the reader: refused before any PIN, naming the reader.
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_clear_failure(&o, 3);
    assert!(stderr(&o).contains("insert the card in reader 'Virtual PCD 00 00'"), "{}", stderr(&o));
    assert_eq!(getpins(&agent), 0);

    let mut card = vicc();
    let start = Instant::now();
    let o = loop {
        let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
        if code(&o) == 0 || start.elapsed() > Duration::from_secs(10) {
            break o;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(code(&o), 0, "with the card in the reader: {}", stderr(&o));
    assert_eq!(getpins(&agent), 1);

    let mut sub = subscribe(&agent);
    card.kill().unwrap();
    card.wait().unwrap();
    let ev = next_event(&mut sub, "token-removed");
    assert!(ev["notes"][0].as_str().unwrap().contains("reader 'Virtual PCD 00 00'"), "{ev}");
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_clear_failure(&o, 3);
    assert_eq!(getpins(&agent), 1, "no PIN prompt without the card");

    let mut card = vicc();
    next_event(&mut sub, "token-inserted");
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(getpins(&agent), 2, "a fresh PIN after the card came back");
    let _ = card.kill();
    let _ = card.wait();
}
