//! Independent S/MIME implementations as peers, their output taken as produced (BER with
//! indefinite lengths and chunked content, certificates repeated — nothing re-encoded):
//! NSS `cmsutil` (Thunderbird's S/MIME library), `gpgsm` and Bouncy Castle (Debian's Java
//! packages, driven by peers/BcPeer.java) sign as bob and encrypt to alice; ssmax-card verifies
//! and decrypts on alice's token. Our signatures verify in each of them with nothing but the
//! SSMAX root trusted, and Bouncy Castle opens our SSMAX attachments with the organisation's key.
//!
//! What a peer cannot do is said where it would be tested: NSS `cmsutil` makes no ECDH
//! recipients and no AuthEnvelopedData; gpgsm 2.2 makes no RSA-PSS signatures, no OAEP and no
//! AuthEnvelopedData; Bouncy Castle 1.72's JCA signer makes no RSA-PSS with MGF1 over another
//! hash (openssl does, in verify.rs) and has no streaming AuthEnvelopedData generator.

use crate::support::*;
use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::Command;

const BOB_ENTITY: &str =
    "Content-Type: text/plain; charset=utf-8\r\n\r\nHello Alice,\r\n\r\nthe contract is signed.\r\n";

/// An NSS database holding bob's key (from a PKCS#12 with his CA), alice's certificate to encrypt
/// to, and the SSMAX root as the one trusted anchor.
fn nss_db(tok: &Tok, name: &str, with_bob: bool) -> PathBuf {
    let p = pki();
    let dir = tok.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sql:{}", dir.display());
    ok(Command::new("certutil").args(["-N", "--empty-password", "-d", &db]));
    ok(Command::new("certutil").args(["-A", "-n", "root", "-t", "C,C,C", "-d", &db, "-i"]).arg(p.join("root.pem")));
    if with_bob {
        let p12 = tok.path(&format!("{name}-bob.p12"));
        ok(Command::new("openssl")
            .args(["pkcs12", "-export", "-name", "bob", "-passout", "pass:x", "-inkey"])
            .arg(p.join("bob.key"))
            .arg("-in")
            .arg(p.join("bob.pem"))
            .arg("-certfile")
            .arg(p.join("partnerca.pem"))
            .arg("-out")
            .arg(&p12));
        ok(Command::new("pk12util").args(["-W", "x", "-d", &db, "-i"]).arg(&p12));
        ok(Command::new("certutil").args(["-A", "-n", "alice", "-t", ",,", "-d", &db, "-i"]).arg(p.join("alice.pem")));
    }
    dir
}

fn cmsutil(db: &Path, args: &[&str]) -> std::process::Output {
    ok(Command::new("cmsutil").args(args).arg("-d").arg(format!("sql:{}", db.display())))
}

/// A private GnuPG home for gpgsm: bob's key imported from PKCS#12, the SSMAX root trusted,
/// no CRL fetching (the demo PKI has no distribution points). The agent stops with it.
struct Gpgsm {
    home: PathBuf,
}

