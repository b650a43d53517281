//! Revocation by CRLs made with `openssl ca -revoke` / `-gencrl`: a lost card's certificate stops
//! being trusted.

use crate::support::agent::{start_agent, via};
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A CA's CRL, made by `openssl ca` in `dir`: `revoked` certificates (with a reason), and the
/// update times (`next` in openssl's YYYYMMDDHHMMSSZ form; a week from now when None).
pub(crate) fn crl(dir: &Path, ca: &str, revoked: &[(&str, &str)], times: Option<(&str, &str)>) -> PathBuf {
    let d = dir.join(format!("ca-{ca}-{}", revoked.len()));
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(d.join("index.txt"), "").unwrap();
    std::fs::write(d.join("crlnumber"), "01\n").unwrap();
    let cnf = d.join("ca.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[ca]\ndefault_ca = d\n[d]\ndatabase = {0}/index.txt\ncrlnumber = {0}/crlnumber\ndefault_md = sha256\ndefault_crl_days = 7\n",
            d.display()
        ),
    )
    .unwrap();
    let ca_args = |c: &mut Command| {
        c.args(["ca", "-batch", "-config"])
            .arg(&cnf)
            .arg("-keyfile")
            .arg(pki().join(format!("{ca}.key")))
            .arg("-cert")
            .arg(pki().join(format!("{ca}.pem")));
    };
    for (cert, reason) in revoked {
        let mut c = Command::new("openssl");
        ca_args(&mut c);
        ok(c.arg("-revoke").arg(pki().join(cert)).args(["-crl_reason", reason]));
    }
    let out = d.join(format!("{ca}.crl"));
    let mut c = Command::new("openssl");
    ca_args(&mut c);
    c.arg("-gencrl").arg("-out").arg(&out);
    if let Some((last, next)) = times {
        c.args(["-crl_lastupdate", last, "-crl_nextupdate", next]);
    }
    ok(&mut c);
    out
}

