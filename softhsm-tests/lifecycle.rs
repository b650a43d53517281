//! Registration and renewal on the token: keygen, CSR, a real `openssl ca`, import, and mail.

use crate::support::*;
use std::path::PathBuf;
use std::process::Command;

/// A test CA of our own (openssl ca with a private database), backed by the demo org CA.
fn openssl_ca(tok: &Tok, csr: &PathBuf, out: &str) -> PathBuf {
    let p = pki();
    let db = tok.path("ca");
    std::fs::create_dir_all(&db).unwrap();
    std::fs::write(db.join("index.txt"), "").unwrap();
    std::fs::write(db.join("serial"), format!("{:04X}\n", std::process::id() % 0xffff)).unwrap();
    let cnf = tok.write(
        "ca.cnf",
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {db}/index.txt\nserial = {db}/serial\nnew_certs_dir = {db}\ndefault_md = sha256\ndefault_days = 365\npolicy = p\nunique_subject = no\ncopy_extensions = copy\nx509_extensions = user\n[p]\ncommonName = supplied\norganizationName = optional\n[user]\nbasicConstraints = critical,CA:FALSE\nkeyUsage = critical,digitalSignature,nonRepudiation,keyEncipherment,keyAgreement\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid\n",
            db = db.display()
        ),
    );
    let cert = tok.path(out);
    ok(Command::new("openssl")
        .args(["ca", "-batch", "-config"])
        .arg(&cnf)
        .arg("-cert")
        .arg(p.join("orgca.pem"))
        .arg("-keyfile")
        .arg(p.join("orgca.key"))
        .arg("-in")
        .arg(csr)
        .arg("-out")
        .arg(&cert)
        .arg("-notext"));
    cert
}

