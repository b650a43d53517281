//! The SMTP submission front door between a real client (swaks) and a real relay (Postfix on
//! loopback with STARTTLS and SASL AUTH, softhsm-tests/postfix-relay.sh): what arrives is judged
//! by openssl; what is refused never arrives.

use crate::support::agent::*;
use crate::support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// The organisation's submission server: a private Postfix.
struct PostfixRelay {
    dir: PathBuf,
    port: u16,
    user: String,
}

impl PostfixRelay {
    fn start(tok: &Tok) -> PostfixRelay {
        let dir = tok.path("relay");
        let port = free_port();
        // Relay accounts live in the user's kernel keyring next to other tests': one per test.
        let user = format!("sender{port}");
        let pw = tok.write("relay-password", "correct horse battery staple\n");
        ok(Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/postfix-relay.sh"))
            .arg("start")
            .arg(&dir)
            .arg(port.to_string())
            .arg(&user)
            .arg(&pw));
        PostfixRelay { dir, port, user }
    }

    fn stop(&self) {
        let _ = Command::new("bash")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/postfix-relay.sh"))
            .arg("stop")
            .arg(&self.dir)
            .output();
    }

    /// The messages delivered so far (the mbox split at its "From " lines).
    fn delivered(&self) -> Vec<String> {
        let mbox = std::fs::read_to_string(self.dir.join("mail/inbox")).unwrap_or_default();
        let mut out: Vec<String> = Vec::new();
        for line in mbox.split_inclusive('\n') {
            if line.starts_with("From ") {
                out.push(String::new());
            } else if let Some(m) = out.last_mut() {
                m.push_str(line);
            }
        }
        out
    }