fn signed_by_alice(tok: &Tok) -> PathBuf {
    let input = tok.write("mail.eml", MAIL);
    let out = tok.path("signed.eml");
    ok(&mut tok.with_pin(&[
        "sign",
        "--key",
        "pkcs11:id=%01",
        "--in",
        input.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    out
}

fn verify(tok: &Tok, mail: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--agent", "never", "verify", "--in", mail.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(tok.cmd().args(args))
}

#[test]
fn a_revoked_signer_certificate_fails_verification_naming_date_and_reason() {
    let tok = Tok::new();
    let signed = signed_by_alice(&tok);
    let dir = tok.path("crls");
    let org = crl(&dir, "orgca", &[("alice.pem", "keyCompromise")], None);
    let root = crl(&dir, "root", &[], None);
    let o = verify(&tok, &signed, &["--crl", org.to_str().unwrap(), "--crl", root.to_str().unwrap()]);
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(e.contains("CN=Alice Example,O=Example Org") && e.contains("was revoked on"), "{e}");
    assert!(e.contains("(key compromise)"), "{e}");
    // The agent gets the same lists as descriptors the client opened.
    let agent = start_agent(&tok, "", "0");
    let o = via(&tok, &agent, &["verify", "--in", signed.to_str().unwrap(), "--crl", org.to_str().unwrap()]);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("was revoked on"), "{}", stderr(&o));
}

#[test]
fn current_crls_that_list_nothing_of_the_chain_say_not_revoked() {
    let tok = Tok::new();
    let signed = signed_by_alice(&tok);
    let dir = tok.path("crls");
    // Bob's certificate is revoked by another CA: nothing to do with alice's chain.
    let org = crl(&dir, "orgca", &[], None);
    let root = crl(&dir, "root", &[], None);
    let o = verify(
        &tok,
        &signed,
        &["--revocation", "require", "--crl", org.to_str().unwrap(), "--crl", root.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("revocation:   not revoked"), "{}", stdout(&o));
}

#[test]
fn an_unknown_status_fails_under_require_and_is_said_under_prefer() {
    let tok = Tok::new();
    let signed = signed_by_alice(&tok);
    let dir = tok.path("crls");
    // Only the organisation CA's list: the CA certificate itself has no status from the root.
    let org = crl(&dir, "orgca", &[], None);
    let o = verify(&tok, &signed, &["--revocation", "require", "--crl", org.to_str().unwrap()]);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("revocation status of the chain"), "{}", stderr(&o));
    let o = verify(&tok, &signed, &["--crl", org.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "prefer is the default: {}", stderr(&o));
    assert!(
        stdout(&o).contains("revocation status unknown: no CRL or OCSP answer covers every certificate"),
        "{}",
        stdout(&o)
    );
    // No list at all: said, not silently skipped; with require, refused.
    let o = verify(&tok, &signed, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("revocation status unknown: no CRL or OCSP answer to be had"), "{}", stdout(&o));
    let o = verify(&tok, &signed, &["--revocation", "require"]);
    assert_clear_failure(&o, 1);
    let o = verify(&tok, &signed, &["--revocation", "off"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("revocation:   not checked"), "{}", stdout(&o));
}

#[test]
fn an_out_of_date_crl_fails_under_require_and_is_said_under_prefer_but_its_revocations_still_count() {
    let tok = Tok::new();
    let signed = signed_by_alice(&tok);
    let dir = tok.path("crls");
    let stale = Some(("20250101000000Z", "20250108000000Z"));
    let org = crl(&dir, "orgca", &[], stale);
    let root = crl(&dir, "root", &[], stale);
    let args = ["--crl", org.to_str().unwrap(), "--crl", root.to_str().unwrap()];
    let o = verify(&tok, &signed, &[&["--revocation", "require"][..], &args].concat());
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("out of date"), "{}", stderr(&o));
    let o = verify(&tok, &signed, &args);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("a CRL for the chain is out of date"), "{}", stdout(&o));
    let revoked = crl(&dir, "orgca", &[("alice.pem", "superseded")], stale);
    let o = verify(&tok, &signed, &["--crl", revoked.to_str().unwrap(), "--crl", root.to_str().unwrap()]);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("(superseded)"), "{}", stderr(&o));
}

/// openssl's YYYYMMDDHHMMSSZ for now moved by `hours`.
fn hours_from_now(hours: i64) -> String {
    stdout(&ok(Command::new("date").args(["-u", "-d", &format!("{hours} hours"), "+%Y%m%d%H%M%SZ"]))).trim().to_string()
}

#[test]
fn a_crl_just_past_its_next_update_counts_within_the_grace_and_is_said() {
    let tok = Tok::new();
    let signed = signed_by_alice(&tok);
    let dir = tok.path("crls");
    let late = Some((hours_from_now(-48), hours_from_now(-2)));
    let late = late.as_ref().map(|(a, b)| (a.as_str(), b.as_str()));
    let org = crl(&dir, "orgca", &[], late);
    let root = crl(&dir, "root", &[], None);
    let args = ["--revocation", "require", "--crl", org.to_str().unwrap(), "--crl", root.to_str().unwrap()];
    let o = verify(&tok, &signed, &args);
    assert_eq!(code(&o), 0, "two hours late, within the default 24 h: {}", stderr(&o));
    assert!(stdout(&o).contains("past its nextUpdate, within the grace of 24 h"), "{}", stdout(&o));
    let config = tok.write("no-grace.toml", "revocation_grace_hours = 1\n");
    let o = run(tok
        .cmd()
        .args(["--agent", "never", "--config", config.to_str().unwrap(), "verify", "--in", signed.to_str().unwrap()])
        .args(args));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("out of date"), "past a one-hour grace: {}", stderr(&o));
}

#[test]
fn a_file_that_is_not_a_crl_is_refused_clearly() {
    let tok = Tok::new();
    let signed = signed_by_alice(&tok);
    let o = verify(&tok, &signed, &["--crl", pki().join("alice.pem").to_str().unwrap()]);
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("not an X509 CRL"), "{}", stderr(&o));
}

