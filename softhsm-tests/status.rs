use crate::support::*;
use std::process::Command;

#[test]
fn status_lists_token_profile_pin_state_and_certificates_without_a_pin() {
    let tok = Tok::new();
    let o = run(tok.cmd().arg("status"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    for want in [
        "token 'ssmax test'",
        "profile      softhsm2",
        "PIN          ok",
        "certificate id 01 'alice'",
        "e-mail  alice@example.jp",
        "key     RSA-2048; valid until",
        "certificate id 02 'alice-ec'",
        "key     EC P-256",
        "trust anchor id a0 'ssmax-anchor-root'",
        "uninitialised token",
        "key pair id 01 'alice': RSA-2048",
        "key pair id 02 'alice-ec': EC P-256",
    ] {
        assert!(s.contains(want), "missing '{want}' in:\n{s}");
    }
}

#[test]
fn status_warns_about_expired_and_soon_expiring_certificates() {
    let tok = Tok::new();
    let p = pki();
    tok.import_cert(&p.join("alice-expired.pem"), "05", "alice-2020");
    let o = run(tok.cmd().arg("status"));
    assert!(stdout(&o).contains("EXPIRED 2021-01-01"), "{}", stdout(&o));
}

#[test]
fn profiles_lists_every_token_kind() {
    let o = ok(Command::new(BIN).arg("profiles"));
    let s = stdout(&o);
    for name in ["softhsm2", "opensc-piv", "yubikey", "jpki", "opensc-generic"] {
        assert!(s.lines().any(|l| l.starts_with(name)), "{name} missing:\n{s}");
    }
    assert!(s.contains("upper-cased"), "JPKI PIN normalisation shown");
}
