use crate::support::*;
use std::process::Command;

fn sign_with(tok: &Tok, key: &str, extra: &[&str], mail: &str) -> std::path::PathBuf {
    let input = tok.write("mail.eml", mail);
    let out = tok.path("signed.eml");
    let key = format!("pkcs11:id=%{key}");
    let mut args = vec!["sign", "--key", &key, "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    ok(&mut tok.with_pin(&args));
    out
}

#[test]
fn sign_rsa_pkcs1_verifies_with_openssl_cms_and_smime() {
    let tok = Tok::new();
    let signed = sign_with(&tok, "01", &[], MAIL);
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(v.status.success(), "openssl cms -verify: {}", stderr(&v));
    assert!(stderr(&v).contains("Verification successful"));
    let v = run(Command::new("openssl")
        .args(["smime", "-verify", "-in"])
        .arg(&signed)
        .arg("-CAfile")
        .arg(pki().join("root.pem")));
    assert!(v.status.success(), "openssl smime -verify: {}", stderr(&v));
    assert!(stdout(&v).contains("the figures are attached."));
    let text = std::fs::read_to_string(&signed).unwrap();
    assert!(text.contains("micalg=sha-256"));
    assert!(text.contains("Subject: quarterly figures"));
}

#[test]
fn sign_rsa_pss_verifies_with_openssl() {
    let tok = Tok::new();
    let signed = sign_with(&tok, "01", &["--pss"], MAIL);
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(v.status.success(), "{}", stderr(&v));
    // The SignerInfo really is RSASSA-PSS, not PKCS#1 v1.5.
    let p7s = tok.path("sig.p7s");
    ok(Command::new("openssl").args(["smime", "-pk7out", "-in"]).arg(&signed).arg("-out").arg(&p7s));
    let dump = ok(Command::new("openssl").args(["cms", "-cmsout", "-print", "-inform", "PEM", "-in"]).arg(&p7s));
    assert!(stdout(&dump).contains("rsassaPss"), "{}", stdout(&dump));
}

#[test]
fn sign_ecdsa_p256_on_token_generated_key_verifies_with_openssl() {
    let tok = Tok::new();
    let signed = sign_with(&tok, "02", &[], MAIL);
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(v.status.success(), "{}", stderr(&v));
    let text = std::fs::read_to_string(&signed).unwrap();
    assert!(text.contains("micalg=sha-256"));
}

#[test]
fn sign_makes_8bit_long_and_trailing_space_lines_relay_safe_and_openssl_verifies() {
    let tok = Tok::new();
    let long = "x".repeat(2500);
    let mail = format!(
        "From: alice@example.jp\nTo: b@example.com\nSubject: 8bit\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n日本語のメール \nFrom the start of a line\n{long}\nend\n"
    );
    let signed = sign_with(&tok, "01", &[], &mail);
    let bytes = std::fs::read(&signed).unwrap();
    assert!(bytes.is_ascii(), "signed mail must be 7-bit");
    assert!(bytes.split(|&b| b == b'\n').all(|l| l.len() <= 998), "no line longer than RFC 5322 allows");
    assert!(!String::from_utf8_lossy(&bytes).contains(&long), "the long line was encoded");
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(v.status.success(), "{}", stderr(&v));
    // What openssl extracts decodes back to the original text.
    let content = tok.path("content.eml");
    ok(Command::new("openssl").args(["cms", "-verify", "-noverify", "-in"]).arg(&signed).arg("-out").arg(&content));
    let c = std::fs::read_to_string(&content).unwrap();
    assert!(c.contains("Content-Transfer-Encoding: quoted-printable"));
    let qp = c.split("\r\n\r\n").nth(1).unwrap_or("");
    let d = String::from_utf8(mail_parser::decoders::quoted_printable::quoted_printable_decode(qp.as_bytes()).unwrap())
        .unwrap();
    assert!(d.contains("日本語のメール \r\nFrom the start of a line\r\n"), "{d}");
    assert!(d.contains(&long));
}

#[test]
fn sign_keeps_multipart_attachments_and_openssl_verifies() {
    let tok = Tok::new();
    let mail = "From: alice@example.jp\nTo: b@example.com\nSubject: att\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"XX\"\n\npreamble\n--XX\nContent-Type: text/plain; charset=utf-8\n\nsee attached – ok\n--XX\nContent-Type: application/octet-stream; name=\"a.bin\"\nContent-Transfer-Encoding: binary\n\n\u{1}\u{2}\u{3}\u{ff}binary\n--XX--\n";
    let signed = sign_with(&tok, "02", &[], mail);
    assert!(std::fs::read(&signed).unwrap().is_ascii());
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(v.status.success(), "{}", stderr(&v));
    let own = run(tok.cmd().args(["verify", "--in"]).arg(&signed));
    assert_eq!(code(&own), 0, "{}", stderr(&own));
}

#[test]
fn sign_refuses_from_address_not_in_certificate() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL.replace("alice@example.jp", "ceo@example.jp"));
    let out = run(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap()]));
    assert_clear_failure(&out, 6);
    assert!(stderr(&out).contains("ceo@example.jp is not in any certificate"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
}

#[test]
fn sign_refuses_mail_without_from() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", "To: b@example.com\nSubject: x\n\nbody\n");
    let out = run(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap()]));
    assert_clear_failure(&out, 2);
}