#[test]
fn revocation_given_on_the_command_line_rules_sign_and_travels_to_the_agent() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let sign = |extra: &[&str]| {
        let mut args = vec!["sign", "--key", "pkcs11:id=%01", "--in", input.to_str().unwrap()];
        args.extend_from_slice(extra);
        run(&mut tok.with_pin(&args))
    };
    // No list and no distribution point: signing goes on unless the user requires a status.
    assert_eq!(code(&sign(&["--agent", "never"])), 0);
    let o = sign(&["--agent", "never", "--revocation", "require"]);
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("refusing to sign") && stderr(&o).contains("--revocation require"), "{}", stderr(&o));
    let agent = start_agent(&tok, "", "0");
    let via_agent = |extra: &[&str]| {
        let mut args = vec!["sign", "--key", "pkcs11:id=%01", "--in", input.to_str().unwrap()];
        args.extend_from_slice(extra);
        via(&tok, &agent, &args)
    };
    let o = via_agent(&["--revocation", "require"]);
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("--revocation require"), "{}", stderr(&o));
    assert_eq!(code(&via_agent(&[])), 0, "the next request has the agent's own policy again");
}

fn config_with(tok: &Tok, crls: &[&Path]) -> PathBuf {
    let list: Vec<String> = crls.iter().map(|p| format!("\"{}\"", p.display())).collect();
    tok.write("revocation.toml", format!("crls = [{}]\n", list.join(", ")))
}

#[test]
fn sign_refuses_a_revoked_certificate_before_asking_for_the_pin() {
    let tok = Tok::new();
    let dir = tok.path("crls");
    let org = crl(&dir, "orgca", &[("alice.pem", "keyCompromise")], None);
    let root = crl(&dir, "root", &[], None);
    let config = config_with(&tok, &[&org, &root]);
    let input = tok.write("mail.eml", MAIL);
    // No PIN source at all: a prompt would fail differently (exit 4).
    let o = run(tok.cmd().args([
        "--agent",
        "never",
        "--config",
        config.to_str().unwrap(),
        "sign",
        "--key",
        "pkcs11:id=%01",
        "--in",
        input.to_str().unwrap(),
    ]));
    assert_clear_failure(&o, 6);
    let e = stderr(&o);
    assert!(e.contains("refusing to sign") && e.contains("was revoked on") && e.contains("(key compromise)"), "{e}");
}

#[test]
fn send_refuses_to_encrypt_to_a_revoked_organisation_certificate() {
    let tok = Tok::new();
    let dir = tok.path("crls");
    let root = crl(&dir, "root", &[("org.pem", "cessationOfOperation")], None);
    let org = crl(&dir, "orgca", &[], None);
    let config = config_with(&tok, &[&org, &root]);
    let draft = tok.write("draft.eml", MAIL);
    let o = run(&mut tok.with_pin(&[
        "--agent",
        "never",
        "--config",
        config.to_str().unwrap(),
        "send",
        "--in",
        draft.to_str().unwrap(),
    ]));
    assert_clear_failure(&o, 1);
    let e = stderr(&o);
    assert!(
        e.contains("refusing to encrypt to the organisation certificate") && e.contains("(cessation of operation)"),
        "{e}"
    );
}

/// Alice's key with a certificate whose CRL distribution point is `server`'s `orgca.crl`,
/// stored on her token under id 03: what an organisation issues once it publishes its CRL.
fn cert_with_distribution_point(tok: &Tok, server: &crate::support::http::Server) -> PathBuf {
    let ext = tok.write(
        "cdp.ext",
        format!(
            "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment\nextendedKeyUsage=emailProtection\nsubjectAltName=email:alice@example.jp\ncrlDistributionPoints=URI:{}\n",
            server.url("orgca.crl")
        ),
    );
    let pem = tok.path("alice-cdp.pem");
    ok(Command::new("openssl")
        .args(["x509", "-req", "-in"])
        .arg(pki().join("alice.csr"))
        .arg("-CA")
        .arg(pki().join("orgca.pem"))
        .arg("-CAkey")
        .arg(pki().join("orgca.key"))
        .args(["-set_serial", "0x5eed0001", "-days", "30", "-sha256", "-extfile"])
        .arg(&ext)
        .arg("-out")
        .arg(&pem));
    tok.import(&pki().join("alice.key"), &pem, "03", "alice-cdp");
    pem
}

