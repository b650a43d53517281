//! Test support: a demo PKI made once per run, a fresh SoftHSM2 token per test, the real
//! `ssmax-card` binary, and real `openssl` as the judge.

#![allow(dead_code)]

pub mod agent;
pub mod http;
pub mod vcard;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub const BIN: &str = env!("CARGO_BIN_EXE_ssmax-card");
pub const PIN: &str = "4711-test-pin";
pub const LABEL: &str = "ssmax test";
pub const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/softhsm-tests/interop-vectors/examples-cms");

fn here() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests")
}

/// Run a command, failing the test with its output if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A file of the RFC 9216 interop vectors (softhsm-tests/interop-vectors).
pub fn vector(name: &str) -> PathBuf {
    Path::new(VECTORS).join(name)
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
        Tok::for_user("alice", LABEL)
    }

    /// A token for `alice` (Example Org) or `bob` (Partner Org) from the demo PKI.
    pub fn for_user(user: &str, label: &str) -> Tok {
        let dir = tempfile::Builder::new().prefix("ssmax-tok-").tempdir().expect("tempdir");
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
        ok(Command::new("bash")
            .arg(here().join("provision.sh"))
            .arg("token")
            .arg(pki())
            .arg(dir.path().join("t"))
            .arg(label)
            .arg(&pin_file)
            .arg(user));
        let conf = dir.path().join("t/softhsm2.conf");
        Tok { dir, conf, pin_file }
    }

    /// A user whose only tokens are cards: an empty SoftHSM2 store, and `pin` in `pin_file`.
    pub fn without_tokens(pin: &str) -> Tok {
        let dir = tempfile::Builder::new().prefix("ssmax-card-").tempdir().expect("tempdir");
        let store = dir.path().join("softhsm");
        std::fs::create_dir(&store).unwrap();
        let conf = dir.path().join("softhsm2.conf");
        std::fs::write(&conf, format!("directories.tokendir = {}\n", store.display())).unwrap();
        let pin_file = dir.path().join("pin");
        std::fs::write(&pin_file, format!("{pin}\n")).unwrap();
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

impl Tok {
    /// Generate a key pair on the token (never imported) and give it a certificate from the org CA
    /// for alice@example.jp, stored under the same CKA_ID.
    pub fn keygen_with_cert(&self, id: &str, label: &str, key_type: &str, extra: &[&str]) -> PathBuf {
        let mut args = vec!["--keypairgen", "--key-type", key_type, "--id", id, "--label", label, "--usage-sign"];
        args.extend_from_slice(extra);
        let gen = stdout(&self.p11(&args));
        let pubder = match gen.lines().find_map(|l| l.trim().strip_prefix("EC_POINT:")) {
            // pkcs11-tool 0.23 cannot read back a P-384 public key, so build the SPKI from the
            // EC_POINT it prints (a DER OCTET STRING holding the uncompressed point).
            Some(point_hex) => {
                let point = hex_decode(point_hex.trim());
                let (header, point): (&[u8], &[u8]) = match point.len() {
                    67 => (
                        &[
                            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
                            0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
                        ],
                        &point[2..],
                    ),
                    99 => (
                        &[
                            0x30, 0x76, 0x30, 0x10, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x05,
                            0x2b, 0x81, 0x04, 0x00, 0x22, 0x03, 0x62, 0x00,
                        ],
                        &point[2..],
                    ),
                    n => panic!("unexpected EC_POINT length {n}"),
                };
                self.write(&format!("{label}.pub.der"), [header, point].concat())
            }
            None => {
                let der = self.path(&format!("{label}.pub.der"));
                ok(Command::new("pkcs11-tool")
                    .env("SOFTHSM2_CONF", &self.conf)
                    .args([
                        "--module",
                        "/usr/lib/softhsm/libsofthsm2.so",
                        "--token-label",
                        LABEL,
                        "--read-object",
                        "--type",
                        "pubkey",
                        "--id",
                        id,
                        "-o",
                    ])
                    .arg(&der));
                der
            }
        };
        let pubpem = self.path(&format!("{label}.pub.pem"));
        ok(Command::new("openssl")
            .args(["pkey", "-pubin", "-inform", "DER", "-in"])
            .arg(&pubder)
            .arg("-out")
            .arg(&pubpem));
        let cert = self.path(&format!("{label}.pem"));
        let p = pki();
        ok(Command::new("openssl")
            .args(["x509", "-req", "-in"])
            .arg(p.join("alice.csr"))
            .arg("-CA")
            .arg(p.join("orgca.pem"))
            .arg("-CAkey")
            .arg(p.join("orgca.key"))
            .args(["-set_serial", &format!("0x{}{id}", std::process::id()), "-days", "30", "-sha256", "-extfile"])
            .arg(p.join("alice.ext"))
            .arg("-force_pubkey")
            .arg(&pubpem)
            .arg("-out")
            .arg(&cert));
        self.import_cert(&cert, id, label);
        cert
    }
}

fn hex_decode(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).expect("hex")).collect()
}