impl Gpgsm {
    fn new(tok: &Tok, name: &str, with_bob: bool) -> Gpgsm {
        let p = pki();
        let home = tok.path(name);
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        std::fs::write(home.join("gpg-agent.conf"), "allow-loopback-pinentry\n").unwrap();
        std::fs::write(home.join("gpgsm.conf"), "disable-crl-checks\ndisable-dirmngr\n").unwrap();
        let g = Gpgsm { home };
        ok(g.cmd(&["--import"]).arg(p.join("root.pem")));
        let fpr = stdout(&ok(&mut g.cmd(&["--with-colons", "--fingerprint", "SSMAX Demo Root"])));
        let fpr = fpr
            .lines()
            .find_map(|l| l.strip_prefix("fpr:"))
            .and_then(|l| l.split(':').nth(8))
            .expect("root fingerprint")
            .to_string();
        std::fs::write(g.home.join("trustlist.txt"), format!("{fpr} S relax\n")).unwrap();
        if with_bob {
            // gpgsm 2.2 reads PKCS#12 with 3DES key bags and a plain certificate bag only.
            let p12 = tok.path(&format!("{name}-bob.p12"));
            ok(Command::new("openssl")
                .args([
                    "pkcs12",
                    "-export",
                    "-name",
                    "bob",
                    "-keypbe",
                    "PBE-SHA1-3DES",
                    "-certpbe",
                    "NONE",
                    "-macalg",
                    "sha1",
                    "-passout",
                    "pass:x",
                    "-inkey",
                ])
                .arg(p.join("bob.key"))
                .arg("-in")
                .arg(p.join("bob.pem"))
                .arg("-out")
                .arg(&p12));
            g.with_passphrase(g.cmd(&["--import"]).arg(&p12));
            ok(g.cmd(&["--import"]).arg(p.join("partnerca.pem")).arg(p.join("orgca.pem")).arg(p.join("alice.pem")));
        }
        g
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("gpgsm");
        // Options end at the first file name: the passphrase descriptor goes first, always.
        c.env("GNUPGHOME", &self.home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase-fd", "0"])
            .args(args);
        c
    }

    /// The passphrase of the imported key on descriptor 0, as gpgsm's loopback mode reads it.
    fn with_passphrase(&self, cmd: &mut Command) -> std::process::Output {
        use std::io::Write;
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("gpgsm");
        child.stdin.take().unwrap().write_all(b"x\n").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
        out
    }
}

impl Drop for Gpgsm {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf").env("GNUPGHOME", &self.home).args(["--kill", "all"]).output();
    }
}

fn b64_lines(der: &[u8]) -> String {
    let s = base64::engine::general_purpose::STANDARD.encode(der);
    s.as_bytes().chunks(76).map(|l| format!("{}\r\n", std::str::from_utf8(l).unwrap())).collect()
}

const BOB_HEADERS: &str = "From: Bob Partner <bob@partner.example>\r\nTo: Alice Example <alice@example.jp>\r\nSubject: contract\r\nDate: Wed, 02 Dec 2026 10:00:00 +0900\r\nMIME-Version: 1.0\r\n";

/// A multipart/signed mail around a peer's detached signature, as its mail client sends it.
fn multipart_signed(entity: &str, signature: &[u8]) -> String {
    format!(
        "{BOB_HEADERS}Content-Type: multipart/signed; protocol=\"application/pkcs7-signature\"; micalg=sha-256; boundary=\"peer-b1\"\r\n\r\n--peer-b1\r\n{entity}\r\n--peer-b1\r\nContent-Type: application/pkcs7-signature; name=\"smime.p7s\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7s\"\r\n\r\n{}--peer-b1--\r\n",
        b64_lines(signature)
    )
}

/// An application/pkcs7-mime mail around a peer's signed-data or enveloped-data.
fn pkcs7_mime(smime_type: &str, der: &[u8]) -> String {
    format!(
        "{BOB_HEADERS}Content-Type: application/pkcs7-mime; smime-type={smime_type}; name=\"smime.p7m\"\r\nContent-Transfer-Encoding: base64\r\nContent-Disposition: attachment; filename=\"smime.p7m\"\r\n\r\n{}",
        b64_lines(der)
    )
}

/// A peer's signature as its mail client sends it: multipart/signed or application/pkcs7-mime.
fn signed_mail(form: &str, der: &[u8]) -> String {
    if form == "detached" {
        multipart_signed(BOB_ENTITY, der)
    } else {
        pkcs7_mime("signed-data", der)
    }
}

