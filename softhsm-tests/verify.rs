use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mail signed by openssl with a software key, for certificates we must reject.
fn openssl_signed(tok: &Tok, cert: &Path, key: &Path, from: &str) -> PathBuf {
    let body = tok.write("body.txt", "Content-Type: text/plain\r\n\r\nplease pay the invoice\r\n");
    let out = tok.path("openssl-signed.eml");
    ok(Command::new("openssl")
        .args(["cms", "-sign", "-in"])
        .arg(&body)
        .arg("-signer")
        .arg(cert)
        .arg("-inkey")
        .arg(key)
        .args(["-from", from, "-to", "bob@example.com", "-subject", "invoice", "-out"])
        .arg(&out));
    out
}

fn verify(tok: &Tok, mail: &Path) -> std::process::Output {
    run(tok.cmd().args(["verify", "--in"]).arg(mail))
}

#[test]
fn verify_accepts_own_signature_against_anchor_on_token() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let signed = tok.path("signed.eml");
    ok(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap(), "--out", signed.to_str().unwrap()]));
    let o = verify(&tok, &signed);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("Good signature from CN=Alice Example,O=Example Org <alice@example.jp>"), "{s}");
    assert!(s.contains("chain:        CN=Alice Example,O=Example Org <- CN=Example Org CA,O=Example Org <- CN=SSMAX Demo Root,O=SSMAX Demo"), "{s}");
    assert!(s.contains("From matches: alice@example.jp"));
}

#[test]
fn verify_accepts_openssl_signature_and_writes_content() {
    let tok = Tok::new();
    let p = pki();
    let signed = openssl_signed(&tok, &p.join("alice.pem"), &p.join("alice.key"), "alice@example.jp");
    let content = tok.path("content.eml");
    let o = run(tok.cmd().args(["verify", "--in"]).arg(&signed).arg("--out").arg(&content));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let c = std::fs::read_to_string(&content).unwrap();
    assert!(c.contains("please pay the invoice"));
    assert!(c.contains("Subject: invoice"));
}

#[test]
fn verify_fails_on_tampered_mail() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let signed = tok.path("signed.eml");
    ok(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap(), "--out", signed.to_str().unwrap()]));
    let text =
        std::fs::read_to_string(&signed).unwrap().replace("the figures are attached.", "the figures are attached!");
    let tampered = tok.write("tampered.eml", text);
    let o = verify(&tok, &tampered);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("altered"), "{}", stderr(&o));
    // openssl agrees.
    assert!(!openssl_verify(&tampered, &pki().join("root.pem")).status.success());
}

#[test]
fn verify_fails_when_from_does_not_match_certificate() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let signed = tok.path("signed.eml");
    ok(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap(), "--out", signed.to_str().unwrap()]));
    // The From header is outside the signed part: a forger can change it; we must notice.
    let text = std::fs::read_to_string(&signed).unwrap().replacen(
        "From: Alice Example <alice@example.jp>",
        "From: CEO <ceo@example.jp>",
        1,
    );
    let forged = tok.write("forged.eml", text);
    let o = verify(&tok, &forged);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("From address ceo@example.jp is not in the signer's certificate"), "{}", stderr(&o));
}

