//! `cargo bench --bench agent_load`: the agent under load, on a SoftHSM2 token with the PIN cached.
//! A persistent client's RSA-2048 signature and ping, 16 clients signing at once, and then the same
//! beside 10,000 idle connections (a CLI `sign` and a ping on a new connection), with the agent's
//! threads and resident memory before and after.
//!
//! `SSMAX_BENCH_BASELINE_BIN=/path/to/ssmax-card` runs every figure for that binary too, in
//! alternating rounds of the same run, and prints ours / baseline. Build one from an earlier
//! commit with `git worktree add /tmp/base <rev> && cargo build --release --manifest-path
//! /tmp/base/Cargo.toml --target-dir /tmp/base-target`. Nothing here asserts a time.

use ssmax_card::agent::protocol::{read_message, write_message, ProtocolError};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ssmax-card");
const PIN: &str = "bench-pin-2468";
const LABEL: &str = "bench";
const ROUNDS: usize = 3;
const IDLE: usize = 10_000;

fn sh(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

// The agent protocol as the CLI speaks it (the library's own framing).
fn send_msg(s: &mut UnixStream, header: &serde_json::Value, body: &[u8]) {
    write_message(s, header, body).unwrap();
}

fn recv_msg(s: &mut UnixStream) -> Result<(serde_json::Value, Vec<u8>), ProtocolError> {
    read_message(s)
}

fn sign_req(id: u64) -> serde_json::Value {
    serde_json::json!({"v": 1, "id": id, "method": "sign", "args": {}, "key": "pkcs11:id=%01", "timeout_ms": 60000, "client": {}})
}

fn ping_req(id: u64) -> serde_json::Value {
    serde_json::json!({"v": 1, "id": id, "method": "ping", "timeout_ms": 10000, "client": {}})
}

struct Setup {
    dir: PathBuf,
    conf: PathBuf,
    cfg: PathBuf,
    mail: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::Builder::new().prefix("ssmax-agent-load-").tempdir().unwrap().keep();
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("softhsm-tests/provision.sh");
        let pin = dir.join("pin");
        std::fs::write(&pin, format!("{PIN}\n")).unwrap();
        sh(Command::new("bash").arg(&here).arg("pki").arg(dir.join("pki")));
        sh(Command::new("bash").arg(&here).arg("token").arg(dir.join("pki")).arg(dir.join("t")).arg(LABEL).arg(&pin));
        let script = dir.join("pinentry.sh");
        std::fs::write(&script, format!("#!/bin/sh\necho OK\nwhile read -r c r; do case $c in GETPIN) echo \"D {PIN}\"; echo OK;; BYE) echo OK; exit 0;; *) echo OK;; esac; done\n")).unwrap();
        sh(Command::new("chmod").arg("700").arg(&script));
        let cfg = dir.join("agent.toml");
        std::fs::write(
            &cfg,
            format!(
                "pinentry_program = \"{}\"\n[agent]\npin_cache = \"until-removed\"\naudit_log = \"{}\"\nqueue_limit = 256\n",
                script.display(),
                dir.join("audit.log").display()
            ),
        )
        .unwrap();
        let mail = dir.join("mail.eml");
        let text = "From: alice@example.jp\r\nTo: bob@partner.example\r\nSubject: load\r\n\r\n".to_string()
            + &"A line of the mail body, to make about a kilobyte.\r\n".repeat(19);
        std::fs::write(&mail, text).unwrap();
        Setup { conf: dir.join("t/softhsm2.conf"), dir, cfg, mail }
    }

    fn start(&self, bin: &str, name: &str) -> (Child, PathBuf) {
        let socket = self.dir.join(format!("run-{name}/agent.sock"));
        // Each agent its own audit log: two writers would break each other's chain.
        let cfg = self.dir.join(format!("agent-{name}.toml"));
        let text = std::fs::read_to_string(&self.cfg).unwrap();
        let own = self.dir.join(format!("audit-{name}.log"));
        std::fs::write(
            &cfg,
            text.replace(&self.dir.join("audit.log").display().to_string(), &own.display().to_string()),
        )
        .unwrap();
        let child = Command::new(bin)
            .args(["agent", "--config"])
            .arg(&cfg)
            .arg("--socket")
            .arg(&socket)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("HOME", &self.dir)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        while UnixStream::connect(&socket).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        (child, socket)
    }

    /// A CLI `sign` through the agent at `socket`: wall ms, or None when it failed.
    fn cli_sign(&self, socket: &Path) -> Option<f64> {
        let t = Instant::now();
        let out = Command::new(BIN)
            .args(["--agent", "always", "--socket"])
            .arg(socket)
            .args(["sign", "--key", "pkcs11:id=%01", "--in"])
            .arg(&self.mail)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("HOME", &self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        out.success().then(|| t.elapsed().as_secs_f64() * 1000.0)
    }
}

fn status(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// One round's figures for one agent binary.
#[derive(Default)]
struct Figures {
    sign_p50: f64,
    ping_p50: f64,
    per_s_16: f64,
    p99_16: f64,
    idle_cli_sign: Option<f64>,
    idle_ping: Option<f64>,
    idle_threads: (u64, u64),
    idle_rss: (u64, u64),
    idle_held: usize,
}

fn measure(setup: &Setup, bin: &str, name: &str) -> Figures {
    let (mut agent, socket) = setup.start(bin, name);
    let body = std::fs::read(&setup.mail).unwrap();
    let mut f = Figures::default();
    let mut s = UnixStream::connect(&socket).unwrap();
    let mut lat = Vec::new();
    for i in 0..210 {
        let t = Instant::now();
        send_msg(&mut s, &sign_req(i), &body);
        let (h, _) = recv_msg(&mut s).unwrap();
        assert_eq!(h["ok"], true, "{h}");
        // The first few log in and read the key's objects.
        if i >= 10 {
            lat.push(t.elapsed().as_secs_f64() * 1000.0);
        }
    }
    f.sign_p50 = pct(&lat, 0.5);
    let mut pings = Vec::new();
    for i in 0..300 {
        let t = Instant::now();
        send_msg(&mut s, &ping_req(i), b"");
        let (h, _) = recv_msg(&mut s).unwrap();
        assert_eq!(h["ok"], true, "{h}");
        pings.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    f.ping_p50 = pct(&pings, 0.5);
    let t = Instant::now();
    let all: Vec<f64> = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..16u64)
            .map(|c| {
                let (socket, body) = (&socket, &body);
                sc.spawn(move || {
                    let mut s = UnixStream::connect(socket).unwrap();
                    let mut l = Vec::new();
                    for i in 0..100 {
                        let t = Instant::now();
                        send_msg(&mut s, &sign_req(c * 1000 + i), body);
                        let (h, _) = recv_msg(&mut s).unwrap();
                        assert_eq!(h["ok"], true, "{h}");
                        l.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    l
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    f.per_s_16 = all.len() as f64 / t.elapsed().as_secs_f64();
    f.p99_16 = pct(&all, 0.99);
    drop(s);
    // Beside 10,000 idle connections.
    std::thread::sleep(Duration::from_millis(300));
    let (threads, rss) = (status(agent.id(), "Threads:"), status(agent.id(), "VmRSS:"));
    let mut held = Vec::new();
    for _ in 0..IDLE {
        match UnixStream::connect(&socket) {
            Ok(c) => held.push(c),
            // A full queue of new connections (the agent takes no more in): that is a figure too.
            Err(_) => break,
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    f.idle_held = held.len();
    let signs: Vec<f64> = (0..7).filter_map(|_| setup.cli_sign(&socket)).collect();
    f.idle_cli_sign = (signs.len() == 7).then(|| pct(&signs, 0.5));
    let mut pings = Vec::new();
    for i in 0..50 {
        let t = Instant::now();
        let Ok(mut c) = UnixStream::connect(&socket) else { break };
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        send_msg(&mut c, &ping_req(i), b"");
        match recv_msg(&mut c) {
            Ok((h, _)) if h["ok"] == true => pings.push(t.elapsed().as_secs_f64() * 1000.0),
            _ => break,
        }
    }
    f.idle_ping = (pings.len() == 50).then(|| pct(&pings, 0.5));
    f.idle_threads = (threads, status(agent.id(), "Threads:"));
    f.idle_rss = (rss, status(agent.id(), "VmRSS:"));
    drop(held);
    let _ = agent.kill();
    let _ = agent.wait();
    f
}

/// A persistent client's signature and ping, the agents (one per binary) side by side and asked
/// in turn, 30 requests each, 20 times: what the machine does meanwhile falls on both alike.
/// (sign p50, ping p50) per binary.
fn interleaved(setup: &Setup, bins: &[&str]) -> Vec<(f64, f64)> {
    let agents: Vec<(Child, PathBuf)> =
        bins.iter().enumerate().map(|(i, b)| setup.start(b, &format!("turns-{i}"))).collect();
    let body = std::fs::read(&setup.mail).unwrap();
    let mut clients: Vec<UnixStream> = agents.iter().map(|(_, s)| UnixStream::connect(s).unwrap()).collect();
    let mut lat = vec![(Vec::new(), Vec::new()); bins.len()];
    for round in 0..21u64 {
        for (i, c) in clients.iter_mut().enumerate() {
            for n in 0..30 {
                let t = Instant::now();
                send_msg(c, &sign_req(round * 100 + n), &body);
                let (h, _) = recv_msg(c).unwrap();
                assert_eq!(h["ok"], true, "{h}");
                // The first round logs in and reads the key's objects.
                if round > 0 {
                    lat[i].0.push(t.elapsed().as_secs_f64() * 1000.0);
                }
                let t = Instant::now();
                send_msg(c, &ping_req(n), b"");
                assert_eq!(recv_msg(c).unwrap().0["ok"], true);
                if round > 0 {
                    lat[i].1.push(t.elapsed().as_secs_f64() * 1000.0);
                }
            }
        }
    }
    for (mut a, _) in agents {
        let _ = a.kill();
        let _ = a.wait();
    }
    lat.iter().map(|(s, p)| (pct(s, 0.5), pct(p, 0.5))).collect()
}

fn raise_descriptors() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit read and write a plain struct we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    raise_descriptors();
    let setup = Setup::new();
    let baseline = std::env::var("SSMAX_BENCH_BASELINE_BIN").ok().filter(|b| !b.is_empty());
    let mut ours = Vec::new();
    let mut base = Vec::new();
    for round in 0..ROUNDS {
        if let Some(b) = &baseline {
            base.push(measure(&setup, b, &format!("base-{round}")));
        }
        ours.push(measure(&setup, BIN, &format!("ours-{round}")));
    }
    let bins: Vec<&str> = std::iter::once(BIN).chain(baseline.as_deref()).collect();
    let turns = interleaved(&setup, &bins);
    match turns.as_slice() {
        [o, b] => println!(
            "agents side by side, asked in turn (600 requests each): sign p50 {:.3} / {:.3} ms = {:.2}×, ping p50 {:.3} / {:.3} ms = {:.2}×",
            o.0, b.0, o.0 / b.0, o.1, b.1, o.1 / b.1
        ),
        [o] => println!("agent asked in turns (600 requests): sign p50 {:.3} ms, ping p50 {:.3} ms", o.0, o.1),
        _ => {}
    }
    let med = |v: &[Figures], get: &dyn Fn(&Figures) -> Option<f64>| -> Option<f64> {
        let got: Vec<f64> = v.iter().filter_map(get).collect();
        (got.len() == v.len()).then(|| pct(&got, 0.5))
    };
    type Get = Box<dyn Fn(&Figures) -> Option<f64>>;
    let rows: Vec<(&str, &str, Get)> = vec![
        ("sign RSA-2048 1 KiB, persistent client, p50", "ms", Box::new(|f| Some(f.sign_p50))),
        ("ping, persistent client, p50", "ms", Box::new(|f| Some(f.ping_p50))),
        ("16 clients signing, throughput", "/s", Box::new(|f| Some(f.per_s_16))),
        ("16 clients signing, p99", "ms", Box::new(|f| Some(f.p99_16))),
        ("beside 10,000 idle connections: CLI sign, median of 7", "ms", Box::new(|f| f.idle_cli_sign)),
        ("beside 10,000 idle connections: ping on a new connection, p50", "ms", Box::new(|f| f.idle_ping)),
        (
            "10,000 idle connections: agent threads added",
            "",
            Box::new(|f| Some((f.idle_threads.1 as f64) - (f.idle_threads.0 as f64))),
        ),
        (
            "10,000 idle connections: agent RSS added",
            "MiB",
            Box::new(|f| Some((f.idle_rss.1 as f64 - f.idle_rss.0 as f64) / 1024.0)),
        ),
    ];
    println!("agent load, {ROUNDS} rounds, medians{}", if baseline.is_some() { " (ours / baseline)" } else { "" });
    for (name, unit, get) in &rows {
        let o = med(&ours, get.as_ref());
        let shown = |v: Option<f64>| v.map_or("failed".to_string(), |v| format!("{v:.3} {unit}"));
        match &baseline {
            Some(_) => {
                let b = med(&base, get.as_ref());
                let ratio = match (o, b) {
                    (Some(o), Some(b)) if b.abs() > 1e-9 => format!(" = {:.2}×", o / b),
                    _ => String::new(),
                };
                println!("  {name}: {} / {}{ratio}", shown(o), shown(b));
            }
            None => println!("  {name}: {}", shown(o)),
        }
    }
    for (who, v) in [("ours", &ours), ("baseline", &base)] {
        for (i, f) in v.iter().enumerate() {
            println!(
                "  {who} round {i}: sign {:.3} ms, ping {:.3} ms, 16 clients {:.0}/s (p99 {:.2} ms); {} idle held: CLI sign {:?} ms, ping {:?} ms, threads {:?}, RSS {:?} KiB",
                f.sign_p50, f.ping_p50, f.per_s_16, f.p99_16, f.idle_held, f.idle_cli_sign, f.idle_ping, f.idle_threads, f.idle_rss
            );
        }
    }
}
