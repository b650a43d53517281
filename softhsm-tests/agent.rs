//! The agent on a real socket, with a real SoftHSM2 token and a scripted Assuan pinentry.

use crate::support::agent::*;
use crate::support::*;
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

#[test]
fn agent_signs_with_pin_from_pinentry_on_the_clients_display_every_time_by_default() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let input = tok.write("mail.eml", MAIL);
    let out = tok.path("signed.eml");
    for _ in 0..2 {
        let mut c = tok.cmd();
        c.env("DISPLAY", ":7").env("TERM", "xterm-test");
        let o = run(c
            .args(["--agent", "always", "--socket"])
            .arg(&agent.socket)
            .args(["sign", "--in"])
            .arg(&input)
            .arg("--out")
            .arg(&out));
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        assert!(stderr(&o).contains("signed mail from alice@example.jp"), "{}", stderr(&o));
    }
    let v = openssl_verify(&out, &pki().join("root.pem"));
    assert!(v.status.success(), "{}", stderr(&v));
    let log = std::fs::read_to_string(&agent.pinentry_log).unwrap();
    assert_eq!(getpins(&agent), 2, "asked every time: {log}");
    // The prompt goes where the user is: their display (pinentry's environment) and terminal type.
    assert!(log.contains("ENV DISPLAY=:7") && log.contains("ttytype=xterm-test"), "{log}");
    // It names the token, the operation, the recipients and the key.
    assert!(
        log.contains("ssmax test") && log.contains("sign mail from alice@example.jp to Bob <bob@example.com>"),
        "{log}"
    );
    // The socket and its directory are private.
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(&agent.socket).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(agent.socket.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
}

#[test]
fn agent_with_ttl_cache_asks_once_and_the_audit_log_verifies_and_detects_edits() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "pin_cache = \"ttl\"\npin_cache_seconds = 60\n", "0");
    let input = tok.write("mail.eml", MAIL);
    for _ in 0..3 {
        let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
    }
    assert_eq!(getpins(&agent), 1);
    let o = audit_verified(&tok, &agent, 3);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("3 entries, chain intact"), "{}", stdout(&o));
    let text = std::fs::read_to_string(&agent.audit).unwrap();
    assert!(text.contains("\"op\":\"sign\"") && text.contains("\"client_exe\""), "{text}");
    assert!(!text.contains(PIN) && !text.contains("figures are attached"), "no PIN, no content in the audit log");
    drop(agent);
    std::fs::write(tok.path("audit.log"), text.replacen("\"result\":\"ok\"", "\"result\":\"failed\"", 1)).unwrap();
    let o = run(tok.cmd().args(["audit", "verify", "--log"]).arg(tok.path("audit.log")));
    assert_clear_failure(&o, 1);
    assert!(stderr(&o).contains("edited"), "{}", stderr(&o));
}

#[test]
fn sixteen_clients_times_two_hundred_signatures_all_correct_none_lost() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "pin_cache = \"until-removed\"\nqueue_limit = 64\n", "0");
    let socket = agent.socket.clone();
    let started = Instant::now();
    let handles: Vec<_> = (0..16u64)
        .map(|c| {
            let socket = socket.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&socket).unwrap();
                let mut outs = Vec::new();
                for i in 0..200u64 {
                    let id = c * 1000 + i;
                    let body = format!("From: alice@example.jp\r\nTo: b@example.com\r\nSubject: {id}\r\n\r\nrequest {id} from client {c}\r\n");
                    send_msg(&mut s, &sign_request(id), body.as_bytes());
                    let (h, out) = recv_msg(&mut s).unwrap();
                    assert_eq!(h["id"], id, "response for the request that was asked");
                    assert_eq!(h["ok"], true, "{h}");
                    let text = String::from_utf8(out).unwrap();
                    assert!(text.contains(&format!("request {id} from client {c}")) && text.contains("multipart/signed"));
                    outs.push(text);
                }
                outs
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().expect("client thread"));
    }
    let elapsed = started.elapsed();
    assert_eq!(all.len(), 3200, "none lost");
    assert_eq!(getpins(&agent), 1, "one PIN for the whole run (cache until removed)");
    // openssl checks a sample of the signatures (every 50th; all share the same code path).
    for (n, text) in all.iter().enumerate().step_by(50) {
        let f = tok.write("sample.eml", text);
        let v = openssl_verify(&f, &pki().join("root.pem"));
        assert!(v.status.success(), "signature {n}: {}", stderr(&v));
    }
    eprintln!("3200 signatures through the agent in {elapsed:?}");
    let o = audit_verified(&tok, &agent, 3200);
    assert!(stdout(&o).contains("3200 entries"), "{}", stdout(&o));
}