/// Room for `n` more descriptors in this process (and the agents it starts).
pub fn allow_descriptors(n: u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
        if lim.rlim_cur < n {
            lim.rlim_cur = n.min(lim.rlim_max);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &lim), 0);
        }
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

/// Run `cmd` under /usr/bin/time: its output and its peak resident memory in KiB.
pub fn run_measured(cmd: &Command) -> (Output, u64) {
    let report = tempfile::NamedTempFile::new().expect("temp file");
    let mut timed = Command::new("/usr/bin/time");
    timed.args(["-f", "%M", "-o"]).arg(report.path()).arg(cmd.get_program()).args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => timed.env(k, v),
            None => timed.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        timed.current_dir(d);
    }
    let out = run(&mut timed);
    let text = std::fs::read_to_string(report.path()).expect("/usr/bin/time's report");
    let kib =
        text.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or_else(|| panic!("no peak memory in {text:?}"));
    (out, kib)
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
    run(Command::new("openssl")
        .args(["cms", "-verify", "-in"])
        .arg(mail)
        .arg("-CAfile")
        .arg(ca)
        .args(["-purpose", "smimesign"]))
}

/// pcscd with the vpcd virtual readers: started here unless one already runs, stopped on drop.
/// Ready when vpcd listens for its first card; stopped with SIGTERM so that it removes its
/// socket and pid file (after a SIGKILL they stay, and the next pcscd may refuse to start).
pub struct Pcscd {
    child: Option<std::process::Child>,
}

/// Whether something listens on vpcd's first reader port (35963) on loopback.
fn vpcd_listens() -> bool {
    listens(35963)
}

/// Whether a socket listens on TCP `port` (IPv4 or IPv6), seen without connecting to it: a
/// single-threaded server (`openssl ocsp`) would wait on a probe connection.
pub fn listens(port: u16) -> bool {
    let suffix = format!(":{port:04X}");
    ["/proc/net/tcp", "/proc/net/tcp6"].iter().any(|f| {
        std::fs::read_to_string(f)
            .map(|t| {
                t.lines().any(|l| {
                    l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(&suffix))
                        && l.split_whitespace().nth(3) == Some("0A")
                })
            })
            .unwrap_or(false)
    })
}

impl Pcscd {
    pub fn start() -> Pcscd {
        let running =
            Command::new("pgrep").arg("-x").arg("pcscd").output().map(|o| o.status.success()).unwrap_or(false);
        if running {
            return Pcscd { child: None };
        }
        // Left by a pcscd that did not stop cleanly; no pcscd runs now.
        let _ = std::fs::remove_file("/run/pcscd/pcscd.pid");
        let _ = std::fs::remove_file("/run/pcscd/pcscd.comm");
        let mut child = Command::new("pcscd")
            .arg("--foreground")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("pcscd (Debian package pcscd)");
        let start = std::time::Instant::now();
        while !vpcd_listens() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("pcscd stopped at start ({status})");
            }
            assert!(start.elapsed() < std::time::Duration::from_secs(10), "vpcd never listened on 127.0.0.1:35963");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Pcscd { child: Some(child) }
    }
}

