//! What a forger tries, each with the real binary: a second From beside the one signed, a From
//! inside the signed content that names someone else, a socket directory another user made
//! first, and a request that names a library for the agent to load.

use crate::support::agent::{start_agent, via};
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// `content` (a MIME entity) signed by alice with openssl (her key and certificate from the demo
/// PKI, the organisation CA carried along), with `From: alice@example.jp` outside.
fn openssl_signed(tok: &Tok, name: &str, content: &str) -> String {
    openssl_signed_as(tok, name, content, &[])
}

/// The same, with more options for `openssl cms -sign` (`-binary`: the bytes as they are).
fn openssl_signed_as(tok: &Tok, name: &str, content: &str, options: &[&str]) -> String {
    let input = tok.write(&format!("{name}.content"), content);
    let out = tok.path(&format!("{name}.eml"));
    ok(Command::new("openssl")
        .args(["cms", "-sign"])
        .args(options)
        .arg("-in")
        .arg(&input)
        .arg("-signer")
        .arg(pki().join("alice.pem"))
        .arg("-inkey")
        .arg(pki().join("alice.key"))
        .arg("-certfile")
        .arg(pki().join("orgca.pem"))
        .args(["-from", "alice@example.jp", "-to", "bob@example.com", "-subject", "quarterly figures", "-out"])
        .arg(&out));
    std::fs::read_to_string(out).unwrap()
}

const PLAIN: &str = "Content-Type: text/plain\r\n\r\nThe figures are attached.\r\n";

fn verify(tok: &Tok, name: &str, mail: &str) -> std::process::Output {
    let f = tok.write(name, mail);
    run(tok.cmd().args(["--agent", "never", "verify", "--in"]).arg(f))
}

#[test]
fn verify_refuses_a_second_from_put_before_the_one_openssl_signed_and_a_from_of_two_mailboxes() {
    let tok = Tok::new();
    let signed = openssl_signed(&tok, "signed", PLAIN);
    let o = verify(&tok, "as-signed.eml", &signed);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("From matches: alice@example.jp"), "{}", stdout(&o));

    // Mail programs show the first From: the CEO's.
    let o = verify(&tok, "two-froms.eml", &format!("From: CEO <ceo@bank.example>\n{signed}"));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("the mail has 2 From fields"), "{}", stderr(&o));
    assert!(!stdout(&o).contains("Good signature"), "{}", stdout(&o));
    // The same after it: which one a program shows is not ours to guess.
    let after = signed.replacen("Subject: ", "From: ceo@bank.example\nSubject: ", 1);
    assert_clear_failure(&verify(&tok, "two-froms-after.eml", &after), 1);

    let two = signed.replacen("From: alice@example.jp", "From: alice@example.jp, CEO <ceo@bank.example>", 1);
    let o = verify(&tok, "two-mailboxes.eml", &two);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("the From field names 2 mailboxes"), "{}", stderr(&o));
    let group = signed.replacen("From: alice@example.jp", "From: Board: alice@example.jp, ceo@bank.example;", 1);
    assert_clear_failure(&verify(&tok, "group.eml", &group), 1);
}

#[test]
fn verify_refuses_signed_content_whose_own_from_names_another_sender() {
    let tok = Tok::new();
    // Header protection (RFC 8551 §3.1): the signed part carries the header fields too.
    let agrees = format!("From: Alice Example <alice@example.jp>\r\nSubject: quarterly figures\r\n{PLAIN}");
    let o = verify(&tok, "agrees.eml", &openssl_signed(&tok, "agrees", &agrees));
    assert_eq!(code(&o), 0, "a protected From that agrees is fine: {}", stderr(&o));

    let other = format!("From: CEO <ceo@bank.example>\r\n{PLAIN}");
    let o = verify(&tok, "other.eml", &openssl_signed(&tok, "other", &other));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("names another sender (ceo@bank.example)"), "{}", stderr(&o));

    let wrapped =
        "Content-Type: message/rfc822\r\n\r\nFrom: CEO <ceo@bank.example>\r\nSubject: wire the money\r\n\r\nToday.\r\n";
    let o = verify(&tok, "wrapped.eml", &openssl_signed(&tok, "wrapped", wrapped));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("names another sender (ceo@bank.example)"), "{}", stderr(&o));

    let doubled = format!("From: alice@example.jp\r\nFrom: ceo@bank.example\r\n{PLAIN}");
    let o = verify(&tok, "doubled.eml", &openssl_signed(&tok, "doubled", &doubled));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("the From inside the signed content: the mail has 2 From fields"), "{}", stderr(&o));
}