/// A peer's enveloped-data, as its mail client sends it, decrypts on alice's token; the success
/// line names what was used.
fn encrypted_mail_decrypts(tok: &Tok, peer: &str, der: &[u8], names: &[&str]) {
    assert_ber(der, peer);
    let mail = tok.write("peer-env.eml", pkcs7_mime("enveloped-data", der));
    let o = run(&mut tok.with_pin(&["decrypt", "--in", mail.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{peer}: {}", stderr(&o));
    assert!(stdout(&o).contains("the contract is signed."), "{peer}: {}", stdout(&o));
    for name in names {
        assert!(stderr(&o).contains(name), "{peer}: {name}: {}", stderr(&o));
    }
}

fn assert_ber(der: &[u8], who: &str) {
    assert_eq!(&der[..2], &[0x30, 0x80], "{who} writes indefinite lengths; the test must keep its output as produced");
}

/// The peer's signed mail verifies with bob's chain up to the root on alice's token; one byte
/// changed in the signed text fails as a verification (1), not as malformed input (2).
fn signed_mail_verifies_and_a_tamper_fails(tok: &Tok, name: &str, mail: &str) {
    let file = tok.write(&format!("{name}.eml"), mail);
    let o = run(tok.cmd().args(["verify", "--in"]).arg(&file));
    assert_eq!(code(&o), 0, "{name}: {}", stderr(&o));
    let s = stdout(&o);
    assert!(s.contains("Good signature from CN=Bob Partner,O=Partner Org <bob@partner.example>"), "{name}: {s}");
    assert!(s.contains("From matches: bob@partner.example"), "{name}: {s}");
    let tampered = tampered_text(mail);
    let file = tok.write(&format!("{name}-tampered.eml"), tampered);
    let o = run(tok.cmd().args(["verify", "--in"]).arg(&file));
    assert_clear_failure(&o, 1);
}

/// `contract` → `contrast` in the signed text, wherever it is (clear text or inside base64 CMS).
fn tampered_text(mail: &str) -> String {
    if mail.contains("the contract is signed") {
        return mail.replace("the contract is signed", "the contrast is signed");
    }
    let (head, body) = mail.split_once("\r\n\r\n").unwrap();
    let mut der = base64::engine::general_purpose::STANDARD.decode(body.replace("\r\n", "")).unwrap();
    let at = der.windows(8).position(|w| w == b"contract").expect("the content is inside the CMS");
    der[at + 6] = b's';
    format!("{head}\r\n\r\n{}", b64_lines(&der))
}

#[test]
fn nss_signed_mail_verifies_detached_and_opaque() {
    let tok = Tok::for_user("alice", LABEL);
    let db = nss_db(&tok, "nss", true);
    let entity = tok.write("entity.txt", BOB_ENTITY);
    let bob = std::fs::read(pki().join("bob.der")).unwrap();
    for (form, flags) in [("detached", &["-T"][..]), ("opaque", &[][..])] {
        let out = tok.path(&format!("nss-{form}.p7"));
        let mut args = vec!["-S", "-N", "bob", "-G", "-P", "-i", s(&entity), "-o", s(&out)];
        args.extend_from_slice(flags);
        cmsutil(&db, &args);
        let der = std::fs::read(&out).unwrap();
        assert_ber(&der, "cmsutil");
        assert_eq!(
            der.windows(bob.len()).filter(|w| *w == bob.as_slice()).count(),
            2,
            "NSS carries the signer's certificate twice"
        );
        signed_mail_verifies_and_a_tamper_fails(&tok, &format!("nss-{form}"), &signed_mail(form, &der));
    }
}

#[test]
fn nss_encrypted_mail_decrypts_on_the_token() {
    let tok = Tok::for_user("alice", LABEL);
    let db = nss_db(&tok, "nss", true);
    let entity = tok.write("entity.txt", BOB_ENTITY);
    let env = tok.path("nss-env.p7m");
    // cmsutil makes RSA key transport (PKCS#1 v1.5) with AES-CBC; it cannot make ECDH recipients.
    cmsutil(&db, &["-E", "-r", "alice", "-i", entity.to_str().unwrap(), "-o", env.to_str().unwrap()]);
    encrypted_mail_decrypts(&tok, "cmsutil", &std::fs::read(&env).unwrap(), &["RSA PKCS#1 v1.5, AES-"]);
}

#[test]
fn gpgsm_signed_mail_verifies_detached_and_opaque() {
    let tok = Tok::for_user("alice", LABEL);
    let g = Gpgsm::new(&tok, "gnupg", true);
    let entity = tok.write("entity.txt", BOB_ENTITY);
    for (form, command) in [("detached", "--detach-sign"), ("opaque", "--sign")] {
        let out = tok.path(&format!("gpgsm-{form}.p7"));
        g.with_passphrase(
            g.cmd(&["-u", "bob@partner.example", "--include-certs", "-1", command, "-o"]).arg(&out).arg(&entity),
        );
        let der = std::fs::read(&out).unwrap();
        assert_ber(&der, "gpgsm");
        signed_mail_verifies_and_a_tamper_fails(&tok, &format!("gpgsm-{form}"), &signed_mail(form, &der));
    }
}

#[test]
fn gpgsm_encrypted_mail_decrypts_on_the_token() {
    let tok = Tok::for_user("alice", LABEL);
    let g = Gpgsm::new(&tok, "gnupg", true);
    let entity = tok.write("entity.txt", BOB_ENTITY);
    let env = tok.path("gpgsm-env.p7m");
    ok(g.cmd(&["-r", "alice@example.jp", "--encrypt", "-o"]).arg(&env).arg(&entity));
    encrypted_mail_decrypts(&tok, "gpgsm", &std::fs::read(&env).unwrap(), &["RSA PKCS#1 v1.5"]);
}

/// Our detached signature over a small entity, made on alice's token with the key `key_id`
/// (RSA-PSS when `pss`); the entity and the signature files.
fn our_signature(tok: &Tok, key_id: &str, pss: bool) -> (PathBuf, PathBuf) {
    let entity = tok.write("ours-entity.txt", "Content-Type: text/plain; charset=utf-8\r\n\r\nFrom the card.\r\n");
    let sig = tok.path(&format!("ours-{key_id}-{pss}.p7s"));
    let key = format!("pkcs11:id=%{key_id}");
    let mut args = vec![
        "sign",
        "--key",
        &key,
        "--signature-only",
        "--from",
        "alice@example.jp",
        "--in",
        s(&entity),
        "--out",
        s(&sig),
    ];
    if pss {
        args.push("--pss");
    }
    ok(&mut tok.with_pin(&args));
    (entity, sig)
}

#[test]
fn our_signatures_verify_in_nss_trusting_only_the_root() {
    let tok = Tok::for_user("alice", LABEL);
    // Only the root: the Example Org CA must come from the signature itself.
    let db = nss_db(&tok, "nss-root-only", false);
    for key_id in ["01", "02"] {
        let (entity, sig) = our_signature(&tok, key_id, false);
        let o = cmsutil(&db, &["-D", "-n", "-h", "1", "-i", sig.to_str().unwrap(), "-c", entity.to_str().unwrap()]);
        let report = stdout(&o);
        assert!(report.contains("signer0.status=GoodSignature"), "key {key_id}: {report}");
        // NSS checks the certificate chain for e-mail signing as part of GoodSignature.
        let bad = tok.write("tampered-entity.txt", "Content-Type: text/plain; charset=utf-8\r\n\r\nFrom the cart.\r\n");
        let o = run(Command::new("cmsutil")
            .args(["-D", "-n", "-h", "1", "-i", sig.to_str().unwrap(), "-c", bad.to_str().unwrap(), "-d"])
            .arg(format!("sql:{}", db.display())));
        assert!(!stdout(&o).contains("GoodSignature"), "NSS must refuse a tampered content: {}", stdout(&o));
    }
}

#[test]
fn our_signatures_verify_in_gpgsm_trusting_only_the_root() {
    let tok = Tok::for_user("alice", LABEL);
    let g = Gpgsm::new(&tok, "gnupg-root-only", false);
    for key_id in ["01", "02"] {
        let (entity, sig) = our_signature(&tok, key_id, false);
        let o = run(g.cmd(&["--verify"]).arg(&sig).arg(&entity));
        let e = stderr(&o);
        assert!(
            o.status.success() && e.contains("Good signature from \"/CN=Alice Example/O=Example Org\""),
            "key {key_id}: {e}"
        );
    }
}

/// Bouncy Castle: BcPeer.java compiled once per run against Debian's jars; the classpath.
pub(crate) fn bc_classpath() -> &'static str {
    static CP: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CP.get_or_init(|| {
        let jars = ["/usr/share/java/bcprov.jar", "/usr/share/java/bcpkix.jar", "/usr/share/java/bcutil.jar"].join(":");
        let dir = tempfile::Builder::new().prefix("ssmax-bc-").tempdir().expect("tempdir").keep();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/peers/BcPeer.java");
        ok(Command::new("javac").args(["-cp", &jars, "-d"]).arg(&dir).arg(src));
        format!("{}:{jars}", dir.display())
    })
}

pub(crate) fn bc(args: &[&str]) -> std::process::Output {
    ok(Command::new("java").args(["-cp", bc_classpath(), "BcPeer"]).args(args))
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn bouncy_castle_signed_mail_verifies_for_pkcs1_pss_and_ecdsa() {
    let tok = Tok::for_user("alice", LABEL);
    let p = pki();
    let entity = tok.write("entity.txt", BOB_ENTITY);
    let rsa = (p.join("bob.pem"), p.join("bob.key"));
    let (p256, p384) = (bob_ec(&tok, "P-256"), bob_ec(&tok, "P-384"));
    for (mode, (cert, key), name) in [
        ("pkcs1", &rsa, "RSA PKCS#1 v1.5 SHA-256"),
        ("pss", &rsa, "RSA-PSS SHA-256\n"),
        ("pss-salt20", &rsa, "RSA-PSS SHA-256 (salt 20 bytes)"),
        ("ecdsa", &p256, "ECDSA P-256 SHA-256"),
        ("ecdsa-sha384", &p384, "ECDSA P-384 SHA-384"),
    ] {
        for form in ["detached", "opaque"] {
            let out = tok.path(&format!("bc-{mode}-{form}.p7"));
            bc(&["sign", mode, s(cert), s(key), s(&p.join("partnerca.pem")), s(&entity), s(&out), form]);
            let der = std::fs::read(&out).unwrap();
            assert_ber(&der, "Bouncy Castle's streaming generator");
            let name_of = format!("bc-{mode}-{form}");
            signed_mail_verifies_and_a_tamper_fails(&tok, &name_of, &signed_mail(form, &der));
            let o = run(tok.cmd().args(["verify", "--in"]).arg(tok.path(&format!("{name_of}.eml"))));
            assert!(stdout(&o).contains(&format!("algorithm:    {name}")), "{mode} {form}: {}", stdout(&o));
        }
    }
}

/// An EC key and certificate for bob (software, the peer's own), from the Partner Org CA.
fn bob_ec(tok: &Tok, curve: &str) -> (PathBuf, PathBuf) {
    let p = pki();
    let (key, csr, cert) = (
        tok.path(&format!("bob-{curve}.key")),
        tok.path(&format!("bob-{curve}.csr")),
        tok.path(&format!("bob-{curve}.pem")),
    );
    ok(Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", &format!("ec_paramgen_curve:{curve}"), "-out"])
        .arg(&key));
    ok(Command::new("openssl")
        .args(["req", "-new", "-subj", "/O=Partner Org/CN=Bob Partner", "-key"])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    ok(Command::new("openssl")
        .args(["x509", "-req", "-days", "30", "-sha256", "-set_serial", &format!("0x0e{}", &curve[2..]), "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(p.join("partnerca.pem"))
        .arg("-CAkey")
        .arg(p.join("partnerca.key"))
        .arg("-extfile")
        .arg(p.join("bob.ext"))
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

#[test]
fn bouncy_castle_encrypted_mail_decrypts_on_the_token_for_every_key_transport_and_cipher() {
    let tok = Tok::for_user("alice", LABEL);
    let alice = pki().join("alice.pem");
    let p256 = tok.dir.path().join("t/alice-ec.pem");
    let p384 = tok.keygen_with_cert("05", "alice-p384", "EC:secp384r1", &["--usage-derive"]);
    let entity = tok.write("entity.txt", BOB_ENTITY);
    // Every key transport and every content cipher at least once, without a run per pair.
    for (kt, cipher, recipient, transport, content) in [
        ("pkcs1", "aes128-cbc", &alice, "RSA PKCS#1 v1.5", "AES-128-CBC"),
        ("pkcs1", "aes256-gcm", &alice, "RSA PKCS#1 v1.5", "AES-256-GCM"),
        ("oaep-sha1", "aes256-cbc", &alice, "RSA-OAEP (SHA-1)", "AES-256-CBC"),
        ("oaep-sha1", "aes128-gcm", &alice, "RSA-OAEP (SHA-1)", "AES-128-GCM"),
        ("oaep-sha256", "aes256-gcm", &alice, "RSA-OAEP (SHA-256)", "AES-256-GCM"),
        ("oaep-sha512", "aes128-cbc", &alice, "RSA-OAEP (SHA-512)", "AES-128-CBC"),
        ("ecdh", "aes256-cbc", &p256, "ECDH", "AES-256-CBC"),
        ("ecdh", "aes256-gcm", &p256, "ECDH", "AES-256-GCM"),
        ("ecdh", "aes128-gcm", &p384, "ECDH", "AES-128-GCM"),
    ] {
        let out = tok.path("bc-env.p7m");
        bc(&["encrypt", kt, cipher, s(recipient), s(&entity), s(&out)]);
        encrypted_mail_decrypts(
            &tok,
            &format!("Bouncy Castle {kt} {cipher}"),
            &std::fs::read(&out).unwrap(),
            &[transport, content],
        );
    }
}

#[test]
fn our_signatures_verify_in_bouncy_castle_trusting_only_the_root() {
    let tok = Tok::for_user("alice", LABEL);
    let root = pki().join("root.pem");
    for (key_id, pss, alg) in [
        ("01", false, "1.2.840.113549.1.1.1"),
        ("01", true, "1.2.840.113549.1.1.10"),
        ("02", false, "1.2.840.10045.4.3.2"),
    ] {
        let (entity, sig) = our_signature(&tok, key_id, pss);
        let o = bc(&["verify", s(&root), s(&sig), s(&entity)]);
        let out = stdout(&o);
        assert!(
            out.contains("verified CN=Alice Example,O=Example Org via 2 certificate(s) to the root")
                && out.contains(alg),
            "key {key_id} pss {pss}: {out}"
        );
        let bad = tok.write("tampered.txt", "Content-Type: text/plain; charset=utf-8\r\n\r\nFrom the cart.\r\n");
        let o = run(Command::new("java").args(["-cp", bc_classpath(), "BcPeer", "verify", s(&root), s(&sig), s(&bad)]));
        assert!(!o.status.success(), "Bouncy Castle must refuse a tampered content");
    }
}

#[test]
fn bouncy_castle_opens_our_ssmax_attachments_with_the_organisation_key() {
    let tok = Tok::for_user("alice", LABEL);
    let p = pki();
    let draft = tok.write(
        "draft.eml",
        "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: Q3\n\nthe figures\n",
    );
    let file = tok.write("figures.csv", "Q3 revenue: 1,234 MJPY\n");
    let sent = tok.path("sent.eml");
    ok(&mut tok.with_pin(&[
        "send",
        "--in",
        s(&draft),
        "--attach",
        s(&file),
        "--label",
        "Q3 figures",
        "--out",
        s(&sent),
    ]));
    let inner = stdout(&ok(tok.cmd().args(["verify", "--in", s(&sent), "--out", "-"])));
    let part = inner
        .split("\r\n--")
        .find(|p| p.contains("SSMAX-Label: Q3 figures"))
        .unwrap_or_else(|| panic!("no protected part:\n{inner}"));
    let b64: String = part.split("\r\n\r\n").nth(1).unwrap().lines().map(str::trim).collect();
    let att = tok.write("att.p7m", base64::engine::general_purpose::STANDARD.decode(b64).unwrap());
    let out = tok.path("att.out");
    bc(&["decrypt", s(&p.join("org.key")), s(&p.join("org.pem")), s(&att), s(&out)]);
    let opened = std::fs::read_to_string(&out).unwrap();
    assert!(opened.contains("filename=\"figures.csv\""), "{opened}");
    let body = opened.split("\r\n\r\n").nth(1).unwrap();
    assert_eq!(
        base64::engine::general_purpose::STANDARD.decode(body.replace("\r\n", "")).unwrap(),
        b"Q3 revenue: 1,234 MJPY\n"
    );
}

/// openssl's view of an envelope's encrypted content (chunks joined), as hex dump lines.
fn openssl_encrypted_content(tok: &Tok, der: &[u8]) -> String {
    let f = tok.write("dump-in.der", der);
    let dump = stdout(&ok(Command::new("openssl").args(["cms", "-cmsout", "-print", "-inform", "DER", "-in"]).arg(&f)));
    let start = dump.find("encryptedContent:").expect("encryptedContent in dump");
    let lines: Vec<&str> = dump[start..]
        .lines()
        .skip(1)
        .take_while(|l| l.trim_start().starts_with(|c: char| c.is_ascii_hexdigit()))
        .collect();
    assert!(!lines.is_empty(), "{dump}");
    lines.join("\n")
}

#[test]
fn rekeying_a_bouncy_castle_ber_envelope_keeps_its_encrypted_bytes() {
    use ssmax_card::cms::decrypt::Envelope;
    use ssmax_card::cms::encrypt::recipient_info;
    let tok = Tok::for_user("alice", LABEL);
    let p = pki();
    // More than one chunk of Bouncy Castle's streaming output.
    let content = tok.write("big.txt", "Q3 figures, line after line.\r\n".repeat(4000));
    for cipher in ["aes256-cbc", "aes256-gcm"] {
        let out = tok.path("bc-org.p7m");
        bc(&["encrypt", "pkcs1", cipher, s(&p.join("org.pem")), s(&content), s(&out)]);
        let ber = std::fs::read(&out).unwrap();
        assert_ber(&ber, "Bouncy Castle");
        // What the organisation hop does: the content key recovered with the organisation's key,
        // wrapped again for the next organisation; the encrypted content untouched.
        let env = Envelope::parse(&ber).unwrap();
        let mut org = ssmax_card::ssmax::org::OrgKey::load(
            &std::fs::read_to_string(p.join("org.key")).unwrap(),
            &std::fs::read(p.join("org.der")).unwrap(),
        )
        .unwrap();
        let (cek, _, _) = env.recover_cek(&mut org).unwrap();
        let next = ssmax_card::cms::cert::parse(&std::fs::read(p.join("partner-org.der")).unwrap()).unwrap();
        let rekeyed = env.with_recipients(vec![recipient_info(&next, &cek).unwrap()]).unwrap();
        assert_eq!(
            openssl_encrypted_content(&tok, &rekeyed),
            openssl_encrypted_content(&tok, &ber),
            "{cipher}: the encrypted bytes must stay identical"
        );
        let f = tok.write("rekeyed.der", &rekeyed);
        let o = ok(Command::new("openssl")
            .args(["cms", "-decrypt", "-inform", "DER", "-binary", "-in"])
            .arg(&f)
            .arg("-inkey")
            .arg(p.join("partner-org.key")));
        assert_eq!(o.stdout, std::fs::read(&content).unwrap(), "{cipher}: the next organisation opens it");
    }
}
