//! With a Japanese locale, what a person reads is Japanese; exit codes and what programs read
//! (`--openssl-status`, the signed mail itself) are the same as in English.

use crate::support::agent::*;
use crate::support::*;
use std::process::Command;

fn japanese(mut c: Command) -> Command {
    c.env("LANG", "ja_JP.UTF-8");
    c
}

/// Any character from the Japanese scripts (kana or the common kanji block).
fn has_japanese(s: &str) -> bool {
    s.chars().any(|c| matches!(c, '\u{3040}'..='\u{30ff}' | '\u{4e00}'..='\u{9fff}'))
}

#[test]
fn sign_in_a_japanese_locale_reports_success_in_japanese_and_signs_the_same_mail() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let o = run(&mut japanese(tok.with_pin(&["sign", "--in", input.to_str().unwrap()])));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("alice@example.jp のメールに") && e.contains("署名しました"), "{e}");
    assert!(!e.contains("signed mail from"), "{e}");
    // The product is a mail for machines: no word of it changes with the locale.
    let signed = tok.write("signed.eml", o.stdout);
    let v = openssl_verify(&signed, &pki().join("root.pem"));
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stderr));
    assert!(!has_japanese(&String::from_utf8_lossy(&std::fs::read(&signed).unwrap())));
}

#[test]
fn a_wrong_pin_in_a_japanese_locale_is_told_in_japanese_with_the_same_exit_code() {
    let tok = Tok::new();
    let wrong = tok.write("wrong-pin", "9999-wrong\n");
    let input = tok.write("mail.eml", MAIL);
    let args = ["sign", "--in", input.to_str().unwrap()];
    let english = run(&mut tok.cmd_with_pin(&wrong, &args));
    let o = run(&mut japanese(tok.cmd_with_pin(&wrong, &args)));
    assert_clear_failure(&o, 4);
    assert_eq!(code(&english), 4);
    let e = stderr(&o);
    assert!(e.contains("トークン「ssmax test」の PIN が違います"), "{e}");
    assert!(e.contains("このトークンは試行回数を数えません") && e.contains("再試行はしていません"), "{e}");
    assert!(!e.contains("wrong PIN"), "{e}");
    assert!(!e.contains("9999-wrong"), "the PIN is never printed");
}

#[test]
fn an_absent_card_in_a_japanese_locale_is_told_in_japanese_with_the_same_exit_code() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let args = ["sign", "--token", "pkcs11:token=no%20such%20card", "--in", input.to_str().unwrap()];
    let o = run(&mut japanese(tok.with_pin(&args)));
    assert_clear_failure(&o, 3);
    let e = stderr(&o);
    assert!(e.contains("が見つかりません。カードまたはトークンを挿入してやり直してください"), "{e}");
    assert!(e.contains("探した場所:") && e.contains("スロット"), "{e}");
    assert_eq!(code(&run(&mut tok.with_pin(&args))), 3);
}

#[test]
fn lc_all_c_overrides_a_japanese_lang() {
    let tok = Tok::new();
    let wrong = tok.write("wrong-pin", "9999-wrong\n");
    let input = tok.write("mail.eml", MAIL);
    let mut c = japanese(tok.cmd_with_pin(&wrong, &["sign", "--in", input.to_str().unwrap()]));
    let o = run(c.env("LC_ALL", "C"));
    assert!(stderr(&o).contains("wrong PIN for token 'ssmax test'"), "{}", stderr(&o));
}

#[test]
fn the_pinentry_prompt_is_japanese_in_a_japanese_locale() {
    let tok = Tok::new();
    let (script, log) = pinentry(&tok, &tok.pin_file, "0");
    let config =
        tok.write("config.toml", format!("pin_source = \"pinentry\"\npinentry_program = \"{}\"\n", script.display()));
    let input = tok.write("mail.eml", MAIL);
    let mut c = japanese(tok.cmd());
    let o = run(c.args(["sign", "--config"]).arg(&config).arg("--in").arg(&input));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let transcript = std::fs::read_to_string(&log).unwrap();
    let desc = transcript.lines().find(|l| l.starts_with("SETDESC")).unwrap_or_default();
    assert!(desc.contains("トークン「ssmax test」の PIN を入力してください"), "{transcript}");
    assert!(desc.contains("alice@example.jp のメールに署名"), "{transcript}");
}

