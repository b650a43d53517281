//! Several tokens at once, as the people SSMAX is for carry them (an employee card and a My Number
//! card, a card and a YubiKey): a URI that names a token selects it wherever it is given, and what
//! needs no key needs no choice of token.

use crate::support::agent::{answer_once_exists, getpins, start_agent, start_agent_answering, via};
use crate::support::*;
use std::process::Command;

/// A second token in `tok`'s SoftHSM2 store holding `user`'s key and certificate (id 01), with
/// the test PIN: another card of the same person, or someone else's.
pub(crate) fn add_token_for(tok: &Tok, label: &str, user: &str) {
    init_token(tok, label, PIN);
    let key = pki().join(format!("{user}.key"));
    ok(Command::new("softhsm2-util").env("SOFTHSM2_CONF", &tok.conf).args([
        "--import",
        key.to_str().unwrap(),
        "--token",
        label,
        "--label",
        user,
        "--id",
        "01",
        "--pin",
        PIN,
    ]));
    let cert = pki().join(format!("{user}.der"));
    ok(Command::new("pkcs11-tool").env("SOFTHSM2_CONF", &tok.conf).args([
        "--module",
        "/usr/lib/softhsm/libsofthsm2.so",
        "--token-label",
        label,
        "--login",
        "--pin",
        PIN,
        "--write-object",
        cert.to_str().unwrap(),
        "--type",
        "cert",
        "--id",
        "01",
        "--label",
        user,
    ]));
}

const BOB_MAIL: &str =
    "From: Bob Partner <bob@partner.example>\nTo: Alice <alice@example.jp>\nSubject: re: figures\n\nThanks.\n";

#[test]
fn sign_picks_the_token_whose_certificate_carries_the_from_address() {
    let tok = Tok::new();
    add_token_for(&tok, "bob card", "bob");
    for (mail, who, token) in [(MAIL, "alice", "ssmax test"), (BOB_MAIL, "bob", "bob card")] {
        let input = tok.write("mail.eml", mail);
        let out = tok.path("signed.eml");
        let o = run(&mut tok.with_pin(&[
            "--agent",
            "never",
            "sign",
            "--in",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]));
        assert_eq!(code(&o), 0, "{who}: {}", stderr(&o));
        assert!(stderr(&o).contains(&format!("on token '{token}'")), "{who}: {}", stderr(&o));
        if who == "alice" {
            assert!(openssl_verify(&out, &pki().join("root.pem")).status.success());
        }
    }
    // An address no token carries: said, naming the tokens looked at, before any PIN.
    let input = tok.write("mail.eml", MAIL.replace("alice@example.jp", "carol@example.jp"));
    let o = run(&mut tok.with_pin(&["--agent", "never", "sign", "--in", input.to_str().unwrap()]));
    assert_clear_failure(&o, 6);
    let e = stderr(&o);
    assert!(
        e.contains("none of the tokens present (") && e.contains("'ssmax test'") && e.contains("'bob card'"),
        "{e}"
    );
}

