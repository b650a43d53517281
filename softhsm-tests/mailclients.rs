//! Real mail clients on top of the agent: neomutt, driven headless in tmux with the snippet we
//! ship (packaging/neomutt/ssmax-card.neomuttrc), signing on the card, decrypting on the card,
//! verifying; what it sends is judged by openssl.

use crate::support::agent::*;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A private tmux server (own socket) running one program in a 120×40 window.
pub(crate) struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    pub(crate) fn start(tok: &Tok, command: &str) -> Tmux {
        let socket = tok.path("tmux.sock");
        ok(Command::new("tmux").arg("-S").arg(&socket).args([
            "new-session",
            "-d",
            "-s",
            "t",
            "-x",
            "120",
            "-y",
            "40",
            command,
        ]));
        Tmux { socket }
    }

    pub(crate) fn keys(&self, keys: &[&str]) {
        ok(Command::new("tmux").arg("-S").arg(&self.socket).args(["send-keys", "-t", "t"]).args(keys));
    }

    pub(crate) fn screen(&self) -> String {
        stdout(&run(Command::new("tmux").arg("-S").arg(&self.socket).args(["capture-pane", "-p", "-t", "t"])))
    }

    /// The screen once it shows `text`; a clear failure (with the screen) if it never does.
    pub(crate) fn wait_for(&self, text: &str) -> String {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if s.contains(text) {
                return s;
            }
            assert!(start.elapsed() < Duration::from_secs(30), "neomutt never showed {text:?}; the screen:\n{s}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-S").arg(&self.socket).arg("kill-server").output();
    }
}

/// neomutt with the shipped snippet, a sendmail that writes to `sent.eml`, and an editor that
/// writes the body; the CLI it runs reaches the test's agent.
fn neomutt(tok: &Tok, agent: &Agent, mbox: &Path) -> Tmux {
    let snippet = Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/neomutt/ssmax-card.neomuttrc");
    let sink = tok.write("sink.sh", format!("#!/bin/sh\ncat > {}\n", tok.path("sent.eml").display()));
    let editor = tok.write(
        "editor.sh",
        "#!/bin/sh\nprintf 'Hello Bob,\\n\\nthe figures are attached, signed on the card.\\n' >> \"$1\"\n",
    );
    for f in [&sink, &editor] {
        ok(Command::new("chmod").arg("700").arg(f));
    }
    let keys = tok.path("smime");
    std::fs::create_dir_all(&keys).unwrap();
    std::fs::write(keys.join(".index"), "").unwrap();
    let rc = tok.write(
        "neomuttrc",
        format!(
            "source {snippet}\n\
             set smime_default_key = \"alice@example.jp\"\n\
             set smime_sign_command = \"ssmax-card --quiet sign --signature-only --from alice@example.jp --in %f\"\n\
             set smime_keys = \"{keys}\"\nset smime_certificates = \"{keys}\"\n\
             set from = \"Alice Example <alice@example.jp>\"\nset use_from = yes\n\
             set sendmail = \"{sink}\"\nset editor = \"{editor}\"\n\
             set sort = mailbox-order\nset crypt_autosign = yes\nset record = \"\"\nset postpone = no\nset abort_unmodified = no\n\
             set folder = \"{dir}\"\nset spoolfile = \"{mbox}\"\nset mbox_type = mbox\nset header_cache = \"\"\nset help = no\nset wait_key = no\n",
            snippet = snippet.display(),
            dir = tok.dir.path().display(),
            mbox = mbox.display(),
            keys = keys.display(),
            sink = sink.display(),
            editor = editor.display()
        ),
    );
    let bin_dir = Path::new(BIN).parent().unwrap();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let home = tok.path("home");
    std::fs::create_dir_all(&home).unwrap();
    Tmux::start(
        tok,
        &format!(
            "env -i PATH='{path}' HOME='{}' TERM=tmux-256color SSMAX_CARD_SOCKET='{}' TMPDIR='{}' neomutt -n -F '{}' -f '{}'; sleep 600",
            home.display(),
            agent.socket.display(),
            tok.dir.path().display(),
            rc.display(),
            mbox.display()
        ),
    )
}