fn signed_with(tok: &Tok, id: &str) -> PathBuf {
    let input = tok.write("mail.eml", MAIL);
    let out = tok.path("signed-cdp.eml");
    let key = format!("pkcs11:id=%{id}");
    ok(&mut tok.with_pin(&["sign", "--key", &key, "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()]));
    out
}

#[test]
fn the_crl_is_fetched_from_the_distribution_point_cached_and_used_while_the_server_is_down() {
    let tok = Tok::new();
    let server = crate::support::http::Server::start();
    let pem = cert_with_distribution_point(&tok, &server);
    let signed = signed_with(&tok, "03");
    let dir = tok.path("crls");
    let revoked = crl(&dir, "orgca", &[(pem.to_str().unwrap(), "keyCompromise")], None);
    server.put("orgca.crl", std::fs::read(&revoked).unwrap());
    // (Signing asked too, before the list was published: 404, a status unknown, no refusal.)
    let asked = || server.requests.load(std::sync::atomic::Ordering::SeqCst);
    let before = asked();
    let o = verify(&tok, &signed, &[]);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("was revoked on") && stderr(&o).contains("(key compromise)"), "{}", stderr(&o));
    assert_eq!(asked(), before + 1);
    // The list is current: the next verification asks nobody, even with the server gone.
    server.go_down();
    let o = verify(&tok, &signed, &[]);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("was revoked on"), "{}", stderr(&o));
    assert_eq!(asked(), before + 1, "served from the cache");
}

#[test]
fn an_unreachable_or_huge_distribution_point_is_said_and_judged_by_the_policy() {
    let tok = Tok::new();
    let server = crate::support::http::Server::start();
    cert_with_distribution_point(&tok, &server);
    let signed = signed_with(&tok, "03");
    server.put("orgca.crl", vec![0x30; 5 << 20]);
    let o = verify(&tok, &signed, &[]);
    assert_eq!(code(&o), 0, "prefer: {}", stderr(&o));
    assert!(stderr(&o).contains("larger than 4 MiB; refused"), "{}", stderr(&o));
    assert!(stdout(&o).contains("revocation status unknown"), "{}", stdout(&o));
    server.go_down();
    let o = verify(&tok, &signed, &["--revocation", "require"]);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("HTTP 503"), "{}", stderr(&o));
}

