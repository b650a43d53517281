use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const SECRET: &str = "Content-Type: text/plain; charset=us-ascii\r\n\r\nThe merger closes on Friday.\r\n";

fn openssl_encrypt(tok: &Tok, recip: &Path, cipher: &str, keyopts: &[&str]) -> PathBuf {
    let input = tok.write("secret.txt", SECRET);
    let out = tok.path("encrypted.eml");
    ok(Command::new("openssl")
        .args(["cms", "-encrypt", "-in"])
        .arg(&input)
        .arg(format!("-{cipher}"))
        .arg("-recip")
        .arg(recip)
        .args(keyopts)
        .args(["-from", "bob@example.com", "-to", "alice@example.jp", "-subject", "confidential", "-out"])
        .arg(&out));
    out
}

fn decrypt(tok: &Tok, file: &Path) -> std::process::Output {
    run(&mut tok.with_pin(&["decrypt", "--in", file.to_str().unwrap()]))
}

#[test]
fn decrypt_reads_openssl_mail_for_every_rsa_key_transport_and_aes_mode() {
    let tok = Tok::new();
    let alice = pki().join("alice.pem");
    let oaep = ["-keyopt", "rsa_padding_mode:oaep"];
    let oaep256 =
        ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256", "-keyopt", "rsa_mgf1_md:sha256"];
    for cipher in ["aes128", "aes256", "aes-128-gcm", "aes-256-gcm"] {
        for (kt, opts, name) in [
            ("pkcs1", &[][..], "RSA PKCS#1 v1.5"),
            ("oaep-sha1", &oaep[..], "RSA-OAEP (SHA-1)"),
            ("oaep-sha256", &oaep256[..], "RSA-OAEP (SHA-256)"),
        ] {
            let enc = openssl_encrypt(&tok, &alice, cipher, opts);
            let o = decrypt(&tok, &enc);
            assert_eq!(code(&o), 0, "{cipher} {kt}: {}", stderr(&o));
            let out = stdout(&o);
            assert!(out.contains("The merger closes on Friday."), "{cipher} {kt}: {out}");
            assert!(out.contains("Subject: confidential"), "outer headers kept: {out}");
            assert!(stderr(&o).contains(name), "{cipher} {kt}: {}", stderr(&o));
        }
    }
}

#[test]
fn decrypt_uses_ecdh_on_the_token_for_ec_recipients() {
    let tok = Tok::new();
    let ec_cert = tok.dir.path().join("t/alice-ec.pem");
    for cipher in ["aes128", "aes256", "aes-256-gcm"] {
        let enc = openssl_encrypt(&tok, &ec_cert, cipher, &[]);
        let o = decrypt(&tok, &enc);
        assert_eq!(code(&o), 0, "{cipher}: {}", stderr(&o));
        assert!(stdout(&o).contains("The merger closes on Friday."));
        assert!(stderr(&o).contains("ECDH"), "{}", stderr(&o));
    }
}

#[test]
fn decrypt_finds_the_key_of_an_expired_certificate_among_several() {
    let tok = Tok::new();
    let p = pki();
    // Old mail for an expired certificate must stay readable.
    tok.import(&p.join("alice.key"), &p.join("alice-expired.pem"), "05", "alice-2020");
    let enc = openssl_encrypt(&tok, &p.join("alice-expired.pem"), "aes256", &[]);
    let o = decrypt(&tok, &enc);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("The merger closes on Friday."));
}

#[test]
fn decrypt_fails_on_tampered_gcm_mail() {
    let tok = Tok::new();
    let enc = openssl_encrypt(&tok, &pki().join("alice.pem"), "aes-256-gcm", &[]);
    let der = tok.path("enc.der");
    ok(Command::new("openssl").args(["cms", "-cmsout", "-in"]).arg(&enc).args(["-outform", "DER", "-out"]).arg(&der));
    let mut bytes = std::fs::read(&der).unwrap();
    let n = bytes.len();
    bytes[n - 30] ^= 0x01; // inside the ciphertext / tag
    std::fs::write(&der, &bytes).unwrap();
    let o = decrypt(&tok, &der);
    assert_clear_failure(&o, 1);
    assert!(stdout(&o).is_empty(), "nothing is output when integrity fails");
}

/// `mail` (openssl's S/MIME) as DER, changed by `edit`, written as `name`.
fn edited_der(tok: &Tok, mail: &Path, name: &str, edit: impl FnOnce(&mut Vec<u8>)) -> PathBuf {
    let der = tok.path(name);
    ok(Command::new("openssl").args(["cms", "-cmsout", "-in"]).arg(mail).args(["-outform", "DER", "-out"]).arg(&der));
    let mut bytes = std::fs::read(&der).unwrap();
    edit(&mut bytes);
    std::fs::write(&der, &bytes).unwrap();
    der
}