impl Drop for Pcscd {
    fn drop(&mut self) {
        let Some(p) = self.child.as_mut() else { return };
        if let Some(pid) = rustix::process::Pid::from_raw(p.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_secs(3) {
            if let Ok(Some(_)) = p.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let _ = p.kill();
        let _ = p.wait();
    }
}

/// `python3 -c script args…` as another user (`setpriv`, the tests run as root): a process of
/// someone else on the same machine. None when not root.
pub fn as_user(uid: u32, script: &str) -> Option<Command> {
    // SAFETY: geteuid only reads our credentials.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let mut c = Command::new("setpriv");
    c.args([&format!("--reuid={uid}"), &format!("--regid={uid}"), "--clear-groups", "/usr/bin/python3", "-c", script]);
    c.env_clear().env("PATH", std::env::var("PATH").unwrap_or_default());
    Some(c)
}

/// A directory another user may create things in: a fresh temporary directory given to `uid`.
pub fn dir_for_user(uid: u32) -> tempfile::TempDir {
    let d = tempfile::Builder::new().prefix("ssmax-other-").tempdir().expect("tempdir");
    std::os::unix::fs::chown(d.path(), Some(uid), Some(uid)).unwrap();
    d
}

/// The module workers (`ssmax-card module-worker`) of the agent `parent`, as (pid, module path).
/// A worker left a zombie fails the test.
pub fn module_workers(parent: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces, so split after its ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else { continue };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.get(1).and_then(|p| p.parse::<u32>().ok()) != Some(parent) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let args: Vec<String> =
            cmd.split(|&b| b == 0).filter(|a| !a.is_empty()).map(|a| String::from_utf8_lossy(a).into_owned()).collect();
        // A child that just ended (a presence probe is collected within 10 ms) is not one left
        // behind: only a zombie that stays is.
        if f.first() == Some(&"Z") && still_zombie(e.path().join("stat")) {
            panic!("a child of the agent left unreaped: {stat}");
        }
        if args.iter().any(|a| a == "module-worker") {
            out.push((pid, args.last().cloned().unwrap_or_default()));
        }
    }
    out
}

/// Whether the process whose stat is `stat` is still a zombie a second later.
fn still_zombie(stat: PathBuf) -> bool {
    let until = std::time::Instant::now() + std::time::Duration::from_secs(1);
    while std::time::Instant::now() < until {
        std::thread::sleep(std::time::Duration::from_millis(50));
        let Ok(now) = std::fs::read_to_string(&stat) else { return false };
        if !now.rsplit_once(')').is_some_and(|(_, r)| r.trim_start().starts_with('Z')) {
            return false;
        }
    }
    true
}

/// The socket inode of the listener bound at `path` (/proc/net/unix).
fn listener_inode(path: &Path) -> Option<String> {
    let table = std::fs::read_to_string("/proc/net/unix").ok()?;
    let want = path.to_string_lossy();
    table.lines().find(|l| l.ends_with(&*want)).and_then(|l| l.split_whitespace().nth(6)).map(str::to_string)
}

/// Every module worker of the agent `parent` exists, and none holds the agent's listening
/// socket or its audit log: a module (untrusted C) gets nothing of the agent but its calls.
pub fn assert_workers_hold_nothing_of_the_agent(parent: u32, socket: &Path, audit: &Path) {
    let workers = module_workers(parent);
    assert!(!workers.is_empty(), "no module worker");
    let listener = listener_inode(socket).expect("the agent's listener in /proc/net/unix");
    for (pid, module) in workers {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            assert_ne!(target, audit, "worker {pid} ({module}) holds the audit log");
            assert_ne!(
                target.to_string_lossy(),
                format!("socket:[{listener}]"),
                "worker {pid} ({module}) holds the agent's listening socket as fd {:?}",
                fd.file_name()
            );
        }
    }
}