#[test]
fn verify_fails_on_expired_certificate() {
    let tok = Tok::new();
    let p = pki();
    let signed = openssl_signed(&tok, &p.join("alice-expired.pem"), &p.join("alice.key"), "alice@example.jp");
    let o = verify(&tok, &signed);
    assert_clear_failure(&o, 1);
    assert!(
        stderr(&o).contains("was not valid at signing time") && stderr(&o).contains("2021-01-01"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn verify_fails_on_certificate_without_email_protection_usage() {
    let tok = Tok::new();
    let p = pki();
    let signed = openssl_signed(&tok, &p.join("alice-wrong-eku.pem"), &p.join("alice.key"), "alice@example.jp");
    let o = verify(&tok, &signed);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("extended key usage does not include e-mail protection"), "{}", stderr(&o));
}

#[test]
fn verify_fails_on_untrusted_root() {
    let tok = Tok::new();
    let p = pki();
    let signed = openssl_signed(&tok, &p.join("mallory.pem"), &p.join("mallory.key"), "mallory@example.jp");
    let o = verify(&tok, &signed);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("not trusted"), "{}", stderr(&o));
    // Trusting that root explicitly makes it pass: the failure was only about trust.
    let o = run(tok.cmd().args(["verify", "--in"]).arg(&signed).arg("--ca").arg(p.join("rogue-root.pem")));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn verify_without_token_or_anchor_fails_closed() {
    let tok = Tok::new();
    let p = pki();
    let signed = openssl_signed(&tok, &p.join("alice.pem"), &p.join("alice.key"), "alice@example.jp");
    let o = run(tok.cmd().args(["verify", "--no-token", "--in"]).arg(&signed));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("no trust anchors"), "{}", stderr(&o));
}

#[test]
fn verify_interop_vectors_signed_by_another_implementation() {
    let tok = Tok::new();
    let alice = vector("certs-and-keys/lamps-alice.crt");
    let carlos = vector("certs-and-keys/lamps-carlos.crt");
    for (file, who, alg) in [
        ("signedByAliceRSA.p7m", "Alice Lovelace", "RSA PKCS#1 v1.5 SHA-256"),
        ("signedByAliceRSAPSS.p7m", "Alice Lovelace", "RSA-PSS SHA-256"),
        ("signedByCarlosEd25519.p7m", "Carlos Turing", "Ed25519"),
    ] {
        let o = run(tok
            .cmd()
            .args(["verify", "--no-token", "--in"])
            .arg(vector(&format!("binary-files/{file}")))
            .arg("--ca")
            .arg(&alice)
            .arg("--ca")
            .arg(&carlos));
        assert_eq!(code(&o), 0, "{file}: {}", stderr(&o));
        assert!(stdout(&o).contains(who) && stdout(&o).contains(alg), "{file}: {}", stdout(&o));
    }
    let content = tok.write("content.txt", "This is some sample content.");
    let o = run(tok
        .cmd()
        .args(["verify", "--no-token", "--in"])
        .arg(vector("binary-files/signedByCarlosDetached.p7m"))
        .arg("--content")
        .arg(&content)
        .arg("--ca")
        .arg(&carlos));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let wrong = tok.write("wrong.txt", "This is some sample content!");
    let o = run(tok
        .cmd()
        .args(["verify", "--no-token", "--in"])
        .arg(vector("binary-files/signedByCarlosDetached.p7m"))
        .arg("--content")
        .arg(&wrong)
        .arg("--ca")
        .arg(&carlos));
    assert_clear_failure(&o, 1);
    // Two signers, certificates not included: both must be found and verified.
    let o = run(tok
        .cmd()
        .args(["verify", "--no-token", "--in"])
        .arg(vector("binary-files/signedByAliceAndCarlosNoCerts.p7m"))
        .arg("--ca")
        .arg(&alice)
        .arg("--ca")
        .arg(&carlos));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o).matches("Good signature").count(), 2);
    let o = run(tok
        .cmd()
        .args(["verify", "--no-token", "--in"])
        .arg(vector("binary-files/signedByAliceAndCarlosNoCerts.p7m"))
        .arg("--ca")
        .arg(&alice));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("--certfile"), "{}", stderr(&o));
}

#[test]
fn verify_opaque_signed_data_mail_from_openssl() {
    let tok = Tok::new();
    let p = pki();
    let body = tok.write("body.txt", "Content-Type: text/plain\r\n\r\nopaque body\r\n");
    let signed = tok.path("opaque.eml");
    ok(Command::new("openssl")
        .args(["smime", "-sign", "-nodetach", "-in"])
        .arg(&body)
        .arg("-signer")
        .arg(p.join("alice.pem"))
        .arg("-inkey")
        .arg(p.join("alice.key"))
        .args(["-from", "alice@example.jp", "-to", "b@example.com", "-subject", "opaque", "-out"])
        .arg(&signed));
    assert!(std::fs::read_to_string(&signed).unwrap().contains("smime-type=signed-data"));
    let content = tok.path("content.eml");
    let o = run(tok.cmd().args(["verify", "--in"]).arg(&signed).arg("--out").arg(&content));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(std::fs::read_to_string(&content).unwrap().contains("opaque body"));
}