    fn wait_for(&self, n: usize) -> Vec<String> {
        let start = Instant::now();
        loop {
            let d = self.delivered();
            if d.len() >= n || start.elapsed() > Duration::from_secs(30) {
                return d;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for PostfixRelay {
    fn drop(&mut self) {
        self.stop();
    }
}

/// `ssmax-card smtp serve` wired to the relay and the test's agent; the client's user and secret.
/// A door the test started (the SMTP door here, the IMAP door in ssmax.rs), killed when dropped.
pub(crate) struct FrontDoor {
    pub(crate) child: Child,
    pub(crate) port: u16,
    pub(crate) user: String,
    pub(crate) secret: String,
}

impl Drop for FrontDoor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn front_door(tok: &Tok, agent: &Agent, relay: &PostfixRelay) -> FrontDoor {
    front_door_to(tok, &agent.socket, relay)
}

/// The front door, with whatever listens on `agent_socket` as its agent.
fn front_door_to(tok: &Tok, agent_socket: &Path, relay: &PostfixRelay) -> FrontDoor {
    front_door_in(tok, agent_socket, relay, None, None)
}

/// The same in a locale (`LANG`), its standard error (its log) into `log`.
fn front_door_in(
    tok: &Tok,
    agent_socket: &Path,
    relay: &PostfixRelay,
    lang: Option<&str>,
    log: Option<&Path>,
) -> FrontDoor {
    front_door_configured(tok, agent_socket, relay, lang, log, "")
}

/// The same with `extra` in its `[smtp]` table.
fn front_door_configured(
    tok: &Tok,
    agent_socket: &Path,
    relay: &PostfixRelay,
    lang: Option<&str>,
    log: Option<&Path>,
    extra: &str,
) -> FrontDoor {
    let port = free_port();
    let user = format!("client{port}");
    let config = tok.write(
        "smtp.toml",
        format!(
            "[smtp]\nclient_user = \"{user}\"\nrelay = \"127.0.0.1:{}\"\nrelay_user = \"{}\"\n{extra}",
            relay.port, relay.user
        ),
    );
    // The password goes in on descriptor 3, as a provisioning script would hand it over.
    let set = run(Command::new("bash")
        .arg("-c")
        .arg(format!(
            "exec {BIN} --config {} smtp set-relay-password --password-fd 3 3<{}",
            config.display(),
            tok.path("relay-password").display()
        ))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", tok.dir.path()));
    assert_eq!(code(&set), 0, "{}", stderr(&set));
    let shown = ok(tok.cmd().arg("--config").arg(&config).args(["smtp", "client-secret"]));
    let secret = stdout(&shown).lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().to_string();
    assert!(stdout(&shown).contains(&format!("user: {user}")));
    let mut cmd = tok.cmd();
    if let Some(l) = lang {
        cmd.env("LANG", l);
    }
    let child = cmd
        .arg("--config")
        .arg(&config)
        .arg("--socket")
        .arg(agent_socket)
        .args(["smtp", "serve", "--listen", &format!("127.0.0.1:{port}"), "--relay-ca"])
        .arg(relay.dir.join("ca.pem"))
        .stderr(match log {
            Some(p) => Stdio::from(std::fs::File::create(p).unwrap()),
            None => Stdio::null(),
        })
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "the front door did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    FrontDoor { child, port, user, secret }
}

/// swaks as the mail client; returns its transcript and whether the message was accepted.
fn swaks(
    door: &FrontDoor,
    auth: Option<(&str, &str)>,
    envelope_from: &str,
    header_from: &str,
    attach: Option<&Path>,
) -> (String, bool) {
    let mut c = Command::new("swaks");
    c.args([
        "--server",
        &format!("127.0.0.1:{}", door.port),
        "--from",
        envelope_from,
        "--to",
        "bob@example.com,carol@example.com",
    ]);
    c.args(["--header", "Subject: quarterly figures", "--header", &format!("From: Alice Example <{header_from}>")]);
    c.args(["--body", "Hello Bob,\n\nthe figures are attached.\n"]);
    if let Some((u, p)) = auth {
        c.args(["--auth", "PLAIN", "--auth-user", u, "--auth-password", p]);
    }
    if let Some(a) = attach {
        c.arg("--attach").arg(format!("@{}", a.display()));
    }
    let o = run(&mut c);
    (format!("{}{}", stdout(&o), stderr(&o)), o.status.success())
}

#[test]
fn front_door_signs_on_the_card_encrypts_attachments_and_postfix_delivers_what_openssl_verifies() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let relay = PostfixRelay::start(&tok);
    let door = front_door(&tok, &agent, &relay);
    let report = tok.write("figures.csv", "quarter,revenue\nQ3,12345\n");
    let (transcript, accepted) =
        swaks(&door, Some((&door.user, &door.secret)), "alice@example.jp", "alice@example.jp", Some(&report));
    assert!(accepted && transcript.contains("250 2.0.0 signed on the card and relayed"), "{transcript}");
    // Two recipients, one message, one PIN.
    assert_eq!(getpins(&agent), 1, "the card was asked once for the mail");
    let delivered = relay.wait_for(2);
    assert_eq!(delivered.len(), 2, "delivered to bob and carol");
    for mail in &delivered {
        let f = tok.write("arrived.eml", mail);
        let v = run(Command::new("openssl")
            .args(["smime", "-verify", "-in"])
            .arg(&f)
            .arg("-CAfile")
            .arg(pki().join("root.pem"))
            .args(["-purpose", "smimesign"]));
        assert_eq!(code(&v), 0, "openssl smime -verify of what arrived: {}\n{mail}", stderr(&v));
        // The attachment travelled encrypted to the organisation, labelled; its text did not.
        assert!(mail.contains("application/pkcs7-mime") && mail.contains("SSMAX-Label: figures.csv"), "{mail}");
        assert!(!mail.contains("Q3,12345") && !mail.contains("UTMsMTIzNDU"), "plaintext attachment leaked:\n{mail}");
        assert!(stdout(&v).contains("the figures are attached"));
        // Our verifier agrees, From included.
        let o = run(tok.cmd().args(["--agent", "never", "verify", "--in"]).arg(&f));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stdout(&o).contains("From matches: alice@example.jp"));
    }
}

#[test]
fn front_door_refuses_strangers_and_foreign_senders_and_never_loses_or_sends_unsigned() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let relay = PostfixRelay::start(&tok);
    let door = front_door(&tok, &agent, &relay);

    // No login: nothing is accepted.
    let (t, accepted) = swaks(&door, None, "alice@example.jp", "alice@example.jp", None);
    assert!(!accepted && t.contains("530 5.7.0 authentication required"), "{t}");
    // Wrong secret.
    let (t, accepted) =
        swaks(&door, Some((&door.user, "not-the-secret")), "alice@example.jp", "alice@example.jp", None);
    assert!(!accepted && t.contains("535 5.7.8"), "{t}");
    // The envelope claims someone the card does not sign for.
    let (t, accepted) = swaks(&door, Some((&door.user, &door.secret)), "mallory@example.jp", "alice@example.jp", None);
    assert!(!accepted && t.contains("553 5.7.1"), "{t}");
    // A From address the certificate does not carry: the card refuses, the client is told.
    let (t, accepted) = swaks(&door, Some((&door.user, &door.secret)), "ceo@example.jp", "ceo@example.jp", None);
    assert!(!accepted && t.contains("554 5.7.1") && t.contains("not in any certificate"), "{t}");
    assert_eq!(getpins(&agent), 0, "no PIN was asked for any refused message");

    // The relay is down: the client hears a temporary failure; the message is not lost (the
    // client still has it) and nothing half-sent appears later.
    relay.stop();
    let (t, accepted) = swaks(&door, Some((&door.user, &door.secret)), "alice@example.jp", "alice@example.jp", None);
    assert!(!accepted && t.contains("451 4.4.0") && t.contains("not sent, try again"), "{t}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(relay.delivered().is_empty(), "nothing was delivered, signed or unsigned");
}

#[test]
fn front_door_refuses_a_message_with_two_from_fields_or_two_mailboxes_before_any_pin() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let relay = PostfixRelay::start(&tok);
    let door = front_door(&tok, &agent, &relay);
    let send = |headers: &[&str]| {
        let mut c = Command::new("swaks");
        c.args(["--server", &format!("127.0.0.1:{}", door.port), "--from", "alice@example.jp"]);
        c.args(["--to", "bob@example.com", "--auth", "PLAIN", "--auth-user", &door.user, "--auth-password"]);
        c.arg(&door.secret).args(["--header", "Subject: payment", "--body", "Today, please.\n"]);
        for h in headers {
            c.args(["--add-header", h]);
        }
        let o = run(&mut c);
        (format!("{}{}", stdout(&o), stderr(&o)), o.status.success())
    };
    let (t, accepted) = send(&["From: CEO <ceo@bank.example>"]);
    assert!(!accepted && t.contains("554 5.6.0 the mail has 2 From fields"), "{t}");
    let two = send(&[]);
    assert!(two.1, "the same message with one From goes through: {}", two.0);
    assert_eq!(relay.wait_for(1).len(), 1);
    assert_eq!(getpins(&agent), 1, "the refused message asked for no PIN");
}

#[test]
fn front_door_answers_garbage_with_errors_and_keeps_serving() {
    use std::io::{BufRead, BufReader, Write};
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let relay = PostfixRelay::start(&tok);
    let door = front_door(&tok, &agent, &relay);
    let s = std::net::TcpStream::connect(("127.0.0.1", door.port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut w = s;
    let mut reply = |send: &[u8]| -> String {
        if !send.is_empty() {
            w.write_all(send).unwrap();
        }
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line
    };
    assert!(reply(b"").starts_with("220 "));
    assert!(reply(b"\xff\xfe\x00binary\r\n").starts_with("500 "), "binary junk is an unknown command");
    let mut long = vec![b'A'; 10_000];
    long.extend_from_slice(b"\r\n");
    assert!(reply(&long).starts_with("500 5.5.2 line too long"));
    assert!(reply(b"DATA\r\n").starts_with("503 "), "DATA before MAIL");
    assert!(reply(b"MAIL FROM:<alice@example.jp>\r\n").starts_with("530 "), "MAIL before AUTH");
    assert!(reply(b"AUTH PLAIN !!!not-base64!!!\r\n").starts_with("535 "));
    assert!(reply(b"AUTH CRAM-MD5\r\n").starts_with("504 "));
    assert!(reply(b"NOOP\r\n").starts_with("250 "), "still serving");
    assert!(reply(b"QUIT\r\n").starts_with("221 "));
    assert_eq!(reply(b""), "", "closed after QUIT");
    assert!(relay.delivered().is_empty());
}

/// The door process's thread count.
fn threads_of(child: &Child) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[test]
fn front_door_holds_idle_clients_without_a_thread_each_and_makes_room_for_the_next() {
    use std::io::{BufRead, BufReader, Write};
    allow_descriptors(4096);
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let relay = PostfixRelay::start(&tok);
    let line = |r: &mut BufReader<std::net::TcpStream>| {
        let mut line = String::new();
        r.read_line(&mut line).unwrap();
        line
    };
    let connect = |port: u16| {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        BufReader::new(s)
    };
    let open = |port: u16| {
        let mut r = connect(port);
        let greeting = line(&mut r);
        assert!(greeting.starts_with("220 "), "{greeting}");
        r
    };
    // At the default limit, a thousand idle clients cost the door no thread each.
    let door = front_door(&tok, &agent, &relay);
    let threads = threads_of(&door.child);
    let many: Vec<_> = (0..1000).map(|_| open(door.port)).collect();
    assert!(threads_of(&door.child) <= threads + 1, "{threads} threads before, {} after", threads_of(&door.child));
    drop(many);
    drop(door);
    let door = front_door_configured(&tok, &agent.socket, &relay, None, None, "max_connections = 16\n");
    let login =
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, format!("\0{}\0{}", door.user, door.secret));
    // A client in the middle of a message, and one logged in: neither is a stranger.
    let mut busy = open(door.port);
    busy.get_mut().write_all(format!("AUTH PLAIN {login}\r\n").as_bytes()).unwrap();
    assert!(line(&mut busy).starts_with("235 "));
    busy.get_mut().write_all(b"MAIL FROM:<alice@example.jp>\r\n").unwrap();
    assert!(line(&mut busy).starts_with("250 "));
    let mut member = open(door.port);
    member.get_mut().write_all(format!("AUTH PLAIN {login}\r\n").as_bytes()).unwrap();
    assert!(line(&mut member).starts_with("235 "));
    // 14 strangers fill the door. One more, while they are all new, is turned away: a mail client
    // between its greeting and its login is not pushed out by a flood of connections.
    let mut strangers: Vec<_> = (0..14).map(|_| open(door.port)).collect();
    let told = line(&mut connect(door.port));
    assert!(told.starts_with("421 4.7.0 too many connections"), "{told}");
    // Once they have had time to log in and have not, the first to come make room for 5 more.
    std::thread::sleep(Duration::from_millis(2200));
    strangers.extend((0..5).map(|_| open(door.port)));
    for (i, r) in strangers.iter_mut().enumerate().take(5) {
        let told = line(r);
        assert!(told.starts_with("421 4.4.2 closing an idle connection to make room"), "{i}: {told}");
        assert_eq!(line(r), "", "{i}: and closed");
    }
    for r in strangers.iter_mut().skip(5) {
        r.get_mut().write_all(b"NOOP\r\n").unwrap();
        assert!(line(r).starts_with("250 "), "a later client is still served");
    }
    busy.get_mut().write_all(b"RSET\r\n").unwrap();
    assert!(line(&mut busy).starts_with("250 "), "the client mid-message kept its place");
    member.get_mut().write_all(b"NOOP\r\n").unwrap();
    assert!(line(&mut member).starts_with("250 "), "the logged-in client kept its place");
    assert!(relay.delivered().is_empty());
}

#[test]
fn front_door_carries_a_large_attachment_whole() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let relay = PostfixRelay::start(&tok);
    let door = front_door(&tok, &agent, &relay);
    // 6 MiB of incompressible data: ~8 MiB of base64 from the client, ~11 MiB signed.
    let mut data = vec![0u8; 6 << 20];
    let mut x = 0x9e3779b97f4a7c15u64;
    for b in data.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let big = tok.write("scan.bin", &data);
    let (t, accepted) =
        swaks(&door, Some((&door.user, &door.secret)), "alice@example.jp", "alice@example.jp", Some(&big));
    assert!(accepted, "{}", t.lines().filter(|l| !l.starts_with(" -> ")).collect::<Vec<_>>().join("\n"));
    let delivered = relay.wait_for(2);
    let f = tok.write("arrived.eml", &delivered[0]);
    let v = run(Command::new("openssl")
        .args(["smime", "-verify", "-in"])
        .arg(&f)
        .arg("-CAfile")
        .arg(pki().join("root.pem"))
        .args(["-purpose", "smimesign", "-out"])
        .arg(tok.path("content.eml")));
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    // The organisation (Bouncy Castle with its key; openssl 3.0 cannot read the binding's
    // authenticated attributes) opens the attachment: the file, byte for byte.
    let content = std::fs::read_to_string(tok.path("content.eml")).unwrap();
    let part = content.split("SSMAX-Label: scan.bin").nth(1).expect("the labelled part");
    let b64: String =
        part.split("\r\n\r\n").nth(1).unwrap().split("\r\n--").next().unwrap().split_whitespace().collect();
    use base64::Engine;
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let cms = tok.write("part.der", der);
    let opened = tok.path("opened.eml");
    let (key, cert) = (pki().join("org.key"), pki().join("org.pem"));
    crate::peers::bc(&[
        "decrypt",
        key.to_str().unwrap(),
        cert.to_str().unwrap(),
        cms.to_str().unwrap(),
        opened.to_str().unwrap(),
    ]);
    let entity = std::fs::read_to_string(&opened).unwrap();
    let body: String = entity.split("\r\n\r\n").nth(1).unwrap().split_whitespace().collect();
    assert!(base64::engine::general_purpose::STANDARD.decode(body).unwrap() == data, "the attachment arrived altered");
}

#[test]
fn front_door_survives_an_agent_that_hangs_up_on_it_and_clients_that_leave() {
    use std::io::Write;
    let tok = Tok::new();
    let relay = PostfixRelay::start(&tok);
    // An "agent" that takes each connection and closes it at once, as one that crashed or is
    // restarting would: the door's request goes to a closed socket. (Its writes there and to
    // mail clients are sent with MSG_NOSIGNAL; ignoring SIGPIPE process-wide is the backstop.)
    let hangs_up = tok.path("run/hangs-up.sock");
    std::fs::create_dir_all(hangs_up.parent().unwrap()).unwrap();
    let listener = std::os::unix::net::UnixListener::bind(&hangs_up).unwrap();
    std::thread::spawn(move || {
        for s in listener.incoming() {
            drop(s);
        }
    });
    let mut door = front_door_to(&tok, &hangs_up, &relay);
    for _ in 0..3 {
        let (transcript, accepted) =
            swaks(&door, Some((&door.user, &door.secret)), "alice@example.jp", "alice@example.jp", None);
        assert!(!accepted && transcript.contains("451"), "a temporary failure, nothing relayed: {transcript}");
        assert!(door.child.try_wait().unwrap().is_none(), "the front door died: {:?}", door.child.try_wait());
    }
    // Mail clients that send and leave without reading a reply end only their own sessions.
    for _ in 0..50 {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", door.port)).unwrap();
        let _ = s.write_all(&b"NOOP\r\n".repeat(200));
        drop(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    assert!(door.child.try_wait().unwrap().is_none(), "the front door died: {:?}", door.child.try_wait());
    assert!(relay.delivered().is_empty());
}

#[test]
fn front_door_in_a_japanese_locale_replies_in_ascii_and_logs_the_japanese_reason() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let relay = PostfixRelay::start(&tok);
    let log = tok.path("front-door.log");
    let door = front_door_in(&tok, &agent.socket, &relay, Some("ja_JP.UTF-8"), Some(&log));
    let (t, accepted) = swaks(&door, Some((&door.user, &door.secret)), "ceo@example.jp", "ceo@example.jp", None);
    let reply = t.lines().find(|l| l.contains("554 5.7.1")).unwrap_or_default();
    assert!(!accepted && reply.contains("no usable key or certificate on the card"), "{t}");
    assert!(reply.is_ascii(), "an SMTP reply is ASCII: {reply}");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("署名を拒否しました: From アドレス ceo@example.jp"), "{logged}");
}