#[test]
fn status_shows_each_certificates_revocation() {
    let tok = Tok::new();
    let dir = tok.path("crls");
    let org = crl(&dir, "orgca", &[("alice.pem", "keyCompromise")], None);
    let root = crl(&dir, "root", &[], None);
    let config = config_with(&tok, &[&org, &root]);
    let o = run(tok.cmd().args(["--agent", "never", "--config", config.to_str().unwrap(), "status"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("revocation REVOKED: the certificate 'CN=Alice Example,O=Example Org'"), "{out}");
    assert!(out.contains("(key compromise)"), "{out}");
    // Her EC certificate (another serial) is on a current list that does not name it.
    assert!(out.contains("revocation not revoked"), "{out}");
}

#[test]
fn sign_fetches_the_list_its_certificate_names_and_refuses_when_revoked() {
    let tok = Tok::new();
    let server = crate::support::http::Server::start();
    let pem = cert_with_distribution_point(&tok, &server);
    let revoked = crl(&tok.path("crls"), "orgca", &[(pem.to_str().unwrap(), "keyCompromise")], None);
    server.put("orgca.crl", std::fs::read(&revoked).unwrap());
    let input = tok.write("mail.eml", MAIL);
    let o = run(&mut tok.with_pin(&[
        "--agent",
        "never",
        "sign",
        "--key",
        "pkcs11:id=%03",
        "--in",
        input.to_str().unwrap(),
    ]));
    assert_clear_failure(&o, 6);
    assert!(stderr(&o).contains("refusing to sign") && stderr(&o).contains("(key compromise)"), "{}", stderr(&o));
}

#[test]
fn a_slow_distribution_point_costs_no_more_than_the_configured_time() {
    let tok = Tok::new();
    let server = crate::support::http::Server::start();
    cert_with_distribution_point(&tok, &server);
    let signed = signed_with(&tok, "03");
    server.put("orgca.crl", std::fs::read(crl(&tok.path("crls"), "orgca", &[], None)).unwrap());
    server.go_slow();
    let config = tok.write(
        "slow.toml",
        format!("crl_fetch_timeout_ms = 400\ncrl_cache_dir = \"{}\"\n", tok.path("empty-cache").display()),
    );
    let started = std::time::Instant::now();
    let o = verify(&tok, &signed, &["--config", config.to_str().unwrap()]);
    let took = started.elapsed();
    assert_eq!(code(&o), 0, "prefer: {}", stderr(&o));
    assert!(stderr(&o).contains("cannot fetch it"), "{}", stderr(&o));
    assert!(took < std::time::Duration::from_secs(3), "the 3 s server was not waited for: {took:?}");
}

/// The agent's background refresh fetches the list again before it runs out: the CA's newer list,
/// which revokes alice, reaches the cache with no verification asking for it.
#[test]
fn the_agent_fetches_again_a_cached_crl_that_runs_out_soon_so_no_verification_waits_for_it() {
    let tok = Tok::new();
    let server = crate::support::http::Server::start();
    let pem = cert_with_distribution_point(&tok, &server);
    let signed = signed_with(&tok, "03");
    let dir = tok.path("crls");
    let (last, next) = (hours_from_now(-1), hours_from_now(1));
    let first = crl(&dir, "orgca", &[], Some((last.as_str(), next.as_str())));
    server.put("orgca.crl", std::fs::read(&first).unwrap());
    let asked = || server.requests.load(std::sync::atomic::Ordering::SeqCst);
    let o = verify(&tok, &signed, &[]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let after_verify = asked();
    let cache = tok.path(".cache/ssmax-card/crls");
    let cached = || -> Vec<u8> {
        let f = std::fs::read_dir(&cache).unwrap().flatten().find(|e| e.path().extension().is_some_and(|x| x == "crl"));
        f.map(|e| std::fs::read(e.path()).unwrap()).unwrap_or_default()
    };
    let before = cached();
    assert!(!before.is_empty(), "the list was cached");
    let second = crl(&dir, "orgca", &[(pem.to_str().unwrap(), "keyCompromise")], None);
    server.put("orgca.crl", std::fs::read(&second).unwrap());
    let agent = start_agent(&tok, "revocation_refresh_ms = 100\nrevocation_refresh_ahead_minutes = 120\n", "0");
    let start = std::time::Instant::now();
    while cached() == before {
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "the agent never refreshed the list");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(asked() > after_verify);
    drop(agent);
    server.go_down();
    let asked_before = asked();
    let o = verify(&tok, &signed, &[]);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("was revoked on") && stderr(&o).contains("(key compromise)"), "{}", stderr(&o));
    assert_eq!(asked(), asked_before, "the refreshed list served from the cache");
}

#[test]
fn an_older_list_from_the_same_ca_does_not_hide_the_newer_one_that_revokes() {
    let tok = Tok::new();
    let signed = signed_by_alice(&tok);
    let dir = tok.path("crls");
    // Both current; the older (from before the card was lost) names nobody.
    let (last, next) = (hours_from_now(-48), hours_from_now(120));
    let old = crl(&dir, "orgca", &[], Some((&last, &next)));
    let new = crl(&dir, "orgca", &[("alice.pem", "keyCompromise")], None);
    let expired = crl(&tok.path("crls-expired"), "orgca", &[], Some(("20250101000000Z", "20250108000000Z")));
    let root = crl(&dir, "root", &[], None);
    for older in [&old, &expired] {
        for policy in ["prefer", "require"] {
            let args = [
                "--revocation",
                policy,
                "--crl",
                older.to_str().unwrap(),
                "--crl",
                new.to_str().unwrap(),
                "--crl",
                root.to_str().unwrap(),
            ];
            let o = verify(&tok, &signed, &args);
            assert_clear_failure(&o, 1);
            assert!(stderr(&o).contains("was revoked on") && stderr(&o).contains("(key compromise)"), "{}", stderr(&o));
        }
    }
    // The older alone is still a good list for what it says.
    let o = verify(
        &tok,
        &signed,
        &["--revocation", "require", "--crl", old.to_str().unwrap(), "--crl", root.to_str().unwrap()],
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}