#[test]
fn verify_rejects_a_malformed_anchor_file_as_usage_error() {
    let tok = Tok::new();
    let p = pki();
    let signed = openssl_signed(&tok, &p.join("alice.pem"), &p.join("alice.key"), "alice@example.jp");
    let bad = tok.write("bad-ca.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    let o = run(tok.cmd().args(["verify", "--in"]).arg(&signed).arg("--ca").arg(&bad));
    assert_clear_failure(&o, 2);
}

/// bob's software key signs with openssl, RSA-PSS with the given parameters.
fn pss_signed(tok: &Tok, md: &str, salt: &str, mgf: &str) -> PathBuf {
    let p = pki();
    let body = tok.write("body.txt", "Content-Type: text/plain\r\n\r\nPSS from another writer\r\n");
    let out = tok.path(&format!("pss-{md}-{salt}-{mgf}.eml"));
    ok(Command::new("openssl")
        .args(["cms", "-sign", "-in"])
        .arg(&body)
        .arg("-signer")
        .arg(p.join("bob.pem"))
        .arg("-inkey")
        .arg(p.join("bob.key"))
        .arg("-certfile")
        .arg(p.join("partnerca.pem"))
        .args([
            "-md",
            md,
            "-keyopt",
            "rsa_padding_mode:pss",
            "-keyopt",
            &format!("rsa_pss_saltlen:{salt}"),
            "-keyopt",
            &format!("rsa_mgf1_md:{mgf}"),
        ])
        .args(["-from", "bob@partner.example", "-to", "alice@example.jp", "-subject", "pss", "-out"])
        .arg(&out));
    out
}

#[test]
fn verify_accepts_rsa_pss_with_any_salt_length_and_mgf1_hash() {
    let tok = Tok::new();
    for (md, salt, mgf, name) in [
        ("sha256", "32", "sha256", "RSA-PSS SHA-256\n"),
        ("sha256", "20", "sha256", "RSA-PSS SHA-256 (salt 20 bytes)"),
        ("sha384", "0", "sha384", "RSA-PSS SHA-384 (salt 0 bytes)"),
        ("sha512", "max", "sha512", "RSA-PSS SHA-512 (salt 190 bytes)"),
        ("sha256", "64", "sha512", "RSA-PSS SHA-256 (salt 64 bytes, MGF1 SHA-512)"),
        ("sha512", "20", "sha256", "RSA-PSS SHA-512 (salt 20 bytes, MGF1 SHA-256)"),
    ] {
        let signed = pss_signed(&tok, md, salt, mgf);
        let o = verify(&tok, &signed);
        assert_eq!(code(&o), 0, "{md} salt {salt} mgf {mgf}: {}", stderr(&o));
        assert!(stdout(&o).contains(&format!("algorithm:    {name}")), "{md} salt {salt} mgf {mgf}: {}", stdout(&o));
        let tampered = tok.write(
            "pss-tampered.eml",
            std::fs::read_to_string(&signed).unwrap().replace("PSS from another", "PSS from anOther"),
        );
        assert_clear_failure(&verify(&tok, &tampered), 1);
    }
}

#[test]
fn a_sha1_signature_is_a_verification_failure_that_names_sha1() {
    let tok = Tok::new();
    for signed in [pss_signed(&tok, "sha1", "20", "sha1"), {
        let p = pki();
        let body = tok.write("body.txt", "Content-Type: text/plain\r\n\r\nold client\r\n");
        let out = tok.path("sha1.eml");
        ok(Command::new("openssl")
            .args(["cms", "-sign", "-md", "sha1", "-in"])
            .arg(&body)
            .arg("-signer")
            .arg(p.join("bob.pem"))
            .arg("-inkey")
            .arg(p.join("bob.key"))
            .args(["-from", "bob@partner.example", "-out"])
            .arg(&out));
        out
    }] {
        let o = verify(&tok, &signed);
        assert_clear_failure(&o, 1);
        assert!(stderr(&o).contains("uses SHA-1, which is refused"), "{}", stderr(&o));
    }
}

/// A certificate in the style of older Japanese CAs: names as BMPString (and a T.61 OU), the
/// address only as a PKCS #9 emailAddress in the subject, no subjectAltName.
fn legacy_style_signed(tok: &Tok, from: &str) -> PathBuf {
    let p = pki();
    let cnf = tok.write("bmp.cnf", "[req]\ndistinguished_name=dn\nstring_mask=default\n[dn]\n");
    let ext = tok.write(
        "nosan.ext",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=emailProtection\n",
    );
    let csr = tok.path("yamada.csr");
    ok(Command::new("openssl")
        .args(["req", "-new", "-utf8", "-config"])
        .arg(&cnf)
        .arg("-key")
        .arg(p.join("bob.key"))
        .args(["-subj", "/O=株式会社パートナー/OU=Ventes é/CN=山田 太郎/emailAddress=yamada@partner.example", "-out"])
        .arg(&csr));
    let cert = tok.path("yamada.pem");
    ok(Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(p.join("partnerca.pem"))
        .arg("-CAkey")
        .arg(p.join("partnerca.key"))
        .args(["-set_serial", "77", "-days", "30", "-extfile"])
        .arg(&ext)
        .arg("-out")
        .arg(&cert));
    let der =
        String::from_utf8_lossy(&ok(Command::new("openssl").args(["asn1parse", "-in"]).arg(&cert)).stdout).to_string();
    assert!(der.contains("BMPSTRING") && der.contains("T61STRING"), "openssl wrote other string types: {der}");
    let body = tok.write("body.txt", "Content-Type: text/plain\r\n\r\nkonnichiwa\r\n");
    let out = tok.path("yamada.eml");
    ok(Command::new("openssl")
        .args(["cms", "-sign", "-in"])
        .arg(&body)
        .arg("-signer")
        .arg(&cert)
        .arg("-inkey")
        .arg(p.join("bob.key"))
        .arg("-certfile")
        .arg(p.join("partnerca.pem"))
        .args(["-from", from, "-out"])
        .arg(&out));
    out
}

#[test]
fn names_in_bmp_and_teletex_strings_print_readably_and_a_subject_email_address_counts_for_from() {
    let tok = Tok::new();
    // The domain part in another case still matches.
    let o = verify(&tok, &legacy_style_signed(&tok, "Yamada <yamada@Partner.EXAMPLE>"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("Good signature from emailAddress=yamada@partner.example,CN=山田 太郎,OU=Ventes é,O=株式会社パートナー <yamada@partner.example>"), "{s}");
    assert!(s.contains("From matches: yamada@partner.example"), "{s}");
    let o = verify(&tok, &legacy_style_signed(&tok, "yamada@partner.example.evil"));
    assert_clear_failure(&o, 1);
}
