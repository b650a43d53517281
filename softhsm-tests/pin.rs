use crate::support::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// The token through the retry-counting shim: `tries` left of `max`.
fn shimmed(tok: &Tok, tries: u32, max: u32) -> (String, std::path::PathBuf, std::path::PathBuf) {
    let state = tok.write("shim.state", format!("{tries} {max}\n"));
    let log = tok.path("shim.log");
    (format!("pkcs11:token={}?module-path={}", LABEL.replace(' ', "%20"), shim().display()), state, log)
}

fn sign_via_shim(
    tok: &Tok,
    uri: &str,
    state: &std::path::Path,
    log: &std::path::Path,
    pin_file: &std::path::Path,
    extra: &[&str],
) -> std::process::Output {
    let input = tok.write("mail.eml", MAIL);
    let mut args = vec!["sign", "--token", uri, "--in", input.to_str().unwrap()];
    args.extend_from_slice(extra);
    run(tok.cmd_with_pin(pin_file, &args).env("SSMAX_SHIM_STATE", state).env("SSMAX_SHIM_LOG", log))
}

fn logins(log: &std::path::Path) -> usize {
    std::fs::read_to_string(log).map(|s| s.lines().filter(|l| l.starts_with("login")).count()).unwrap_or(0)
}

#[test]
fn wrong_pin_stops_with_4_and_consumes_exactly_one_try() {
    let tok = Tok::new();
    let (uri, state, log) = shimmed(&tok, 3, 3);
    let wrong = tok.write("wrong-pin", "9999-wrong\n");
    let o = sign_via_shim(&tok, &uri, &state, &log, &wrong, &[]);
    assert_clear_failure(&o, 4);
    assert_eq!(logins(&log), 1, "exactly one C_Login, no retry");
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "2 3\n", "exactly one try consumed");
    assert!(stderr(&o).contains("wrong PIN") && stderr(&o).contains("not retried"), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(!stderr(&o).contains("9999-wrong"), "the PIN is never printed");
}

#[test]
fn wrong_pin_on_plain_softhsm_exits_4() {
    let tok = Tok::new();
    let wrong = tok.write("wrong-pin", "9999-wrong\n");
    let input = tok.write("mail.eml", MAIL);
    let o = run(&mut tok.cmd_with_pin(&wrong, &["sign", "--in", input.to_str().unwrap()]));
    assert_clear_failure(&o, 4);
    assert!(stderr(&o).contains("does not count tries"), "{}", stderr(&o));
}

#[test]
fn wrong_pin_reports_final_try_when_the_token_tells() {
    let tok = Tok::new();
    let (uri, state, log) = shimmed(&tok, 2, 3);
    let wrong = tok.write("wrong-pin", "9999-wrong\n");
    let o = sign_via_shim(&tok, &uri, &state, &log, &wrong, &[]);
    assert_clear_failure(&o, 4);
    assert!(
        stderr(&o).contains("warning: token 'ssmax test' reports an earlier wrong PIN"),
        "count-low warns: {}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("one try left before it locks"), "{}", stderr(&o));
}

#[test]
fn final_try_is_refused_with_5_before_any_login() {
    let tok = Tok::new();
    let (uri, state, log) = shimmed(&tok, 1, 3);
    let o = sign_via_shim(&tok, &uri, &state, &log, &tok.pin_file, &[]);
    assert_clear_failure(&o, 5);
    assert!(stderr(&o).contains("--allow-final-pin-try"), "{}", stderr(&o));
    assert_eq!(logins(&log), 0);
    // With explicit consent the last try is spent, and the right PIN resets the counter.
    let o = sign_via_shim(&tok, &uri, &state, &log, &tok.pin_file, &["--allow-final-pin-try"]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "3 3\n");
}

#[test]
fn locked_pin_is_refused_with_5() {
    let tok = Tok::new();
    let (uri, state, log) = shimmed(&tok, 0, 3);
    let o = sign_via_shim(&tok, &uri, &state, &log, &tok.pin_file, &["--allow-final-pin-try"]);
    assert_clear_failure(&o, 5);
    assert!(stderr(&o).contains("locked"), "{}", stderr(&o));
    assert_eq!(logins(&log), 0);
}

#[test]
fn pin_breaking_profile_rules_is_refused_without_spending_a_try() {
    let tok = Tok::new();
    let (uri, state, log) = shimmed(&tok, 3, 3);
    let short = tok.write("short-pin", "12\n");
    let o = sign_via_shim(&tok, &uri, &state, &log, &short, &[]);
    assert_clear_failure(&o, 4);
    assert!(stderr(&o).contains("no try was spent"), "{}", stderr(&o));
    assert_eq!(logins(&log), 0);
}

#[test]
fn absent_token_gives_3_naming_what_to_insert_and_never_asks_for_a_pin() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let o =
        run(tok.cmd().args(["sign", "--token", "pkcs11:token=Employee%20Card", "--pin-fd", "9", "--in"]).arg(&input));
    assert_clear_failure(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("token=Employee%20Card") && e.contains("not present") && e.contains("insert"), "{e}");
    assert!(e.contains("SoftHSM slot"), "names the slots searched: {e}");
    // The token store removed entirely: still 3, still no PIN asked (fd 9 is not even open).
    std::fs::remove_dir_all(tok.dir.path().join("t/tokens")).unwrap();
    std::fs::create_dir(tok.dir.path().join("t/tokens")).unwrap();
    let o = run(tok.cmd().args(["sign", "--pin-fd", "9", "--in"]).arg(&input));
    assert_clear_failure(&o, 3);
}

