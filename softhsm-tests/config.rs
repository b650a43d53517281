use crate::support::*;

#[test]
fn config_file_names_the_token_and_the_command_line_overrides_it() {
    let tok = Tok::new();
    let config = tok.write(
        "config.toml",
        "token = \"pkcs11:token=ssmax%20test?module-path=/usr/lib/softhsm/libsofthsm2.so\"\nkey = \"pkcs11:id=%02\"\n",
    );
    let input = tok.write("mail.eml", MAIL);
    let o = run(&mut tok.with_pin(&["sign", "--config", config.to_str().unwrap(), "--in", input.to_str().unwrap()]));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(stderr(&o).contains("key 'alice-ec'") && stderr(&o).contains("ECDSA"), "{}", stderr(&o));
    let o = run(&mut tok.with_pin(&[
        "sign",
        "--config",
        config.to_str().unwrap(),
        "--key",
        "pkcs11:id=%01",
        "--in",
        input.to_str().unwrap(),
    ]));
    assert!(stderr(&o).contains("key 'alice'") && stderr(&o).contains("RSA"), "{}", stderr(&o));
    // The config's module-path stays when the command line names only the token.
    let o = run(&mut tok.with_pin(&[
        "sign",
        "--config",
        config.to_str().unwrap(),
        "--token",
        "pkcs11:token=other",
        "--in",
        input.to_str().unwrap(),
    ]));
    assert_clear_failure(&o, 3);
    assert!(stderr(&o).contains("token=other"), "{}", stderr(&o));
}

#[test]
fn malformed_config_is_rejected_with_file_line_and_reason() {
    let tok = Tok::new();
    let config = tok.write("config.toml", "pin_source = \"terminal\"\npin = \"1234\"\n");
    let o = run(tok.cmd().args(["status", "--config"]).arg(&config));
    assert_clear_failure(&o, 2);
    let e = stderr(&o);
    assert!(e.contains(&format!("{}:2:", config.display())) && e.contains("unknown field `pin`"), "{e}");
    assert!(!e.contains("1234"), "the value is not echoed: {e}");
}

#[test]
fn malformed_profile_in_profiles_dir_is_rejected_with_file_line_and_reason() {
    let tok = Tok::new();
    std::fs::create_dir_all(tok.path("profiles")).unwrap();
    let soft = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/pkcs11-profiles/softhsm2.toml")).unwrap();
    let broken = soft.replace("min_length = 4", "min_length = 400");
    let line = broken.lines().position(|l| l.starts_with("min_length")).unwrap() + 1;
    let file = tok.write("profiles/softhsm2.toml", broken);
    let config = tok.write("config.toml", format!("profiles_dir = \"{}\"\n", tok.path("profiles").display()));
    let o = run(tok.cmd().args(["profiles", "--config"]).arg(&config));
    assert_clear_failure(&o, 2);
    assert!(stderr(&o).contains(&format!("{}:{line}: pin.min_length", file.display())), "{}", stderr(&o));
}

#[test]
fn pinentry_is_used_when_configured_and_names_token_and_operation() {
    let tok = Tok::new();
    // A scripted pinentry speaking the Assuan protocol, as gpg's pinentry programs do.
    let transcript = tok.path("pinentry.log");
    let script = tok.write(
        "pinentry.sh",
        format!(
            "#!/bin/sh\necho 'OK Pleased to meet you'\nwhile read -r cmd rest; do\n  echo \"$cmd $rest\" >> '{}'\n  case $cmd in\n    GETPIN) echo 'D {PIN}'; echo OK ;;\n    BYE) echo OK; exit 0 ;;\n    *) echo OK ;;\n  esac\ndone\n",
            transcript.display()
        ),
    );
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let config =
        tok.write("config.toml", format!("pin_source = \"pinentry\"\npinentry_program = \"{}\"\n", script.display()));
    let input = tok.write("mail.eml", MAIL);
    let o = run(tok.cmd().args(["sign", "--config"]).arg(&config).arg("--in").arg(&input));
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let t = std::fs::read_to_string(&transcript).unwrap();
    assert!(t.contains("SETDESC") && t.contains("ssmax test") && t.contains("sign mail from alice@example.jp"), "{t}");
    assert!(t.contains("GETPIN"));
}
