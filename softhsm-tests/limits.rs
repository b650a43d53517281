//! Hostile sizes at the edges (README: input limits): each is refused with exit 2 and a message
//! naming the bound, or — just inside the bound — handled correctly.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A throwaway self-signed EC certificate (and its key) made by openssl; `ext` lines go into
/// the certificate's extension section.
fn self_signed(tok: &Tok, name: &str, ext: &str) -> (PathBuf, PathBuf) {
    let cfg = tok.write(&format!("{name}.cnf"), format!("[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {name}\n[ext]\nkeyUsage = digitalSignature\nextendedKeyUsage = emailProtection\nsubjectAltName = email:{name}@example.jp\n{ext}\n"));
    let (key, cert) = (tok.path(&format!("{name}.key")), tok.path(&format!("{name}.pem")));
    ok(Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "30",
            "-extensions",
            "ext",
            "-config",
        ])
        .arg(&cfg)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

fn encrypt_to(tok: &Tok, recipients: &[&Path]) -> PathBuf {
    let input = tok.write("secret.txt", "Content-Type: text/plain\r\n\r\nfor the whole list\r\n");
    let out = tok.path("to-many.eml");
    ok(Command::new("openssl")
        .args(["cms", "-encrypt", "-aes256", "-in"])
        .arg(&input)
        .arg("-out")
        .arg(&out)
        .args(recipients));
    out
}