#[test]
fn verify_refuses_signed_content_whose_header_hides_or_garbles_a_sender_and_keeps_forwarded_ones() {
    let tok = Tok::new();
    let ceo = "From: CEO <ceo@bank.example>\r\nSubject: wire the money\r\n\r\nToday.\r\n";
    let cases = [
        (
            "obsolete",
            "Content-Type: message/rfc822\r\n\r\nFrom : CEO <ceo@bank.example>\r\n\r\nx\r\n".to_string(),
            "cannot be read",
        ),
        ("bare-cr", format!("X-A: b\rFrom: CEO <ceo@bank.example>\r\n{PLAIN}"), "bare CR"),
        (
            "two-types",
            format!("Content-Type: message/rfc822\r\nContent-Type: text/plain\r\n\r\n{ceo}"),
            "2 Content-Type fields",
        ),
        (
            "encoding",
            format!("Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8-bit\r\n\r\n{ceo}"),
            "cannot be read",
        ),
        ("global", format!("Content-Type: message/global\r\n\r\n{ceo}"), "names another sender (ceo@bank.example)"),
        ("continued", format!(" continued\r\nFrom: CEO <ceo@bank.example>\r\n{PLAIN}"), "cannot be read"),
        ("nul", format!("From: ceo@bank.example\0 <alice@example.jp>\r\n{PLAIN}"), "control character"),
    ];
    for (name, content, why) in cases {
        let o = verify(&tok, &format!("{name}.eml"), &openssl_signed_as(&tok, name, &content, &["-binary"]));
        assert_clear_failure(&o, 1);
        assert!(stderr(&o).contains(why), "{name}: {}", stderr(&o));
    }
    // A forwarded message, attached inside the content, keeps its own sender.
    let forwarded = format!(
        "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSee below.\r\n--b\r\nContent-Type: message/rfc822\r\n\r\n{ceo}--b--\r\n"
    );
    let o = verify(&tok, "forwarded.eml", &openssl_signed_as(&tok, "forwarded", &forwarded, &["-binary"]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // And the outer From: a NUL in its display name.
    let signed = openssl_signed(&tok, "outer-nul", PLAIN);
    let nul = signed.replacen("From: alice@example.jp", "From: ceo@bank.example\0 <alice@example.jp>", 1);
    let o = verify(&tok, "outer-nul.eml", &nul);
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("control character"), "{}", stderr(&o));
}

#[test]
fn sign_refuses_a_mail_whose_whole_content_is_someone_elses_message() {
    let tok = Tok::new();
    let draft = tok.write(
        "wrapped.eml",
        "From: Alice Example <alice@example.jp>\nTo: bob@example.com\nContent-Type: message/rfc822\n\nFrom: CEO <ceo@bank.example>\nSubject: wire the money\n\nToday.\n",
    );
    let o = run(&mut tok.with_pin(&["sign", "--in", draft.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("names another sender (ceo@bank.example)"), "{}", stderr(&o));
}

#[test]
fn sign_and_send_refuse_a_draft_with_two_from_fields_or_two_mailboxes() {
    let tok = Tok::new();
    let drafts = [
        ("two-froms.eml", format!("From: CEO <ceo@bank.example>\n{MAIL}"), "the mail has 2 From fields"),
        ("two-boxes.eml", MAIL.replacen(">", ">, ceo@bank.example", 1), "the From field names 2 mailboxes"),
    ];
    for (name, draft, why) in drafts {
        let f = tok.write(name, draft);
        for command in ["sign", "send"] {
            let o = run(&mut tok.with_pin(&[command, "--in", f.to_str().unwrap()]));
            assert_clear_failure(&o, 2);
            assert!(stderr(&o).contains("refusing to sign") && stderr(&o).contains(why), "{command}: {}", stderr(&o));
        }
    }
}

/// A listener on `dir`/ssmax-card-0/agent.sock run by uid 4242, which records how many bytes
/// each connection sent (in `received`, a line each).
struct Squatter {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

const SQUAT: &str = r#"
import os, socket, sys
d = os.path.join(sys.argv[1], "ssmax-card-0")
os.mkdir(d, 0o755)
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(d, "agent.sock"))
os.chmod(os.path.join(d, "agent.sock"), 0o777)
s.listen(8)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    got = 0
    try:
        while True:
            b = c.recv(65536)
            if not b:
                break
            got += len(b)
    except OSError:
        pass
    with open(os.path.join(sys.argv[1], "received"), "a") as f:
        f.write("%d\n" % got)
    c.close()
"#;

impl Squatter {
    fn start() -> Option<Squatter> {
        let dir = dir_for_user(4242);
        let child = as_user(4242, SQUAT)?.arg(dir.path()).spawn().unwrap();
        let start = Instant::now();
        while !dir.path().join("ssmax-card-0/agent.sock").exists() {
            assert!(start.elapsed() < Duration::from_secs(10), "the squatter did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Squatter { child, dir })
    }

    fn socket(&self) -> PathBuf {
        self.dir.path().join("ssmax-card-0/agent.sock")
    }

    /// Bytes received by each connection so far (waiting a moment for the last to be written).
    fn received(&self, connections: usize) -> Vec<usize> {
        let start = Instant::now();
        loop {
            let text = std::fs::read_to_string(self.dir.path().join("received")).unwrap_or_default();
            let got: Vec<usize> = text.lines().map(|l| l.parse().unwrap()).collect();
            if got.len() >= connections || start.elapsed() > Duration::from_secs(10) {
                return got;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Squatter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_cli_sends_nothing_to_a_socket_another_user_listens_on() {
    let Some(squatter) = Squatter::start() else {
        eprintln!("skipped: needs root to run a process as another user");
        return;
    };
    let tok = Tok::new();
    let signed = tok.write("signed.eml", openssl_signed(&tok, "signed", PLAIN));
    let verify = |mode: &str| {
        run(tok.cmd().args(["--agent", mode, "--socket"]).arg(squatter.socket()).arg("verify").arg("--in").arg(&signed))
    };
    let o = verify("always");
    assert_clear_failure(&o, 7);
    assert!(stderr(&o).contains("it is held by user 4242, not by you"), "{}", stderr(&o));
    // auto: the work is done here, and the user is told why the agent was not used.
    let o = verify("auto");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("Good signature"), "{}", stdout(&o));
    assert!(stderr(&o).contains("warning: refusing the socket"), "{}", stderr(&o));
    assert_eq!(squatter.received(2), vec![0, 0], "not a byte reached the other user's listener");
}

#[test]
fn the_agent_refuses_a_socket_directory_another_user_made_a_symbolic_link_or_an_open_one() {
    let tok = Tok::new();
    let agent = |socket: &Path| run(tok.cmd().args(["agent", "--socket"]).arg(socket));
    if let Some(squatter) = Squatter::start() {
        let o = agent(&squatter.socket());
        assert_clear_failure(&o, 2);
        let e = stderr(&o);
        assert!(e.contains("ssmax-card-0: it belongs to user 4242, not to you"), "{e}");
        assert!(squatter.socket().exists(), "the other user's socket was left alone");
    }
    // A link to a private directory of ours is still a link: whoever made it chose the target.
    let target = tok.path("private");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&target).unwrap();
    let link = tok.path("link");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let o = agent(&link.join("agent.sock"));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("it is a symbolic link"), "{}", stderr(&o));
    // Ours, but open to others: said, with the fix, and not changed behind the user's back.
    let open = tok.path("open");
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o755).create(&open).unwrap();
    std::fs::set_permissions(&open, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let o = agent(&open.join("agent.sock"));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("its mode is 755") && stderr(&o).contains("chmod 700"), "{}", stderr(&o));
    assert!(!open.join("agent.sock").exists());
}

#[test]
fn the_agent_loads_no_module_a_request_names() {
    let tok = Tok::new();
    // A "module" whose constructor leaves a mark: loading it at all runs the caller's code.
    let mark = tok.path("module-ran");
    let source = tok.write(
        "evil.c",
        format!(
            "#include <stdio.h>\n__attribute__((constructor)) static void ran(void) {{ FILE *f = fopen(\"{}\", \"w\"); if (f) fclose(f); }}\n",
            mark.display()
        ),
    );
    let evil = tok.path("evil.so");
    ok(Command::new("cc").args(["-shared", "-fPIC", "-o"]).arg(&evil).arg(&source));
    let agent = start_agent(&tok, "", "0");
    let named = format!("pkcs11:token=x?module-path={}", evil.display());
    let o = via(&tok, &agent, &["--token", &named, "status"]);
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("is not one of them"), "{}", stderr(&o));
    let key = format!("pkcs11:id=%01?module-path={}", evil.display());
    let input = tok.write("mail.eml", MAIL);
    let o = via(&tok, &agent, &["--key", &key, "sign", "--in", input.to_str().unwrap()]);
    assert_clear_failure(&o, 2);
    // A link to a module the profiles name is that module, loaded by the agent's own path.
    let softhsm = std::fs::canonicalize("/usr/lib/softhsm/libsofthsm2.so").unwrap();
    let link = tok.path("softhsm-link.so");
    std::os::unix::fs::symlink(&softhsm, &link).unwrap();
    let o =
        via(&tok, &agent, &["--token", &format!("pkcs11:token=ssmax%20test?module-path={}", link.display()), "status"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!mark.exists(), "the named library was never loaded");
}

#[test]
fn a_cached_pin_never_stands_in_for_the_pin_an_always_authenticate_key_asks_at_each_use() {
    let tok = Tok::new();
    // A key that asks for the PIN on every use, as a PIV 9C or JPKI signature key does.
    tok.keygen_with_cert("07", "consent", "EC:prime256v1", &["--always-auth"]);
    let agent = start_agent(&tok, "pin_cache = \"ttl\"\npin_cache_seconds = 300\n", "0");
    let input = tok.write("mail.eml", MAIL);
    let sign = |key: &str| via(&tok, &agent, &["--key", key, "sign", "--in", input.to_str().unwrap()]);
    let o = sign("pkcs11:id=%07");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(crate::support::agent::getpins(&agent), 1, "one PIN serves the login and this use");
    let o = sign("pkcs11:id=%07");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(crate::support::agent::getpins(&agent), 2, "the next use asks again");
    // A key without the flag signs on the cached login.
    let o = sign("pkcs11:id=%01");
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(crate::support::agent::getpins(&agent), 2);
}

#[test]
fn the_pin_prompt_shows_what_the_mail_says_without_controls_bidi_overrides_or_endless_text() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let many: Vec<String> = (0..60).map(|i| format!("person{i}@example.com")).collect();
    let mail = format!(
        "From: Alice Example <alice@example.jp>\nTo: \"moc.elpmaxe@ob\u{202e}\" <bob@example.com>, {}\nSubject: x\n\nhello\n",
        many.join(", ")
    );
    let input = tok.write("mail.eml", mail);
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let log = std::fs::read_to_string(&agent.pinentry_log).unwrap();
    let desc = log.lines().find(|l| l.starts_with("SETDESC")).expect("a description");
    assert!(!desc.contains('\u{202e}'), "{desc}");
    assert!(desc.contains("sign mail from alice@example.jp"), "{desc}");
    assert!(desc.contains('…') && desc.chars().count() < 400, "capped: {} characters: {desc}", desc.chars().count());
}