#[test]
fn status_in_a_japanese_locale_is_japanese() {
    let tok = Tok::new();
    let o = run(japanese(tok.cmd()).arg("status"));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let s = stdout(&o);
    for want in
        ["トークン「ssmax test」", "プロファイル softhsm2", "PIN          正常", "証明書 id 01「alice」", "まで有効"]
    {
        assert!(s.contains(want), "missing '{want}' in:\n{s}");
    }
}

#[test]
fn openssl_status_lines_stay_english_in_a_japanese_locale() {
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let signed = tok.write("signed.eml", ok(&mut tok.with_pin(&["sign", "--in", input.to_str().unwrap()])).stdout);
    let mut c = japanese(tok.cmd());
    let o = run(c.args(["verify", "--openssl-status", "--in"]).arg(&signed));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).starts_with("Verification successful\n"), "{}", stderr(&o));
    assert!(stderr(&o).contains("正しい署名:"), "the report is for people: {}", stderr(&o));
    let tampered = tok.write("tampered.eml", std::fs::read_to_string(&signed).unwrap().replace("figures", "FIGURES"));
    let mut c = japanese(tok.cmd());
    let o = run(c.args(["verify", "--openssl-status", "--in"]).arg(&tampered));
    assert_eq!(code(&o), 1);
    assert!(stderr(&o).contains("Verification failure"), "{}", stderr(&o));
    assert!(stderr(&o).contains("検証に失敗しました"), "{}", stderr(&o));
}

#[test]
fn an_english_agent_answers_a_japanese_client_in_japanese_and_an_english_one_in_english() {
    let tok = Tok::new();
    let agent = start_agent(&tok, "", "0");
    let input = tok.write("mail.eml", MAIL);
    let args = ["sign", "--token", "pkcs11:token=no%20such%20card", "--in", input.to_str().unwrap()];
    let mut c = japanese(tok.cmd());
    let o = run(c.arg("--agent").arg("always").arg("--socket").arg(&agent.socket).args(args));
    assert_clear_failure(&o, 3);
    assert!(stderr(&o).contains("が見つかりません"), "{}", stderr(&o));
    let o = via(&tok, &agent, &args);
    assert_clear_failure(&o, 3);
    assert!(stderr(&o).contains("is not present"), "{}", stderr(&o));
    // A signature through the same agent: the success note follows the client's language too.
    let mut c = japanese(tok.cmd());
    let o = run(c.arg("--agent").arg("always").arg("--socket").arg(&agent.socket).arg("sign").arg("--in").arg(&input));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("署名しました"), "{}", stderr(&o));
    let prompt = std::fs::read_to_string(&agent.pinentry_log).unwrap();
    assert!(prompt.contains("PIN を入力してください"), "the agent's pinentry asks in the client's language: {prompt}");
}

#[test]
fn the_terminal_prompt_is_japanese_in_a_japanese_locale() {
    use std::io::{Read, Write};
    let tok = Tok::new();
    let input = tok.write("mail.eml", MAIL);
    let config = tok.write("config.toml", "pin_source = \"terminal\"\n");
    // `script` gives the command a terminal of its own; the PIN is typed once the prompt shows.
    let signed = tok.path("signed.eml");
    let command =
        format!("{BIN} sign --config '{}' --in '{}' --out '{}'", config.display(), input.display(), signed.display());
    let mut c = Command::new("script");
    let mut child = c
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("SOFTHSM2_CONF", &tok.conf)
        .env("HOME", tok.dir.path())
        .env("LANG", "ja_JP.UTF-8")
        .args(["-qec", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !String::from_utf8_lossy(&seen).contains("):") {
        let n = out.read(&mut buf).unwrap();
        assert!(n > 0, "no prompt came: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // rpassword turns echo off just after it prints the prompt: a person is never that quick.
    std::thread::sleep(std::time::Duration::from_millis(300));
    writeln!(child.stdin.take().unwrap(), "{PIN}").unwrap();
    out.read_to_end(&mut seen).unwrap();
    assert!(child.wait().unwrap().success(), "{}", String::from_utf8_lossy(&seen));
    let transcript = String::from_utf8_lossy(&seen);
    assert!(transcript.contains("「ssmax test」の PIN(alice@example.jp のメールに"), "{transcript}");
    assert!(transcript.contains("署名しました"), "{transcript}");
}