fn position(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len()).position(|w| w == needle).expect("pattern in the envelope")
}

#[test]
fn every_way_an_envelope_fails_to_decrypt_gets_the_same_answer() {
    let tok = Tok::new();
    let alice = pki().join("alice.pem");
    // A content key that does not unwrap is replaced by a random one, so these failures show
    // as the content's own. Under AES-GCM that is certain; under CBC a random key passes the
    // padding check one time in 256 (and gives garbage), so CBC is tried only for padding.
    let gcm256 = openssl_encrypt(&tok, &alice, "aes-256-gcm", &[]);
    // The content key under PKCS#1 v1.5 replaced: it no longer unwraps on the token.
    let unwrap = edited_der(&tok, &gcm256, "unwrap.der", |b| {
        let at = position(b, &[0x04, 0x82, 0x01, 0x00]) + 4;
        for (i, x) in b[at + 1..at + 256].iter_mut().enumerate() {
            *x = (i as u8).wrapping_mul(37) ^ 0x5a;
        }
        b[at] = 0;
    });
    // The last byte of the next-to-last block changed: the padding length byte is off by one.
    let cbc = openssl_encrypt(&tok, &alice, "aes256", &[]);
    let padding = edited_der(&tok, &cbc, "padding.der", |b| {
        let n = b.len();
        b[n - 17] ^= 0x01;
    });
    // A 16-byte content key for AES-256-GCM (the algorithm identifier changed from AES-128-GCM).
    let gcm128 = openssl_encrypt(&tok, &alice, "aes-128-gcm", &[]);
    let length = edited_der(&tok, &gcm128, "length.der", |b| {
        let at = position(b, &[0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x06]);
        b[at + 10] = 0x2e;
    });
    // The same under OAEP, and a GCM tag that fails.
    let oaep = openssl_encrypt(&tok, &alice, "aes-256-gcm", &["-keyopt", "rsa_padding_mode:oaep"]);
    let oaep_unwrap = edited_der(&tok, &oaep, "oaep.der", |b| {
        let at = position(b, &[0x04, 0x82, 0x01, 0x00]) + 4;
        b[at + 100] ^= 0x01;
    });
    let tag = edited_der(&tok, &gcm256, "tag.der", |b| {
        let n = b.len();
        b[n - 3] ^= 0x01;
    });
    let mut answers = Vec::new();
    for (what, f) in [("unwrap", unwrap), ("padding", padding), ("length", length), ("oaep", oaep_unwrap), ("tag", tag)]
    {
        let o = decrypt(&tok, &f);
        assert_clear_failure(&o, 1);
        assert!(stdout(&o).is_empty(), "{what}: nothing is output");
        answers.push((what, stderr(&o)));
    }
    for (what, e) in &answers {
        assert_eq!(e, &answers[0].1, "{what} is answered like {}", answers[0].0);
    }
    assert!(answers[0].1.contains("it was altered, or it was not encrypted for this key"), "{}", answers[0].1);
}

#[test]
fn decrypt_refuses_mail_for_someone_else_without_asking_for_a_pin() {
    let tok = Tok::new();
    let enc = openssl_encrypt(&tok, &pki().join("mallory.pem"), "aes256", &[]);
    let log = tok.path("shim.log");
    let uri = format!("pkcs11:token={}?module-path={}", LABEL.replace(' ', "%20"), shim().display());
    let o = run(tok.with_pin(&["decrypt", "--token", &uri, "--in", enc.to_str().unwrap()]).env("SSMAX_SHIM_LOG", &log));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("not encrypted for any key on the token"), "{}", stderr(&o));
    assert!(!log.exists(), "no C_Login (nor any key operation) was made");
}

#[test]
fn decrypt_interop_vectors_made_by_another_implementation() {
    let tok = Tok::new();
    tok.import(
        &vector("certs-and-keys/lamps-bob.decrypt.p8.pem"),
        &vector("certs-and-keys/lamps-bob.encrypt.crt"),
        "0b",
        "bob",
    );
    for (file, how) in [
        ("encryptedForBobRSAOaep.p7m", "RSA-OAEP (SHA-256), AES-128-CBC"),
        ("encryptedForBobAndDana.p7m", "AES-128-CBC"),
        // RFC 8103; openssl 3.0 cannot read this one.
        ("authEnvelopedForBobChaCha20Poly1305.p7m", "ChaCha20-Poly1305"),
    ] {
        let o = decrypt(&tok, &vector(&format!("binary-files/{file}")));
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        assert_eq!(stdout(&o), "This is some sample content.", "{file}");
        assert!(stderr(&o).contains(how), "{file}: {}", stderr(&o));
    }
    let o = decrypt(&tok, &vector("binary-files/encryptedKekri.p7m"));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("pre-shared key (KEKRecipientInfo)"), "{}", stderr(&o));
}

