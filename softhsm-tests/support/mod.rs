//! Test support: a demo PKI made once per run, a fresh SoftHSM2 token per test, the real
//! `ssmax-card` binary, and real `openssl` as the judge.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_ssmax-card");
pub const PIN: &str = "4711-test-pin";
pub const LABEL: &str = "ssmax test";
pub const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/interop-vectors/examples-cms");

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests")
}

/// Run a command, failing the test with its output if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(out.status.success(), "{cmd:?} failed:\n{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    out
}

/// The demo PKI, built once per test run by the same script the README demo uses.
pub fn pki() -> &'static Path {
    static PKI: OnceLock<PathBuf> = OnceLock::new();
    PKI.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("ssmax-pki-").tempdir().expect("tempdir").keep();
        ok(Command::new("bash").arg(here().join("provision.sh")).arg("pki").arg(dir.join("pki")));
        dir.join("pki")
    })
}

/// The retry-counting shim module, compiled once per run.
pub fn shim() -> &'static Path {
    static SHIM: OnceLock<PathBuf> = OnceLock::new();
    SHIM.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("ssmax-shim-").tempdir().expect("tempdir").keep();
        let so = dir.join("retry-shim.so");
        ok(Command::new("cc")
            .args(["-shared", "-fPIC", "-O1", "-I/usr/include/p11-kit-1", "-o"])
            .arg(&so)
            .arg(here().join("shim/retry-shim.c"))
            .arg("-ldl"));
        so
    })
}

/// One test's own SoftHSM2 token store.
pub struct Tok {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub pin_file: PathBuf,
}

impl Tok {
    pub fn new() -> Tok {
        let dir = tempfile::Builder::new().prefix("ssmax-tok-").tempdir().expect("tempdir");
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        ok(Command::new("bash")
            .arg(here().join("provision.sh"))
            .arg("token")
            .arg(pki())
            .arg(dir.path().join("t"))
            .arg(LABEL)
            .arg(&pin_file));
        let conf = dir.path().join("t/softhsm2.conf");
        Tok { dir, conf, pin_file }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, data: impl AsRef<[u8]>) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, data).unwrap();
        p
    }

    /// The binary with this token's SOFTHSM2_CONF and a private HOME (no user config leaks in).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(BIN);
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SOFTHSM2_CONF", &self.conf)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .stdin(Stdio::null());
        c
    }

    /// The binary with a PIN on descriptor 3 read from `pin_file` (the way automation does it).
    pub fn cmd_with_pin(&self, pin_file: &Path, args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("SOFTHSM2_CONF", &self.conf)
            .env("HOME", self.dir.path())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("SSMAX_TEST_PIN_FILE", pin_file)
            .stdin(Stdio::null())
            .arg("-c")
            .arg("exec \"$0\" \"$@\" --pin-fd 3 3<\"$SSMAX_TEST_PIN_FILE\"")
            .arg(BIN)
            .args(args);
        c
    }

    pub fn with_pin(&self, args: &[&str]) -> Command {
        self.cmd_with_pin(&self.pin_file, args)
    }

    pub fn p11(&self, args: &[&str]) -> Output {
        ok(Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--module", "/usr/lib/softhsm/libsofthsm2.so", "--token-label", LABEL, "--login", "--pin", PIN])
            .args(args))
    }

    /// Import a PKCS#8 key and its certificate under one CKA_ID.
    pub fn import(&self, key_pem: &Path, cert_pem: &Path, id: &str, label: &str) {
        ok(Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--import"])
            .arg(key_pem)
            .args(["--token", LABEL, "--label", label, "--id", id, "--pin", PIN]));
        self.import_cert(cert_pem, id, label);
    }

    pub fn import_cert(&self, cert: &Path, id: &str, label: &str) {
        let der = self.path(&format!("{label}-{id}.der"));
        ok(Command::new("openssl").args(["x509", "-outform", "DER", "-in"]).arg(cert).arg("-out").arg(&der));
        let der_s = der.to_string_lossy().to_string();
        self.p11(&["--write-object", &der_s, "--type", "cert", "--id", id, "--label", label]);
    }
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Exit code, and that the failure is one clear `ssmax-card:` line with no panic.
pub fn code(o: &Output) -> i32 {
    let e = stderr(o);
    assert!(!e.contains("panicked"), "panic: {e}");
    o.status.code().expect("killed by a signal")
}

pub fn assert_clear_failure(o: &Output, want: i32) {
    let c = code(o);
    let e = stderr(o);
    assert_eq!(c, want, "exit code; stderr: {e}");
    let last = e.lines().last().unwrap_or("");
    assert!(last.starts_with("ssmax-card: "), "last stderr line should say what failed: {e}");
}

pub const MAIL: &str = "From: Alice Example <alice@example.jp>\nTo: Bob <bob@example.com>\nSubject: quarterly figures\nDate: Tue, 24 Nov 2026 10:00:00 +0900\n\nHello Bob,\n\nthe figures are attached.\n";

pub fn openssl_verify(mail: &Path, ca: &Path) -> Output {
    run(Command::new("openssl").args(["cms", "-verify", "-in"]).arg(mail).arg("-CAfile").arg(ca).args(["-purpose", "smimesign"]))
}