#[test]
fn full_queue_answers_busy_and_a_vanished_client_does_not_wedge_the_agent() {
    let tok = Tok::new();
    // pinentry takes 2 s: the first request holds the worker, the second fills the queue.
    let agent = start_agent(&tok, "queue_limit = 1\n", "2");
    let body = b"From: alice@example.jp\r\nTo: b@example.com\r\n\r\nx\r\n";
    let mut first = UnixStream::connect(&agent.socket).unwrap();
    send_msg(&mut first, &sign_request(1), body);
    std::thread::sleep(Duration::from_millis(300));
    let mut second = UnixStream::connect(&agent.socket).unwrap();
    send_msg(&mut second, &sign_request(2), body);
    std::thread::sleep(Duration::from_millis(300));
    let mut third = UnixStream::connect(&agent.socket).unwrap();
    send_msg(&mut third, &sign_request(3), body);
    let (h, _) = recv_msg(&mut third).unwrap();
    assert_eq!(h["ok"], false);
    assert_eq!(h["exit"], 9);
    assert!(h["error"].as_str().unwrap().contains("busy"), "{h}");
    // The first client goes away mid-request; the second still gets its answer, and so do later ones.
    drop(first);
    let (h, out) = recv_msg(&mut second).unwrap();
    assert_eq!(h["ok"], true, "{h}");
    assert!(String::from_utf8_lossy(&out).contains("multipart/signed"));
    let o = via(&tok, &agent, &["status"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("token 'ssmax test'"));
}

#[test]
fn killed_agent_gives_a_clear_error_and_a_restarted_agent_serves_again() {
    let tok = Tok::new();
    let mut agent = start_agent(&tok, "", "3");
    let input = tok.write("mail.eml", MAIL);
    let out = tok.path("out/signed.eml");
    std::fs::create_dir_all(tok.path("out")).unwrap();
    let mut c = tok.cmd();
    let client = c
        .args(["--agent", "always", "--socket"])
        .arg(&agent.socket)
        .args(["sign", "--in"])
        .arg(&input)
        .arg("--out")
        .arg(&out)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    let o = client.wait_with_output().unwrap();
    assert_clear_failure(&o, 7);
    assert!(stderr(&o).contains("broke off the request"), "{}", stderr(&o));
    assert_eq!(std::fs::read_dir(tok.path("out")).unwrap().count(), 0, "nothing half-written");
    // A new agent takes over the stale socket.
    let agent2 = start_agent(&tok, "", "0");
    let o = via(&tok, &agent2, &["sign", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Not reachable at all: exit 7 with --agent always; auto falls back to the token directly.
    drop(agent2);
    let o = via(&tok, &agent, &["status"]);
    assert_clear_failure(&o, 7);
}

#[test]
fn socket_activated_agent_refuses_peers_of_another_uid() {
    // SAFETY: geteuid only reads our credentials.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a client as another uid");
        return;
    }
    let tok = Tok::new();
    let (script, _) = pinentry(&tok, &tok.pin_file, "0");
    let config = tok.write("agent.toml", format!("pinentry_program = \"{}\"\n", script.display()));
    // systemd-socket-activate opens the socket (world-connectable here) and passes it as fd 3.
    let dir = tok.path("pub");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(tok.dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let socket = dir.join("agent.sock");
    let mut act = Command::new("systemd-socket-activate");
    act.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SOFTHSM2_CONF", &tok.conf)
        .env("HOME", tok.dir.path())
        .arg("-l")
        .arg(&socket)
        .arg(BIN)
        .args(["agent", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut activator = act.spawn().unwrap();
    wait_for(&socket);
    std::fs::set_permissions(&socket, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    // The other uid may not reach the build directory (a clone under a 0700 temporary
    // directory): it runs a copy of the binary from the world-readable directory.
    let bin = dir.join("ssmax-card");
    std::fs::copy(BIN, &bin).unwrap();
    let mut c = Command::new(&bin);
    use std::os::unix::process::CommandExt;
    c.uid(65534).gid(65534).env_clear().args(["--agent", "always", "--socket"]).arg(&socket).arg("status");
    let o = run(&mut c);
    // Our client will not talk to another user's agent at all.
    assert_clear_failure(&o, 7);
    assert!(stderr(&o).contains("it is held by user 0, not by you"), "{}", stderr(&o));
    // A client that does not look (the protocol by hand) is refused by the agent.
    let mut raw = as_user(65534, RAW_PING).unwrap();
    let o = run(raw.arg(&socket));
    assert!(stdout(&o).contains("refused: this agent serves uid 0 only"), "{}{}", stdout(&o), stderr(&o));
    // Our own uid is served on the activated socket.
    let o = run(tok.cmd().args(["--agent", "always", "--socket"]).arg(&socket).arg("status"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // systemd hands the socket over inheritable: the module worker the status started must not
    // have it (nor the audit log).
    let audit = tok.dir.path().join(".local/share/ssmax-card/audit.log");
    assert_workers_hold_nothing_of_the_agent(activator.id(), &socket, &audit);
    let _ = activator.kill();
    let _ = activator.wait();
}

/// A ping by hand on the socket `sys.argv[1]`: the answer's header, printed.
const RAW_PING: &str = r#"
import json, socket, struct, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
h = json.dumps({"v": 1, "id": 1, "method": "ping", "timeout_ms": 1000}).encode()
s.sendall(struct.pack(">I", len(h)) + h + struct.pack(">I", 0))
n = struct.unpack(">I", s.recv(4, socket.MSG_WAITALL))[0]
print(s.recv(n, socket.MSG_WAITALL).decode())
"#;

#[test]
fn subscribers_are_told_when_a_pin_is_needed() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let mut sub = UnixStream::connect(&agent.socket).unwrap();
    send_msg(&mut sub, &serde_json::json!({"v": 1, "id": 1, "method": "subscribe", "timeout_ms": 1000}), b"");
    let (h, _) = recv_msg(&mut sub).unwrap();
    assert_eq!(h["ok"], true);
    let input = tok.write("mail.eml", MAIL);
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    sub.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (ev, _) = recv_msg(&mut sub).unwrap();
    assert_eq!(ev["event"], "pin-needed");
    assert!(ev["notes"][0].as_str().unwrap().contains("sign mail from alice@example.jp"), "{ev}");
}

#[test]
fn oversized_request_is_refused_without_reading_it() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    s.write_all(&(100u32 * 1024 * 1024).to_be_bytes()).unwrap();
    let (h, _) = recv_msg(&mut s).unwrap();
    assert_eq!(h["ok"], false);
    assert!(h["error"].as_str().unwrap().contains("over the limit"), "{h}");
}

#[test]
fn a_body_and_its_reply_can_travel_as_files_and_anything_but_a_regular_file_is_refused() {
    use std::os::fd::AsRawFd;
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let mail = tok.write("mail.eml", MAIL);
    let body = std::fs::File::open(&mail).unwrap();
    // The reply file already holds more than the reply: the agent writes from offset 0 and says
    // how long the product is.
    let reply_path = tok.write("reply.eml", vec![b'x'; 100_000]);
    let reply = std::fs::OpenOptions::new().read(true).write(true).open(&reply_path).unwrap();
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    let mut req = sign_request(1);
    req["body_in_fd"] = true.into();
    req["reply_in_fd"] = true.into();
    send_msg_with_fds(&mut s, &req, b"", &[body.as_raw_fd(), reply.as_raw_fd()]);
    let (h, inline) = recv_msg(&mut s).unwrap();
    assert_eq!(h["ok"], true, "{h}");
    assert!(inline.is_empty(), "the product is in the file, not the socket");
    let len = h["body_in_fd"].as_u64().unwrap() as usize;
    let signed = tok.write("signed.eml", &std::fs::read(&reply_path).unwrap()[..len]);
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(v.status.success(), "{}", stderr(&v));

    // The same connection goes on, with a plain request after one that carried descriptors.
    send_msg(&mut s, &sign_request(2), MAIL.as_bytes());
    let (h, out) = recv_msg(&mut s).unwrap();
    assert_eq!((h["ok"].as_bool(), h["id"].as_u64()), (Some(true), Some(2)), "{h}");
    assert!(!out.is_empty());

    // A pipe could hold the agent for as long as its writer liked: refused, and the
    // connection still answers.
    let (rd, _wr) = std::io::pipe().unwrap();
    let mut req = sign_request(3);
    req["body_in_fd"] = true.into();
    send_msg_with_fds(&mut s, &req, b"", &[rd.as_raw_fd()]);
    let (h, _) = recv_msg(&mut s).unwrap();
    assert_eq!((h["ok"].as_bool(), h["exit"].as_u64()), (Some(false), Some(2)), "{h}");
    assert!(h["error"].as_str().unwrap().contains("not a regular file"), "{h}");

    // A request that names a descriptor it did not pass.
    let mut req = sign_request(4);
    req["reply_in_fd"] = true.into();
    send_msg(&mut s, &req, MAIL.as_bytes());
    let (h, _) = recv_msg(&mut s).unwrap();
    assert_eq!(h["exit"], 2, "{h}");
    assert!(h["error"].as_str().unwrap().contains("names 1 file descriptor(s) and passed 0"), "{h}");
    // One PIN per signature (the default policy), and none for the refused requests.
    assert_eq!(getpins(&agent), 2);

    // More descriptors than a request can use: the kernel would have to drop some, so the
    // request is refused whole and that connection closed.
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    send_msg_with_fds(&mut s, &sign_request(5), b"", &[body.as_raw_fd(); 19]);
    let (h, _) = recv_msg(&mut s).unwrap();
    assert!(h["error"].as_str().unwrap().contains("more than 18 file descriptors"), "{h}");
    assert!(recv_msg(&mut s).is_err(), "the connection is closed");
    assert_eq!(getpins(&agent), 2);
}

#[test]
fn removed_token_forgets_the_pin_never_prompts_and_works_again_when_back() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "pin_cache = \"until-removed\"\npresence_poll_ms = 200\n", "0");
    let mut sub = subscribe(&agent);
    let input = tok.write("mail.eml", MAIL);
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(getpins(&agent), 1);

    let store = tok.dir.path().join("t/tokens");
    let away = tok.dir.path().join("t/tokens.away");
    std::fs::rename(&store, &away).unwrap();
    let ev = next_event(&mut sub, "token-removed");
    assert!(ev["notes"][0].as_str().unwrap().contains("PIN forgotten"), "{ev}");
    // No token: a clear "not present", at once, and never a PIN prompt.
    for _ in 0..5 {
        let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
        assert_clear_failure(&o, 3);
        assert!(stderr(&o).contains("not present"), "{}", stderr(&o));
    }
    assert_eq!(getpins(&agent), 1, "a missing token never turns into a PIN prompt");

    std::fs::rename(&away, &store).unwrap();
    next_event(&mut sub, "token-inserted");
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(getpins(&agent), 2, "the cached PIN was wiped: a fresh PIN after reinsertion");
}

#[test]
fn a_token_that_flaps_under_a_burst_of_signing_costs_requests_never_the_agent() {
    let tok = Tok::new();
    let mut agent = start_agent(&tok, "pin_cache = \"ttl\"\npresence_poll_ms = 300\n", "0");
    let input = tok.write("mail.eml", MAIL);
    let pid = agent.child.id();
    let store = tok.dir.path().join("t/tokens");
    let away = tok.dir.path().join("t/tokens.away");
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut died = None;
    // Four clients sign in a loop while the token goes away for 1.2 s and comes back, twenty
    // times in a row (the agent's module is re-initialised at each: it used to be unloaded and
    // loaded again, and SoftHSM2's static destructors crashed the agent within a few flaps).
    let answers: Vec<Vec<(i32, PathBuf, String)>> = std::thread::scope(|s| {
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let (tok, agent, input, stop) = (&tok, &agent, &input, &stop);
                s.spawn(move || {
                    let mut got = Vec::new();
                    for n in 0.. {
                        if stop.load(std::sync::atomic::Ordering::SeqCst) {
                            break;
                        }
                        let out = tok.path(&format!("signed-{c}-{n}.eml"));
                        let o =
                            via(tok, agent, &["sign", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()]);
                        got.push((code(&o), out, stderr(&o).lines().next().unwrap_or_default().to_string()));
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    got
                })
            })
            .collect();
        for flap in 0..20 {
            std::fs::rename(&store, &away).unwrap();
            std::thread::sleep(Duration::from_millis(1200));
            std::fs::rename(&away, &store).unwrap();
            std::thread::sleep(Duration::from_millis(1000));
            // Running or sleeping, not a zombie: /proc/PID/stat's third field.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit(')').next().and_then(|r| r.split_whitespace().next());
            if !matches!(state, Some("R" | "S" | "D")) {
                died = Some(flap);
                break;
            }
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        clients.into_iter().map(|c| c.join().unwrap()).collect()
    });
    if let Some(flap) = died {
        panic!("the agent died at flap {flap}: {:?}", agent.child.try_wait());
    }
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent lives");
    assert_eq!(agent.child.id(), pid);
    let all: Vec<&(i32, PathBuf, String)> = answers.iter().flatten().collect();
    let odd: Vec<_> = all.iter().filter(|(c, _, _)| *c != 0 && *c != 3).map(|(c, _, e)| (c, e)).collect();
    assert!(odd.is_empty(), "every answer is signed (0) or not present (3): {odd:?}");
    let signed: Vec<&PathBuf> = all.iter().filter(|(c, _, _)| *c == 0).map(|(_, p, _)| p).collect();
    assert!(signed.len() > 20, "signing went on between the flaps: {} of {}", signed.len(), all.len());
    eprintln!("{} requests over 20 flaps: {} signed, the rest not present", all.len(), signed.len());
    std::thread::scope(|s| {
        for part in signed.chunks(signed.len().div_ceil(4)) {
            s.spawn(move || {
                for p in part {
                    let v = openssl_verify(p, &pki().join("root.pem"));
                    assert!(v.status.success(), "{} does not verify: {}", p.display(), stderr(&v));
                }
            });
        }
    });
    // And it signs again once the token stays.
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn a_token_recreated_with_a_new_serial_is_rediscovered() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "pin_cache = \"until-removed\"\npresence_poll_ms = 200\n", "0");
    let mut sub = subscribe(&agent);
    let input = tok.write("mail.eml", MAIL);
    assert_eq!(code(&via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()])), 0);
    // The same label, initialised again: SoftHSM2 gives it a new serial.
    std::fs::remove_dir_all(tok.dir.path().join("t")).unwrap();
    ok(Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/softhsm-tests/provision.sh"))
        .arg("token")
        .arg(pki())
        .arg(tok.dir.path().join("t"))
        .arg(LABEL)
        .arg(&tok.pin_file));
    next_event(&mut sub, "token-inserted");
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(getpins(&agent), 2);
}

#[test]
fn subscribers_hear_about_certificates_that_expire_soon() {
    let tok = Tok::new();
    tok.keygen_with_cert("07", "short-lived", "EC:prime256v1", &[]); // valid for 30 days
    let agent = start_agent(&tok, "", "0");
    let mut sub = subscribe(&agent);
    let o = via(&tok, &agent, &["status"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let input = tok.write("mail.eml", MAIL);
    assert_eq!(code(&via(&tok, &agent, &["sign", "--key", "pkcs11:id=%01", "--in", input.to_str().unwrap()])), 0);
    let ev = next_event(&mut sub, "cert-expiring");
    assert!(
        ev["notes"][0].as_str().unwrap().contains("'short-lived'")
            && ev["notes"][0].as_str().unwrap().contains("renew"),
        "{ev}"
    );
}

#[test]
fn a_profile_can_keep_the_pin_and_the_config_overrides_it() {
    let tok = Tok::new();
    // A profiles directory whose softhsm2 profile keeps the PIN until the token is removed...
    let soft = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pkcs11-profiles/softhsm2.toml")).unwrap();
    std::fs::create_dir_all(tok.path("profiles")).unwrap();
    tok.write("profiles/softhsm2.toml", soft.replace("cache = \"none\"", "cache = \"until-removed\""));
    let top = format!("profiles_dir = \"{}\"\n", tok.path("profiles").display());
    let agent = start_agent_with(&tok, &top, "", "0");
    let input = tok.write("mail.eml", MAIL);
    for _ in 0..3 {
        assert_eq!(code(&via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()])), 0);
    }
    assert_eq!(getpins(&agent), 1, "the profile's policy keeps it");
    drop(agent);
    // ...unless the config says otherwise.
    let agent = start_agent_with(&tok, &top, "pin_cache = \"none\"\n", "0");
    for _ in 0..2 {
        assert_eq!(code(&via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()])), 0);
    }
    assert_eq!(getpins(&agent), 1 + 2, "the config asks every time");
}

