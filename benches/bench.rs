//! `cargo bench`: ssmax-card side by side with `openssl cms` (pkcs11 engine) on the same SoftHSM2
//! token, in one run; the machine's `openssl speed` as the hashing/AES limit; the agent's latency
//! and throughput; card commands per operation on a virtual PIV card (through the cards test).
//! Medians over repeated runs, peak RSS from /usr/bin/time. Prints a table and
//! writes the figures as JSON (its path is the last line). Nothing here asserts a time.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ssmax-card");
const PIN: &str = "bench-pin-2468";
const LABEL: &str = "bench";
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

struct Env {
    dir: PathBuf,
    conf: PathBuf,
    pin: PathBuf,
    ossl_conf: PathBuf,
    /// Median wall time of `/usr/bin/time bash -c ':'`, subtracted from every timed command.
    harness_ms: f64,
}

fn sh(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

impl Env {
    fn new() -> Env {
        let dir = tempfile::Builder::new().prefix("ssmax-bench-").tempdir().unwrap().keep();
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/provision.sh");
        let pin = dir.join("pin");
        std::fs::write(&pin, format!("{PIN}\n")).unwrap();
        sh(Command::new("bash").arg(&here).arg("pki").arg(dir.join("pki")));
        sh(Command::new("bash").arg(&here).arg("token").arg(dir.join("pki")).arg(dir.join("t")).arg(LABEL).arg(&pin));
        let ossl_conf = dir.join("openssl.cnf");
        std::fs::write(
            &ossl_conf,
            format!("openssl_conf = init\n[init]\nengines = engines\n[engines]\npkcs11 = pkcs11\n[pkcs11]\nengine_id = pkcs11\ndynamic_path = /usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so\nMODULE_PATH = {SOFTHSM}\ninit = 0\n"),
        )
        .unwrap();
        let mut env = Env { conf: dir.join("t/softhsm2.conf"), dir, pin, ossl_conf, harness_ms: 0.0 };
        env.harness_ms = env.timed_raw(":", 31).0;
        env
    }

    fn p(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Run a shell command line `runs` times: (median wall ms less the harness's own start-up,
    /// max peak RSS KiB). Like hyperfine, the cost of starting `/usr/bin/time` and `bash` (measured
    /// once with an empty command) is subtracted, so short commands are compared by their own cost.
    fn timed(&self, line: &str, runs: usize) -> (f64, u64) {
        let (wall, rss) = self.timed_raw(line, runs);
        ((wall - self.harness_ms).max(0.0), rss)
    }

    fn timed_raw(&self, line: &str, runs: usize) -> (f64, u64) {
        let mut walls = Vec::new();
        let mut rss = 0;
        for _ in 0..runs {
            let t = Instant::now();
            let out = Command::new("/usr/bin/time")
                .args(["-f", "%M", "bash", "-c", line])
                .env("SOFTHSM2_CONF", &self.conf)
                .env("OPENSSL_CONF", &self.ossl_conf)
                .env("HOME", &self.dir)
                .stdout(Stdio::null())
                .output()
                .unwrap();
            walls.push(t.elapsed().as_secs_f64() * 1000.0);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{line}: {err}");
            rss = rss.max(err.lines().last().and_then(|l| l.trim().parse().ok()).unwrap_or(0));
        }
        (median(walls), rss)
    }
}

/// A mail of about `size` bytes: text, plus a base64 attachment for the larger ones.
fn mail(size: usize) -> Vec<u8> {
    let mut m =
        b"From: Alice Example <alice@example.jp>\r\nTo: Bob <bob@partner.example>\r\nSubject: bench\r\n".to_vec();
    if size <= 4096 {
        m.extend_from_slice(b"Content-Type: text/plain\r\n\r\n");
        while m.len() < size {
            m.extend_from_slice(b"The quarterly figures are attached; please review them before Friday.\r\n");
        }
        return m;
    }
    m.extend_from_slice(b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n--B\r\nContent-Type: application/octet-stream; name=\"data.bin\"\r\nContent-Disposition: attachment; filename=\"data.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n");
    let mut x: u64 = 0x9e3779b97f4a7c15;
    let raw: Vec<u8> = (0..(size * 3 / 4))
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD.encode(raw);
    for chunk in b64.as_bytes().chunks(76) {
        m.extend_from_slice(chunk);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--B--\r\n");
    m
}

fn openssl_speed(alg: &str) -> f64 {
    // Bytes per second for 16 KiB blocks (the largest block openssl speed reports by default).
    let out = sh(Command::new("openssl")
        .args(["speed", "-evp", alg, "-seconds", "1", "-bytes", "16384"])
        .stderr(Stdio::null()));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    let k: f64 = line.split_whitespace().last().and_then(|v| v.trim_end_matches('k').parse().ok()).unwrap_or(0.0);
    k * 1000.0
}

// The agent protocol (docs/agent-protocol.md), as a persistent client. The message goes in one
// write, as the agent's own client library sends it.
fn send_msg(s: &mut UnixStream, header: &serde_json::Value, body: &[u8]) {
    let h = serde_json::to_vec(header).unwrap();
    let mut m = Vec::with_capacity(h.len() + body.len() + 8);
    m.extend_from_slice(&(h.len() as u32).to_be_bytes());
    m.extend_from_slice(&h);
    m.extend_from_slice(&(body.len() as u32).to_be_bytes());
    m.extend_from_slice(body);
    s.write_all(&m).unwrap();
}

fn recv_msg(s: &mut UnixStream) -> (serde_json::Value, Vec<u8>) {
    let mut frame = || {
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut b = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut b).unwrap();
        b
    };
    let h = frame();
    let b = frame();
    (serde_json::from_slice(&h).unwrap(), b)
}

/// Every signed mail the agent answered, checked by a real peer: `openssl cms -verify` against the
/// demo chain, and the content it extracts must be the content of a mail signed one-shot from the
/// same input. Panics on the first that fails; returns how many were checked.
fn openssl_checks_all(env: &Env, name: &str, signed: &[Vec<u8>], expected_content: &[u8]) -> usize {
    let dir = env.p(&format!("check-{name}"));
    std::fs::create_dir_all(&dir).unwrap();
    for (i, m) in signed.iter().enumerate() {
        std::fs::write(dir.join(format!("{i}.eml")), m).unwrap();
    }
    std::fs::write(dir.join("expected"), expected_content).unwrap();
    let chain = env.p("pki").join("chain.pem");
    let script = format!(
        "cd {} && for f in *.eml; do openssl cms -verify -purpose smimesign -CAfile {} -in \"$f\" -out \"$f.txt\" 2>/dev/null || {{ echo \"$f: openssl does not verify it\"; exit 1; }}; cmp -s \"$f.txt\" expected || {{ echo \"$f: signed content differs\"; exit 1; }}; done",
        dir.display(),
        chain.display()
    );
    let out = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
    signed.len()
}

/// Instructions a shell command line's program executes, under callgrind.
fn instructions(env: &Env, line: &str) -> f64 {
    let out = env.p("callgrind.one");
    let cmd = format!("exec valgrind --tool=callgrind --callgrind-out-file={} {line}", out.display());
    let o = Command::new("bash")
        .args(["-c", &cmd])
        .env("SOFTHSM2_CONF", &env.conf)
        .env("OPENSSL_CONF", &env.ossl_conf)
        .env("HOME", &env.dir)
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert!(o.status.success(), "{line}: {}", String::from_utf8_lossy(&o.stderr));
    let err = String::from_utf8_lossy(&o.stderr);
    let n = err.lines().find_map(|l| l.split("Collected :").nth(1)).map(|n| n.trim().parse::<f64>().unwrap());
    let _ = std::fs::remove_file(&out);
    n.expect("callgrind's total")
}

/// An agent under callgrind, PIN cached, a persistent client signing 1 KiB mails: instructions
/// per request in the whole agent (every thread), and of those inside C_SignInit + C_Sign.
fn agent_instructions(env: &Env, cfg: &Path, body: &[u8]) -> (f64, f64) {
    let socket = env.p("run/agent-cg.sock");
    let out = env.p("callgrind.agent");
    let mut agent = Command::new("valgrind")
        .args(["--tool=callgrind", "--separate-threads=no"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .args([BIN, "agent", "--config"])
        .arg(cfg)
        .arg("--socket")
        .arg(&socket)
        .env("SOFTHSM2_CONF", &env.conf)
        .env("HOME", &env.dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut s = UnixStream::connect(&socket).unwrap();
    let mut sign = |n: u64| {
        for i in 0..n {
            send_msg(
                &mut s,
                &serde_json::json!({"v": 1, "id": i, "method": "sign", "args": {}, "key": "pkcs11:id=%01", "timeout_ms": 600000, "client": {}}),
                body,
            );
            let (h, _) = recv_msg(&mut s);
            assert_eq!(h["ok"], true, "{h}");
        }
    };
    // The PIN entry and the first reads of the token are not what a request costs.
    sign(5);
    let pid = agent.id().to_string();
    sh(Command::new("callgrind_control").args(["-z", &pid]));
    const N: u64 = 100;
    sign(N);
    // Let the audit thread write this batch before counting.
    std::thread::sleep(Duration::from_millis(300));
    sh(Command::new("callgrind_control").args(["-d", &pid]));
    let _ = agent.kill();
    let _ = agent.wait();
    let dump = PathBuf::from(format!("{}.1", out.display()));
    let report =
        String::from_utf8(sh(Command::new("callgrind_annotate").arg("--inclusive=yes").arg(&dump)).stdout).unwrap();
    let count = |needle: &str| -> f64 {
        report
            .lines()
            .filter(|l| l.contains(needle))
            .filter_map(|l| l.split_whitespace().next())
            .map(|n| n.replace(',', "").parse::<f64>().unwrap())
            .next()
            .unwrap_or(0.0)
    };
    let total = count("PROGRAM TOTALS");
    let token = count(":C_SignInit [") + count(":C_Sign [");
    let _ = std::fs::remove_file(&dump);
    let _ = std::fs::remove_file(&out);
    (total / N as f64, token / N as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // cargo bench -- --list
    }
    let env = Env::new();
    let mut results = serde_json::Map::new();
    let mut table: Vec<(String, String)> = Vec::new();
    let mut row = |name: &str,
                   value: String,
                   json: serde_json::Value,
                   results: &mut serde_json::Map<String, serde_json::Value>| {
        table.push((name.to_string(), value));
        results.insert(name.to_string(), json);
    };

    // 1. The raw token floor, in-process through our token layer.
    let out = sh(Command::new("bash")
        .args([
            "-c",
            &format!("exec {BIN} --agent never bench-token --iterations 300 --pin-fd 3 3<{}", env.pin.display()),
        ])
        .env("SOFTHSM2_CONF", &env.conf)
        .env("HOME", &env.dir));
    let floor: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (k, v) in floor.as_object().unwrap().iter().filter(|(k, _)| !k.starts_with("stage:")) {
        row(&format!("token floor: {k}"), format!("{:.3} ms", v.as_f64().unwrap()), v.clone(), &mut results);
    }
    let raw_sign_ms = floor["C_Sign RSA-2048 (PKCS#1)"].as_f64().unwrap();

    row(
        "harness start-up (subtracted from each command)",
        format!("{:.2} ms", env.harness_ms),
        env.harness_ms.into(),
        &mut results,
    );

    // 2. The machine's limit.
    let sha = openssl_speed("sha256");
    let gcm = openssl_speed("aes-256-gcm");
    row("openssl speed sha256", format!("{:.0} MB/s", sha / 1e6), sha.into(), &mut results);
    row("openssl speed aes-256-gcm", format!("{:.0} MB/s", gcm / 1e6), gcm.into(), &mut results);
    // The per-byte stages in-process (no file I/O, no process start), against the limit they
    // are bound by: what the "hashed or decrypted at ≥ 70%" target is about.
    for (k, v) in floor.as_object().unwrap().iter().filter(|(k, _)| k.starts_with("stage:")) {
        let rate = v.as_f64().unwrap();
        let (limit, name) =
            if k.contains("decrypt") || k.contains("envelope") { (gcm, "aes-256-gcm") } else { (sha, "sha256") };
        let label = k.trim_end_matches(", bytes/s");
        row(
            label,
            format!("{:.0} MB/s = {:.0}% of openssl {name}", rate / 1e6, 100.0 * rate / limit),
            serde_json::json!({"bytes_per_s": rate, "of_limit": rate / limit}),
            &mut results,
        );
    }

    // 3. One-shot commands, ours and openssl's, on the same token.
    let pin = env.pin.display().to_string();
    let pki = env.p("pki");
    let key = format!("pkcs11:token={LABEL};id=%01;type=private;pin-value={PIN}");
    for (name, size, runs) in [("1 KiB", 1024usize, 21usize), ("1 MiB", 1 << 20, 7), ("25 MiB", 25 << 20, 3)] {
        let m = env.p(&format!("mail-{size}.eml"));
        std::fs::write(&m, mail(size)).unwrap();
        let ours_signed = env.p(&format!("ours-{size}.eml"));
        // Like openssl: the token named by URI, output to a plain file (our --out also fsyncs).
        let (ours, ours_rss) = env.timed(&format!("{BIN} --agent never sign --token 'pkcs11:token={LABEL}' --key 'pkcs11:id=%01' --in {} --pin-fd 3 3<{pin} > {}", m.display(), ours_signed.display()), runs);
        let ossl_signed = env.p(&format!("ossl-{size}.eml"));
        let (ossl, ossl_rss) = env.timed(
            &format!(
                "openssl cms -sign -engine pkcs11 -keyform engine -inkey '{key}' -signer {} -in {} -out {} 2>/dev/null",
                pki.join("alice.pem").display(),
                m.display(),
                ossl_signed.display()
            ),
            runs,
        );
        row(
            &format!("sign {name}: ssmax-card one-shot"),
            format!("{ours:.1} ms, {} MiB RSS", ours_rss / 1024),
            serde_json::json!({"ms": ours, "rss_kib": ours_rss}),
            &mut results,
        );
        row(
            &format!("sign {name}: openssl cms + engine"),
            format!("{ossl:.1} ms, {} MiB RSS", ossl_rss / 1024),
            serde_json::json!({"ms": ossl, "rss_kib": ossl_rss}),
            &mut results,
        );
        row(
            &format!("sign {name}: ratio ours/openssl"),
            format!("{:.2}×", ours / ossl),
            (ours / ossl).into(),
            &mut results,
        );
        if size > 1 << 20 {
            let rate = size as f64 / (ours / 1000.0);
            row(
                &format!("sign {name}: ours bytes/s vs sha256 limit"),
                format!("{:.0} MB/s = {:.0}%", rate / 1e6, 100.0 * rate / sha),
                (rate / sha).into(),
                &mut results,
            );
            row(
                &format!("sign {name}: peak RSS / mail size"),
                format!("{:.2}×", (ours_rss * 1024) as f64 / size as f64),
                ((ours_rss * 1024) as f64 / size as f64).into(),
                &mut results,
            );
        }
        let (v_ours, _) = env.timed(
            &format!(
                "{BIN} --agent never verify --token 'pkcs11:token={LABEL}' --in {} >/dev/null",
                ours_signed.display()
            ),
            runs,
        );
        let (v_ossl, _) = env.timed(
            &format!(
                "openssl cms -verify -CAfile {} -in {} -out /dev/null 2>/dev/null",
                pki.join("chain.pem").display(),
                ours_signed.display()
            ),
            runs,
        );
        row(
            &format!("verify {name}: ours / openssl"),
            format!("{v_ours:.1} ms / {v_ossl:.1} ms = {:.2}×", v_ours / v_ossl),
            serde_json::json!({"ours_ms": v_ours, "openssl_ms": v_ossl}),
            &mut results,
        );
        let enc = env.p(&format!("enc-{size}.eml"));
        sh(Command::new("openssl")
            .args(["cms", "-encrypt", "-aes-256-gcm", "-in"])
            .arg(&m)
            .arg("-recip")
            .arg(pki.join("alice.pem"))
            .arg("-out")
            .arg(&enc));
        let (d_ours, d_rss) = env.timed(
            &format!(
                "{BIN} --agent never decrypt --token 'pkcs11:token={LABEL}' --in {} --pin-fd 3 3<{pin} > {}",
                enc.display(),
                env.p("dec-ours").display()
            ),
            runs,
        );
        let (d_ossl, d_ossl_rss) = env.timed(
            &format!("openssl cms -decrypt -engine pkcs11 -keyform engine -inkey '{key}' -recip {} -in {} -out {} 2>/dev/null", pki.join("alice.pem").display(), enc.display(), env.p("dec-ossl").display()),
            runs,
        );
        row(
            &format!("decrypt {name}: ours / openssl"),
            format!(
                "{d_ours:.1} ms / {d_ossl:.1} ms = {:.2}×; RSS {} / {} MiB",
                d_ours / d_ossl,
                d_rss / 1024,
                d_ossl_rss / 1024
            ),
            serde_json::json!({"ours_ms": d_ours, "openssl_ms": d_ossl, "ours_rss_kib": d_rss, "openssl_rss_kib": d_ossl_rss}),
            &mut results,
        );
        if size > 1 << 20 {
            let rate = size as f64 / (d_ours / 1000.0);
            row(
                &format!("decrypt {name}: ours bytes/s vs aes-256-gcm limit"),
                format!("{:.0} MB/s = {:.0}%", rate / 1e6, 100.0 * rate / gcm),
                (rate / gcm).into(),
                &mut results,
            );
        }
    }

    // 4. gpgsm with gpg-agent + gnupg-pkcs11-scd on the same token: what users would pick instead.
    let gh = env.p("gnupg");
    std::fs::create_dir_all(&gh).unwrap();
    sh(Command::new("chmod").arg("700").arg(&gh));
    let gpe = gh.join("pinentry.sh");
    std::fs::write(&gpe, format!("#!/bin/sh\necho OK\nwhile read -r c r; do case $c in GETPIN) echo \"D {PIN}\"; echo OK;; BYE) echo OK; exit 0;; *) echo OK;; esac; done\n")).unwrap();
    sh(Command::new("chmod").arg("700").arg(&gpe));
    std::fs::write(
        gh.join("gpg-agent.conf"),
        format!("scdaemon-program /usr/bin/gnupg-pkcs11-scd\npinentry-program {}\n", gpe.display()),
    )
    .unwrap();
    std::fs::write(gh.join("gnupg-pkcs11-scd.conf"), format!("providers p1\nprovider-p1-library {SOFTHSM}\n")).unwrap();
    std::fs::write(gh.join("gpgsm.conf"), "disable-crl-checks\n").unwrap();
    let gpg = |args: &str| format!("GNUPGHOME={} gpgsm --batch --disable-dirmngr {args}", gh.display());
    let gpg_ok = Command::new("bash")
        .args(["-c", &format!("{} 2>/dev/null && {} >/dev/null 2>&1 && fpr=$({} 2>/dev/null | awk -F: '/^fpr/{{print $10; exit}}') && echo \"$fpr S relax\" > {}/trustlist.txt", gpg(&format!("--import {} {}", pki.join("root.pem").display(), pki.join("orgca.pem").display())), gpg("--learn-card"), gpg("--with-colons --list-keys 'SSMAX Demo Root'"), gh.display())])
        .env("SOFTHSM2_CONF", &env.conf)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if gpg_ok {
        let small = env.p("mail-1024.eml");
        let sign = gpg(&format!(
            "-u alice@example.jp --detach-sign --base64 < {} > {}",
            small.display(),
            env.p("gpgsm.p7s").display()
        ));
        env.timed(&sign, 1); // starts gpg-agent and the scd, enters the PIN
        let (warm, _) = env.timed(&sign, 21);
        let (cold, _) = env.timed(&format!("GNUPGHOME={} gpgconf --kill gpg-agent; {sign}", gh.display()), 7);
        row(
            "sign 1 KiB: gpgsm + gpg-agent + gnupg-pkcs11-scd, warm",
            format!("{warm:.1} ms"),
            warm.into(),
            &mut results,
        );
        row(
            "sign 1 KiB: gpgsm + gpg-agent + gnupg-pkcs11-scd, cold",
            format!("{cold:.1} ms"),
            cold.into(),
            &mut results,
        );
        let _ = Command::new("bash").args(["-c", &format!("GNUPGHOME={} gpgconf --kill all", gh.display())]).status();
    } else {
        row(
            "sign 1 KiB: gpgsm",
            "n/a (install gpgsm and gnupg-pkcs11-scd)".into(),
            serde_json::Value::Null,
            &mut results,
        );
    }

    // 5. The agent: PIN cached, persistent clients.
    let script = env.p("pinentry.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho OK\nwhile read -r c r; do case $c in GETPIN) echo \"D {PIN}\"; echo OK;; BYE) echo OK; exit 0;; *) echo OK;; esac; done\n")).unwrap();
    sh(Command::new("chmod").arg("700").arg(&script));
    let cfg = env.p("agent.toml");
    std::fs::write(&cfg, format!("pinentry_program = \"{}\"\n[agent]\npin_cache = \"until-removed\"\naudit_log = \"{}\"\nqueue_limit = 256\n", script.display(), env.p("audit.log").display())).unwrap();
    let socket = env.p("run/agent.sock");
    let mut agent = Command::new(BIN)
        .args(["agent", "--config"])
        .arg(&cfg)
        .arg("--socket")
        .arg(&socket)
        .env("SOFTHSM2_CONF", &env.conf)
        .env("HOME", &env.dir)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let small = env.p("mail-1024.eml");
    // Output to a redirected stdout, like the one-shot rows and `openssl -out` (`--out` adds an fsync).
    let line = format!(
        "{BIN} --agent always --socket {} sign --key 'pkcs11:id=%01' --in {} > {}",
        socket.display(),
        small.display(),
        env.p("agent-out.eml").display()
    );
    env.timed(&line, 1); // the one PIN entry
    let (via_agent, _) = env.timed(&line, 21);
    let ossl_1k = results["sign 1 KiB: openssl cms + engine"]["ms"].as_f64().unwrap();
    let warm_gpgsm = results.get("sign 1 KiB: gpgsm + gpg-agent + gnupg-pkcs11-scd, warm").and_then(|v| v.as_f64());
    let vs_gpgsm = warm_gpgsm.map(|w| format!(", {:.2}× warm gpgsm", via_agent / w)).unwrap_or_default();
    row(
        "sign 1 KiB: CLI through the agent (PIN cached)",
        format!("{via_agent:.1} ms = {:.2}× openssl{vs_gpgsm}", via_agent / ossl_1k),
        serde_json::json!({"ms": via_agent, "ratio_openssl": via_agent / ossl_1k, "ratio_gpgsm_warm": warm_gpgsm.map(|w| via_agent / w)}),
        &mut results,
    );
    // Larger mails through the agent: the CLI hands it the --in file and the --out temp file as
    // descriptors, so neither crosses the socket (--out also fsyncs, which openssl -out does not).
    for (name, size) in [("1 MiB", 1usize << 20), ("25 MiB", 25 << 20)] {
        let sock = socket.display();
        let sign = format!(
            "{BIN} --agent always --socket {sock} sign --key 'pkcs11:id=%01' --in {} --out {}",
            env.p(&format!("mail-{size}.eml")).display(),
            env.p("agent-big.eml").display()
        );
        let (s_ms, s_rss) = env.timed(&sign, 5);
        let dec = format!(
            "{BIN} --agent always --socket {sock} decrypt --in {} --out {}",
            env.p(&format!("enc-{size}.eml")).display(),
            env.p("agent-dec.eml").display()
        );
        let (d_ms, d_rss) = env.timed(&dec, 5);
        let ossl_s = results[&format!("sign {name}: openssl cms + engine")]["ms"].as_f64().unwrap();
        let ossl_d = results[&format!("decrypt {name}: ours / openssl")]["openssl_ms"].as_f64().unwrap();
        row(
            &format!("sign {name}: CLI through the agent"),
            format!("{s_ms:.1} ms = {:.2}× openssl; client RSS {} MiB", s_ms / ossl_s, s_rss / 1024),
            serde_json::json!({"ms": s_ms, "ratio_openssl": s_ms / ossl_s, "client_rss_kib": s_rss}),
            &mut results,
        );
        row(
            &format!("decrypt {name}: CLI through the agent"),
            format!("{d_ms:.1} ms = {:.2}× openssl; client RSS {} MiB", d_ms / ossl_d, d_rss / 1024),
            serde_json::json!({"ms": d_ms, "ratio_openssl": d_ms / ossl_d, "client_rss_kib": d_rss}),
            &mut results,
        );
    }
    let body = std::fs::read(&small).unwrap();
    let req = |id: u64| serde_json::json!({"v": 1, "id": id, "method": "sign", "args": {}, "key": "pkcs11:id=%01", "timeout_ms": 60000, "client": {}});
    // What every answer must carry: the content of the one-shot signature of the same mail.
    let expected = Command::new("openssl")
        .args(["cms", "-verify", "-purpose", "smimesign", "-CAfile"])
        .arg(pki.join("chain.pem"))
        .arg("-in")
        .arg(env.p("ours-1024.eml"))
        .stderr(Stdio::null())
        .output()
        .unwrap();
    assert!(expected.status.success() && !expected.stdout.is_empty(), "openssl verifies the one-shot signature");
    let expected = expected.stdout;
    let mut s = UnixStream::connect(&socket).unwrap();
    let mut lat = Vec::new();
    let mut answers = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        send_msg(&mut s, &req(i), &body);
        let (h, out) = recv_msg(&mut s);
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(h["ok"], true, "{h}");
        assert_eq!(h["id"], i);
        answers.push(out);
    }
    openssl_checks_all(&env, "latency", &answers, &expected);
    let p50 = pct(&lat, 0.5);
    row(
        "agent latency, persistent client, RSA-2048 1 KiB",
        format!("p50 {p50:.3} ms = raw C_Sign + {:.3} ms", p50 - raw_sign_ms),
        serde_json::json!({"p50_ms": p50, "over_raw_ms": p50 - raw_sign_ms}),
        &mut results,
    );
    // The same with the P-256 key, whose C_Sign is a tenth of RSA's: what is left is our own work.
    let raw_ec_ms = floor["C_Sign ECDSA P-256"].as_f64().unwrap();
    let mut ec_lat = Vec::new();
    for i in 0..305 {
        let t = Instant::now();
        send_msg(
            &mut s,
            &serde_json::json!({"v": 1, "id": i, "method": "sign", "args": {}, "key": "pkcs11:id=%02", "timeout_ms": 60000, "client": {}}),
            &body,
        );
        let (h, _) = recv_msg(&mut s);
        // The first few read the key's objects; the rest is the steady state.
        if i >= 5 {
            ec_lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        assert_eq!(h["ok"], true, "{h}");
    }
    let ec50 = pct(&ec_lat, 0.5);
    row(
        "agent latency, persistent client, ECDSA P-256 1 KiB",
        format!("p50 {ec50:.3} ms = raw C_Sign + {:.3} ms", ec50 - raw_ec_ms),
        serde_json::json!({"p50_ms": ec50, "over_raw_ms": ec50 - raw_ec_ms}),
        &mut results,
    );
    // What of that is the socket and the two wake-ups alone: a request that touches no token.
    let mut pings = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        send_msg(&mut s, &serde_json::json!({"v": 1, "id": i, "method": "ping", "timeout_ms": 1000}), b"");
        let (h, _) = recv_msg(&mut s);
        pings.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(h["ok"], true, "{h}");
    }
    let ping = pct(&pings, 0.5);
    row(
        "agent round trip, ping (no token, no work)",
        format!("p50 {ping:.3} ms"),
        serde_json::json!({"p50_ms": ping}),
        &mut results,
    );
    for clients in [1usize, 4, 16] {
        let per = 1600 / clients;
        let t = Instant::now();
        let hs: Vec<_> = (0..clients)
            .map(|c| {
                let socket = socket.clone();
                let body = body.clone();
                std::thread::spawn(move || {
                    let mut s = UnixStream::connect(&socket).unwrap();
                    let (mut l, mut signed) = (Vec::new(), Vec::new());
                    for i in 0..per {
                        let t = Instant::now();
                        send_msg(&mut s, &serde_json::json!({"v": 1, "id": (c * 100000 + i) as u64, "method": "sign", "args": {}, "key": "pkcs11:id=%01", "timeout_ms": 60000, "client": {}}), &body);
                        let (h, out) = recv_msg(&mut s);
                        l.push(t.elapsed().as_secs_f64() * 1000.0);
                        assert_eq!(h["ok"], true, "{h}");
                        assert_eq!(h["id"], (c * 100000 + i) as u64);
                        signed.push(out);
                    }
                    (l, signed)
                })
            })
            .collect();
        let (mut all, mut signed) = (Vec::new(), Vec::new());
        for h in hs {
            let (l, s) = h.join().unwrap();
            all.extend(l);
            signed.extend(s);
        }
        let secs = t.elapsed().as_secs_f64();
        let checked = openssl_checks_all(&env, &format!("{clients}-clients"), &signed, &expected);
        let rate = all.len() as f64 / secs;
        let raw_rate = 1000.0 / raw_sign_ms;
        row(
            &format!("agent throughput, {clients} clients, RSA-2048"),
            format!("{rate:.0}/s = {:.0}% of raw C_Sign; p50 {:.2} ms, p99 {:.2} ms; {} answered, {checked} verified by openssl", 100.0 * rate / raw_rate, pct(&all, 0.5), pct(&all, 0.99), all.len()),
            serde_json::json!({"per_s": rate, "of_raw": rate / raw_rate, "p50_ms": pct(&all, 0.5), "p99_ms": pct(&all, 0.99), "answered": all.len(), "verified_by_openssl": checked}),
            &mut results,
        );
    }
    let _ = agent.kill();
    let _ = agent.wait();

    // 6. Instructions (valgrind's callgrind): they do not move with the neighbours of a shared VM
    // the way wall times do, so they say what a gap is made of.
    if Command::new("valgrind").arg("--version").output().is_ok_and(|o| o.status.success()) {
        let ours = instructions(&env, &format!("{BIN} --agent never sign --token 'pkcs11:token={LABEL}' --key 'pkcs11:id=%01' --in {} --pin-fd 3 3<{pin} >/dev/null", small.display()));
        let ossl = instructions(
            &env,
            &format!(
                "openssl cms -sign -engine pkcs11 -keyform engine -inkey '{key}' -signer {} -in {} -out /dev/null",
                pki.join("alice.pem").display(),
                small.display()
            ),
        );
        row(
            "sign 1 KiB one-shot, instructions: ours / openssl",
            format!("{:.1}M / {:.1}M = {:.2}×", ours / 1e6, ossl / 1e6, ours / ossl),
            serde_json::json!({"ours": ours, "openssl": ossl, "ratio": ours / ossl}),
            &mut results,
        );
        let (per, token) = agent_instructions(&env, &cfg, &body);
        row(
            "agent, instructions per RSA-2048 1 KiB signature",
            format!(
                "{:.2}M = C_SignInit + C_Sign {:.2}M + ours {:.2}M ({:.1}% on top of the token)",
                per / 1e6,
                token / 1e6,
                (per - token) / 1e6,
                100.0 * (per - token) / token
            ),
            serde_json::json!({"per_request": per, "in_token": token, "ours": per - token}),
            &mut results,
        );
    } else {
        row("instructions", "n/a (install valgrind)".into(), serde_json::Value::Null, &mut results);
    }

    // 7. Card commands on a virtual PIV card through OpenSC, ours beside openssl's engine and
    // gpgsm: counted at the card by the test that asserts on them (softhsm-tests/cards.rs), run
    // here for its table. What users wait for on a real card is this count, not these times.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let counted = Command::new(&cargo)
        .args(["test", "--quiet", "--test", "cards", "piv_card_commands_per_operation", "--", "--nocapture"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output();
    let lines: Vec<(String, u64)> = counted
        .as_ref()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| {
                    let mut cells = l.strip_prefix("| ")?.strip_suffix(" |")?.split(" | ");
                    Some((cells.next()?.to_string(), cells.next()?.parse().ok()?))
                })
                .collect()
        })
        .unwrap_or_default();
    if lines.is_empty() {
        row(
            "card commands (virtual PIV card)",
            "n/a (needs pcscd, vsmartcard-vpcd, opensc, gnupg-pkcs11-scd)".into(),
            serde_json::Value::Null,
            &mut results,
        );
    }
    for (name, n) in lines {
        row(&format!("card commands, {name}"), format!("{n} APDUs"), n.into(), &mut results);
    }

    let width = table.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("\nssmax-card benchmark (SoftHSM2 token '{LABEL}', medians)");
    for (k, v) in &table {
        println!("  {k:<width$}  {v}");
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let path = dir.join(format!("results-{stamp}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&serde_json::Value::Object(results)).unwrap()).unwrap();
    let _ = std::fs::remove_dir_all(&env.dir);
    println!("{}", path.display());
}