/// keygen → csr (checked by openssl req -verify) → openssl ca → import-cert; returns the key URI.
fn enrol(tok: &Tok, key_type: &str, id: &str) -> String {
    let o = run(&mut tok.with_pin(&["keygen", "--type", key_type, "--id", id, "--label", &format!("key-{id}")]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let uri = format!("pkcs11:id=%{id}");
    let csr = tok.path(&format!("req-{id}.pem"));
    let o = run(&mut tok.with_pin(&[
        "csr",
        "--key",
        &uri,
        "--email",
        "alice@example.jp",
        "--subject",
        "CN=Alice Example,O=Example Org",
        "--out",
        csr.to_str().unwrap(),
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = ok(Command::new("openssl").args(["req", "-verify", "-noout", "-text", "-in"]).arg(&csr));
    assert!(stderr(&v).contains("verify OK") || stdout(&v).contains("verify OK"), "{}{}", stdout(&v), stderr(&v));
    assert!(
        stdout(&v).contains("email:alice@example.jp") && stdout(&v).contains("E-mail Protection"),
        "{}",
        stdout(&v)
    );
    let cert = openssl_ca(tok, &csr, &format!("cert-{id}.pem"));
    let o = run(&mut tok.with_pin(&["import-cert", "--in", cert.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    uri
}

#[test]
fn full_enrolment_with_openssl_ca_then_the_new_certificate_signs_mail_openssl_verifies() {
    let tok = Tok::new();
    for (kt, id) in [("rsa2048", "21"), ("p256", "22")] {
        let uri = enrol(&tok, kt, id);
        let input = tok.write("mail.eml", MAIL);
        let signed = tok.path("signed.eml");
        let o = run(&mut tok.with_pin(&[
            "sign",
            "--key",
            &uri,
            "--in",
            input.to_str().unwrap(),
            "--out",
            signed.to_str().unwrap(),
        ]));
        assert_eq!(code(&o), 0, "{kt}: {}", stderr(&o));
        let v = openssl_verify(&signed, &pki().join("root.pem"));
        assert!(v.status.success(), "{kt}: {}", stderr(&v));
    }
    // Born on the token: sensitive, never extractable.
    let list = stdout(&tok.p11(&["--list-objects", "--type", "privkey"]));
    for id in ["21", "22"] {
        let block = list
            .split("Private Key Object")
            .find(|b| b.contains(&format!("ID:         {id}")))
            .unwrap_or_else(|| panic!("key {id}: {list}"));
        assert!(
            block.contains("never extractable") && block.contains("always sensitive") && block.contains("local"),
            "{block}"
        );
    }
}

#[test]
fn after_renewal_old_mail_still_decrypts_and_the_old_key_no_longer_signs() {
    let tok = Tok::new();
    let secret = tok.write("secret.txt", "Content-Type: text/plain\r\n\r\nold contract\r\n");
    let old_mail = tok.path("old.eml");
    ok(Command::new("openssl")
        .args(["cms", "-encrypt", "-aes256", "-in"])
        .arg(&secret)
        .arg("-recip")
        .arg(pki().join("alice.pem"))
        .arg("-out")
        .arg(&old_mail));
    enrol(&tok, "p256", "31");
    let o = run(&mut tok.with_pin(&["decrypt", "--in", old_mail.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("old contract"));
    // New signatures come from the renewed key...
    let input = tok.write("mail.eml", MAIL);
    let o = run(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("with key 'key-31'"), "{}", stderr(&o));
    // ...never from the old one.
    let o = run(&mut tok.with_pin(&["sign", "--key", "pkcs11:id=%01", "--in", input.to_str().unwrap()]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("only to decrypt old mail"), "{}", stderr(&o));
}

#[test]
fn importing_a_certificate_for_another_key_is_refused() {
    let tok = Tok::new();
    let o = run(&mut tok.with_pin(&["import-cert", "--in", pki().join("bob.pem").to_str().unwrap()]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("no key on token 'ssmax test' matches the public key"), "{}", stderr(&o));
    // Naming a key the certificate does not belong to is refused too.
    let o = run(&mut tok.with_pin(&[
        "import-cert",
        "--key",
        "pkcs11:id=%02",
        "--in",
        pki().join("alice-wrong-eku.pem").to_str().unwrap(),
    ]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("belongs to key 01, not 02"), "{}", stderr(&o));
}

#[test]
fn keygen_is_refused_where_the_profile_says_keys_are_issued_not_generated() {
    let tok = Tok::new();
    let jpki = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pkcs11-profiles/jpki.toml")).unwrap();
    let reason = jpki.lines().find(|l| l.starts_with("no_generate_reason")).unwrap();
    let soft = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pkcs11-profiles/softhsm2.toml")).unwrap();
    std::fs::create_dir_all(tok.path("profiles")).unwrap();
    tok.write(
        "profiles/softhsm2.toml",
        soft.replace("can_decrypt = true", &format!("can_decrypt = true\ncan_generate = false\n{reason}")),
    );
    let config = tok.write("config.toml", format!("profiles_dir = \"{}\"\n", tok.path("profiles").display()));
    let o = run(&mut tok.with_pin(&["keygen", "--config", config.to_str().unwrap()]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("issued by J-LIS"), "{}", stderr(&o));
}

#[test]
fn anchors_and_the_org_certificate_go_on_the_token_and_certs_lists_them() {
    let tok = Tok::for_user("bob", "bob card");
    let p = pki();
    let o = run(&mut tok.with_pin(&[
        "import-anchor",
        "--in",
        p.join("rogue-root.pem").to_str().unwrap(),
        "--label",
        "test",
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&mut tok.with_pin(&["import-anchor", "--org", "--in", p.join("org.pem").to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&mut tok.with_pin(&["import-anchor", "--in", p.join("bob.pem").to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    let o = run(tok.cmd().arg("certs"));
    let s = stdout(&o);
    assert!(s.contains("anchor id") && s.contains("ssmax-anchor-test") && s.contains("CN=Rogue Root"), "{s}");
    assert!(s.contains("org    id") && s.contains("ssmax-org-Example Org (mail)"), "{s}");
    assert!(s.contains("user   id 01") && s.contains("days left"), "{s}");
}

#[test]
fn import_cert_keeps_a_bundles_issuers_so_a_correspondent_trusting_only_the_root_verifies() {
    for format in ["pem", "pkcs7"] {
        let tok = Tok::new();
        // No Example Org CA on this token: the chain must come from the bundle the CA hands out.
        tok.p11(&["--delete-object", "--type", "cert", "--id", "a1"]);
        let o = run(&mut tok.with_pin(&["keygen", "--type", "p256", "--id", "31", "--label", "key-31"]));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let csr = tok.path("req.pem");
        let o = run(&mut tok.with_pin(&[
            "csr",
            "--key",
            "pkcs11:id=%31",
            "--email",
            "alice@example.jp",
            "--subject",
            "CN=Alice Example,O=Example Org",
            "--out",
            csr.to_str().unwrap(),
        ]));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        let cert = openssl_ca(&tok, &csr, "cert.pem");
        let p = pki();
        let pem = [
            std::fs::read_to_string(&cert).unwrap(),
            std::fs::read_to_string(p.join("orgca.pem")).unwrap(),
            std::fs::read_to_string(p.join("root.pem")).unwrap(),
        ]
        .concat();
        let bundle = tok.write("bundle.pem", &pem);
        let bundle = if format == "pkcs7" {
            let p7 = tok.path("bundle.p7b");
            ok(Command::new("openssl")
                .args(["crl2pkcs7", "-nocrl", "-outform", "DER", "-certfile"])
                .arg(&bundle)
                .arg("-out")
                .arg(&p7));
            p7
        } else {
            bundle
        };
        let o = run(&mut tok.with_pin(&["import-cert", "--in", bundle.to_str().unwrap()]));
        assert_eq!(code(&o), 0, "{format}: {}", stderr(&o));
        let e = stderr(&o);
        assert!(e.contains("stored the issuer 'CN=Example Org CA,O=Example Org'"), "{format}: {e}");
        assert!(e.contains("not stored: the root 'CN=SSMAX Demo Root,O=SSMAX Demo'"), "{format}: {e}");
        // The issuer is a plain certificate on the token, never a trust anchor.
        let objects = stdout(&tok.p11(&["--list-objects", "--type", "cert"]));
        assert_eq!(objects.matches("label:      ssmax-anchor").count(), 1, "{format}: {objects}");
        assert!(objects.contains("label:      ca-"), "{format}: {objects}");
        let input = tok.write("mail.eml", MAIL);
        let signed = tok.path("signed.eml");
        let o = run(&mut tok.with_pin(&[
            "sign",
            "--key",
            "pkcs11:id=%31",
            "--in",
            input.to_str().unwrap(),
            "--out",
            signed.to_str().unwrap(),
        ]));
        assert_eq!(code(&o), 0, "{format}: {}", stderr(&o));
        let v = openssl_verify(&signed, &p.join("root.pem"));
        assert!(
            v.status.success(),
            "{format}: only the root is trusted, the chain travels in the signature: {}",
            stderr(&v)
        );
    }
}
