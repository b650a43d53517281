//! A client session with a real agent on a real socket: whatever bytes a client sends, and
//! however it leaves — closing without reading the answer, closing mid-request, or reading
//! every answer — the agent answers or ends that connection only. After every session a fresh
//! client must still get an answer to `ping`. The agent has no token (its module does not
//! exist), so token requests fail fast; `verify --no-token`, parsing and framing run in full.
#![no_main]
use libfuzzer_sys::fuzz_target;
use ssmax_card::agent::protocol::{read_message, write_message, Request, Response, VERSION};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

fn agent() -> &'static PathBuf {
    static SOCKET: OnceLock<PathBuf> = OnceLock::new();
    SOCKET.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("ssmax-fuzz-agent-{}", std::process::id()));
        // Private, as a runtime directory is: the agent refuses one open to other users.
        std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&dir).expect("temp dir");
        let config = dir.join("config.toml");
        let socket = dir.join("agent.sock");
        std::fs::write(
            &config,
            format!(
                "token = \"pkcs11:token=fuzz?module-path=/nonexistent/ssmax-fuzz-pkcs11.so\"\n[agent]\naudit_log = \"{}\"\nidle_timeout_ms = 2000\npresence_poll_ms = 60000\n",
                dir.join("audit.log").display()
            ),
        )
        .expect("config");
        let setup = ssmax_card::ops::setup::Setup::load(Some(&config), None, None).expect("setup");
        let args =
            ssmax_card::agent::server::AgentArgs { socket: socket.clone(), audit_log: None, config_path: Some(config) };
        std::thread::spawn(move || {
            let r = ssmax_card::agent::server::run(setup, args);
            panic!("the agent stopped: {:?}", r.err().map(|f| f.message));
        });
        let start = Instant::now();
        while UnixStream::connect(&socket).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "the agent did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
        socket
    })
}

fn still_answers(socket: &PathBuf) {
    let mut s = UnixStream::connect(socket).expect("the agent still accepts");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let ping = Request {
        v: VERSION,
        id: 1,
        method: "ping".into(),
        args: Default::default(),
        token: None,
        key: None,
        allow_final_pin_try: false,
        revocation: None,
        timeout_ms: 5000,
        client: Default::default(),
        body_in_fd: false,
        reply_in_fd: false,
        passed: Vec::new(),
    };
    write_message(&mut s, &ping, &[]).expect("ping sent");
    let (resp, _): (Response, _) = read_message(&mut s).expect("the agent still answers");
    // Busy (over the connection cap) is an answer too.
    assert!(resp.ok || resp.retry_after_ms.is_some(), "{resp:?}");
}

fuzz_target!(|data: &[u8]| {
    let socket = agent();
    let Some((&how, bytes)) = data.split_first() else { return };
    let Ok(mut s) = UnixStream::connect(socket) else { panic!("the agent stopped accepting") };
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    match how % 3 {
        // Send everything and go without reading a word.
        0 => {
            let _ = s.write_all(bytes);
        }
        // Leave in the middle of what it was sending.
        1 => {
            let _ = s.write_all(&bytes[..bytes.len() / 2]);
        }
        // Send everything, say it is done, read every answer.
        _ => {
            let _ = s.write_all(bytes);
            let _ = s.shutdown(std::net::Shutdown::Write);
            let mut sink = Vec::new();
            let _ = (&mut s).take(256 << 20).read_to_end(&mut sink);
        }
    }
    drop(s);
    still_answers(socket);
});
