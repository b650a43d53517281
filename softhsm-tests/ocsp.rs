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
        let dir = tok.path("ocsp-ca");
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
        ok(Command::new("openssl")
            .args(["ca", "-batch", "-config"])
            .arg(&self.cnf)
            .arg("-keyfile")
            .arg(pki().join("orgca.key"))
            .arg("-cert")
            .arg(pki().join("orgca.pem"))
            .args(what)
            .arg(cert));
    }

    fn index(&self) -> PathBuf {
        self.dir.join("index.txt")
    }
}

/// `openssl ocsp` serving the CA's database on `port`, signing with `signer` (certificate and
/// key); stopped when dropped.
struct Responder(Child);

impl Responder {
    fn start(db: &CaDb, port: u16, signer: (&Path, &Path)) -> Responder {
        let child = Command::new("openssl")
            .args(["ocsp", "-index"])
            .arg(db.index())
            .arg("-CA")
            .arg(pki().join("orgca.pem"))
            .arg("-rsigner")
            .arg(signer.0)
            .arg("-rkey")
            .arg(signer.1)
            .args(["-port", &port.to_string(), "-ndays", "1", "-ignore_err"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let start = Instant::now();
        while !listens(port) {
            assert!(start.elapsed() < Duration::from_secs(10), "openssl ocsp did not start on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Responder(child)
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
            e.file_name().to_string_lossy().starts_with("ocsp-") && e.path().extension().is_some_and(|x| x == "der")
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
