//! Revocation by OCSP: `openssl ocsp` answers on loopback for the organisation CA, about a
//! certificate of alice's that names it in its Authority Information Access.

use crate::revocation::crl;
use crate::support::*;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

/// The organisation CA's certificate database, as `openssl ca` keeps it, and its config.
struct CaDb {
    dir: PathBuf,
    cnf: PathBuf,
}

impl CaDb {
    fn new(tok: &Tok) -> CaDb {
        CaDb::named(tok, "ocsp-ca")
    }

    fn named(tok: &Tok, name: &str) -> CaDb {
        let dir = tok.path(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("index.txt"), "").unwrap();
        let cnf = dir.join("ca.cnf");
        std::fs::write(
            &cnf,
            format!("[ca]\ndefault_ca = d\n[d]\ndatabase = {}/index.txt\ndefault_md = sha256\n", dir.display()),
        )
        .unwrap();
        CaDb { dir, cnf }
    }

    fn ca(&self, what: &[&str], cert: &Path) {
        self.ca_of((&pki().join("orgca.pem"), &pki().join("orgca.key")), what, cert);
    }

    fn ca_of(&self, ca: (&Path, &Path), what: &[&str], cert: &Path) {
        ok(Command::new("openssl")
            .args(["ca", "-batch", "-config"])
            .arg(&self.cnf)
            .arg("-keyfile")
            .arg(ca.1)
            .arg("-cert")
            .arg(ca.0)
            .args(what)
            .arg(cert));
    }

    fn index(&self) -> PathBuf {
        self.dir.join("index.txt")
    }
}

/// `openssl ocsp` serving the CA's database on `port`, signing with `signer` (certificate and
/// key); stopped when dropped. What it logs (a line per request) goes to the database's directory.
struct Responder(Child, PathBuf);

impl Responder {
    fn start(db: &CaDb, port: u16, signer: (&Path, &Path)) -> Responder {
        Responder::for_ca(db, &pki().join("orgca.pem"), port, signer)
    }