#[test]
fn decrypt_finds_its_recipient_among_a_thousand_and_refuses_more() {
    let tok = Tok::new();
    let (other, _) = self_signed(&tok, "listmember", "");
    let alice = pki().join("alice.pem");
    // Alice last of 1000, as a mail to a long list arrives in sender order.
    let mut recipients: Vec<&Path> = vec![other.as_path(); 999];
    recipients.push(&alice);
    let mail = encrypt_to(&tok, &recipients);
    let o = run(&mut tok.with_pin(&["decrypt", "--in", mail.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("for the whole list"));

    recipients.push(other.as_path());
    let mail = encrypt_to(&tok, &recipients);
    let o = run(&mut tok.with_pin(&["decrypt", "--in", mail.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(
        stderr(&o)
            .contains("a SET with 1001 elements (recipients, certificates or attributes); more than 1000 are refused"),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).is_empty());
}

#[test]
fn verify_refuses_a_signature_carrying_more_certificates_than_the_limit() {
    let tok = Tok::new();
    let bundle = tok.path("bundle.pem");
    let mut pem = String::new();
    for i in 0..101 {
        let (c, _) = self_signed(&tok, &format!("filler{i}"), "");
        pem.push_str(&std::fs::read_to_string(c).unwrap());
    }
    std::fs::write(&bundle, pem).unwrap();
    let body = tok.write("body.txt", "Content-Type: text/plain\r\n\r\nmany certificates\r\n");
    let out = tok.path("signed.eml");
    ok(Command::new("openssl")
        .args(["cms", "-sign", "-in"])
        .arg(&body)
        .arg("-signer")
        .arg(pki().join("alice.pem"))
        .arg("-inkey")
        .arg(pki().join("alice.key"))
        .arg("-certfile")
        .arg(&bundle)
        .args(["-from", "alice@example.jp", "-out"])
        .arg(&out));
    let o = run(tok.cmd().args(["verify", "--in"]).arg(&out));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("carries 102 certificates; more than 100 are refused"), "{}", stderr(&o));
}

#[test]
fn verify_refuses_a_certificate_with_a_huge_extension() {
    let tok = Tok::new();
    // 70,000 characters of comment: a valid certificate, just far past anything real.
    let (cert, key) = self_signed(&tok, "bloated", &format!("nsComment = \"{}\"", "A".repeat(70_000)));
    let body = tok.write("body.txt", "Content-Type: text/plain\r\n\r\nlook at my certificate\r\n");
    let out = tok.path("signed.eml");
    ok(Command::new("openssl")
        .args(["cms", "-sign", "-in"])
        .arg(&body)
        .arg("-signer")
        .arg(&cert)
        .arg("-inkey")
        .arg(&key)
        .args(["-from", "bloated@example.jp", "-out"])
        .arg(&out));
    let o = run(tok.cmd().args(["verify", "--ca"]).arg(&cert).arg("--in").arg(&out));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("larger than the 64 KiB accepted"), "{}", stderr(&o));
}

#[test]
fn a_multipart_with_more_parts_than_the_limit_is_refused_and_one_at_the_limit_signs() {
    let tok = Tok::new();
    let mail = |n: usize| {
        let mut m = String::from("From: Alice Example <alice@example.jp>\nTo: bob@example.com\nSubject: parts\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"p\"\n\n");
        for i in 0..n {
            m.push_str(&format!("--p\nContent-Type: text/plain\n\npart {i}\n"));
        }
        m.push_str("--p--\n");
        m
    };
    let ok_mail = tok.write("ok.eml", mail(1000));
    let signed = tok.path("signed.eml");
    let o = run(&mut tok.with_pin(&["sign", "--in", ok_mail.to_str().unwrap(), "--out", signed.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert_eq!(code(&v), 0, "{}", stderr(&v));

    let bad = tok.write("bad.eml", mail(1001));
    let o = run(&mut tok.with_pin(&["sign", "--in", bad.to_str().unwrap(), "--out", signed.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("more than 1000 parts"), "{}", stderr(&o));
}

#[test]
fn header_fields_with_invalid_utf8_are_signed_and_verified_without_being_trusted_as_names() {
    let tok = Tok::new();
    // Latin-1 display name and a broken UTF-8 subject, as old clients still send them.
    let m =
        b"From: Ali\xe7e \xff <alice@example.jp>\nTo: bob@example.com\nSubject: caf\xc3\x28 menu\n\nlunch?\n".to_vec();
    let input = tok.write("latin1.eml", &m);
    let signed = tok.path("signed.eml");
    let o = run(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap(), "--out", signed.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    let o = run(tok.cmd().args(["verify", "--in"]).arg(&signed));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("From matches: alice@example.jp"), "{}", stdout(&o));

    // The same bytes where an address must be read: no address in them is a clear refusal.
    let input = tok.write("noaddr.eml", b"From: \xff\xfe\xfd\nTo: bob@example.com\n\nhi\n".as_slice());
    let o = run(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
}

/// One DER TLV with a definite length.
fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    match body.len() {
        n if n < 0x80 => out.push(n as u8),
        n => {
            let bytes: Vec<u8> = n.to_be_bytes().into_iter().skip_while(|&b| b == 0).collect();
            out.push(0x80 | bytes.len() as u8);
            out.extend(bytes);
        }
    }
    out.extend_from_slice(body);
    out
}

#[test]
fn enveloped_data_with_a_hundred_thousand_recipients_is_refused_before_parsing() {
    // Valid, distinct KeyTransRecipientInfos in descending order: without the pre-scan the DER
    // parser sorts this SET with ~5·10⁹ re-encoding comparisons (hours), all before it could
    // notice that nothing else follows.
    let tok = Tok::new();
    let n = 100_000u32;
    let rsa = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
    let mut set = Vec::new();
    for i in (0..n).rev() {
        let serial = [0x02, 0x03, 1 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
        let ias = tlv(0x30, &[tlv(0x30, &[]), serial.to_vec()].concat());
        set.extend(tlv(0x30, &[vec![0x02, 0x01, 0x00], ias, tlv(0x30, &rsa), vec![0x04, 0x01, 0x00]].concat()));
    }
    let enveloped = tlv(0x30, &[vec![0x02, 0x01, 0x00], tlv(0x31, &set)].concat());
    let oid = [0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03];
    let der = tlv(0x30, &[oid.to_vec(), tlv(0xa0, &enveloped)].concat());
    let file = tok.write("many.p7m", &der);
    for cmd in ["decrypt", "verify"] {
        let o = run(&mut tok.with_pin(&[cmd, "--in", file.to_str().unwrap()]));
        assert_clear_failure(&o, 2);
        assert!(stderr(&o).contains("a SET with 100000 elements"), "{cmd}: {}", stderr(&o));
    }
}

#[test]
fn ber_with_indefinite_lengths_gets_the_same_bounds_as_der() {
    let tok = Tok::new();
    // ContentInfo { envelopedData, [0] { EnvelopedData { version, <body> } } }, all indefinite.
    let envelope = |body: &[u8]| {
        let mut v = vec![
            0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03, 0xa0, 0x80, 0x30, 0x80, 0x02,
            0x01, 0x00,
        ];
        v.extend_from_slice(body);
        v.extend([0, 0, 0, 0, 0, 0]);
        v
    };
    let nested: Vec<u8> = [0x30u8, 0x80].repeat(100);
    let mut wide_set = vec![0x31, 0x80];
    for _ in 0..1001 {
        wide_set.extend([0x30, 0x80, 0x00, 0x00]);
    }
    wide_set.extend([0x00, 0x00]);
    let mut many = vec![0x30, 0x80];
    for _ in 0..(1 << 20) + 1 {
        many.extend([0x30, 0x80, 0x00, 0x00]);
    }
    many.extend([0x00, 0x00]);
    for (what, body, reason) in [
        ("nesting", envelope(&nested), "nested deeper than 64 levels"),
        ("a wide SET", envelope(&wide_set), "a SET with 1001 elements"),
        ("many values", envelope(&many), "constructed values; refused"),
    ] {
        let f = tok.write("ber.p7m", &body);
        for cmd in ["decrypt", "verify"] {
            let o = run(&mut tok.with_pin(&[cmd, "--in", f.to_str().unwrap()]));
            assert_clear_failure(&o, 2);
            assert!(stderr(&o).contains(reason), "{what} via {cmd}: {}", stderr(&o));
        }
    }
}

#[test]
fn verify_refuses_a_certificate_file_that_is_not_a_regular_file_without_reading_it() {
    let tok = Tok::new();
    let mail = tok.write("mail.eml", MAIL);
    // A FIFO whose writer never closes: reading it would wait for ever.
    let fifo = tok.path("anchors.fifo");
    ok(Command::new("mkfifo").arg(&fifo));
    let _writer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    for (flag, path, kind) in [
        ("--ca", Path::new("/dev/zero"), "a character device"),
        ("--certfile", fifo.as_path(), "a FIFO"),
        ("--ca", tok.dir.path(), "a directory"),
    ] {
        let o = run(tok.cmd().args(["verify", "--no-token", "--in"]).arg(&mail).arg(flag).arg(path));
        assert_clear_failure(&o, 2);
        assert!(
            stderr(&o).contains(kind) && stderr(&o).contains("not a regular file"),
            "{flag} {}: {}",
            path.display(),
            stderr(&o)
        );
    }
    let o = run(tok.cmd().arg("--config").arg("/dev/zero").arg("status"));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("/dev/zero is a character device"), "{}", stderr(&o));
}

#[test]
fn a_200_mb_certificate_file_is_refused_at_its_limit_not_read() {
    let tok = Tok::new();
    let mail = tok.write("mail.eml", MAIL);
    let huge = tok.path("huge.pem");
    std::fs::File::create(&huge).unwrap().set_len(200 << 20).unwrap();
    let mut cmd = tok.cmd();
    cmd.args(["verify", "--no-token", "--in"]).arg(&mail).arg("--ca").arg(&huge);
    let (o, peak_kib) = run_measured(&cmd);
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("is larger than 4 MiB; refused"), "{}", stderr(&o));
    // The whole file would be 204,800 KiB; the process itself needs a few MiB.
    assert!(peak_kib < 32 * 1024, "peak resident memory {peak_kib} KiB");
}
