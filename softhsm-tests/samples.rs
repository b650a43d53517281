//! Real sample messages from other projects' test suites, as published (samples/SOURCES.md):
//! Thunderbird's S/MIME test messages, made by NSS.

use crate::support::*;
use std::path::PathBuf;
use std::process::Command;

fn tb(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/samples/thunderbird").join(name)
}

fn verify_tb(tok: &Tok, file: &std::path::Path) -> std::process::Output {
    run(tok.cmd().args(["verify", "--ca"]).arg(tb("TestCA.pem")).arg("--in").arg(file))
}

#[test]
fn thunderbirds_signed_samples_verify_and_the_bad_ones_fail_as_verifications() {
    let tok = Tok::new();
    const ALICE: &str =
        "CN=Alice,emailAddress=Alice@example.com,O=BOGUS NSS,L=Mountain View,ST=California,C=US <alice@example.com>";
    for name in ["alice.dsig.SHA256.multipart.eml", "alice.dsig.SHA384.multipart.eml", "alice.sig.SHA512.opaque.eml"] {
        let o = verify_tb(&tok, &tb(name));
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        let s = stdout(&o);
        assert!(
            s.contains(&format!("Good signature from {ALICE}")) && s.contains("From matches: alice@example.com"),
            "{name}: {s}"
        );
    }
    for (name, why) in [
        ("alice.dsig.SHA256.multipart.bad.eml", "the mail was altered after signing"),
        ("alice.dsig.SHA1.multipart.eml", "uses SHA-1, which is refused"),
        ("alice.dsig.SHA256.multipart.mismatch-econtent.eml", "carries content of its own"),
    ] {
        let o = verify_tb(&tok, &tb(name));
        assert_clear_failure(&o, 1);
        assert!(stderr(&o).contains(why), "{name}: {}", stderr(&o));
    }
}

#[test]
fn a_signature_inside_another_is_verified_layer_by_layer() {
    let tok = Tok::new();
    for name in [
        "alice.plain.sig.SHA256.opaque.dave.sig.SHA256.opaque.eml",
        "alice.plain.dsig.SHA256.multipart.dave.dsig.SHA256.multipart.eml",
    ] {
        let out = tok.path("inner.txt");
        let o = run(tok
            .cmd()
            .args(["verify", "--ca"])
            .arg(tb("TestCA.pem"))
            .arg("--in")
            .arg(tb(name))
            .arg("--out")
            .arg(&out));
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        let s = stdout(&o);
        assert!(
            s.contains("Good signature from CN=Dave,") && s.contains("From matches: dave@example.com"),
            "{name}: {s}"
        );
        assert!(s.contains("Inner signature (layer 2) from CN=Alice,"), "{name}: {s}");
        // The content written is the innermost one: Alice's text.
        assert!(std::fs::read_to_string(&out).unwrap().contains("This is a test message from Alice to Bob."), "{name}");
    }
    let o = verify_tb(&tok, &tb("alice.env.sig.SHA256.opaque.eml"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("the signed content is encrypted"), "{}", stdout(&o));
}

#[test]
fn thunderbirds_encrypted_samples_decrypt_on_bobs_token_and_then_verify() {
    // Thunderbird's Bob: his key from the published PKCS#12 onto a SoftHSM2 token.
    let tok = Tok::new();
    let key = tok.path("tb-bob.key");
    ok(Command::new("openssl")
        .args(["pkcs12", "-legacy", "-nocerts", "-nodes", "-passin", "pass:nss", "-in"])
        .arg(tb("Bob.p12"))
        .arg("-out")
        .arg(&key));
    let pk8 = tok.path("tb-bob.p8");
    ok(Command::new("openssl").args(["pkey", "-in"]).arg(&key).arg("-out").arg(&pk8));
    let cert = tok.path("tb-bob.pem");
    ok(Command::new("openssl")
        .args(["pkcs12", "-legacy", "-nokeys", "-clcerts", "-passin", "pass:nss", "-in"])
        .arg(tb("Bob.p12"))
        .arg("-out")
        .arg(&cert));
    tok.import(&pk8, &cert, "0b", "tb-bob");
    for (name, signed) in [
        ("alice.env.eml", false),
        ("alice.sig.SHA256.opaque.env.eml", true),
        ("alice.dsig.SHA256.multipart.env.eml", true),
    ] {
        let out = tok.path("decrypted.eml");
        let o =
            run(&mut tok.with_pin(&["decrypt", "--in", tb(name).to_str().unwrap(), "--out", out.to_str().unwrap()]));
        assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
        assert!(stderr(&o).contains("with the key of 'CN=Bob,"), "{name}: {}", stderr(&o));
        let text = std::fs::read_to_string(&out).unwrap();
        if signed {
            let o = verify_tb(&tok, &out);
            assert_eq!(code(&o), 0, "{name} after decryption: {}", stderr(&o));
            assert!(stdout(&o).contains("Good signature from CN=Alice,"), "{name}: {}", stdout(&o));
        } else {
            assert!(text.contains("This is a test message from Alice to Bob."), "{name}: {text}");
        }
    }
}