#[test]
fn a_client_that_closes_without_reading_the_answer_ends_only_its_own_connection() {
    let tok = Tok::new();
    let mut agent = start_agent(&tok, "", "0");
    // An answer larger than the socket buffer, so the agent is still writing when it finds the
    // peer gone: the content of a signed 1 MiB mail, verified inline.
    let big = format!("{MAIL}{}", "0123456789abcdef\n".repeat(64 * 1024));
    let input = tok.write("big.eml", &big);
    let signed = tok.path("big-signed.eml");
    ok(&mut tok.with_pin(&[
        "--agent",
        "never",
        "sign",
        "--in",
        input.to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]));
    let signed = std::fs::read(&signed).unwrap();
    let ping = serde_json::json!({"v": 1, "id": 1, "method": "ping", "args": {}, "timeout_ms": 10000, "client": {}});
    let verify =
        serde_json::json!({"v": 1, "id": 2, "method": "verify", "args": {}, "timeout_ms": 10000, "client": {}});
    for (req, body) in [(&ping, &b""[..]), (&verify, &signed[..])] {
        for _ in 0..10 {
            let mut s = UnixStream::connect(&agent.socket).unwrap();
            send_msg(&mut s, req, body);
            drop(s);
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent died: {:?}", agent.child.try_wait());
    let o = via(&tok, &agent, &["verify", "--in", tok.path("big-signed.eml").to_str().unwrap()]);
    assert_eq!(code(&o), 0, "the agent still serves others: {}", stderr(&o));
}

#[test]
fn the_agent_refuses_pin_fd_instead_of_failing_every_signature_later() {
    let tok = Tok::new();
    let socket = tok.path("run/agent.sock");
    let o = run(&mut tok.with_pin(&["agent", "--socket", socket.to_str().unwrap()]));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("takes no --pin-fd"), "{}", stderr(&o));
    assert!(!socket.exists(), "nothing listens");
}

/// A number from the agent's /proc status (`VmHWM:` in KiB, `Threads:`).
fn agent_status(agent: &Agent, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", agent.child.id())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// The agent's peak resident memory so far, in KiB.
fn agent_peak_kib(agent: &Agent) -> u64 {
    agent_status(agent, "VmHWM:")
}

#[test]
fn the_agent_reads_only_files_its_client_opened_never_a_path_it_names() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let signed = tok.path("signed.eml");
    ok(&mut tok.with_pin(&[
        "--agent",
        "never",
        "sign",
        "--in",
        tok.write("mail.eml", MAIL).to_str().unwrap(),
        "--out",
        signed.to_str().unwrap(),
    ]));
    // A path in the arguments, as a client of the old protocol or a hostile one sends it: refused
    // by name, and nothing is opened (the agent would have read /dev/zero until memory ran out).
    let before = agent_peak_kib(&agent);
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    let req = serde_json::json!({"v": 1, "id": 3, "method": "verify", "args": {"ca": ["/dev/zero"], "no_token": true}, "timeout_ms": 10000, "client": {}});
    send_msg(&mut s, &req, &std::fs::read(&signed).unwrap());
    let (resp, _) = recv_msg(&mut s).unwrap();
    assert_eq!((resp["ok"].as_bool(), resp["exit"].as_u64()), (Some(false), Some(2)), "{resp}");
    assert!(resp["error"].as_str().unwrap().contains("unknown field `ca`"), "{resp}");
    assert!(
        agent_peak_kib(&agent) < before + 8 * 1024,
        "the agent grew from {before} to {} KiB",
        agent_peak_kib(&agent)
    );

    // The client opens what the user names, with the user's rights, and passes descriptors.
    let o = via(&tok, &agent, &["verify", "--no-token", "--ca", "/dev/zero", "--in", signed.to_str().unwrap()]);
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("/dev/zero is a character device"), "{}", stderr(&o));
    let root = pki().join("root.pem");
    let o =
        via(&tok, &agent, &["verify", "--no-token", "--ca", root.to_str().unwrap(), "--in", signed.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stdout(&o).contains("Good signature from"), "{}", stdout(&o));
    let o = via(&tok, &agent, &["verify", "--no-token", "--in", signed.to_str().unwrap()]);
    assert_clear_failure(&o, 1);
    // A detached signature's content travels the same way.
    let (sig, carlos) = (vector("binary-files/signedByCarlosDetached.p7m"), vector("certs-and-keys/lamps-carlos.crt"));
    for (text, want) in [("This is some sample content.", 0), ("This is some sample content!", 1)] {
        let content = tok.write("content.txt", text);
        let o = via(
            &tok,
            &agent,
            &[
                "verify",
                "--no-token",
                "--in",
                sig.to_str().unwrap(),
                "--content",
                content.to_str().unwrap(),
                "--ca",
                carlos.to_str().unwrap(),
            ],
        );
        match want {
            0 => assert_eq!(code(&o), 0, "{text}: {}", stderr(&o)),
            _ => assert_clear_failure(&o, want),
        }
    }
}

/// The agent's thread count.
fn agent_threads(agent: &Agent) -> u64 {
    agent_status(agent, "Threads:")
}

fn ping(s: &mut UnixStream, id: u64) -> serde_json::Value {
    send_msg(s, &serde_json::json!({"v": 1, "id": id, "method": "ping", "timeout_ms": 1000, "client": {}}), b"");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    recv_msg(s).unwrap().0
}

#[test]
fn ten_thousand_idle_connections_cost_no_thread_each_and_keep_no_signer_out() {
    allow_descriptors(14_000);
    let tok = Tok::new();
    let agent = start_agent(&tok, "pin_cache = \"ttl\"\n", "0");
    let input = tok.write("mail.eml", MAIL);
    let signed = tok.path("signed.eml");
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap(), "--out", signed.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (threads, rss) = (agent_threads(&agent), agent_status(&agent, "VmRSS:"));
    // Connected the way the CLI connects: a kernel may answer a momentarily full queue of new
    // connections with EAGAIN even to a blocking connect.
    let mut held: Vec<UnixStream> = (0..10_000)
        .map(|_| ssmax_card::platform::connect_unix(&agent.socket, Duration::from_secs(30)).unwrap())
        .collect();
    // Every one of them is taken in and held, and answered when it asks.
    for i in [0, 5_000, 9_999] {
        assert_eq!(ping(&mut held[i], i as u64)["ok"], true, "connection {i}");
    }
    for round in 0..3 {
        let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap(), "--out", signed.to_str().unwrap()]);
        assert_eq!(code(&o), 0, "round {round} beside 10,000 idle connections: {}", stderr(&o));
        let mut fresh = UnixStream::connect(&agent.socket).unwrap();
        assert_eq!(ping(&mut fresh, round)["ok"], true);
    }
    let verified = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(verified.status.success(), "{}", stderr(&verified));
    let (threads_now, rss_now) = (agent_threads(&agent), agent_status(&agent, "VmRSS:"));
    assert!(threads_now <= threads + 2, "{threads} threads before, {threads_now} with 10,000 connections");
    assert!(rss_now <= rss + 64 * 1024, "{rss} KiB resident before, {rss_now} KiB with 10,000 connections");
    eprintln!("10,000 idle connections: threads {threads} -> {threads_now}, RSS {rss} -> {rss_now} KiB");
}