#[test]
fn sign_with_always_authenticate_key_logs_in_per_use_and_verifies() {
    let tok = Tok::new();
    // A key that asks for the PIN on every use, as a PIV 9C or JPKI signature key does.
    tok.keygen_with_cert("07", "consent", "EC:prime256v1", &["--always-auth"]);
    let p = pki();
    let log = tok.path("shim.log");
    let uri = format!("pkcs11:token={}?module-path={}", LABEL.replace(' ', "%20"), shim().display());
    let input = tok.write("mail.eml", MAIL);
    let out = tok.path("signed.eml");
    let o = run(tok
        .with_pin(&[
            "sign",
            "--token",
            &uri,
            "--key",
            "pkcs11:id=%07",
            "--in",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("SSMAX_SHIM_LOG", &log));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // CKU_USER (1), then CKU_CONTEXT_SPECIFIC (2) between C_SignInit and C_Sign, all accepted (rv 0).
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "login 1 0\nC_SignInit 0\nlogin 2 0\nC_Sign 0\n");
    // Valid for 30 days: sign warns that it expires soon.
    assert!(stderr(&o).contains("expires on"), "{}", stderr(&o));
    let v = openssl_verify(&out, &p.join("root.pem"));
    assert!(v.status.success(), "{}", stderr(&v));
}

#[test]
fn sign_output_file_is_written_atomically_and_not_left_half_written_on_failure() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL.replace("alice@", "nobody@"));
    let out = tok.path("signed.eml");
    std::fs::write(&out, "previous content").unwrap();
    let o = run(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    assert_eq!(code(&o), 6);
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "previous content");
    let leftovers: Vec<_> = std::fs::read_dir(tok.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".ssmax-card-"))
        .collect();
    assert!(leftovers.is_empty());
}

#[test]
fn sign_ecdsa_p384_uses_sha384_and_verifies_with_openssl() {
    let tok = Tok::new();
    tok.keygen_with_cert("09", "alice-p384", "EC:secp384r1", &[]);
    let signed = sign_with(&tok, "09", &[], MAIL);
    assert!(std::fs::read_to_string(&signed).unwrap().contains("micalg=sha-384"));
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(v.status.success(), "{}", stderr(&v));
    let own = run(tok.cmd().args(["verify", "--in"]).arg(&signed));
    assert!(stdout(&own).contains("ECDSA P-384 SHA-384"), "{}", stdout(&own));
}

#[test]
fn signature_carries_signing_time_and_smime_capabilities() {
    let tok = Tok::new();
    let signed = sign_with(&tok, "01", &[], MAIL);
    let p7s = tok.path("sig.p7s");
    ok(Command::new("openssl").args(["smime", "-pk7out", "-in"]).arg(&signed).arg("-out").arg(&p7s));
    let dump =
        stdout(&ok(Command::new("openssl").args(["cms", "-cmsout", "-print", "-inform", "PEM", "-in"]).arg(&p7s)));
    for want in ["signingTime", "S/MIME Capabilities", "messageDigest", "contentType", "aes-256-gcm"] {
        assert!(dump.contains(want), "{want} missing:\n{dump}");
    }
}

/// `--out` naming a FIFO (as `/dev/null` or a terminal would be): the signed mail is written into
/// it, and it is still a FIFO afterwards (renaming a temp file over it would replace it).
fn sign_into_fifo(tok: &Tok, agent: Option<&crate::support::agent::Agent>) {
    use std::os::unix::fs::FileTypeExt;
    let fifo = tok.path("out.fifo");
    ok(Command::new("mkfifo").arg(&fifo));
    let reader = Command::new("cat").arg(&fifo).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let input = tok.write("mail.eml", MAIL);
    let mut c = tok.with_pin(&["sign", "--in", input.to_str().unwrap(), "--out", fifo.to_str().unwrap()]);
    if let Some(a) = agent {
        c = tok.cmd();
        c.arg("--agent").arg("always").arg("--socket").arg(&a.socket).arg("sign").arg("--in").arg(&input);
        c.arg("--out").arg(&fifo);
    }
    let o = run(&mut c);
    let still_fifo = std::fs::symlink_metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo());
    if !still_fifo {
        let mut reader = reader;
        let _ = reader.kill();
        panic!("--out replaced the FIFO with a file: {}", stderr(&o));
    }
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let read = reader.wait_with_output().unwrap();
    let signed = tok.write("signed.eml", &read.stdout);
    assert!(openssl_verify(&signed, &pki().join("root.pem")).status.success(), "{}", stdout(&read));
}

#[test]
fn sign_writes_into_a_fifo_named_by_out_and_leaves_it_a_fifo() {
    sign_into_fifo(&Tok::new(), None);
}

#[test]
fn sign_through_the_agent_writes_into_a_fifo_named_by_out_and_leaves_it_a_fifo() {
    let tok = Tok::new();
    let agent = crate::support::agent::start_agent(&tok, "", "0");
    sign_into_fifo(&tok, Some(&agent));
}