#[test]
fn pin_never_appears_in_argv_environment_or_output_and_core_dumps_are_off() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let (reader, mut writer) = std::io::pipe().unwrap();
    let child = tok
        .cmd()
        .args(["sign", "--pin-fd", "3", "--in"])
        .arg(&input)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .fd3(reader)
        .spawn()
        .unwrap();
    // The process waits for the PIN on fd 3: look at it while it runs.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let pid = child.id();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap_or_default();
    writer.write_all(format!("{PIN}\n").as_bytes()).unwrap();
    drop(writer);
    let out = child.wait_with_output().unwrap();
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    for (what, data) in
        [("argv", &cmdline), ("environment", &environ), ("stdout", &out.stdout), ("stderr", &out.stderr)]
    {
        assert!(!String::from_utf8_lossy(data).contains(PIN), "PIN found in {what}");
    }
    assert!(String::from_utf8_lossy(&cmdline).contains("--pin-fd"), "we looked at the right process");
    let core = limits.lines().find(|l| l.starts_with("Max core file size")).unwrap_or("");
    assert!(core.split_whitespace().nth(4) == Some("0"), "core dumps disabled: {core}");
}

trait Fd3 {
    fn fd3(&mut self, r: std::io::PipeReader) -> &mut Self;
}

impl Fd3 for Command {
    /// Hand `r` to the child as descriptor 3 (what `3<file` does in a shell).
    fn fd3(&mut self, r: std::io::PipeReader) -> &mut Self {
        use std::os::fd::IntoRawFd;
        use std::os::unix::process::CommandExt;
        let raw = r.into_raw_fd();
        // SAFETY: dup2 is async-signal-safe; `raw` stays open in the parent until spawn.
        unsafe {
            self.pre_exec(move || {
                if raw != 3 && libc::dup2(raw, 3) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // dup2 clears close-on-exec, but not when raw is already 3; a blocking read is wanted.
                libc::fcntl(3, libc::F_SETFD, 0);
                let fl = libc::fcntl(3, libc::F_GETFL);
                libc::fcntl(3, libc::F_SETFL, fl & !libc::O_NONBLOCK);
                Ok(())
            })
        }
    }
}

#[test]
fn private_keys_on_the_token_are_sensitive_and_never_extractable() {
    let tok = Tok::new();
    let out = tok.p11(&["--list-objects", "--type", "privkey"]);
    let s = stdout(&out);
    let keys: Vec<&str> = s.split("Private Key Object").skip(1).collect();
    assert_eq!(keys.len(), 2, "{s}");
    for k in keys {
        let access =
            k.lines().find(|l| l.trim_start().starts_with("Access:")).unwrap_or_else(|| panic!("no Access line: {k}"));
        let flags: Vec<&str> = access.split(':').nth(1).unwrap_or("").split(',').map(str::trim).collect();
        assert!(flags.contains(&"sensitive"), "{access}");
        assert!(!flags.contains(&"extractable"), "{access}");
    }
}

#[test]
fn pin_fd_takes_the_first_line_without_waiting_for_the_writer_to_close() {
    let tok = Tok::new();
    let fifo = tok.path("pin.fifo");
    ok(Command::new("mkfifo").arg(&fifo));
    // Held open for writing, as a password manager holds its pipe, until the command is done.
    let mut writer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo).unwrap();
    writer.write_all(format!("{PIN}\n").as_bytes()).unwrap();
    let input = tok.write("mail.eml", MAIL);
    let out = tok.path("signed.eml");
    let mut child = tok
        .cmd_with_pin(&fifo, &["sign", "--in", input.to_str().unwrap(), "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("sign still waits for the PIN writer to close");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "{err}");
    assert!(openssl_verify(&out, &pki().join("root.pem")).status.success());
    drop(writer);
}
