//! A corpus of broken inputs: each gets exit 2 and one clear line, never a panic.

use crate::support::*;

fn corpus() -> Vec<(&'static str, Vec<u8>)> {
    let sig_ct =
        "Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"b\"\n\n";
    let mut deep = String::from("From: alice@example.jp\n");
    for i in 0..40 {
        deep.push_str(&format!("Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"));
    }
    deep.push_str("Content-Type: text/plain\n\nx\n");
    for i in (0..40).rev() {
        deep.push_str(&format!("--b{i}--\n"));
    }
    vec![
        ("empty", Vec::new()),
        ("binary garbage", vec![0xff, 0xfe, 0x00, 0x13, 0x37]),
        ("truncated DER", vec![0x30, 0x82, 0x10, 0x00, 0x06, 0x09]),
        ("DER that is not CMS", vec![0x30, 0x03, 0x02, 0x01, 0x05]),
        ("bad PEM", b"-----BEGIN CMS-----\n!!!!\n-----END CMS-----\n".to_vec()),
        ("header line without colon", b"From: a@b\nthis is not a header\n\nbody\n".to_vec()),
        ("plain mail", b"From: alice@example.jp\nContent-Type: text/plain\n\nhello\n".to_vec()),
        ("signed without boundary", b"From: alice@example.jp\nContent-Type: multipart/signed; protocol=\"application/pkcs7-signature\"\n\nx\n".to_vec()),
        ("signed with one part", format!("From: alice@example.jp\n{sig_ct}--b\nContent-Type: text/plain\n\nx\n--b--\n").into_bytes()),
        ("signed never closed", format!("From: alice@example.jp\n{sig_ct}--b\nContent-Type: text/plain\n\nx\n--b\nContent-Type: application/pkcs7-signature\n\nAAAA\n").into_bytes()),
        (
            "signature not base64",
            format!("From: alice@example.jp\n{sig_ct}--b\nContent-Type: text/plain\n\nx\n--b\nContent-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\n%%%%\n--b--\n").into_bytes(),
        ),
        (
            "signature is garbage DER",
            format!("From: alice@example.jp\n{sig_ct}--b\nContent-Type: text/plain\n\nx\n--b\nContent-Type: application/pkcs7-signature\nContent-Transfer-Encoding: base64\n\nMAMCAQU=\n--b--\n").into_bytes(),
        ),
        ("pkcs7-mime with garbage", b"From: a@b.example\nContent-Type: application/pkcs7-mime; smime-type=enveloped-data\nContent-Transfer-Encoding: base64\n\nMIIBIjAN\n".to_vec()),
        ("deeply nested", deep.into_bytes()),
    ]
}

#[test]
fn malformed_inputs_exit_2_with_a_clear_error_for_verify_decrypt_and_sign() {
    let tok = Tok::new();
    for (name, data) in corpus() {
        let input = tok.write("bad.eml", &data);
        for cmd in ["verify", "decrypt", "sign"] {
            let o = run(&mut tok.with_pin(&[cmd, "--in", input.to_str().unwrap()]));
            let c = code(&o);
            // sign accepts well-formed plain mail; everything else is refused as malformed.
            if cmd == "sign"
                && (name == "plain mail"
                    || name.starts_with("signed")
                    || name.starts_with("signature")
                    || name.starts_with("pkcs7"))
            {
                continue;
            }
            if cmd == "sign"
                && (name == "empty" || name.contains("DER") || name.contains("garbage") || name.contains("PEM"))
            {
                // No From address: refused as a usage error too.
                assert_eq!(c, 2, "{cmd} on {name}: {}", stderr(&o));
                continue;
            }
            assert_clear_failure(&o, 2);
            assert!(stdout(&o).is_empty(), "{cmd} on {name} wrote output");
        }
    }
}

#[test]
fn oversized_input_is_refused() {
    let tok = Tok::new();
    let big = tok.path("big.eml");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(65 * 1024 * 1024).unwrap();
    let o = run(&mut tok.with_pin(&["verify", "--in", big.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("larger than 64 MiB"), "{}", stderr(&o));
}

#[test]
fn pin_value_in_a_token_uri_is_refused_as_usage_error() {
    let tok = Tok::new();
    let o = run(tok.cmd().args(["status", "--token", "pkcs11:token=x?pin-value=123456"]));
    assert_clear_failure(&o, 2);
    assert!(!stderr(&o).contains("123456"));
}