#[test]
fn sign_asks_for_a_token_only_when_two_carry_the_from_address() {
    let tok = Tok::new();
    add_token_for(&tok, "alice spare card", "alice");
    let input = tok.write("mail.eml", MAIL);
    let o = run(&mut tok.with_pin(&["--agent", "never", "sign", "--in", input.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    let e = stderr(&o);
    assert!(e.contains("several tokens hold a signing certificate for alice@example.jp ("), "{e}");
    assert!(e.contains("'ssmax test'") && e.contains("'alice spare card'"), "{e}");
    let o = run(&mut tok.with_pin(&[
        "--agent",
        "never",
        "--token",
        "pkcs11:token=alice%20spare%20card",
        "sign",
        "--in",
        input.to_str().unwrap(),
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn decrypt_finds_the_recipients_key_on_whichever_token_holds_it() {
    let tok = Tok::new();
    add_token_for(&tok, "bob card", "bob");
    for (who, token) in [("alice", "ssmax test"), ("bob", "bob card")] {
        let secret = tok.write("secret.txt", "Content-Type: text/plain\r\n\r\nFor one reader only.\r\n");
        let enc = tok.path("enc.eml");
        ok(Command::new("openssl")
            .args(["cms", "-encrypt", "-aes-256-gcm", "-in"])
            .arg(&secret)
            .arg("-recip")
            .arg(pki().join(format!("{who}.pem")))
            .arg("-out")
            .arg(&enc));
        let o = run(&mut tok.with_pin(&["--agent", "never", "decrypt", "--in", enc.to_str().unwrap()]));
        assert_eq!(code(&o), 0, "{who}: {}", stderr(&o));
        assert!(stdout(&o).contains("For one reader only."), "{who}");
        assert!(stderr(&o).contains(&format!("on token '{token}'")), "{who}: {}", stderr(&o));
    }
}

#[test]
fn the_agent_keeps_each_tokens_login_and_signs_for_whoever_the_mail_is_from() {
    let tok = Tok::new();
    add_token_for(&tok, "bob card", "bob");
    let agent = start_agent(&tok, "pin_cache = \"until-removed\"\n", "0");
    let alice = tok.write("alice.eml", MAIL);
    let bob = tok.write("bob.eml", BOB_MAIL);
    for round in 0..2 {
        for (input, token) in [(&alice, "ssmax test"), (&bob, "bob card")] {
            let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
            assert_eq!(code(&o), 0, "round {round}: {}", stderr(&o));
            assert!(stderr(&o).contains(&format!("on token '{token}'")), "{}", stderr(&o));
        }
    }
    assert_eq!(getpins(&agent), 2, "one PIN per token, each kept while the other is used");
}

#[test]
fn a_pin_prompt_on_one_token_does_not_hold_up_a_request_on_another() {
    let tok = Tok::new();
    add_token_for(&tok, "bob card", "bob");
    let typed = tok.path("alice-has-typed");
    let agent = start_agent_answering(
        &tok,
        "pin_cache = \"until-removed\"\n",
        &[("ssmax test", &answer_once_exists(&typed, PIN)), ("bob card", PIN)],
    );
    let alice = tok.write("alice.eml", MAIL);
    let bob = tok.write("bob.eml", BOB_MAIL);
    std::thread::scope(|s| {
        let alices = s.spawn(|| via(&tok, &agent, &["sign", "--in", alice.to_str().unwrap()]));
        let asked = std::time::Instant::now();
        while !std::fs::read_to_string(&agent.pinentry_log).unwrap_or_default().contains("ssmax test") {
            assert!(asked.elapsed() < std::time::Duration::from_secs(20), "alice's PIN was never asked");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let o = via(&tok, &agent, &["sign", "--in", bob.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stderr(&o).contains("on token 'bob card'"), "{}", stderr(&o));
        assert!(!alices.is_finished(), "bob's mail was signed while alice's PIN prompt was still open");
        std::fs::write(&typed, "").unwrap();
        let o = alices.join().unwrap();
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stderr(&o).contains("on token 'ssmax test'"), "{}", stderr(&o));
    });
    assert_eq!(getpins(&agent), 2);
}

/// A second, empty token in the same SoftHSM2 store as `tok`'s.
fn add_spare_token(tok: &Tok, label: &str) {
    init_token(tok, label, "spare-pin");
}

fn init_token(tok: &Tok, label: &str, pin: &str) {
    ok(Command::new("softhsm2-util").env("SOFTHSM2_CONF", &tok.conf).args([
        "--init-token",
        "--free",
        "--label",
        label,
        "--so-pin",
        "spare-so-pin",
        "--pin",
        pin,
    ]));
}

/// `sign` without the agent, the key named by `key`.
fn sign_with_key(tok: &Tok, key: &str, mail: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    let args =
        ["--agent", "never", "--key", key, "sign", "--in", mail.to_str().unwrap(), "--out", out.to_str().unwrap()];
    run(&mut tok.with_pin(&args))
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
    let key = key_on_alices_token();
    let o = sign_with_key(&tok, &key, &mail, &out);
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
    let o = sign_with_key(&tok, &key, &mail, &signed);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
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
