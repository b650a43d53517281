//! Failures real cards produce and SoftHSM2 never does, injected by softhsm-tests/shim: a card
//! pulled mid-operation, a session closed or a login lost to another process, a token that
//! vanishes, a slow module.

use crate::support::agent::*;
use crate::support::*;
use std::os::unix::net::UnixStream;
use std::time::Duration;

const CKR_DEVICE_REMOVED: &str = "32";
const CKR_SESSION_HANDLE_INVALID: &str = "b3";
const CKR_USER_NOT_LOGGED_IN: &str = "101";
const CKR_TOKEN_NOT_PRESENT: &str = "e0";

fn shim_uri() -> String {
    format!("pkcs11:token={}?module-path={}", LABEL.replace(' ', "%20"), shim().display())
}

/// Sign through the shim with one fault armed; returns the output and the C_Login count.
fn sign_with_fault(tok: &Tok, fault: &str, out: &std::path::Path) -> (std::process::Output, usize) {
    let f = tok.write("fault", fault);
    let log = tok.path("shim.log");
    let _ = std::fs::remove_file(&log);
    let input = tok.write("mail.eml", MAIL);
    let o = run(tok
        .with_pin(&[
            "sign",
            "--token",
            &shim_uri(),
            "--key",
            "pkcs11:id=%01",
            "--in",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
        .env("SSMAX_SHIM_FAULT", &f)
        .env("SSMAX_SHIM_LOG", &log));
    let logins =
        std::fs::read_to_string(&log).map(|s| s.lines().filter(|l| l.starts_with("login")).count()).unwrap_or(0);
    (o, logins)
}

#[test]
fn card_pulled_mid_signature_exits_3_writes_nothing_and_never_retries() {
    let tok = Tok::new();
    let out = tok.path("signed.eml");
    let (o, logins) = sign_with_fault(&tok, &format!("C_Sign ckr {CKR_DEVICE_REMOVED}\n"), &out);
    assert_clear_failure(&o, 3);
    assert!(stderr(&o).contains("CKR_DEVICE_REMOVED") && stderr(&o).contains("insert it"), "{}", stderr(&o));
    assert!(!out.exists(), "nothing half-written");
    assert_eq!(logins, 1, "one login, no retry");
}

#[test]
fn card_pulled_mid_decryption_exits_3() {
    let tok = Tok::new();
    let input = tok.write("secret.txt", "Content-Type: text/plain\r\n\r\nx\r\n");
    let enc = tok.path("enc.eml");
    ok(std::process::Command::new("openssl")
        .args(["cms", "-encrypt", "-aes256", "-in"])
        .arg(&input)
        .arg("-recip")
        .arg(pki().join("alice.pem"))
        .arg("-out")
        .arg(&enc));
    let f = tok.write("fault", format!("C_Decrypt ckr {CKR_DEVICE_REMOVED}\n"));
    let o = run(tok
        .with_pin(&["decrypt", "--token", &shim_uri(), "--in", enc.to_str().unwrap()])
        .env("SSMAX_SHIM_FAULT", &f));
    assert_clear_failure(&o, 3);
    assert!(stdout(&o).is_empty());
}

#[test]
fn a_session_closed_or_a_login_lost_to_another_process_is_a_clear_error() {
    let tok = Tok::new();
    let out = tok.path("signed.eml");
    let (o, _) = sign_with_fault(&tok, &format!("C_Sign ckr {CKR_SESSION_HANDLE_INVALID}\n"), &out);
    assert_clear_failure(&o, 3);
    assert!(
        stderr(&o).contains("CKR_SESSION_HANDLE_INVALID") && stderr(&o).contains("session was closed"),
        "{}",
        stderr(&o)
    );
    let (o, logins) = sign_with_fault(&tok, &format!("C_Sign ckr {CKR_USER_NOT_LOGGED_IN}\n"), &out);
    assert_clear_failure(&o, 8);
    assert!(stderr(&o).contains("another program logged out"), "{}", stderr(&o));
    assert_eq!(logins, 1, "the PIN is not tried again behind the user's back");
    assert!(!out.exists());
}

#[test]
fn a_token_that_reports_itself_absent_is_not_present_and_no_pin_is_read() {
    let tok = Tok::new();
    let out = tok.path("signed.eml");
    let (o, logins) = sign_with_fault(&tok, &format!("C_GetTokenInfo ckr {CKR_TOKEN_NOT_PRESENT}\n"), &out);
    assert_clear_failure(&o, 3);
    assert_eq!(logins, 0);
}

#[test]
fn agent_forgets_the_pin_when_the_card_is_pulled_mid_signature_and_keeps_serving() {
    let tok = Tok::new();
    let fault = tok.write("fault", "");
    let top = format!("token = \"{}\"\n", shim_uri());
    let agent = start_agent_env(&tok, &top, "pin_cache = \"until-removed\"\n", "0", &[("SSMAX_SHIM_FAULT", &fault)]);
    let input = tok.write("mail.eml", MAIL);
    let sign = || via(&tok, &agent, &["sign", "--key", "pkcs11:id=%01", "--in", input.to_str().unwrap()]);
    assert_eq!(code(&sign()), 0);
    assert_eq!(getpins(&agent), 1);
    std::fs::write(&fault, format!("C_Sign ckr {CKR_DEVICE_REMOVED}\n")).unwrap();
    let o = sign();
    assert_clear_failure(&o, 3);
    assert_eq!(getpins(&agent), 1, "no PIN asked for a pulled card");
    // The card "comes back": the agent serves again, with a fresh PIN (the cached one was wiped).
    let o = sign();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(getpins(&agent), 2);
    // A slow module: the client's deadline passes with a clear error; the agent is not wedged.
    std::fs::write(&fault, "C_Sign sleep 2\n").unwrap();
    let mut s = UnixStream::connect(&agent.socket).unwrap();
    let body = std::fs::read(&input).unwrap();
    send_msg(
        &mut s,
        &serde_json::json!({"v": 1, "id": 9, "method": "sign", "key": "pkcs11:id=%01", "timeout_ms": 500, "client": {}}),
        &body,
    );
    let (h, _) = recv_msg(&mut s).unwrap();
    assert_eq!(h["ok"], false);
    assert!(h["error"].as_str().unwrap().contains("timed out"), "{h}");
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(code(&sign()), 0, "the next request works");
}

#[test]
fn without_module_workers_the_agent_restarts_in_place_when_a_token_call_hangs_and_the_next_request_works() {
    let tok = Tok::new();
    let fault = tok.write("fault", "");
    let top = format!("token = \"{}\"\n", shim_uri());
    let mut agent = start_agent_env(
        &tok,
        &top,
        "pin_cache = \"until-removed\"\ntoken_timeout_ms = 1500\nmodule_workers = false\n",
        "0",
        &[("SSMAX_SHIM_FAULT", &fault)],
    );
    let (input, out) = (tok.write("mail.eml", MAIL), tok.path("signed.eml"));
    let sign = || sign_into(&tok, &agent, &input, &out);
    assert_eq!(code(&sign()), 0);
    assert_eq!(getpins(&agent), 1);
    let mut sub = subscribe(&agent);

    // C_Sign never comes back (ten minutes is "never" for this test). The client is willing to
    // wait a minute, so it is the agent's watchdog, not the client's deadline, that answers.
    std::fs::write(&fault, "C_Sign sleep 600\n").unwrap();
    let body = std::fs::read(&input).unwrap();
    let started = std::time::Instant::now();
    let mut hung = UnixStream::connect(&agent.socket).unwrap();
    send_msg(
        &mut hung,
        &serde_json::json!({"v": 1, "id": 41, "method": "sign", "key": "pkcs11:id=%01", "timeout_ms": 60000, "client": {}}),
        &body,
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut queued = UnixStream::connect(&agent.socket).unwrap();
    send_msg(
        &mut queued,
        &serde_json::json!({"v": 1, "id": 42, "method": "sign", "key": "pkcs11:id=%01", "timeout_ms": 60000, "client": {}}),
        &body,
    );

    let (h, _) = recv_msg(&mut hung).unwrap();
    assert_eq!((h["ok"].as_bool(), h["exit"].as_u64(), h["id"].as_u64()), (Some(false), Some(8), Some(41)), "{h}");
    let msg = h["error"].as_str().unwrap();
    assert!(msg.contains("did not answer") && msg.contains("'sign'") && msg.contains("try again"), "{msg}");
    assert!(started.elapsed() < Duration::from_secs(10), "the watchdog answered after {:?}", started.elapsed());
    let (h, _) = recv_msg(&mut queued).unwrap();
    assert_eq!(
        (h["exit"].as_u64(), h["id"].as_u64(), h["retry_after_ms"].is_u64()),
        (Some(9), Some(42), true),
        "the request queued behind the hung call is told it may be sent again: {h}"
    );
    assert!(next_event(&mut sub, "agent-restarting")["notes"][0].as_str().unwrap().contains("did not answer"));

    // Same process (re-executed in place, so a supervisor sees no crash), socket still served,
    // module loaded afresh: the next signature works and a real peer accepts it. Sent at once:
    // if it lands while the old image is still on its way out, the CLI is told to send it again.
    let o = sign();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(agent.child.try_wait().unwrap().is_none(), "the agent process is still running");
    let v = openssl_verify(&out, &pki().join("root.pem"));
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    // The cached PIN died with the old image: one more prompt, never a replay.
    assert_eq!(getpins(&agent), 2);
    // The audit log survived the restart intact and says what happened.
    let a = audit_verified(&tok, &agent, 3);
    assert_eq!(code(&a), 0, "{}{}", stdout(&a), stderr(&a));
    let log = std::fs::read_to_string(&agent.audit).unwrap();
    assert!(log.contains("watchdog") && log.contains("did not answer"), "{log}");
}

fn workers_of(agent: &Agent) -> Vec<(u32, String)> {
    module_workers(agent.child.id())
}

/// An agent whose token is reached through the shim (its fault file armed per test), in a
/// module worker, with the PIN cached until removal.
fn agent_with_shim_worker(tok: &Tok, extra: &str) -> (Agent, std::path::PathBuf) {
    let fault = tok.write("fault", "");
    let top = format!("token = \"{}\"\n", shim_uri());
    let config = format!("pin_cache = \"until-removed\"\n{extra}");
    (start_agent_env(tok, &top, &config, "0", &[("SSMAX_SHIM_FAULT", &fault)]), fault)
}

/// `sign` through `agent` with key 01, `input` to `out`.
fn sign_into(tok: &Tok, agent: &Agent, input: &std::path::Path, out: &std::path::Path) -> std::process::Output {
    via(
        tok,
        agent,
        &["sign", "--key", "pkcs11:id=%01", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()],
    )
}

/// Exit 8, naming the module and what became of its worker.
fn assert_module_failure(o: &std::process::Output, what: &[&str]) {
    let err = stderr(o);
    assert_eq!(code(o), 8, "{err}");
    assert!(err.contains(&shim().display().to_string()), "names the module: {err}");
    for w in what {
        assert!(err.contains(w), "says {w:?}: {err}");
    }
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
}

#[test]
fn a_module_that_segfaults_in_c_sign_costs_the_request_never_the_agent_nor_the_pin_of_another_module() {
    let tok = Tok::new();
    let (agent, fault) = agent_with_shim_worker(&tok, "");
    let pid = agent.child.id();
    let input = tok.write("mail.eml", MAIL);
    let out = tok.path("signed.eml");
    // The same token through SoftHSM2 itself: another module path, so another worker.
    let plain = format!("pkcs11:token={}?module-path=/usr/lib/softhsm/libsofthsm2.so", LABEL.replace(' ', "%20"));
    let sign_on = |token: &str| {
        let args = ["--token", token, "sign", "--key", "pkcs11:id=%01", "--in", input.to_str().unwrap()];
        via(&tok, &agent, &[&args[..], &["--out", out.to_str().unwrap()]].concat())
    };
    assert_eq!(code(&sign_on(&plain)), 0);
    assert_eq!(code(&sign_on(&shim_uri())), 0);
    assert_eq!(getpins(&agent), 2, "one PIN for each module's login");
    let before = workers_of(&agent);
    assert_eq!(before.len(), 2, "a worker per module: {before:?}");
    assert_workers_hold_nothing_of_the_agent(agent.child.id(), &agent.socket, &agent.audit);

    for round in 0..3 {
        std::fs::write(&fault, "C_Sign segv 0 worker\n").unwrap();
        let _ = std::fs::remove_file(&out);
        let o = sign_on(&shim_uri());
        assert_module_failure(&o, &["SIGSEGV", "C_Sign"]);
        assert!(!out.exists(), "round {round}: nothing written");
        assert!(agent_alive(&agent, pid), "round {round}: the agent lives on");
        // The token on the other module kept its login: no new PIN.
        let pins = getpins(&agent);
        let o = sign_on(&plain);
        assert_eq!(code(&o), 0, "round {round}: {}", stderr(&o));
        assert_eq!(getpins(&agent), pins, "round {round}: the other module's PIN cache lives on");
        let v = openssl_verify(&out, &pki().join("root.pem"));
        assert_eq!(code(&v), 0, "{}", stderr(&v));
        // The crashed module is started again; its login died with the worker: one new PIN.
        let o = sign_on(&shim_uri());
        assert_eq!(code(&o), 0, "round {round}: {}", stderr(&o));
        assert_eq!(getpins(&agent), pins + 1, "round {round}: the crashed module's token asks again");
        let v = openssl_verify(&out, &pki().join("root.pem"));
        assert_eq!(code(&v), 0, "{}", stderr(&v));
    }
    let after = workers_of(&agent);
    assert_eq!(after.len(), 2, "still a worker per module, the dead ones collected: {after:?}");
    let shim_worker = |w: &[(u32, String)]| w.iter().find(|(_, m)| m.contains("retry-shim")).map(|(p, _)| *p);
    assert_ne!(shim_worker(&before), shim_worker(&after), "the shim's worker is a new process");
    let log = audit_saying(&agent, "SIGSEGV during C_Sign", 3);
    assert_eq!(log.matches("SIGSEGV during C_Sign").count(), 3, "the audit log says each time: {log}");
}

#[test]
fn a_module_that_aborts_in_c_find_objects_fails_each_request_and_the_next_worker_serves() {
    let tok = Tok::new();
    let (agent, fault) = agent_with_shim_worker(&tok, "");
    let pid = agent.child.id();
    let (input, out) = (tok.write("mail.eml", MAIL), tok.path("signed.eml"));
    let sign = || sign_into(&tok, &agent, &input, &out);
    // Each round finds the token afresh (the one before lost its worker), so C_FindObjects runs.
    for round in 0..3 {
        std::fs::write(&fault, "C_FindObjects abort 0 worker\n").unwrap();
        let o = sign();
        assert_module_failure(&o, &["SIGABRT", "C_FindObjects"]);
        assert!(agent_alive(&agent, pid), "round {round}: the agent lives on");
        assert_eq!(std::fs::read_to_string(&fault).unwrap(), "", "round {round}: the fault fired in the worker");
    }
    let o = sign();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = openssl_verify(&out, &pki().join("root.pem"));
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert_eq!(workers_of(&agent).len(), 1);
}

#[test]
fn a_module_that_crashes_in_c_initialize_fails_the_request_and_is_started_again_for_the_next() {
    let tok = Tok::new();
    let (agent, fault) = agent_with_shim_worker(&tok, "");
    let pid = agent.child.id();
    let (input, out) = (tok.write("mail.eml", MAIL), tok.path("signed.eml"));
    let sign = || sign_into(&tok, &agent, &input, &out);
    for round in 0..3 {
        // Round 0 crashes the first worker the agent starts; each later one the worker started
        // after the crash before it.
        std::fs::write(&fault, "C_Initialize segv 0 worker\n").unwrap();
        let o = sign();
        assert_module_failure(&o, &["SIGSEGV", "C_Initialize"]);
        assert!(agent_alive(&agent, pid), "round {round}: the agent lives on");
    }
    let o = sign();
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v = openssl_verify(&out, &pki().join("root.pem"));
    assert_eq!(code(&v), 0, "{}", stderr(&v));
    assert_eq!(getpins(&agent), 1, "no PIN was asked of a module that never started");
}

#[test]
fn a_token_call_that_hangs_stops_its_modules_worker_and_the_agent_serves_on_without_a_restart() {
    let tok = Tok::new();
    let (agent, fault) = agent_with_shim_worker(&tok, "token_timeout_ms = 1500\n");
    let pid = agent.child.id();
    let (input, out) = (tok.write("mail.eml", MAIL), tok.path("signed.eml"));
    let sign = || sign_into(&tok, &agent, &input, &out);
    assert_eq!(code(&sign()), 0);
    let body = std::fs::read(&input).unwrap();
    for round in 0..3 {
        let pins = getpins(&agent);
        // C_Sign never comes back (ten minutes is "never" here); the client would wait a minute.
        std::fs::write(&fault, "C_Sign sleep 600 worker\n").unwrap();
        let started = std::time::Instant::now();
        let mut hung = UnixStream::connect(&agent.socket).unwrap();
        send_msg(
            &mut hung,
            &serde_json::json!({"v": 1, "id": 41, "method": "sign", "key": "pkcs11:id=%01", "timeout_ms": 60000, "client": {}}),
            &body,
        );
        std::thread::sleep(Duration::from_millis(300));
        let mut queued = UnixStream::connect(&agent.socket).unwrap();
        send_msg(
            &mut queued,
            &serde_json::json!({"v": 1, "id": 42, "method": "sign", "key": "pkcs11:id=%01", "timeout_ms": 60000, "client": {}}),
            &body,
        );
        let (h, _) = recv_msg(&mut hung).unwrap();
        assert_eq!((h["ok"].as_bool(), h["exit"].as_u64()), (Some(false), Some(8)), "round {round}: {h}");
        let msg = h["error"].as_str().unwrap();
        assert!(msg.contains("C_Sign did not answer within 1500 ms") && msg.contains("retry-shim"), "{msg}");
        assert!(started.elapsed() < Duration::from_secs(10), "answered after {:?}", started.elapsed());
        // The request queued behind it is served by the worker started in its place.
        let (h, signed) = recv_msg(&mut queued).unwrap();
        assert_eq!((h["ok"].as_bool(), h["id"].as_u64()), (Some(true), Some(42)), "round {round}: {h}");
        std::fs::write(&out, signed).unwrap();
        let v = openssl_verify(&out, &pki().join("root.pem"));
        assert_eq!(code(&v), 0, "{}", stderr(&v));
        assert_eq!(getpins(&agent), pins + 1, "round {round}: the login died with the worker, asked once again");
        assert!(agent_alive(&agent, pid), "round {round}: the same agent, never restarted");
    }
    assert_eq!(workers_of(&agent).len(), 1, "the stopped workers were collected");
    let log = audit_saying(&agent, "did not answer within", 3);
    assert!(!log.contains("watchdog"), "no restart: {log}");
    assert_eq!(log.matches("did not answer within").count(), 3, "{log}");
}

/// The audit log once it says `what` `times` times (it is written in batches after the answers),
/// or as it is after 5 s.
fn audit_saying(agent: &Agent, what: &str, times: usize) -> String {
    let until = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let log = std::fs::read_to_string(&agent.audit).unwrap_or_default();
        if log.matches(what).count() >= times || std::time::Instant::now() > until {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The agent process is the one started, still running (not re-executed: same pid, no exit).
fn agent_alive(agent: &Agent, pid: u32) -> bool {
    agent.child.id() == pid && std::path::Path::new(&format!("/proc/{pid}")).exists() && {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        !stat.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
    }
}
