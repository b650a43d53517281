//! Several tokens at once, as the people SSMAX is for carry them (an employee card and a My Number
//! card, a card and a YubiKey): a URI that names a token selects it wherever it is given, and what
//! needs no key needs no choice of token.

use crate::support::agent::{start_agent, via};
use crate::support::*;
use std::process::Command;

/// A second, empty token in the same SoftHSM2 store as `tok`'s.
fn add_spare_token(tok: &Tok, label: &str) {
    ok(Command::new("softhsm2-util").env("SOFTHSM2_CONF", &tok.conf).args([
        "--init-token",
        "--free",
        "--label",
        label,
        "--so-pin",
        "spare-so-pin",
        "--pin",
        "spare-pin",
    ]));
}

fn key_on_alices_token() -> String {
    format!("pkcs11:token={};id=%01", LABEL.replace(' ', "%20"))
}

#[test]
fn a_key_uri_that_names_its_token_selects_it_among_several() {
    let tok = Tok::new();
    add_spare_token(&tok, "spare");
    let mail = tok.write("mail.eml", MAIL);
    let out = tok.path("signed.eml");
    // Naming no token is a real question now, and the answer lists them.
    let o = run(&mut tok.with_pin(&["--agent", "never", "sign", "--in", mail.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("several tokens are present") && stderr(&o).contains("'spare'"), "{}", stderr(&o));
    let key = key_on_alices_token();
    let o = run(&mut tok.with_pin(&[
        "--agent",
        "never",
        "--key",
        &key,
        "sign",
        "--in",
        mail.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(openssl_verify(&out, &pki().join("root.pem")).status.success());
    // --token and --key naming different tokens contradict each other: said, not guessed.
    let o = run(&mut tok.with_pin(&[
        "--agent",
        "never",
        "--token",
        "pkcs11:token=spare",
        "--key",
        &key,
        "sign",
        "--in",
        mail.to_str().unwrap(),
    ]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("the token names token \"spare\" and the key names \"ssmax test\""), "{}", stderr(&o));
}

#[test]
fn module_name_and_slot_attributes_select_like_the_others() {
    let tok = Tok::new();
    add_spare_token(&tok, "spare");
    let label = LABEL.replace(' ', "%20");
    let o = run(tok.cmd().args([
        "--agent",
        "never",
        "--token",
        &format!("pkcs11:token={label}?module-name=softhsm2"),
        "certs",
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("alice"), "{}", stdout(&o));
    let o = run(tok.cmd().args([
        "--agent",
        "never",
        "--token",
        &format!("pkcs11:token={label}?module-name=opensc-pkcs11"),
        "certs",
    ]));
    assert_clear_failure(&o, 3);
    let o =
        run(tok.cmd().args(["--agent", "never", "--token", "pkcs11:token=spare;slot-manufacturer=Nobody", "certs"]));
    assert_clear_failure(&o, 3);
}

#[test]
fn verify_trusts_the_anchors_of_every_present_token_without_asking_which() {
    let tok = Tok::new();
    add_spare_token(&tok, "spare");
    let mail = tok.write("mail.eml", MAIL);
    let signed = tok.path("signed.eml");
    let key = key_on_alices_token();
    ok(&mut tok.with_pin(&[
        "--agent",
        "never",
        "--key",
        &key,
        "sign",
        "--in",
        mail.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]));
    let o = run(tok.cmd().args(["--agent", "never", "verify", "--in", signed.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "the root on alice's token is trusted: {}", stderr(&o));
    assert!(stdout(&o).contains("Good signature from"), "{}", stdout(&o));
    // Naming the spare token, whose anchors are none, is a choice: then the chain is untrusted.
    let o = run(tok.cmd().args([
        "--agent",
        "never",
        "--token",
        "pkcs11:token=spare",
        "verify",
        "--in",
        signed.to_str().unwrap(),
    ]));
    assert_clear_failure(&o, 1);
    // The agent does the same for its clients.
    let agent = start_agent(&tok, "", "0");
    let o = via(&tok, &agent, &["verify", "--in", signed.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = via(&tok, &agent, &["--key", &key, "sign", "--in", mail.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}