    fn for_ca(db: &CaDb, ca: &Path, port: u16, signer: (&Path, &Path)) -> Responder {
        let log = db.dir.join(format!("responder-{port}.log"));
        let child = Command::new("openssl")
            .args(["ocsp", "-index"])
            .arg(db.index())
            .arg("-CA")
            .arg(ca)
            .arg("-rsigner")
            .arg(signer.0)
            .arg("-rkey")
            .arg(signer.1)
            .args(["-port", &port.to_string(), "-ndays", "1", "-ignore_err"])
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !listens(port) {
            assert!(start.elapsed() < Duration::from_secs(10), "openssl ocsp did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Responder(child, log)
    }

    /// How many requests it has been sent.
    fn requests(&self) -> usize {
        std::fs::read_to_string(&self.1).unwrap_or_default().matches("Received request").count()
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A certificate from the organisation CA with `ext` (openssl extension lines), for `csr`.
fn issue(tok: &Tok, name: &str, csr: &Path, serial: &str, ext: &str) -> PathBuf {
    let extfile = tok.write(&format!("{name}.ext"), ext);
    let pem = tok.path(&format!("{name}.pem"));
    ok(Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(csr)
        .arg("-CA")
        .arg(pki().join("orgca.pem"))
        .arg("-CAkey")
        .arg(pki().join("orgca.key"))
        .args(["-set_serial", serial, "-days", "30", "-sha256", "-extfile"])
        .arg(&extfile)
        .arg("-out")
        .arg(&pem));
    pem
}

/// Alice's key with a certificate that names the responder on `port`, on her token as id 04.
fn alice_with_responder(tok: &Tok, port: u16) -> PathBuf {
    let pem = issue(
        tok,
        "alice-aia",
        &pki().join("alice.csr"),
        "0x5eed0004",
        &format!("basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment\nextendedKeyUsage=emailProtection\nsubjectAltName=email:alice@example.jp\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:{port}/\n"),
    );
    tok.import(&pki().join("alice.key"), &pem, "04", "alice-aia");
    pem
}

fn signed_with_04(tok: &Tok) -> PathBuf {
    let input = tok.write("mail.eml", MAIL);
    let out = tok.path("signed-aia.eml");
    ok(&mut tok.with_pin(&[
        "sign",
        "--key",
        "pkcs11:id=%04",
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    out
}

/// One case: alice's certificate naming the responder on `port`, valid in the CA's database, a
/// mail she signed with it, and the root's (empty) list for the organisation CA's own certificate.
struct Case {
    tok: Tok,
    port: u16,
    pem: PathBuf,
    db: CaDb,
    root_crl: PathBuf,
    signed: PathBuf,
}

impl Case {
    fn new() -> Case {
        let tok = Tok::new();
        let port = free_port();
        let pem = alice_with_responder(&tok, port);
        let db = CaDb::new(&tok);
        db.ca(&["-valid"], &pem);
        let root_crl = crl(&tok.path("crls"), "root", &[], None);
        let signed = signed_with_04(&tok);
        Case { tok, port, pem, db, root_crl, signed }
    }
}

/// verify with the root's (empty) list for the organisation CA's own certificate, so that the
/// answer about alice's is what decides.
fn verify(tok: &Tok, mail: &Path, root_crl: &Path, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["--agent", "never", "verify", "--in", mail.to_str().unwrap(), "--crl", root_crl.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(tok.cmd().args(args))
}

#[test]
fn a_good_answer_covers_the_certificate_and_is_used_from_the_cache_while_the_responder_is_down() {
    let Case { tok, port, db, root_crl, signed, .. } = Case::new();
    let responder = Responder::start(&db, port, (&pki().join("orgca.pem"), &pki().join("orgca.key")));
    let o = verify(&tok, &signed, &root_crl, &["--revocation", "require"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("revocation:   not revoked"), "{}", stdout(&o));
    drop(responder);
    let o = verify(&tok, &signed, &root_crl, &["--revocation", "require"]);
    assert_eq!(code(&o), 0, "the cached answer serves while the responder is down: {}", stderr(&o));
    assert!(stdout(&o).contains("revocation:   not revoked"), "{}", stdout(&o));
}

#[test]
fn a_revoked_answer_fails_verification_and_signing_naming_date_reason_and_responder() {
    let Case { tok, port, pem, db, root_crl, signed } = Case::new();
    db.ca(&["-crl_reason", "keyCompromise", "-revoke"], &pem);
    let _responder = Responder::start(&db, port, (&pki().join("orgca.pem"), &pki().join("orgca.key")));
    let o = verify(&tok, &signed, &root_crl, &[]);
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(e.contains("was revoked on") && e.contains("(key compromise)"), "{e}");
    assert!(e.contains("says the OCSP answer signed by the issuer 'CN=Example Org CA"), "{e}");
    let input = tok.write("mail2.eml", MAIL);
    let o = run(&mut tok.with_pin(&["sign", "--key", "pkcs11:id=%04", "--in", input.to_str().unwrap()]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("refusing to sign") && stderr(&o).contains("(key compromise)"), "{}", stderr(&o));
}

#[test]
fn an_answer_from_a_responder_the_issuer_did_not_authorise_is_refused_and_a_delegated_one_is_believed() {
    let Case { tok, port, db, root_crl, signed, .. } = Case::new();
    // Alice's own certificate (the issuer's, but not for OCSP signing) signs the answers.
    {
        let _forger = Responder::start(&db, port, (&pki().join("alice.pem"), &pki().join("alice.key")));
        let o = verify(&tok, &signed, &root_crl, &["--revocation", "require"]);
        assert_clear_failure(&o, 1);
        let e = stderr(&o);
        assert!(e.contains("OCSP answer refused") && e.contains("did not certify to answer for it"), "{e}");
        let o = verify(&tok, &signed, &root_crl, &[]);
        assert_eq!(code(&o), 0, "prefer: said, not believed: {}", stderr(&o));
        assert!(stdout(&o).contains("revocation status unknown"), "{}", stdout(&o));
    }
    // A responder certificate the CA issued for id-kp-OCSPSigning is believed.
    let key = tok.path("responder.key");
    let csr = tok.path("responder.csr");
    ok(Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/O=Example Org/CN=Example Org OCSP",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&csr));
    let responder_pem = issue(
        &tok,
        "responder",
        &csr,
        "0x5eed0005",
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=OCSPSigning\n",
    );
    let _delegated = Responder::start(&db, port, (&responder_pem, &key));
    let o = verify(&tok, &signed, &root_crl, &["--revocation", "require"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("revocation:   not revoked"), "{}", stdout(&o));
}

#[test]
fn the_agent_asks_again_for_a_cached_answer_that_runs_out_soon() {
    let Case { tok, port, db, root_crl, signed, .. } = Case::new();
    let _responder = Responder::start(&db, port, (&pki().join("orgca.pem"), &pki().join("orgca.key")));
    let o = verify(&tok, &signed, &root_crl, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let cache = tok.path(".cache/ssmax-card/crls");
    let answer = || -> Vec<u8> {
        let f = std::fs::read_dir(&cache).unwrap().flatten().find(|e| {
            e.file_name().to_string_lossy().starts_with("answer-") && e.path().extension().is_some_and(|x| x == "der")
        });
        f.map(|e| std::fs::read(e.path()).unwrap()).unwrap_or_default()
    };
    let first = answer();
    assert!(!first.is_empty(), "the answer was cached");
    // openssl's answers hold a day: "soon" is within two days here.
    let _agent = crate::support::agent::start_agent(
        &tok,
        "revocation_refresh_ms = 100\nrevocation_refresh_ahead_minutes = 2880\n",
        "0",
    );
    let start = Instant::now();
    while answer() == first {
        assert!(start.elapsed() < Duration::from_secs(20), "the agent never asked again");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA anyone can make: self-signed, with the organisation CA's very name (a P-256 key of the
/// forger's), and a "carrier" it issued with alice's serial number, naming the forger's responder
/// and distribution point. (certificate, key) of each.
fn forged_ca_and_carrier(tok: &Tok, serial: &str, responder: u16, crl_url: &str) -> ((PathBuf, PathBuf), PathBuf) {
    let key = tok.path("forged-ca.key");
    let pem = tok.path("forged-ca.pem");
    ok(Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .args(["-subj", "/O=Example Org/CN=Example Org CA", "-days", "30", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&pem)
        .args(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"]));
    let carrier_key = tok.path("carrier.key");
    let csr = tok.path("carrier.csr");
    ok(Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"])
        .args(["-subj", "/O=Example Org/CN=Alice Example", "-keyout"])
        .arg(&carrier_key)
        .arg("-out")
        .arg(&csr));
    let ext = tok.write(
        "carrier.ext",
        format!("basicConstraints=critical,CA:FALSE\nsubjectAltName=email:alice@example.jp\nauthorityInfoAccess=OCSP;URI:http://127.0.0.1:{responder}/\ncrlDistributionPoints=URI:{crl_url}\n"),
    );
    let carrier = tok.path("carrier.pem");
    ok(Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(&csr)
        .arg("-CA")
        .arg(&pem)
        .arg("-CAkey")
        .arg(&key)
        .args(["-set_serial", serial, "-days", "30", "-sha256", "-extfile"])
        .arg(&ext)
        .arg("-out")
        .arg(&carrier));
    ((pem, key), carrier)
}

/// The forger's empty CRL under the organisation CA's name, valid for a week (PEM).
fn forged_crl(tok: &Tok, ca: (&Path, &Path)) -> Vec<u8> {
    let db = CaDb::named(tok, "forged-crl-db");
    std::fs::write(db.dir.join("crlnumber"), "01\n").unwrap();
    std::fs::write(
        &db.cnf,
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n",
            db.dir.display()
        ),
    )
    .unwrap();
    let out = db.dir.join("forged.crl");
    ok(Command::new("openssl")
        .args(["ca", "-batch", "-gencrl", "-config"])
        .arg(&db.cnf)
        .arg("-keyfile")
        .arg(ca.1)
        .arg("-cert")
        .arg(ca.0)
        .arg("-out")
        .arg(&out));
    std::fs::read(out).unwrap()
}

/// alice's mail signed by openssl with her key and the certificate that names the real
/// responder, the signer named by subject key identifier, the certificates carried in the order
/// the forger chose: the carrier and the forged CA first.
fn signed_with_forged_evidence(tok: &Tok, alice: &Path, carried: &[&Path]) -> PathBuf {
    let bundle: String = carried.iter().map(|p| std::fs::read_to_string(p).unwrap()).collect();
    let certfile = tok.write("carried.pem", bundle);
    let content = tok.write("content.txt", "Content-Type: text/plain\r\n\r\nPlease wire the money today.\r\n");
    let out = tok.path("forged-evidence.eml");
    ok(Command::new("openssl")
        .args(["cms", "-sign", "-keyid", "-nocerts", "-in"])
        .arg(&content)
        .arg("-signer")
        .arg(alice)
        .arg("-inkey")
        .arg(pki().join("alice.key"))
        .arg("-certfile")
        .arg(&certfile)
        .args(["-from", "alice@example.jp", "-to", "bob@example.com", "-subject", "payment", "-out"])
        .arg(&out));
    out
}

#[test]
fn a_revoked_signer_stays_revoked_whatever_certificates_and_responders_the_sender_adds() {
    let Case { tok, port, pem, db, root_crl, .. } = Case::new();
    db.ca(&["-crl_reason", "keyCompromise", "-revoke"], &pem);
    let real = Responder::start(&db, port, (&pki().join("orgca.pem"), &pki().join("orgca.key")));
    let forged_port = free_port();
    let lists = crate::support::http::Server::start();
    let ((forged_ca, forged_key), carrier) =
        forged_ca_and_carrier(&tok, "0x5eed0004", forged_port, &lists.url("orgca.crl"));
    // The forger's responder knows the carrier, and says "good".
    let forged_db = CaDb::named(&tok, "forged-ocsp-ca");
    forged_db.ca_of((&forged_ca, &forged_key), &["-valid"], &carrier);
    let forger = Responder::for_ca(&forged_db, &forged_ca, forged_port, (&forged_ca, &forged_key));
    lists.put("orgca.crl", forged_crl(&tok, (&forged_ca, &forged_key)));
    let mail = signed_with_forged_evidence(&tok, &pem, &[&carrier, &forged_ca, &pem]);
    for policy in ["prefer", "require"] {
        let o = verify(&tok, &mail, &root_crl, &["--revocation", policy]);
        assert_clear_failure(&o, 1);
        let e = stderr(&o);
        assert!(e.contains("was revoked on") && e.contains("(key compromise)"), "{policy}: {e}");
        assert!(!stdout(&o).contains("Good signature"), "{}", stdout(&o));
    }
    assert!(real.requests() >= 1, "the signer's own CA was asked");
    assert_eq!(forger.requests(), 0, "the responder a sender named was never asked");
    assert_eq!(
        lists.requests.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "the list a sender named was never fetched"
    );
}

#[test]
fn nothing_is_fetched_for_a_mail_whose_signature_does_not_verify() {
    let Case { tok, port, db, root_crl, signed, .. } = Case::new();
    let responder = Responder::start(&db, port, (&pki().join("orgca.pem"), &pki().join("orgca.key")));
    let text = std::fs::read_to_string(&signed).unwrap();
    let altered = tok.write("altered.eml", text.replacen("the figures are attached", "the figures are attachED", 1));
    let o = verify(&tok, &altered, &root_crl, &[]);
    assert_clear_failure(&o, 1);
    assert_eq!(responder.requests(), 0, "no request before the signature holds: {}", stderr(&o));
    let o = verify(&tok, &signed, &root_crl, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(responder.requests(), 1, "asked once the signature and chain are good");
}
