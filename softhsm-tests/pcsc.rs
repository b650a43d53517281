//! PC/SC presence with a real pcscd, the vpcd virtual reader and a blank virtual card
//! (support/vcard). Its own test binary: it owns pcscd and the reader while it runs (cargo runs
//! test binaries one by one), one test at a time.

#![deny(clippy::undocumented_unsafe_blocks)]

#[path = "support/mod.rs"]
mod support;

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};
use support::agent::*;
use support::vcard::{Blank, VirtualCard};
use support::*;

/// pcscd and the reader, for one test at a time.
fn readers() -> (Pcscd, MutexGuard<'static, ()>) {
    static ONE: Mutex<()> = Mutex::new(());
    let guard = ONE.lock().unwrap_or_else(|e| e.into_inner());
    (Pcscd::start(), guard)
}

/// A signature through the agent, tried again for up to 10 s while the agent has yet to see the
/// card just inserted.
fn sign_once_the_agent_sees_the_card(tok: &Tok, agent: &Agent, input: &std::path::Path) -> std::process::Output {
    let start = Instant::now();
    loop {
        let o = via(tok, agent, &["sign", "--in", input.to_str().unwrap()]);
        if code(&o) == 0 || start.elapsed() > Duration::from_secs(10) {
            return o;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn token_bound_to_a_pcsc_reader_follows_the_card_in_it() {
    let _r = readers();
    let card = VirtualCard::new(Blank);
    let tok = Tok::new();
    let agent = start_agent_with(&tok, "token = \"pkcs11:token=ssmax%20test?module-path=/usr/lib/softhsm/libsofthsm2.so\"\n", "pin_cache = \"until-removed\"\npresence_poll_ms = 200\n[agent.presence_reader]\n\"ssmax test\" = \"Virtual PCD 00 00\"\n", "0");
    let input = tok.write("mail.eml", MAIL);
    // No card in the reader: refused before any PIN, naming the reader.
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_clear_failure(&o, 3);
    assert!(stderr(&o).contains("insert the card in reader 'Virtual PCD 00 00'"), "{}", stderr(&o));
    assert_eq!(getpins(&agent), 0);

    let inserted = card.insert(0);
    let o = sign_once_the_agent_sees_the_card(&tok, &agent, &input);
    assert_eq!(code(&o), 0, "with the card in the reader: {}", stderr(&o));
    assert_eq!(getpins(&agent), 1);

    let mut sub = subscribe(&agent);
    inserted.pull();
    let ev = next_event(&mut sub, "token-removed");
    assert!(ev["notes"][0].as_str().unwrap().contains("reader 'Virtual PCD 00 00'"), "{ev}");
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_clear_failure(&o, 3);
    assert_eq!(getpins(&agent), 1, "no PIN prompt without the card");

    let inserted = card.insert(0);
    next_event(&mut sub, "token-inserted");
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(getpins(&agent), 2, "a fresh PIN after the card came back");
    drop(inserted);
}

/// Wait until reader 0 of vpcd holds a card (`present`) or none, as pcscd sees it.
fn wait_for_reader(present: bool) {
    let ctx = pcsc::Context::establish(pcsc::Scope::User).unwrap();
    let reader = std::ffi::CString::new("Virtual PCD 00 00").unwrap();
    let start = Instant::now();
    let mut states = [pcsc::ReaderState::new(reader, pcsc::State::UNAWARE)];
    loop {
        let _ = ctx.get_status_change(Duration::from_millis(500), &mut states);
        if states[0].event_state().contains(pcsc::State::PRESENT) == present {
            return;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "pcscd never saw the card {}",
            if present { "in" } else { "out" }
        );
        states[0].sync_current_state();
    }
}

#[test]
fn a_card_pulled_and_put_back_between_two_looks_of_the_agent_costs_its_pin() {
    let _r = readers();
    let card = VirtualCard::new(Blank);
    let tok = Tok::new();
    // The agent looks at its readers once a minute here: only the look it takes when a request
    // arrives can see that the card was away.
    let agent = start_agent_with(&tok, "token = \"pkcs11:token=ssmax%20test?module-path=/usr/lib/softhsm/libsofthsm2.so\"\n", "pin_cache = \"until-removed\"\npresence_poll_ms = 60000\n[agent.presence_reader]\n\"ssmax test\" = \"Virtual PCD 00 00\"\n", "0");
    let input = tok.write("mail.eml", MAIL);
    let inserted = card.insert(0);
    wait_for_reader(true);
    let o = sign_once_the_agent_sees_the_card(&tok, &agent, &input);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(getpins(&agent), 1, "the PIN is kept while the card stays");

    inserted.pull();
    wait_for_reader(false);
    let _back = card.insert(0);
    wait_for_reader(true);
    std::thread::sleep(Duration::from_millis(300));
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(getpins(&agent), 2, "the card was away: its PIN was forgotten, and asked again");
}