#[test]
fn neomutt_signs_on_the_card_through_the_agent_and_openssl_verifies_what_it_sends() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let mbox = tok.write("mbox", "");
    let t = neomutt(&tok, &agent, &mbox);
    t.wait_for("NeoMutt");
    t.keys(&["m"]);
    t.wait_for("To:");
    t.keys(&["bob@example.com", "Enter"]);
    t.wait_for("Subject:");
    t.keys(&["quarterly figures", "Enter"]);
    let compose = t.wait_for("Compose");
    assert!(compose.contains("Sign (S/MIME)"), "autosign with S/MIME:\n{compose}");
    t.keys(&["y"]);
    // neomutt's own prompt, which it cannot skip for S/MIME: left empty; the PIN goes to pinentry.
    t.wait_for("Enter S/MIME passphrase:");
    t.keys(&["Enter"]);
    t.wait_for("Mail sent");

    let sent = tok.path("sent.eml");
    let mail = std::fs::read_to_string(&sent).unwrap();
    assert!(mail.contains("Content-Type: multipart/signed") && mail.contains("the figures are attached"), "{mail}");
    let v = run(Command::new("openssl")
        .args(["smime", "-verify", "-in"])
        .arg(&sent)
        .arg("-CAfile")
        .arg(pki().join("root.pem"))
        .args(["-purpose", "smimesign"]));
    assert_eq!(code(&v), 0, "openssl smime -verify: {}", stderr(&v));
    assert!(stdout(&v).contains("signed on the card"));
    assert_eq!(getpins(&agent), 1, "the PIN was asked once, by the agent's pinentry");
    // Our own verifier agrees, including the From address.
    let o = run(tok.cmd().args(["--agent", "never", "verify", "--in"]).arg(&sent));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("From matches: alice@example.jp"));
}

#[test]
fn neomutt_opens_encrypted_mail_on_the_card_and_verifies_signed_mail() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    // Bob's encrypted mail (openssl; AES-256-CBC, as neomutt only knows enveloped-data) and a
    // mail Alice signed with the CLI.
    let secret = tok.write(
        "secret.txt",
        "Content-Type: text/plain; charset=us-ascii\r\n\r\nThe merger closes on Friday, said the card.\r\n",
    );
    let enc = ok(Command::new("openssl")
        .args(["cms", "-encrypt", "-aes256", "-in"])
        .arg(&secret)
        .arg("-recip")
        .arg(pki().join("alice.pem"))
        .args(["-from", "bob@example.com", "-to", "alice@example.jp", "-subject", "confidential"]));
    let plain = tok.write("plain.eml", MAIL);
    let signed = tok.path("signed.eml");
    ok(&mut tok.with_pin(&[
        "--agent",
        "never",
        "sign",
        "--in",
        plain.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]));
    let mut mbox = b"From bob@example.com Wed Nov 25 02:00:00 2026\n".to_vec();
    mbox.extend(enc.stdout.iter().filter(|&&b| b != b'\r'));
    mbox.extend_from_slice(b"\nFrom alice@example.jp Wed Nov 25 02:01:00 2026\n");
    mbox.extend(std::fs::read(&signed).unwrap().iter().filter(|&&b| b != b'\r'));
    mbox.extend_from_slice(b"\n");
    let mbox = tok.write("mbox", mbox);

    let t = neomutt(&tok, &agent, &mbox);
    t.wait_for("confidential");
    t.keys(&["Enter"]);
    t.wait_for("Enter S/MIME passphrase:");
    t.keys(&["Enter"]);
    let screen = t.wait_for("The merger closes on Friday, said the card.");
    assert!(screen.contains("S/MIME encrypted"), "{screen}");
    assert_eq!(getpins(&agent), 1, "decrypted on the card, PIN through the agent's pinentry");

    t.keys(&["j"]);
    // The status line says so before the pager has drawn the message: wait for the message.
    let screen = t.wait_for("Good signature from CN=Alice Example");
    assert!(screen.contains("Verification successful"), "{screen}");
    assert!(screen.contains("the figures are attached"), "{screen}");
}
