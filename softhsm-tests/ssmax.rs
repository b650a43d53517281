//! The SSMAX chain on SoftHSM2: sender token → sending org → receiving org → recipient token →
//! forward → the recipient's org again. openssl checks every hop's signature.

use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EICAR: &str = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";
const MALWARE_SCAN: &str =
    "grep -q 'EICAR-STANDARD-ANTIVIRUS-TEST-FILE' \"$1\" && { echo 'EICAR test signature'; exit 1; }; exit 0";
const LEAK_SCAN: &str =
    "grep -qi 'confidential' \"$1\" && { echo 'marked confidential: may not leave the organisation'; exit 1; }; exit 0";

struct World {
    alice: Tok,
    bob: Tok,
}

/// The token registry both organisations keep (`--registry`): every certificate their user CAs
/// issue is on a SoftHSM2 token, handed out in person.
fn registry() -> &'static Path {
    static REGISTRY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    REGISTRY.get_or_init(|| {
        let p = pki();
        let path = p.parent().unwrap().join("registry.toml");
        let entry = |ca: &str, org: &str| {
            format!(
                "[[token]]\nissuer = \"{}\"\nkind = \"softhsm2\"\ndescription = \"{org} staff token (SoftHSM2 stand-in)\"\nenrolment = \"identity checked in person at issuance\"\n",
                p.join(ca).display()
            )
        };
        std::fs::write(&path, entry("orgca.pem", "Example Org") + &entry("partnerca.pem", "Partner Org")).unwrap();
        path
    })
}

/// `ssmax-card org` as `role` with `key` and `cert` (PKI file names or paths), the demo root as
/// anchor, re-keying `input` to `next` into `out`; a sending hop with the organisations' token
/// registry; callers add --own-ca / --certfile, --crl and the rest.
fn hop(role: &str, key: &Path, cert: &Path, next: &Path, input: &Path, out: &Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["org", "--role", role, "--org-key"])
        .arg(key)
        .arg("--org-cert")
        .arg(cert)
        .arg("--anchor")
        .arg(pki().join("root.pem"))
        .arg("--next")
        .arg(next)
        .arg("--in")
        .arg(input)
        .arg("--out")
        .arg(out);
    if role == "sending" {
        c.arg("--registry").arg(registry());
    }
    c
}

/// `--crl` for each of these CAs' lists in the demo PKI.
fn crls_of(cas: &[&str]) -> Vec<std::ffi::OsString> {
    cas.iter().flat_map(|ca| ["--crl".into(), pki().join(format!("{ca}.crl")).into_os_string()]).collect()
}

impl World {
    fn new() -> World {
        World { alice: Tok::for_user("alice", "alice card"), bob: Tok::for_user("bob", "bob card") }
    }

    /// Bob (Partner Org) sends alice a note without attachments, with `send` on his card.
    fn bob_sends_a_note(&self) -> PathBuf {
        let draft = self.bob.write(
            "draft.eml",
            "From: Bob Partner <bob@partner.example>\nTo: Alice <alice@example.jp>\nSubject: hello\n\nHi.\n",
        );
        let sent = self.bob.path("sent.eml");
        ok(&mut self.bob.with_pin(&["send", "--in", draft.to_str().unwrap(), "--out", sent.to_str().unwrap()]));
        sent
    }

    fn draft(&self, body: &str) -> PathBuf {
        self.alice.write("draft.eml", format!("From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: Q3 figures\n\n{body}\n"))
    }

    /// alice's figures.csv through both organisations, as bob's mail store receives it.
    fn figures_to_bob(&self) -> PathBuf {
        let sent = self.send(&[("figures.csv", "Q3 revenue: 1,234 MJPY\n", "Q3 figures")]);
        let (_, hop1) = self.org("sending", &sent, "hop1.eml", None);
        self.org("receiving", &hop1, "hop2.eml", None).1
    }