#[test]
fn a_signing_only_token_explains_why_it_cannot_decrypt() {
    // A profile is data: make this SoftHSM2 token behave like a JPKI card (signing only).
    let tok = Tok::new();
    let jpki = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pkcs11-profiles/jpki.toml")).unwrap();
    let reason = jpki.lines().find(|l| l.starts_with("no_decrypt_reason")).unwrap();
    let soft = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pkcs11-profiles/softhsm2.toml")).unwrap();
    let signing_only = soft.replace("can_decrypt = true", &format!("can_decrypt = false\n{reason}"));
    std::fs::create_dir_all(tok.path("profiles")).unwrap();
    tok.write("profiles/softhsm2.toml", signing_only);
    let config = tok.write("config.toml", format!("profiles_dir = \"{}\"\n", tok.path("profiles").display()));
    let enc = openssl_encrypt(&tok, &pki().join("alice.pem"), "aes256", &[]);
    let o = run(&mut tok.with_pin(&["decrypt", "--config", config.to_str().unwrap(), "--in", enc.to_str().unwrap()]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("only signs: its keys cannot decrypt mail"), "{}", stderr(&o));
}

#[test]
fn decrypt_with_always_authenticate_key_logs_in_for_the_operation() {
    let tok = Tok::new();
    let cert = tok.keygen_with_cert("08", "consent-rsa", "rsa:2048", &["--always-auth", "--usage-decrypt"]);
    let enc = openssl_encrypt(&tok, &cert, "aes-256-gcm", &[]);
    let log = tok.path("shim.log");
    let uri = format!("pkcs11:token={}?module-path={}", LABEL.replace(' ', "%20"), shim().display());
    let o = run(tok.with_pin(&["decrypt", "--token", &uri, "--in", enc.to_str().unwrap()]).env("SSMAX_SHIM_LOG", &log));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("The merger closes on Friday."));
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "login 1 0\nC_DecryptInit 0\nlogin 2 0\nC_Decrypt 0\n");
}

#[test]
fn decrypt_matches_recipients_named_by_subject_key_identifier() {
    let tok = Tok::new();
    for (cert, opts) in
        [(pki().join("alice.pem"), &["-keyid"][..]), (tok.dir.path().join("t/alice-ec.pem"), &["-keyid"][..])]
    {
        let enc = openssl_encrypt(&tok, &cert, "aes-256-gcm", opts);
        let dump = ok(Command::new("openssl").args(["cms", "-cmsout", "-print", "-in"]).arg(&enc));
        assert!(
            stdout(&dump).contains("subjectKeyIdentifier") || stdout(&dump).contains("rKeyId"),
            "{}",
            stdout(&dump)
        );
        let o = decrypt(&tok, &enc);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stdout(&o).contains("The merger closes on Friday."));
    }
}

#[test]
fn decrypt_reads_old_des_ede3_mail_and_says_the_algorithm_is_legacy() {
    let tok = Tok::new();
    let enc = openssl_encrypt(&tok, &pki().join("alice.pem"), "des3", &[]);
    let o = decrypt(&tok, &enc);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("The merger closes on Friday."));
    assert!(stderr(&o).contains("DES-EDE3-CBC, a legacy algorithm"), "{}", stderr(&o));
}

#[test]
fn a_well_formed_envelope_with_an_algorithm_we_do_not_know_cannot_be_decrypted_and_is_not_malformed() {
    let tok = Tok::new();
    let enc = openssl_encrypt(&tok, &pki().join("alice.pem"), "aes256", &[]);
    // aes-256-cbc (…1.42) → an unassigned arc of the same length (…1.43): well-formed, unknown.
    let text = std::fs::read_to_string(&enc).unwrap();
    let (head, body) = text.split_once("\n\n").unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut der = b64.decode(body.replace(['\n', '\r'], "")).unwrap();
    let oid = [0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x01, 0x2a];
    let at = der.windows(oid.len()).position(|w| w == oid).expect("aes-256-cbc in the envelope");
    der[at + oid.len() - 1] = 0x2b;
    let unknown = tok.write("unknown.eml", format!("{head}\n\n{}\n", b64.encode(&der)));
    let o = decrypt(&tok, &unknown);
    assert_clear_failure(&o, 6);
    assert!(
        stderr(&o).contains("cannot decrypt: the content is encrypted with algorithm 2.16.840.1.101.3.4.1.43"),
        "{}",
        stderr(&o)
    );
}