#[test]
fn at_the_connection_cap_the_connection_idle_longest_makes_room_and_is_told_why() {
    allow_descriptors(4096);
    let tok = Tok::new();
    let agent = start_agent(&tok, "max_connections = 16\n", "0");
    // First of all a subscriber, which is idle like the rest (it asks nothing), and a client that
    // has sent half a request, which goes only after every idle one.
    let mut sub = UnixStream::connect(&agent.socket).unwrap();
    send_msg(&mut sub, &serde_json::json!({"v": 1, "id": 1, "method": "subscribe", "timeout_ms": 1000}), b"");
    sub.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    assert_eq!(recv_msg(&mut sub).unwrap().0["ok"], true);
    let mut half = UnixStream::connect(&agent.socket).unwrap();
    half.write_all(&64u32.to_be_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut held: Vec<UnixStream> = (0..38)
        .map(|_| {
            let s = ssmax_card::platform::connect_unix(&agent.socket, Duration::from_secs(30)).unwrap();
            // Taken in one after the other, so "idle longest" is the order they came.
            std::thread::sleep(Duration::from_millis(20));
            s
        })
        .collect();
    // The subscriber and the first 23 idle ones made room for the last 15; each is told why,
    // and that it may come back.
    let told: Vec<&mut UnixStream> = std::iter::once(&mut sub).chain(held.iter_mut().take(23)).collect();
    for (i, s) in told.into_iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (resp, _) = recv_msg(s).unwrap();
        assert_eq!(resp["exit"], 9, "connection {i}: {resp}");
        let error = resp["error"].as_str().unwrap();
        assert!(error.contains("closing an idle connection: the agent holds its limit of 16 connections"), "{error}");
        assert!(resp["retry_after_ms"].as_u64().is_some(), "{resp}");
        assert!(recv_msg(s).is_err(), "and closed");
    }
    for (i, s) in held.iter_mut().enumerate().skip(23) {
        assert_eq!(ping(s, i as u64)["ok"], true, "connection {i} was kept");
    }
    half.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(recv_msg(&mut half).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock), "kept");
    // A client mid-request is not idle: it keeps its place while the CLI makes room for itself.
    let mut asking = held.pop().unwrap();
    asking.write_all(&64u32.to_be_bytes()).unwrap();
    let o = via(&tok, &agent, &["status"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    asking.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    assert!(recv_msg(&mut asking).is_err_and(|e| e.kind() == std::io::ErrorKind::WouldBlock));
}

#[test]
fn a_client_that_reads_its_answer_slowly_holds_a_request_thread_no_longer_than_the_idle_time() {
    use std::io::Read;
    let tok = Tok::new();
    let agent = start_agent(&tok, "pin_cache = \"ttl\"\nmax_requests = 1\nidle_timeout_ms = 1500\n", "0");
    let input = tok.write("mail.eml", MAIL);
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // A 4 MiB mail to sign, its answer taken 4 KiB at a time every 100 ms: 100 s for all of it,
    // every single write of the agent's making progress.
    let big =
        [MAIL.as_bytes(), "A line of a long mail body, to be signed and read slowly.\r\n".repeat(70_000).as_bytes()]
            .concat();
    let mut slow = UnixStream::connect(&agent.socket).unwrap();
    send_msg(
        &mut slow,
        &serde_json::json!({"v": 1, "id": 1, "method": "sign", "key": "pkcs11:id=%01", "timeout_ms": 60000, "client": {}}),
        &big,
    );
    let reader = std::thread::spawn(move || {
        let (mut got, mut buf) = (0usize, [0u8; 4096]);
        loop {
            match slow.read(&mut buf) {
                Ok(0) | Err(_) => return got,
                Ok(n) => got += n,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    std::thread::sleep(Duration::from_millis(300));
    // The only request thread is writing to it; the next client gets it once the idle time is up.
    let o = via(&tok, &agent, &["sign", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let got = reader.join().unwrap();
    assert!(got < big.len(), "the slow reader was cut off after {got} bytes, not served the whole answer");
}

#[test]
fn a_connection_that_never_completes_a_request_is_closed_after_the_idle_time() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "idle_timeout_ms = 600\n", "0");
    // Silent, and dripping: a byte of a header every 100 ms never adds up to more time.
    let mut silent = UnixStream::connect(&agent.socket).unwrap();
    let mut drip = UnixStream::connect(&agent.socket).unwrap();
    let start = Instant::now();
    let header = br#"{"v":1,"id":1,"method":"ping","timeout_ms":1000,"client":{}}"#;
    drip.write_all(&(header.len() as u32).to_be_bytes()).unwrap();
    for b in header.iter().take(20) {
        if drip.write_all(&[*b]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    for s in [&mut silent, &mut drip] {
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let (resp, _) = recv_msg(s).unwrap();
        assert!(
            resp["error"].as_str().unwrap().contains("closing an idle connection: no full request within 0.6 s"),
            "{resp}"
        );
        assert!(recv_msg(s).is_err(), "and closed");
    }
    assert!(start.elapsed() < Duration::from_secs(5), "{:?}", start.elapsed());
    // A client that asks in time, and again after each answer, keeps its connection.
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    for id in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        send_msg(
            &mut s,
            &serde_json::json!({"v": 1, "id": id, "method": "ping", "timeout_ms": 1000, "client": {}}),
            b"",
        );
        assert_eq!(recv_msg(&mut s).unwrap().0["ok"], true);
    }
}

/// A socket somebody listens on but takes nobody in from: its queue of new connections is full.
fn wedged_listener(socket: &std::path::Path) -> (std::os::unix::net::UnixListener, UnixStream) {
    use std::os::fd::AsRawFd;
    // The private directory an agent of ours makes.
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(socket.parent().unwrap())
        .unwrap();
    let l = std::os::unix::net::UnixListener::bind(socket).unwrap();
    // SAFETY: listen on a socket we own only changes the length of its queue.
    assert_eq!(unsafe { libc::listen(l.as_raw_fd(), 0) }, 0);
    let first = UnixStream::connect(socket).unwrap();
    (l, first)
}

#[test]
fn a_listener_that_takes_nobody_in_costs_the_cli_ten_seconds_and_a_clear_7_not_a_hang() {
    let tok = Tok::new();
    let socket = tok.path("run/agent.sock");
    let _wedged = wedged_listener(&socket);
    let mut c = tok.cmd();
    c.args(["--agent", "always", "--socket"]).arg(&socket).arg("status");
    let mut child = c.stderr(Stdio::piped()).spawn().unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() && start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    assert_clear_failure(&o, 7);
    assert!(stderr(&o).contains("it has taken no new connection for 10 s"), "{}", stderr(&o));
}

#[test]
fn an_agent_does_not_take_the_socket_of_a_busy_one_whose_queue_is_full() {
    let tok = Tok::new();
    let socket = tok.path("run/agent.sock");
    let _wedged = wedged_listener(&socket);
    let mut c = tok.cmd();
    let o = run(c.args(["agent", "--socket"]).arg(&socket));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains("an agent is already listening on"), "{}", stderr(&o));
    assert!(socket.exists(), "the busy agent's socket is left where it is");
}
