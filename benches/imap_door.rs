//! `cargo bench --bench imap_door`: the IMAP front door against the mail store it stands in
//! front of, in one run (issue 28). A private Dovecot holds 1,000 messages, 100 of them SSMAX
//! mail with a 1 MiB attachment (made by the demo's organisations), 900 plain ones of 1 MiB:
//! about 1 GiB. mbsync syncs the mailbox straight from Dovecot and through the door (views made
//! by bob's agent on his SoftHSM2 token), twice each; a client fetches a small plain message
//! 200 times from each; the door's peak RSS is read from /proc. Prints a table and writes the
//! figures as JSON (its path is the last line). Nothing here asserts a time.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ssmax-card");
const SSMAX: usize = 100;
const PLAIN: usize = 900;
const MIB: usize = 1 << 20;

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

    // Straight from Dovecot, then through the door (started just before: its first sync includes
    // making every view).
    let direct1 = mbsync(&dir, "direct", store_port, "bob", "store pw", &dir.join("direct"));
    let direct2 = mbsync(&dir, "direct", store_port, "bob", "store pw", &dir.join("direct"));
    let mut c = Command::new(BIN);
    env(&mut c);
    let door = Killed(
        c.arg("--config")
            .arg(&config)
            .arg("--socket")
            .arg(&socket)
            .args(["imap", "serve"])
            .stderr(Stdio::from(std::fs::File::create(dir.join("door.log")).unwrap()))
            .spawn()
            .unwrap(),
    );
    while std::net::TcpStream::connect(("127.0.0.1", door_port)).is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let t = Instant::now();
    let mut door1 = mbsync(&dir, "door", door_port, "bob", &secret, &dir.join("door"));
    // A SELECT waits for the first refresh only so long: sync until every message is there.
    while count(&dir.join("door")) < SSMAX + PLAIN && t.elapsed() < Duration::from_secs(600) {
        mbsync(&dir, "door", door_port, "bob", &secret, &dir.join("door"));
    }
    door1 = door1.max(t.elapsed().as_secs_f64());
    let door2 = mbsync(&dir, "door", door_port, "bob", &secret, &dir.join("door"));
    let rss = vm_hwm_kib(door.0.id());
    assert_eq!(count(&dir.join("door")), SSMAX + PLAIN, "every message through the door");
    let opened = std::fs::read_dir(dir.join("door/INBOX/new"))
        .unwrap()
        .chain(std::fs::read_dir(dir.join("door/INBOX/cur")).unwrap())
        .filter(|e| std::fs::read(e.as_ref().unwrap().path()).unwrap().windows(10).any(|w| w == b"smime=pass"))
        .count();

    // A pass-through FETCH: the first plain mail, 200 times, each way.
    let straight = median(fetch_times(store_port, "bob", "store pw", 1, 200));
    let through = median(fetch_times(door_port, "bob", &secret, 1, 200));
    let rss_after = vm_hwm_kib(door.0.id());
    drop(door);

    // A door that was running when the mail came (as it runs all day): a new one, its cache
    // empty, takes the mailbox in (SSMAX views made, the rest by its header) before a client's
    // first sync starts; the sync then reads plain mail from Dovecot through it, SSMAX views
    // from its cache.
    let warm_config = dir.join("warm.toml");
    let base = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&warm_config, format!("{base}cache_dir = \"{}\"\n", dir.join("warm-cache").display())).unwrap();
    let mut c = Command::new(BIN);
    env(&mut c);
    let warm_log = dir.join("door-warm.log");
    let door = Killed(
        c.arg("--config")
            .arg(&warm_config)
            .arg("--socket")
            .arg(&socket)
            .args(["imap", "serve"])
            .stderr(Stdio::from(std::fs::File::create(&warm_log).unwrap()))
            .spawn()
            .unwrap(),
    );
    let t = Instant::now();
    let taken_in = |log: &Path| -> usize {
        std::fs::read_to_string(log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split("INBOX: ").nth(1)?.split(" new views").next()?.parse::<usize>().ok())
            .sum()
    };
    while taken_in(&warm_log) < SSMAX + PLAIN && t.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let intake = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut warm1 = mbsync(&dir, "warm", door_port, "bob", &secret, &dir.join("warm"));
    while count(&dir.join("warm")) < SSMAX + PLAIN && t.elapsed() < Duration::from_secs(600) {
        mbsync(&dir, "warm", door_port, "bob", &secret, &dir.join("warm"));
    }
    warm1 = warm1.max(t.elapsed().as_secs_f64());
    assert_eq!(count(&dir.join("warm")), SSMAX + PLAIN, "every message through the running door");
    drop(door);
    sh(&format!("bash {}/softhsm-tests/dovecot.sh stop {}", root.display(), store.display()));

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
        ("first sync: Dovecot straight", format!("{direct1:.1} s"), direct1.into()),
        (
            "first sync: through the door (views made)",
            format!("{door1:.1} s = {:.2}× straight; {opened} SSMAX mails verified and opened", door1 / direct1),
            serde_json::json!({"s": door1, "ratio": door1 / direct1, "opened": opened}),
        ),
        (
            "first sync: through a door that took the mail in as it came",
            format!("{warm1:.1} s = {:.2}× straight (the door's intake before it: {intake:.1} s)", warm1 / direct1),
            serde_json::json!({"s": warm1, "ratio": warm1 / direct1, "intake_s": intake}),
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
    // The gigabytes go; the figures and the door's log stay.
    for e in std::fs::read_dir(&dir).unwrap().flatten() {
        let p = e.path();
        if p != path && !p.ends_with("door.log") {
            let _ = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        }
    }
    println!("{}", path.display());
}
