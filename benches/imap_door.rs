//! `cargo bench --bench imap_door`: the IMAP front door against the mail store it stands in
//! front of, in one run (issue 28). A private Dovecot holds 1,000 messages, 100 of them SSMAX
//! mail with a 1 MiB attachment (made by the demo's organisations), 900 plain ones of 1 MiB:
//! about 1 GiB. In each of three rounds mbsync syncs the mailbox straight from Dovecot, through
//! a door started just before (views made by bob's agent on his SoftHSM2 token) and through a
//! door that took the mail in before; then a second sync each way, a client fetching a 1 MiB
//! plain message 200 times from each, the door's peak RSS from /proc. Prints a table and
//! writes the figures as JSON (its path is the last line). Nothing here asserts a time.
//! `IMAP_DOOR_BENCH_HOLD=1` stops after the set-up and keeps the store and the agent up, for
//! profiling by hand.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ssmax-card");
const SSMAX: usize = 100;
const PLAIN: usize = 900;
const MIB: usize = 1 << 20;
/// Rounds of the first syncs (straight, door started before, door running all along).
const ROUNDS: usize = 3;

fn sh(line: &str) -> String {
    let out = Command::new("bash").args(["-c", line]).output().unwrap_or_else(|e| panic!("{line}: {e}"));
    assert!(out.status.success(), "{line}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A plain mail of about 1 MiB: text and a base64 attachment, different for each `n`.
fn plain(n: usize) -> Vec<u8> {
    let mut m = format!("From: Carol <carol@example.jp>\r\nTo: Bob <bob@partner.example>\r\nSubject: report {n}\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nReport {n} attached.\r\n--B\r\nContent-Type: application/octet-stream; name=\"r{n}.bin\"\r\nContent-Transfer-Encoding: base64\r\n\r\n").into_bytes();
    let mut x: u64 = 0x9e3779b97f4a7c15 ^ n as u64;
    let mut line = Vec::with_capacity(78);
    while m.len() < MIB {
        line.clear();
        for _ in 0..76 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            line.push(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"[(x % 64) as usize]);
        }
        m.extend_from_slice(&line);
        m.extend_from_slice(b"\r\n");
    }
    m.extend_from_slice(b"--B--\r\n");
    m
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// mbsync's run pulling INBOX from 127.0.0.1:`port` into `maildir`: its wall time in seconds.
fn mbsync(dir: &Path, name: &str, port: u16, user: &str, pass: &str, maildir: &Path) -> f64 {
    std::fs::create_dir_all(maildir).unwrap();
    let rc = dir.join(format!("mbsyncrc-{name}"));
    std::fs::write(
        &rc,
        format!(
            "IMAPAccount a\nHost 127.0.0.1\nPort {port}\nUser {user}\nPass \"{pass}\"\nSSLType None\nAuthMechs PLAIN LOGIN\n\nIMAPStore far\nAccount a\n\nMaildirStore near\nPath {m}/\nInbox {m}/INBOX\n\nChannel c\nFar :far:INBOX\nNear :near:INBOX\nSync Pull\nCreate Near\nSyncState *\n",
            m = maildir.display()
        ),
    )
    .unwrap();
    let t = Instant::now();
    let out = Command::new("mbsync").arg("-q").arg("-c").arg(&rc).arg("c").output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    assert!(out.status.success(), "mbsync {name}: {}", String::from_utf8_lossy(&out.stderr));
    secs
}

fn count(maildir: &Path) -> usize {
    ["new", "cur"]
        .iter()
        .map(|s| std::fs::read_dir(maildir.join("INBOX").join(s)).map(|d| d.count()).unwrap_or(0))
        .sum()
}

/// FETCH of one message's BODY[] `n` times on one connection: each answer's time, in ms.
fn fetch_times(port: u16, user: &str, pass: &str, uid: u32, n: usize) -> Vec<f64> {
    let script = "import imaplib,sys,time\nm=imaplib.IMAP4('127.0.0.1',int(sys.argv[1]))\nm.login(sys.argv[2],sys.argv[3])\nm.select('INBOX', readonly=True)\nfor i in range(int(sys.argv[5])):\n    t=time.perf_counter()\n    typ,d=m.uid('FETCH',sys.argv[4],'(BODY.PEEK[])')\n    assert typ=='OK' and d[0]\n    print((time.perf_counter()-t)*1000)\n";
    let out = Command::new("python3")
        .args(["-c", script, &port.to_string(), user, pass, &uid.to_string(), &n.to_string()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().filter_map(|l| l.parse().ok()).collect()
}

fn vm_hwm_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir: PathBuf = tempfile::Builder::new().prefix("ssmax-bench-imap-").tempdir().unwrap().keep();
    // Dovecot reads its password file as its own user.
    sh(&format!("chmod 711 {}", dir.display()));
    let demo = dir.join("demo");
    let t = Instant::now();
    sh(&format!("SSMAX_DEMO_DIR={} bash {}/softhsm-tests/demo.sh >/dev/null 2>&1", demo.display(), root.display()));
    // 100 SSMAX mails, each with its own 1 MiB attachment, through both organisations.
    let p = demo.join("pki");
    let (d, pk) = (demo.display().to_string(), p.display().to_string());
    let mut ssmax = Vec::new();
    for i in 0..SSMAX {
        let a = dir.join(format!("att-{i}.bin"));
        let att = plain(10_000 + i);
        std::fs::write(&a, &att[att.len() - MIB + 4096..]).unwrap();
        let out = dir.join(format!("ssmax-{i}.eml"));
        sh(&format!(
            "set -e; export SSMAX_CARD_SOCKET={d}/none.sock SOFTHSM2_CONF={d}/token/softhsm2.conf
            printf 'From: Alice Example <alice@example.jp>\\nTo: Bob <bob@partner.example>\\nSubject: figures {i}\\n\\nBob, figures {i} attached.\\n' > {d}/draft-{i}.eml
            {BIN} send --in {d}/draft-{i}.eml --attach {a} --label 'figures {i}' --out {d}/s1-{i}.eml --pin-fd 3 3<{d}/pin
            {BIN} org --role sending --org-key {pk}/org.key --org-cert {pk}/org.pem --anchor {pk}/root.pem --registry {d}/example-org-tokens.toml --own-ca {pk}/orgca.pem --crl {pk}/root.crl --crl {pk}/orgca.crl --next {pk}/partner-org.pem --in {d}/s1-{i}.eml --out {d}/s2-{i}.eml
            {BIN} org --role receiving --org-key {pk}/partner-org.key --org-cert {pk}/partner-org.pem --anchor {pk}/root.pem --crl {pk}/root.crl --crl {pk}/orgca.crl --next {pk}/bob.pem --in {d}/s2-{i}.eml --out {o}",
            a = a.display(),
            o = out.display()
        ));
        ssmax.push(out);
    }
    eprintln!("made {SSMAX} SSMAX mails in {:.0} s", t.elapsed().as_secs_f64());

    // The mail store: SSMAX mail spread among the plain (every tenth).
    let store_port = free_port();
    let store = dir.join("dovecot");
    sh(&format!(
        "bash {}/softhsm-tests/dovecot.sh start {} {store_port} bob 'store pw'",
        root.display(),
        store.display()
    ));
    let list = dir.join("mails.txt");
    let mut files = Vec::new();
    for n in 0..(SSMAX + PLAIN) {
        if n % 10 == 9 {
            files.push(ssmax[n / 10].clone());
        } else {
            let f = dir.join(format!("plain-{n}.eml"));
            std::fs::write(&f, plain(n)).unwrap();
            files.push(f);
        }
    }
    std::fs::write(&list, files.iter().map(|f| format!("{}\n", f.display())).collect::<String>()).unwrap();
    sh(&format!("python3 -c \"import imaplib,sys\nm=imaplib.IMAP4('127.0.0.1',{store_port})\nm.login('bob','store pw')\nfor f in open(sys.argv[1]).read().split():\n    d=open(f,'rb').read().replace(b'\\r\\n',b'\\n').replace(b'\\n',b'\\r\\n')\n    assert m.append('INBOX',None,None,d)[0]=='OK'\n\" {}", list.display()));
    let total: u64 = files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum();

    // bob's agent (PIN cached) and the door.
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = dir.join("run");
    sh(&format!("mkdir -m 700 {}", run.display()));
    let pinentry = dir.join("pinentry.sh");
    std::fs::write(&pinentry, format!("#!/bin/sh\necho 'OK Pleased to meet you'\nwhile read -r cmd rest; do\n  case $cmd in\n    GETPIN) echo \"D $(head -n1 '{d}/bob-pin')\"; echo OK ;;\n    BYE) echo OK; exit 0 ;;\n    *) echo OK ;;\n  esac\ndone\n")).unwrap();
    sh(&format!("chmod 700 {}", pinentry.display()));
    let door_port = free_port();
    let config = dir.join("config.toml");
    std::fs::write(&config, format!("pinentry_program = \"{}\"\n[agent]\npin_cache = \"ttl\"\n[smtp]\nclient_user = \"bob\"\n[imap]\nupstream = \"127.0.0.1:{store_port}\"\nupstream_user = \"bob\"\nupstream_tls = \"none\"\nlisten = \"127.0.0.1:{door_port}\"\n", pinentry.display())).unwrap();
    let env = |c: &mut Command| {
        c.env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("SOFTHSM2_CONF", demo.join("bob-token/softhsm2.conf"));
    };
    let socket = run.join("agent.sock");
    let mut c = Command::new(BIN);
    env(&mut c);
    let _agent = Killed(
        c.arg("--config").arg(&config).arg("agent").arg("--socket").arg(&socket).stderr(Stdio::null()).spawn().unwrap(),
    );
    let mut c = Command::new("bash");
    env(&mut c);
    let o = c.arg("-c").arg(format!("{BIN} --config {} imap set-upstream-password --password-fd 3 3<<<'store pw' && {BIN} --config {} smtp client-secret", config.display(), config.display())).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let secret =
        String::from_utf8_lossy(&o.stdout).lines().find_map(|l| l.strip_prefix("secret: ")).unwrap().to_string();
    while std::os::unix::net::UnixStream::connect(&socket).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }

    // Held for profiling by hand: the mail store, the agent and the door's settings stay up.
    if std::env::var_os("IMAP_DOOR_BENCH_HOLD").is_some() {
        println!("held: {} store {store_port} door {door_port} secret {secret}", dir.display());
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    let base = std::fs::read_to_string(&config).unwrap();
    // A door with its own empty cache; its log is `name`.log.
    let start_door = |name: &str| -> (Killed, PathBuf) {
        let conf = dir.join(format!("{name}.toml"));
        std::fs::write(&conf, format!("{base}cache_dir = \"{}\"\n", dir.join(format!("{name}-cache")).display()))
            .unwrap();
        let log = dir.join(format!("{name}.log"));
        let mut c = Command::new(BIN);
        env(&mut c);
        let door = c
            .arg("--config")
            .arg(&conf)
            .arg("--socket")
            .arg(&socket)
            .args(["imap", "serve"])
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        while std::net::TcpStream::connect(("127.0.0.1", door_port)).is_err() {
            std::thread::sleep(Duration::from_millis(20));
        }
        (Killed(door), log)
    };
    // A client's first sync into an empty Maildir (a SELECT waits for the door's first refresh
    // only so long: synced again until every message is there), its dirty pages written out
    // first so that no sync pays for the one before.
    let first_sync = |name: &str, port: u16, user: &str, pass: &str| -> f64 {
        sh("sync");
        let maildir = dir.join(name);
        let t = Instant::now();
        let mut secs = mbsync(&dir, name, port, user, pass, &maildir);
        while count(&maildir) < SSMAX + PLAIN && t.elapsed() < Duration::from_secs(600) {
            mbsync(&dir, name, port, user, pass, &maildir);
        }
        secs = secs.max(t.elapsed().as_secs_f64());
        assert_eq!(count(&maildir), SSMAX + PLAIN, "every message through {name}");
        secs
    };
    // What a sync wrote goes before the next starts: each begins on the same disk.
    let gone = |name: &str| {
        let _ = std::fs::remove_dir_all(dir.join(name));
    };
    let taken_in = |log: &Path| -> usize {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split("INBOX: ").nth(1)?.split(" new views").next()?.parse::<usize>().ok())
            .sum()
    };

    // Each round, one after the other: straight from Dovecot; through a door started just
    // before (its first sync includes making every view); through a door that was running
    // when the mail came, as it runs all day (a new one, its cache empty, takes the mailbox in
    // — SSMAX views made, the rest by its header — before the client's first sync starts).
    // Rounds, rather than one of each, because this VM's speed drifts within minutes.
    let (mut direct1, mut cold1, mut warm1, mut intakes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut direct2, mut door2, mut straight, mut through, mut rss, mut rss_after, mut opened) =
        (0.0, 0.0, 0.0, 0.0, 0, 0, 0);
    for round in 0..ROUNDS {
        direct1.push(first_sync(&format!("direct-{round}"), store_port, "bob", "store pw"));
        if round == 0 {
            direct2 = mbsync(&dir, "direct-0", store_port, "bob", "store pw", &dir.join("direct-0"));
        }
        gone(&format!("direct-{round}"));
        let (door, _) = start_door(&format!("cold-{round}"));
        cold1.push(first_sync(&format!("door-{round}"), door_port, "bob", &secret));
        if round == 0 {
            door2 = mbsync(&dir, "door-0", door_port, "bob", &secret, &dir.join("door-0"));
            rss = vm_hwm_kib(door.0.id());
            opened = ["new", "cur"]
                .iter()
                .flat_map(|d| std::fs::read_dir(dir.join("door-0/INBOX").join(d)).unwrap())
                .filter(|e| std::fs::read(e.as_ref().unwrap().path()).unwrap().windows(10).any(|w| w == b"smime=pass"))
                .count();
            // A pass-through FETCH: the first plain mail, 200 times, each way.
            straight = median(fetch_times(store_port, "bob", "store pw", 1, 200));
            through = median(fetch_times(door_port, "bob", &secret, 1, 200));
            rss_after = vm_hwm_kib(door.0.id());
        }
        drop(door);
        gone(&format!("door-{round}"));
        gone(&format!("cold-{round}-cache"));
        let (door, log) = start_door(&format!("warm-{round}"));
        let t = Instant::now();
        while taken_in(&log) < SSMAX + PLAIN && t.elapsed() < Duration::from_secs(600) {
            std::thread::sleep(Duration::from_millis(50));
        }
        intakes.push(t.elapsed().as_secs_f64());
        warm1.push(first_sync(&format!("warm-{round}"), door_port, "bob", &secret));
        drop(door);
        gone(&format!("warm-{round}"));
        gone(&format!("warm-{round}-cache"));
        eprintln!(
            "round {round}: straight {:.1} s, door started before {:.1} s, door running all along {:.1} s",
            direct1[round], cold1[round], warm1[round]
        );
    }
    sh(&format!("bash {}/softhsm-tests/dovecot.sh stop {}", root.display(), store.display()));
    let ratio = |door: &[f64]| median(door.iter().zip(&direct1).map(|(d, s)| d / s).collect());
    let runs = |v: &[f64]| v.iter().map(|s| format!("{s:.1}")).collect::<Vec<_>>().join(", ");
    let (cold_ratio, warm_ratio) = (ratio(&cold1), ratio(&warm1));

    let rows = [
        (
            "mailbox",
            format!(
                "{} messages ({SSMAX} SSMAX with a 1 MiB attachment), {:.0} MiB",
                SSMAX + PLAIN,
                total as f64 / MIB as f64
            ),
            serde_json::json!({"messages": SSMAX + PLAIN, "bytes": total}),
        ),
        (
            "first sync: Dovecot straight",
            format!("{:.1} s (runs: {} s)", median(direct1.clone()), runs(&direct1)),
            serde_json::json!({"s": direct1}),
        ),
        (
            "first sync: door started just before (views made)",
            format!(
                "{:.1} s, {cold_ratio:.2}× straight (runs: {} s); {opened} SSMAX opened",
                median(cold1.clone()),
                runs(&cold1)
            ),
            serde_json::json!({"s": cold1, "ratio": cold_ratio, "opened": opened}),
        ),
        (
            "first sync: door running as the mail came",
            format!(
                "{:.1} s, {warm_ratio:.2}× straight (runs: {} s; intake before: {} s)",
                median(warm1.clone()),
                runs(&warm1),
                runs(&intakes)
            ),
            serde_json::json!({"s": warm1, "ratio": warm_ratio, "intake_s": intakes}),
        ),
        ("second sync: Dovecot straight", format!("{direct2:.2} s"), direct2.into()),
        (
            "second sync: through the door",
            format!("{door2:.2} s = {:.2}× straight", door2 / direct2),
            serde_json::json!({"s": door2, "ratio": door2 / direct2}),
        ),
        (
            "FETCH BODY[] of a 1 MiB plain mail, median of 200",
            format!("straight {straight:.2} ms, door {through:.2} ms: +{:.2} ms", through - straight),
            serde_json::json!({"straight_ms": straight, "door_ms": through, "added_ms": through - straight}),
        ),
        (
            "door peak RSS",
            format!("{} MiB while syncing, {} MiB after the FETCHes", rss / 1024, rss_after / 1024),
            serde_json::json!({"sync_kib": rss, "after_kib": rss_after}),
        ),
    ];
    let mut json = serde_json::Map::new();
    for (name, text, value) in rows {
        println!("{name:<52} {text}");
        json.insert(name.to_string(), value);
    }
    let path = dir.join("imap-door-results.json");
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    // The gigabytes go; the figures and the doors' logs stay.
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p != path && p.extension().is_none_or(|e| e != "log") {
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
    println!("{}", path.display());
}