    fn send(&self, attach: &[(&str, &str, &str)]) -> PathBuf {
        let draft = self.draft("Bob, the figures are attached.");
        let out = self.alice.path("sent.eml");
        let mut args = vec![
            "send".to_string(),
            "--in".into(),
            draft.display().to_string(),
            "--out".into(),
            out.display().to_string(),
        ];
        for (name, content, label) in attach {
            let f = self.alice.write(name, content);
            args.extend(["--attach".into(), f.display().to_string(), "--label".into(), label.to_string()]);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = run(&mut self.alice.with_pin(&args));
        assert_eq!(code(&o), 0, "send: {}", stderr(&o));
        out
    }

    fn org(&self, role: &str, input: &Path, out: &str, scanner: Option<&str>) -> (Output, PathBuf) {
        let p = pki();
        let (key, cert, own_ca, next) = match role {
            "sending" => ("org.key", "org.pem", "orgca.pem", "partner-org.pem"),
            "receiving" => ("partner-org.key", "partner-org.pem", "partnerca.pem", "bob.pem"),
            // Partner Org as the sending org of bob's forward, back to Example Org.
            _ => ("partner-org.key", "partner-org.pem", "partnerca.pem", "org.pem"),
        };
        let outp = self.alice.path(out);
        let role = if role == "receiving" { "receiving" } else { "sending" };
        let mut c = hop(role, &p.join(key), &p.join(cert), &p.join(next), input, &outp);
        // A sending organisation serves the users of its own CA; a receiving one needs it only to
        // build chains.
        let ca_flag = if role == "receiving" { "--certfile" } else { "--own-ca" };
        c.arg(ca_flag).arg(p.join(own_ca)).args(crls_of(&["root", "orgca", "partnerca"]));
        if let Some(s) = scanner {
            c.arg("--scanner").arg(s);
        }
        (run(&mut c), outp)
    }

    /// Alice sends `draft` (a multipart/mixed body with attachments) through both organisations:
    /// the mail as it reaches Bob.
    fn delivered(&self, draft: impl AsRef<str>) -> PathBuf {
        let draft = self.alice.write("draft.eml", draft.as_ref());
        let sent = self.alice.path("sent.eml");
        ok(&mut self.alice.with_pin(&["send", "--in", draft.to_str().unwrap(), "--out", sent.to_str().unwrap()]));
        let (_, hop1) = self.org("sending", &sent, "hop1.eml", None);
        let (_, hop2) = self.org("receiving", &hop1, "hop2.eml", None);
        hop2
    }
}

fn openssl_ok(mail: &Path) {
    let v = openssl_verify(mail, &pki().join("root.pem"));
    assert!(v.status.success(), "openssl cms -verify {}: {}", mail.display(), stderr(&v));
}

/// The CMS of the attachment part labelled `label` in a signed SSMAX mail (DER).
fn attachment_cms(tok: &Tok, mail: &Path, label: &str) -> Vec<u8> {
    let content = tok.path("inner.eml");
    ok(Command::new("openssl").args(["cms", "-verify", "-noverify", "-in"]).arg(mail).arg("-out").arg(&content));
    let text = std::fs::read_to_string(&content).unwrap();
    let part = text
        .split("\r\n--")
        .find(|p| p.contains(&format!("SSMAX-Label: {label}")))
        .unwrap_or_else(|| panic!("no part labelled {label}:\n{text}"));
    let b64: String = part.split("\r\n\r\n").nth(1).unwrap().lines().map(str::trim).collect();
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

/// The encrypted content bytes of an AuthEnvelopedData, found with `openssl asn1parse` (the
/// implicit [0] primitive after the content-encryption algorithm).
fn encrypted_content(tok: &Tok, der: &[u8]) -> Vec<u8> {
    let f = tok.write("att.der", der);
    let dump = stdout(&ok(Command::new("openssl").args(["asn1parse", "-inform", "DER", "-in"]).arg(&f)));
    let after_alg = dump.split_once(":aes-256-gcm").expect("AES-256-GCM content").1;
    let line = after_alg.lines().find(|l| l.contains("prim: cont [ 0 ]")).expect("encryptedContent");
    // "  516:d=4  hl=2 l=   7 prim: cont [ 0 ]"
    let num = |key: &str| -> usize {
        let rest = line.split(key).nth(1).unwrap().trim_start();
        rest.split(|c: char| !c.is_ascii_digit()).next().unwrap().parse().unwrap()
    };
    let at: usize = line.trim_start().split(':').next().unwrap().parse().unwrap();
    let (hl, l) = (num("hl="), num(" l="));
    der[at + hl..at + hl + l].to_vec()
}

/// Bouncy Castle opens an SSMAX attachment with `key` (authAttrs as the GCM additional data, RFC
/// 5083) and prints its binding. (openssl 3.0 cannot: it reads authAttrs with the wrong tag,
/// openssl/openssl#26101, and does not authenticate them.)
fn bc_open(tok: &Tok, der: &[u8], key: &str, cert: &str) -> Output {
    let f = tok.write("att-open.der", der);
    let out = tok.path("att-open.out");
    let (k, c) = (pki().join(key), pki().join(cert));
    run(Command::new("java").args(["-cp", crate::peers::bc_classpath(), "BcPeer", "ssmax-open"]).args([
        k.to_str().unwrap(),
        c.to_str().unwrap(),
        f.to_str().unwrap(),
        out.to_str().unwrap(),
    ]))
}

/// The serial of a certificate (PEM) in hex, as Bouncy Castle prints it.
fn serial_of(cert: &Path) -> String {
    let o = ok(Command::new("openssl").args(["x509", "-noout", "-serial", "-in"]).arg(cert));
    stdout(&o).trim().trim_start_matches("serial=").trim_start_matches('0').to_ascii_lowercase()
}

/// The certificate that signed `mail` (PEM, written beside it).
fn signer_of(tok: &Tok, mail: &Path) -> PathBuf {
    let out = tok.path("signer.pem");
    ok(Command::new("openssl")
        .args(["cms", "-verify", "-noverify", "-out", "/dev/null", "-in"])
        .arg(mail)
        .arg("-signer")
        .arg(&out));
    out
}

/// The certificate alice's card signs with (it holds two: the RSA and the EC one).
fn alices_signing_certificate(w: &World) -> PathBuf {
    let mail =
        signed_by_hand(w, "probe", "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\n\nprobe\n");
    signer_of(&w.alice, &mail)
}

#[test]
fn four_party_chain_verifies_at_every_hop_and_forward_keeps_the_ciphertext() {
    let w = World::new();
    let sent = w.send(&[
        ("figures.csv", "Q3 revenue: 1,234 MJPY\n", "Q3 figures"),
        ("notes.txt", "meeting notes\n", "Meeting notes"),
    ]);
    openssl_ok(&sent);
    // Encrypted to the sending organisation — another CMS implementation with its key opens it,
    // the recipient's cannot — and bound to alice, its label and its name.
    let att = attachment_cms(&w.alice, &sent, "Q3 figures");
    let o = bc_open(&w.alice, &att, "org.key", "org.pem");
    assert!(o.status.success(), "{}", stderr(&o));
    let binding = stdout(&o);
    let alice = signer_of(&w.alice, &sent);
    assert!(binding.contains(&format!("originator serial {} issuer ", serial_of(&alice))), "{binding}");
    assert!(binding.contains("label Q3 figures\nfilename figures.csv\n"), "{binding}");
    let opened = std::fs::read_to_string(w.alice.path("att-open.out")).unwrap();
    assert!(opened.contains("filename=\"figures.csv\""), "{opened}");
    assert!(!bc_open(&w.alice, &att, "bob.key", "bob.pem").status.success());

    let (o, hop1) = w.org("sending", &sent, "hop1.eml", Some(LEAK_SCAN));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    openssl_ok(&hop1);
    let (o, hop2) = w.org("receiving", &hop1, "hop2.eml", Some(MALWARE_SCAN));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    openssl_ok(&hop2);

    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("signed by your organisation 'CN=Partner Org (mail),O=Partner Org'"), "{e}");
    assert!(e.contains("sending organisation: CN=Example Org (mail),O=Example Org"), "{e}");
    assert!(e.contains("original sender:      CN=Alice Example,O=Example Org <alice@example.jp>"), "{e}");
    assert!(
        e.contains("identity method:      possession of the softhsm2 token Example Org registered for this certificate + knowledge of its PIN (token: Example Org staff token (SoftHSM2 stand-in) (registered by Example Org; identity checked in person at issuance), profile softhsm2;"),
        "{e}"
    );
    let out = stdout(&o);
    // `decrypt` on SSMAX mail does the same as `receive`.
    let d = run(&mut w.bob.with_pin(&["decrypt", "--in", hop2.to_str().unwrap()]));
    assert_eq!(code(&d), 0, "{}", stderr(&d));
    assert!(stdout(&d).contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="));
    assert!(out.contains("Bob, the figures are attached."));
    assert!(out.contains("SSMAX-Label: Q3 figures"));
    assert!(out.contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "decrypted attachment body: {out}");

    // Forward only the figures; the ciphertext travels unchanged, re-keyed to Partner Org.
    let fwd = w.bob.path("fwd.eml");
    let o = run(&mut w.bob.with_pin(&[
        "forward",
        "--in",
        hop2.to_str().unwrap(),
        "--to",
        "carol@partner.example",
        "--keep",
        "figures.csv",
        "--out",
        fwd.to_str().unwrap(),
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    openssl_ok(&fwd);
    let before = attachment_cms(&w.bob, &hop2, "Q3 figures");
    let after = attachment_cms(&w.bob, &fwd, "Q3 figures");
    assert_ne!(before, after, "new recipient info");
    assert_eq!(encrypted_content(&w.bob, &before), encrypted_content(&w.bob, &after), "ciphertext byte-identical");
    assert!(!std::fs::read_to_string(&fwd).unwrap().contains("Meeting notes"), "dropped attachment is gone");
    let o = bc_open(&w.bob, &after, "partner-org.key", "partner-org.pem");
    assert!(o.status.success(), "bob's organisation opens it: {}", stderr(&o));
    assert!(stdout(&o).contains(&format!("originator serial {} ", serial_of(&alice))), "still alice's");
    assert!(!bc_open(&w.bob, &after, "bob.key", "bob.pem").status.success(), "bob's own key no longer does");
    let o = run(&mut w.bob.with_pin(&["decrypt", "--in", w.bob.write("fwd-att.der", &after).to_str().unwrap()]));
    assert_clear_failure(&o, 6);

    // And Partner Org, now the sending org for bob, accepts bob's forward: alice encrypted it,
    // bob showed he could open it.
    let (o, hop3) = w.org("forward", &fwd, "hop3.eml", Some(LEAK_SCAN));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("'Q3 figures' forwarded by the sender, who held its key"), "{}", stderr(&o));
    openssl_ok(&hop3);
    // Example Org receives it for alice, who sees whose attachment it first was.
    let p = pki();
    let hop4 = w.alice.path("hop4.eml");
    let o = run(hop("receiving", &p.join("org.key"), &p.join("org.pem"), &p.join("alice.pem"), &hop3, &hop4)
        .arg("--certfile")
        .arg(p.join("partnerca.pem"))
        .args(crls_of(&["root", "orgca", "partnerca"])));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&mut w.alice.with_pin(&["receive", "--in", hop4.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(
        // Whose envelope it first was is only its own binding's word: never shown as a fact.
        stderr(&o).contains(
            "forwarded by the sender, who showed they held its key (who first encrypted it cannot be checked)"
        ),
        "{}",
        stderr(&o)
    );
    assert!(stdout(&o).contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="));
}

fn tamper(tok: &Tok, mail: &Path, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string(mail).unwrap();
    assert!(text.contains(from), "{from} not in {}", mail.display());
    tok.write("tampered.eml", text.replacen(from, to, 1))
}

#[test]
fn tampering_at_any_hop_is_detected_at_the_next() {
    let w = World::new();
    let sent = w.send(&[("figures.csv", "Q3 revenue\n", "Q3 figures")]);
    let bad = tamper(&w.alice, &sent, "Bob, the figures are attached.", "Bob, pay invoice 77 today.");
    let (o, _) = w.org("sending", &bad, "x.eml", None);
    assert_clear_failure(&o, 1);

    let (_, hop1) = w.org("sending", &sent, "hop1.eml", None);
    let bad = tamper(&w.alice, &hop1, "SSMAX-Label: Q3 figures", "SSMAX-Label: Holiday photos");
    let (o, _) = w.org("receiving", &bad, "x.eml", None);
    assert_clear_failure(&o, 1);

    let (_, hop2) = w.org("receiving", &hop1, "hop2.eml", None);
    let bad = tamper(&w.alice, &hop2, "Bob, the figures are attached.", "Bob, the figures are attached!");
    let o = run(&mut w.bob.with_pin(&["receive", "--in", bad.to_str().unwrap()]));
    assert_clear_failure(&o, 1);
    // A forged From outside the signature is caught too.
    let bad = tamper(&w.alice, &hop2, "From: Alice Example <alice@example.jp>", "From: CEO <ceo@example.jp>");
    let o = run(&mut w.bob.with_pin(&["receive", "--in", bad.to_str().unwrap()]));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("not the original sender"), "{}", stderr(&o));
}

#[test]
fn eicar_is_stopped_at_the_receiving_org_and_confidential_at_the_sending_org() {
    let w = World::new();
    let sent = w.send(&[("tool.com", EICAR, "Handy tool")]);
    let (o, hop1) = w.org("sending", &sent, "hop1.eml", Some(LEAK_SCAN));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (o, _) = w.org("receiving", &hop1, "hop2.eml", Some(MALWARE_SCAN));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("'Handy tool' was flagged") && stderr(&o).contains("EICAR"), "{}", stderr(&o));

    let sent = w.send(&[("plan.txt", "CONFIDENTIAL: merger plan\n", "Plan")]);
    let (o, _) = w.org("sending", &sent, "hop1.eml", Some(LEAK_SCAN));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("'Plan' was flagged") && stderr(&o).contains("may not leave"), "{}", stderr(&o));
}

#[test]
fn recipient_cannot_be_tricked_by_a_certificate_on_disk() {
    let w = World::new();
    let p = pki();
    // Mallory cannot open the attachments, but a plain phishing text needs none.
    let sent = w.send(&[]);
    let (_, hop1) = w.org("sending", &sent, "hop1.eml", None);
    // Mallory re-signs as a "receiving org" with a certificate under a rogue root...
    let forged = w.alice.path("forged.eml");
    let o = run(Command::new(BIN)
        .args(["org", "--role", "receiving", "--org-key"])
        .arg(p.join("mallory.key"))
        .arg("--org-cert")
        .arg(p.join("mallory.pem"))
        .arg("--anchor")
        .arg(p.join("root.pem"))
        .args(crls_of(&["root", "orgca"]))
        .arg("--next")
        .arg(p.join("bob.pem"))
        .arg("--in")
        .arg(&hop1)
        .arg("--out")
        .arg(&forged));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // ...and gets the rogue root and his certificate onto bob's disk, even into his config.
    let config = w.bob.write(
        "config.toml",
        format!(
            "anchors = [\"{}\"]\norg_certificate = \"{}\"\n",
            p.join("rogue-root.pem").display(),
            p.join("mallory.pem").display()
        ),
    );
    let o =
        run(&mut w.bob.with_pin(&["receive", "--config", config.to_str().unwrap(), "--in", forged.to_str().unwrap()]));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("not your organisation's certificate stored on the token"), "{}", stderr(&o));
}

#[test]
fn send_refuses_an_org_certificate_not_chained_to_the_anchors() {
    let tok = Tok::for_user("alice", "alice card");
    let o = Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &tok.conf)
        .args([
            "--module",
            "/usr/lib/softhsm/libsofthsm2.so",
            "--token-label",
            "alice card",
            "--login",
            "--pin",
            PIN,
            "--delete-object",
            "--type",
            "cert",
            "--label",
            "ssmax-org",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let draft = tok.write("draft.eml", "From: alice@example.jp\nTo: bob@partner.example\nSubject: x\n\nhi\n");
    let f = tok.write("a.txt", "data");
    let o = run(&mut tok.with_pin(&[
        "send",
        "--in",
        draft.to_str().unwrap(),
        "--attach",
        f.to_str().unwrap(),
        "--label",
        "A",
    ]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("no organisation certificate"), "{}", stderr(&o));
    let config = tok.write("config.toml", format!("org_certificate = \"{}\"\n", pki().join("mallory.pem").display()));
    let o = run(&mut tok.with_pin(&[
        "send",
        "--config",
        config.to_str().unwrap(),
        "--in",
        draft.to_str().unwrap(),
        "--attach",
        f.to_str().unwrap(),
        "--label",
        "A",
    ]));
    assert_clear_failure(&o, 1);
    assert!(
        stderr(&o).contains("refusing to encrypt to the organisation certificate")
            && stderr(&o).contains("not trusted"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn receive_extract_writes_private_files_safely_and_never_clobbers() {
    let w = World::new();
    // A draft whose attachment name tries to climb out of the extraction directory.
    let hop2 = w.delivered(
        "From: alice@example.jp\nTo: bob@partner.example\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nsee file\n--B\nContent-Type: text/plain; name=\"../../evil.txt\"\nContent-Disposition: attachment; filename=\"../../evil.txt\"\nSSMAX-Label: Report\n\nreport body\n--B--\n",
    );
    let dir = w.bob.path("inbox/files");
    std::fs::create_dir_all(&dir).unwrap();
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap(), "--extract", dir.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let file = dir.join("evil.txt");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "report body");
    assert!(!w.bob.path("evil.txt").exists() && !w.bob.path("inbox/evil.txt").exists());
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
    std::fs::write(&file, "edited by bob").unwrap();
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap(), "--extract", dir.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("--force"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "edited by bob");
    let o = run(&mut w.bob.with_pin(&[
        "receive",
        "--in",
        hop2.to_str().unwrap(),
        "--extract",
        dir.to_str().unwrap(),
        "--force",
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "report body");
}

/// The header sections (not bodies) of every MIME entity in `mail`, as lines.
fn header_lines(mail: &str) -> Vec<String> {
    let mut out = Vec::new();
    for chunk in mail.split("\r\n--") {
        let head = chunk.split("\r\n\r\n").next().unwrap_or("");
        out.extend(head.split("\r\n").skip(1).map(str::to_string));
    }
    out
}

#[test]
fn japanese_attachment_names_arrive_decoded_and_are_written_as_rfc_2231() {
    let w = World::new();
    // An ISO-2022-JP name in RFC 2231 sections split inside an escape sequence (見積書_2026年12月.pdf),
    // and a raw Shift_JIS name (請求書.xlsx) as old Japanese clients send it.
    let mut draft = b"From: alice@example.jp\nTo: bob@partner.example\nSubject: =?ISO-2022-JP?B?GyRCOCtAUT1xGyhC?=\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nsee files\n--B\nContent-Type: application/pdf\nContent-Disposition: attachment;\n filename*0*=ISO-2022-JP''%1B%24B8%2B%40Q%3Dq%1B%28B_2026%1B;\n filename*1*=%24BG%2F%1B%28B12%1B%24B7n%1B%28B.pdf\nContent-Transfer-Encoding: base64\n\nJVBERi0xLjQK\n--B\nContent-Type: application/vnd.ms-excel; name=\"".to_vec();
    draft.extend_from_slice(b"\x90\xbf\x8b\x81\x8f\x91.xlsx\"\nContent-Transfer-Encoding: base64\n\nUEsDBA==\n--B--\n");
    let draft = w.alice.write("draft.eml", draft);
    let sent = w.alice.path("sent.eml");
    let o = run(&mut w.alice.with_pin(&["send", "--in", draft.to_str().unwrap(), "--out", sent.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (o, hop1) = w.org("sending", &sent, "hop1.eml", None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (o, hop2) = w.org("receiving", &hop1, "hop2.eml", None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    for mail in [&sent, &hop1, &hop2] {
        let text = std::fs::read_to_string(mail).unwrap();
        for line in header_lines(&text) {
            assert!(line.len() <= 78, "{}: a header line over 78 characters: {line}", mail.display());
            let is_param_line = line.contains("name=") || line.contains("name*") || line.contains("filename");
            assert!(
                !(is_param_line && line.contains("=?")),
                "{}: an encoded word inside a parameter: {line}",
                mail.display()
            );
        }
        assert!(
            text.contains("filename*=UTF-8''%E8%A6%8B%E7%A9%8D%E6%9B%B8_2026%E5%B9%B412%E6%9C%88.pdf.p7m"),
            "{}: {text}",
            mail.display()
        );
    }
    let dir = w.bob.path("files");
    std::fs::create_dir_all(&dir).unwrap();
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap(), "--extract", dir.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read(dir.join("見積書_2026年12月.pdf")).unwrap(), b"%PDF-1.4\n");
    assert_eq!(std::fs::read(dir.join("請求書.xlsx")).unwrap(), b"PK\x03\x04");
    assert!(stderr(&o).contains("(見積書_2026年12月.pdf)"), "the label is the decoded name: {}", stderr(&o));
    // Forwarded, the ISO-2022-JP subject is read as the reader saw it and written again as UTF-8.
    let fwd = w.bob.path("fwd.eml");
    let o = run(&mut w.bob.with_pin(&[
        "forward",
        "--in",
        hop2.to_str().unwrap(),
        "--to",
        "carol@partner.example",
        "--out",
        fwd.to_str().unwrap(),
    ]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let text = std::fs::read_to_string(&fwd).unwrap();
    assert!(text.contains("Subject: =?UTF-8?B?RndkOiDopovnqY3mm7g=?="), "{text}");
    assert!(text.contains("Subject: =E8=A6=8B=E7=A9=8D=E6=9B=B8"), "the forwarded-message intro: {text}");
}

#[test]
fn extracted_names_cannot_pass_for_other_names() {
    let w = World::new();
    // "invoice<RLO>fdp.exe" shows as "invoiceexe.pdf"; "CON.txt" is a device on Windows.
    let hop2 = w.delivered(
        "From: alice@example.jp\nTo: bob@partner.example\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nsee files\n--B\nContent-Type: application/octet-stream\nContent-Disposition: attachment; filename=\"invoice\u{202e}fdp.exe\"\n\nMZ\n--B\nContent-Type: text/plain\nContent-Disposition: attachment; filename=\"CON.txt\"\n\ndevice\n--B--\n",
    );
    let dir = w.bob.path("files");
    std::fs::create_dir_all(&dir).unwrap();
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap(), "--extract", dir.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let mut names: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, ["_CON.txt", "invoicefdp.exe"]);
}

/// Bob's extraction directory's entries, sorted (temporary files included).
fn entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}

#[test]
fn extraction_is_all_or_nothing_and_same_names_are_told_apart() {
    let w = World::new();
    let part = |name: &str, body: &str| {
        format!("--B\nContent-Type: text/plain\nContent-Disposition: attachment; filename=\"{name}\"\n\n{body}\n")
    };
    let hop2 = w.delivered(
        format!(
            "From: alice@example.jp\nTo: bob@partner.example\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nsee files\n{}{}{}{}--B--\n",
            part("same.txt", "first"),
            part("same.txt", "second"),
            part("SAME.TXT", "third"),
            part("other.txt", "other")
        ),
    );
    let receive = |dir: &std::path::Path, extra: &[&str]| {
        let mut args = vec!["receive", "--in", hop2.to_str().unwrap(), "--extract", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&mut w.bob.with_pin(&args))
    };

    let dir = w.bob.path("files");
    std::fs::create_dir_all(&dir).unwrap();
    let o = receive(&dir, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(entries(&dir), ["SAME (3).TXT", "other.txt", "same (2).txt", "same.txt"]);
    let read = |name: &str| std::fs::read_to_string(dir.join(name)).unwrap();
    assert_eq!([read("same.txt"), read("same (2).txt"), read("SAME (3).TXT")], ["first", "second", "third"]);
    assert!(
        stderr(&o).contains("same (2).txt (same.txt): another attachment is also named 'same.txt'"),
        "{}",
        stderr(&o)
    );

    // One name taken: nothing is written, not even the attachments before it.
    let dir = w.bob.path("again");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("other.txt"), "bob's own").unwrap();
    let o = receive(&dir, &[]);
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("other.txt exist(s); nothing was written (use --force to replace)"), "{}", stderr(&o));
    assert_eq!(entries(&dir), ["other.txt"], "no attachment and no temporary file left");
    assert_eq!(std::fs::read_to_string(dir.join("other.txt")).unwrap(), "bob's own");
    let o = receive(&dir, &["--force"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(entries(&dir).len(), 4);
    assert_eq!(std::fs::read_to_string(dir.join("other.txt")).unwrap(), "other");
}

#[test]
fn extraction_refuses_a_directory_that_is_a_symbolic_link_unless_named_as_dir_slash_dot() {
    let w = World::new();
    let hop2 = w.delivered(
        "From: alice@example.jp\nTo: bob@partner.example\nSubject: x\nMIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"B\"\n\n--B\nContent-Type: text/plain\n\nsee file\n--B\nContent-Type: text/plain\nContent-Disposition: attachment; filename=\"report.txt\"\n\nreport\n--B--\n",
    );
    // Someone else's directory, reached through a link planted where Bob expects his own.
    let elsewhere = w.bob.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let link = w.bob.path("downloads");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap(), "--extract", link.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(
        stderr(&o).contains("is a symbolic link; nothing was written (name it as")
            && stderr(&o).contains("downloads/. to extract where it leads"),
        "{}",
        stderr(&o)
    );
    assert!(entries(&elsewhere).is_empty());
    let explicit = format!("{}/.", link.display());
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap(), "--extract", &explicit]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(entries(&elsewhere), ["report.txt"]);
    // A file where the directory should be, and a directory where a file would go.
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap(), "--extract", hop2.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("is not a directory"), "{}", stderr(&o));
    let dir = w.bob.path("with-dir");
    std::fs::create_dir_all(dir.join("report.txt")).unwrap();
    let o = run(&mut w.bob.with_pin(&[
        "receive",
        "--in",
        hop2.to_str().unwrap(),
        "--extract",
        dir.to_str().unwrap(),
        "--force",
    ]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("report.txt is a directory; nothing was written"), "{}", stderr(&o));
}

#[test]
fn receive_opens_the_attachments_on_the_token_they_are_for_among_several() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    // Bob also carries a card of alice's (a shared desk): both decrypt, one is for this mail.
    crate::tokens::add_token_for(&w.bob, "alice card", "alice");
    let o = run(&mut w.bob.with_pin(&["--agent", "never", "receive", "--in", hop2.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "the attachment, decrypted: {}", stdout(&o));
    assert!(stderr(&o).contains("with the key of 'CN=Bob Partner"), "{}", stderr(&o));
}

/// `mail` with `field` put in front of its header.
fn with_field_in_front(tok: &Tok, mail: &Path, field: &str, name: &str) -> PathBuf {
    tok.write(name, [field.as_bytes(), b"\r\n", &std::fs::read(mail).unwrap()].concat())
}

#[test]
fn a_second_from_is_refused_by_both_organisations_and_by_receive() {
    let w = World::new();
    let sent = w.send(&[("figures.csv", "Q3 revenue: 1,234 MJPY\n", "Q3 figures")]);
    let forged = with_field_in_front(&w.alice, &sent, "From: CEO <ceo@example.jp>", "forged-sent.eml");
    let (o, _) = w.org("sending", &forged, "hop1-forged.eml", None);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("the mail has 2 From fields"), "{}", stderr(&o));
    let (o, hop1) = w.org("sending", &sent, "hop1.eml", None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let forged = with_field_in_front(&w.alice, &hop1, "From: CEO <ceo@example.jp>", "forged-hop1.eml");
    let (o, _) = w.org("receiving", &forged, "hop2-forged.eml", None);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("the mail has 2 From fields"), "{}", stderr(&o));
    let (_, hop2) = w.org("receiving", &hop1, "hop2.eml", None);
    for field in ["From: CEO <ceo@example.jp>", "From: alice@example.jp, ceo@example.jp"] {
        let forged = with_field_in_front(&w.bob, &hop2, field, "forged-hop2.eml");
        let o = run(&mut w.bob.with_pin(&["receive", "--in", forged.to_str().unwrap()]));
        assert_clear_failure(&o, 1);
        assert!(stderr(&o).contains("2 From fields"), "{field}: {}", stderr(&o));
    }
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn receive_refuses_mail_signed_by_an_organisation_whose_certificate_was_revoked() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    // Partner Org lost its accreditation: the SSMAX root revoked its certificate.
    let root = crate::revocation::crl(&w.bob.path("crls"), "root", &[("partner-org.pem", "affiliationChanged")], None);
    let config = w.bob.write("revoked.toml", format!("crls = [\"{}\"]\n", root.display()));
    let o =
        run(&mut w.bob.with_pin(&["--config", config.to_str().unwrap(), "receive", "--in", hop2.to_str().unwrap()]));
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(
        e.contains("Partner Org (mail)") && e.contains("was revoked on") && e.contains("(affiliation changed)"),
        "{e}"
    );
}

#[test]
fn the_sending_organisation_refuses_mail_signed_with_a_card_reported_lost() {
    let w = World::new();
    let sent = w.send(&[("figures.csv", "Q3 revenue: 1,234 MJPY\n", "Q3 figures")]);
    // Alice reported her card lost: Example Org CA revoked her certificate.
    let dir = w.alice.path("crls");
    // Both her certificates (RSA and the EC one her card made): the newer one signs.
    let ec = w.alice.dir.path().join("t/alice-ec.pem");
    let lost = [("alice.pem", "keyCompromise"), (ec.to_str().unwrap(), "keyCompromise")];
    let org = crate::revocation::crl(&dir, "orgca", &lost, None);
    let root = crate::revocation::crl(&dir, "root", &[], None);
    let p = pki();
    let o = run(Command::new(BIN)
        .args(["org", "--role", "sending", "--org-key"])
        .arg(p.join("org.key"))
        .arg("--org-cert")
        .arg(p.join("org.pem"))
        .arg("--anchor")
        .arg(p.join("root.pem"))
        .arg("--own-ca")
        .arg(p.join("orgca.pem"))
        .arg("--crl")
        .arg(&org)
        .arg("--crl")
        .arg(&root)
        .arg("--next")
        .arg(p.join("partner-org.pem"))
        .arg("--in")
        .arg(&sent));
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(e.contains("CN=Alice Example") && e.contains("was revoked on") && e.contains("(key compromise)"), "{e}");
}

#[test]
fn receive_refuses_when_the_organisation_publishes_its_status_and_it_cannot_be_had_unless_the_config_prefers() {
    let w = World::new();
    let sent = w.send(&[("figures.csv", "Q3 revenue: 1,234 MJPY\n", "Q3 figures")]);
    let p = pki();
    // Partner Org's certificate names a distribution point where nobody answers.
    let ext = w.bob.write(
        "cdp.ext",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=emailProtection\nsubjectAltName=email:mail-gateway@partner.example\ncrlDistributionPoints=URI:http://127.0.0.1:9/root.crl\n",
    );
    let org_cert = w.bob.path("partner-org-cdp.pem");
    ok(Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(p.join("partner-org.csr"))
        .arg("-CA")
        .arg(p.join("root.pem"))
        .arg("-CAkey")
        .arg(p.join("root.key"))
        .args(["-set_serial", "0x5eed0010", "-days", "30", "-sha256", "-extfile"])
        .arg(&ext)
        .arg("-out")
        .arg(&org_cert));
    let der = w.bob.path("partner-org-cdp.der");
    ok(Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(&org_cert).arg("-out").arg(&der));
    ok(Command::new("pkcs11-tool")
        .env("SOFTHSM2_CONF", &w.bob.conf)
        .args(["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", "bob card", "--login", "--pin", PIN])
        .arg("--write-object")
        .arg(&der)
        .args(["--type", "cert", "--id", "a3", "--label", "ssmax-org-cdp"]));
    // Example Org re-keys to that certificate.
    let hop1 = w.alice.path("hop1.eml");
    ok(hop("sending", &p.join("org.key"), &p.join("org.pem"), &org_cert, &sent, &hop1)
        .arg("--own-ca")
        .arg(p.join("orgca.pem"))
        .args(crls_of(&["root", "orgca"])));
    let hop2 = w.bob.path("hop2.eml");
    ok(hop("receiving", &p.join("partner-org.key"), &org_cert, &p.join("bob.pem"), &hop1, &hop2)
        .args(crls_of(&["root", "orgca"])));
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap()]));
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(e.contains("no CRL from http://127.0.0.1:9/root.crl"), "said why: {e}");
    assert!(e.contains("your organisation") && e.contains("is unknown (--revocation require)"), "{e}");
    let config = w.bob.write("prefer.toml", "revocation = \"prefer\"\n");
    let o =
        run(&mut w.bob.with_pin(&["--config", config.to_str().unwrap(), "receive", "--in", hop2.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "the config chose prefer: {}", stderr(&o));
}

/// alice's own `sign` (her card, the identity-method attribute included) of a mail she built
/// by hand: what a sender who does not use `send` can put before her organisation.
fn signed_by_hand(w: &World, name: &str, mail: &str) -> PathBuf {
    let draft = w.alice.write(&format!("{name}.draft"), mail);
    let out = w.alice.path(&format!("{name}.eml"));
    ok(&mut w.alice.with_pin(&["sign", "--in", draft.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    out
}

fn base64(data: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(data)
}

#[test]
fn a_part_marked_as_protected_but_sent_in_the_clear_is_refused_by_the_hop() {
    let w = World::new();
    let mail = format!(
        "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: invoice\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nPlease pay the attached invoice.\n--b\nContent-Type: application/pdf; name=\"invoice.pdf\"\nContent-Disposition: attachment; filename=\"invoice.pdf\"\nSSMAX-Label: invoice.pdf\nContent-Transfer-Encoding: base64\n\n{}\n--b--\n",
        base64(format!("{EICAR} confidential").as_bytes())
    );
    let signed = signed_by_hand(&w, "smuggled", &mail);
    // The sending hop is where such a mail arrives (the receiving one takes no mail from users).
    let (o, out) = w.org("sending", &signed, "hop1.eml", Some(MALWARE_SCAN));
    assert_ne!(code(&o), 0, "the hop passed it on");
    let e = stderr(&o);
    assert!(e.contains("carries SSMAX-Label or SSMAX-Filename but is not an encrypted attachment"), "{e}");
    assert!(!out.exists(), "nothing written");
}

#[test]
fn the_hops_scan_every_file_in_the_clear_and_inside_an_attachment_at_any_depth() {
    let w = World::new();
    // EICAR as a file inside a multipart that is itself the protected attachment.
    let nested = format!(
        "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: report\nContent-Type: multipart/mixed; boundary=\"out\"\n\n--out\nContent-Type: text/plain\n\nThe report.\n--out\nContent-Type: multipart/mixed; boundary=\"in\"\nContent-Disposition: attachment; filename=\"report.zip\"\nSSMAX-Label: Report\n\n--in\nContent-Type: text/plain\n\ncover\n--in\nContent-Type: application/octet-stream; name=\"report.pdf.exe\"\nContent-Transfer-Encoding: base64\n\n{}\n--in--\n--out--\n",
        base64(EICAR.as_bytes())
    );
    let draft = w.alice.write("nested.draft", nested);
    let sent = w.alice.path("nested.eml");
    ok(&mut w.alice.with_pin(&["send", "--in", draft.to_str().unwrap(), "--out", sent.to_str().unwrap()]));
    let (o, hop1) = w.org("sending", &sent, "hop1.eml", Some(LEAK_SCAN));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (o, _) = w.org("receiving", &hop1, "hop2.eml", Some(MALWARE_SCAN));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("'Report' was flagged") && stderr(&o).contains("EICAR"), "{}", stderr(&o));
    // The text the mail carries in the clear is looked at too.
    let plain = w.alice.write(
        "plain.draft",
        "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: notes\n\nThis is confidential.\n",
    );
    let sent = w.alice.path("plain.eml");
    ok(&mut w.alice.with_pin(&["send", "--in", plain.to_str().unwrap(), "--out", sent.to_str().unwrap()]));
    let (o, _) = w.org("sending", &sent, "hop1-plain.eml", Some(LEAK_SCAN));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("'text part 1' was flagged"), "{}", stderr(&o));
}

#[test]
fn an_attachment_encrypted_with_cbc_is_refused_whatever_its_label_says() {
    let w = World::new();
    let entity = w.alice.write("entity.txt", "Content-Type: text/plain\r\n\r\nnotes\r\n");
    let der = w.alice.path("cbc.der");
    ok(Command::new("openssl")
        .args(["cms", "-encrypt", "-aes256", "-binary", "-outform", "DER", "-in"])
        .arg(&entity)
        .arg("-out")
        .arg(&der)
        .arg(pki().join("org.pem")));
    let mail = format!(
        "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: notes\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nNotes attached.\n--b\nContent-Type: application/pkcs7-mime; smime-type=authEnveloped-data; name=\"notes.txt.p7m\"\nContent-Disposition: attachment; filename=\"notes.txt.p7m\"\nContent-Transfer-Encoding: base64\nSSMAX-Label: Notes\nSSMAX-Filename: notes.txt\n\n{}\n--b--\n",
        base64(&std::fs::read(&der).unwrap())
    );
    let signed = signed_by_hand(&w, "cbc", &mail);
    let (o, _) = w.org("sending", &signed, "hop1.eml", None);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("'Notes' is encrypted with AES-256-CBC"), "{}", stderr(&o));
}

#[test]
fn the_sending_hop_signs_only_for_its_own_organisations_users() {
    let w = World::new();
    let sent = w.bob_sends_a_note();
    // Example Org's hop, with every list: bob's chain reaches the shared SSMAX root, but not
    // through Example Org's CA.
    let (o, _) = w.org("sending", &sent, "hop1.eml", None);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("is not a user of this organisation"), "{}", stderr(&o));
    // His own organisation's hop takes it.
    let (o, _) = w.org("forward", &sent, "hop1-partner.eml", None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn receive_refuses_a_from_whose_display_name_or_form_shows_another_sender_and_escapes_labels() {
    let w = World::new();
    let sent = w.send(&[("figures.csv", "Q3\n", "Q3\n  original sender: CN=Carol CEO \u{1b}[2J")]);
    let (_, hop1) = w.org("sending", &sent, "hop1.eml", None);
    let (_, hop2) = w.org("receiving", &hop1, "hop2.eml", None);
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        !e.lines().any(|l| l.trim_start_matches("ssmax-card:").trim_start().starts_with("original sender: CN=Carol")),
        "a label made a line of its own: {e}"
    );
    assert!(!e.contains('\u{1b}'), "an escape sequence reached the terminal: {e}");
    assert!(e.contains("Q3\\0a  original sender: CN=Carol CEO \\1b[2J"), "{e}");
    let text = std::fs::read_to_string(&hop2).unwrap();
    let line = text.lines().find(|l| l.starts_with("From: ")).unwrap().to_string();
    for forged in [
        "From: Alice <alice@example.jp>, CEO <ceo@example.jp>",
        "From: \"ceo@example.jp\" <alice@example.jp>",
        "From: Board: CEO <alice@example.jp>;",
    ] {
        let edited = w.bob.write("edited.eml", text.replacen(&line, forged, 1));
        let o = run(&mut w.bob.with_pin(&["receive", "--in", edited.to_str().unwrap()]));
        assert_clear_failure(&o, 1);
        assert!(!stdout(&o).contains("Q3"), "{forged}: nothing opened");
    }
    let claims = w.bob.write("claims.eml", text.replacen(&line, "From: \"ceo@example.jp\" <alice@example.jp>", 1));
    let o = run(&mut w.bob.with_pin(&["receive", "--in", claims.to_str().unwrap()]));
    assert!(stderr(&o).contains("display name shows another address (ceo@example.jp)"), "{}", stderr(&o));
}

/// `entity` as an SSMAX attachment made by Bouncy Castle as the profile says: AES-256-GCM to `to`,
/// bound to `sender` (a certificate file), `label` and `file` (`to`: a PKI file name).
fn bc_protect(tok: &Tok, entity: &str, sender: &Path, label: &str, file: &str, to: &str) -> Vec<u8> {
    let input = tok.write("entity.in", entity);
    let der = tok.path("entity.der");
    let to = pki().join(to);
    ok(Command::new("java").args(["-cp", crate::peers::bc_classpath(), "BcPeer", "ssmax-protect"]).args([
        sender.to_str().unwrap(),
        label,
        file,
        to.to_str().unwrap(),
        input.to_str().unwrap(),
        der.to_str().unwrap(),
    ]));
    std::fs::read(&der).unwrap()
}

/// The part of a hand-made SSMAX body carrying `der`, labelled `label` and named `file`.
fn protected_part(der: &[u8], label: &str, file: &str) -> String {
    format!(
        "Content-Type: application/pkcs7-mime; smime-type=authEnveloped-data; name=\"{file}.p7m\"\nContent-Disposition: attachment; filename=\"{file}.p7m\"\nContent-Transfer-Encoding: base64\nSSMAX-Label: {label}\nSSMAX-Filename: {file}\n\n{}\n",
        base64(der)
    )
}

/// `entity` as alice's attachment to Example Org, made by hand (Bouncy Castle), labelled `label`
/// and named `file`.
fn protected_by_hand(w: &World, entity: &str, label: &str, file: &str) -> String {
    let alice = alices_signing_certificate(w);
    protected_part(&bc_protect(&w.alice, entity, &alice, label, file, "org.pem"), label, file)
}

#[test]
fn what_extraction_would_write_is_what_is_scanned_and_no_envelope_hides_inside() {
    let w = World::new();
    let head = "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: tool\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nA tool.\n--b\n";
    // EICAR as the preamble of a multipart attachment: no leaf holds it, the file written does.
    let preamble = format!(
        "Content-Type: multipart/mixed; boundary=IN\r\nContent-Disposition: attachment; filename=\"tool.com\"\r\n\r\n{EICAR}\r\n--IN\r\nContent-Type: text/plain\r\n\r\nclean\r\n--IN--\r\n"
    );
    let mail = format!("{head}{}--b--\n", protected_by_hand(&w, &preamble, "Handy tool", "tool.com"));
    let signed = signed_by_hand(&w, "preamble", &mail);
    let (o, _) = w.org("sending", &signed, "hop1.eml", Some(MALWARE_SCAN));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("'Handy tool' was flagged"), "{}", stderr(&o));
    // An envelope for bob inside a text part: the organisations could not look into it.
    let inner = w.alice.write("inner.txt", format!("Content-Type: text/plain\r\n\r\n{EICAR}\r\n"));
    let inner_der = w.alice.path("inner.der");
    ok(Command::new("openssl")
        .args(["cms", "-encrypt", "-aes-256-gcm", "-binary", "-outform", "DER", "-in"])
        .arg(&inner)
        .arg("-out")
        .arg(&inner_der)
        .arg(pki().join("bob.pem")));
    let mail = format!(
        "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: tool\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: multipart/mixed; boundary=\"c\"\n\n--c\nContent-Type: text/plain\n\nFor your eyes.\n--c\nContent-Type: application/pkcs7-mime; smime-type=authEnveloped-data; name=\"x.p7m\"\nContent-Transfer-Encoding: base64\n\n{}\n--c--\n--b--\n",
        base64(&std::fs::read(&inner_der).unwrap())
    );
    let signed = signed_by_hand(&w, "hidden", &mail);
    let (o, _) = w.org("sending", &signed, "hop1-hidden.eml", None);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("S/MIME envelope inside"), "{}", stderr(&o));
}

#[test]
fn a_ca_given_only_to_build_chains_makes_no_one_a_user_of_the_sending_organisation() {
    let w = World::new();
    let sent = w.bob_sends_a_note();
    let p = pki();
    let out = w.bob.path("hop1.eml");
    let o = run(hop("sending", &p.join("org.key"), &p.join("org.pem"), &p.join("partner-org.pem"), &sent, &out)
        .arg("--own-ca")
        .arg(p.join("orgca.pem"))
        // Partner Org's CA and the root, for chains only.
        .args([
            "--certfile",
            p.join("partnerca.pem").to_str().unwrap(),
            "--certfile",
            p.join("chain.pem").to_str().unwrap(),
        ])
        .args(crls_of(&["root", "orgca", "partnerca"])));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("is not a user of this organisation"), "{}", stderr(&o));
}

#[test]
fn a_display_name_shows_another_address_with_lookalike_or_invisible_characters_too() {
    let w = World::new();
    let sent = w.send(&[("figures.csv", "Q3\n", "Q3 figures")]);
    let (_, hop1) = w.org("sending", &sent, "hop1.eml", None);
    let (_, hop2) = w.org("receiving", &hop1, "hop2.eml", None);
    let text = std::fs::read_to_string(&hop2).unwrap();
    let line = text.lines().find(|l| l.starts_with("From: ")).unwrap().to_string();
    for name in
        ["ceo\u{ff20}bank.example", "ceo\u{fe6b}bank.example", "ceo@bank.example\u{200b}", "ceo@bank\u{2061}.example"]
    {
        let edited =
            w.bob.write("edited.eml", text.replacen(&line, &format!("From: \"{name}\" <alice@example.jp>"), 1));
        let o = run(&mut w.bob.with_pin(&["receive", "--in", edited.to_str().unwrap()]));
        assert_clear_failure(&o, 1);
        assert!(stderr(&o).contains("display name shows another address"), "{name}: {}", stderr(&o));
    }
    // --keep naming nothing lists the labels, escaped.
    let sent = w.send(&[("f.csv", "x\n", "Q3\n\u{1b}[2Jssmax-card:   original sender: CEO")]);
    let (_, hop1) = w.org("sending", &sent, "hop1b.eml", None);
    let (_, hop2) = w.org("receiving", &hop1, "hop2b.eml", None);
    let o = run(&mut w.bob.with_pin(&[
        "forward",
        "--in",
        hop2.to_str().unwrap(),
        "--to",
        "c@partner.example",
        "--keep",
        "nothing",
    ]));
    assert_clear_failure(&o, 2);
    assert!(!stderr(&o).contains('\u{1b}') && stderr(&o).contains("Q3\\0a\\1b[2J"), "{}", stderr(&o));
}

#[test]
fn the_receiving_hop_refuses_an_original_sender_who_is_not_a_user_of_the_sending_organisation() {
    let w = World::new();
    let sent = w.bob_sends_a_note();
    // Example Org's hop, misconfigured (or lying): it serves Partner Org's CA as if its own, and
    // records bob as its original sender.
    let p = pki();
    let hop1 = w.alice.path("hop1.eml");
    ok(hop("sending", &p.join("org.key"), &p.join("org.pem"), &p.join("partner-org.pem"), &sent, &hop1)
        .arg("--own-ca")
        .arg(p.join("partnerca.pem"))
        .args(crls_of(&["root", "partnerca"])));
    let (o, _) = w.org("receiving", &hop1, "hop2.eml", None);
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(e.contains("is a user of 'CN=Partner Org CA,O=Partner Org', not of the sending organisation"), "{e}");
}

const ALICE_NOTES: &str = "From: Alice Example <alice@example.jp>\nTo: Bob <bob@partner.example>\nSubject: notes\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nMy meeting notes.\n--b\n";

#[test]
fn an_envelope_the_sender_did_not_make_is_not_re_keyed_under_their_name_label_or_file_name() {
    let w = World::new();
    let payroll = "Content-Type: text/csv; name=\"payroll.csv\"\r\nContent-Disposition: attachment; filename=\"payroll.csv\"\r\n\r\nname,salary\r\n";
    let notes = "Content-Type: text/plain; name=\"notes.txt\"\r\nContent-Disposition: attachment; filename=\"notes.txt\"\r\n\r\nnotes\r\n";
    // Encrypted to Example Org by someone else: alice cannot open it, the organisation can.
    let unbound = {
        let input = w.alice.write("payroll.in", payroll);
        let der = w.alice.path("payroll.der");
        ok(Command::new("openssl")
            .args(["cms", "-encrypt", "-aes-256-gcm", "-binary", "-outform", "DER", "-in"])
            .arg(&input)
            .arg("-out")
            .arg(&der)
            .arg(pki().join("org.pem")));
        std::fs::read(&der).unwrap()
    };
    let alice = alices_signing_certificate(&w);
    let bobs = bc_protect(&w.alice, payroll, &pki().join("bob.pem"), "Payroll", "payroll.csv", "org.pem");
    let relabelled = bc_protect(&w.alice, payroll, &alice, "Payroll", "payroll.csv", "org.pem");
    let renamed_inside = bc_protect(&w.alice, payroll, &alice, "Notes", "notes.txt", "org.pem");
    let notes_der = bc_protect(&w.alice, notes, &alice, "Notes", "notes.txt", "org.pem");
    let cases: [(&str, &[u8], &str, &str, &str); 5] = [
        ("unbound", &unbound, "Alice's meeting notes", "notes.txt", "is not bound to a sender"),
        ("someone else's", &bobs, "Payroll", "payroll.csv", "was encrypted by certificate"),
        ("relabelled", &relabelled, "Alice's meeting notes", "payroll.csv", "was encrypted under the label 'Payroll'"),
        ("renamed", &notes_der, "Notes", "payroll.csv", "is sent as 'payroll.csv' but was encrypted as 'notes.txt'"),
        (
            "another file inside",
            &renamed_inside,
            "Notes",
            "notes.txt",
            "holds a file named 'payroll.csv', not 'notes.txt'",
        ),
    ];
    for (what, der, label, file, said) in cases {
        let mail = format!("{ALICE_NOTES}{}--b--\n", protected_part(der, label, file));
        let signed = signed_by_hand(&w, "pasted", &mail);
        let (o, out) = w.org("sending", &signed, "hop1.eml", None);
        assert_clear_failure(&o, 1);
        assert!(stderr(&o).contains(said), "{what}: {}", stderr(&o));
        assert!(!out.exists(), "{what}: nothing written");
    }
    assert!(
        stderr(
            &w.org(
                "sending",
                &signed_by_hand(
                    &w,
                    "bobs",
                    &format!("{ALICE_NOTES}{}--b--\n", protected_part(&bobs, "Payroll", "payroll.csv"))
                ),
                "h.eml",
                None
            )
            .0
        )
        .contains("not by the sender 'CN=Alice Example,O=Example Org'"),
        "the message names the sender"
    );
    // alice's own envelope, under its own label and name, passes.
    let mail = format!("{ALICE_NOTES}{}--b--\n", protected_part(&notes_der, "Notes", "notes.txt"));
    let (o, _) = w.org("sending", &signed_by_hand(&w, "own", &mail), "hop1-own.eml", None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn a_forward_of_an_envelope_the_forwarder_could_not_open_is_refused() {
    let w = World::new();
    // An envelope alice made for Partner Org (say, carried to another of its users), which bob
    // pastes into his own mail as if he had received and forwarded it: he never held its key.
    let entity = "Content-Type: text/plain; name=\"plan.txt\"\r\nContent-Disposition: attachment; filename=\"plan.txt\"\r\n\r\nplan\r\n";
    let der = bc_protect(&w.bob, entity, &pki().join("alice.pem"), "Plan", "plan.txt", "partner-org.pem");
    let mail = format!(
        "From: Bob Partner <bob@partner.example>\nTo: Carol <carol@example.jp>\nSubject: Fwd: plan\nContent-Type: multipart/mixed; boundary=\"b\"\n\n--b\nContent-Type: text/plain\n\nForwarded.\n--b\n{}--b--\n",
        protected_part(&der, "Plan", "plan.txt")
    );
    let draft = w.bob.write("fwd.draft", mail);
    let signed = w.bob.path("fwd-by-hand.eml");
    ok(&mut w.bob.with_pin(&["sign", "--in", draft.to_str().unwrap(), "--out", signed.to_str().unwrap()]));
    let (o, _) = w.org("forward", &signed, "hop1-fwd.eml", None);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("not by the sender 'CN=Bob Partner"), "{}", stderr(&o));
}

/// alice's config with a profile of her own for her SoftHSM2 token: `name` and `description`.
fn alice_claims(w: &World, name: &str, description: &str) -> PathBuf {
    let soft = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pkcs11-profiles/softhsm2.toml")).unwrap();
    let claimed = soft.replacen("name = \"softhsm2\"", &format!("name = \"{name}\""), 1).replacen(
        "description = \"SoftHSM2 software token (test and demo stand-in for a card)\"",
        &format!("description = \"{description}\""),
        1,
    );
    let dir = w.alice.path(&format!("profiles-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("claimed.toml"), claimed).unwrap();
    if name != "softhsm2" {
        // The built-in profile would match first: this one replaces it and matches nothing.
        std::fs::write(dir.join("softhsm2.toml"), soft.replacen("model = \"SoftHSM v2\"", "model = \"none\"", 1))
            .unwrap();
    }
    w.alice.write(&format!("config-{name}.toml"), format!("profiles_dir = \"{}\"\n", dir.display()))
}

/// alice sends a note with `config`.
fn alice_sends_with(w: &World, config: &Path, name: &str) -> PathBuf {
    let draft = w.draft("Bob, a note.");
    let sent = w.alice.path(&format!("{name}.eml"));
    ok(&mut w.alice.with_pin(&[
        "send",
        "--config",
        config.to_str().unwrap(),
        "--in",
        draft.to_str().unwrap(),
        "--out",
        sent.to_str().unwrap(),
    ]));
    sent
}

#[test]
fn the_identity_method_bob_sees_is_what_the_organisation_registered_not_what_alices_client_says() {
    let w = World::new();
    // The client calls her token another kind: the organisation registered SoftHSM2 for her.
    let sent = alice_sends_with(&w, &alice_claims(&w, "yubikey-fips", "YubiKey 5 FIPS"), "other-kind");
    let (o, out) = w.org("sending", &sent, "hop1-kind.eml", None);
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(
        e.contains("says its key is on a 'yubikey-fips' token, but Example Org registered a 'softhsm2' token"),
        "{e}"
    );
    assert!(!out.exists());
    // The right kind, a made-up description: the organisation's own words reach bob, not the client's.
    let sent = alice_sends_with(&w, &alice_claims(&w, "softhsm2", "YubiKey 5 FIPS, in-person ID check"), "fips");
    let (o, hop1) = w.org("sending", &sent, "hop1-fips.eml", None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (o, hop2) = w.org("receiving", &hop1, "hop2-fips.eml", None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(!e.contains("FIPS"), "{e}");
    assert!(e.contains("token: Example Org staff token (SoftHSM2 stand-in) (registered by Example Org;"), "{e}");
}

#[test]
fn a_sending_organisation_without_a_registration_for_the_sender_refuses() {
    let w = World::new();
    let sent = w.send(&[]);
    let p = pki();
    // A registry that knows only Partner Org's users.
    let only_partner = w.alice.write(
        "partner-only.toml",
        format!(
            "[[token]]\nissuer = \"{}\"\nkind = \"softhsm2\"\ndescription = \"Partner card\"\n",
            p.join("partnerca.pem").display()
        ),
    );
    for registry in [None, Some(&only_partner)] {
        let out = w.alice.path("hop1-unregistered.eml");
        let mut c = Command::new(BIN);
        c.args(["org", "--role", "sending", "--org-key"])
            .arg(p.join("org.key"))
            .args(["--org-cert", p.join("org.pem").to_str().unwrap(), "--anchor", p.join("root.pem").to_str().unwrap()])
            .args([
                "--own-ca",
                p.join("orgca.pem").to_str().unwrap(),
                "--next",
                p.join("partner-org.pem").to_str().unwrap(),
            ])
            .args(crls_of(&["root", "orgca"]))
            .arg("--in")
            .arg(&sent)
            .arg("--out")
            .arg(&out);
        if let Some(r) = registry {
            c.arg("--registry").arg(r);
        }
        let o = run(&mut c);
        assert_clear_failure(&o, 1);
        let e = stderr(&o);
        let said =
            if registry.is_some() { "registered no token for 'CN=Alice Example" } else { "has no token registry" };
        assert!(e.contains(said), "{e}");
        assert!(!out.exists());
    }
}

/// A token maker's attestation chain made with openssl: a root, a device certificate under it
/// (YubiKey's F9), and the slot attestation for `subject_cert`'s key with Yubico's extensions
/// (firmware 5.4.3, serial 12345678, PIN once, touch never). Returns (chain PEM, root PEM).
fn attestation_for(tok: &Tok, subject_cert: &Path, name: &str) -> (PathBuf, PathBuf) {
    let f = |n: &str| tok.path(&format!("{name}-{n}"));
    let sh = |script: String| ok(Command::new("bash").arg("-c").arg(script));
    sh(format!(
        "set -e
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {rk} -out {root} -days 30 -subj '/CN=Token Maker Attestation Root' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout {dk} -out {dcsr} -subj '/CN=Token Device Attestation'
        printf 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n' > {dext}
        openssl x509 -req -in {dcsr} -CA {root} -CAkey {rk} -set_serial 2 -days 30 -extfile {dext} -out {dev}
        openssl x509 -in {subject} -pubkey -noout > {pubk}
        printf '1.3.6.1.4.1.41482.3.3=DER:05:04:03\n1.3.6.1.4.1.41482.3.7=ASN1:INTEGER:12345678\n1.3.6.1.4.1.41482.3.8=DER:02:01\n' > {aext}
        openssl req -new -key {dk} -subj '/CN=Token PIV Attestation 9c' -out {acsr}
        openssl x509 -req -in {acsr} -CA {dev} -CAkey {dk} -set_serial 3 -days 30 -force_pubkey {pubk} -extfile {aext} -out {att}
        cat {att} {dev} > {chain}",
        rk = f("root.key").display(),
        root = f("root.pem").display(),
        dk = f("dev.key").display(),
        dcsr = f("dev.csr").display(),
        dext = f("dev.ext").display(),
        dev = f("dev.pem").display(),
        subject = subject_cert.display(),
        pubk = f("subject.pub").display(),
        aext = f("att.ext").display(),
        acsr = f("att.csr").display(),
        att = f("att.pem").display(),
        chain = f("chain.pem").display(),
    ));
    (f("chain.pem"), f("root.pem"))
}

#[test]
fn a_token_attestation_is_checked_when_registered_and_stated_with_what_it_certifies() {
    let w = World::new();
    let alice = alices_signing_certificate(&w);
    let (chain, root) = attestation_for(&w.alice, &alice, "good");
    let registry = |attestation: &Path| {
        w.alice.write(
            "attested.toml",
            format!(
                "[[token]]\ncertificate = \"{}\"\nkind = \"softhsm2\"\ndescription = \"alice's token\"\nattestation = \"{}\"\n",
                alice.display(),
                attestation.display()
            ),
        )
    };
    let sent = w.send(&[]);
    let p = pki();
    let run_hop = |registry: &Path, roots: &[&Path]| {
        let out = w.alice.path("hop1-attested.eml");
        let _ = std::fs::remove_file(&out);
        let mut c = Command::new(BIN);
        c.args(["org", "--role", "sending", "--org-key"])
            .arg(p.join("org.key"))
            .args(["--org-cert", p.join("org.pem").to_str().unwrap(), "--anchor", p.join("root.pem").to_str().unwrap()])
            .args([
                "--own-ca",
                p.join("orgca.pem").to_str().unwrap(),
                "--next",
                p.join("partner-org.pem").to_str().unwrap(),
            ])
            .args(crls_of(&["root", "orgca"]))
            .arg("--registry")
            .arg(registry)
            .arg("--in")
            .arg(&sent)
            .arg("--out")
            .arg(&out);
        for r in roots {
            c.arg("--attestation-root").arg(r);
        }
        (run(&mut c), out)
    };
    let (o, out) = run_hop(&registry(&chain), &[&root]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(
            "key born on the token, attested: serial 12345678, firmware 5.4.3, PIN once per session, touch never"
        ),
        "{e}"
    );
    assert!(std::fs::read(&out).is_ok());
    // Another key's attestation, a chain to another root, no root at all, and a key a genuine
    // device attested (a slot key) vouching for alice's software key: the registry is refused.
    let (bobs, _) = attestation_for(&w.alice, &pki().join("bob.pem"), "bob");
    let (_, other_root) = attestation_for(&w.alice, &alice, "other");
    let slot_key = w.alice.path("slot.key");
    ok(Command::new("openssl")
        .args(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out"])
        .arg(&slot_key));
    let slot_cert = w.alice.path("slot.pem");
    ok(Command::new("openssl")
        .args(["req", "-x509", "-key"])
        .arg(&slot_key)
        .args(["-subj", "/CN=slot", "-days", "30", "-out"])
        .arg(&slot_cert));
    let (slot_chain, slot_root) = attestation_for(&w.alice, &slot_cert, "slot");
    let forged_leaf = w.alice.path("forged-leaf.pem");
    ok(Command::new("bash").arg("-c").arg(format!(
        "set -e; openssl x509 -in {a} -pubkey -noout > {d}/alice.pub; openssl req -new -key {k} -subj '/CN=Token PIV Attestation 9c' -out {d}/forged.csr; printf '1.3.6.1.4.1.41482.3.7=ASN1:INTEGER:99999999\\n' > {d}/forged.ext; openssl x509 -req -in {d}/forged.csr -CA {s} -CAkey {k} -set_serial 9 -days 30 -force_pubkey {d}/alice.pub -extfile {d}/forged.ext -out {f}",
        a = alice.display(),
        d = w.alice.dir.path().display(),
        k = slot_key.display(),
        s = slot_cert.display(),
        f = forged_leaf.display()
    )));
    let forged = w.alice.write(
        "forged-chain.pem",
        std::fs::read_to_string(&forged_leaf).unwrap() + &std::fs::read_to_string(&slot_chain).unwrap(),
    );
    for (attestation, roots, said) in [
        (&forged, vec![slot_root.as_path()], "signs another but is not a CA"),
        (&bobs, vec![root.as_path()], "certifies another key"),
        (&chain, vec![other_root.as_path()], "is not signed by an attestation root"),
        (&chain, vec![], "no --attestation-root"),
    ] {
        let (o, out) = run_hop(&registry(attestation), &roots);
        assert_clear_failure(&o, 2);
        assert!(stderr(&o).contains(said), "{said}: {}", stderr(&o));
        assert!(!out.exists());
    }
}

#[test]
fn the_receiving_organisation_refuses_an_original_sender_whose_card_was_reported_lost_since() {
    let w = World::new();
    let sent = w.send(&[("figures.csv", "Q3\n", "Q3 figures")]);
    // Example Org passed it while alice's certificate was good...
    let (o, hop1) = w.org("sending", &sent, "hop1.eml", None);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // ...then she reported her card lost, and Partner Org has Example Org CA's new list.
    let alice = signer_of(&w.alice, &sent);
    let lost = [(alice.to_str().unwrap(), "keyCompromise")];
    let dir = w.alice.path("crls");
    let orgca = crate::revocation::crl(&dir, "orgca", &lost, None);
    let p = pki();
    let receiving = |crls: &[&Path]| {
        let out = w.alice.path("hop2-lost.eml");
        let mut c =
            hop("receiving", &p.join("partner-org.key"), &p.join("partner-org.pem"), &p.join("bob.pem"), &hop1, &out);
        for crl in crls {
            c.arg("--crl").arg(crl);
        }
        (run(&mut c), out)
    };
    let (o, out) = receiving(&[&p.join("root.crl"), &orgca]);
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(e.contains("the original sender 'CN=Alice Example") && e.contains("(key compromise)"), "{e}");
    assert!(!out.exists());
    // Without Example Org CA's list the receiving organisation cannot tell, and refuses.
    let (o, out) = receiving(&[&p.join("root.crl")]);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("the original sender 'CN=Alice Example"), "{}", stderr(&o));
    assert!(!out.exists());
}

/// The independent sending organisation of the tests (peers/reference_hop.py: openssl, Python's
/// email package and Bouncy Castle, from docs/ssmax-mail-profile.md alone), as Example Org.
fn reference_hop(w: &World, input: &Path, out: &str) -> (Output, PathBuf) {
    let p = pki();
    let outp = w.alice.path(out);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/peers/reference_hop.py");
    let o = run(Command::new("python3")
        .arg(script)
        .arg(crate::peers::bc_classpath())
        .args(["root.pem", "orgca.pem", "org.key", "org.pem", "partner-org.pem"].map(|f| p.join(f)))
        .arg(registry())
        .arg(input)
        .arg(&outp));
    (o, outp)
}

#[test]
fn an_independent_sending_organisation_following_the_profile_interoperates_and_refuses_the_same() {
    let w = World::new();
    let sent = w.send(&[
        ("figures.csv", "Q3 revenue: 1,234 MJPY\n", "Q3 figures"),
        ("見積書.txt", "見積 Q3\n", "社外秘: 見積"),
    ]);
    let (o, hop1) = reference_hop(&w, &sent, "ref-hop1.eml");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    openssl_ok(&hop1);
    // ssmax-card's receiving organisation and bob's receive take what it made.
    let (o, hop2) = w.org("receiving", &hop1, "ref-hop2.eml", Some(MALWARE_SCAN));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = run(&mut w.bob.with_pin(&["receive", "--in", hop2.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("sending organisation: CN=Example Org (mail),O=Example Org"), "{e}");
    assert!(e.contains("original sender:      CN=Alice Example,O=Example Org <alice@example.jp>"), "{e}");
    assert!(
        e.contains("identity method:      possession of the softhsm2 token Example Org registered for this certificate + knowledge of its PIN (token: Example Org staff token (SoftHSM2 stand-in) (registered by Example Org), profile softhsm2"),
        "{e}"
    );
    assert!(e.contains("opened '社外秘: 見積'"), "{e}");
    assert!(stdout(&o).contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "{}", stdout(&o));
    // And it refuses what ssmax-card's sending organisation refuses.
    let alice = alices_signing_certificate(&w);
    let payroll = "Content-Type: text/csv; name=\"payroll.csv\"\r\nContent-Disposition: attachment; filename=\"payroll.csv\"\r\n\r\nname,salary\r\n";
    let bobs = bc_protect(&w.alice, payroll, &pki().join("bob.pem"), "Payroll", "payroll.csv", "org.pem");
    let relabelled = bc_protect(&w.alice, payroll, &alice, "Payroll", "payroll.csv", "org.pem");
    let renamed_inside = bc_protect(&w.alice, payroll, &alice, "Notes", "notes.txt", "org.pem");
    for (what, der, label, file) in [
        ("someone else's", &bobs, "Payroll", "payroll.csv"),
        ("relabelled", &relabelled, "Alice's meeting notes", "payroll.csv"),
        ("another file inside", &renamed_inside, "Notes", "notes.txt"),
    ] {
        let mail = format!("{ALICE_NOTES}{}--b--\n", protected_part(der, label, file));
        let signed = signed_by_hand(&w, "pasted-ref", &mail);
        let (o, out) = reference_hop(&w, &signed, "ref-pasted.eml");
        assert_eq!(code(&o), 1, "{what}: {}", stderr(&o));
        assert!(stderr(&o).contains("reference hop: refused"), "{what}: {}", stderr(&o));
        assert!(!out.exists(), "{what}");
        let (o, _) = w.org("sending", &signed, "ours-pasted.eml", None);
        assert_clear_failure(&o, 1);
    }
}

/// `ssmax-card imap view` of `mail` on bob's card (with his PIN), in `lang`.
fn bobs_view(w: &World, mail: &Path, lang: &str) -> Output {
    run(w.bob.with_pin(&["imap", "view", "--in", mail.to_str().unwrap()]).env("LANG", lang))
}

/// The body of a view's first part (its explanation), quoted-printable decoded.
fn first_part(view: &str) -> String {
    let part = view.split("--=_ssmax-view-").nth(1).expect("a first part");
    let body = part.split_once("\r\n\r\n").expect("a body").1;
    qp_decoded(body)
}

/// A quoted-printable text decoded (Python's quopri: not our own decoder judging our encoder).
fn qp_decoded(text: &str) -> String {
    let o = ok(Command::new("python3").args([
        "-c",
        "import quopri,sys; sys.stdout.buffer.write(quopri.decodestring(sys.argv[1].encode()))",
        text,
    ]));
    stdout(&o)
}

#[test]
fn the_door_shows_ssmax_mail_verified_and_decrypted_as_plain_multipart_mixed_with_its_verdict() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    // A verdict someone put in front, under the door's own authserv-id, and one from a real MX.
    let text = std::fs::read_to_string(&hop2).unwrap();
    let claimed = w.bob.write(
        "claimed.eml",
        "Authentication-Results: ssmax-card.local; smime=pass header.smime-identifier=ceo@example.jp\r\nAuthentication-Results: mx.partner.example; spf=pass\r\n".to_string() + &text,
    );
    let o = bobs_view(&w, &claimed, "C.UTF-8");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let view = stdout(&o);
    let (head, body) = view.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with(
            "Authentication-Results: ssmax-card.local; smime=pass header.smime-identifier=alice@example.jp\r\n"
        ),
        "{head}"
    );
    assert_eq!(head.matches("ssmax-card.local").count(), 1, "the claimed verdict is gone: {head}");
    assert!(head.contains("Authentication-Results: mx.partner.example; spf=pass"), "{head}");
    assert!(head.contains("Content-Type: multipart/mixed;") && !view.contains("multipart/signed"), "{head}");
    assert!(!view.contains("application/pkcs7"), "nothing left encrypted or signed");
    let first = first_part(&view);
    assert!(
        first.contains(
            "verified by ssmax-card against your organisation's certificate on your card (Partner Org (mail))"
        ),
        "{first}"
    );
    assert!(first.contains("original sender:      CN=Alice Example,O=Example Org <alice@example.jp>"), "{first}");
    assert!(first.contains("[1] Q3 figures — figures.csv"), "{first}");
    assert!(body.contains("Content-Disposition: attachment; filename=\"figures.csv\"\r\nContent-Transfer-Encoding: base64\r\n\r\nUTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "{body}");
    // Built once, the same every time: a client that fetches it again sees the same bytes.
    assert_eq!(stdout(&bobs_view(&w, &claimed, "C.UTF-8")), view);
    // In Japanese for a Japanese user.
    let ja = stdout(&bobs_view(&w, &hop2, "ja_JP.UTF-8"));
    let first = first_part(&ja);
    assert!(first.contains("カード上のあなたの組織の証明書"), "{first}");
    // However the claim is spelled (quoted, a comment after the id, an escaped bracket in a
    // comment), it is taken out; a second Subject makes the view a failure; a Reply-To that is
    // not the verified sender is said first.
    let spelled = w.bob.write(
        "spelled.eml",
        "Authentication-Results: \"ssmax-card.local\"; smime=pass\r\nAuthentication-Results: ssmax-card.local(c); smime=pass\r\nAuthentication-Results: (\\() ssmax-card.local; smime=pass\r\nReply-To: attacker@evil.example\r\n".to_string() + &text,
    );
    let o = bobs_view(&w, &spelled, "C.UTF-8");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let view = stdout(&o);
    assert_eq!(view.split("\r\n\r\n").next().unwrap().matches("ssmax-card.local").count(), 1, "{view}");
    assert!(
        first_part(&view).contains(
            "Note: the Reply-To field, which the signature does not cover, names someone else: attacker@evil.example"
        ),
        "{view}"
    );
    let twice = w.bob.write("twice.eml", "Subject: [verified by ssmax-card: CEO] urgent\r\n".to_string() + &text);
    let view = stdout(&bobs_view(&w, &twice, "C.UTF-8"));
    assert!(view.starts_with("Authentication-Results: ssmax-card.local; smime=fail"), "{view}");
    assert!(first_part(&view).contains("more than one Subject field"), "{view}");
    // ...decided before the card is asked: no PIN source at all, and no prompt.
    let o = run(w.bob.cmd().args(["imap", "view", "--in", twice.to_str().unwrap()]).stdin(std::process::Stdio::null()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(first_part(&stdout(&o)).contains("more than one Subject field"), "{}", stdout(&o));
    // A mail that is not SSMAX: exactly as it came.
    let plain = w.bob.write("plain.eml", "From: Carol <carol@example.jp>\r\nSubject: lunch\r\n\r\nNoon?\r\n");
    let o = bobs_view(&w, &plain, "C.UTF-8");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(o.stdout, std::fs::read(&plain).unwrap());
    // ...but for a verdict it claims in the door's name, folded or not: gone, the rest as it was.
    let claiming = w.bob.write(
        "claiming.eml",
        "Authentication-Results:\r\n ssmax-card.local; smime=pass header.smime-identifier=ceo@example.jp\r\nFrom: CEO <ceo@example.jp>\r\nSubject: wire the money\r\n\r\nNow.\r\n",
    );
    let o = bobs_view(&w, &claiming, "C.UTF-8");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(stdout(&o), "From: CEO <ceo@example.jp>\r\nSubject: wire the money\r\n\r\nNow.\r\n");
    // Nor behind a bare CR, which some readers take for a line end.
    let hidden = w.bob.write(
        "hidden.eml",
        "From: CEO <ceo@example.jp>\r\nSubject: x\rAuthentication-Results: ssmax-card.local; smime=pass\r\n\r\nNow.\r\n",
    );
    let o = bobs_view(&w, &hidden, "C.UTF-8");
    assert_eq!(
        stdout(&o),
        "From: CEO <ceo@example.jp>\r\nSubject: x Authentication-Results: ssmax-card.local; smime=pass\r\n\r\nNow.\r\n"
    );
}

#[test]
fn the_door_shows_a_tampered_ssmax_mail_as_failed_with_no_attachment_opened_and_no_pin_asked() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let bad = tamper(&w.bob, &hop2, "Bob, the figures are attached.", "Bob, pay invoice 77 today.");
    // No PIN source at all: a failed mail asks for none.
    let o = run(w.bob.cmd().args(["imap", "view", "--in", bad.to_str().unwrap()]).stdin(std::process::Stdio::null()));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let view = stdout(&o);
    assert!(
        view.starts_with(
            "Authentication-Results: ssmax-card.local; smime=fail header.smime-identifier=alice@example.jp\r\n"
        ),
        "{view}"
    );
    let first = first_part(&view);
    assert!(first.contains("did NOT pass SSMAX verification") && first.contains("altered after signing"), "{first}");
    assert!(!view.contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "no attachment decrypted");
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
    // Without the card, the door cannot tell yet: no view, the reason, the mail tried later.
    let away = Tok::without_tokens("0000");
    let o = run(away.cmd().args(["imap", "view", "--in", hop2.to_str().unwrap()]));
    assert_clear_failure(&o, 3);
}

#[test]
fn the_agent_builds_the_same_view_the_door_will_serve_asking_the_pin_through_its_pinentry() {
    use crate::support::agent::{getpins, recv_msg, send_msg, start_agent};
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let agent = start_agent(&w.bob, "", "0");
    let mut s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    let request = serde_json::json!({"v": 1, "id": 7, "method": "view", "args": {}, "timeout_ms": 60000, "client": {}});
    send_msg(&mut s, &request, &std::fs::read(&hop2).unwrap());
    let (resp, body) = recv_msg(&mut s).unwrap();
    assert_eq!(resp["ok"], true, "{resp}");
    assert_eq!(getpins(&agent), 1, "the PIN through the agent's pinentry, once");
    // Byte for byte what `imap view` gives: the door's view does not depend on who builds it.
    assert_eq!(body, bobs_view(&w, &hop2, "C.UTF-8").stdout);
    // An argument the method does not take is refused by name.
    let mut s = std::os::unix::net::UnixStream::connect(&agent.socket).unwrap();
    let bad = serde_json::json!({"v": 1, "id": 8, "method": "view", "args": {"path": "/etc/passwd"}, "timeout_ms": 1000, "client": {}});
    send_msg(&mut s, &bad, b"");
    let (resp, _) = recv_msg(&mut s).unwrap();
    assert_eq!(resp["ok"], false);
    assert!(resp["error"].as_str().unwrap_or_default().contains("path"), "{resp}");
}

/// The organisation's mail store for the IMAP door: a private Dovecot on a loopback port.
struct Dovecot {
    dir: PathBuf,
    port: u16,
    /// With TLS: the port for TLS from the first byte, and the CA of its certificate.
    tls: Option<(u16, PathBuf)>,
    user: String,
    password: String,
    /// What dovecot.sh was started with (to start it again).
    args: Vec<String>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Dovecot {
    fn start(tok: &Tok) -> Dovecot {
        Dovecot::start_with(tok, false)
    }

    /// With `tls`: a certificate for 127.0.0.1 from a CA of its own (STARTTLS on `port`).
    fn start_with(tok: &Tok, tls: bool) -> Dovecot {
        let port = free_port();
        let dir = tok.path("dovecot");
        let (user, password) = (format!("bob{port}"), "mail store password".to_string());
        let mut args =
            vec!["start".to_string(), dir.display().to_string(), port.to_string(), user.clone(), password.clone()];
        let mut tls_info = None;
        if tls {
            let d = tok.path("mail-tls");
            std::fs::create_dir_all(&d).unwrap();
            ok(Command::new("bash").current_dir(&d).arg("-c").arg(
                "set -e
                openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem -days 30 -subj '/CN=Mail Store Test CA' -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
                openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr -subj /CN=localhost 2>/dev/null
                printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth\\n' > srv.ext
                openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -set_serial 5 -days 30 -extfile srv.ext -out srv.pem 2>/dev/null
                chmod 644 srv.key",
            ));
            let tls_port = free_port();
            args.extend([
                d.join("srv.pem").display().to_string(),
                d.join("srv.key").display().to_string(),
                tls_port.to_string(),
            ]);
            tls_info = Some((tls_port, d.join("ca.pem")));
        }
        ok(Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/dovecot.sh"))
            .args(&args));
        Dovecot { dir, port, tls: tls_info, user, password, args }
    }

    /// Stopped, its mail kept.
    fn stop(&self) {
        ok(Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/dovecot.sh"))
            .args(["stop", self.dir.to_str().unwrap()]));
    }

    /// Started again on its port, with the mail it had.
    fn start_again(&self) {
        ok(Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/dovecot.sh"))
            .args(&self.args));
    }

    /// Put messages in INBOX as a delivery would (Python's imaplib as the client).
    fn deliver(&self, mails: &[&Path]) {
        let script = "import imaplib,sys\nm=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nm.login(sys.argv[2],sys.argv[3])\nfor f in sys.argv[4:]:\n    typ,_=m.append('INBOX',None,None,open(f,'rb').read()); assert typ=='OK'\nm.logout()\n";
        ok(Command::new("python3")
            .args(["-c", script, &self.port.to_string(), &self.user, &self.password])
            .args(mails));
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/dovecot.sh"))
            .args(["stop", self.dir.to_str().unwrap()])
            .status();
    }
}

type ImapDoor = crate::smtp::FrontDoor;

/// `ssmax-card imap serve` for bob, reading `store` through bob's agent at `socket`.
fn imap_door(tok: &Tok, socket: &Path, store: &Dovecot) -> ImapDoor {
    imap_door_with(tok, socket, store, &format!("upstream = \"127.0.0.1:{}\"\nupstream_tls = \"none\"\n", store.port))
}

/// The same with `upstream` (lines of [imap]: upstream, upstream_tls, upstream_ca).
fn imap_door_with(tok: &Tok, socket: &Path, store: &Dovecot, upstream: &str) -> ImapDoor {
    let port = free_port();
    let user = format!("client{port}");
    let config = tok.write(
        &format!("imap-{port}.toml"),
        format!("[smtp]\nclient_user = \"{user}\"\n[imap]\n{upstream}upstream_user = \"{}\"\n", store.user),
    );
    let pw = tok.write("store-password", format!("{}\n", store.password));
    let set = run(Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec {BIN} --config {} imap set-upstream-password --password-fd 3 3<{}",
            config.display(),
            pw.display()
        ))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", tok.dir.path()));
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    let shown = ok(tok.cmd().arg("--config").arg(&config).args(["smtp", "client-secret"]));
    let secret = stdout(&shown).lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().to_string();
    let child = tok
        .cmd()
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(socket)
        .args(["imap", "serve", "--listen", &format!("127.0.0.1:{port}")])
        .stderr(std::process::Stdio::from(std::fs::File::create(tok.path(&format!("imap-door-{port}.log"))).unwrap()))
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < std::time::Duration::from_secs(10), "the IMAP door did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    ImapDoor { child, port, user, secret }
}

/// A Python script given the door's port, user and secret, then the mail store's, then `more`.
fn with_door_and_store(script: &str, door: &ImapDoor, store: &Dovecot, more: &[&str]) -> Output {
    run(Command::new("python3")
        .args(["-c", script, &door.port.to_string(), &door.user, &door.secret])
        .args([&store.port.to_string(), &store.user, &store.password])
        .args(more))
}

/// mbsync (Debian's isync) pulls INBOX through the door into a Maildir; its output.
fn mbsync(tok: &Tok, door: &ImapDoor) -> Output {
    mbsync_into(tok, door, "Mail")
}

fn mbsync_into(tok: &Tok, door: &ImapDoor, dir: &str) -> Output {
    mbsync_with(tok, door, dir, "Host 127.0.0.1\nSSLType None\n", "Far :door:INBOX\nNear :local:INBOX\n")
}

/// mbsync pulling through the door into the Maildir `dir`: `account`, the account's host and
/// TLS lines; `channel`, what the channel syncs (Far, Near, Patterns).
fn mbsync_with(tok: &Tok, door: &ImapDoor, dir: &str, account: &str, channel: &str) -> Output {
    let maildir = tok.path(dir);
    std::fs::create_dir_all(&maildir).unwrap();
    let rc = tok.write(
        &format!("mbsyncrc-{dir}"),
        format!(
            "IMAPAccount door\n{account}Port {}\nUser {}\nPass {}\nAuthMechs PLAIN\n\nIMAPStore door\nAccount door\n\nMaildirStore local\nPath {m}/\nInbox {m}/INBOX\nSubFolders Verbatim\n\nChannel c\n{channel}Sync Pull\nCreate Near\nSyncState *\n",
            door.port,
            door.user,
            door.secret,
            m = maildir.display()
        ),
    );
    run(Command::new("mbsync").arg("-V").arg("-c").arg(&rc).arg("c"))
}

/// The messages of mailbox `name` in the Maildir `dir` (not mbsync's state files beside them).
fn maildir_box(tok: &Tok, dir: &str, name: &str) -> Vec<Vec<u8>> {
    files_under(&tok.path(dir).join(name))
        .into_iter()
        .filter(|(p, _)| p.parent().is_some_and(|d| d.ends_with("cur") || d.ends_with("new")))
        .map(|(_, b)| b)
        .collect()
}

/// The messages mbsync wrote, by content.
fn maildir_messages(tok: &Tok) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(entries) = std::fs::read_dir(tok.path("Mail").join("INBOX").join(sub)) {
            for e in entries.flatten() {
                out.push((e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn mbsync_through_the_imap_door_gets_ssmax_mail_decrypted_and_other_mail_as_it_is() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let tampered = tamper(&w.bob, &hop2, "Bob, the figures are attached.", "Bob, pay invoice 77 today.");
    let plain = w.bob.write(
        "plain.eml",
        "From: =?UTF-8?B?5bGx55Sw?= <yamada@example.jp>\r\nTo: bob@partner.example\r\nSubject: =?UTF-8?B?5piO5pel44Gu5Lya6K2w?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n明日の会議\r\n",
    );
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&hop2, &plain, &tampered]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    let o = mbsync(&w.bob, &door);
    assert_eq!(
        code(&o),
        0,
        "{}{}\n{}",
        stdout(&o),
        stderr(&o),
        std::fs::read_to_string(w.bob.path(&format!("imap-door-{}.log", door.port))).unwrap_or_default()
    );
    let got = maildir_messages(&w.bob);
    assert_eq!(got.len(), 3, "{:?}", got.iter().map(|g| &g.0).collect::<Vec<_>>());
    // As mbsync writes them: LF line ends, and its own X-TUID field (its tracking) taken out.
    let text: Vec<String> = got
        .iter()
        .map(|(_, b)| {
            let t = String::from_utf8_lossy(b).replace("\r\n", "\n");
            t.lines().filter(|l| !l.starts_with("X-TUID: ")).map(|l| format!("{l}\n")).collect()
        })
        .collect();
    let ssmax = text.iter().find(|t| t.contains("smime=pass")).expect("the SSMAX mail, verified");
    assert!(ssmax.starts_with(
        "Authentication-Results: ssmax-card.local; smime=pass header.smime-identifier=alice@example.jp\n"
    ));
    assert!(ssmax.contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo=") && !ssmax.contains("application/pkcs7"), "{ssmax}");
    let failed = text.iter().find(|t| t.contains("smime=fail")).expect("the tampered one, failed");
    assert!(!failed.contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "no attachment opened: {failed}");
    let want = std::fs::read_to_string(&plain).unwrap().replace("\r\n", "\n");
    assert!(text.contains(&want), "the plain mail byte for byte: {text:?}");
    assert_eq!(crate::support::agent::getpins(&agent), 1, "one PIN, for the mail that opened");
    // A second sync finds nothing new and changes nothing.
    let o = mbsync(&w.bob, &door);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    assert_eq!(maildir_messages(&w.bob), got);
    // A client that stays: a new mail reaches it at its next NOOP, as EXISTS.
    let script = "import imaplib,sys\nd=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nd.login(sys.argv[2],sys.argv[3])\nprint('selected', d.select('INBOX', readonly=True)[1])\ns=imaplib.IMAP4('127.0.0.1',int(sys.argv[4]))\ns.login(sys.argv[5],sys.argv[6])\ns.append('INBOX',None,None,open(sys.argv[7],'rb').read())\nd.noop()\nprint('exists', d.response('EXISTS')[1])\nprint('fetched', d.fetch('4','(RFC822.SIZE)')[1])\n";
    let o = with_door_and_store(script, &door, &store, &[plain.to_str().unwrap()]);
    let said = stdout(&o);
    assert!(said.contains("selected [b'3']") && said.contains("exists [b'3', b'4']"), "{said}{}", stderr(&o));
    assert!(said.contains("RFC822.SIZE"), "{said}");
    // The same item asked for many times is answered once; too many items, or too much of one
    // message at once, is refused rather than held in memory.
    let script = "import imaplib,sys\nd=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nd.login(sys.argv[2],sys.argv[3])\nd.select('INBOX', readonly=True)\ntyp,data=d.fetch('2','(' + ' '.join(['BODY.PEEK[]']*100) + ')')\nprint('same', typ, sum(1 for x in data if isinstance(x, tuple)))\ntry:\n    print('many', d.fetch('2','(' + ' '.join('BODY.PEEK[]<%d.1>' % i for i in range(40)) + ')')[0])\nexcept Exception as e: print('many', 'BAD', e)\n";
    let o = run(Command::new("python3").args(["-c", script, &door.port.to_string(), &door.user, &door.secret]));
    let said = stdout(&o);
    assert!(said.contains("same OK 1"), "{said}{}", stderr(&o));
    assert!(said.contains("many BAD") && said.contains("too many items"), "{said}");
    // Commands sent after the door said BYE are not carried out.
    let script = "import socket,sys\ns=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\ns.recv(1000)\ns.sendall(b''.join(b'a%d LOGIN %s wrong\\r\\n' % (i, sys.argv[2].encode()) for i in range(5)) + b'b LOGIN ' + sys.argv[2].encode() + b' ' + sys.argv[3].encode() + b'\\r\\nc SELECT INBOX\\r\\n')\nout=b''\nwhile True:\n    d=s.recv(65536)\n    if not d: break\n    out+=d\nprint(out.decode())\n";
    let o = run(Command::new("python3").args(["-c", script, &door.port.to_string(), &door.user, &door.secret]));
    let said = stdout(&o);
    assert!(said.contains("* BYE too many wrong logins"), "{said}");
    assert!(!said.contains("b OK") && !said.contains("EXISTS"), "nothing after BYE: {said}");
    // Three wrong secrets: NO, NO, and the connection closed.
    let script = "import imaplib,sys\nm=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nfor i in range(3):\n    try:\n        m.login(sys.argv[2],'wrong'); print('IN')\n    except imaplib.IMAP4.error as e: print('NO', e)\n    except Exception as e: print('CLOSED', type(e).__name__); break\n";
    let o = run(Command::new("python3").args(["-c", script, &door.port.to_string(), &door.user]));
    let lines = stdout(&o);
    assert_eq!(lines.matches("NO ").count(), 3, "{lines}{}", stderr(&o));
    assert!(!lines.lines().any(|l| l == "IN"), "{lines}");
    assert!(lines.contains("too many wrong logins"), "the third closes the connection: {lines}");
    assert!(store.dir.exists());
}

#[test]
fn the_imap_door_reads_its_mail_store_over_tls_or_starttls_and_refuses_a_certificate_it_cannot_trust() {
    let w = World::new();
    let store = Dovecot::start_with(&w.bob, true);
    let plain = w.bob.write("plain.eml", "From: Carol <carol@example.jp>\r\nSubject: lunch\r\n\r\nNoon?\r\n");
    store.deliver(&[&plain]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let (tls_port, ca) = store.tls.clone().unwrap();
    let ca = ca.display().to_string();
    for (name, upstream) in [
        ("tls", format!("upstream = \"127.0.0.1:{tls_port}\"\nupstream_tls = \"tls\"\nupstream_ca = \"{ca}\"\n")),
        (
            "starttls",
            format!("upstream = \"127.0.0.1:{}\"\nupstream_tls = \"starttls\"\nupstream_ca = \"{ca}\"\n", store.port),
        ),
    ] {
        let door = imap_door_with(&w.bob, &agent.socket, &store, &upstream);
        let o = mbsync_into(&w.bob, &door, name);
        assert_eq!(code(&o), 0, "{name}: {}{}", stdout(&o), stderr(&o));
        let got = std::fs::read_dir(w.bob.path(name).join("INBOX/new")).unwrap().count();
        assert_eq!(got, 1, "{name}");
    }
    // Without the mail store's CA: TLS fails, the client is told so, nothing falls back.
    let untrusted = format!("upstream = \"127.0.0.1:{tls_port}\"\nupstream_tls = \"tls\"\n");
    let door = imap_door_with(&w.bob, &agent.socket, &store, &untrusted);
    let script = "import imaplib,sys\nm=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nm.login(sys.argv[2],sys.argv[3])\nprint(m.select('INBOX', readonly=True))\n";
    let o = run(Command::new("python3").args(["-c", script, &door.port.to_string(), &door.user, &door.secret]));
    let said = stdout(&o);
    assert!(said.contains("NO") && said.contains("the mail store cannot be read"), "{said}{}", stderr(&o));
    assert!(said.to_lowercase().contains("certificate"), "says why: {said}");
    // A mail store on another host without TLS is refused at start.
    let o = run(w.bob.cmd().args([
        "imap",
        "serve",
        "--upstream",
        "192.0.2.1:143",
        "--upstream-user",
        "x",
        "--upstream-tls",
        "none",
    ]));
    assert_clear_failure(&o, 2);
    assert!(
        stderr(&o).contains("without TLS the door reads only a mail store on a loopback address"),
        "{}",
        stderr(&o)
    );
    // Mail clients reach the door on loopback only: another address is refused at start.
    let o = run(w.bob.cmd().args([
        "imap",
        "serve",
        "--upstream",
        &format!("127.0.0.1:{}", store.port),
        "--upstream-user",
        &store.user,
        "--upstream-tls",
        "none",
        "--listen",
        "0.0.0.0:1143",
    ]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("0.0.0.0:1143"), "{}", stderr(&o));
}

/// Python's imaplib logged in to the door, INBOX selected read-only as `d`, then `body`; what
/// it printed.
fn imap_probe(door: &ImapDoor, body: &str) -> String {
    let script = format!(
        "import imaplib,sys,hashlib,time\nd=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nd.login(sys.argv[2],sys.argv[3])\ntyp,n=d.select('INBOX', readonly=True)\nprint('selected', typ, n, d.response('UIDVALIDITY')[1])\n{body}\n"
    );
    let o = run(Command::new("python3").args(["-c", &script, &door.port.to_string(), &door.user, &door.secret]));
    format!("{}{}", stdout(&o), stderr(&o))
}

/// Every UID the door shows, with the SHA-256 of each message's bytes and its size.
const UID_DIGESTS: &str = "typ,data=d.uid('FETCH','1:*','(UID RFC822.SIZE BODY.PEEK[])')\nfor x in data:\n    if isinstance(x, tuple): print('msg', x[0].split(b' BODY')[0].decode(), hashlib.sha256(x[1]).hexdigest())\n";

/// Every file under `dir`, read whole.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                todo.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

#[test]
fn the_imap_door_keeps_uids_and_bytes_across_restarts_without_the_card_and_writes_no_clear_byte() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let plain = w.bob.write("plain.eml", "From: Carol <carol@example.jp>\r\nSubject: lunch\r\n\r\nNoon?\r\n");
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&plain, &hop2]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    let first = imap_probe(&door, UID_DIGESTS);
    let shown: Vec<&str> = first.lines().filter(|l| l.starts_with("msg ")).collect();
    assert_eq!(shown.len(), 2, "{first}");
    let o = imap_probe(&door, "print(d.uid('FETCH','2','(BODY.PEEK[])')[1][0][1].decode())");
    assert!(o.contains("smime=pass") && o.contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "opened: {o}");
    // Read once, a plain mail is not written to the disk (made again from the mail store at
    // any time, without the card); read twice, it is kept.
    let views = || {
        files_under(&w.bob.dir.path().join(".cache"))
            .into_iter()
            .filter(|(p, _)| p.parent().unwrap().ends_with("views"))
            .count()
    };
    assert_eq!(views(), 1, "the SSMAX mail's view alone");
    let o = imap_probe(&door, "print(d.uid('FETCH','1','(BODY.PEEK[])')[1][0][1].decode())");
    assert!(o.contains("Noon?"), "{o}");
    assert_eq!(views(), 2, "the plain mail's view too, at its second read");
    // The door stops; so does the agent (no card to ask). A new door shows the same UIDs,
    // UIDVALIDITY and bytes, from its cache.
    drop(door);
    drop(agent);
    let door = imap_door(&w.bob, &w.bob.path("no-agent.sock"), &store);
    let again = imap_probe(&door, UID_DIGESTS);
    let first_sel = first.lines().find(|l| l.starts_with("selected")).unwrap();
    assert_eq!(again.lines().find(|l| l.starts_with("selected")).unwrap(), first_sel, "{again}");
    let shown_again: Vec<&str> = again.lines().filter(|l| l.starts_with("msg ")).collect();
    assert_eq!(shown_again, shown, "{again}");
    // Mail that is not SSMAX needs no agent: a new one is shown as it is, not as waiting.
    let later = w.bob.write("later.eml", "From: Carol <carol@example.jp>\r\nSubject: later\r\n\r\nStill no card.\r\n");
    store.deliver(&[&later]);
    let o = imap_probe(&door, "print(d.uid('FETCH','3','(BODY.PEEK[])'))");
    assert!(o.contains("Still no card.") && !o.contains("waits"), "{o}");
    // Nothing decrypted or verified is on the disk in the clear: not the attachment (as text or
    // as the base64 the view carries), not the verdict.
    let cache = files_under(&w.bob.dir.path().join(".cache"));
    assert!(cache.len() >= 3, "the state and two views: {:?}", cache.iter().map(|c| &c.0).collect::<Vec<_>>());
    for (path, bytes) in &cache {
        for clear in [&b"Q3 revenue"[..], b"UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo=", b"smime=pass", b"Noon?"] {
            assert!(memchr::memmem::find(bytes, clear).is_none(), "{} holds {:?}", path.display(), clear);
        }
    }
}

#[test]
fn a_download_through_the_door_gets_every_plain_mail_as_the_store_holds_it_in_any_order() {
    let w = World::new();
    let store = Dovecot::start(&w.bob);
    // Forty plain mails from 100 bytes to 300 KiB: several to one FETCH read ahead, and some
    // past the size the door's client holds apart from the parser.
    let mails: Vec<PathBuf> = (0..40)
        .map(|i| {
            let size = [100, 5_000, 300_000, 70_000][i % 4] + i;
            let text: String = (0..size).map(|j| char::from(b'a' + ((i * 7 + j / 60) % 26) as u8)).collect();
            let lines: Vec<&str> = text.as_bytes().chunks(60).map(|c| std::str::from_utf8(c).unwrap()).collect();
            w.bob.write(
                &format!("plain-{i}.eml"),
                format!("From: Carol <carol@example.jp>\r\nSubject: part {i}\r\n\r\n{}\r\n", lines.join("\r\n")),
            )
        })
        .collect();
    store.deliver(&mails.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    // As a download asks (one message after another), then skipping ahead and back, then
    // every message again: each is the store's bytes, by the door's and the store's UID.
    let script = "import imaplib,sys\nd=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nd.login(sys.argv[2],sys.argv[3])\nd.select('INBOX', readonly=True)\ns=imaplib.IMAP4('127.0.0.1',int(sys.argv[4]))\ns.login(sys.argv[5],sys.argv[6])\ns.select('INBOX', readonly=True)\ndef body(c,u):\n    typ,data=c.uid('FETCH',str(u),'(BODY.PEEK[])')\n    assert typ=='OK', data\n    return data[0][1]\nwrong=[]\norder=list(range(1,21))+[35,36,30,31,32]+list(range(40,20,-1))+list(range(1,41))\nfor u in order:\n    if body(d,u)!=body(s,u): wrong.append(u)\nprint('read', len(order), 'wrong', wrong)\n";
    let o = with_door_and_store(script, &door, &store, &[]);
    assert!(
        stdout(&o).contains("read 85 wrong []"),
        "{}{}\n{}",
        stdout(&o),
        stderr(&o),
        std::fs::read_to_string(w.bob.path(&format!("imap-door-{}.log", door.port))).unwrap_or_default()
    );
}

#[test]
fn a_protected_mail_that_waits_for_the_card_comes_back_opened_under_a_new_uid() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let plain = w.bob.write("plain.eml", "From: Carol <carol@example.jp>\r\nSubject: lunch\r\n\r\nNoon?\r\n");
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&hop2, &plain]);
    // The card is away when the door first reads the mail.
    let tokens = w.bob.dir.path().join("t/tokens");
    let away = w.bob.dir.path().join("t/tokens.away");
    std::fs::rename(&tokens, &away).unwrap();
    let agent = crate::support::agent::start_agent(&w.bob, "presence_poll_ms = 200\n", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    // One client stays all along; the card comes back while it is selected (the script moves
    // the token store back).
    let o = imap_probe(
        &door,
        &format!(
            "import os\nprint('before', d.uid('FETCH','1:*','(UID BODY.PEEK[])'))\nos.rename('{}', '{}')\nstart=time.time()\nwhile time.time()-start < 60:\n    d.noop()\n    gone=d.response('EXPUNGE')[1]\n    if gone != [None]: break\n    time.sleep(0.25)\nprint('expunged', gone, 'after %.1f s' % (time.time()-start))\nprint('uids', d.fetch('1:*','(UID)')[1])\nprint(d.uid('FETCH','3','(BODY.PEEK[])')[1][0][1].decode())",
            away.display(),
            tokens.display()
        ),
    );
    let before = o.lines().find(|l| l.starts_with("before")).unwrap_or_default();
    assert!(o.contains("selected OK [b'2']"), "{o}");
    assert!(before.contains("UID 1 ") && before.contains("waits for your card"), "{o}");
    assert!(before.contains("insert the card"), "says what to do: {o}");
    assert!(before.contains("UID 2 ") && before.contains("Noon?"), "the plain mail does not wait: {o}");
    assert!(o.contains("expunged [b'1']"), "{o}");
    assert!(o.contains("uids [b'1 (UID 2)', b'2 (UID 3)']"), "{o}");
    assert!(o.contains("smime=pass") && o.contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "{o}");
    eprintln!("opened once the card came back: {}", o.lines().find(|l| l.starts_with("expunged")).unwrap_or(""));
    assert_eq!(crate::support::agent::getpins(&agent), 1, "one PIN, when the card came");
    // The prompt names the mail it is for.
    let asked = std::fs::read_to_string(&agent.pinentry_log).unwrap();
    assert!(asked.contains("to open the protected mail from alice@example.jp"), "{asked}");
}

#[test]
fn views_past_the_cache_size_are_evicted_and_built_again_as_the_same_bytes() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let plain = w.bob.write("plain.eml", "From: Carol <carol@example.jp>\r\nSubject: lunch\r\n\r\nNoon?\r\n");
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&plain, &hop2]);
    let agent = crate::support::agent::start_agent(&w.bob, "pin_cache = \"until-removed\"\n", "0");
    let upstream =
        format!("upstream = \"127.0.0.1:{}\"\nupstream_tls = \"none\"\ncache_size = \"1 KiB\"\n", store.port);
    let door = imap_door_with(&w.bob, &agent.socket, &store, &upstream);
    let view_now = |door: &ImapDoor| {
        imap_probe(door, "typ,data=d.uid('FETCH','2','(BODY.PEEK[])')\nprint(typ)\nprint(hashlib.sha256(data[0][1]).hexdigest() if typ == 'OK' else data)")
    };
    let views = || {
        files_under(&w.bob.dir.path().join(".cache"))
            .into_iter()
            .filter(|(p, _)| p.parent().unwrap().ends_with("views"))
            .count()
    };
    // Over 1 KiB: the SSMAX mail's view is not kept (the plain one, never read here, is not
    // made at all: it is taken in by its header).
    let o = view_now(&door);
    let want = bobs_view(&w, &hop2, "C");
    assert_eq!(code(&want), 0, "{}", stderr(&want));
    let want = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(&want.stdout));
    assert!(
        o.contains(&format!("OK\n{want}")),
        "built again as the same bytes: {o}\n{}",
        std::fs::read_to_string(w.bob.path(&format!("imap-door-{}.log", door.port))).unwrap_or_default()
    );
    // Evicted again at the next refresh; with the card gone, a FETCH says so at once, rather
    // than wait for it.
    let start = std::time::Instant::now();
    while views() > 0 {
        assert!(start.elapsed() < std::time::Duration::from_secs(30), "never evicted");
        imap_probe(&door, "d.noop()");
    }
    drop(agent);
    let o = view_now(&door);
    assert!(o.contains("NO") && o.contains("cannot be shown now"), "{o}");
}

#[test]
fn the_imap_door_keeps_flags_on_the_mail_store_expunges_the_right_mail_and_wakes_an_idling_client() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let mails: Vec<PathBuf> = (1..=3)
        .map(|i| {
            w.bob.write(
                &format!("m{i}.eml"),
                format!("From: Carol <carol@example.jp>\r\nSubject: note {i}\r\n\r\nNote {i}.\r\n"),
            )
        })
        .collect();
    let store = Dovecot::start(&w.bob);
    // Door UIDs: 1 the SSMAX mail, 2..4 the notes; upstream UIDs the same order.
    store.deliver(&[&hop2, &mails[0], &mails[1], &mails[2]]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    // SEARCH looks in what the client is shown: the decrypted attachment's text is found.
    let o = imap_probe(
        &door,
        "d.sock.settimeout(20)\nprint('body', d.uid('SEARCH','BODY','\"revenue: 1,234\"'))\nprint('subject', d.search(None,'SUBJECT','\"note 2\"'))\nprint('not', d.uid('SEARCH','NOT','FROM','carol'))\nprint('deep', d.search(None, 'NOT '*100 + 'ALL'))",
    );
    assert!(o.contains("body ('OK', [b'1'])"), "{o}");
    assert!(o.contains("subject ('OK', [b'3'])"), "{o}");
    assert!(o.contains("not ('OK', [b'1'])"), "{o}");
    assert!(o.contains("deep") && o.contains("nested too deep"), "answered under its tag: {o}");
    // Flags set through the door are the mail store's: another client of the store sees them.
    let o = imap_probe(
        &door,
        "d.select('INBOX')\nprint('store', d.uid('STORE','1','+FLAGS','(\\\\Seen \\\\Flagged)'))\nprint('store', d.uid('STORE','3','+FLAGS.SILENT','(\\\\Deleted)'))\nprint('expunge', d.expunge())\nprint('left', d.fetch('1:*','(UID FLAGS)')[1])",
    );
    assert!(o.contains("store ('OK', [b'1 (UID 1 FLAGS (\\\\Flagged \\\\Seen))'])"), "{o}");
    assert!(o.contains("expunge ('OK', [b'3'])"), "note 2 (sequence 3) expunged: {o}");
    assert!(
        o.contains("left [b'1 (UID 1 FLAGS (\\\\Flagged \\\\Seen))', b'2 (UID 2 FLAGS ())', b'3 (UID 4 FLAGS ())']"),
        "{o}"
    );
    let direct = "import imaplib,sys\nm=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nm.login(sys.argv[2],sys.argv[3])\nm.select('INBOX', readonly=True)\nfor x in m.fetch('1:*','(UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])')[1]:\n    print(x)\n";
    let o = run(Command::new("python3").args(["-c", direct, &store.port.to_string(), &store.user, &store.password]));
    let upstream = stdout(&o);
    assert!(upstream.contains("UID 1 FLAGS (\\\\Flagged \\\\Seen)"), "{upstream}{}", stderr(&o));
    assert!(upstream.contains("note 1") && upstream.contains("note 3") && !upstream.contains("note 2"), "{upstream}");
    // No decrypted byte reached the mail store: its SSMAX mail is as delivered.
    assert!(!upstream.contains("smime=pass"), "{upstream}");
    // An idling client hears of a new mail without asking.
    let idle = "import socket,sys,time,imaplib\ns=socket.create_connection(('127.0.0.1',int(sys.argv[1])))\nf=s.makefile('rb')\nf.readline()\ns.sendall(b'a LOGIN ' + sys.argv[2].encode() + b' ' + sys.argv[3].encode() + b'\\r\\nb SELECT INBOX\\r\\nc IDLE\\r\\n')\nwhile not f.readline().startswith(b'+'): pass\nm=imaplib.IMAP4('127.0.0.1',int(sys.argv[4]))\nm.login(sys.argv[5],sys.argv[6])\nm.append('INBOX',None,None,b'From: Carol <carol@example.jp>\\r\\nSubject: late\\r\\n\\r\\nLate.\\r\\n')\nstart=time.time()\nwhile True:\n    l=f.readline()\n    if not l or l.endswith(b'EXISTS\\r\\n'): break\nprint('heard', l, 'after %.1f s' % (time.time()-start))\ns.sendall(b'DONE\\r\\n')\nprint('done', f.readline())\n";
    let o = with_door_and_store(idle, &door, &store, &[]);
    let said = stdout(&o);
    assert!(said.contains("heard b'* 4 EXISTS\\r\\n'"), "{said}{}", stderr(&o));
    assert!(said.contains("done b'c OK"), "{said}");
    eprintln!("{}", said.lines().next().unwrap_or_default());
}

#[test]
fn the_imap_door_serves_every_mailbox_and_copies_moves_and_appends_originals_never_views() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let note = w.bob.write("note.eml", "From: Carol <carol@example.jp>\r\nSubject: note\r\n\r\nA note.\r\n");
    let old = w.bob.write("old.eml", "From: Carol <carol@example.jp>\r\nSubject: old report\r\n\r\nFiled.\r\n");
    let draft = w.bob.write("draft.eml", "From: Bob <bob@partner.example>\r\nSubject: draft\r\n\r\nTo be sent.\r\n");
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&hop2, &note]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    let script = r#"import imaplib,sys,time
d=imaplib.IMAP4('127.0.0.1',int(sys.argv[1])); d.login(sys.argv[2],sys.argv[3])
s=imaplib.IMAP4('127.0.0.1',int(sys.argv[4])); s.login(sys.argv[5],sys.argv[6])
old=open(sys.argv[7],'rb').read(); draft=open(sys.argv[8],'rb').read()
s.create('Archive'); s.append('Archive',None,None,old)
print('list', d.list())
print('status', d.status('Archive','(MESSAGES UIDNEXT UIDVALIDITY UNSEEN)'))
print('nonexistent', d.select('Nowhere'))
d.select('Archive', readonly=True)
print('archived as it is', d.fetch('1','(BODY.PEEK[])')[1][0][1] == old)
d.select('INBOX')
view=d.uid('FETCH','1','(BODY.PEEK[])')[1][0][1]
print('view opened', b'smime=pass' in view)
print('copy', d.uid('COPY','1','Archive'))
print('trycreate', d.uid('COPY','1','Nowhere'))
print('move', d.uid('MOVE','2','Archive'), d.response('EXPUNGE'))
print('inbox after move', d.fetch('1:*','(UID)')[1])
print('create', d.create('Saved'))
print('append view', d.append('Saved',None,None,view))
print('append changed view', d.append('Saved',None,None,view.replace(b'\r\n\r\n', b'\r\nX-Changed: yes\r\n\r\n', 1)))
print('append draft', d.append('Saved',None,None,draft))
print('append with tuid', d.append('Saved',None,None,view.replace(b'\r\n\r\n', b'\r\nX-TUID: 0123456789ab\r\n\r\n', 1)))
import email, email.policy
from email.message import EmailMessage
att=[p for p in email.message_from_bytes(view, policy=email.policy.default).iter_attachments() if p.get_filename()=='figures.csv'][0]
fwd=EmailMessage(); fwd['From']='bob@partner.example'; fwd['To']='dave@example.org'; fwd['Subject']='Fwd: figures'
fwd.set_content('See attached.'); fwd.add_attachment(att.get_content().encode() if isinstance(att.get_content(), str) else att.get_content(), maintype='application', subtype='octet-stream', filename='copy.csv')
print('append forward', d.append('Saved',None,None,fwd.as_bytes(policy=email.policy.SMTP)))
original=None
s.select('INBOX', readonly=True); original=s.fetch('1','(BODY.PEEK[])')[1][0][1]
for box in ['Archive','Saved']:
    s.select(box, readonly=True)
    for x in s.fetch('1:*','(BODY.PEEK[])')[1]:
        if isinstance(x, tuple):
            m=x[1]
            print('store', box, 'original' if m == original else 'old' if m == old else 'draft' if m == draft else 'note' if b'A note.' in m else 'OTHER', b'smime=pass' in m)
deadline=time.time()+30
while True:
    d.select('Archive', readonly=True)
    bodies=[x[1] for x in d.fetch('1:*','(BODY.PEEK[])')[1] if isinstance(x, tuple)]
    if len(bodies)==3 or time.time()>deadline: break
    time.sleep(0.5)
print('archive through the door', len(bodies), sum(b'smime=pass' in b for b in bodies), bodies.count(view))
"#;
    let o = with_door_and_store(script, &door, &store, &[old.to_str().unwrap(), draft.to_str().unwrap()]);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains(r#"\"Archive\""#) || said.contains(" Archive'"), "LIST shows the store's mailboxes: {said}");
    assert!(
        said.contains("status ('OK', [b'\"Archive\" (MESSAGES 1 UIDNEXT 2 UIDVALIDITY")
            || said.contains("status ('OK', [b'Archive (MESSAGES 1 UIDNEXT 2 UIDVALIDITY"),
        "{said}"
    );
    assert!(said.contains("UNSEEN 1)'])"), "{said}");
    assert!(said.contains("nonexistent ('NO'"), "{said}");
    assert!(said.contains("archived as it is True"), "{said}");
    assert!(said.contains("view opened True"), "{said}");
    assert!(said.contains("copy ('OK'"), "{said}");
    assert!(said.contains("trycreate ('NO', [b\"[TRYCREATE]"), "a client may create it and try again: {said}");
    assert!(said.contains("move ('OK'") && said.contains("('EXPUNGE', [b'2'])"), "{said}");
    assert!(said.contains("inbox after move [b'1 (UID 1)']"), "{said}");
    assert!(said.contains("append view ('OK'"), "{said}");
    assert!(said.contains("append changed view ('NO'") && said.contains("not uploaded"), "{said}");
    assert!(said.contains("append draft ('OK'"), "{said}");
    assert!(said.contains("append with tuid ('OK'"), "mbsync's X-TUID field aside, a view: {said}");
    assert!(said.contains("append forward ('NO'") && said.contains("decrypted"), "{said}");
    // On the mail store: the originals, copied and moved there, and the draft; no view.
    for line in [
        "store Archive old False",
        "store Archive original False",
        "store Archive note False",
        "store Saved original False",
        "store Saved draft False",
    ] {
        assert!(said.contains(line), "{line}: {said}");
    }
    assert!(!said.contains("OTHER"), "{said}");
    assert!(!said.lines().any(|l| l.starts_with("store ") && l.ends_with("True")), "no view uploaded: {said}");
    assert_eq!(said.matches("store Saved original").count(), 2, "{said}");
    assert_eq!(said.matches("store Saved").count(), 3, "neither the changed view nor the forward was uploaded: {said}");
    // Through the door, the copy in Archive is shown as its view: the same bytes as in INBOX.
    assert!(said.contains("archive through the door 3 1 1"), "{said}");
    // mbsync pulls every mailbox, each as the door shows it.
    let o =
        mbsync_with(&w.bob, &door, "All", "Host 127.0.0.1\nSSLType None\n", "Far :door:\nNear :local:\nPatterns *\n");
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let archived = maildir_box(&w.bob, "All", "Archive");
    assert_eq!(archived.len(), 3, "{}", stdout(&o));
    assert!(archived.iter().any(|m| m.windows(10).any(|x| x == b"smime=pass")), "the copied SSMAX mail arrives opened");
    assert_eq!(maildir_box(&w.bob, "All", "Saved").len(), 3, "{}", stdout(&o));
    // Restarted without the agent: Archive keeps its UIDVALIDITY, UIDs and bytes, from the
    // cache, where nothing opened is in the clear.
    let archive =
        format!("d.select('Archive', readonly=True)\nprint('archive', d.response('UIDVALIDITY')[1])\n{UID_DIGESTS}");
    let before = imap_probe(&door, &archive);
    assert_eq!(before.lines().filter(|l| l.starts_with("msg ")).count(), 3, "{before}");
    drop(door);
    drop(agent);
    let door = imap_door(&w.bob, &w.bob.path("no-agent.sock"), &store);
    let after = imap_probe(&door, &archive);
    let kept = |o: &str| -> Vec<String> {
        o.lines().filter(|l| l.starts_with("msg ") || l.starts_with("archive ")).map(str::to_string).collect()
    };
    assert_eq!(kept(&after), kept(&before), "{after}");
    for (path, bytes) in files_under(&w.bob.dir.path().join(".cache")) {
        for clear in [&b"UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="[..], b"smime=pass", b"Filed.", b"Archive"] {
            assert!(memchr::memmem::find(&bytes, clear).is_none(), "{} holds {:?}", path.display(), clear);
        }
    }
}

#[test]
fn a_client_that_insists_gets_starttls_with_the_doors_own_certificate_and_nothing_sent_before_it_counts() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&hop2]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    // The door listens from its start; the certificate is made before it takes a client.
    let started = std::time::Instant::now();
    let cert = loop {
        let found = files_under(&w.bob.dir.path().join(".cache"))
            .into_iter()
            .find(|(p, b)| p.ends_with("door-certificate.pem") && !b.is_empty())
            .map(|(p, _)| p);
        match found {
            Some(p) => break p,
            None if started.elapsed() < std::time::Duration::from_secs(20) => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            None => panic!("the door made no certificate"),
        }
    };
    // A LOGIN sent in the clear right behind STARTTLS is dropped, not run under TLS
    // (CVE-2011-0411); after the handshake the client logs in, and is no longer offered STARTTLS.
    let script = r#"import socket,ssl,sys
s=socket.create_connection(('127.0.0.1',int(sys.argv[1])))
f=s.makefile('rb'); f.readline()
s.sendall(b'a CAPABILITY\r\n'); print('before', f.readline()); f.readline()
s.sendall(b'b STARTTLS\r\nc LOGIN ' + sys.argv[2].encode() + b' ' + sys.argv[3].encode() + b'\r\n')
print('starttls', f.readline())
ctx=ssl.create_default_context(cafile=sys.argv[7])
ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
t=ctx.wrap_socket(s, server_hostname='localhost')
g=t.makefile('rb')
t.sendall(b'd CAPABILITY\r\n'); print('after', g.readline()); print('after', g.readline())
t.sendall(b'e SELECT INBOX\r\n')
while True:
    l=g.readline(); print('select', l)
    if l.startswith(b'e ') or not l: break
t.sendall(b'f LOGIN ' + sys.argv[2].encode() + b' ' + sys.argv[3].encode() + b'\r\n'); print('login', g.readline())
"#;
    let o = with_door_and_store(script, &door, &store, &[cert.to_str().unwrap()]);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert!(said.contains("before b'* CAPABILITY") && said.contains("STARTTLS"), "{said}");
    assert!(said.contains("starttls b'b OK"), "{said}");
    let after: Vec<&str> = said.lines().filter(|l| l.starts_with("after")).collect();
    assert!(after.len() == 2 && !after[0].contains("STARTTLS") && after[1].contains("d OK"), "{said}");
    assert!(!said.contains("c OK") && !said.contains("c NO"), "the LOGIN sent in the clear was not run: {said}");
    assert!(said.contains("select b'e NO") && said.contains("log in first"), "{said}");
    assert!(said.contains("login b'f OK"), "{said}");
    // mbsync insisting on STARTTLS, trusting the door's certificate, syncs INBOX.
    let account = format!("Host localhost\nSSLType STARTTLS\nCertificateFile {}\n", cert.display());
    let o = mbsync_with(&w.bob, &door, "Secure", &account, "Far :door:INBOX\nNear :local:INBOX\n");
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let got = maildir_box(&w.bob, "Secure", "INBOX");
    assert_eq!(got.len(), 1, "{}", stdout(&o));
    assert!(memchr::memmem::find(&got[0], b"smime=pass").is_some());
}

#[test]
fn large_appends_from_several_clients_at_once_take_turns_and_all_arrive_as_sent() {
    let w = World::new();
    let store = Dovecot::start(&w.bob);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    // Four clients each APPEND a different 12 MiB message at once; a door-wide permit lets two
    // send at a time, the others wait, none is refused or cut.
    let script = r#"import imaplib,sys,threading,hashlib
def mail(i):
    line=(b'%d' % i) * 76 + b'\r\n'
    return b'From: Carol <carol@example.jp>\r\nSubject: big %d\r\n\r\n' % i + line * (12*1024*1024 // len(line))
sent={}
def push(i):
    d=imaplib.IMAP4('127.0.0.1',int(sys.argv[1])); d.login(sys.argv[2],sys.argv[3])
    m=mail(i); sent[i]=hashlib.sha256(m).hexdigest()
    print('append', i, d.append('INBOX',None,None,m)[0])
    d.logout()
ts=[threading.Thread(target=push, args=(i,)) for i in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
s=imaplib.IMAP4('127.0.0.1',int(sys.argv[4])); s.login(sys.argv[5],sys.argv[6]); s.select('INBOX', readonly=True)
got=sorted(hashlib.sha256(x[1]).hexdigest() for x in s.fetch('1:*','(BODY.PEEK[])')[1] if isinstance(x, tuple))
print('stored as sent', got == sorted(sent.values()))
"#;
    let o = with_door_and_store(script, &door, &store, &[]);
    let said = format!("{}{}", stdout(&o), stderr(&o));
    assert_eq!(said.matches("OK").count(), 4, "{said}");
    assert!(said.contains("stored as sent True"), "{said}");
    let status = std::fs::read_to_string(format!("/proc/{}/status", door.child.id())).unwrap_or_default();
    eprintln!(
        "door after four 12 MiB APPENDs: {}",
        status.lines().find(|l| l.starts_with("VmHWM")).unwrap_or_default()
    );
}

#[test]
fn the_imap_door_says_why_when_the_mail_store_is_down_keeps_running_and_reads_it_again_when_it_is_back() {
    let w = World::new();
    let store = Dovecot::start(&w.bob);
    let lunch = w.bob.write("lunch.eml", "From: Carol <carol@example.jp>\r\nSubject: lunch\r\n\r\nNoon?\r\n");
    store.deliver(&[&lunch]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let mut door = imap_door(&w.bob, &agent.socket, &store);
    let o = imap_probe(&door, "print('read', b'Noon?' in d.fetch('1','(BODY.PEEK[])')[1][0][1])");
    assert!(o.contains("read True"), "{o}");
    store.stop();
    for _ in 0..2 {
        let o = imap_probe(&door, "print('status', d.status('INBOX','(MESSAGES)'))");
        let log: String = std::fs::read_dir(w.bob.dir.path())
            .unwrap()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("imap-door-"))
            .map(|e| std::fs::read_to_string(e.path()).unwrap())
            .collect();
        assert!(o.contains("selected NO") && o.contains("the mail store cannot be read"), "says why: {o}\nLOG {log}");
        assert!(o.to_lowercase().contains("refused"), "{o}");
        assert!(door.child.try_wait().unwrap().is_none(), "the door keeps running");
    }
    store.start_again();
    let dinner = w.bob.write("dinner.eml", "From: Carol <carol@example.jp>\r\nSubject: dinner\r\n\r\nSeven?\r\n");
    store.deliver(&[&dinner]);
    let o =
        imap_probe(&door, "print('both', [x[1] for x in d.fetch('1:*','(BODY.PEEK[])')[1] if isinstance(x, tuple)])");
    assert!(o.contains("selected OK") && o.contains("Noon?") && o.contains("Seven?"), "{o}");
}

#[test]
fn neomutt_over_the_imap_door_opens_the_ssmax_mail_and_lists_its_decrypted_attachment() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&hop2]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    let home = w.bob.path("neomutt-home");
    std::fs::create_dir_all(&home).unwrap();
    let rc = w.bob.write(
        "neomuttrc-imap",
        format!(
            "set folder = \"imap://{}@127.0.0.1:{}/\"\nset spoolfile = \"+INBOX\"\nset imap_pass = \"{}\"\n\
             set ssl_starttls = no\nset ssl_force_tls = no\nset header_cache = \"\"\nset message_cachedir = \"\"\n\
             set sort = mailbox-order\nset help = no\nset wait_key = no\nset record = \"\"\nset mark_old = no\n",
            door.user, door.port, door.secret
        ),
    );
    let t = crate::mailclients::Tmux::start(
        &w.bob,
        &format!(
            "env -i PATH='{}' HOME='{}' TERM=tmux-256color neomutt -n -F '{}'; sleep 600",
            std::env::var("PATH").unwrap_or_default(),
            home.display(),
            rc.display()
        ),
    );
    t.wait_for("Q3 figures");
    t.keys(&["Enter"]);
    let screen = t.wait_for("the figures are attached");
    assert!(screen.contains("Partner Org") || screen.contains("verified"), "the door's first part: {screen}");
    t.keys(&["v"]);
    // The attachment menu (the message shown before it names figures.csv too).
    let screen = t.wait_for("<no description>");
    // As the sender attached it (send attaches files as application/octet-stream), not .p7m.
    assert!(screen.contains("octet-stre") && !screen.contains("p7m"), "{screen}");
    assert!(screen.contains("1 <no description>") && screen.contains("[text/plain, quoted, utf-8"), "{screen}");
    // The mail store saw the door read, nothing more; the agent asked one PIN, once.
    assert_eq!(crate::support::agent::getpins(&agent), 1);
}

/// A multipart mail as Japanese clients send it: an ISO-2022-JP subject and sender, a text part,
/// an attachment with an RFC 2231 name, and a forwarded mail.
const JAPANESE_MULTIPART: &str = "From: =?ISO-2022-JP?B?GyRCOzNFRBsoQg==?= <yamada@example.jp>\r\nTo: Bob <bob@partner.example>, =?UTF-8?B?6Yi05pyo?= <suzuki@example.jp>\r\nCc: team: carol@example.jp, dave@example.jp;\r\nSubject: =?ISO-2022-JP?B?GyRCOF5AUTtxGyhC?=\r\nDate: Mon, 7 Dec 2026 10:00:00 +0900\r\nMessage-ID: <m1@example.jp>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"outer\"\r\n\r\npreamble\r\n--outer\r\nContent-Type: text/plain; charset=\"UTF-8\"\r\nContent-Transfer-Encoding: base64\r\n\r\n6KaL56mN5pu444KS6YCB44KK44G+44GZ44CC\r\n--outer\r\nContent-Type: application/pdf; name=\"mitsumori.pdf\"\r\nContent-Disposition: attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--outer\r\nContent-Type: message/rfc822\r\n\r\nFrom: carol@example.jp\r\nSubject: earlier\r\n\r\nThe earlier note.\r\n--outer--\r\n";

#[test]
fn the_imap_door_answers_bodystructure_envelope_and_sections_as_dovecot_does_for_the_same_bytes() {
    let w = World::new();
    let hop2 = w.figures_to_bob();
    let jp = w.bob.write("jp.eml", JAPANESE_MULTIPART);
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&jp, &hop2]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    // The same FETCH to the mail store and to the door: for a mail the door shows as it is,
    // the same answers (letter case aside: imap-codec writes TEXT and 7BIT in capitals).
    let fetch = "for x in m.fetch('1','(BODYSTRUCTURE ENVELOPE BODY BODY.PEEK[1] BODY.PEEK[2.MIME] BODY.PEEK[3.HEADER] BODY.PEEK[3.TEXT] BODY.PEEK[3.1] BODY.PEEK[2]<4.8> BODY.PEEK[HEADER.FIELDS (SUBJECT CC)])')[1]:\n    print(x)\n";
    let ask = |port: u16, user: &str, secret: &str| {
        let script = format!("import imaplib,sys\nm=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nm.login(sys.argv[2],sys.argv[3])\nm.select('INBOX', readonly=True)\n{fetch}");
        let o = run(Command::new("python3").args(["-c", &script, &port.to_string(), user, secret]));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        stdout(&o).to_lowercase()
    };
    let upstream = ask(store.port, &store.user, &store.password);
    let through = ask(door.port, &door.user, &door.secret);
    assert!(upstream.contains("bodystructure ((\"text\" \"plain\""), "{upstream}");
    assert_eq!(through, upstream);
    // The SSMAX mail's structure is its view's: the decrypted attachment is a part of its own.
    let o =
        imap_probe(&door, "for x in d.fetch('2','(BODYSTRUCTURE BODY.PEEK[3.MIME] BODY.PEEK[3])')[1]:\n    print(x)");
    assert!(o.contains("(\"mixed\" ") || o.contains("\"MIXED\"") || o.contains("\"mixed\""), "{o}");
    assert!(o.contains("figures.csv") && o.contains("UTMgcmV2ZW51ZTogMSwyMzQgTUpQWQo="), "{o}");
    assert!(!o.to_lowercase().contains("pkcs7"), "no sealed part is shown: {o}");
}

#[test]
fn the_imap_door_shows_ordinary_smime_with_its_verdict_and_opens_what_is_for_the_card() {
    let w = World::new();
    // alice signs an ordinary mail on her card; openssl encrypts to bob's certificate: her
    // signed mail, and a plain text; and one to alice's certificate, not bob's.
    let plain = w.alice.write("plain.eml", MAIL);
    let signed = w.alice.path("signed.eml");
    ok(&mut w.alice.with_pin(&[
        "--agent",
        "never",
        "sign",
        "--in",
        plain.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]));
    let tampered = tamper(&w.bob, &signed, "the figures are attached", "pay invoice 77 today");
    let encrypt = |input: &Path, to: &str, name: &str| {
        let o = ok(Command::new("openssl")
            .args(["cms", "-encrypt", "-aes256", "-from", "alice@example.jp", "-to", "bob@partner.example"])
            .args(["-subject", name, "-in"])
            .arg(input)
            .arg(pki().join(to)));
        w.bob.write(&format!("{name}.eml"), o.stdout)
    };
    let secret = w.bob.write("secret.txt", "Content-Type: text/plain\r\n\r\nThe merger closes on Friday.\r\n");
    // What a client encrypts is the signed MIME entity, not the whole mail.
    let signed_text = String::from_utf8(std::fs::read(&signed).unwrap()).unwrap();
    let entity: String = signed_text
        .split_inclusive('\n')
        .skip_while(|l| ["From:", "To:", "Subject:", "Date:"].iter().any(|f| l.starts_with(f)))
        .collect();
    let entity = w.bob.write("signed-entity.eml", entity);
    let sealed_signed = encrypt(&entity, "bob.pem", "sealed-signed");
    let sealed_text = encrypt(&secret, "bob.pem", "sealed-text");
    let not_ours = encrypt(&secret, "alice.pem", "not-ours");
    let store = Dovecot::start(&w.bob);
    store.deliver(&[&signed, &tampered, &sealed_signed, &sealed_text, &not_ours]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    let o = imap_probe(&door, "for i in range(1,6):\n    print('== %d' % i)\n    print(d.uid('FETCH',str(i),'(BODY.PEEK[])')[1][0][1].decode())");
    let views: Vec<&str> = o.split("== ").skip(1).collect();
    assert_eq!(views.len(), 5, "{o}");
    let a_r = "Authentication-Results: ssmax-card.local; smime=pass header.smime-identifier=alice@example.jp";
    // Signed: the door's verdict first, the mail otherwise byte for byte.
    let signed_bytes = String::from_utf8(std::fs::read(&signed).unwrap()).unwrap();
    assert!(views[0].contains(&format!("{a_r}\r\n{signed_bytes}")), "{}", views[0]);
    assert!(views[1].contains("smime=fail") && !views[1].contains("smime=pass"), "{}", views[1]);
    // Enveloped to bob's card: opened on it, the signature inside judged.
    assert!(views[2].contains(a_r), "{}", views[2]);
    assert!(views[2].contains("the figures are attached") && !views[2].contains("pkcs7-mime"), "{}", views[2]);
    // One MIME-Version (RFC 2045 §4): the signed entity's own, not another put before it.
    for v in &views[2..4] {
        let head = v.split("\r\n\r\n").next().unwrap_or_default();
        assert_eq!(head.to_ascii_lowercase().matches("mime-version:").count(), 1, "{v}");
    }
    assert!(
        views[3].contains("The merger closes on Friday.") && !views[3].contains("Authentication-Results"),
        "{}",
        views[3]
    );
    // For someone else's key: as it is.
    assert!(views[4].contains("application/pkcs7-mime") && !views[4].contains("merger"), "{}", views[4]);
}

#[test]
fn a_message_too_large_for_a_view_is_a_notice_and_the_mail_after_it_still_arrives() {
    let w = World::new();
    let store = Dovecot::start(&w.bob);
    // 64 MiB and a little: over what the agent takes; never fetched by the door.
    let mut big = b"From: Carol <carol@example.jp>\r\nSubject: huge\r\n\r\n".to_vec();
    big.extend(
        std::iter::repeat_n(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcd\r\n".as_slice(), 1 << 20)
            .flatten(),
    );
    let big = w.bob.write("big.eml", big);
    let after = w.bob.write("after.eml", "From: Carol <carol@example.jp>\r\nSubject: after\r\n\r\nStill here.\r\n");
    store.deliver(&[&big, &after]);
    let agent = crate::support::agent::start_agent(&w.bob, "", "0");
    let door = imap_door(&w.bob, &agent.socket, &store);
    let o = mbsync(&w.bob, &door);
    assert_eq!(code(&o), 0, "{}{}", stdout(&o), stderr(&o));
    let got: Vec<String> =
        maildir_messages(&w.bob).into_iter().map(|(_, b)| String::from_utf8_lossy(&b).into_owned()).collect();
    assert_eq!(got.len(), 2);
    assert!(
        got.iter().any(|t| t.contains("Subject: [ssmax-card] a message could not be shown")
            && t.contains("it is larger")
            && t.contains("63 MiB")),
        "{got:?}"
    );
    assert!(got.iter().any(|t| t.contains("Still here.")), "{got:?}");
}
